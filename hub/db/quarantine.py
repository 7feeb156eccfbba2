"""Quarantines of flooding devices in PostgreSQL (table ``device_quarantines``, migration 0022).

A quarantine keeps a device off the broker (hub/adapters/mosquitto_auth.py leaves it out of the
rendered password and ACL files) from ``since`` until ``until``, or until ops release it. It is
stored here rather than in a hub's memory so that every hub process and ``campushub devices
export-mosquitto`` render the same files, and so it survives restarts. The timers that end
quarantines belong to :class:`hub.pipeline.quarantine.QuarantineKeeper` (one in every hub worker);
every write of a row is announced to them by NOTIFY (migration 0038, hub/db/pg_listen.py).

The cool-down doubles for a device quarantined again within :attr:`QuarantinePolicy.repeat_window_s`
of its previous quarantine's start, up to :attr:`QuarantinePolicy.max_s`.

Each start and end is one transaction with its hash-chained security audit entry
(hub/db/security_audit.py). Functions are for trio tasks; each is one round trip.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from hub.db import Database
from hub.db.security_audit import record

#: A quarantine reason is cut to this many characters (the column's CHECK).
MAX_REASON = 500
_COLUMNS = "device_id, reason, since, until, cooldown_s, strikes, released_at, released_by"


@dataclass(frozen=True)
class QuarantinePolicy:
    """How long quarantines last: ``base_s``, doubled per repeat within ``repeat_window_s``, at most ``max_s``."""

    base_s: float = 300.0
    max_s: float = 3600.0
    repeat_window_s: float = 3600.0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.max_s or self.repeat_window_s < 0:
            raise ValueError("quarantine cool-down: need 0 < base <= max and a window >= 0")

    def cooldown_after(self, previous: "Quarantine | None", now: datetime) -> tuple[float, int]:
        """``(seconds, strikes)`` of a quarantine starting at ``now`` after ``previous`` (the device's last one)."""
        if previous is not None and (now - previous.since).total_seconds() <= self.repeat_window_s:
            return min(previous.cooldown_s * 2, self.max_s), previous.strikes + 1
        return self.base_s, 1


@dataclass(frozen=True)
class Quarantine:
    device_id: str
    reason: str
    since: datetime
    until: datetime
    cooldown_s: float
    strikes: int
    released_at: datetime | None = None
    released_by: str | None = None

    def active_at(self, now: datetime) -> bool:
        return self.released_at is None and self.until > now

    def json(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "reason": self.reason, "since": self.since.isoformat(),
                "until": self.until.isoformat(), "cooldown_s": self.cooldown_s, "strikes": self.strikes,
                "released_at": self.released_at.isoformat() if self.released_at else None,
                "released_by": self.released_by}


def _quarantine(row: asyncpg.Record) -> Quarantine:
    return Quarantine(row["device_id"], row["reason"], row["since"], row["until"], row["cooldown_s"],
                      row["strikes"], row["released_at"], row["released_by"])


async def start_quarantine(
    db: Database, device_id: str, *, reason: str, now: datetime, policy: QuarantinePolicy, actor: str = "system",
) -> Quarantine:
    """Quarantine ``device_id`` from ``now`` (audit-logged); an active quarantine is returned unchanged.

    Raises ``LookupError`` for a device not in the registry.
    """
    reason = reason[:MAX_REASON]

    async def work(conn: asyncpg.Connection) -> Quarantine:
        if await conn.fetchval("SELECT 1 FROM devices WHERE id = $1 FOR UPDATE", device_id) is None:
            raise LookupError(f"no device {device_id!r}")
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM device_quarantines WHERE device_id = $1", device_id)
        previous = _quarantine(row) if row is not None else None
        if previous is not None and previous.active_at(now):
            return previous
        cooldown_s, strikes = policy.cooldown_after(previous, now)
        until = now + timedelta(seconds=cooldown_s)
        stored = await conn.fetchrow(
            "INSERT INTO device_quarantines (device_id, reason, since, until, cooldown_s, strikes)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id) DO UPDATE SET reason = $2, since = $3,"
            f" until = $4, cooldown_s = $5, strikes = $6, released_at = NULL, released_by = NULL RETURNING {_COLUMNS}",
            device_id, reason, now, until, cooldown_s, strikes)
        started = _quarantine(stored)
        await record(conn, actor=actor, action="quarantined", entity="device", entity_id=device_id,
                     after={"until": until.isoformat(), "cooldown_s": cooldown_s, "strikes": strikes}, reason=reason)
        return started

    return await db.run(work, transaction=True)


async def end_quarantine(db: Database, device_id: str, *, by: str, now: datetime,
                         until: datetime | None = None) -> Quarantine | None:
    """End the device's quarantine now (``by``: a user id, or ``system`` for the cool-down's end).

    ``until``: end it only if it is the quarantine that ends at ``until`` (a cool-down timer ends the
    quarantine it was armed for, never a newer one another hub worker started since). Returns the
    ended quarantine, or ``None`` if the device had none active (or not that one): nothing is written.
    One conditional ``UPDATE``, so of several workers ending the same quarantine exactly one does.
    """

    async def work(conn: asyncpg.Connection) -> Quarantine | None:
        row = await conn.fetchrow(
            "UPDATE device_quarantines SET released_at = $2, released_by = $3"
            " WHERE device_id = $1 AND released_at IS NULL AND ($4::timestamptz IS NULL OR until = $4)"
            f" RETURNING {_COLUMNS}",
            device_id, now, by, until)
        if row is None:
            return None
        ended = _quarantine(row)
        await record(conn, actor=by, action="released", entity="device", entity_id=device_id,
                     before={"until": ended.until.isoformat(), "strikes": ended.strikes},
                     reason="cool-down over" if by == "system" else "released by ops")
        return ended

    return await db.run(work, transaction=True)


async def get_quarantine(db: Database, device_id: str) -> Quarantine | None:
    """The device's latest quarantine (active or not), or ``None``."""
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM device_quarantines WHERE device_id = $1", device_id)
    return _quarantine(row) if row is not None else None


async def active_quarantines(db: Database) -> list[Quarantine]:
    """Quarantines in force now (by the database's clock), or ended by time but never closed."""
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM device_quarantines WHERE released_at IS NULL ORDER BY until")
    return [_quarantine(r) for r in rows]
