"""Device health, its history, alarms and threshold state: the device actor's persistence and the web's reads.

The health columns are not listed here: every statement is generated from
the one declaration, :class:`hub.domain.device_health.DeviceHealth`
(:data:`~hub.domain.device_health.HEALTH_FIELDS`), and the writer persists that
object itself.

Concurrency contract: :func:`write_health_effects` runs inside the writer's
batch transaction (asyncio side, the caller's connection). The other
functions are one round trip each on the shared :class:`Database` (several
statements share one connection through ``db.run``), callable from any trio
task; they never write (:func:`next_alarm_id` only advances a sequence).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Mapping

import asyncpg

from hub.core.records import AlarmRow, DeviceHealthHistoryRow, ThresholdStateRow
from hub.domain.alarms import Alarm
from hub.domain.device_health import HEALTH_FIELDS, HISTORY_HEALTH_FIELDS, DeviceHealth

from ._pool import Database
from .paging import Page

_HISTORY_COLUMNS = ("device_id", "at", "change", *HISTORY_HEALTH_FIELDS)
ALARM_COLUMNS = (
    "id", "device_id", "room_id", "type", "severity", "state", "raised_at", "acked_at", "acked_by",
    "cleared_at", "cleared_by", "value", "message", "details", "updated_at",
)

_UPSERT_HEALTH = (
    f"INSERT INTO device_health ({', '.join(HEALTH_FIELDS)}, updated_at)"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(HEALTH_FIELDS) + 1))}, now())"
    " ON CONFLICT (device_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in HEALTH_FIELDS[1:]) + ", updated_at = now()"
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


def _health_values(h: DeviceHealth) -> tuple[Any, ...]:
    return tuple(getattr(h, c) for c in HEALTH_FIELDS)


async def write_health_effects(conn: asyncpg.Connection, by_type: dict[type, list]) -> None:
    """Persist the batch's health rows, history rows, alarm transitions and threshold states."""
    if health := by_type.get(DeviceHealth):
        latest = {h.device_id: h for h in health}  # last write of the batch wins
        await conn.executemany(_UPSERT_HEALTH, [_health_values(h) for h in latest.values()])
    if history := by_type.get(DeviceHealthHistoryRow):
        await conn.copy_records_to_table("device_health_history", columns=list(_HISTORY_COLUMNS), records=[
            (r.health.device_id, r.at, r.change, *(getattr(r.health, c) for c in HISTORY_HEALTH_FIELDS))
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
    return int(await db.fetchval("SELECT nextval(pg_get_serial_sequence('alarms', 'id'))"))


def alarm_from_row(row: Mapping[str, Any]) -> Alarm:
    """An ``alarms`` row (:data:`ALARM_COLUMNS`) as the domain's :class:`Alarm`, details decoded."""
    details = row["details"]
    return Alarm(**{c: row[c] for c in ALARM_COLUMNS if c != "details"},
                 details=json.loads(details) if isinstance(details, str) else (details or {}))


# --- the device actor's state, rebuilt at start and after a crash --------------------------------


@dataclass(frozen=True)
class DeviceSnapshot:
    """What a device actor rebuilds its state from: health, active alarms, threshold-rule states."""

    health: DeviceHealth | None = None
    #: The device's active alarms.
    alarms: tuple[Alarm, ...] = ()
    threshold_states: tuple[ThresholdStateRow, ...] = ()


async def load_device_snapshots(db: Database, device_ids: list[str] | None = None) -> dict[str, DeviceSnapshot]:
    """Snapshots of ``device_ids`` (every device if None) in one round trip: three set queries,
    however many devices. The ingress loads all of them at boot and hands each actor its own,
    instead of 10,000 actors each making a query (14.8 s at 10,000 devices)."""

    async def work(conn: asyncpg.Connection) -> dict[str, DeviceSnapshot]:
        health = await conn.fetch(
            f"SELECT {', '.join(HEALTH_FIELDS)} FROM device_health"
            " WHERE $1::text[] IS NULL OR device_id = ANY($1::text[])", device_ids)
        alarms = await conn.fetch(
            f"SELECT {', '.join(ALARM_COLUMNS)} FROM alarms WHERE state IN ('active_unacked', 'active_acked')"
            " AND ($1::text[] IS NULL OR device_id = ANY($1::text[])) ORDER BY id", device_ids)
        states = await conn.fetch(
            "SELECT device_id, rule_id, pending_since, active, last_ts FROM threshold_state"
            " WHERE $1::text[] IS NULL OR device_id = ANY($1::text[])", device_ids)
        parts: dict[str, dict[str, Any]] = {}
        for r in health:
            parts.setdefault(r["device_id"], {"alarms": [], "states": []})["health"] = DeviceHealth(**dict(r))
        for r in alarms:
            parts.setdefault(r["device_id"], {"alarms": [], "states": []})["alarms"].append(alarm_from_row(r))
        for r in states:
            parts.setdefault(r["device_id"], {"alarms": [], "states": []})["states"].append(
                ThresholdStateRow(**dict(r)))
        return {
            device_id: DeviceSnapshot(p.get("health"), tuple(p["alarms"]), tuple(p["states"]))
            for device_id, p in parts.items()
        }

    return await db.run(work)


# --- reads for the web ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthHistoryEntry:
    """One ``device_health_history`` row: a transition and the health at that moment (only the
    fields history keeps, :data:`~hub.domain.device_health.HISTORY_HEALTH_FIELDS`; the others are defaults)."""

    id: int
    at: datetime
    change: str  # online | offline | firmware
    health: DeviceHealth


async def device_health_history(db: Database, device_id: str, limit: int, offset: int) -> Page[HealthHistoryEntry]:
    """One page of a device's health transitions, newest first."""

    async def work(conn: asyncpg.Connection) -> Page[HealthHistoryEntry]:
        total = await conn.fetchval("SELECT count(*) FROM device_health_history WHERE device_id = $1", device_id)
        rows = await conn.fetch(
            f"SELECT {', '.join(('id', *_HISTORY_COLUMNS))} FROM device_health_history WHERE device_id = $1"
            " ORDER BY at DESC, id DESC LIMIT $2 OFFSET $3", device_id, limit, offset)
        return Page([
            HealthHistoryEntry(r["id"], r["at"], r["change"],
                               DeviceHealth(r["device_id"], **{c: r[c] for c in HISTORY_HEALTH_FIELDS}))
            for r in rows], total)

    return await db.run(work)


async def device_exists(db: Database, device_id: str) -> bool:
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM devices WHERE id = $1)", device_id))


@dataclass(frozen=True)
class DeviceOverview:
    """A device as the device list shows it: registry facts, persisted health, active-alarm summary."""

    device_id: str
    room_id: str
    room_name: str
    kind: str
    model: str
    revoked: bool
    #: The latest persisted health; a device never heard from has the zero values (offline, reason '').
    health: DeviceHealth
    #: Active (not cleared) alarms and the most severe of them.
    active_alarms: int = 0
    alarm_severity: str | None = None


#: The SQL zero of each non-nullable health type: a device without a ``device_health`` row reads as
#: offline with empty texts and zero counts; the ``X | None`` fields stay NULL.
_HEALTH_ZERO = {"bool": "false", "str": "''", "int": "0", "float": "0"}


def _overview_health_column(name: str, type_: str) -> str:
    if type_.endswith("| None"):
        return f"h.{name}"
    return f"coalesce(h.{name}, {_HEALTH_ZERO[type_]}) AS {name}"  # KeyError: give a new type its zero


_OVERVIEW_HEALTH = ", ".join(
    _overview_health_column(f.name, str(f.type)) for f in fields(DeviceHealth) if f.name != "device_id")
_DEVICE_OVERVIEW_SELECT = (
    "SELECT d.id AS device_id, d.room_id, r.name AS room_name, d.kind, d.model,"
    f" d.revoked_at IS NOT NULL AS revoked, {_OVERVIEW_HEALTH},"
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


def _overview(row: asyncpg.Record) -> DeviceOverview:
    return DeviceOverview(
        row["device_id"], row["room_id"], row["room_name"], row["kind"], row["model"], row["revoked"],
        DeviceHealth(**{name: row[name] for name in HEALTH_FIELDS}), row["active_alarms"], row["alarm_severity"])


async def devices_overview(db: Database) -> list[DeviceOverview]:
    """Every device with its latest persisted health (offline if never heard from), by room name."""
    return [_overview(r) for r in await db.fetch(_DEVICE_OVERVIEW_SELECT + " ORDER BY r.name, d.id")]


async def device_overview(db: Database, device_id: str) -> DeviceOverview | None:
    """One device as the device list shows it, or None if there is no such device."""
    row = await db.fetchrow(_DEVICE_OVERVIEW_SELECT + " WHERE d.id = $1", device_id)
    return None if row is None else _overview(row)
