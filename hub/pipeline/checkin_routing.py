"""Where a scan goes when its device's room has no session taking check-ins at the scan's time.

Two cases must not lock a student out (and one must not pass silently):

- the scan is EARLY: a session in the same room opens within
  :data:`~hub.domain.checkin.EARLY_HORIZON`; it is counted for that session;
- the scan comes from a device in ANOTHER ROOM than the student's session:
  it goes to that session, which counts it and flags it ``wrong_room``.

Used by the device actor on this failure path only (never on the hot path).
"""
from __future__ import annotations

from datetime import datetime

from actors import ActorRef
from hub.db import Database
from hub.db.checkin import student_session_at
from hub.domain.checkin import EARLY_HORIZON
from hub.pipeline.scheduler import SessionRoute, resolve_session
from schemas import BiometricMatchEvent, QrScanEvent, parse_checkin_token


def scanned_student(event: QrScanEvent | BiometricMatchEvent) -> str | None:
    """Who the scan claims to be (unverified: the session actor verifies)."""
    if isinstance(event, BiometricMatchEvent):
        return event.body.subject
    token = parse_checkin_token(event.body.text)
    return None if token is None else token.student_id


async def resolve_elsewhere(
    db: Database, scheduler: ActorRef, room_id: str, event: QrScanEvent | BiometricMatchEvent, at: datetime,
) -> tuple[SessionRoute | None, str | None]:
    """``(route, from_room)``: the early session of this room (``from_room`` None), else the student's
    session in another room (``from_room`` = this room), else ``(None, None)``.

    Concurrency contract: called by a device actor; blocks it for two scheduler
    asks (patient: :func:`hub.pipeline.scheduler.resolve_session`) and one query.
    """
    early = await resolve_session(scheduler, room_id, at + EARLY_HORIZON)
    if early is not None:
        return early, None
    student_id = scanned_student(event)
    if student_id is None:
        return None, None
    found = await student_session_at(db, student_id, at, EARLY_HORIZON)
    if found is None or found[1] == room_id:
        return None, None
    route = await resolve_session(scheduler, found[1], at)
    if route is None or route.session_id != found[0]:
        return None, None
    return route, room_id
