"""Threshold rules: the hub's load of all of them, and the web's CRUD.

Concurrency contract: every function is a coroutine on the shared
:class:`Database`, callable from any trio task. Reads are one round trip
(:func:`preview_readings`, the readings a rule preview replays, too);
each write is one transaction that also appends its audit entry
(:func:`hub.db.security_audit.record`, last, so the audit chain's lock is held
only for the commit); the caller tells the hub afterwards
(``WebContext.thresholds_changed``) so device actors pick the change up.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg

from hub.domain.thresholds import RuleBook, ThresholdRule

from ._pool import Database
from .paging import Page
from .security_audit import record

RULE_COLUMNS = (
    "id", "metric", "room_type", "room_id", "op", "value", "clear_value", "duration_s", "severity", "enabled",
    "created_at", "updated_at", "updated_by",
)
#: Fields a client may set.
EDITABLE = ("metric", "room_type", "room_id", "op", "value", "clear_value", "duration_s", "severity", "enabled")
_SELECT = f"SELECT {', '.join(RULE_COLUMNS)} FROM threshold_rules"
_RULE_FIELDS = tuple(f.name for f in fields(ThresholdRule))


@dataclass(frozen=True)
class RuleSet:
    """Every rule (enabled or not) and the type of every room."""

    rules: tuple[dict[str, Any], ...]
    room_types: dict[str, str]

    def book(self) -> RuleBook:
        """The domain's rule book of these rules (the device actors' and the preview's one source)."""
        return RuleBook(tuple(rule_of(r) for r in self.rules), dict(self.room_types))


def rule_of(row: dict[str, Any]) -> ThresholdRule:
    """A stored rule (a row of :data:`RULE_COLUMNS`) as the domain's :class:`ThresholdRule`."""
    return ThresholdRule(**{k: row[k] for k in _RULE_FIELDS})


async def load_rule_set(db: Database) -> RuleSet:
    async def work(conn: asyncpg.Connection) -> RuleSet:
        rules = await conn.fetch(_SELECT + " ORDER BY id")
        rooms = await conn.fetch("SELECT id, room_type FROM rooms")
        return RuleSet(tuple(dict(r) for r in rules), {r["id"]: r["room_type"] for r in rooms})

    return await db.run(work)


async def list_rules(
    db: Database, limit: int, offset: int, *, metric: str | None = None, room_id: str | None = None,
    room_type: str | None = None,
) -> Page[dict[str, Any]]:
    where = ("($1::text IS NULL OR metric = $1) AND ($2::text IS NULL OR room_id = $2)"
             " AND ($3::text IS NULL OR room_type = $3)")

    async def work(conn: asyncpg.Connection) -> Page[dict[str, Any]]:
        total = await conn.fetchval(f"SELECT count(*) FROM threshold_rules WHERE {where}", metric, room_id, room_type)
        rows = await conn.fetch(
            f"{_SELECT} WHERE {where} ORDER BY metric, op, value, id LIMIT $4 OFFSET $5",
            metric, room_id, room_type, limit, offset)
        return Page([dict(r) for r in rows], total)

    return await db.run(work)


async def get_rule(db: Database, rule_id: int) -> dict[str, Any] | None:
    row = await db.fetchrow(_SELECT + " WHERE id = $1", rule_id)
    return None if row is None else dict(row)


async def room_exists(db: Database, room_id: str) -> bool:
    return bool(await db.fetchval("SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1)", room_id))


def _audited(rule: asyncpg.Record) -> dict[str, Any]:
    """What the audit log keeps of a rule: its editable fields."""
    return {c: rule[c] for c in EDITABLE}


async def create_rule(db: Database, fields: dict[str, Any], by: str) -> dict[str, Any]:
    """Insert a rule (``fields``: every key of :data:`EDITABLE`, already validated), audited."""
    columns = [*EDITABLE, "updated_by"]

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        row = await conn.fetchrow(
            f"INSERT INTO threshold_rules ({', '.join(columns)})"
            f" VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))})"
            f" RETURNING {', '.join(RULE_COLUMNS)}",
            *(fields[c] for c in EDITABLE), by)
        assert row is not None  # INSERT ... RETURNING returns the inserted row
        await record(conn, actor=by, action="created", entity="threshold_rule", entity_id=str(row["id"]),
                     after=_audited(row))
        return dict(row)

    return await db.run(work, transaction=True)


