"""hub.db.seed.ensure_campus: counts, idempotence, live sessions, the demo timetable's sessions,
passwords, speed.

Each test seeds its own database (``fresh_database_url``): seeding is about
exact row counts, which the run's shared database cannot promise.
"""
from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock
from typing import AsyncIterator

import pytest
import trio

from hub.core.campus import Campus
from hub.core.passwords import verify_password
from hub.db import Database, open_database
from hub.db.device_registry import load_devices
from hub.db.seed import (
    COURSES_PER_STUDENT,
    DEMO_PASSWORD,
    SESSION_LEAD,
    SESSION_LENGTH,
    ensure_campus,
    room_id,
)
from hub.db.seed.academic import TERM_ID, ensure_todays_past_classes

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 4, 10, 17, 42, tzinfo=timezone.utc)
TABLES = ("users", "students", "rooms", "courses", "enrolments", "devices", "class_sessions")


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=4) as database:
        yield database


async def counts(db: Database) -> dict[str, int]:
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}


def assert_live(campus: Campus, now: datetime) -> None:
    for session in campus.sessions:
        assert session.starts_at <= now < session.ends_at, session


async def test_seeds_the_requested_campus(fresh_db: Database) -> None:
    campus = await ensure_campus(fresh_db, rooms=4, students=25, now=NOW)

    generated = await fresh_db.fetchval("SELECT count(*) FROM class_sessions WHERE origin = 'timetable'")
    assert await counts(fresh_db) == {
        "users": 2 + 4 + 25,  # admin, ops, one faculty member per room, students
        "students": 25, "rooms": 4, "courses": 4 * COURSES_PER_STUDENT,
        "enrolments": 25 * COURSES_PER_STUDENT,
        "devices": 4, "class_sessions": 4 + generated,  # one live per room + the demo timetable's
    }
    assert [s.student_id for s in campus.students] == [f"stu-{n:04d}" for n in range(1, 26)]
    assert campus.students[0].username == "s0001"
    assert all(len(s.token_secret) == 32 for s in campus.students)
    assert len({s.token_secret for s in campus.students}) == 25

    assert [d.device_id for d in campus.devices] == [f"dev-room-00{n}" for n in range(1, 5)]
    keys = {d.device_id: d.key for d in await load_devices(fresh_db)}  # opened with the campus key
    for device in campus.devices:
        assert (device.kind, device.alg) == ("edge_agent", "hmac-sha256")
        assert device.room_id == device.device_id.removeprefix("dev-")
        assert device.signing_key == keys[device.device_id] and len(device.signing_key) == 32

    assert [s.room_id for s in campus.sessions] == [room_id(n) for n in range(1, 5)]
    assert_live(campus, NOW)
    student_ids = {s.student_id for s in campus.students}
    for session in campus.sessions:
        assert session.starts_at == (NOW - SESSION_LEAD).replace(second=0, microsecond=0)
        assert session.ends_at - session.starts_at == SESSION_LENGTH
        # Some students are enrolled, some are not: both check-in paths are testable.
        assert 0 < len(session.enrolled) < len(student_ids)
        assert set(session.enrolled) <= student_ids
        enrolled = {r["student_id"] for r in await fresh_db.fetch(
            "SELECT student_id FROM enrolments WHERE course_id = $1", session.course_id)}
        assert set(session.enrolled) == enrolled

    assert {(login.role, login.username) for login in campus.logins} == {
        ("admin", "admin"), ("ops", "ops"), ("faculty", "faculty1"), ("student", "s0001")}
    roles = dict(await fresh_db.fetch("SELECT username, role FROM users"))
    assert (roles["admin"], roles["ops"], roles["faculty1"], roles["s0001"]) == (
        "admin", "ops", "faculty", "student")


