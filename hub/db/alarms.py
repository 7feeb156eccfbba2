"""Read-side alarm queries (the device actors are the only writers, through the batch writer).

Alarms are returned as the domain's :class:`~hub.domain.alarms.Alarm` (the
row-to-record conversion is :func:`hub.db.device_health.alarm_from_row`, beside
the writer); the listings add the room's name.

Concurrency contract: one round trip each on the shared :class:`Database`,
callable from any trio task; nothing here writes.
"""
from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from hub.domain.alarms import Alarm

from ._pool import Database
from .device_health import ALARM_COLUMNS, alarm_from_row
from .paging import Page

#: ``state`` filter values of the listing: the four states, plus groups of them.
STATE_GROUPS: dict[str, tuple[str, ...] | None] = {
    "open": ("active_unacked", "active_acked", "cleared_unacked"),  # needs attention
    "active": ("active_unacked", "active_acked"),
    "unacked": ("active_unacked", "cleared_unacked"),
    "cleared": ("cleared_unacked", "cleared_acked"),
    "all": None,
    "active_unacked": ("active_unacked",),
    "active_acked": ("active_acked",),
    "cleared_unacked": ("cleared_unacked",),
    "cleared_acked": ("cleared_acked",),
}
_SELECT = "SELECT " + ", ".join(f"a.{c}" for c in ALARM_COLUMNS) + ", r.name AS room_name FROM alarms a" \
          " LEFT JOIN rooms r ON r.id = a.room_id"
_ACTIVE = "state IN ('active_unacked', 'active_acked')"


@dataclass(frozen=True)
class RoomAlarm:
    """An alarm and the name of its room (None: the room is gone, or the alarm has none)."""

    alarm: Alarm
    room_name: str | None


def _room_alarm(row: asyncpg.Record) -> RoomAlarm:
    return RoomAlarm(alarm_from_row(row), row["room_name"])


async def list_alarms(
    db: Database, limit: int, offset: int, *, states: tuple[str, ...] | None = None,
    severity: str | None = None, device_id: str | None = None, room_id: str | None = None,
    alarm_type: str | None = None,
) -> Page[RoomAlarm]:
    """One page of alarms, newest first, with the total matching."""
    where = (
        "($1::text[] IS NULL OR a.state = ANY($1::text[])) AND ($2::text IS NULL OR a.severity = $2)"
        " AND ($3::text IS NULL OR a.device_id = $3) AND ($4::text IS NULL OR a.room_id = $4)"
        " AND ($5::text IS NULL OR a.type = $5)"
    )
    args = (list(states) if states is not None else None, severity, device_id, room_id, alarm_type)

    async def work(conn: asyncpg.Connection) -> Page[RoomAlarm]:
        total = await conn.fetchval(f"SELECT count(*) FROM alarms a WHERE {where}", *args)
        rows = await conn.fetch(
            f"{_SELECT} WHERE {where} ORDER BY a.raised_at DESC, a.id DESC LIMIT $6 OFFSET $7",
            *args, limit, offset)
        return Page([_room_alarm(r) for r in rows], total)

    return await db.run(work)


async def get_alarm(db: Database, alarm_id: int) -> RoomAlarm | None:
    row = await db.fetchrow(f"{_SELECT} WHERE a.id = $1", alarm_id)
    return None if row is None else _room_alarm(row)


async def device_active_alarms(db: Database, device_id: str) -> tuple[RoomAlarm, ...]:
    rows = await db.fetch(
        f"{_SELECT} WHERE a.device_id = $1 AND a.{_ACTIVE} ORDER BY a.raised_at DESC, a.id DESC", device_id)
    return tuple(_room_alarm(r) for r in rows)


async def active_alarms(db: Database) -> list[Alarm]:
    """Alarms not cleared yet (at most one per device and type), most severe first."""
    rows = await db.fetch(
        f"SELECT {', '.join(ALARM_COLUMNS)} FROM alarms WHERE {_ACTIVE}"
        " ORDER BY array_position(ARRAY['critical', 'major', 'minor', 'warning'], severity), raised_at DESC")
    return [alarm_from_row(r) for r in rows]


async def alarms_by_id(db: Database, alarm_ids: list[int]) -> dict[int, RoomAlarm]:
    """The alarms of ``alarm_ids`` that exist, by id (one round trip, however many)."""
    rows = await db.fetch(f"{_SELECT} WHERE a.id = ANY($1::bigint[])", alarm_ids)
    return {r["id"]: _room_alarm(r) for r in rows}


async def open_alarm_count(db: Database) -> int:
    """How many alarms are open (``STATE_GROUPS["open"]``: not yet cleared-and-acknowledged): the one count
    the console shows, the same the alarm list's default filter totals."""
    return int(await db.fetchval("SELECT count(*) FROM alarms WHERE state = ANY($1::text[])",
                                 list(STATE_GROUPS["open"] or ())))
