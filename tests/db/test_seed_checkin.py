"""The check-in demo (``campushub demo``): one open wrong_room flag for the demo faculty on an ended
session, with its notification; idempotent; nothing without an ended session."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import AsyncIterator

import pytest

from hub.db import Database, open_database
from hub.db.seed import ensure_campus, faculty_id
from hub.db.seed.academic import ensure_todays_past_classes
from hub.db.seed.checkin import ensure_checkin_demo

#: Mid-morning: the academic demo's earlier class of today is over.
NOW = datetime(2025, 3, 4, 10, 17, 42, tzinfo=timezone.utc)


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=2) as database:
        yield database


async def test_demo_faculty_gets_one_open_flag_to_review_with_its_notification(fresh_db: Database) -> None:
    campus = await ensure_campus(fresh_db, rooms=2, students=12, now=NOW)
    # ensure_campus alone (what the tests' campus is) has no ended session: nothing to flag there.
    assert await ensure_checkin_demo(fresh_db, faculty_id=faculty_id(1), now=NOW) is None
    await ensure_todays_past_classes(fresh_db, NOW)
    audit_before = await fresh_db.fetchval("SELECT count(*) FROM audit_log")
    flag_id = await ensure_checkin_demo(fresh_db, faculty_id=faculty_id(1), now=NOW)

    [flag] = await fresh_db.fetch(
        "SELECT f.id, f.session_id, f.student_id, f.kind, f.state, f.evidence, cs.ends_at, cs.room_id, c.faculty_id"
        " FROM checkin_flags f JOIN class_sessions cs ON cs.id = f.session_id JOIN courses c ON c.id = cs.course_id")
    assert (flag["id"], flag["kind"], flag["state"], flag["faculty_id"]) == (flag_id, "wrong_room", "open", faculty_id(1))
    assert flag["ends_at"] <= NOW and flag["session_id"] not in {s.session_id for s in campus.sessions}
    assert json.loads(flag["evidence"])["room_id"] != flag["room_id"]
    # The flagged check-in counted (the past class already had it); no record was rewritten.
    assert await fresh_db.fetchval("SELECT status FROM attendance WHERE session_id = $1 AND student_id = $2",
                                   flag["session_id"], flag["student_id"]) == "present"
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log") == audit_before
    note = await fresh_db.fetchrow("SELECT user_id, link, data FROM notifications WHERE kind = 'checkin_flagged'")
    assert note["user_id"] == faculty_id(1) and note["link"] == f"/faculty/sessions/{flag['session_id']}"
    assert json.loads(note["data"])["flag_id"] == flag_id

    assert await ensure_checkin_demo(fresh_db, faculty_id=faculty_id(1), now=NOW) is None  # idempotent
    assert await fresh_db.fetchval("SELECT count(*) FROM checkin_flags") == 1
    assert await fresh_db.fetchval("SELECT count(*) FROM notifications WHERE kind = 'checkin_flagged'") == 1


async def test_a_student_without_a_record_is_checked_in_with_an_audit_entry(fresh_db: Database) -> None:
    campus = await ensure_campus(fresh_db, rooms=2, students=12, now=NOW)
    ended = campus.sessions[0]
    # An ended class nobody was marked in (the campus's own session, seen from after its end).
    later = ended.ends_at.replace(microsecond=0) + (ended.ends_at - ended.starts_at)
    await fresh_db.execute("UPDATE class_sessions SET status = 'cancelled' WHERE ends_at > $1 AND ends_at <= $2"
                           " AND id <> $3", ended.ends_at, later, ended.session_id)
    flag_id = await ensure_checkin_demo(fresh_db, faculty_id=faculty_id(1), now=later)
    flag = await fresh_db.fetchrow("SELECT session_id, student_id FROM checkin_flags WHERE id = $1", flag_id)
    assert flag["session_id"] == ended.session_id and flag["student_id"] == max(ended.enrolled)
    record = await fresh_db.fetchrow("SELECT status, source FROM attendance WHERE session_id = $1 AND student_id = $2",
                                     ended.session_id, flag["student_id"])
    assert dict(record) == {"status": "present", "source": "qr"}
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log WHERE entity_id = $1",
                                   f"{ended.session_id}/{flag['student_id']}") == 1
