"""Academic demo data: a term around today, a holiday, sections, faculty assignments, a weekly
timetable, and the term's sessions generated from it.

Two steps, both idempotent (fixed ids, ``ON CONFLICT DO NOTHING``, and
regeneration itself is idempotent):

- :func:`ensure_academic_demo` runs inside the campus seed's transaction
  (``ensure_campus``), after the campus's live sessions exist. The weekly
  slots of the first courses avoid today's weekday; the second course (the
  first if there is one) also gets two slots on today's weekday placed around
  the campus's live session in its room: one that ended before it started,
  one that starts after it ends (each only if it fits in today). The term is
  generated from ``now``, like the admin's "Generate sessions": nothing in
  the past, so the campus's tests keep exact attendance counts.
- :func:`ensure_todays_past_classes` is for ``campushub demo`` only: it also
  generates today's occurrences that started before ``now`` (regeneration
  from the start of today) and gives the ones already over demo attendance
  through the attendance primitive, so the demo shows today's past, live and
  upcoming sessions. The hub's scheduler closes them at boot (their session
  actor finds nobody left to mark absent) and finalizes them.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import asyncpg

from .._pool import Database
from ..attendance import AttendanceChange, apply_attendance_changes
from ..timetable import regenerate_in

TERM_ID = "demo-term"
MAX_COURSES = 4
SEED_ACTOR = "seed"
_TIMES = ((time(9), time(10)), (time(14), time(15, 30)))
#: Today's extra slots of the second course: this far before / after ``now``, one hour long. The campus
#: seed's live session runs from 5 min before ``now`` for an hour, so these never overlap it.
PAST_LEAD = timedelta(hours=2, minutes=30)
UPCOMING_LEAD = timedelta(hours=1, minutes=30)
TODAY_LENGTH = timedelta(hours=1)


def _five_minutes(instant: datetime, *, up: bool) -> datetime:
    floor = instant.replace(minute=instant.minute - instant.minute % 5, second=0, microsecond=0)
    return floor + timedelta(minutes=5) if up and floor != instant else floor


def todays_slots(now: datetime) -> list[tuple[str, time, time]]:
    """``(kind, starts, ends)`` of the slots on today's weekday that fit in today (UTC)."""
    now = now.astimezone(timezone.utc)
    slots = []
    for kind, starts in (("lecture", _five_minutes(now - PAST_LEAD, up=False)),
                         ("tutorial", _five_minutes(now + UPCOMING_LEAD, up=True))):
        ends = starts + TODAY_LENGTH
        if starts.date() == ends.date() == now.date():
            slots.append((kind, starts.time(), ends.time()))
    return slots


