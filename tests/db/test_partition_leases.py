"""Partition leases in PostgreSQL (hub/db/partition_leases.py).

Claim, renew, release, expiry by the database's clock, fences, two workers contending, a dead worker.
"""
from __future__ import annotations

from typing import AsyncIterator

import asyncpg
import pytest
import trio
from trio_asyncio import aio_as_trio

from hub.db import Database, open_database
from hub.db.partition_leases import (
    claim,
    forget_unseen_workers,
    forget_worker,
    live_workers,
    read_leases,
    register_worker,
    release,
    renew,
)
from hub.domain.partitions import PartitionLease, balance_plan

LONG_S = 60.0
SHORT_S = 0.3


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=2) as database:
        yield database


async def owners(db: Database) -> dict[int, tuple[str | None, int]]:
    return {r["partition"]: (r["owner"], r["fence"])
            for r in await db.fetch("SELECT partition, owner, fence FROM partition_leases ORDER BY partition")}


async def expire_now(db: Database, partitions: list[int]) -> None:
    """Make the leases of ``partitions`` run out by the database's clock (as a stopped worker's would)."""
    await db.execute("UPDATE partition_leases SET expires_at = now() - interval '1 ms'"
                     " WHERE partition = ANY($1::integer[])", partitions)


async def test_reading_creates_the_missing_rows_free_and_reports_every_row(fresh_db: Database) -> None:
    assert await read_leases(fresh_db, 4) == [PartitionLease(p, None, 0, True) for p in range(4)]
    assert await read_leases(fresh_db, 4) == [PartitionLease(p, None, 0, True) for p in range(4)]
    assert await claim(fresh_db, "a", [6], LONG_S) == {6: 1}  # a row beyond the count (the count was lowered)
    assert await read_leases(fresh_db, 4) == [PartitionLease(p, None, 0, True) for p in range(4)] + [
        PartitionLease(6, "a", 1, False)]
    assert sorted(await owners(fresh_db)) == [0, 1, 2, 3, 6]


async def test_claim_renew_release_and_the_fence(fresh_db: Database) -> None:
    await read_leases(fresh_db, 4)
    assert await claim(fresh_db, "a", [0, 1, 2], LONG_S) == {0: 1, 1: 1, 2: 1}
    # Held partitions are left out; a partition without a row yet is created and claimed.
    assert await claim(fresh_db, "b", [1, 2, 3, 9], LONG_S) == {3: 1, 9: 1}
    # Renewing and claiming again what one holds keep the fence.
    assert await renew(fresh_db, "a", [0, 1, 2], LONG_S) == {0, 1, 2}
    assert await claim(fresh_db, "a", [0, 0, 1], LONG_S) == {0: 1, 1: 1}
    assert await renew(fresh_db, "a", [3], LONG_S) == set()  # not a's
    assert await release(fresh_db, "a", [1, 3]) == {1}  # 3 is b's: untouched
    assert (await read_leases(fresh_db, 4))[1] == PartitionLease(1, None, 1, True)
    assert await renew(fresh_db, "a", [1], LONG_S) == set()  # released: no longer a's
    # A change of owner steps the fence, also from a release back to the same worker.
    assert await claim(fresh_db, "b", [1], LONG_S) == {1: 2}
    assert await release(fresh_db, "b", [1]) == {1}
    assert await claim(fresh_db, "b", [1], LONG_S) == {1: 3}
    assert await owners(fresh_db) == {0: ("a", 1), 1: ("b", 3), 2: ("a", 1), 3: ("b", 1), 9: ("b", 1)}
    # acquired_at marks the change of owner; a renewal moves expires_at only.
    before = await fresh_db.fetchrow("SELECT acquired_at, expires_at FROM partition_leases WHERE partition = 0")
    assert await renew(fresh_db, "a", [0], LONG_S) == {0}
    after = await fresh_db.fetchrow("SELECT acquired_at, expires_at FROM partition_leases WHERE partition = 0")
    assert before is not None and after is not None
    assert after["acquired_at"] == before["acquired_at"] and after["expires_at"] > before["expires_at"]


