"""Session writes that excuse students on leave (hub.db.leave.excuse_on_leave) take the attendance
lock before they lock or delete session rows, so they never deadlock with an attendance writer
that holds that lock and writes a record of the same session (a leave decision, the batch writer).

Each test races the two on its own database: the writer takes the lock first, then, while the
session write waits for it, writes its record (its foreign-key check needs the session row).
Taken in the other order, PostgreSQL would abort one of them as a deadlock.
"""
from __future__ import annotations

import asyncio
import os
from datetime import datetime, time, timedelta, timezone
from functools import partial
from typing import AsyncIterator

import asyncpg
import pytest
import trio

from hub.db import Database, open_database
from hub.db.academic import Conflict, SlotFields
from hub.db.attendance import AttendanceChange, apply_attendance_changes, lock_attendance
from hub.db.class_sessions import NewSession, create_session, reschedule_session
from hub.db.timetable import create_slot, delete_slot

pytestmark = pytest.mark.integration

NOW = datetime(2031, 5, 5, 8, 0, tzinfo=timezone.utc)
STUDENT = "stu-lock"
#: How long the writer holds the lock before writing its record: the session write is waiting by then.
HOLD_S = 0.5


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=4) as database:
        await database.execute(
            "INSERT INTO users (id, username, display_name, role, password_hash) VALUES"
            " ('fac-lock', 'fac-lock', 'F', 'faculty', 'x'), ($1, $1, 'S', 'student', 'x')", STUDENT)
        await database.execute("INSERT INTO students (id, roll_number, token_secret) VALUES ($1, 'R1', $2)",
                               STUDENT, os.urandom(32))
        await database.execute("INSERT INTO rooms (id, name, building) VALUES ('room-lock', 'R', 'B')")
        await database.execute(
            "INSERT INTO courses (id, code, title, faculty_id) VALUES ('c-lock', 'C-LOCK', 'Locks', 'fac-lock')")
        await database.execute("INSERT INTO enrolments (course_id, student_id) VALUES ('c-lock', $1)", STUDENT)
        yield database


async def _race(db: Database, session_id: str, session_write) -> object:
    """Run ``session_write()`` while another transaction holds the attendance lock and then writes
    ``STUDENT``'s record of ``session_id``; returns what ``session_write`` returned or raised."""
    held: list[bool] = []
    outcome: list[object] = []

    async def writer(conn: asyncpg.Connection) -> None:
        await lock_attendance(conn)
        held.append(True)
        await asyncio.sleep(HOLD_S)
        await apply_attendance_changes(
            conn, [AttendanceChange(session_id, STUDENT, "excused", "leave")], actor="fac-lock", reason="leave")

    async def write() -> None:
        while not held:
            await trio.sleep(0.01)
        try:
            outcome.append(await session_write())
        except Exception as exc:  # noqa: BLE001 - the test looks at what it was
            outcome.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(db.run, writer, transaction=True))
            nursery.start_soon(write)
    return outcome[0]


async def test_a_reschedule_waits_for_the_attendance_lock_before_locking_its_session(fresh_db: Database) -> None:
    start = NOW + timedelta(days=2)
    session = await create_session(fresh_db, NewSession("c-lock", "room-lock", start, start + timedelta(hours=1)),
                                   actor="fac-lock", now=NOW)
    later = start + timedelta(days=1)
    outcome = await _race(fresh_db, session.session_id, lambda: reschedule_session(
        fresh_db, session.session_id, later, later + timedelta(hours=1), None, actor="fac-lock", now=NOW))
    # The record was written first; the reschedule then saw it and refused, as for any session with records.
    assert isinstance(outcome, Conflict) and "attendance records" in str(outcome)
    assert await fresh_db.fetchval("SELECT starts_at FROM class_sessions WHERE id = $1",
                                   session.session_id) == start


async def test_a_regeneration_waits_for_the_attendance_lock_before_deleting_sessions(fresh_db: Database) -> None:
    first = NOW.date()
    await fresh_db.execute("INSERT INTO terms (id, name, starts_on, ends_on, timezone) VALUES"
                           " ('t-lock', 'T', $1, $2, 'UTC')", first, first + timedelta(weeks=3, days=-1))
    await fresh_db.execute("INSERT INTO sections (id, course_id, term_id, name) VALUES ('s-lock', 'c-lock',"
                           " 't-lock', 'A')")
    await create_slot(fresh_db, "slot-lock", "s-lock", SlotFields("room-lock", 2, time(9), time(10)),
                      now=NOW, actor="adm")
    sessions = [r["id"] for r in await fresh_db.fetch(
        "SELECT id FROM class_sessions WHERE slot_id = 'slot-lock' ORDER BY starts_at")]
    assert len(sessions) == 3
    # Deleting the slot deletes its sessions, all still without history, unless one gets a record first.
    outcome = await _race(fresh_db, sessions[1], lambda: delete_slot(fresh_db, "slot-lock", now=NOW, actor="adm"))
    assert not isinstance(outcome, Exception), outcome
    assert (outcome.deleted, sorted(outcome.cancelled)) == ([], sorted(sessions))  # type: ignore[attr-defined]
    assert await fresh_db.fetchval("SELECT status FROM attendance WHERE session_id = $1", sessions[1]) == "excused"
