"""What the browser is shown: JSON shapes of rosters and attendance, and the live feeds (devices: web/console.py).

The same presenters serve the JSON API, the websocket snapshots and (through
the same derived statuses) the server-rendered pages, so a page, its API and
its live feed always agree.

A :class:`Feed` is what one websocket streams: the bus topics to forward and
how to build a fresh snapshot (sent first, and again after every resync).
Snapshot messages look like ``{"type": "snapshot", "feed": <name>,
"reason": "initial" | "resync", **body}`` where ``body`` is exactly the
matching API response.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable

from hub.core.bus import DEVICES_TOPIC, session_topic, student_topic
from hub.db.checkin import flag_json, list_flags
from hub.db.device_health import devices_overview
from hub.db.rosters import Roster, SessionSummary, session_roster
from hub.db.students import AttendanceRecord, StudentProfile, student_attendance, student_profile

from .console import console_extras, devices_json
from .context import WebContext
from .errors import not_found

#: Statuses shown for a student in a session. "not-yet" = no record and the session has not ended.
STATUSES = ("present", "late", "absent", "excused", "not-yet")
STATUS_LABELS = {"present": "present", "late": "late", "absent": "absent", "excused": "excused", "not-yet": "not yet"}


def utc_now(ctx: WebContext) -> datetime:
    return datetime.fromtimestamp(ctx.now(), timezone.utc)


def effective_status(status: str | None, ended: bool) -> str:
    """A recorded status, else "absent" once the session is over, else "not-yet"."""
    if status:
        return status
    return "absent" if ended else "not-yet"


# --- sessions and rosters ------------------------------------------------------

def session_json(session: SessionSummary, now: datetime) -> dict:
    return {
        "session_id": session.session_id,
        "course_id": session.course_id,
        "course_code": session.course_code,
        "course_title": session.course_title,
        "room_id": session.room_id,
        "room_name": session.room_name,
        "starts_at": session.starts_at,
        "ends_at": session.ends_at,
        "opens_at": session.opens_at,
        "grace_minutes": session.grace_minutes,
        "status": session.status,
        "live": session.is_live(now),
        "ended": session.has_ended(now),
    }


def roster_counts(statuses: Iterable[str]) -> dict:
    counted = Counter(statuses)
    counts = {status.replace("-", "_"): counted.get(status, 0) for status in STATUSES}
    counts["enrolled"] = sum(counted.values())
    return counts


def roster_json(roster: Roster, now: datetime) -> dict:
    ended = roster.session.has_ended(now)
    students: list[dict[str, Any]] = [
        {
            "student_id": e.student_id,
            "name": e.display_name,
            "roll_number": e.roll_number,
            "status": effective_status(e.status, ended),
            "checked_in_at": e.checked_in_at,
        }
        for e in roster.entries
    ]
    return {
        "session": session_json(roster.session, now),
        "students": students,
        "counts": roster_counts(s["status"] for s in students),
    }


# --- students --------------------------------------------------------------------

def _record_ended(record: AttendanceRecord, now: datetime) -> bool:
    return record.session_status == "closed" or (record.ends_at is not None and now > record.ends_at)


def attendance_json(profile: StudentProfile, records: list[AttendanceRecord], now: datetime) -> dict:
    """Records grouped per course (courses in code order, sessions newest first)."""
    courses: dict[str, dict] = {}
    for r in records:
        course = courses.setdefault(r.course_id, {
            "course_id": r.course_id, "course_code": r.course_code, "course_title": r.course_title,
            "sessions": [], "attended": 0, "total": 0,
        })
        if r.session_id is None:
            continue
        status = effective_status(r.status, _record_ended(r, now))
        course["sessions"].append({
            "session_id": r.session_id, "starts_at": r.starts_at, "ends_at": r.ends_at,
            "status": status, "checked_in_at": r.checked_in_at,
        })
        if status != "not-yet":
            course["total"] += 1
            course["attended"] += status in ("present", "late", "excused")
    return {
        "student": {
            "student_id": profile.student_id, "name": profile.display_name, "roll_number": profile.roll_number,
        },
        "courses": list(courses.values()),
    }


# --- loading (shared by the API routes and the feeds) --------------------------------

async def load_roster(ctx: WebContext, session_id: str) -> Roster:
    roster = await session_roster(ctx.db, session_id)
    if roster is None:
        raise not_found("No such session.")
    return roster


async def load_attendance(ctx: WebContext, student_id: str, faculty_id: str | None = None) -> dict:
    profile = await student_profile(ctx.db, student_id)
    if profile is None:
        raise not_found("No such student.")
    now = utc_now(ctx)
    return attendance_json(profile, await student_attendance(ctx.db, student_id, now, faculty_id), now)


# --- live feeds -------------------------------------------------------------------------

@dataclass(frozen=True)
class Feed:
    """One websocket's stream: forward ``topics``, (re)load state with ``snapshot``."""

    name: str
    topics: tuple[str, ...]
    snapshot: Callable[[], Awaitable[dict]]


#: Open flags a roster snapshot carries (newest first); more wait for the next snapshot.
SNAPSHOT_FLAGS = 200


def session_feed(ctx: WebContext, session_id: str) -> Feed:
    """A live roster and its open check-in flags (kept current by the ``flag`` messages).
    Authorise (web.access.authorize_session) before building it."""

    async def snapshot() -> dict:
        roster = roster_json(await load_roster(ctx, session_id), utc_now(ctx))
        flags = await list_flags(ctx.db, session_id, "open", SNAPSHOT_FLAGS, 0)
        return {**roster, "flags": [flag_json(f) for f in flags.items]}

    return Feed("session", (session_topic(session_id),), snapshot)


def devices_feed(ctx: WebContext) -> Feed:
    """The device grid; besides GET /api/v1/devices' body it carries the console's rooms,
    active alarms and live tickets (web/console.py), which the bus's ``alarm`` and ``ticket``
    messages on the same topic keep current."""

    async def snapshot() -> dict:
        return {**devices_json(await devices_overview(ctx.db)), **await console_extras(ctx, utc_now(ctx))}

    return Feed("devices", (DEVICES_TOPIC,), snapshot)


def student_feed(ctx: WebContext, student_id: str) -> Feed:
    """A student's own attendance (the student's own id only)."""

    async def snapshot() -> dict:
        return await load_attendance(ctx, student_id)

    return Feed("student", (student_topic(student_id),), snapshot)
