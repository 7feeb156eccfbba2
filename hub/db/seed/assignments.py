"""Assignment demo data: each demo course gets four assignments in the demo term, so the grading queue,
the student's page, late penalties and reminders all have something to show:

- "Problem set 1": past due and graded (returned); a few students were late and lost marks under the
  late policy (one kept the pass mark by the floor), one never submitted;
- "Lab report": due yesterday, cut-off in two days, a handout attached: waiting in the queue, several late;
- "Project proposal": open (due in 3 days), with a rubric; a few students already submitted;
- "Reading reflection": due in 20 hours, so the reminder actor sends its "due in 24 h" notifications.

Runs inside the campus seed's transaction (``ensure_campus``), after :mod:`hub.db.seed.academic` made the
demo term and its sections. Idempotent: a course's assignments are seeded only when it has none of
these titles yet. Deterministic by the student's place in the roll (no randomness: reruns agree). Marks
go into ``assessment_marks`` with the penalty computed by :mod:`hub.domain.late_policy`, like grading
does; the grades are not released, so students see feedback but no marks until faculty release them.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from hub.core.secrets_box import SecretsBox
from hub.domain.late_policy import LatePolicy, hundredths, late_minutes, late_penalty

from ..assignments import NewFile, store_attachment
from ..submissions import receipt_hash, store_files
from .academic import SEED_ACTOR, TERM_ID

_POLICY = LatePolicy(grace_minutes=15, penalty_percent=Decimal(10), period="started_day", cap_percent=Decimal(30),
                     pass_percent=Decimal(40))
_PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
_TITLES = ("Problem set 1", "Lab report", "Project proposal", "Reading reflection")
_RUBRIC = (("Problem and motivation", Decimal(6)), ("Plan and milestones", Decimal(8)),
           ("Clarity of writing", Decimal(6)))


async def ensure_assignments_demo(conn: asyncpg.Connection, now: datetime, secrets: SecretsBox) -> None:
    """In the caller's transaction: the demo term's assignments, submissions and marks (files sealed with
    ``secrets``, the campus key)."""
    courses = [r["course_id"] for r in await conn.fetch(
        "SELECT DISTINCT course_id FROM sections WHERE term_id = $1 ORDER BY course_id", TERM_ID)]
    seeded = {r["course_id"] for r in await conn.fetch(
        "SELECT DISTINCT course_id FROM assessments WHERE term_id = $1 AND kind = 'assignment' AND title = ANY($2)",
        TERM_ID, list(_TITLES))}
    for course in courses:
        if course in seeded:
            continue
        students = [r["student_id"] for r in await conn.fetch(
            "SELECT e.student_id FROM enrolments e JOIN sections s ON s.id = e.section_id"
            " WHERE e.course_id = $1 AND s.term_id = $2 ORDER BY e.student_id", course, TERM_ID)]
        await _course(conn, course, students, now, secrets)


async def _assignment(conn: asyncpg.Connection, course: str, title: str, max_marks: Decimal, weight: Decimal,
                      instructions: str, due: datetime, cut_off: datetime | None, published: datetime) -> int:
    assessment_id: int = await conn.fetchval(
        "INSERT INTO assessments (course_id, term_id, kind, title, max_marks, weight, held_on, created_by)"
        " VALUES ($1, $2, 'assignment', $3, $4, $5, $6, $7) RETURNING id",
        course, TERM_ID, title, max_marks, weight, due.date(), SEED_ACTOR)
    await conn.execute(
        "INSERT INTO assignments (assessment_id, instructions, opens_at, due_at, cut_off_at, grace_minutes,"
        " penalty_percent, penalty_period, penalty_cap_percent, pass_percent, max_attempts, published_at)"
        " VALUES ($1, $2, NULL, $3, $4, $5, $6, $7, $8, $9, 3, $10)",
        assessment_id, instructions, due, cut_off, _POLICY.grace_minutes, _POLICY.penalty_percent, _POLICY.period,
        _POLICY.cap_percent, _POLICY.pass_percent, published)
    return assessment_id


async def _submit(conn: asyncpg.Connection, assessment_id: int, due: datetime,
                  work: list[tuple[str, datetime, str]], status: str) -> None:
    await conn.executemany(
        "INSERT INTO assignment_submissions (assessment_id, student_id, attempt, submitted_at, text, late_minutes,"
        " sha256, status) VALUES ($1, $2, 1, $3, $4, $5, $6, $7)",
        [(assessment_id, student, at, text, late_minutes(at, due),
          receipt_hash(assessment_id, student, 1, at, text, []), status) for student, at, text in work])


async def _course(conn: asyncpg.Connection, course: str, students: list[str], now: datetime,
                  secrets: SecretsBox) -> None:
    # 1. Past due, graded and returned; some late, one missing.
    due = now - timedelta(days=10)
    ps1 = await _assignment(conn, course, "Problem set 1", Decimal(20), Decimal(5),
                            "Solve problems 1 to 6 of chapter 2. Show your working.", due, due + timedelta(days=3),
                            due - timedelta(days=14))
    work, marks = [], []
    for place, student in enumerate(students):
        if place % 9 == 4:
            continue  # never submitted
        late_h = (26, 50)[place % 2] if place % 7 == 3 else 0
        at = due + timedelta(hours=late_h, minutes=20) if late_h else due - timedelta(hours=2 + place % 40)
        work.append((student, at, f"My answers to problem set 1 (student {place + 1})."))
        raw = (Decimal(20) * Decimal(50 + (place * 37) % 50) / 100).quantize(Decimal("0.5"))
        penalty = late_penalty(_POLICY, raw, Decimal(20), late_minutes(at, due))
        marks.append((ps1, student, raw, hundredths(penalty.marks), penalty.note(Decimal(20), _POLICY),
                      ("Good, clear working." if raw >= 15 else "Check problem 4 again: see the worked example."),
                      SEED_ACTOR, due + timedelta(days=4)))
    await _submit(conn, ps1, due, work, "returned")
    await conn.executemany(
        "INSERT INTO assessment_marks (assessment_id, student_id, status, raw_marks, marks, penalty_note, feedback,"
        " graded_by, graded_at) VALUES ($1, $2, 'graded', $3, $4, $5, $6, $7, $8)", marks)

    # 2. Due yesterday, cut-off in two days: waiting to be graded, several late.
    due = now - timedelta(days=1)
    lab = await _assignment(conn, course, "Lab report", Decimal(30), Decimal(10),
                            "Write up lab 3: method, measurements, and what you conclude (at most 4 pages).",
                            due, due + timedelta(days=3), due - timedelta(days=10))
    work = []
    for place, student in enumerate(students):
        if place % 5 == 2:
            continue  # not yet: may still hand in, late
        late = place % 4 == 1
        at = due + timedelta(hours=3 + place % 15) if late else due - timedelta(hours=1 + place % 30)
        work.append((student, at, f"Lab 3 report (student {place + 1})."))
    await store_attachment(conn, secrets, lab, NewFile("lab3-handout.pdf", "application/pdf", _PDF), SEED_ACTOR)
    await _submit(conn, lab, due, work, "submitted")
    first = await conn.fetchrow("SELECT id, student_id, submitted_at, text FROM assignment_submissions"
                                " WHERE assessment_id = $1 ORDER BY student_id LIMIT 1", lab)
    if first is not None:  # one file, so the queue and the zip show a download; its receipt covers it
        report = NewFile("lab3-report.pdf", "application/pdf", _PDF)
        await store_files(conn, secrets, first["id"], [report])
        await conn.execute("UPDATE assignment_submissions SET sha256 = $2 WHERE id = $1", first["id"], receipt_hash(
            lab, first["student_id"], 1, first["submitted_at"], first["text"],
            [(report.filename, report.content_type, report.data)]))

    # 3. Open, with a rubric; a few early submissions.
    due = now + timedelta(days=3)
    proposal = await _assignment(conn, course, "Project proposal", Decimal(20), Decimal(10),
                                 "One page: the problem you will work on, your plan, and how you will know it "
                                 "worked.", due, due + timedelta(days=2), now - timedelta(days=5))
    await conn.executemany(
        "INSERT INTO assignment_rubric_criteria (assessment_id, position, criterion, max_points)"
        " VALUES ($1, $2, $3, $4)", [(proposal, i, c, p) for i, (c, p) in enumerate(_RUBRIC, start=1)])
    await _submit(conn, proposal, due, [(s, now - timedelta(hours=6 + i), "Draft proposal.")
                                        for i, s in enumerate(students) if i % 6 == 0], "submitted")

    # 4. Due in 20 hours: the reminder actor notifies those who have not submitted.
    due = now + timedelta(hours=20)
    await _assignment(conn, course, "Reading reflection", Decimal(10), Decimal(0),
                      "Half a page on this week's reading: what surprised you?", due, None, now - timedelta(days=2))
