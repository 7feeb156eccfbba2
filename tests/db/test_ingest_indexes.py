"""Migration 0034's heartbeat index: a device's stored clock samples are read through it, not from every event of the device."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import pytest

from hub.db import Database, open_database
from hub.db.checkin import CLOCK_SAMPLES_SQL, device_clock_samples

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=2) as database:
        yield database


async def seed_events(db: Database, devices: int, readings: int) -> None:
    """Per device: ``readings`` sensor readings over the last hour and one heartbeat a minute."""

    async def work(conn) -> None:
        await conn.execute("INSERT INTO rooms (id, name, building) VALUES ('r', 'R', 'B')")
        await conn.executemany("INSERT INTO devices (id, room_id, kind, alg, key) VALUES ($1, 'r', 'sensor',"
                               " 'hmac-sha256', '\\x00'::bytea)", [(f"d{k}",) for k in range(devices)])
        rows = []
        for k in range(devices):
            for i in range(readings):
                at = NOW - timedelta(seconds=3600 * i / readings)
                rows.append((f"d{k}", i, "sensor_reading", at, at + timedelta(milliseconds=20),
                             json.dumps({"metric": "temperature", "value": 20.0})))
            for m in range(60):
                at = NOW - timedelta(minutes=m)
                # Device d0's clock runs 3 s behind the hub; one heartbeat was made with a queued outbox.
                lag = timedelta(seconds=3) if k == 0 else timedelta(seconds=1)
                depth = 5 if m == 7 else 0
                rows.append((f"d{k}", readings + m, "heartbeat", at - lag, at,
                             json.dumps({"outbox_depth": depth, "uptime_s": 100})))
        await conn.copy_records_to_table(
            "events", records=[(f"00000000-0000-4000-8000-{n:012d}", *r) for n, r in enumerate(rows)],
            columns=["event_id", "device_id", "seq", "kind", "device_ts", "received_at", "body"])
        await conn.execute("ANALYZE events")

    await db.run(work, transaction=True)


async def test_clock_samples_read_the_heartbeat_index(fresh_db: Database) -> None:
    await seed_events(fresh_db, devices=20, readings=500)
    heartbeat_indexes = {r["indexname"] for r in await fresh_db.fetch(
        "SELECT indexname FROM pg_indexes WHERE tablename LIKE 'events%' AND indexdef LIKE '%(device_id, received_at)%'"
        " AND indexdef LIKE '%heartbeat%'")}
    assert "events_heartbeats_received" in heartbeat_indexes  # the parent's, and one per partition
    assert len(heartbeat_indexes) >= 2

    since = NOW - timedelta(minutes=15)
    plan = "\n".join(r[0] for r in await fresh_db.fetch(f"EXPLAIN {CLOCK_SAMPLES_SQL}", "d3", since))
    assert any(name in plan for name in heartbeat_indexes), plan
    assert "Seq Scan" not in plan, plan
    # Migration 0035 dropped 0034's per-check-in function: nothing calls it.
    assert await fresh_db.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 'device_clock_offset'") == 0

    # The samples: promptly sent heartbeats of the window (not the one made with a queued outbox), oldest first.
    samples = await device_clock_samples(fresh_db, "d0", since)
    assert [offset for _, offset in samples] == [timedelta(seconds=3)] * 15  # minutes 0..14 but 7, and 15 itself
    assert [at for at, _ in samples] == sorted(at for at, _ in samples)
    assert NOW - timedelta(minutes=7) not in [at for at, _ in samples]
    assert {offset for _, offset in await device_clock_samples(fresh_db, "d5", since)} == {timedelta(seconds=1)}
    assert await device_clock_samples(fresh_db, "d5", NOW + timedelta(minutes=1)) == []
