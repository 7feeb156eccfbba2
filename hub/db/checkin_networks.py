"""The check-in network restriction's settings (migration 0021): the campus's ranges and rooms' own.

A room's setting replaces the campus's; an empty list means "no restriction"
(so a room can opt out), and a room without a setting follows the campus
(:func:`hub.domain.checkin_network.effective_restriction`). Ranges are stored
as PostgreSQL ``cidr[]``, already checked and normalised by
:func:`hub.domain.checkin_network.parse_ranges`. Every change is audited
(``security_audit``, entity ``checkin_networks``, id ``campus`` or the room id).

Concurrency contract: every ``async`` function here is one transaction (or one
round trip) on the shared :class:`~hub.db.Database`, callable from any trio
task. Writes lock the row they change, so two admins saving at once are
applied one after the other, each audited with the state it replaced.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

import asyncpg

from hub.domain.checkin_network import Network, NetworkRestriction, effective_restriction

from ._pool import Database
from .security_audit import record

CAMPUS = "campus"


@dataclass(frozen=True)
class CheckinNetworks:
    """One setting: the campus's (``room_id`` ``None``) or a room's. ``ranges`` ``None``: the room
    has no setting of its own and follows the campus (``effective``/``applies`` say what holds)."""

    room_id: str | None
    ranges: tuple[Network, ...] | None
    updated_by: str | None
    updated_at: datetime | None
    #: The ranges that apply to this room's check-ins, and which setting they come from.
    effective: tuple[Network, ...] = ()
    applies: str = "none"  # room | campus | none


class RoomNotFound(LookupError):
    """No room with that id."""


def _ranges(value: Sequence[Network] | None) -> tuple[Network, ...] | None:
    return None if value is None else tuple(value)


def _resolved(room_id: str | None, own: Sequence[Network] | None, campus: Sequence[Network],
              updated_by: str | None, updated_at: datetime | None) -> CheckinNetworks:
    restriction = effective_restriction(campus, own) if room_id is not None else effective_restriction(campus, None)
    return CheckinNetworks(room_id, _ranges(own), updated_by, updated_at,
                           restriction.ranges if restriction else (), restriction.scope if restriction else "none")


async def campus_networks(db: Database) -> CheckinNetworks:
    row = await db.fetchrow("SELECT ranges, updated_by, updated_at FROM campus_checkin_networks")
    campus = tuple(row["ranges"]) if row else ()
    return _resolved(None, campus, campus, row["updated_by"] if row else None, row["updated_at"] if row else None)


async def room_overrides(db: Database) -> list[CheckinNetworks]:
    """Every room with a setting of its own, by room id."""
    rows = await db.fetch("SELECT r.room_id, r.ranges, r.updated_by, r.updated_at, c.ranges AS campus"
                          " FROM room_checkin_networks r LEFT JOIN campus_checkin_networks c ON true"
                          " ORDER BY r.room_id")
    return [_resolved(r["room_id"], tuple(r["ranges"]), tuple(r["campus"] or ()), r["updated_by"], r["updated_at"])
            for r in rows]


async def room_networks(db: Database, room_id: str) -> CheckinNetworks:
    """The room's setting and what applies to it; :class:`RoomNotFound` if there is no such room."""
    row = await db.fetchrow(
        "SELECT rn.ranges, rn.updated_by, rn.updated_at, c.ranges AS campus FROM rooms r"
        " LEFT JOIN room_checkin_networks rn ON rn.room_id = r.id LEFT JOIN campus_checkin_networks c ON true"
        " WHERE r.id = $1", room_id)
    if row is None:
        raise RoomNotFound(room_id)
    return _resolved(room_id, _ranges(row["ranges"]), tuple(row["campus"] or ()), row["updated_by"],
                     row["updated_at"])


def _audited(ranges: Sequence[Network] | None) -> dict[str, Any]:
    return {"ranges": None if ranges is None else [str(r) for r in ranges]}


async def set_campus_networks(db: Database, ranges: Sequence[Network], *, by: str) -> CheckinNetworks:
    """Replace the campus's ranges (empty: no restriction), audited when they change."""

    async def work(conn: asyncpg.Connection) -> None:
        before = await conn.fetchval("SELECT ranges FROM campus_checkin_networks FOR UPDATE")
        await conn.execute(
            "INSERT INTO campus_checkin_networks (singleton, ranges, updated_by, updated_at)"
            " VALUES (true, $1::cidr[], $2, now()) ON CONFLICT (singleton)"
            " DO UPDATE SET ranges = EXCLUDED.ranges, updated_by = EXCLUDED.updated_by, updated_at = now()",
            list(ranges), by)
        if list(before or ()) != list(ranges):
            await record(conn, actor=by, action="updated", entity="checkin_networks", entity_id=CAMPUS,
                         before=_audited(before or ()), after=_audited(ranges))

    await db.run(work, transaction=True)
    return await campus_networks(db)


async def set_room_networks(db: Database, room_id: str, ranges: Sequence[Network] | None, *,
                            by: str) -> CheckinNetworks:
    """Give a room its own ranges (empty: not restricted), or (``None``) let it follow the campus.

    Audited when the setting changes; :class:`RoomNotFound` if there is no such room.
    """

    async def work(conn: asyncpg.Connection) -> None:
        if await conn.fetchval("SELECT 1 FROM rooms WHERE id = $1 FOR SHARE", room_id) is None:
            raise RoomNotFound(room_id)
        before = await conn.fetchval("SELECT ranges FROM room_checkin_networks WHERE room_id = $1 FOR UPDATE",
                                     room_id)
        if ranges is None:
            await conn.execute("DELETE FROM room_checkin_networks WHERE room_id = $1", room_id)
        else:
            await conn.execute(
                "INSERT INTO room_checkin_networks (room_id, ranges, updated_by, updated_at)"
                " VALUES ($1, $2::cidr[], $3, now()) ON CONFLICT (room_id)"
                " DO UPDATE SET ranges = EXCLUDED.ranges, updated_by = EXCLUDED.updated_by, updated_at = now()",
                room_id, list(ranges), by)
        old, new = _audited(before), _audited(ranges)
        if old != new:
            await record(conn, actor=by, action="updated", entity="checkin_networks", entity_id=room_id,
                         before=old, after=new)

    await db.run(work, transaction=True)
    return await room_networks(db, room_id)


async def session_restriction(db: Database, session_id: str) -> NetworkRestriction | None:
    """The restriction that applies to display check-ins of this session's room (``None``: none)."""
    row = await db.fetchrow(
        "SELECT rn.ranges AS room, c.ranges AS campus FROM class_sessions cs"
        " LEFT JOIN room_checkin_networks rn ON rn.room_id = cs.room_id LEFT JOIN campus_checkin_networks c ON true"
        " WHERE cs.id = $1", session_id)
    if row is None:
        return None
    return effective_restriction(tuple(row["campus"] or ()), _ranges(row["room"]))
