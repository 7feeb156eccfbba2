"""hub.db.migrate: applies every migration once, records it, and is safe to run concurrently."""
from __future__ import annotations

import pytest
import trio

from hub.db import available_migrations, migrate, open_database

pytestmark = pytest.mark.integration


async def test_migrate_applies_all_then_nothing(aio_loop, empty_database_url: str) -> None:
    expected = available_migrations()
    assert expected, "no migrations found"
    async with open_database(empty_database_url) as db:
        assert await migrate(db) == expected
        assert await migrate(db) == []
        recorded = [(r["version"], r["name"]) for r in
                    await db.fetch("SELECT version, name FROM schema_migrations ORDER BY version")]
        assert recorded == [(m.version, m.name) for m in expected]
        assert await db.fetchval("SELECT to_regclass('public.class_sessions') IS NOT NULL")


async def test_concurrent_migrations_apply_each_once(aio_loop, empty_database_url: str) -> None:
    applied: list[list] = []
    async with open_database(empty_database_url, max_size=4) as db:

        async def one() -> None:
            applied.append(await migrate(db))

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(one)
        # The advisory lock serialises them: exactly one applied everything.
        assert sorted(len(a) for a in applied) == [0, 0, len(available_migrations())]
        assert await db.fetchval("SELECT count(*) FROM schema_migrations") == len(available_migrations())