async def test_generates_the_demo_timetables_sessions_once(fresh_db: Database) -> None:
    campus = await ensure_campus(fresh_db, rooms=4, students=25, now=NOW)
    term = await fresh_db.fetchrow("SELECT starts_on, ends_on, timezone FROM terms WHERE id = $1", TERM_ID)
    holiday = await fresh_db.fetchval("SELECT starts_on FROM holidays WHERE name = 'Demo holiday'")
    slots = await fresh_db.fetch("SELECT id, weekday, starts_time, ends_time FROM timetable_slots")
    assert term["timezone"] == "UTC" and len(slots) == 4 * 2 + 2  # two a week per course, two today
    today = NOW.date()

    def days(first: date, last: date) -> list[date]:
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]

    def occurrences(after: datetime) -> set[tuple[str, datetime]]:
        """Every occurrence of every slot to the term's end, except on the holiday."""
        return {(s["id"], start) for s in slots for day in days(today, term["ends_on"])
                if day.weekday() == s["weekday"] and day != holiday
                and (start := datetime.combine(day, s["starts_time"], timezone.utc)) > after}

    async def generated() -> list:
        return await fresh_db.fetch(
            "SELECT id, slot_id, course_id, room_id, starts_at, ends_at, status, grace_minutes FROM class_sessions"
            " WHERE origin = 'timetable' ORDER BY starts_at")

    # Like the admin's "Generate sessions": from now on, nothing in the past.
    rows = await generated()
    assert {(r["slot_id"], r["starts_at"]) for r in rows} == occurrences(NOW) and len(rows) == len(occurrences(NOW))
    assert all(r["status"] == "scheduled" for r in rows)
    assert {r["grace_minutes"] for r in rows if r["course_id"] == "course-001"} == {5}  # its custom rules
    live = {s.room_id: s for s in campus.sessions}
    for r in rows:  # the campus's live sessions keep their rooms to themselves
        session = live[r["room_id"]]
        assert r["ends_at"] <= session.starts_at or r["starts_at"] >= session.ends_at, r["id"]
    upcoming = [r for r in rows if r["starts_at"].date() == today]
    assert [r["slot_id"] for r in upcoming] == ["course-002-A-today-tutorial"]
    assert upcoming[0]["starts_at"] >= live["room-001"].ends_at  # course 2 is room 1's second course

    # Seeding again (later the same day) adds nothing.
    before = await counts(fresh_db)
    await ensure_campus(fresh_db, rooms=4, students=25, now=NOW + timedelta(minutes=30))
    assert await counts(fresh_db) == before

    # The demo's extra step: today's class that is already over, with its attendance (audited).
    audited = await fresh_db.fetchval("SELECT count(*) FROM audit_log")
    (past,) = await ensure_todays_past_classes(fresh_db, NOW)
    row = await fresh_db.fetchrow("SELECT slot_id, starts_at, ends_at, room_id FROM class_sessions WHERE id = $1",
                                  past)
    assert row["slot_id"] == "course-002-A-today-lecture" and row["ends_at"] <= live["room-001"].starts_at
    assert {(r["slot_id"], r["starts_at"]) for r in await generated()} == occurrences(
        datetime.combine(today, clock(0), timezone.utc))
    records = dict(await fresh_db.fetch("SELECT student_id, status FROM attendance WHERE session_id = $1", past))
    enrolled = {r["student_id"] for r in await fresh_db.fetch(
        "SELECT student_id FROM enrolments WHERE course_id = 'course-002'")}
    assert set(records) == enrolled and {"present", "late", "absent"} == set(records.values())
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log") == audited + len(enrolled)
    before = await counts(fresh_db)
    assert await ensure_todays_past_classes(fresh_db, NOW + timedelta(minutes=30)) == []
    assert await counts(fresh_db) == before


async def test_is_idempotent(fresh_db: Database) -> None:
    first = await ensure_campus(fresh_db, rooms=3, students=20, now=NOW)
    before = await counts(fresh_db)
    again = await ensure_campus(fresh_db, rooms=3, students=20, now=NOW)
    # Later, while the sessions are still live: the same campus, same sessions.
    later = await ensure_campus(fresh_db, rooms=3, students=20, now=NOW + timedelta(minutes=30))
    assert again == first and later == first  # same ids, secrets, keys and sessions
    assert await counts(fresh_db) == before


async def test_tops_up_a_smaller_campus_and_keeps_secrets(fresh_db: Database) -> None:
    small = await ensure_campus(fresh_db, rooms=2, students=10, now=NOW)
    big = await ensure_campus(fresh_db, rooms=5, students=40, now=NOW)
    assert len(big.students) == 40 and len(big.devices) == len(big.sessions) == 5
    assert big.students[:10] == small.students
    assert big.devices[:2] == small.devices
    assert big.sessions[0].session_id == small.sessions[0].session_id
    # Asking for less afterwards returns only what was asked for.
    again = await ensure_campus(fresh_db, rooms=2, students=10, now=NOW)
    assert again.students == small.students and again.devices == small.devices


