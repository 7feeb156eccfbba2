"""Migration 0034: device_clock_offset is planned once and reads the heartbeat index, not every event of the device."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import pytest

from hub.db import Database, open_database
from hub.db.checkin import CLOCK_OFFSET_SQL, device_clock_offset

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


async def test_clock_offset_uses_the_heartbeat_index(fresh_db: Database) -> None:
    await seed_events(fresh_db, devices=20, readings=500)
    heartbeat_indexes = {r["indexname"] for r in await fresh_db.fetch(
        "SELECT indexname FROM pg_indexes WHERE tablename LIKE 'events%' AND indexdef LIKE '%(device_id, received_at)%'"
        " AND indexdef LIKE '%heartbeat%'")}
    assert "events_heartbeats_received" in heartbeat_indexes  # the parent's, and one per partition
    assert len(heartbeat_indexes) >= 2

    # The function's query, as it runs: a generic plan (its SET clause), parameters bound at execution.
    body, config = await fresh_db.fetchrow(
        "SELECT prosrc, proconfig FROM pg_proc WHERE proname = 'device_clock_offset'")
    assert config == ["plan_cache_mode=force_generic_plan"]
    query = re.search(r"RETURN \((SELECT .*)\);", body, re.S).group(1)
    query = query.replace("p_device", "$1").replace("p_since", "$2")

    async def explain(conn) -> str:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE offset_query (text, timestamptz) AS {query}")
        since = (NOW - timedelta(minutes=15)).isoformat()
        rows = await conn.fetch(f"EXPLAIN EXECUTE offset_query('d3', '{since}')")
        await conn.execute("DEALLOCATE offset_query")
        await conn.execute("RESET plan_cache_mode")
        return "\n".join(r[0] for r in rows)

    plan = await fresh_db.run(explain)
    assert any(name in plan for name in heartbeat_indexes), plan
    assert "Seq Scan" not in plan, plan
    assert CLOCK_OFFSET_SQL == "SELECT device_clock_offset($1, $2)"

    # The answer is the smallest (received - device time) over promptly sent heartbeats of the window.
    assert await device_clock_offset(fresh_db, "d0", NOW - timedelta(minutes=15)) == timedelta(seconds=3)
    assert await device_clock_offset(fresh_db, "d5", NOW - timedelta(minutes=15)) == timedelta(seconds=1)
    assert await device_clock_offset(fresh_db, "d5", NOW + timedelta(minutes=1)) is None
