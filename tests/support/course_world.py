"""A course with one student and its attendance history, for the attendance-warnings tests.

Student ``s1`` (roll R1) in course ``c`` (CS1 Intro; coordinator ``f1``, assistant ``f2``) in room ``r``,
a session scheduled a week ahead (``future``), and closed past sessions with ``s1``'s records.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from hub.db import Database


async def seed_course(db: Database, statuses: list[str], *, now: datetime | None = None) -> list[str]:
    """The course above, then one closed past session per status (:func:`add_closed_sessions`): their ids."""
    now = now or datetime.now(timezone.utc)

    async def work(conn: Any) -> None:
        await conn.executemany(
            "INSERT INTO users (id, username, display_name, role, password_hash) VALUES ($1, $1, $2, $3, 'x')",
            [("s1", "Sam One", "student"), ("f1", "Fay One", "faculty"), ("f2", "Fox Two", "faculty")])
        await conn.execute("INSERT INTO students (id, roll_number, token_secret) VALUES ('s1', 'R1', 'k')")
        await conn.execute("INSERT INTO rooms (id, name, building) VALUES ('r', 'R', 'B')")
        await conn.execute("INSERT INTO courses (id, code, title, faculty_id) VALUES ('c', 'CS1', 'Intro', 'f1')")
        await conn.execute("INSERT INTO faculty_assignments (course_id, faculty_id, role) VALUES ('c', 'f2', 'assistant')")
        await conn.execute("INSERT INTO enrolments (course_id, student_id) VALUES ('c', 's1')")
        await conn.execute(
            "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status)"
            " VALUES ('future', 'c', 'r', $1, $2, 'scheduled')", now + timedelta(days=7), now + timedelta(days=7, hours=1))
    await db.run(work, transaction=True)
    return await add_closed_sessions(db, statuses, now=now)


async def add_closed_sessions(db: Database, statuses: list[str], *, now: datetime | None = None) -> list[str]:
    """One closed session of course ``c`` per status, 20 days before ``now`` an hour apart, with ``s1``'s
    record of that status: their ids, in order."""
    now = now or datetime.now(timezone.utc)
    ids = [f"s-{uuid.uuid4().hex[:8]}" for _ in statuses]

    async def work(conn: Any) -> None:
        for i, (sid, status) in enumerate(zip(ids, statuses)):
            start = now - timedelta(days=20) + timedelta(hours=i)
            await conn.execute("INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status)"
                               " VALUES ($1, 'c', 'r', $2, $3, 'closed')", sid, start, start + timedelta(minutes=50))
            await conn.execute("INSERT INTO attendance (session_id, student_id, status, source)"
                               " VALUES ($1, 's1', $2, 'manual')", sid, status)
    await db.run(work, transaction=True)
    return ids