async def ensure_academic_demo(conn: asyncpg.Connection, course_ids: list[str], now: datetime) -> None:
    """In the caller's transaction: the demo term, sections ``A`` of the first courses, their slots,
    and the term's sessions from ``now`` on."""
    now = now.astimezone(timezone.utc)  # the demo term's timezone is UTC
    today = now.date()
    await conn.execute(
        "INSERT INTO terms (id, name, starts_on, ends_on, timezone) VALUES ($1, 'Demo term', $2, $3, 'UTC')"
        " ON CONFLICT (id) DO NOTHING", TERM_ID, today - timedelta(days=30), today + timedelta(days=60))
    holiday = today + timedelta(days=7)
    await conn.execute(
        "INSERT INTO holidays (name, starts_on, ends_on) SELECT 'Demo holiday', $1, $1"
        " WHERE NOT EXISTS (SELECT 1 FROM holidays WHERE name = 'Demo holiday')", holiday)
    # A course's room: where its first session is, else where its teacher's first session is (the demo's
    # teachers each teach in one room: hub.db.seed.room_course).
    courses = await conn.fetch(
        "SELECT c.id, c.faculty_id, s.room_id FROM courses c"
        " LEFT JOIN LATERAL (SELECT cs.room_id FROM class_sessions cs JOIN courses o ON o.id = cs.course_id"
        "  WHERE o.faculty_id = c.faculty_id ORDER BY cs.course_id <> c.id, cs.starts_at, cs.id LIMIT 1) s ON true"
        " WHERE c.id = ANY($1::text[]) ORDER BY c.id LIMIT $2", course_ids, MAX_COURSES)
    for n, course in enumerate(courses):
        section_id = f"{course['id']}-A"
        await conn.execute(
            "INSERT INTO sections (id, course_id, term_id, name) VALUES ($1, $2, $3, 'A') ON CONFLICT DO NOTHING",
            section_id, course["id"], TERM_ID)
        await conn.execute(
            "INSERT INTO faculty_assignments (course_id, faculty_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            course["id"], course["faculty_id"])
        await conn.execute(
            "UPDATE enrolments SET section_id = $2 WHERE course_id = $1 AND section_id IS NULL",
            course["id"], section_id)
        if course["room_id"] is None:
            continue
        slots = []
        for k, (starts, ends) in enumerate(_TIMES):
            weekday = (today.weekday() + 1 + n + 2 * k) % 7
            if weekday == today.weekday():
                weekday = (weekday + 1) % 7
            slots.append((f"{section_id}-slot{k + 1}", weekday, starts, ends, "lecture"))
        if n == min(1, len(courses) - 1):
            slots += [(f"{section_id}-today-{kind}", today.weekday(), starts, ends, kind)
                      for kind, starts, ends in todays_slots(now)]
        await conn.executemany(
            "INSERT INTO timetable_slots (id, section_id, room_id, weekday, starts_time, ends_time, kind)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            [(slot_id, section_id, course["room_id"], weekday, starts, ends, kind)
             for slot_id, weekday, starts, ends, kind in slots])
    if courses:
        await conn.execute(
            "INSERT INTO course_rules (course_id, grace_minutes, updated_by) VALUES ($1, 5, $2)"
            " ON CONFLICT DO NOTHING", courses[0]["id"], SEED_ACTOR)
    await regenerate_in(conn, TERM_ID, now=now, actor=SEED_ACTOR)


#: The demo attendance of a past class, by the student's place in the roll: mostly present.
_PATTERN = ("present", "present", "late", "present", "present", "absent", "present")


async def ensure_todays_past_classes(db: Database, now: datetime) -> list[str]:
    """Generate the demo term's occurrences from the start of today and give those already over
    demo attendance; returns the ids of the sessions created. After :func:`ensure_academic_demo`.

    One transaction (regeneration's term lock, then the attendance primitive's lock). Any trio
    task may call it; cancelling rolls back. A second call creates nothing and writes nothing.
    """
    now = now.astimezone(timezone.utc)
    start_of_today = datetime.combine(now.date(), time(0), tzinfo=timezone.utc)

    async def work(conn: asyncpg.Connection) -> list[str]:
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM terms WHERE id = $1)", TERM_ID):
            return []
        created = (await regenerate_in(conn, TERM_ID, now=start_of_today, actor=SEED_ACTOR)).created
        ended = await conn.fetch(
            "SELECT cs.id, cs.starts_at, e.student_id FROM class_sessions cs"
            " JOIN enrolments e ON e.course_id = cs.course_id"
            "  AND (cs.section_id IS NULL OR e.section_id IS NULL OR e.section_id = cs.section_id)"
            " WHERE cs.id = ANY($1::text[]) AND cs.ends_at <= $2 ORDER BY cs.id, e.student_id", created, now)
        changes, place = [], 0
        for row in ended:
            status = _PATTERN[place % len(_PATTERN)]
            place += 1
            checked_in = row["starts_at"] + timedelta(minutes=2 if status == "present" else 14)
            changes.append(AttendanceChange(row["id"], row["student_id"], status, "manual",
                                            None if status == "absent" else checked_in))
        if changes:
            await apply_attendance_changes(conn, changes, actor=SEED_ACTOR, reason="demo attendance")
        return created

    return await db.run(work, transaction=True)
