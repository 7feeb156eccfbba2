"""Row counts of the whole campus (users, students, courses, rooms, devices online, sessions, records,
rejections): the admin overview's figures.

Concurrency contract: one round trip on the shared :class:`~hub.db.Database`,
callable from any trio task; nothing here writes.
"""
from __future__ import annotations

from dataclasses import dataclass

from ._pool import Database


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
        # Rows kept plus the rejections only counted beyond the per-source storage cap.
        " (SELECT count(*) FROM rejected_events)"
        "  + (SELECT coalesce(sum(suppressed), 0) FROM rejection_tallies)::bigint AS rejections"
    )
    assert row is not None  # a SELECT of scalar subqueries is always one row
    return OverviewCounts(**dict(row))
