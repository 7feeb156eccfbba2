"""Assessment demo data: each demo course's section A gets a quiz and a midterm already marked (a few
absent, one exempt) and a final exam with a sitting that clashes with nothing.

Runs inside the campus seed's transaction (``ensure_campus``), after :mod:`hub.db.seed.academic`
made the demo term, its sections and sessions. Idempotent: an assessment is found again by its
course, term, kind and title; marks are stored (as demo history, without audit entries, like the
seeded attendance) only for students without one; the sitting is placed only when its section has none.
The grades are not released: students see no marks until faculty release them.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import asyncpg

from ..assessments import MarkEntry
from ..exams import NewSitting, SittingFields, clashes_in
from .academic import SEED_ACTOR, TERM_ID

#: (kind, title, max marks, weight %, days from today it is held).
_PLAN = (("quiz", "Quiz 1", Decimal(10), Decimal(10), -10),
         ("midterm", "Midterm", Decimal(50), Decimal(25), -3),
         ("exam", "Final exam", Decimal(100), Decimal(40), 21))
#: Where the final's sitting may go: days after today and start hours (UTC, the demo term's zone), tried in order.
_SITTING_DAYS = (21, 22, 23, 24, 25)
_SITTING_HOURS = (9, 13, 16)
_SITTING_LENGTH = timedelta(hours=3)


def _mark(kind: str, place: int, max_marks: Decimal) -> MarkEntry | None:
    """A plausible spread of marks by the student's place in the roll (no randomness: reruns agree)."""
    if kind == "exam":
        return None  # not sat yet
    if place % 11 == 5:
        return MarkEntry("", "absent")
    if kind == "quiz" and place % 13 == 7:
        return MarkEntry("", "exempt", feedback="Excused: medical certificate")
    share = Decimal(45 + (place * 37) % 55) / 100  # 45 % .. 99 %
    return MarkEntry("", "graded", (max_marks * share).quantize(Decimal("0.5")))


async def ensure_assessments_demo(conn: asyncpg.Connection, now: datetime) -> None:
    """In the caller's transaction: the demo term's assessments, marks and final-exam sittings."""
    today = now.astimezone(timezone.utc).date()
    sections = await conn.fetch(
        "SELECT s.id, s.course_id, (SELECT cs.room_id FROM class_sessions cs WHERE cs.course_id = s.course_id"
        "  ORDER BY cs.starts_at LIMIT 1) AS room_id FROM sections s WHERE s.term_id = $1 AND s.name = 'A'"
        " ORDER BY s.course_id", TERM_ID)
    for section in sections:
        students = [r["student_id"] for r in await conn.fetch(
            "SELECT student_id FROM enrolments WHERE course_id = $1 AND section_id = $2 ORDER BY student_id",
            section["course_id"], section["id"])]
        for kind, title, max_marks, weight, days in _PLAN:
            assessment_id = await conn.fetchval(
                "SELECT id FROM assessments WHERE course_id = $1 AND term_id = $2 AND kind = $3 AND title = $4",
                section["course_id"], TERM_ID, kind, title)
            if assessment_id is None:
                assessment_id = await conn.fetchval(
                    "INSERT INTO assessments (course_id, term_id, kind, title, max_marks, weight, held_on, created_by)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    section["course_id"], TERM_ID, kind, title, max_marks, weight, today + timedelta(days=days),
                    SEED_ACTOR)
            marked = {r["student_id"] for r in await conn.fetch(
                "SELECT student_id FROM assessment_marks WHERE assessment_id = $1", assessment_id)}
            entries = []
            for place, student in enumerate(students):
                entry = _mark(kind, place, max_marks)
                if entry is not None and student not in marked:
                    entries.append(MarkEntry(student, entry.status, entry.marks, entry.feedback))
            if entries:
                # Demo history, not a change someone made: stored as the seed stores attendance, without audit
                # entries (the audit log of a new campus starts empty; tests/db/test_audit_chain.py relies on it).
                await conn.copy_records_to_table(
                    "assessment_marks",
                    records=[(assessment_id, e.student_id, e.status, e.marks, e.marks, e.feedback, SEED_ACTOR)
                             for e in entries],
                    columns=["assessment_id", "student_id", "status", "raw_marks", "marks", "feedback", "graded_by"])
            if kind == "exam" and section["room_id"] is not None:
                await _place_sitting(conn, assessment_id, section["id"], section["room_id"], today)


async def _place_sitting(conn: asyncpg.Connection, assessment_id: int, section_id: str, room_id: str,
                         today: date) -> None:
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM exam_sittings WHERE assessment_id = $1"
                           " AND section_id = $2)", assessment_id, section_id):
        return
    for days in _SITTING_DAYS:
        for hour in _SITTING_HOURS:
            starts = datetime.combine(today + timedelta(days=days), time(hour), tzinfo=timezone.utc)
            new = NewSitting(assessment_id, SittingFields(room_id, starts, starts + _SITTING_LENGTH,
                                                          "Bring your student card."), section_id=section_id)
            if not await clashes_in(conn, new):
                await conn.execute(
                    "INSERT INTO exam_sittings (assessment_id, section_id, room_id, starts_at, ends_at, note, created_by)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7)", assessment_id, section_id, room_id, starts,
                    starts + _SITTING_LENGTH, new.fields.note, SEED_ACTOR)
                return
