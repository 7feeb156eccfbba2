"""Class sessions with their head counts, and their rosters: what faculty see of a day's sessions.

Concurrency contract: every function is one round trip on the shared
:class:`~hub.db.Database` (several statements go through ``db.run`` so they
share one connection and one trio ↔ asyncio hop) and may be called from any
trio task. Nothing here writes. Results are plain frozen dataclasses, never
asyncpg records.

Clock values (``now``, the day) are passed in rather than taken from
PostgreSQL's ``now()``, so the web app and its tests share one clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

import asyncpg

from ._pool import Database
from .academic import manages_sql


@dataclass(frozen=True)
class SessionSummary:
    session_id: str
    course_id: str
    course_code: str
    course_title: str
    faculty_id: str
    room_id: str
    room_name: str
    starts_at: datetime
    ends_at: datetime
    grace_minutes: int
    opens_minutes_before: int
    status: str  # scheduled | open | closed | cancelled
    enrolled: int
    present: int
    late: int

    @property
    def opens_at(self) -> datetime:
        return self.starts_at - timedelta(minutes=self.opens_minutes_before)

    def is_live(self, now: datetime) -> bool:
        """Check-ins are being taken: the window is open and the session is not closed or cancelled."""
        return self.status in ("scheduled", "open") and self.opens_at <= now <= self.ends_at

    def has_ended(self, now: datetime) -> bool:
        return self.status == "closed" or now > self.ends_at


@dataclass(frozen=True)
class RosterEntry:
    student_id: str
    display_name: str
    roll_number: str
    status: str | None  # None: no attendance record yet
    checked_in_at: datetime | None


@dataclass(frozen=True)
class Roster:
    session: SessionSummary
    entries: tuple[RosterEntry, ...]


_SESSION_SELECT = """
SELECT cs.id AS session_id, cs.course_id, c.code AS course_code, c.title AS course_title,
       c.faculty_id, cs.room_id, r.name AS room_name, cs.starts_at, cs.ends_at,
       cs.grace_minutes, cs.opens_minutes_before, cs.status,
       (SELECT count(*) FROM enrolments e WHERE e.course_id = cs.course_id) AS enrolled,
       (SELECT count(*) FROM attendance a WHERE a.session_id = cs.id AND a.status = 'present') AS present,
       (SELECT count(*) FROM attendance a WHERE a.session_id = cs.id AND a.status = 'late') AS late
FROM class_sessions cs
JOIN courses c ON c.id = cs.course_id
JOIN rooms r ON r.id = cs.room_id
"""


def _session(row: asyncpg.Record) -> SessionSummary:
    return SessionSummary(**dict(row))


def day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """[midnight, next midnight) of ``day`` in ``tz``."""
    start = datetime.combine(day, time(0), tzinfo=tz)
    return start, datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)


async def sessions_for_faculty(
    db: Database, faculty_id: str | None, day: date, tz: tzinfo
) -> list[SessionSummary]:
    """Sessions overlapping ``day`` (in ``tz``) of courses ``faculty_id`` manages (coordinates or is
    assigned to, :func:`hub.db.academic.manages_sql`); all if ``None``.

    Overlapping rather than starting on it, so a session running across
    midnight is listed on both days.
    """
    start, end = day_bounds(day, tz)
    rows = await db.fetch(
        _SESSION_SELECT
        + " WHERE ($1::text IS NULL OR " + manages_sql("c.id", "$1") + ")"
        " AND cs.ends_at > $2 AND cs.starts_at < $3"
        " ORDER BY cs.starts_at, c.code",
        faculty_id, start, end,
    )
    return [_session(r) for r in rows]


async def session_roster(db: Database, session_id: str) -> Roster | None:
    """The session and every enrolled student with their attendance so far (deactivated students only
    with a record); ``None`` if no such session."""

    async def work(conn: asyncpg.Connection) -> Roster | None:
        header = await conn.fetchrow(_SESSION_SELECT + " WHERE cs.id = $1", session_id)
        if header is None:
            return None
        rows = await conn.fetch(
            "SELECT s.id AS student_id, u.display_name, s.roll_number, a.status, a.checked_in_at"
            " FROM class_sessions cs"
            " JOIN enrolments e ON e.course_id = cs.course_id"
            " JOIN students s ON s.id = e.student_id"
            " JOIN users u ON u.id = s.id"
            " LEFT JOIN attendance a ON a.session_id = cs.id AND a.student_id = s.id"
            # A deactivated student leaves the roster, unless they have a record here (records are kept).
            " WHERE cs.id = $1 AND (u.deactivated_at IS NULL OR a.status IS NOT NULL)"
            " ORDER BY u.display_name, s.id",
            session_id,
        )
        return Roster(_session(header), tuple(RosterEntry(**dict(r)) for r in rows))

    return await db.run(work)
