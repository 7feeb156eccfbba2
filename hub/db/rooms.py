"""Rooms by building (the ops console's grid and the problem-report form).

Concurrency contract: one round trip on the shared :class:`~hub.db.Database`,
callable from any trio task; nothing here writes. (Rooms are created and
edited through hub/db/academic.py.)
"""
from __future__ import annotations

from dataclasses import dataclass

from ._pool import Database


@dataclass(frozen=True)
class RoomRow:
    room_id: str
    name: str
    building: str


async def rooms(db: Database) -> list[RoomRow]:
    """Every room, by building then name."""
    rows = await db.fetch("SELECT id AS room_id, name, building FROM rooms ORDER BY building, name, id")
    return [RoomRow(**dict(r)) for r in rows]
