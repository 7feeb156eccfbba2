"""The insights demo: one demo student in each band, a pending condonation application, idempotent."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import AsyncIterator

import pytest

from hub.db import Database, open_database
from hub.db.insights import standings
from hub.db.seed import course_id, ensure_campus
from hub.db.seed.insights import ensure_insights_demo


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=2) as database:
        yield database


async def test_demo_puts_one_student_in_each_band(fresh_db: Database) -> None:
    now = datetime.now(timezone.utc)
    await ensure_campus(fresh_db, rooms=3, students=12, now=now)
    assert await ensure_insights_demo(fresh_db, course_id=course_id(1), now=now)
    rows = await standings(fresh_db, now, course_id=course_id(1))
    st = [r.standing() for r in rows]
    assert [s.band for s in st[:3]] == ["condonable", "eligible", "barred"]
    assert all(s.band == "eligible" for s in st[3:])
    assert rows[0].condonation_state == "pending"
    assert await fresh_db.fetchval("SELECT count(*) FROM notifications WHERE kind = 'condonation_requested'") >= 1
    assert await fresh_db.fetchval("SELECT count(*) FROM webhook_subscriptions") == 0
    # Every record came with its audit entry.
    assert await fresh_db.fetchval(
        "SELECT count(*) FROM audit_log WHERE actor = 'seed' AND reason = 'demo attendance history'"
    ) == await fresh_db.fetchval("SELECT count(*) FROM attendance WHERE session_id LIKE 'demo-hist-%'")
    assert not await ensure_insights_demo(fresh_db, course_id=course_id(1), now=now)
    assert await fresh_db.fetchval("SELECT count(*) FROM condonation_applications") == 1
