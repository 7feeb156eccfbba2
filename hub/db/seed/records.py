"""Demo data for leave and corrections: an approved leave, a pending one, a pending correction.

Made through the same functions the API uses (so the notifications and
audit entries are real), for one student, once: if the student already has a
leave application, nothing is done. Two hubs seeding at the same moment could
both see none: the second then finds its first leave refused as an overlap and
stops there, so no lock is needed.

Concurrency contract: blocks the calling trio task for a few short
transactions; cancelling it leaves whatever it had committed.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from hub.domain.corrections import CorrectionRuleError
from hub.domain.leave import LeaveRuleError

from .._pool import Database
from ..corrections import request_correction
from ..leave import apply_for_leave, decide_leave


async def ensure_records_demo(db: Database, *, student_id: str, decider_id: str, now: datetime) -> None:
    """Seed the demo requests for ``student_id`` (decided by ``decider_id``) unless already there."""
    if await db.fetchval("SELECT EXISTS (SELECT 1 FROM leave_applications WHERE student_id = $1)", student_id):
        return
    try:
        await _seed(db, student_id, decider_id, now)
    except (LeaveRuleError, CorrectionRuleError):
        return  # a concurrent seeder got there first (its leave overlaps ours)


async def _seed(db: Database, student_id: str, decider_id: str, now: datetime) -> None:
    today = now.date()
    done = await apply_for_leave(
        db, student_id=student_id, starts_on=today - timedelta(days=10), ends_on=today - timedelta(days=9),
        reason="Fever; doctor's note handed in at the office.", document=None, today=today)
    await decide_leave(db, done.leave.id, approve=True, decided_by=decider_id, note="Get well soon.", now=now)
    await apply_for_leave(
        db, student_id=student_id, starts_on=today + timedelta(days=7), ends_on=today + timedelta(days=8),
        reason="Representing the college at the inter-university chess finals.", document=None, today=today)
    started = await db.fetchval(
        "SELECT cs.id FROM class_sessions cs JOIN enrolments e ON e.course_id = cs.course_id AND e.student_id = $1"
        " LEFT JOIN attendance a ON a.session_id = cs.id AND a.student_id = $1"
        " WHERE cs.status <> 'cancelled' AND cs.starts_at <= $2 AND cs.starts_at > $2 - interval '7 days'"
        " AND a.status IS DISTINCT FROM 'present' ORDER BY cs.starts_at DESC LIMIT 1", student_id, now)
    if started is not None:
        await request_correction(db, student_id=student_id, session_id=started, requested_status="present",
                                 reason="I was in class; the camera did not read my code.", now=now)
