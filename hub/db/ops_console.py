"""Read-side queries of the ops console: rooms by building, and active alarms per device.

Concurrency contract: every function is one round trip on the shared
:class:`~hub.db.Database`, callable from any trio task; nothing here writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ._pool import Database


@dataclass(frozen=True)
class RoomRow:
    room_id: str
    name: str
    building: str


@dataclass(frozen=True)
class ActiveAlarm:
    alarm_id: int
    device_id: str
    alarm_type: str
    severity: str
    state: str
    raised_at: datetime
    message: str


async def rooms(db: Database) -> list[RoomRow]:
    """Every room, by building then name."""
    rows = await db.fetch("SELECT id AS room_id, name, building FROM rooms ORDER BY building, name, id")
    return [RoomRow(**dict(r)) for r in rows]


async def active_alarms(db: Database) -> list[ActiveAlarm]:
    """Alarms not cleared yet (at most one per device and type), most severe first."""
    rows = await db.fetch(
        "SELECT id AS alarm_id, device_id, type AS alarm_type, severity, state, raised_at, message FROM alarms"
        " WHERE state IN ('active_unacked', 'active_acked')"
        " ORDER BY array_position(ARRAY['critical', 'major', 'minor', 'warning'], severity), raised_at DESC")
    return [ActiveAlarm(**dict(r)) for r in rows]
