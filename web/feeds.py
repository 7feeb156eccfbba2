"""What the browser is shown: JSON shapes of rosters, attendance and devices, and the live feeds.

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
from typing import Awaitable, Callable, Iterable

from hub.core.bus import DEVICES_TOPIC, session_topic, student_topic
from hub.db.checkin import flag_json, list_flags
from hub.db.web_queries import (
    AttendanceRecord,
    DeviceOverview,
    Roster,
    SessionSummary,
    StudentProfile,
    devices_overview,
    session_roster,
    student_attendance,
    student_profile,
)

from .console import console_extras
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
    students = [
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


# --- devices -------------------------------------------------------------------------

def device_json(d: DeviceOverview) -> dict:
    """A superset of the bus's device message, so the browser applies both the same way."""
    return {
        "device_id": d.device_id, "room_id": d.room_id, "room_name": d.room_name, "kind": d.kind,
        "model": d.model, "revoked": d.revoked, "online": d.online, "last_seen": d.last_seen,
        "firmware": d.firmware, "outbox_depth": d.outbox_depth, "reason": d.reason,
        "last_change": d.last_change, "uptime_s": d.uptime_s,
        "last_connect_at": d.last_connect_at, "last_connect_reason": d.last_connect_reason,
        "last_disconnect_at": d.last_disconnect_at, "last_disconnect_reason": d.last_disconnect_reason,
        "battery_pct": d.battery_pct, "signal_dbm": d.signal_dbm, "clock_skew_ms": d.clock_skew_ms,
        "error_count": d.error_count, "active_alarms": d.active_alarms, "alarm_severity": d.alarm_severity,
    }


#: Fields of an alarm as the API shows it: a superset of the bus's ``{"type": "alarm", ...}`` message.
ALARM_FIELDS = (
    "alarm_id", "device_id", "room_id", "room_name", "alarm_type", "severity", "state", "raised_at", "acked_at",
    "acked_by", "cleared_at", "cleared_by", "value", "message", "details", "updated_at",
)


def alarm_record_json(alarm: dict, room_name: str | None = None) -> dict:
    """An ``alarms`` row (hub/db/alarms.py) or a domain Alarm's fields, as the API shows it."""
    return {
        "alarm_id": alarm["id"], "device_id": alarm["device_id"], "room_id": alarm["room_id"],
        "room_name": alarm.get("room_name", room_name), "alarm_type": alarm["type"],
        "severity": alarm["severity"], "state": alarm["state"], "raised_at": alarm["raised_at"],
        "acked_at": alarm["acked_at"], "acked_by": alarm["acked_by"], "cleared_at": alarm["cleared_at"],
        "cleared_by": alarm["cleared_by"], "value": alarm["value"], "message": alarm["message"],
        "details": alarm["details"], "updated_at": alarm["updated_at"],
    }


def devices_json(devices: list[DeviceOverview]) -> dict:
    return {"devices": [device_json(d) for d in devices], "online": sum(d.online for d in devices)}


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
        _, flags = await list_flags(ctx.db, session_id, "open", SNAPSHOT_FLAGS, 0)
        return {**roster, "flags": [flag_json(f) for f in flags]}

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