async def test_nothing_to_do_asks_nothing_and_bad_arguments_are_refused(fresh_db: Database) -> None:
    assert await claim(fresh_db, "a", [], LONG_S) == {}
    assert await renew(fresh_db, "a", [], LONG_S) == set()
    assert await release(fresh_db, "a", []) == set()
    with pytest.raises(ValueError):
        await claim(fresh_db, "a", [-1, 2], LONG_S)
    with pytest.raises(ValueError):
        await claim(fresh_db, "a", [2], 0)
    with pytest.raises(ValueError):
        await read_leases(fresh_db, 0)
    assert await owners(fresh_db) == {}


async def test_expiry_is_judged_by_the_databases_clock(fresh_db: Database) -> None:
    assert await claim(fresh_db, "a", [0, 1], SHORT_S) == {0: 1, 1: 1}
    assert await claim(fresh_db, "b", [0, 1], LONG_S) == {}  # still a's
    # The lease runs out by the database's clock: nothing but time passes here.
    with trio.fail_after(5):
        while not all(lease.expired for lease in await read_leases(fresh_db, 2)):
            await trio.sleep(0.05)
    assert await fresh_db.fetchval("SELECT bool_and(expires_at <= now()) FROM partition_leases")
    # An expired lease is no longer the owner's to renew, and anyone may claim it, with a new fence.
    assert await renew(fresh_db, "a", [0, 1], LONG_S) == set()
    assert await claim(fresh_db, "b", [0], LONG_S) == {0: 2}
    # The former owner may claim its own expired lease again: no change of owner, no new fence.
    assert await claim(fresh_db, "a", [1], LONG_S) == {1: 1}
    assert await owners(fresh_db) == {0: ("b", 2), 1: ("a", 1)}


async def test_a_lease_set_in_the_past_or_future_by_the_database_decides(fresh_db: Database) -> None:
    assert await claim(fresh_db, "a", [0, 1], LONG_S) == {0: 1, 1: 1}
    await expire_now(fresh_db, [1])
    assert await read_leases(fresh_db, 2) == [PartitionLease(0, "a", 1, False), PartitionLease(1, "a", 1, True)]
    assert await claim(fresh_db, "b", [0, 1], LONG_S) == {1: 2}


async def _wait_for_lock_waiters(conn: asyncpg.Connection, count: int) -> None:
    with trio.fail_after(10):
        while await aio_as_trio(conn.fetchval)(
                "SELECT count(*) FROM pg_locks WHERE relation = 'partition_leases'::regclass AND NOT granted") < count:
            await trio.sleep(0.01)


@pytest.mark.parametrize("rows", ["missing", "free", "expired"])
async def test_two_workers_claiming_at_once_get_each_partition_exactly_once(
        aio_loop, fresh_database_url: str, rows: str) -> None:
    partitions = list(range(16))
    async with open_database(fresh_database_url, max_size=1) as db_a, \
            open_database(fresh_database_url, max_size=1) as db_b:
        if rows != "missing":
            await read_leases(db_a, 16)
        if rows == "expired":
            assert len(await claim(db_a, "old", partitions, LONG_S)) == 16
            await expire_now(db_a, partitions)
        # Hold both claims at the table's door, then let them in together.
        gate = await aio_as_trio(asyncpg.connect)(fresh_database_url)
        try:
            transaction = gate.transaction()
            await aio_as_trio(transaction.start)()
            await aio_as_trio(gate.execute)("LOCK TABLE partition_leases IN SHARE MODE")
            got: dict[str, dict[int, int]] = {}

            async def claimer(db: Database, worker: str, order: list[int]) -> None:
                got[worker] = await claim(db, worker, order, LONG_S)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(claimer, db_a, "a", partitions)
                # In any order: the adapter locks rows in ascending order, so the two never deadlock.
                nursery.start_soon(claimer, db_b, "b", partitions[::-1])
                await _wait_for_lock_waiters(gate, 2)
                await aio_as_trio(transaction.commit)()
        finally:
            await aio_as_trio(gate.close)()
        assert not set(got["a"]) & set(got["b"]), got
        assert set(got["a"]) | set(got["b"]) == set(partitions)
        fence = 2 if rows == "expired" else 1
        table = await owners(db_a)
        assert table == {p: ("a" if p in got["a"] else "b", fence) for p in partitions}
        assert {p: f for w in "ab" for p, f in got[w].items()} == {p: fence for p in partitions}


