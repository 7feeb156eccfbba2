"""Read-side queries of the web app: rosters, attendance, devices, rejections.

Concurrency contract: every function is one round trip on the shared
:class:`~hub.db.Database` (several statements go through ``db.run`` so they
share one connection and one trio ↔ asyncio hop) and may be called from any
trio task. Nothing here writes. Results are plain frozen dataclasses so the
web layer never handles asyncpg records.

Clock values (``now``) are passed in rather than taken from PostgreSQL's
``now()``, so the web app and its tests share one clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from uuid import UUID

import asyncpg

from ._pool import Database
from .academic import manages_sql
from .health import DEVICE_OVERVIEW_SELECT  # the health columns live with their writer


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


@dataclass(frozen=True)
class StudentProfile:
    student_id: str
    username: str
    display_name: str
    roll_number: str


@dataclass(frozen=True)
class AttendanceRecord:
    course_id: str
    course_code: str
    course_title: str
    #: None for an enrolled course that has no session whose window has opened yet.
    session_id: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    session_status: str | None
    status: str | None  # None: no attendance record
    checked_in_at: datetime | None


@dataclass(frozen=True)
class DeviceOverview:
    device_id: str
    room_id: str
    room_name: str
    kind: str
    model: str
    revoked: bool
    online: bool
    last_seen: datetime | None
    firmware: str
    outbox_depth: int
    reason: str
    # Health fields of 0007 (engineer F, hub/db/health.py); defaults for hand-built rows.
    last_change: datetime | None = None
    uptime_s: int = 0
    last_connect_at: datetime | None = None
    last_connect_reason: str = ""
    last_disconnect_at: datetime | None = None
    last_disconnect_reason: str = ""
    battery_pct: float | None = None
    signal_dbm: int | None = None
    clock_skew_ms: int | None = None
    error_count: int = 0
    #: Active (not cleared) alarms and the most severe of them.
    active_alarms: int = 0
    alarm_severity: str | None = None


@dataclass(frozen=True)
class RejectionRow:
    id: int
    received_at: datetime
    reason: str
    detail: str
    topic: str
    device_id: str | None
    kind: str | None
    session_id: str | None
    event_id: UUID | None
    payload_bytes: int


@dataclass(frozen=True)
class RejectionPage:
    total: int
    items: tuple[RejectionRow, ...]


@dataclass(frozen=True)
class OverviewCounts:
    users: int
    faculty: int
    students: int
    courses: int
    rooms: int
    devices: int
    devices_online: int
    sessions: int
    attendance_records: int
    rejections: int


# --- sessions and rosters ----------------------------------------------------

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
    """The session and every enrolled student with their attendance so far; ``None`` if no such session."""

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
            " WHERE cs.id = $1 ORDER BY u.display_name, s.id",
            session_id,
        )
        return Roster(_session(header), tuple(RosterEntry(**dict(r)) for r in rows))

    return await db.run(work)


# --- ownership ---------------------------------------------------------------

async def course_faculty(db: Database, course_id: str) -> str | None:
    """The faculty member teaching the course; ``None`` if no such course."""
    return await db.fetchval("SELECT faculty_id FROM courses WHERE id = $1", course_id)


async def teaches_student(db: Database, faculty_id: str, student_id: str) -> bool:
    """True if the student is enrolled in at least one course taught by ``faculty_id``."""
    return await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM enrolments e JOIN courses c ON c.id = e.course_id"
        " WHERE e.student_id = $1 AND c.faculty_id = $2)",
        student_id, faculty_id,
    )


# --- students ----------------------------------------------------------------

async def student_profile(db: Database, student_id: str) -> StudentProfile | None:
    row = await db.fetchrow(
        "SELECT s.id AS student_id, u.username, u.display_name, s.roll_number"
        " FROM students s JOIN users u ON u.id = s.id WHERE s.id = $1",
        student_id,
    )
    return None if row is None else StudentProfile(**dict(row))


async def student_attendance(
    db: Database, student_id: str, now: datetime, faculty_id: str | None = None
) -> list[AttendanceRecord]:
    """Every enrolled course with its sessions whose check-in window has opened by ``now``.

    ``faculty_id`` limits the result to courses that faculty member teaches.
    Ordered by course code, newest session first.
    """
    rows = await db.fetch(
        "SELECT c.id AS course_id, c.code AS course_code, c.title AS course_title,"
        " cs.id AS session_id, cs.starts_at, cs.ends_at, cs.status AS session_status,"
        " a.status, a.checked_in_at"
        " FROM enrolments e"
        " JOIN courses c ON c.id = e.course_id"
        " LEFT JOIN class_sessions cs ON cs.course_id = c.id AND cs.status <> 'cancelled'"
        "   AND cs.starts_at - make_interval(mins => cs.opens_minutes_before) <= $2"
        " LEFT JOIN attendance a ON a.session_id = cs.id AND a.student_id = e.student_id"
        " WHERE e.student_id = $1 AND ($3::text IS NULL OR c.faculty_id = $3)"
        " ORDER BY c.code, cs.starts_at DESC NULLS LAST",
        student_id, now, faculty_id,
    )
    return [AttendanceRecord(**dict(r)) for r in rows]


async def student_token_secret(db: Database, student_id: str) -> bytes | None:
    """The HMAC secret of the student's rotating check-in token."""
    secret = await db.fetchval("SELECT token_secret FROM students WHERE id = $1", student_id)
    return None if secret is None else bytes(secret)


