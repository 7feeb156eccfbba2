"""Read-side alarm queries (the device actors are the only writers, through the batch writer).

Concurrency contract: one round trip each on the shared :class:`Database`,
callable from any trio task; nothing here writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from ._pool import Database
from .health import ALARM_COLUMNS, alarm_record

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


@dataclass(frozen=True)
class AlarmPage:
    total: int
    items: tuple[dict[str, Any], ...]


async def list_alarms(
    db: Database, limit: int, offset: int, *, states: tuple[str, ...] | None = None,
    severity: str | None = None, device_id: str | None = None, room_id: str | None = None,
    alarm_type: str | None = None,
) -> AlarmPage:
    """One page of alarms, newest first, with the total matching."""
    where = (
        "($1::text[] IS NULL OR a.state = ANY($1::text[])) AND ($2::text IS NULL OR a.severity = $2)"
        " AND ($3::text IS NULL OR a.device_id = $3) AND ($4::text IS NULL OR a.room_id = $4)"
        " AND ($5::text IS NULL OR a.type = $5)"
    )
    args = (list(states) if states is not None else None, severity, device_id, room_id, alarm_type)

    async def work(conn: asyncpg.Connection) -> AlarmPage:
        total = await conn.fetchval(f"SELECT count(*) FROM alarms a WHERE {where}", *args)
        rows = await conn.fetch(
            f"{_SELECT} WHERE {where} ORDER BY a.raised_at DESC, a.id DESC LIMIT $6 OFFSET $7",
            *args, limit, offset)
        return AlarmPage(total, tuple(alarm_record(r) for r in rows))

    return await db.run(work)


async def get_alarm(db: Database, alarm_id: int) -> dict[str, Any] | None:
    row = await db.fetchrow(f"{_SELECT} WHERE a.id = $1", alarm_id)
    return None if row is None else alarm_record(row)


async def device_active_alarms(db: Database, device_id: str) -> tuple[dict[str, Any], ...]:
    rows = await db.fetch(
        f"{_SELECT} WHERE a.device_id = $1 AND a.state IN ('active_unacked', 'active_acked')"
        " ORDER BY a.raised_at DESC, a.id DESC", device_id)
    return tuple(alarm_record(r) for r in rows)
