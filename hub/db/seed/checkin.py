"""Check-in demo data: one open proxy-attendance flag for the demo faculty to review.

A ``wrong_room`` flag as the hub raises it (hub/pipeline/session_actor.py): a student
of the demo faculty's most recent ENDED session was scanned by the edge
device of another room; the check-in counted (present) and was flagged, and
the course's managing faculty got a ``checkin_flagged`` notification linking
to the session's roster, where the flag waits in the review panel. Written
with the functions the hub uses (``apply_attendance_changes``,
``insert_flags``, ``announce_flags``).

For ``campushub demo`` only, after the academic demo's past classes of today
(``hub.db.seed.academic.ensure_todays_past_classes``): like them it stays out
of ``ensure_campus``, whose sessions tests check in to and count. Without an
ended session of the faculty's courses in the last 7 days (a fresh demo
started in the first ~2.5 hours of a UTC day), nothing is seeded.

Idempotent: nothing is done once any session of a course the faculty manages
has a flag. Concurrency contract: one short transaction on ``db`` from any
trio task; cancelling rolls it back.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from hub.core.records import CheckinFlagRow

from .._pool import Database
from ..academic import manages_sql
from ..attendance import AttendanceChange, apply_attendance_changes, lock_attendance
from ..checkin import announce_flags, insert_flags

#: How far back an ended session may be to carry the demo flag.
LOOKBACK = timedelta(days=7)
#: When the flagged check-in happened, if the student had no record yet (inside any grace: present).
CHECKIN_AFTER_START = timedelta(minutes=4)


async def ensure_checkin_demo(db: Database, *, faculty_id: str, now: datetime) -> int | None:
    """The demo flag for ``faculty_id``; returns its id (None: already there, or no ended session)."""
    return await db.run(lambda conn: _seed(conn, faculty_id, now), transaction=True)


async def _seed(conn: asyncpg.Connection, faculty_id: str, now: datetime) -> int | None:
    await lock_attendance(conn)  # the records read below cannot change before the commit
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
    # A student whose check-in counted (present), else one without a record (checked in below).
    student = await conn.fetchrow(
        "SELECT e.student_id, a.status FROM enrolments e"
        " LEFT JOIN attendance a ON a.session_id = $1 AND a.student_id = e.student_id"
        " WHERE e.course_id = $2 AND (a.status IS NULL OR a.status = 'present')"
        " ORDER BY a.status IS NULL, e.student_id DESC LIMIT 1",
        session["id"], session["course_id"])
    device = await conn.fetchrow(
        "SELECT id, room_id FROM devices WHERE room_id IS NOT NULL AND room_id <> $1 AND revoked_at IS NULL"
        " ORDER BY id LIMIT 1", session["room_id"])
    if student is None or device is None:
        return None
    student_id, at = student["student_id"], session["starts_at"] + CHECKIN_AFTER_START
    if student["status"] is None:
        await apply_attendance_changes(
            conn, [AttendanceChange(session["id"], student_id, "present", "qr", at)],
            actor=f"device:{device['id']}", reason="check-in")
    [flag_id] = await insert_flags(conn, [CheckinFlagRow(
        session["id"], student_id, "wrong_room",
        f"scanned by {device['id']} in {device['room_id']}, not in {session['room_id']}",
        {"device_id": device["id"], "room_id": device["room_id"]}, "qr", None, at)])
    # Stores the faculty's notification; its live push is moot (the hub is not running yet).
    await announce_flags(conn, [flag_id])
    return flag_id
