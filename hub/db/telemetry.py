"""Telemetry storage: daily partitions of ``sensor_readings``, hourly aggregates, retention; the web's reads.

Layout (migration 0007): ``sensor_readings`` is range-partitioned by
``device_ts`` into UTC days (``sensor_readings_pYYYYMMDD``) plus a DEFAULT
partition that catches any reading outside them (far past, far future), so
no reading is ever refused. ``sensor_readings_hourly`` keeps
count/sum/min/max per device, metric and hour.

One maintenance pass (:func:`maintain`, run hourly by hub/services/telemetry.py):

1. create the partitions of every day in [today − raw_days, today + ahead]
   that is missing, moving any rows the DEFAULT partition holds for it;
2. recompute (replace) the aggregates of the last ``lookback_hours``
   complete hours from the raw rows, so readings that arrive a little late
   are counted;
3. drop each raw partition older than the retention, after recomputing all
   its hours in the same transaction: an hour is never lost unaggregated,
   whenever its readings arrived;
4. fold DEFAULT-partition rows older than the retention into the
   aggregates (added, not replaced: their raw partition is gone) and delete
   them, in one statement;
5. delete aggregates and health history older than ``hourly_days``.

Concurrency contract: :func:`maintain` takes one pooled connection for the
pass and a session advisory lock (a second hub's pass is skipped, not
queued); each step is its own short transaction, so the batch writer's
COPY waits at most for one partition's attach or drop. Cancelling it
rolls back the step in progress. The read functions are one round trip each.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import asyncpg

from . import advisory
from ._pool import Database
from .partitions import DailyPartitions, day_start

#: The raw readings' daily partitions (the mechanics are shared: hub/db/partitions.py).
SENSOR_READINGS = DailyPartitions("sensor_readings", "device_ts")
PARENT = SENSOR_READINGS.parent
DEFAULT_PARTITION = SENSOR_READINGS.default
#: The maintenance pass's session advisory lock, on the pass's pooled connection (hub/db/advisory.py).
_MAINTENANCE_LOCK = advisory.TELEMETRY_LOCK
_BUCKET_ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"

# Replace the aggregates of [$1, $2) with what the raw rows of `source` say.
_ROLLUP = (
    "INSERT INTO sensor_readings_hourly (device_id, metric, hour, unit, n, sum, min, max)"
    " SELECT device_id, metric, date_bin('1 hour', device_ts, " + _BUCKET_ORIGIN + "),"
    " max(unit), count(*), sum(value), min(value), max(value)"
    " FROM {source} WHERE device_ts >= $1 AND device_ts < $2 GROUP BY 1, 2, 3"
    " ON CONFLICT (device_id, metric, hour) DO UPDATE SET unit = EXCLUDED.unit, n = EXCLUDED.n,"
    " sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max"
)
# Move DEFAULT-partition rows older than $1 into the aggregates, adding to what is there.
_FOLD_OLD_DEFAULT = (
    "WITH moved AS (DELETE FROM " + DEFAULT_PARTITION + " WHERE device_ts < $1"
    "   RETURNING device_id, metric, value, unit, device_ts)"
    " INSERT INTO sensor_readings_hourly AS h (device_id, metric, hour, unit, n, sum, min, max)"
    " SELECT device_id, metric, date_bin('1 hour', device_ts, " + _BUCKET_ORIGIN + "),"
    " max(unit), count(*), sum(value), min(value), max(value) FROM moved GROUP BY 1, 2, 3"
    " ON CONFLICT (device_id, metric, hour) DO UPDATE SET n = h.n + EXCLUDED.n, sum = h.sum + EXCLUDED.sum,"
    " min = least(h.min, EXCLUDED.min), max = greatest(h.max, EXCLUDED.max)"
)


@dataclass(frozen=True)
class RetentionPolicy:
    #: Raw readings are kept this many whole days (at least 2: the re-roll lookback must fit inside).
    raw_days: int = 14
    #: Hourly aggregates (and device health history) are kept this many days.
    hourly_days: int = 400
    #: Daily partitions are created this many days ahead.
    ahead_days: int = 3
    #: Complete hours recomputed on every pass, for readings that arrive a little late.
    lookback_hours: int = 3

    def __post_init__(self) -> None:
        if self.raw_days < 2:
            raise ValueError("raw telemetry retention must be at least 2 days")
        if self.hourly_days < self.raw_days:
            raise ValueError("hourly aggregates must be kept at least as long as raw readings")
        if self.lookback_hours >= self.raw_days * 24:
            raise ValueError("lookback_hours must be shorter than the raw retention")


@dataclass
class MaintenanceReport:
    created: list[date] = field(default_factory=list)
    dropped: list[date] = field(default_factory=list)
    moved_from_default: int = 0
    rolled_hours: int = 0
    folded_late_rows: int = 0
    deleted_hourly: int = 0
    deleted_history: int = 0
    skipped: bool = False


def partition_name(day: date) -> str:
    return SENSOR_READINGS.name(day)


def hour_floor(at: datetime) -> datetime:
    at = at.astimezone(timezone.utc)
    return at.replace(minute=0, second=0, microsecond=0)


async def list_partitions(db: Database) -> list[date]:
    """The days that have a raw partition, in order."""
    return sorted(await db.run(SENSOR_READINGS.existing))


async def _drop_partition(conn: asyncpg.Connection, day: date, name: str) -> None:
    async with conn.transaction():
        await conn.execute(_ROLLUP.format(source=name), day_start(day), day_start(day + timedelta(days=1)))
        await SENSOR_READINGS.drop_partition(conn, name)


async def _create_missing_partitions(conn: asyncpg.Connection, existing: dict[date, str], first: date, last: date,
                                     report: MaintenanceReport) -> None:
    created, moved = await SENSOR_READINGS.create_missing(conn, existing, first, last)
    report.created.extend(created)
    report.moved_from_default += moved


async def ensure_partitions(db: Database, now: datetime,
                            policy: RetentionPolicy = RetentionPolicy()) -> MaintenanceReport:
    """Only the first step of :func:`maintain`: the raw partitions from the retention's first day
    to ``policy.ahead_days`` ahead. Run at hub start, before the ingress reads anything: the
    first pass of a fresh database would otherwise create today's partition while the writer
    COPYs today's readings into DEFAULT, and the writer's batch fails on the moved partition
    constraint (it then retries row by row: nothing lost, but slow). One catalog query when
    the partitions exist. Skipped (``report.skipped``) if another hub holds the maintenance lock.
    """
    report = MaintenanceReport()
    today = now.astimezone(timezone.utc).date()

    async def work(conn: asyncpg.Connection) -> MaintenanceReport:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _MAINTENANCE_LOCK):
            report.skipped = True
            return report
        try:
            await _create_missing_partitions(conn, await SENSOR_READINGS.existing(conn), today - timedelta(days=policy.raw_days),
                                             today + timedelta(days=policy.ahead_days), report)
            return report
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MAINTENANCE_LOCK)

    return await db.run(work)


async def maintain(db: Database, now: datetime, policy: RetentionPolicy = RetentionPolicy()) -> MaintenanceReport:
    """One maintenance pass at ``now`` (see the module docstring). Idempotent."""
    report = MaintenanceReport()
    today = now.astimezone(timezone.utc).date()
    keep_from = today - timedelta(days=policy.raw_days)  # the oldest day whose raw rows are kept
    raw_cutoff = day_start(keep_from)

    async def work(conn: asyncpg.Connection) -> MaintenanceReport:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _MAINTENANCE_LOCK):
            report.skipped = True
            return report
        try:
            existing = await SENSOR_READINGS.existing(conn)
            await _create_missing_partitions(conn, existing, keep_from, today + timedelta(days=policy.ahead_days),
                                             report)
            end = hour_floor(now)
            start = max(end - timedelta(hours=policy.lookback_hours), raw_cutoff)
            if start < end:
                await conn.execute(_ROLLUP.format(source=PARENT), start, end)
                report.rolled_hours = int((end - start).total_seconds() // 3600)
            for day, name in sorted(existing.items()):
                if day < keep_from:
                    await _drop_partition(conn, day, name)
                    report.dropped.append(day)
            status = await conn.execute(_FOLD_OLD_DEFAULT, raw_cutoff)
            report.folded_late_rows = int(status.split()[-1])
            old = now - timedelta(days=policy.hourly_days)
            report.deleted_hourly = int((await conn.execute(
                "DELETE FROM sensor_readings_hourly WHERE hour < $1", old)).split()[-1])
            report.deleted_history = int((await conn.execute(
                "DELETE FROM device_health_history WHERE at < $1", old)).split()[-1])
            return report
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MAINTENANCE_LOCK)

    return await db.run(work)


# --- reads for the web ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    unit: str | None
    #: (bucket start, avg, min, max), oldest first.
    points: tuple[tuple[datetime, float, float, float], ...]


async def raw_series(
    db: Database, device_id: str, metric: str, start: datetime, end: datetime, bucket_s: int,
) -> Series:
    """Readings of [start, end) averaged into ``bucket_s`` buckets (partition pruning keeps it to the days touched)."""
    rows = await db.fetch(
        "SELECT date_bin(make_interval(secs => $5), device_ts, " + _BUCKET_ORIGIN + ") AS t,"
        " avg(value) AS avg, min(value) AS min, max(value) AS max, max(unit) AS unit"
        " FROM sensor_readings WHERE device_id = $1 AND metric = $2 AND device_ts >= $3 AND device_ts < $4"
        " GROUP BY 1 ORDER BY 1", device_id, metric, start, end, bucket_s)
    return Series(rows[-1]["unit"] if rows else None, tuple((r["t"], r["avg"], r["min"], r["max"]) for r in rows))


async def hourly_series(db: Database, device_id: str, metric: str, start: datetime, end: datetime) -> Series:
    """Hourly aggregates of [start, end)."""
    rows = await db.fetch(
        "SELECT hour AS t, sum / n AS avg, min, max, unit FROM sensor_readings_hourly"
        " WHERE device_id = $1 AND metric = $2 AND hour >= $3 AND hour < $4 ORDER BY hour",
        device_id, metric, start, end)
    return Series(rows[-1]["unit"] if rows else None, tuple((r["t"], r["avg"], r["min"], r["max"]) for r in rows))


async def device_metrics(db: Database, device_id: str, now: datetime) -> list[str]:
    """Metrics the device reported: in the last day's raw readings or the kept aggregates."""
    rows = await db.fetch(
        "SELECT metric FROM sensor_readings WHERE device_id = $1 AND device_ts >= $2"
        " UNION SELECT metric FROM sensor_readings_hourly WHERE device_id = $1 ORDER BY 1",
        device_id, now - timedelta(days=1))
    return [r["metric"] for r in rows]
