"""Advisory locks (hub/db/advisory.py): every fixed key declared once and distinct, and session_lock's contract."""
from __future__ import annotations

import ast
from functools import partial
from pathlib import Path

import asyncpg
import trio
from trio_asyncio import aio_as_trio

from hub.db import Database, advisory, anomalies, backup, retention, risk, submissions, telemetry
from hub.db.advisory import Holding, hold_session_lock, session_lock
from hub.db.pg_listen import OWN_CONNECTION_SETTINGS, own_connection

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


async def test_hold_session_lock_hands_over_when_the_holder_goes_and_comes_back_after_a_drop(
        db: Database, database_url: str) -> None:
    """Two holders of one key (two workers): one holds, the other stands by; a cancelled holder's lock is
    taken by the standby; a holder whose connection the server drops loses it and takes it again."""
    states: list[list[Holding]] = [[], []]
    changed = trio.Event()

    def recorder(index: int):  # noqa: ANN202 - a test's callback factory
        async def on_change(state: Holding, conn: object) -> None:
            nonlocal changed
            assert (conn is not None) == (state is Holding.HELD)
            states[index].append(state)
            changed.set()
            changed = trio.Event()
        return on_change

    async def until(predicate) -> None:  # noqa: ANN001 - a test's wait
        with trio.fail_after(10):
            while not predicate():
                await changed.wait()

    async with trio.open_nursery() as outer:
        first = trio.CancelScope()

        async def run_first(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with first:
                await hold_session_lock(db, TEST_KEY, recorder(0), retry_s=0.05, name="first", task_status=task_status)

        await outer.start(run_first)
        await outer.start(partial(hold_session_lock, db, TEST_KEY, recorder(1), retry_s=0.05, name="second"))
        assert (states[0], states[1]) == ([Holding.HELD], [Holding.TAKEN])

        first.cancel()  # the first worker stops: its connection closes, the lock with it
        await until(lambda: states[1][-1:] == [Holding.HELD])

        # The server drops the holder's connection (PostgreSQL restarting, a network cut).
        await db.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                         " AND classid::bigint = ($1::bigint >> 32) AND objid::bigint = ($1::bigint & 4294967295)"
                         " AND objsubid = 1", TEST_KEY)
        await until(lambda: states[1][-2:] == [Holding.LOST, Holding.HELD])
        assert await _held_elsewhere(database_url, TEST_KEY)
        outer.cancel_scope.cancel()
    assert not await _held_elsewhere(database_url, TEST_KEY)


async def test_a_lock_connection_has_short_server_keepalives(db: Database) -> None:
    """A worker whose machine vanishes must not hold its locks for the kernel's ~2 h: the server probes the
    connection (hub.db.pg_listen.OWN_CONNECTION_SETTINGS) and drops it, and the lock, within ~25 s."""
    async with own_connection(db) as conn:
        shown = {name: await aio_as_trio(conn.fetchval)(f"SHOW {name}") for name in OWN_CONNECTION_SETTINGS}
    assert shown == {name: value for name, value in OWN_CONNECTION_SETTINGS.items()}