# --- devices and rejections ---------------------------------------------------

async def devices_overview(db: Database) -> list[DeviceOverview]:
    """Every device with its latest persisted health (offline if never heard from)."""
    rows = await db.fetch(DEVICE_OVERVIEW_SELECT + " ORDER BY r.name, d.id")
    return [DeviceOverview(**dict(r)) for r in rows]


async def rejection_counts(db: Database) -> dict[str, int]:
    """Rejected messages per reason, most frequent first."""
    rows = await db.fetch(
        "SELECT reason, count(*) AS n FROM rejected_events GROUP BY reason ORDER BY n DESC, reason"
    )
    return {r["reason"]: r["n"] for r in rows}


async def list_rejections(
    db: Database, limit: int, offset: int, reason: str | None = None
) -> RejectionPage:
    """One page of rejected messages, newest first, optionally of one reason, with the total."""

    async def work(conn: asyncpg.Connection) -> RejectionPage:
        total = await conn.fetchval(
            "SELECT count(*) FROM rejected_events WHERE ($1::text IS NULL OR reason = $1)", reason
        )
        rows = await conn.fetch(
            "SELECT id, received_at, reason, detail, topic, device_id, kind, session_id, event_id,"
            " octet_length(payload) AS payload_bytes"
            " FROM rejected_events WHERE ($1::text IS NULL OR reason = $1)"
            " ORDER BY received_at DESC, id DESC LIMIT $2 OFFSET $3",
            reason, limit, offset,
        )
        return RejectionPage(total, tuple(RejectionRow(**dict(r)) for r in rows))

    return await db.run(work)


async def overview_counts(db: Database) -> OverviewCounts:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM users) AS users,"
        " (SELECT count(*) FROM users WHERE role = 'faculty') AS faculty,"
        " (SELECT count(*) FROM students) AS students,"
        " (SELECT count(*) FROM courses) AS courses,"
        " (SELECT count(*) FROM rooms) AS rooms,"
        " (SELECT count(*) FROM devices WHERE revoked_at IS NULL) AS devices,"
        " (SELECT count(*) FROM device_health h JOIN devices d ON d.id = h.device_id"
        "   WHERE h.online AND d.revoked_at IS NULL) AS devices_online,"
        " (SELECT count(*) FROM class_sessions) AS sessions,"
        " (SELECT count(*) FROM attendance) AS attendance_records,"
        " (SELECT count(*) FROM rejected_events) AS rejections"
    )
    return OverviewCounts(**dict(row))
