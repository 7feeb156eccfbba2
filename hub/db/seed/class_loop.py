"""The demo's campus day on a loop: a class every hour in every room, for as long as the demo runs.

``campushub demo`` calls :func:`ensure_class_loop` at start and then every few
minutes (hub/app/cli.py): it keeps the next ``ahead`` hours filled with hourly
classes and returns the ids it created, which the demo tells the hub's
scheduler (``SessionsChanged``), exactly as the web does after creating a
session. The scheduler then opens and closes them on its exact timers, and the
simulator (hub/app/simulator.py) finds them with :func:`upcoming_sessions` and
sends students to them. Around the clock on purpose: a demo can start at any hour.

The timetable of the loop: room ``n`` starts a ``CLASS_LENGTH`` class every hour
at minute ``15 * ((n - 1) % 4)`` (so somewhere on campus a class starts every
quarter of an hour), teaching its courses in turn (``hub.db.seed.room_course``,
``COURSES_PER_STUDENT`` of them). Every course is
taught in its own room only and every student takes one room's courses, so
nobody is ever due in two rooms at once and no faculty member teaches two live
classes at once (tests/db/test_seed_plausibility.py checks this with queries).

Each class is created through :func:`hub.db.class_sessions.create_session`,
the one front door (room lock and clash check, the course's rules, students on
approved leave excused), as ``actor="demo"``. A slot that overlaps any session
of the room (the seed's live class, the demo timetable's) is skipped.

Concurrency contract: blocks the calling trio task for one short read plus one
transaction per class created; safe to call concurrently (a slot taken meanwhile
is refused by the room's clash check and skipped); cancelling it leaves the
classes already committed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable

import trio

from hub.core.campus import LiveSession

from .._pool import Database, asyncio_loop, open_database
from ..academic import Conflict
from ..class_sessions import NewSession, create_session
from . import COURSES_PER_STUDENT, course_id, room_course, room_id

log = logging.getLogger(__name__)

CLASS_LENGTH = timedelta(minutes=50)
#: The loop's classes start this many minutes apart between neighbouring rooms (wrapping every 4).
STAGGER = timedelta(minutes=15)
LOOP_ACTOR = "demo"
#: How far ahead the demo keeps the loop filled (the simulator plans arrivals an hour ahead at most).
AHEAD = timedelta(hours=3)


@dataclass(frozen=True)
class LoopSlot:
    """One class of the loop: room ``room`` (1-based) teaches ``course_id`` from ``starts_at``."""

    room: int
    course_id: str
    starts_at: datetime

    @property
    def ends_at(self) -> datetime:
        return self.starts_at + CLASS_LENGTH


def loop_slots(rooms: int, start: datetime, end: datetime) -> list[LoopSlot]:
    """The loop's classes starting in ``[start, end)``, by start then room. Pure."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    hour = start.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    slots = []
    while hour < end:
        stream = int(hour.timestamp() // 3600) % COURSES_PER_STUDENT
        for n in range(1, rooms + 1):
            starts = hour + STAGGER * ((n - 1) % 4)
            if start <= starts < end:
                slots.append(LoopSlot(n, course_id(room_course(n, stream)), starts))
        hour += timedelta(hours=1)
    return sorted(slots, key=lambda s: (s.starts_at, s.room))


async def ensure_class_loop(db: Database, *, rooms: int, now: datetime, ahead: timedelta = AHEAD) -> list[str]:
    """Create the loop's classes starting in ``(now, now + ahead]`` whose room is free; return their ids."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    slots = loop_slots(rooms, now + timedelta(microseconds=1), now + ahead)
    if not slots:
        return []
    busy = await db.fetch(
        "SELECT room_id, starts_at, ends_at FROM class_sessions WHERE room_id = ANY($1::text[])"
        " AND status <> 'cancelled' AND ends_at > $2 AND starts_at < $3",
        sorted({room_id(s.room) for s in slots}), slots[0].starts_at, slots[-1].ends_at)
    created = []
    for slot in slots:
        rid = room_id(slot.room)
        if any(b["room_id"] == rid and b["starts_at"] < slot.ends_at and b["ends_at"] > slot.starts_at
               for b in busy):
            continue
        try:
            session = await create_session(
                db, NewSession(slot.course_id, rid, slot.starts_at, slot.ends_at), actor=LOOP_ACTOR, now=now)
        except Conflict:
            continue  # taken since the read above
        created.append(session.session_id)
    return created


async def keep_class_loop(database_url: str, *, rooms: int, every_s: float,
                          created: Callable[[list[str]], Awaitable[None]]) -> None:
    """Top the loop up now and every ``every_s`` until cancelled; hand each batch of new ids to ``created``
    (the demo tells the scheduler). Runs its own trio-asyncio loop and one-connection pool, so any trio
    task may run it (the hub's pool belongs to the hub's loop). A failed turn (PostgreSQL away for a
    moment) is logged and the next turn catches up."""
    async with asyncio_loop(), open_database(database_url, min_size=1, max_size=1) as db:
        while True:
            try:
                ids = await ensure_class_loop(db, rooms=rooms, now=datetime.now(timezone.utc))
            except Exception:
                log.exception("scheduling the demo's next classes failed; retrying in %.0f s", every_s)
            else:
                if ids:
                    await created(ids)
            await trio.sleep(every_s)


async def upcoming_sessions(db: Database, room_ids: list[str], now: datetime, ahead: timedelta) -> list[LiveSession]:
    """The scheduled or open sessions of ``room_ids`` that are live at ``now`` or start within ``ahead``,
    each with the students its roster holds (the course's, or its section's); by start, then room."""
    rows = await db.fetch(
        "SELECT cs.id, cs.course_id, cs.room_id, cs.starts_at, cs.ends_at, cs.grace_minutes,"
        " coalesce(array_agg(e.student_id ORDER BY e.student_id) FILTER (WHERE e.student_id IS NOT NULL),"
        "          '{}') AS enrolled"
        " FROM class_sessions cs LEFT JOIN enrolments e ON e.course_id = cs.course_id"
        "  AND (cs.section_id IS NULL OR e.section_id IS NULL OR e.section_id = cs.section_id)"
        " WHERE cs.room_id = ANY($1::text[]) AND cs.status IN ('scheduled', 'open')"
        " AND cs.ends_at > $2 AND cs.starts_at <= $3"
        " GROUP BY cs.id ORDER BY cs.starts_at, cs.room_id",
        room_ids, now, now + ahead)
    return [LiveSession(r["id"], r["course_id"], r["room_id"], r["starts_at"], r["ends_at"], r["grace_minutes"],
                        tuple(r["enrolled"])) for r in rows]
