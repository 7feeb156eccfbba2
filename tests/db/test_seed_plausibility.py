"""The demo's data is plausible (queries over the whole demo seed, class loop included): no faculty
member teaches two classes at once, no student is due in (or present in) two rooms at once, no
faculty member shares a name with a student; and the class loop keeps classes coming."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import pytest
import trio

from hub.db import Database, open_database
from hub.db.seed import course_id, ensure_campus, faculty_id, room_id
from hub.db.seed.academic import ensure_todays_past_classes
from hub.db.seed.checkin import ensure_checkin_demo
from hub.db.seed.class_loop import (
    AHEAD,
    CLASS_LENGTH,
    LOOP_ACTOR,
    ensure_class_loop,
    keep_class_loop,
    loop_slots,
    upcoming_sessions,
)
from hub.db.seed.device_health import CO2_ABOVE, DEMO_AUTO_RAISE, ensure_alarm_demo
from hub.db.seed.insights import ensure_insights_demo

pytestmark = pytest.mark.integration

#: Mid-morning: the academic demo's earlier class of today is over, its tutorial is to come.
NOW = datetime(2025, 3, 4, 10, 17, 42, tzinfo=timezone.utc)
ROOMS, STUDENTS = 4, 60  # the demo's defaults (hub/app/cli.py)


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=4) as database:
        yield database


async def seed_the_demo(db: Database, *, rooms: int = ROOMS, students: int = STUDENTS, hours: int = 6) -> None:
    """What ``campushub demo`` seeds, then the class loop topped up as the demo does for ``hours``."""
    await ensure_campus(db, rooms=rooms, students=students, now=NOW)
    await ensure_insights_demo(db, course_id=course_id(1), now=NOW)
    await ensure_todays_past_classes(db, NOW)
    await ensure_checkin_demo(db, faculty_id=faculty_id(1), now=NOW)
    await ensure_alarm_demo(db, [room_id(n) for n in range(1, rooms + 1)], now=NOW)
    for step in range(0, hours * 60 + 1, 5):
        await ensure_class_loop(db, rooms=rooms, now=NOW + timedelta(minutes=step))


_OVERLAP = "a.id < b.id AND a.status <> 'cancelled' AND b.status <> 'cancelled'" \
           " AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at"


async def teaching_clashes(db: Database) -> list:
    return await db.fetch(
        "WITH teaches AS (SELECT id AS course_id, faculty_id FROM courses"
        "  UNION SELECT course_id, faculty_id FROM faculty_assignments)"
        " SELECT ta.faculty_id, a.id, b.id FROM class_sessions a JOIN class_sessions b ON " + _OVERLAP +
        " JOIN teaches ta ON ta.course_id = a.course_id JOIN teaches tb ON tb.course_id = b.course_id"
        "  AND tb.faculty_id = ta.faculty_id")


async def roster_clashes(db: Database) -> list:
    return await db.fetch(
        "SELECT ea.student_id, a.id, b.id FROM class_sessions a JOIN class_sessions b ON " + _OVERLAP +
        " JOIN enrolments ea ON ea.course_id = a.course_id"
        " JOIN enrolments eb ON eb.course_id = b.course_id AND eb.student_id = ea.student_id")


async def presence_clashes(db: Database) -> list:
    return await db.fetch(
        "SELECT ra.student_id, a.id, b.id FROM class_sessions a JOIN class_sessions b ON " + _OVERLAP +
        " JOIN attendance ra ON ra.session_id = a.id AND ra.status IN ('present', 'late')"
        " JOIN attendance rb ON rb.session_id = b.id AND rb.student_id = ra.student_id"
        "  AND rb.status IN ('present', 'late')")


async def shared_names(db: Database) -> list:
    return await db.fetch(
        "SELECT f.display_name FROM users f JOIN users s ON s.role = 'student' AND s.id <> f.id"
        " AND regexp_replace(f.display_name, '^Prof\\. ', '') = s.display_name WHERE f.role = 'faculty'")


async def test_nobody_is_in_two_places_at_once(fresh_db: Database) -> None:
    await seed_the_demo(fresh_db)
    assert await fresh_db.fetchval("SELECT count(*) FROM class_sessions") > 4 * 6  # the loop made classes
    assert await fresh_db.fetchval("SELECT count(*) FROM attendance WHERE status IN ('present', 'late')") > 0
    assert await teaching_clashes(fresh_db) == []
    assert await roster_clashes(fresh_db) == []
    assert await presence_clashes(fresh_db) == []
    assert await shared_names(fresh_db) == []


async def test_the_queries_do_see_a_clash(fresh_db: Database) -> None:
    # The checks above are only worth something if they catch what the old seed did.
    await ensure_campus(fresh_db, rooms=2, students=10, now=NOW)
    start = NOW + timedelta(days=2)
    await fresh_db.execute(
        "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at) VALUES"
        " ('x1', 'course-001', 'room-001', $1, $2), ('x2', 'course-002', 'room-002', $1, $2)",
        start, start + timedelta(hours=1))  # room 1's two courses at once, one of them elsewhere
    await fresh_db.execute("INSERT INTO attendance (session_id, student_id, status, source, checked_in_at)"
                           " SELECT s, 'stu-0001', 'present', 'manual', $1 FROM unnest('{x1,x2}'::text[]) s", start)
    await fresh_db.execute("UPDATE users SET display_name = 'Prof. ' || (SELECT display_name FROM users"
                           " WHERE id = 'stu-0002') WHERE id = $1", faculty_id(1))
    assert [r["faculty_id"] for r in await teaching_clashes(fresh_db)] == [faculty_id(1)]
    assert {r["student_id"] for r in await roster_clashes(fresh_db)} >= {"stu-0001"}
    assert [r["student_id"] for r in await presence_clashes(fresh_db)] == ["stu-0001"]
    assert len(await shared_names(fresh_db)) == 1


async def test_no_faculty_member_shares_a_students_name_at_scale(fresh_db: Database) -> None:
    await ensure_campus(fresh_db, rooms=30, students=900, now=NOW)
    assert await shared_names(fresh_db) == []
    assert await teaching_clashes(fresh_db) == [] and await roster_clashes(fresh_db) == []


async def test_the_class_loop_keeps_every_room_busy_hour_after_hour(fresh_db: Database) -> None:
    await seed_the_demo(fresh_db, hours=0)
    created = await ensure_class_loop(fresh_db, rooms=ROOMS, now=NOW)
    assert created == [] or len(created) <= ROOMS * 3  # the seed above already filled AHEAD
    rooms = [room_id(n) for n in range(1, ROOMS + 1)]
    # Walk the demo forward 8 hours the way it runs: top up every 5 min, look at what is live.
    for minutes in range(0, 8 * 60, 5):
        now = NOW + timedelta(minutes=minutes)
        await ensure_class_loop(fresh_db, rooms=ROOMS, now=now)
        live = await upcoming_sessions(fresh_db, rooms, now, timedelta(0))
        coming = await upcoming_sessions(fresh_db, rooms, now, timedelta(hours=1))
        # Some class is on or about to start, with students on its roster: the simulator never runs dry.
        assert coming and all(s.enrolled for s in coming), now
        assert len({s.room_id for s in live}) == len(live)  # one class per room at a time
    # Hours later, every room still gets a new class every hour.
    late = NOW + timedelta(hours=7)
    sessions = await upcoming_sessions(fresh_db, rooms, late, timedelta(hours=1))
    assert {s.room_id for s in sessions} == set(rooms)
    assert all(s.ends_at - s.starts_at == CLASS_LENGTH for s in sessions if s.starts_at > late)
    # The scheduler only learns of sessions it is told about: a top-up creates each class once.
    assert await ensure_class_loop(fresh_db, rooms=ROOMS, now=late) == []
    # A roster is the course's students, as the hub's session actor loads it.
    for s in sessions:
        assert set(s.enrolled) == {r["student_id"] for r in await fresh_db.fetch(
            "SELECT student_id FROM enrolments WHERE course_id = $1", s.course_id)}


def test_loop_slots_stagger_the_rooms_and_alternate_the_courses() -> None:
    start = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
    slots = loop_slots(4, start, start + timedelta(hours=2))
    assert [(s.room, s.starts_at.minute) for s in slots[:4]] == [(1, 0), (2, 15), (3, 30), (4, 45)]
    assert len(slots) == 8
    room1 = [s.course_id for s in slots if s.room == 1]
    assert room1[0] != room1[1] and {*room1} == {course_id(1), course_id(2)}  # room 1's two courses in turn
    assert all(s.ends_at - s.starts_at == CLASS_LENGTH for s in slots)
    with pytest.raises(ValueError):
        loop_slots(1, datetime(2026, 1, 1), start)
    assert AHEAD >= timedelta(hours=1)  # the simulator looks an hour ahead


async def test_every_room_has_the_co2_rule_and_alarms_raise_tickets(fresh_db: Database) -> None:
    await seed_the_demo(fresh_db, hours=0)
    rules = await fresh_db.fetch("SELECT room_id, metric, op, value FROM threshold_rules WHERE room_id IS NOT NULL"
                                 " ORDER BY room_id")
    assert [(r["room_id"], r["metric"], r["op"], r["value"]) for r in rules] == [
        (room_id(n), "co2", "above", CO2_ABOVE) for n in range(1, ROOMS + 1)]
    assert tuple(await fresh_db.fetchval("SELECT auto_raise_severities FROM ticket_settings")) == DEMO_AUTO_RAISE
    # An admin's own choice stands: seeding again does not overwrite it.
    await fresh_db.execute("UPDATE ticket_settings SET auto_raise_severities = '{critical}'")
    await ensure_alarm_demo(fresh_db, [room_id(1)], now=NOW)
    assert await fresh_db.fetchval("SELECT auto_raise_severities FROM ticket_settings") == ["critical"]
    assert await fresh_db.fetchval("SELECT count(*) FROM threshold_rules WHERE room_id IS NOT NULL") == ROOMS


async def test_the_demos_keeper_tops_the_loop_up_from_any_trio_task(fresh_db: Database,
                                                                     fresh_database_url: str) -> None:
    # How `campushub demo` runs it: in its own nursery task, beside (not inside) the hub's asyncio loop.
    await ensure_campus(fresh_db, rooms=2, students=10, now=datetime.now(timezone.utc))
    told: list[list[str]] = []

    async def created(ids: list[str]) -> None:
        told.append(ids)
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: keep_class_loop(fresh_database_url, rooms=2, every_s=3600, created=created))
    [ids] = told
    rows = await fresh_db.fetch("SELECT id, created_by, status FROM class_sessions WHERE id = ANY($1::text[])", ids)
    assert len(rows) == len(ids) > 0 and {(r["created_by"], r["status"]) for r in rows} == {(LOOP_ACTOR, "scheduled")}
