"""Check-in demo data: one open proxy-attendance flag for the demo faculty to review.

A ``wrong_room`` flag as the hub raises it (hub/session_actor.py): a student
of the demo faculty's most recent ENDED session was scanned by the edge
device of another room, the check-in was counted (present, audited) and
flagged, and the course's managing faculty got a ``checkin_flagged``
notification linking to the session's roster, where the flag waits in the
review panel. Written with the same functions the hub uses
(``apply_attendance_changes``, ``insert_flags``, ``announce_flags``).

Only an ended session is used: the campus seed's live sessions are the ones
tests (and the simulator) check in to, so they stay untouched. Without an
ended session of the faculty's courses in the last 7 days (a fresh demo
started in the first hours of a UTC day, before the academic seed's earlier
lecture of today), nothing is seeded.

Idempotent: nothing is done once any session of a course the faculty
manages has a flag. Runs inside the campus seed's transaction.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from hub.records import CheckinFlagRow

from .academic import manages_sql
from .attendance import AttendanceChange, apply_attendance_changes
from .checkin import announce_flags, insert_flags

#: How far back an ended session may be to carry the demo flag.
LOOKBACK = timedelta(days=7)
#: The demo check-in happens this long after the session started (inside any grace period: present).
CHECKIN_AFTER_START = timedelta(minutes=4)


async def ensure_checkin_demo(conn: asyncpg.Connection, *, faculty_id: str, now: datetime) -> int | None:
    """In the caller's transaction: the demo flag for ``faculty_id``; returns its id (None: nothing done)."""
    if await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM checkin_flags f JOIN class_sessions cs ON cs.id = f.session_id"
            " WHERE " + manages_sql("cs.course_id", "$1") + ")", faculty_id):
        return None
    session = await conn.fetchrow(
        "SELECT cs.id, cs.course_id, cs.room_id, cs.starts_at FROM class_sessions cs"
        " WHERE cs.status <> 'cancelled' AND cs.ends_at <= $2 AND cs.ends_at > $3"
        " AND " + manages_sql("cs.course_id", "$1") +
        " ORDER BY cs.ends_at DESC, cs.id LIMIT 1", faculty_id, now, now - LOOKBACK)
    if session is None:
        return None
    # The last enrolled student without a record: tests pick students from the front of the roster.
    student_id = await conn.fetchval(
        "SELECT e.student_id FROM enrolments e"
        " LEFT JOIN attendance a ON a.session_id = $1 AND a.student_id = e.student_id"
        " WHERE e.course_id = $2 AND a.student_id IS NULL ORDER BY e.student_id DESC LIMIT 1",
        session["id"], session["course_id"])
    device = await conn.fetchrow(
        "SELECT id, room_id FROM devices WHERE room_id IS NOT NULL AND room_id <> $1 AND revoked_at IS NULL"
        " ORDER BY id LIMIT 1", session["room_id"])
    if student_id is None or device is None:
        return None
    at = session["starts_at"] + CHECKIN_AFTER_START
    await apply_attendance_changes(
        conn, [AttendanceChange(session["id"], student_id, "present", "qr", at)],
        actor=f"device:{device['id']}", reason="check-in")
    [flag_id] = await insert_flags(conn, [CheckinFlagRow(
        session["id"], student_id, "wrong_room",
        f"scanned by {device['id']} in {device['room_id']}, not in {session['room_id']}",
        {"device_id": device["id"], "room_id": device["room_id"]}, "qr", None, at)])
    # Stores the faculty's notification; its live push is moot (no hub runs during the seed).
    await announce_flags(conn, [flag_id])
    return flag_id