async def update_rule(db: Database, rule_id: int, fields: dict[str, Any], by: str) -> dict[str, Any] | None:
    """Replace a rule's editable fields (all of :data:`EDITABLE`); None if no such rule. Audited
    when a field really changed."""
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(EDITABLE, start=2))

    async def work(conn: asyncpg.Connection) -> dict[str, Any] | None:
        before = await conn.fetchrow(_SELECT + " WHERE id = $1 FOR UPDATE", rule_id)
        if before is None:
            return None
        row = await conn.fetchrow(
            f"UPDATE threshold_rules SET {sets}, updated_by = ${len(EDITABLE) + 2}, updated_at = now()"
            f" WHERE id = $1 RETURNING {', '.join(RULE_COLUMNS)}",
            rule_id, *(fields[c] for c in EDITABLE), by)
        assert row is not None  # locked above
        if _audited(before) != _audited(row):
            await record(conn, actor=by, action="updated", entity="threshold_rule", entity_id=str(rule_id),
                         before=_audited(before), after=_audited(row))
        return dict(row)

    return await db.run(work, transaction=True)


async def delete_rule(db: Database, rule_id: int, *, by: str) -> bool:
    """Delete a rule, audited; False if there was none."""

    async def work(conn: asyncpg.Connection) -> bool:
        row = await conn.fetchrow(f"DELETE FROM threshold_rules WHERE id = $1 RETURNING {', '.join(RULE_COLUMNS)}",
                                  rule_id)
        if row is None:
            return False
        await record(conn, actor=by, action="deleted", entity="threshold_rule", entity_id=str(rule_id),
                     before=_audited(row))
        return True

    return await db.run(work, transaction=True)


@dataclass(frozen=True)
class DeviceReadings:
    """One device's readings of one metric, oldest first (device time, value): what a preview replays."""

    device_id: str
    room_id: str
    unit: str
    readings: tuple[tuple[datetime, float], ...]


#: The most raw readings one preview replays (a day of a campus-wide rule on a large campus can be more:
#: the answer then says it was cut short, at a device boundary).
PREVIEW_MAX_READINGS = 200_000


async def preview_readings(
    db: Database, metric: str, room_ids: list[str], start: datetime, end: datetime,
    limit: int = PREVIEW_MAX_READINGS,
) -> tuple[list[DeviceReadings], bool]:
    """The raw readings of ``metric`` in ``(start, end]`` of every device now in one of ``room_ids``,
    by device; and whether ``limit`` cut them short (then the last device is left out whole)."""
    rows = await db.fetch(
        "SELECT r.device_id, d.room_id, r.unit, r.device_ts, r.value FROM sensor_readings r"
        " JOIN devices d ON d.id = r.device_id"
        " WHERE r.metric = $1 AND d.room_id = ANY($2::text[]) AND r.device_ts > $3 AND r.device_ts <= $4"
        " ORDER BY r.device_id, r.device_ts LIMIT $5",
        metric, room_ids, start, end, limit + 1)
    truncated = len(rows) > limit
    if truncated:
        last = rows[limit]["device_id"]
        rows = [r for r in rows[:limit] if r["device_id"] != last]
    devices: list[DeviceReadings] = []
    start_at = 0
    for index in range(1, len(rows) + 1):
        if index == len(rows) or rows[index]["device_id"] != rows[start_at]["device_id"]:
            first = rows[start_at]
            devices.append(DeviceReadings(first["device_id"], first["room_id"], first["unit"],
                                          tuple((r["device_ts"], r["value"]) for r in rows[start_at:index])))
            start_at = index
    return devices, truncated


async def recent_metric_units(db: Database, since: datetime) -> dict[str, str]:
    """metric → unit of every metric with an hourly aggregate from ``since`` on (the rule form's
    choices; the hour index keeps it to the recent rows)."""
    rows = await db.fetch(
        "SELECT DISTINCT ON (metric) metric, unit FROM sensor_readings_hourly WHERE hour >= $1"
        " ORDER BY metric, hour DESC", since)
    return {r["metric"]: r["unit"] for r in rows}
