"""Insights demo data: a few weeks of attendance history in one course, so its report has one demo
student in each band, plus a pending condonation application for the faculty to decide.

Twelve closed sessions of the course in the past weeks, every other day inside the demo term (ids
``demo-hist-<course>-NN``), with a record for every enrolled student, written through the attendance
primitive (so every record has its audit entry). The first three enrolled students (by id) are the demo cases:

- the first: 8 present, 1 late, 3 absent = 73.33%: condonable, with a pending application;
- the second: 11 present, 1 late = 98.33%: eligible;
- the third: 6 present, 6 absent = 50%: barred;
- everyone else: present except one absence = 91.66%.

Existing records are never overwritten (a leave seeded earlier stays excused). Idempotent: if the
first history session exists, nothing is done. No webhook subscription is created (a demo must
not post to an address nobody controls). The hub's warnings actor sends the below-75% warnings
on its first sweep, like for any other data.

Not called from ``ensure_campus`` (its tests count the campus's sessions): ``campushub demo``
calls it right after seeding the campus.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import asyncpg

from hub.domain.eligibility import CONDONABLE, shown

from .._pool import Database
from ..attendance import AttendanceChange, apply_attendance_changes
from ..condonation import create_application
from ..insights import StandingRow, standings
from ..notifications import NewNotification, add_notifications

HISTORY = 12
_PATTERNS = (
    ["present"] * 8 + ["late"] + ["absent"] * 3,  # 73.33%: condonable
    ["present"] * 11 + ["late"],                  # 98.33%: eligible
    ["present", "absent"] * 6,                    # 50%: barred
)
_DEFAULT = ["present"] * 11 + ["absent"]          # 91.66%


def history_session_id(course_id: str, n: int) -> str:
    return f"demo-hist-{course_id}-{n:02d}"


async def ensure_insights_demo(db: Database, *, course_id: str, now: datetime) -> bool:
    """Seed the course's history unless it is there; returns whether it seeded.

    Blocks the calling trio task for two short transactions (history, then the application).
    """
    if await db.fetchval("SELECT EXISTS (SELECT 1 FROM class_sessions WHERE id = $1)",
                         history_session_id(course_id, 1)):
        return False
    now = now.astimezone(timezone.utc)
    first = await db.run(lambda conn: _seed_history(conn, course_id, now), transaction=True)
    if first is None:
        return False
    rows = await standings(db, now, student_id=first, course_id=course_id)
    st = rows[0].standing() if rows else None
    if st is not None and st.band == CONDONABLE and st.percentage is not None:
        pct = shown(st.percentage)
        await db.run(lambda conn: _apply_for_condonation(conn, rows[0], pct, now), transaction=True)
    return True


async def _apply_for_condonation(conn: asyncpg.Connection, row: StandingRow, pct: Decimal, now: datetime) -> None:
    application = await create_application(
        conn, row.student_id, row.course_id,
        "I was in hospital for a week; the discharge summary is with the office.", pct, now)
    teachers = await conn.fetch(
        "SELECT faculty_id FROM courses WHERE id = $1 UNION SELECT faculty_id FROM faculty_assignments"
        " WHERE course_id = $1", row.course_id)
    await add_notifications(conn, [NewNotification(
        user_id=t["faculty_id"], kind="condonation_requested",
        title=f"{row.course_code}: condonation requested by {row.student_name}",
        body=f"{row.student_name} ({row.roll_number}) is at {pct}% and asks for condonation.",
        link=f"/faculty/reports?course_id={row.course_id}",
        data={"application_id": application.id, "course_id": row.course_id, "student_id": row.student_id},
    ) for t in teachers])


async def _seed_history(conn: asyncpg.Connection, course_id: str, now: datetime) -> str | None:
    """The sessions and records; returns the first demo student (None if nothing could be seeded)."""
    course = await conn.fetchrow(
        "SELECT c.id, coalesce((SELECT room_id FROM class_sessions s WHERE s.course_id = c.id"
        " ORDER BY starts_at LIMIT 1), (SELECT id FROM rooms ORDER BY id LIMIT 1)) AS room_id"
        " FROM courses c WHERE c.id = $1", course_id)
    if course is None or course["room_id"] is None:
        return None
    enrolled = [r["student_id"] for r in await conn.fetch(
        "SELECT student_id FROM enrolments WHERE course_id = $1 ORDER BY student_id", course_id)]
    # Early morning, every other day back from yesterday: never overlapping the campus's live sessions,
    # and all in the demo term (it started 30 days ago, hub.db.seed.academic), so its charts start at
    # the term's start and no session comes before it (the first is 23 days ago).
    day0 = now.replace(hour=6, minute=0, second=0, microsecond=0) - timedelta(days=1)
    sessions = [(history_session_id(course_id, n), day0 - timedelta(days=2 * (HISTORY - n)))
                for n in range(1, HISTORY + 1)]
    await conn.executemany(
        "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status)"
        " VALUES ($1, $2, $3, $4, $5, 'closed') ON CONFLICT (id) DO NOTHING",
        [(sid, course_id, course["room_id"], starts, starts + timedelta(hours=1)) for sid, starts in sessions],
    )
    changes = []
    for index, student in enumerate(enrolled):
        pattern = _PATTERNS[index] if index < len(_PATTERNS) else _DEFAULT
        for (sid, starts), status in zip(sessions, pattern):
            checked_in = starts + timedelta(minutes=2 if status == "present" else 15) \
                if status in ("present", "late") else None
            changes.append(AttendanceChange(sid, student, status, "manual", checked_in, replaces=frozenset()))
    await apply_attendance_changes(conn, changes, actor="seed", reason="demo attendance history")
    return enrolled[0] if enrolled else None
