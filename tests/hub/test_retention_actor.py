"""The retention actor (hub/services/retention.py): exact hourly timers, progress in /metrics, the lock.

Runs the real RetentionKeeper on a fresh database under a trio MockClock that
runs at wall speed and is jumped forward between steps (its wall clock follows
trio's), so days pass in seconds. (Not autojump: it would also jump asyncpg's
timeouts while a query is in flight; tests/hub/test_scheduler_timers.py does the same.)
"""
from __future__ import annotations

import os
import re
import uuid
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest
import trio
import trio.lowlevel
from trio.testing import MockClock
from trio_asyncio import aio_as_trio

from actors import ChildSpec, Supervisor
from hub.core.metrics import HubMetrics
from hub.core.records import AcceptedEvent, Commit
from hub.db import Database, open_database
from hub.db.ingest import write_batch
from hub.db.retention import EVENTS, RETENTION_LOCK, RetentionPeriods
from hub.services.retention import AFTER_THE_HOUR_S, FIRST_RUN_S, RetentionKeeper

BASE = datetime(2026, 3, 20, 10, 30, tzinfo=timezone.utc)
PERIODS = RetentionPeriods(events_days=14, ahead_days=3)
DEVICE = "dev-retention-actor"


@pytest.fixture
def jump_clock() -> MockClock:
    return MockClock(rate=1.0)


@pytest.fixture
async def rdb(aio_loop, fresh_database_url: str):
    async with open_database(fresh_database_url, max_size=3) as database:
        await database.execute("INSERT INTO rooms (id, name, building) VALUES ('r-ra', 'R', 'B')")
        await database.execute(
            "INSERT INTO devices (id, room_id, kind, alg, key) VALUES ($1, 'r-ra', 'sensor', 'hmac-sha256', $2)",
            DEVICE, os.urandom(32))
        yield database


class Wall:
    """The actor's wall clock: BASE when made, then following trio's (mock) clock."""

    def __init__(self) -> None:
        self.t0 = trio.current_time()

    def now(self) -> datetime:
        return BASE + timedelta(seconds=trio.current_time() - self.t0)

    async def advance_to(self, clock: MockClock, at: datetime) -> None:
        """Jump the mock clock to ``at`` on this wall clock (a no-op if it is already past)."""
        clock.jump(max(0.0, (at - self.now()).total_seconds()))
        await trio.lowlevel.checkpoint()


async def until(check, timeout: float = 30.0) -> None:
    """Wait (real time) until ``check()`` holds: the pass's database work takes real time."""
    with trio.move_on_after(timeout):
        while not check():
            await trio.sleep(0.05)
    assert check()


async def _events_at(db: Database, *days_ago: int) -> None:
    commits = []
    for n in days_ago:
        at = BASE - timedelta(days=n)
        event_id = uuid.uuid4()
        commits.append(Commit(event_id.bytes, (AcceptedEvent(event_id, DEVICE, 1, "heartbeat", at, at, None, {}),),
                              signed_at=at))
    await write_batch(db, commits)


