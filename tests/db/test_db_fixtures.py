"""The shared fixtures themselves: the loop reaches the test body, databases are what they claim."""
from __future__ import annotations

import asyncio

import pytest
import trio_asyncio

from hub.db import available_migrations, open_database
from hub.db.device_registry import load_devices

pytestmark = pytest.mark.integration


async def test_aio_loop_is_visible_in_the_test_body(aio_loop: trio_asyncio.TrioEventLoop) -> None:
    # pytest-trio shares one contextvars.Context between fixtures and the test.
    assert trio_asyncio.current_loop.get() is aio_loop

    async def on_asyncio() -> asyncio.AbstractEventLoop:
        await asyncio.sleep(0)
        return asyncio.get_running_loop()

    assert await trio_asyncio.aio_as_trio(on_asyncio)() is aio_loop


async def test_db_fixture_answers(db) -> None:
    assert await db.fetchval("SELECT 1") == 1
    assert await db.run(lambda conn: conn.fetchval("SELECT current_database()")) == db.dsn.rsplit("/", 1)[1]
    assert await db.ping()


async def test_run_database_is_migrated(db) -> None:
    versions = [r["version"] for r in await db.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [m.version for m in available_migrations()]


async def test_fresh_database_is_migrated_and_empty(aio_loop, fresh_database_url: str, database_url: str) -> None:
    assert fresh_database_url != database_url
    async with open_database(fresh_database_url) as fresh:
        assert await fresh.fetchval("SELECT count(*) FROM schema_migrations") == len(available_migrations())
        assert await fresh.fetchval("SELECT count(*) FROM users") == 0


async def test_empty_database_has_no_tables(aio_loop, empty_database_url: str) -> None:
    async with open_database(empty_database_url) as empty:
        assert await empty.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0


def test_topic_prefix_is_unique_per_run(topic_prefix: str) -> None:
    assert topic_prefix.startswith("test-") and len(topic_prefix) > 20


def test_campus_fixture_is_seeded(campus) -> None:
    assert len(campus.students) == 30
    assert len(campus.devices) == len(campus.sessions) == 3


async def test_campus_fixture_rows_are_visible_through_db(campus, db) -> None:
    # A sync session fixture (own trio.run) and an async one (this test's run) together.
    ids = [d.device_id for d in campus.devices]
    loaded = await load_devices(db, ids)  # keys are sealed at rest: read them the hub's way
    assert {d.device_id: d.key for d in loaded} == {d.device_id: d.signing_key for d in campus.devices}
