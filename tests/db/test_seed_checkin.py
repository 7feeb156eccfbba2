"""The check-in demo: one open wrong_room flag for the demo faculty on an ended session, idempotent."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import AsyncIterator

import pytest

from hub.db import Database, open_database
from hub.db.seed import ensure_campus, faculty_id
from hub.db.seed_checkin import ensure_checkin_demo

#: Mid-morning: the academic demo's earlier lecture of today has ended (hub/db/seed_academic.py).
NOW = datetime(2025, 3, 4, 10, 17, 42, tzinfo=timezone.utc)


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=2) as database:
        yield database


async def test_demo_faculty_has_one_open_flag_to_review_with_its_notification(fresh_db: Database) -> None:
    campus = await ensure_campus(fresh_db, rooms=2, students=12, now=NOW)
    [flag] = await fresh_db.fetch(
        "SELECT f.id, f.session_id, f.student_id, f.kind, f.state, f.evidence, cs.ends_at, cs.room_id, c.faculty_id"
        " FROM checkin_flags f JOIN class_sessions cs ON cs.id = f.session_id JOIN courses c ON c.id = cs.course_id")
    assert (flag["kind"], flag["state"], flag["faculty_id"]) == ("wrong_room", "open", faculty_id(1))
    assert flag["ends_at"] <= NOW  # an ended session: the live ones (tests check in there) stay untouched
    assert flag["session_id"] not in {s.session_id for s in campus.sessions}
    assert json.loads(flag["evidence"])["room_id"] != flag["room_id"]
    # The flagged check-in was counted, with its audit entry, like the hub does it.
    record = await fresh_db.fetchrow("SELECT status, source FROM attendance WHERE session_id = $1 AND student_id = $2",
                                     flag["session_id"], flag["student_id"])
    assert dict(record) == {"status": "present", "source": "qr"}
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log WHERE entity_id = $1",
                                   f"{flag['session_id']}/{flag['student_id']}") == 1
    note = await fresh_db.fetchrow("SELECT user_id, link, data FROM notifications WHERE kind = 'checkin_flagged'")
    assert note["user_id"] == faculty_id(1) and note["link"] == f"/faculty/sessions/{flag['session_id']}"
    assert json.loads(note["data"])["flag_id"] == flag["id"]

    # Idempotent: seeding again (or calling it directly) adds nothing.
    await ensure_campus(fresh_db, rooms=2, students=12, now=NOW)
    assert await fresh_db.run(lambda conn: ensure_checkin_demo(conn, faculty_id=faculty_id(1), now=NOW)) is None
    assert await fresh_db.fetchval("SELECT count(*) FROM checkin_flags") == 1
    assert await fresh_db.fetchval("SELECT count(*) FROM notifications WHERE kind = 'checkin_flagged'") == 1
