"""Advisory locks (hub/db/advisory.py): every fixed key declared once and distinct, and session_lock's contract."""
from __future__ import annotations

import ast
from pathlib import Path

import asyncpg
import trio
from trio_asyncio import aio_as_trio

from hub.db import Database, advisory, anomalies, backup, retention, risk, submissions, telemetry
from hub.db.advisory import session_lock

HUB = Path(__file__).resolve().parents[2] / "hub"
#: A key no feature uses: this test's own.
TEST_KEY = 0x5445_5354_0000_0001


def test_every_key_is_distinct() -> None:
    values = list(advisory.KEYS.values())
    assert len(values) == len(set(values)), advisory.KEYS
    assert TEST_KEY not in values


def test_the_modules_use_the_declared_keys() -> None:
    assert backup.BACKUP_LOCK == advisory.BACKUP_LOCK
    assert anomalies.ANOMALY_LOCK == advisory.ANOMALY_LOCK
    assert submissions.REMINDER_LOCK == advisory.REMINDER_LOCK
    assert risk.TRAINER_LOCK == advisory.TRAINER_LOCK
    assert retention.RETENTION_LOCK == advisory.RETENTION_LOCK
    assert telemetry._MAINTENANCE_LOCK == advisory.TELEMETRY_LOCK


def _literal_keys(tree: ast.AST) -> list[int]:
    """Integer literals given a ``*_LOCK`` (or ``*_LOCK_CLASS``) name, or passed next to SQL naming an advisory lock."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, int):
            if any(isinstance(t, ast.Name) and t.id.endswith(("_LOCK", "_LOCK_CLASS")) for t in node.targets):
                found.append(node.value.value)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and "advisory" in node.args[0].value:
            found += [a.value for a in node.args[1:] if isinstance(a, ast.Constant) and isinstance(a.value, int)]
    return found


def test_no_lock_key_is_declared_outside_the_registry() -> None:
    """A new lock somewhere in hub/ must take its number from (or add it to) hub/db/advisory.py."""
    declared = set(advisory.KEYS.values())
    strays = {}
    for path in HUB.rglob("*.py"):
        if path.name == "advisory.py":
            continue
        for key in _literal_keys(ast.parse(path.read_text(), str(path))):
            if key not in declared:
                strays[str(path.relative_to(HUB))] = hex(key)
    assert strays == {}


async def _held_elsewhere(url: str, key: int) -> bool:
    """Whether another session cannot take ``key`` now (it tries, and gives it back if it got it)."""
    other = await aio_as_trio(asyncpg.connect)(url)
    try:
        got = await aio_as_trio(other.fetchval)("SELECT pg_try_advisory_lock($1)", key)
        if got:
            await aio_as_trio(other.execute)("SELECT pg_advisory_unlock($1)", key)
        return not got
    finally:
        await aio_as_trio(other.close)()


async def test_session_lock_is_held_for_the_block_and_one_holder_only(db: Database, database_url: str) -> None:
    async with session_lock(db, TEST_KEY) as first:
        assert first is not None
        assert await aio_as_trio(first.fetchval)("SELECT 1") == 1  # the caller may use the connection
        async with session_lock(db, TEST_KEY) as second:
            assert second is None  # another session holds it: skipped at once, not queued
        assert await _held_elsewhere(database_url, TEST_KEY)
    assert first.is_closed()
    assert not await _held_elsewhere(database_url, TEST_KEY)


async def test_session_lock_is_released_when_the_holder_is_cancelled(db: Database, database_url: str) -> None:
    holding = trio.Event()
    with trio.move_on_after(5):
        async with trio.open_nursery() as nursery:
            async def hold() -> None:
                async with session_lock(db, TEST_KEY) as conn:
                    assert conn is not None
                    holding.set()
                    await trio.sleep_forever()

            nursery.start_soon(hold)
            await holding.wait()
            assert await _held_elsewhere(database_url, TEST_KEY)
            nursery.cancel_scope.cancel()
    assert holding.is_set()
    assert not await _held_elsewhere(database_url, TEST_KEY)
