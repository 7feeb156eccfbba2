"""hub.db.session_snapshots: the batched session snapshots the scheduler hands to the actors it opens at boot
are exactly what each actor would load alone."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import pytest

from hub.db import Database, open_database
from hub.db.seed import ensure_campus
from hub.db.session_snapshots import (
    load_session_roster,
    load_session_snapshot,
    load_session_snapshots,
    sessions_enrolling,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=2) as database:
        yield database


async def test_batched_snapshots_equal_one_by_one(fresh_db: Database) -> None:
    db = fresh_db
    campus = await ensure_campus(db, rooms=3, students=12, now=datetime.now(timezone.utc))
    first, second = campus.sessions[0], campus.sessions[1]
    assert first.session_id != second.session_id
    student = first.enrolled[0]
    # Give the first session a record and a used token, so the batch has rows to sort per session.
    await db.execute(
        "INSERT INTO attendance (session_id, student_id, status, checked_in_at, source)"
        " VALUES ($1, $2, 'present', $3, 'manual') ON CONFLICT DO NOTHING",
        first.session_id, student, datetime.now(timezone.utc))
    await db.execute(
        "INSERT INTO token_uses (session_id, student_id, token_window, event_id) VALUES ($1, $2, 7, $3)"
        " ON CONFLICT DO NOTHING", first.session_id, student, uuid.uuid4())

    ids = [s.session_id for s in campus.sessions]
    batched = await load_session_snapshots(db, [*ids, "no-such-session"])

    assert set(batched) == set(ids)
    for session_id in ids:
        assert batched[session_id] == await load_session_snapshot(db, session_id)
    assert batched[first.session_id].records[student][0] == "present"
    assert (student, 7) in batched[first.session_id].used_tokens
    assert batched[second.session_id].used_tokens == set()
    assert set(batched[first.session_id].roster) >= set(first.enrolled)
    assert await load_session_snapshot(db, "no-such-session") is None


async def test_rosters_leave_out_deactivated_students_and_only_possibly_live_sessions_are_found(
        fresh_db: Database) -> None:
    db = fresh_db
    now = datetime.now(timezone.utc)
    campus = await ensure_campus(db, rooms=2, students=12, now=now)
    session = campus.sessions[0]
    leaver, stayer = session.enrolled[0], session.enrolled[1]
    snapshot = await load_session_snapshot(db, session.session_id)
    assert snapshot is not None and await load_session_roster(db, session.session_id) == snapshot.roster
    await db.execute("UPDATE users SET deactivated_at = $2 WHERE id = $1", leaver, now)
    roster = await load_session_roster(db, session.session_id)
    assert leaver not in roster and stayer in roster
    snapshot = await load_session_snapshot(db, session.session_id)
    assert snapshot is not None and leaver not in snapshot.roster

    # Found by id or roll number; a later session of the course is not open yet, a cancelled one never is.
    later = "ses-later"
    await db.execute(
        "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status)"
        " VALUES ($1, $2, $3, $4, $5, 'scheduled')",
        later, session.course_id, session.room_id, now + timedelta(hours=3), now + timedelta(hours=4))
    found = await sessions_enrolling(db, now, student_ids=[stayer])
    assert session.session_id in found and later not in found
    roll = await db.fetchval("SELECT roll_number FROM students WHERE id = $1", stayer)
    assert await sessions_enrolling(db, now, roll_numbers=[roll]) == found
    assert await sessions_enrolling(db, now) == []
    await db.execute("UPDATE class_sessions SET status = 'cancelled' WHERE id = $1", session.session_id)
    assert session.session_id not in await sessions_enrolling(db, now, student_ids=[stayer])