async def test_a_dead_worker_loses_its_partitions_to_the_other_with_a_higher_fence(
        aio_loop, fresh_database_url: str) -> None:
    async with open_database(fresh_database_url, max_size=1) as db_a, \
            open_database(fresh_database_url, max_size=1) as db_b:
        await register_worker(db_a, "a", "host-a", 101)
        await register_worker(db_b, "b", "host-b", 202)
        # a alone first: its plan takes all four.
        plan = balance_plan(4, ["a"], await read_leases(db_a, 4), "a")
        assert await claim(db_a, "a", plan.claim, SHORT_S) == {p: 1 for p in range(4)}
        # b sees them held: nothing to claim while a's leases run, whatever b's share.
        plan = balance_plan(4, await live_workers(db_b, SHORT_S), await read_leases(db_b, 4), "b")
        assert plan.claim == () and await claim(db_b, "b", range(4), SHORT_S) == {}
        # a stops renewing (and stops its heartbeat); b keeps beating.
        with trio.fail_after(5):
            while await live_workers(db_b, SHORT_S) != ["b"] or \
                    not all(lease.expired for lease in await read_leases(db_b, 4)):
                await register_worker(db_b, "b", "host-b", 202)
                await trio.sleep(0.05)
        plan = balance_plan(4, await live_workers(db_b, SHORT_S), await read_leases(db_b, 4), "b")
        assert plan.claim == (0, 1, 2, 3)
        assert await claim(db_b, "b", plan.claim, LONG_S) == {p: 2 for p in range(4)}
        # a, back from a pause, finds that it lost them all: it must stop serving them.
        assert await renew(db_a, "a", range(4), LONG_S) == set()
        assert await release(db_a, "a", range(4)) == set()
        assert await owners(db_a) == {p: ("b", 2) for p in range(4)}


async def test_worker_heartbeats(fresh_db: Database) -> None:
    await register_worker(fresh_db, "a", "host-a", 101)
    await register_worker(fresh_db, "b", "host-b", 202)
    assert await live_workers(fresh_db, LONG_S) == ["a", "b"]
    started = await fresh_db.fetchval("SELECT started_at FROM hub_workers WHERE worker_id = 'a'")
    await fresh_db.execute("UPDATE hub_workers SET seen_at = now() - interval '2 minutes' WHERE worker_id = 'a'")
    assert await live_workers(fresh_db, LONG_S) == ["b"]
    # A heartbeat of the same process keeps its start; another process under the same id is a new start.
    await register_worker(fresh_db, "a", "host-a", 101)
    assert await live_workers(fresh_db, LONG_S) == ["a", "b"]
    assert await fresh_db.fetchval("SELECT started_at FROM hub_workers WHERE worker_id = 'a'") == started
    await register_worker(fresh_db, "a", "host-a", 999)
    row = await fresh_db.fetchrow("SELECT pid, started_at FROM hub_workers WHERE worker_id = 'a'")
    assert row is not None and row["pid"] == 999 and row["started_at"] > started
    await fresh_db.execute("UPDATE hub_workers SET seen_at = now() - interval '2 days' WHERE worker_id = 'b'")
    assert await forget_unseen_workers(fresh_db, 86400) == ["b"]
    await forget_worker(fresh_db, "a")
    assert await fresh_db.fetchval("SELECT count(*) FROM hub_workers") == 0