def _metric(metrics: HubMetrics, name: str, **labels: str) -> float:
    text = metrics.render()
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + (f"{{{label_text}}}" if labels else "")) + r" (\S+)"
    found = re.search(rf"^{pattern}$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _start(nursery: trio.Nursery, db: Database, metrics: HubMetrics, wall: Wall) -> Supervisor:
    root = Supervisor("root")
    await nursery.start(root.run)
    await root.start_child(ChildSpec("retention", lambda: RetentionKeeper(
        db, PERIODS, metrics, clock=lambda: wall.now().timestamp()), shutdown_timeout=5))
    return root


async def test_passes_run_on_exact_hourly_timers_and_show_in_metrics(rdb: Database, jump_clock: MockClock) -> None:
    await _events_at(rdb, 0, 5, 20)
    metrics = HubMetrics()
    done = lambda: _metric(metrics, "campushub_retention_passes_total", outcome="done")  # noqa: E731
    wall = Wall()
    async with trio.open_nursery() as nursery:
        await _start(nursery, rdb, metrics, wall)
        # Started: today's and the next days' partitions exist before any pass (the ingress starts after).
        parts = sorted(await rdb.run(EVENTS.existing))
        assert parts == [BASE.date() + timedelta(days=i) for i in range(4)]
        assert done() == 0

        await wall.advance_to(jump_clock, BASE + timedelta(seconds=FIRST_RUN_S))
        await until(lambda: done() == 1)
        assert _metric(metrics, "campushub_retention_rows_removed_total", table="events") == 1  # the 20-day-old row
        assert _metric(metrics, "campushub_retention_last_run_timestamp_seconds") == pytest.approx(
            (BASE + timedelta(seconds=FIRST_RUN_S)).timestamp(), abs=5)
        assert await rdb.fetchval("SELECT count(*) FROM events") == 2

        # The next pass is due AFTER_THE_HOUR_S past the next hour (11:05 from 10:30), not before.
        due = BASE.replace(minute=0) + timedelta(hours=1, seconds=AFTER_THE_HOUR_S)
        await wall.advance_to(jump_clock, due - timedelta(seconds=60))
        await trio.sleep(0.5)
        assert done() == 1
        await wall.advance_to(jump_clock, due)
        await until(lambda: done() == 2)

        # Ten days on, the 5-day-old event's partition is 15 days old: the next pass drops it.
        await wall.advance_to(jump_clock, due + timedelta(days=10))
        await until(lambda: done() == 3)
        assert _metric(metrics, "campushub_retention_partitions_dropped_total", table="events") >= 1
        assert await rdb.fetchval("SELECT count(*) FROM events") == 1
        assert _metric(metrics, "campushub_retention_rows_removed_total", table="events") == 2
        nursery.cancel_scope.cancel()


async def test_a_keeper_skips_while_another_process_prunes(rdb: Database, jump_clock: MockClock,
                                                           fresh_database_url: str) -> None:
    await _events_at(rdb, 20)
    metrics = HubMetrics()
    other = await aio_as_trio(asyncpg.connect)(fresh_database_url)
    try:
        async with trio.open_nursery() as nursery:
            assert await aio_as_trio(other.fetchval)("SELECT pg_try_advisory_lock($1)", RETENTION_LOCK)
            wall = Wall()
            await _start(nursery, rdb, metrics, wall)
            await wall.advance_to(jump_clock, BASE + timedelta(seconds=FIRST_RUN_S))
            await until(lambda: _metric(metrics, "campushub_retention_passes_total", outcome="skipped") == 1)
            assert _metric(metrics, "campushub_retention_passes_total", outcome="done") == 0
            assert await rdb.fetchval("SELECT count(*) FROM events") == 1  # nothing pruned by the skipper

            await aio_as_trio(other.execute)("SELECT pg_advisory_unlock($1)", RETENTION_LOCK)
            await wall.advance_to(jump_clock, BASE + timedelta(hours=1))
            await until(lambda: _metric(metrics, "campushub_retention_passes_total", outcome="done") == 1)
            assert await rdb.fetchval("SELECT count(*) FROM events") == 0
            nursery.cancel_scope.cancel()
    finally:
        await aio_as_trio(other.close)()


async def test_two_keepers_on_one_database_prune_each_row_once(rdb: Database, jump_clock: MockClock) -> None:
    await _events_at(rdb, 20, 21, 22)
    first, second = HubMetrics(), HubMetrics()
    async with trio.open_nursery() as nursery:
        wall = Wall()
        await _start(nursery, rdb, first, wall)
        await _start(nursery, rdb, second, wall)
        await wall.advance_to(jump_clock, BASE + timedelta(seconds=FIRST_RUN_S))
        await until(lambda: sum(_metric(m, "campushub_retention_passes_total", outcome=o)
                                for m in (first, second) for o in ("done", "skipped")) == 2)
        removed = sum(_metric(m, "campushub_retention_rows_removed_total", table="events") for m in (first, second))
        passes = sum(_metric(m, "campushub_retention_passes_total", outcome=o)
                     for m in (first, second) for o in ("done", "skipped"))
        assert passes == 2 and removed == 3
        assert await rdb.fetchval("SELECT count(*) FROM events") == 0
        nursery.cancel_scope.cancel()
