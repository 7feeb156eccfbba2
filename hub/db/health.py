"""Device health, its history, alarms and threshold state: the writer's part and the web's reads.

Concurrency contract: :func:`write_health_effects` runs inside the writer's
batch transaction (asyncio side, the caller's connection). The read
functions are one round trip each on the shared :class:`Database`, callable
from any trio task; they never write.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from hub.core.records import AlarmRow, DeviceHealthHistoryRow, DeviceHealthRow, ThresholdStateRow

from ._pool import Database

HEALTH_COLUMNS = (
    "device_id", "online", "last_seen", "last_change", "reason", "firmware", "uptime_s", "outbox_depth",
    "status_ts", "last_connect_at", "last_connect_reason", "last_disconnect_at", "last_disconnect_reason",
    "battery_pct", "signal_dbm", "clock_skew_ms", "error_count",
)
_HISTORY_COLUMNS = (
    "device_id", "at", "change", "online", "reason", "firmware", "uptime_s", "outbox_depth",
    "battery_pct", "signal_dbm", "clock_skew_ms", "error_count",
)
ALARM_COLUMNS = (
    "id", "device_id", "room_id", "type", "severity", "state", "raised_at", "acked_at", "acked_by",
    "cleared_at", "cleared_by", "value", "message", "details", "updated_at",
)


def _health_values(h: DeviceHealthRow) -> tuple:
    return tuple(getattr(h, c) for c in HEALTH_COLUMNS)


_UPSERT_HEALTH = (
    f"INSERT INTO device_health ({', '.join(HEALTH_COLUMNS)}, updated_at)"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(HEALTH_COLUMNS) + 1))}, now())"
    " ON CONFLICT (device_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in HEALTH_COLUMNS[1:]) + ", updated_at = now()"
)
_UPSERT_ALARM = (
    f"INSERT INTO alarms ({', '.join(ALARM_COLUMNS)})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(ALARM_COLUMNS) + 1))})"
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in ALARM_COLUMNS[1:])
)
# A rule deleted while its state was in flight: skip the row rather than fail the batch on the FK.
_UPSERT_THRESHOLD_STATE = (
    "INSERT INTO threshold_state (device_id, rule_id, pending_since, active, last_ts)"
    " SELECT s.* FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::boolean[], $5::timestamptz[])"
    "   AS s(device_id, rule_id, pending_since, active, last_ts)"
    " JOIN threshold_rules r ON r.id = s.rule_id"
    " ON CONFLICT (device_id, rule_id) DO UPDATE SET pending_since = EXCLUDED.pending_since,"
    " active = EXCLUDED.active, last_ts = EXCLUDED.last_ts"
)


async def write_health_effects(conn: asyncpg.Connection, by_type: dict[type, list]) -> None:
    """Persist the batch's health rows, history rows, alarm transitions and threshold states."""
    if health := by_type.get(DeviceHealthRow):
        latest = {h.device_id: h for h in health}  # last write of the batch wins
        await conn.executemany(_UPSERT_HEALTH, [_health_values(h) for h in latest.values()])
    if history := by_type.get(DeviceHealthHistoryRow):
        await conn.copy_records_to_table("device_health_history", columns=list(_HISTORY_COLUMNS), records=[
            (r.health.device_id, r.at, r.change, r.health.online, r.health.reason, r.health.firmware,
             r.health.uptime_s, r.health.outbox_depth, r.health.battery_pct, r.health.signal_dbm,
             r.health.clock_skew_ms, r.health.error_count)
            for r in history
        ])
    if alarms := by_type.get(AlarmRow):
        # In commit order, one by one: a clear must land before the next alarm of its type is raised.
        await conn.executemany(_UPSERT_ALARM, [
            (*(getattr(a, c) for c in ALARM_COLUMNS[:-2]), json.dumps(a.details), a.updated_at) for a in alarms
        ])
    if states := by_type.get(ThresholdStateRow):
        latest_state = {(s.device_id, s.rule_id): s for s in states}
        rows = list(latest_state.values())
        await conn.execute(
            _UPSERT_THRESHOLD_STATE, [s.device_id for s in rows], [s.rule_id for s in rows],
            [s.pending_since for s in rows], [s.active for s in rows], [s.last_ts for s in rows])


async def next_alarm_id(db: Database) -> int:
    """A fresh alarm id (the device actor assigns it at raise time, before the writer persists the alarm)."""
    return await db.fetchval("SELECT nextval(pg_get_serial_sequence('alarms', 'id'))")


# --- reads for the web ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthHistoryPage:
    total: int
    items: tuple[dict[str, Any], ...]


async def device_health_history(db: Database, device_id: str, limit: int, offset: int) -> HealthHistoryPage:
    """One page of a device's health transitions, newest first."""

    async def work(conn: asyncpg.Connection) -> HealthHistoryPage:
        total = await conn.fetchval("SELECT count(*) FROM device_health_history WHERE device_id = $1", device_id)
        rows = await conn.fetch(
            f"SELECT id, {', '.join(_HISTORY_COLUMNS[1:])} FROM device_health_history WHERE device_id = $1"
            " ORDER BY at DESC, id DESC LIMIT $2 OFFSET $3", device_id, limit, offset)
        return HealthHistoryPage(total, tuple(dict(r) for r in rows))

    return await db.run(work)


async def device_exists(db: Database, device_id: str) -> bool:
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM devices WHERE id = $1)", device_id))


def alarm_record(row: asyncpg.Record) -> dict[str, Any]:
    """An ``alarms`` row as a plain dict (details decoded)."""
    out = dict(row)
    details = out.get("details")
    out["details"] = json.loads(details) if isinstance(details, str) else (details or {})
    return out


DEVICE_OVERVIEW_SELECT = (
    "SELECT d.id AS device_id, d.room_id, r.name AS room_name, d.kind, d.model,"
    " d.revoked_at IS NOT NULL AS revoked, coalesce(h.online, false) AS online, h.last_seen,"
    " coalesce(h.firmware, '') AS firmware, coalesce(h.outbox_depth, 0) AS outbox_depth,"
    " coalesce(h.reason, '') AS reason, h.last_change, coalesce(h.uptime_s, 0) AS uptime_s,"
    " h.last_connect_at, coalesce(h.last_connect_reason, '') AS last_connect_reason,"
    " h.last_disconnect_at, coalesce(h.last_disconnect_reason, '') AS last_disconnect_reason,"
    " h.battery_pct, h.signal_dbm, h.clock_skew_ms, coalesce(h.error_count, 0) AS error_count,"
    " coalesce(a.n, 0)::int AS active_alarms, a.severity AS alarm_severity"
    " FROM devices d JOIN rooms r ON r.id = d.room_id"
    " LEFT JOIN device_health h ON h.device_id = d.id"
    " LEFT JOIN (SELECT device_id, count(*) AS n,"
    "   (array_agg(severity ORDER BY array_position("
    "     ARRAY['critical','major','minor','warning'], severity)))[1] AS severity"
    "   FROM alarms WHERE state IN ('active_unacked', 'active_acked') GROUP BY device_id) a"
    "   ON a.device_id = d.id"
)
"""Every device with its health and active-alarm summary; the list adds ``ORDER BY``, the detail ``WHERE``."""


async def device_overview(db: Database, device_id: str):  # -> web_queries.DeviceOverview | None
    """One device as the device list shows it, or None if there is no such device."""
    from .web_queries import DeviceOverview  # web_queries imports this module

    row = await db.fetchrow(DEVICE_OVERVIEW_SELECT + " WHERE d.id = $1", device_id)
    return None if row is None else DeviceOverview(**dict(row))


def as_iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
