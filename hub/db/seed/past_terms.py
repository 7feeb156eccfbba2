"""Past terms for the early-warning demo and tests: finished terms with classes, attendance, check-in
flags, assessments and marks, and the outcome of every student (``course_results``, when the grades
feature's table exists), plus running-term marks for the demo's own students.

The outcomes depend on the facts the way a real campus's might, and NOT through the 75 % rule: a
hidden logistic combination of the students' ability (seen only through their marks), their
attendance (a non-linear effect: nothing above ~85 %, steep below), a decline over the term that
hurts weak students more (an interaction), late arrivals, and 6 % label noise; some who stop
coming withdraw instead of failing. So the attendance rule catches part of the failures and a
model of the features has something to learn (docs/analytics.md). Synthetic: these figures check
the pipeline, never a campus's reality.

Each finished term is a separate offering of the demo's courses (course ``past<k>-<course>``, code
``<code>-P<k>``, taught by the same faculty) with its own cohort of alumni students (ids
``stu-1000001`` on, deactivated), because an enrolment names a course once per student. The latest
finished term's cohort also holds the first :data:`DEMO_STUDENTS_IN_PAST` demo students, with the
same generated history, so their transcripts and GPA have a finished term (the grades feature).

Fast: every row goes in with COPY, in one transaction; idempotent (nothing happens if the first
past term exists). Called by ``campushub demo`` (hub/app/cli.py), the risk tests and
bench/risk_eval.py. Not from ``ensure_campus``: its tests count students and sessions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import asyncpg
import numpy as np

from hub.core.secrets_box import SecretsBox

from .._pool import Database
from ..sealed_secrets import token_secret_context

TERM_DAYS = 84
GAP_DAYS = 14
#: The running demo term starts this many days before today (hub/db/seed/academic.py).
RUNNING_STARTED_DAYS = 30
SESSIONS_PER_WEEK = 2
#: (kind, title, day of term held, weight %, max marks)
ASSESSMENTS = (
    ("quiz", "Quiz 1", 17, 10, 20), ("assignment", "Assignment 1", 31, 20, 50),
    ("midterm", "Midterm", 45, 25, 100), ("project", "Project", 66, 15, 40), ("exam", "Final exam", 82, 30, 100),
)
GRADED_AFTER = timedelta(days=3)
#: The first this-many demo students (stu-0001...) also took the latest finished term's courses.
DEMO_STUDENTS_IN_PAST = 10
#: Past students' ids start after this number (hub.db.seed.student_id(n) = stu-NNNN): far above any demo size.
ALUMNI_FROM = 1_000_000
SEED_ACTOR = "seed"


def past_term_id(k: int) -> str:
    return f"past-term-{k}"


def _sigmoid(z: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class PastPlan:
    terms: int
    students: int
    seed: int


def _bands(percent: float) -> tuple[str, float]:
    for letter, low, points in (("A", 90, 4.0), ("A-", 85, 3.7), ("B+", 80, 3.3), ("B", 75, 3.0), ("B-", 70, 2.7),
                                ("C+", 65, 2.3), ("C", 60, 2.0), ("D", 50, 1.0)):
        if percent >= low:
            return letter, points
    return "F", 0.0


async def ensure_past_terms(
    db: Database, now: datetime, *, terms: int = 4, students: int = 60, courses: int = 4, seed: int = 16,
) -> list[str]:
    """Seed ``terms`` finished terms before the running demo term (ids ``past-term-1..``, oldest first) with
    ``students`` alumni each taking the first ``courses`` demo courses; returns the term ids. Needs the
    demo campus (its courses and faculty). Idempotent."""
    now = now.astimezone(timezone.utc)

    async def work(conn: asyncpg.Connection) -> list[str]:
        ids = [past_term_id(k) for k in range(1, terms + 1)]
        await conn.execute("SELECT pg_advisory_xact_lock($1)", 0x50415354)  # 'PAST': two seeders serialise
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM terms WHERE id = $1)", ids[0]):
            return ids
        base = await conn.fetch(
            "SELECT c.id, c.code, c.title, c.faculty_id FROM courses c WHERE c.id LIKE 'course-%'"
            " ORDER BY c.id LIMIT $1", courses)
        room = await conn.fetchval("SELECT id FROM rooms ORDER BY id LIMIT 1")
        pw = await conn.fetchval("SELECT password_hash FROM users WHERE id = 'usr-admin'")
        if not base or room is None or pw is None:
            raise LookupError("seed the demo campus first (hub.db.seed.ensure_campus)")
        await _seed(conn, db.secrets, PastPlan(terms, students, seed), [dict(r) for r in base], room, pw, now)
        return ids

    return await db.run(work, transaction=True)


async def _seed(conn: asyncpg.Connection, secrets: SecretsBox, plan: PastPlan, base: list[dict], room: str, pw: str,
                now: datetime) -> None:
    rng = np.random.default_rng(plan.seed)
    today = now.date()
    running_start = today - timedelta(days=RUNNING_STARTED_DAYS)
    has_results = await conn.fetchval("SELECT to_regclass('course_results') IS NOT NULL")
    rows: dict[str, list[tuple]] = {k: [] for k in (
        "terms", "users", "students", "courses", "sections", "fa", "enrolments", "sessions", "attendance", "flags",
        "assessments", "marks", "results", "releases")}
    next_assessment = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM assessments")) + 1
    demo_students = [r["id"] for r in await conn.fetch(
        "SELECT id FROM students WHERE id ~ '^stu-[0-9]{4}$' ORDER BY id LIMIT $1", DEMO_STUDENTS_IN_PAST)]
    for k in range(1, plan.terms + 1):
        term = past_term_id(k)
        ends_on = running_start - timedelta(days=GAP_DAYS + (plan.terms - k) * (TERM_DAYS + GAP_DAYS) + 1)
        starts_on = ends_on - timedelta(days=TERM_DAYS - 1)
        rows["terms"].append((term, f"Past term {k} ({starts_on:%b %Y})", starts_on, ends_on, "UTC"))
        t0 = datetime.combine(starts_on, time(), timezone.utc)
        # The latest finished term also holds the first demo students, so their transcripts show a term.
        cohort = list(demo_students) if k == plan.terms else []
        for i in range(plan.students):
            n = ALUMNI_FROM + (k - 1) * plan.students + i + 1
            sid = f"stu-{n:04d}"
            cohort.append(sid)
            rows["users"].append((sid, sid, f"Alumnus {n - ALUMNI_FROM}", "student", pw, now))
            rows["students"].append((sid, f"A{n - ALUMNI_FROM:06d}",
                                     secrets.encrypt(os.urandom(32), token_secret_context(sid))))
        engage = rng.normal(0, 1, len(cohort))
        ability = rng.normal(0, 1, len(cohort))
        declines = rng.random(len(cohort)) < (0.15 + 0.2 * (engage < -0.5))
        for course in base:
            cid, sec = f"past{k}-{course['id']}", f"past{k}-{course['id']}-A"
            rows["courses"].append((cid, f"{course['code']}-P{k}", course["title"], course["faculty_id"]))
            rows["sections"].append((sec, cid, term, "A"))
            rows["fa"].append((cid, course["faculty_id"]))
            difficulty = rng.normal(0, 0.3)
            sessions: list[tuple[str, datetime, int]] = []
            for w in range(TERM_DAYS // 7):
                for j in range(SESSIONS_PER_WEEK):
                    starts = t0 + timedelta(days=7 * w + 1 + 2 * j, hours=9)
                    s_id = f"{sec}-s{len(sessions) + 1:02d}"
                    sessions.append((s_id, starts, w))
                    rows["sessions"].append((s_id, cid, room, starts, starts + timedelta(hours=1), "closed", sec,
                                             "manual", starts + timedelta(hours=1), starts + timedelta(hours=1)))
            assessments: list[tuple[int, date, int, int]] = []
            for kind, title, day, weight, max_marks in ASSESSMENTS:
                aid = next_assessment
                next_assessment += 1
                held = starts_on + timedelta(days=day)
                assessments.append((aid, held, weight, max_marks))
                rows["assessments"].append((aid, cid, term, kind, title, max_marks, weight, held, SEED_ACTOR,
                                            datetime.combine(starts_on, time(), timezone.utc)))
            for i, sid in enumerate(cohort):
                rows["enrolments"].append((cid, sid, sec))
                e, a, dec = engage[i], ability[i], bool(declines[i])
                attended = held_count = late = 0
                for s_id, starts, w in sessions:
                    p = _sigmoid(2.0 + 1.3 * e - difficulty - (0.3 * max(0, w - 3) if dec else 0.0))
                    if rng.random() < p:
                        status = "late" if rng.random() < _sigmoid(-2.2 - 0.7 * e) else "present"
                        attended += 1
                        late += status == "late"
                        if rng.random() < (0.04 if e < -1 else 0.008):
                            rows["flags"].append((s_id, sid, "shared_device", "qr", starts + timedelta(minutes=3),
                                                  "open"))
                    else:
                        status = "excused" if rng.random() < 0.08 else "absent"
                    if status != "excused":
                        held_count += 1
                    rows["attendance"].append((s_id, sid, status, starts + timedelta(minutes=2)
                                               if status in ("present", "late") else None, "seed",
                                               starts + timedelta(hours=1)))
                att = attended / held_count if held_count else 1.0
                total = 0.0
                for aid, held, weight, max_marks in assessments:
                    graded = datetime.combine(held, time(12), timezone.utc) + GRADED_AFTER
                    if rng.random() < _sigmoid(-3.2 - 1.5 * e + (2.0 if dec and held > starts_on + timedelta(days=40)
                                                                else 0.0)):
                        rows["marks"].append((aid, sid, "absent", None, None, SEED_ACTOR, graded))
                        continue
                    frac = float(_sigmoid(0.7 + 1.1 * a + 0.4 * e - difficulty + rng.normal(0, 0.45)))
                    marks = round(frac * max_marks, 1)
                    total += weight * marks / max_marks
                    rows["marks"].append((aid, sid, "graded", marks, marks, SEED_ACTOR, graded))
                # The hidden outcome: not the 75 % rule (see the module docstring).
                z = (-2.8 - 1.6 * a + 30.0 * max(0.0, 0.86 - att) ** 2 + (1.3 if dec and a < 0 else 0.0)
                     + 0.9 * (late / max(1, attended)) - 0.3 * e)
                fail = rng.random() < float(_sigmoid(z))
                if rng.random() < 0.06:
                    fail = not fail
                percent = min(100.0, total)
                if fail and percent >= 50:
                    percent = float(rng.uniform(30, 49.9))
                elif not fail and percent < 50:
                    percent = float(rng.uniform(50, 60))
                if fail and att < 0.6 and rng.random() < 0.5:
                    rows["results"].append((sid, cid, term, None, None, None, 3, "withdrawn",
                                            datetime.combine(ends_on, time(), timezone.utc)))
                else:
                    letter, points = _bands(percent)
                    rows["results"].append((sid, cid, term, round(percent, 3), letter, points, 3,
                                            "failed" if fail else "passed",
                                            datetime.combine(ends_on, time(), timezone.utc)))
            rows["releases"].append((cid, term, datetime.combine(ends_on, time(), timezone.utc), SEED_ACTOR))

    async def copy(table: str, columns: list[str], records: list[tuple]) -> None:
        if records:
            await conn.copy_records_to_table(table, records=records, columns=columns)

    await copy("terms", ["id", "name", "starts_on", "ends_on", "timezone"], rows["terms"])
    await copy("users", ["id", "username", "display_name", "role", "password_hash", "deactivated_at"], rows["users"])
    await copy("students", ["id", "roll_number", "token_secret_sealed"], rows["students"])
    await copy("courses", ["id", "code", "title", "faculty_id"], rows["courses"])
    await copy("sections", ["id", "course_id", "term_id", "name"], rows["sections"])
    await copy("faculty_assignments", ["course_id", "faculty_id"], rows["fa"])
    await copy("enrolments", ["course_id", "student_id", "section_id"], rows["enrolments"])
    await copy("class_sessions", ["id", "course_id", "room_id", "starts_at", "ends_at", "status", "section_id",
                                  "origin", "closed_at", "finalized_at"], rows["sessions"])
    await copy("attendance", ["session_id", "student_id", "status", "checked_in_at", "source", "updated_at"],
               rows["attendance"])
    await copy("checkin_flags", ["session_id", "student_id", "kind", "source", "raised_at", "state"], rows["flags"])
    await copy("assessments", ["id", "course_id", "term_id", "kind", "title", "max_marks", "weight", "held_on",
                               "created_by", "created_at"], rows["assessments"])
    await conn.execute("SELECT setval(pg_get_serial_sequence('assessments', 'id'),"
                       " (SELECT coalesce(max(id), 1) FROM assessments))")
    await copy("assessment_marks", ["assessment_id", "student_id", "status", "raw_marks", "marks", "graded_by",
                                    "graded_at"], rows["marks"])
    if has_results:
        await copy("course_results", ["student_id", "course_id", "term_id", "percent", "letter", "points", "credits",
                                      "outcome", "finalized_at"], rows["results"])
        await copy("grade_releases", ["course_id", "term_id", "released_at", "released_by"], rows["releases"])
    # Fresh statistics: the first training usually follows at once, and its plans depend on them.
    for table in ("class_sessions", "attendance", "assessments", "assessment_marks", "enrolments"):
        await conn.execute(f"ANALYZE {table}")


async def ensure_running_marks(db: Database, now: datetime, *, course_ids: list[str], term_id: str) -> int:
    """The demo's running term: a class test (a quiz) held two weeks ago in each course, marked for its students in a
    spread that, with the insights demo's attendance, gives faculty a few students to look at. Idempotent."""
    now = now.astimezone(timezone.utc)

    async def work(conn: asyncpg.Connection) -> int:
        added = 0
        for n, course in enumerate(course_ids):
            title = "Class test"
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM assessments WHERE course_id = $1 AND term_id = $2"
                                   " AND title = $3)", course, term_id, title):
                continue
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM terms WHERE id = $1)", term_id):
                return 0
            held = (now - timedelta(days=14)).date()
            aid = await conn.fetchval(
                "INSERT INTO assessments (course_id, term_id, kind, title, max_marks, weight, held_on, created_by)"
                " VALUES ($1, $2, 'quiz', $3, 20, 10, $4, $5) RETURNING id", course, term_id, title, held, SEED_ACTOR)
            students = [r["student_id"] for r in await conn.fetch(
                "SELECT student_id FROM enrolments WHERE course_id = $1 ORDER BY student_id", course)]
            marks = []
            for i, sid in enumerate(students):
                # The first three students are the insights demo's cases (73 %, 98 %, 50 % attendance).
                mark = (9.0, 18.0, 6.0)[i] if i < 3 else float(12 + (i * 7 + n * 3) % 9)
                marks.append((aid, sid, "graded", mark, mark, SEED_ACTOR, now - timedelta(days=11)))
            await conn.copy_records_to_table(
                "assessment_marks", records=marks,
                columns=["assessment_id", "student_id", "status", "raw_marks", "marks", "graded_by", "graded_at"])
            added += len(marks)
        return added

    return await db.run(work, transaction=True)