async def test_renews_sessions_that_are_no_longer_live(fresh_db: Database) -> None:
    first = await ensure_campus(fresh_db, rooms=2, students=10, now=NOW)
    ended = first.sessions[0].ends_at

    # Two minutes after the first sessions ended: the new ones start where they ended.
    now = ended + timedelta(minutes=2)
    second = await ensure_campus(fresh_db, rooms=2, students=10, now=now)
    assert_live(second, now)
    assert {s.session_id for s in second.sessions}.isdisjoint(s.session_id for s in first.sessions)
    assert all(s.starts_at == ended for s in second.sessions)
    assert second.students == first.students and second.devices == first.devices

    # Another session scheduled soon in room 1: the new one ends when it starts.
    much_later = now + timedelta(hours=5)
    upcoming = much_later + timedelta(minutes=20)
    await fresh_db.execute(
        "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at)"
        " VALUES ('upcoming', 'course-001', 'room-001', $1, $2)", upcoming, upcoming + timedelta(hours=1))
    third = await ensure_campus(fresh_db, rooms=2, students=10, now=much_later)
    assert_live(third, much_later)
    assert third.sessions[0].ends_at == upcoming
    assert third.sessions[1].ends_at - third.sessions[1].starts_at == SESSION_LENGTH


async def test_replaces_a_closed_session(fresh_db: Database) -> None:
    first = await ensure_campus(fresh_db, rooms=1, students=5, now=NOW)
    await fresh_db.execute("UPDATE class_sessions SET status = 'closed' WHERE id = $1",
                           first.sessions[0].session_id)
    second = await ensure_campus(fresh_db, rooms=1, students=5, now=NOW)
    # Same start minute, so the id needs a suffix to stay unique.
    assert second.sessions[0].session_id == first.sessions[0].session_id + "-2"
    assert_live(second, NOW)


async def test_seeded_passwords_verify(fresh_db: Database) -> None:
    campus = await ensure_campus(fresh_db, rooms=2, students=5, now=NOW, demo_password="s3cret")
    hashes = dict(await fresh_db.fetch("SELECT username, password_hash FROM users"))
    assert len(set(hashes.values())) == 1  # hashed once, shared by every seeded user
    for login in campus.logins:
        assert login.password == "s3cret"
        assert await trio.to_thread.run_sync(verify_password, hashes[login.username], login.password)
    assert not await trio.to_thread.run_sync(verify_password, hashes["admin"], DEMO_PASSWORD)


async def test_concurrent_callers_agree(fresh_db: Database) -> None:
    results: list[Campus] = []

    async def seed() -> None:
        results.append(await ensure_campus(fresh_db, rooms=3, students=15, now=NOW))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(seed)
    assert results[0] == results[1] == results[2]
    assert (await counts(fresh_db))["students"] == 15


async def test_rejects_bad_arguments(fresh_db: Database) -> None:
    with pytest.raises(ValueError):
        await ensure_campus(fresh_db, rooms=1, students=1, now=datetime(2025, 1, 1))  # naive
    with pytest.raises(ValueError):
        await ensure_campus(fresh_db, rooms=0, students=1, now=NOW)


async def test_seed_speed_at_demo_scale(fresh_db: Database) -> None:
    started = time.perf_counter()
    campus = await ensure_campus(fresh_db, rooms=200, students=2000, now=NOW)
    seeded = time.perf_counter() - started
    started = time.perf_counter()
    again = await ensure_campus(fresh_db, rooms=200, students=2000, now=NOW)
    reloaded = time.perf_counter() - started
    print(f"\nensure_campus(rooms=200, students=2000): seed {seeded * 1000:.0f} ms, "
          f"rerun {reloaded * 1000:.0f} ms")
    assert again == campus
    assert len(campus.students) == 2000 and len(campus.sessions) == 200
    assert (await counts(fresh_db))["enrolments"] == 2000 * COURSES_PER_STUDENT
