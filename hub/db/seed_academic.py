"""Academic demo data: a term around today, a holiday, sections, faculty assignments, a weekly timetable.

Idempotent (fixed ids, ``ON CONFLICT DO NOTHING``); runs inside the campus
seed's transaction. It creates no sessions itself (the campus seed keeps one
live session per room and its tests count them): the admin console's
"Generate sessions" (``POST /api/v1/terms/demo-term/generate``) turns the
timetable into the term's sessions, which the scheduler then opens and closes.
Slots avoid today's weekday, so generated sessions never overlap the campus
seed's live ones.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta

import asyncpg

TERM_ID = "demo-term"
MAX_COURSES = 4
_TIMES = ((time(9), time(10)), (time(14), time(15, 30)))


async def ensure_academic_demo(conn: asyncpg.Connection, course_ids: list[str], now: datetime) -> None:
    """In the caller's transaction: the demo term, sections ``A`` of the first courses, their slots."""
    today = now.date()
    await conn.execute(
        "INSERT INTO terms (id, name, starts_on, ends_on, timezone) VALUES ($1, 'Demo term', $2, $3, 'UTC')"
        " ON CONFLICT (id) DO NOTHING", TERM_ID, today - timedelta(days=30), today + timedelta(days=60))
    holiday = today + timedelta(days=7)
    await conn.execute(
        "INSERT INTO holidays (name, starts_on, ends_on) SELECT 'Demo holiday', $1, $1"
        " WHERE NOT EXISTS (SELECT 1 FROM holidays WHERE name = 'Demo holiday')", holiday)
    courses = await conn.fetch(
        "SELECT c.id, c.faculty_id, s.room_id FROM courses c"
        " LEFT JOIN LATERAL (SELECT room_id FROM class_sessions cs WHERE cs.course_id = c.id LIMIT 1) s ON true"
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
        for k, (starts, ends) in enumerate(_TIMES):
            weekday = (today.weekday() + 1 + n + 2 * k) % 7
            if weekday == today.weekday():
                weekday = (weekday + 1) % 7
            await conn.execute(
                "INSERT INTO timetable_slots (id, section_id, room_id, weekday, starts_time, ends_time)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                f"{section_id}-slot{k + 1}", section_id, course["room_id"], weekday, starts, ends)
    if courses:
        await conn.execute(
            "INSERT INTO course_rules (course_id, grace_minutes, updated_by) VALUES ($1, 5, 'seed')"
            " ON CONFLICT DO NOTHING", courses[0]["id"])
