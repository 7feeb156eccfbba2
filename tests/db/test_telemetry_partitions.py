"""Telemetry partitions, hourly aggregates and retention (hub/db/telemetry.py) on a real PostgreSQL."""
from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import pytest

from hub.core.records import Commit, SensorRow, internal_key
from hub.db import Database, open_database
from hub.db.ingest import write_batch
from hub.db.telemetry import (
    DEFAULT_PARTITION,
    RetentionPolicy,
    ensure_partitions,
    hourly_series,
    list_partitions,
    maintain,
    partition_name,
    raw_series,
)

NOW = datetime(2026, 3, 20, 10, 30, tzinfo=timezone.utc)
POLICY = RetentionPolicy(raw_days=14, hourly_days=400, ahead_days=3, lookback_hours=3)
DEVICE = "dev-telemetry"


@pytest.fixture
async def tdb(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=2) as database:
        await database.execute("INSERT INTO rooms (id, name, building) VALUES ('r-t', 'T', 'B')")
        await database.execute(
            "INSERT INTO devices (id, room_id, kind, alg, key) VALUES ($1, 'r-t', 'sensor', 'hmac-sha256', $2)",
            DEVICE, os.urandom(32))
        yield database


async def _store(db: Database, *readings: tuple[datetime, float]) -> None:
    """Through the batch writer's own path (COPY into the partitioned table)."""
    rows = tuple(SensorRow(uuid.uuid4(), DEVICE, "temperature", value, "°C", at) for at, value in readings)
    await write_batch(db, [Commit(internal_key(), rows)])


async def _in_default(db: Database) -> int:
    return await db.fetchval(f"SELECT count(*) FROM {DEFAULT_PARTITION}")


async def _hour(db: Database, hour: datetime):
    return await db.fetchrow(
        "SELECT n, sum, min, max FROM sensor_readings_hourly WHERE device_id = $1 AND metric = 'temperature'"
        " AND hour = $2", DEVICE, hour)


async def test_partitions_are_created_ahead_and_far_readings_land_in_default(tdb):
    far_past, far_future = NOW - timedelta(days=200), NOW + timedelta(days=60)
    await _store(tdb, (NOW, 21.0), (far_past, 5.0), (far_future, 40.0))
    assert await _in_default(tdb) == 3  # no daily partition yet: nothing is refused

    report = await maintain(tdb, NOW, POLICY)

    days = await list_partitions(tdb)
    assert days[0] == (NOW - timedelta(days=14)).date() and days[-1] == (NOW + timedelta(days=3)).date()
    assert len(days) == 18 and report.created == days
    assert report.moved_from_default == 1  # today's reading moved into its new partition
    today = await tdb.fetchval(f"SELECT count(*) FROM {partition_name(NOW.date())}")
    assert today == 1
    # The far-future reading waits in DEFAULT; the far-past one is older than the retention, so it
    # was folded into its hour's aggregate and removed.
    assert await tdb.fetchval(f"SELECT value FROM {DEFAULT_PARTITION}") == 40.0
    assert report.folded_late_rows == 1
    folded = await _hour(tdb, far_past.replace(minute=0, second=0))
    assert (folded["n"], folded["min"], folded["max"]) == (1, 5.0, 5.0)
    # Idempotent: a second pass creates nothing.
    again = await maintain(tdb, NOW, POLICY)
    assert again.created == [] and again.dropped == []


async def test_at_start_only_the_partitions_are_made_so_readings_never_land_in_default(tdb):
    """What the telemetry actor's started() runs before the ingress reads anything (hub/services/telemetry.py)."""
    report = await ensure_partitions(tdb, NOW, POLICY)
    days = await list_partitions(tdb)
    assert len(days) == 18 and report.created == days
    assert report.rolled_hours == 0 and report.dropped == []  # roll-ups and retention wait for the first pass
    await _store(tdb, (NOW, 21.0))
    assert await _in_default(tdb) == 0
    assert (await ensure_partitions(tdb, NOW, POLICY)).created == []


async def test_a_raw_partition_is_dropped_only_with_every_hour_aggregated(tdb):
    await maintain(tdb, NOW, POLICY)
    old_day = NOW - timedelta(days=10)
    hour = old_day.replace(minute=0, second=0)
    await _store(tdb, (hour + timedelta(minutes=5), 20.0), (hour + timedelta(minutes=35), 24.0))
    # This hour is long past the rolling lookback: nothing has aggregated it yet.
    await maintain(tdb, NOW, POLICY)
    assert await _hour(tdb, hour) is None

    # Five days later the day falls out of the 14-day retention: its partition is dropped, and
    # in the same transaction its hours are aggregated, including a reading that came in late.
    await _store(tdb, (hour + timedelta(minutes=50), 30.0))
    later = NOW + timedelta(days=5)
    report = await maintain(tdb, later, POLICY)

    assert old_day.date() in report.dropped
    assert old_day.date() not in await list_partitions(tdb)
    row = await _hour(tdb, hour)
    assert (row["n"], row["sum"], row["min"], row["max"]) == (3, 74.0, 20.0, 30.0)
    series = await hourly_series(tdb, DEVICE, "temperature", hour, hour + timedelta(hours=1))
    assert series.unit == "°C" and series.points[0][1] == pytest.approx(74.0 / 3)

    # A reading for that day arriving after the drop lands in DEFAULT and is added to the hour.
    await _store(tdb, (hour + timedelta(minutes=55), 10.0))
    assert await _in_default(tdb) == 1
    await maintain(tdb, later, POLICY)
    row = await _hour(tdb, hour)
    assert (row["n"], row["sum"], row["min"], row["max"]) == (4, 84.0, 10.0, 30.0)
    assert await _in_default(tdb) == 0


async def test_recent_hours_are_rolled_up_and_raw_series_bucket_them(tdb):
    await maintain(tdb, NOW, POLICY)
    base = NOW.replace(minute=0, second=0) - timedelta(hours=2)
    await _store(tdb, *((base + timedelta(minutes=m), 20.0 + m / 10) for m in range(0, 60, 10)))
    report = await maintain(tdb, NOW, POLICY)
    assert report.rolled_hours == 3
    row = await _hour(tdb, base)
    assert row["n"] == 6 and row["min"] == 20.0 and row["max"] == 25.0
    series = await raw_series(tdb, DEVICE, "temperature", base, base + timedelta(hours=1), 1800)
    assert [p[0] for p in series.points] == [base, base + timedelta(minutes=30)]
    assert series.points[0][2:] == (20.0, 22.0)


async def test_old_aggregates_and_health_history_expire(tdb):
    old = NOW - timedelta(days=401)
    await tdb.execute(
        "INSERT INTO sensor_readings_hourly (device_id, metric, hour, unit, n, sum, min, max)"
        " VALUES ($1, 'co2', $2, 'ppm', 1, 500, 500, 500), ($1, 'co2', $3, 'ppm', 1, 600, 600, 600)",
        DEVICE, old.replace(minute=0), (NOW - timedelta(days=30)).replace(minute=0))
    await tdb.execute(
        "INSERT INTO device_health_history (device_id, at, change, online) VALUES ($1, $2, 'offline', false),"
        " ($1, $3, 'online', true)", DEVICE, old, NOW)
    report = await maintain(tdb, NOW, POLICY)
    assert (report.deleted_hourly, report.deleted_history) == (1, 1)


def test_retention_policy_refuses_settings_that_could_lose_hours():
    with pytest.raises(ValueError):
        RetentionPolicy(raw_days=1)
    with pytest.raises(ValueError):
        RetentionPolicy(raw_days=14, hourly_days=7)
