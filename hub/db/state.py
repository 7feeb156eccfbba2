"""Queries that rebuild actor state from PostgreSQL (at start and after a crash)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hub.records import DeviceHealthRow

from ._pool import Database


@dataclass(frozen=True)
class DeviceRecord:
    device_id: str
    room_id: str
    kind: str
    alg: str
    key: bytes
    revoked: bool


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    course_id: str
    room_id: str
    starts_at: datetime
    ends_at: datetime
    grace: timedelta
    opens_before: timedelta
    status: str

    @property
    def opens_at(self) -> datetime:
        return self.starts_at - self.opens_before


@dataclass(frozen=True)
class SessionSnapshot:
    session: SessionRecord
    roster: dict[str, bytes]
    checked_in: dict[str, str]
    used_tokens: set[tuple[str, int]]


async def load_devices(db: Database, device_ids: list[str] | None = None) -> list[DeviceRecord]:
    rows = await db.fetch(
        "SELECT id, room_id, kind, alg, key, revoked_at IS NOT NULL AS revoked FROM devices"
        " WHERE $1::text[] IS NULL OR id = ANY($1::text[])",
        device_ids,
    )
    return [DeviceRecord(r["id"], r["room_id"], r["kind"], r["alg"], bytes(r["key"]), r["revoked"]) for r in rows]


_SESSION_COLUMNS = (
    "id, course_id, room_id, starts_at, ends_at, grace_minutes, opens_minutes_before, status"
)


def _session(r) -> SessionRecord:
    return SessionRecord(
        r["id"], r["course_id"], r["room_id"], r["starts_at"], r["ends_at"],
        timedelta(minutes=r["grace_minutes"]), timedelta(minutes=r["opens_minutes_before"]), r["status"],
    )


async def sessions_between(db: Database, start: datetime, end: datetime) -> list[SessionRecord]:
    """Sessions (not cancelled) whose check-in window overlaps [start, end]."""
    rows = await db.fetch(
        f"SELECT {_SESSION_COLUMNS} FROM class_sessions"
        " WHERE status <> 'cancelled' AND ends_at >= $1"
        " AND starts_at - make_interval(mins => opens_minutes_before) <= $2",
        start, end,
    )
    return [_session(r) for r in rows]


async def load_session_snapshot(db: Database, session_id: str) -> SessionSnapshot | None:
    """Everything a session actor needs, in one round trip."""

    async def work(conn) -> SessionSnapshot | None:
        row = await conn.fetchrow(f"SELECT {_SESSION_COLUMNS} FROM class_sessions WHERE id = $1", session_id)
        if row is None:
            return None
        roster = await conn.fetch(
            "SELECT s.id, s.token_secret FROM class_sessions cs"
            " JOIN enrolments e ON e.course_id = cs.course_id JOIN students s ON s.id = e.student_id"
            " WHERE cs.id = $1",
            session_id,
        )
        marks = await conn.fetch("SELECT student_id, status FROM attendance WHERE session_id = $1", session_id)
        uses = await conn.fetch("SELECT student_id, token_window FROM token_uses WHERE session_id = $1", session_id)
        return SessionSnapshot(
            _session(row),
            {r["id"]: bytes(r["token_secret"]) for r in roster},
            {r["student_id"]: r["status"] for r in marks},
            {(r["student_id"], r["token_window"]) for r in uses},
        )

    return await db.run(work)


async def load_device_health(db: Database, device_ids: list[str] | None = None) -> dict[str, DeviceHealthRow]:
    rows = await db.fetch(
        "SELECT device_id, online, last_seen, last_change, reason, firmware, uptime_s, outbox_depth"
        " FROM device_health WHERE $1::text[] IS NULL OR device_id = ANY($1::text[])",
        device_ids,
    )
    return {r["device_id"]: DeviceHealthRow(**dict(r)) for r in rows}
