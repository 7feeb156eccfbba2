"""The warnings actor: a warning to the student and everyone teaching the course once per downward crossing,
attendance-marked notifications from the bus, the sweep safety net, and no repeat after a restart."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

import pytest
import trio
from support.course_world import add_closed_sessions, seed_course

import hub.services.warnings as warnings_module
from actors import ChildSpec, Supervisor
from hub.core.bus import LiveAttendance, LiveBus, LiveNotification, session_topic, user_topic
from hub.db import Database, open_database
from hub.services.warnings import WARNINGS_BUS_BUFFER, AttendanceChanged, WarningWatcher

NOW = datetime.now(timezone.utc)


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=4) as database:
        yield database


async def receive(subscription, timeout: float = 10.0) -> dict:
    with trio.fail_after(timeout):
        message = await subscription.receive()
        assert isinstance(message, LiveNotification)
        return message.notification


async def start(nursery: trio.Nursery, db: Database, bus: LiveBus, sweep_every_s: float = 3600) -> Supervisor:
    supervisor, _ = await start_watcher(nursery, db, bus, sweep_every_s=sweep_every_s)
    return supervisor


async def start_watcher(nursery: trio.Nursery, db: Database, bus: LiveBus, *, mailbox_size: int = 64,
                        **options: Any) -> tuple[Supervisor, WarningWatcher]:
    """A watcher built with ``options``, started under a test supervisor."""
    supervisor = Supervisor("test")
    await nursery.start(supervisor.run)
    watcher = WarningWatcher(db, bus, **options)
    await supervisor.start_child(ChildSpec("warnings", lambda: watcher, mailbox_size=mailbox_size))
    return supervisor, watcher


async def full_pass_done(watcher: WarningWatcher, pairs: int) -> None:
    """Wait (bounded) until the pass at start has recomputed ``pairs`` standings."""
    with trio.fail_after(10):
        while watcher.pairs_rechecked < pairs:
            await trio.sleep(0.02)


async def wait_state(db: Database, below: bool) -> None:
    with trio.fail_after(10):
        while await db.fetchval("SELECT below FROM attendance_warnings WHERE student_id = 's1'") is not below:
            await trio.sleep(0.02)


async def test_warning_once_per_crossing_to_student_and_every_teacher(fresh_db):
    bus = LiveBus()
    # 7 present of 10 = 70%: below the default 75% line from the start.
    await seed_course(fresh_db, ["present"] * 7 + ["absent"] * 3)
    with bus.subscribe([user_topic("s1")]) as student, bus.subscribe([user_topic("f1")]) as f1, \
            bus.subscribe([user_topic("f2")]) as f2:
        async with trio.open_nursery() as nursery:
            supervisor = await start(nursery, fresh_db, bus)
            warning = await receive(student)
            assert (warning["kind"], warning["data"]["percentage"], warning["data"]["max_reachable"]) == (
                "attendance_warning", "70.00", "72.72")
            assert "CS1" in warning["title"] and "70.00%" in warning["body"]
            for teacher in (f1, f2):
                note = await receive(teacher)
                assert note["kind"] == "attendance_warning" and "Sam One" in note["title"]
                assert note["data"]["student_id"] == "s1"

            # A check-in on the bus: an attendance-marked notification, still below, so no new warning.
            [sid] = await add_closed_sessions(fresh_db, ["present"])
            bus.publish(session_topic(sid), LiveAttendance(sid, "s1", "present", NOW.isoformat(), "qr"))
            marked = await receive(student)
            assert (marked["kind"], marked["title"], marked["data"]["session_id"]) == (
                "attendance_marked", "Marked present", sid)

            # Back above the line (told by the web, no bus message), then below again: a new warning.
            ids = await add_closed_sessions(fresh_db, ["present"] * 6)  # 14 of 17
            await supervisor.lookup("warnings").tell(AttendanceChanged(ids[0], ("s1",)))
            await wait_state(fresh_db, below=False)
            ids = await add_closed_sessions(fresh_db, ["absent"] * 3)  # 14 of 20 = 70%
            await supervisor.lookup("warnings").tell(AttendanceChanged(ids[0], None))
            again = await receive(student)
            assert again["kind"] == "attendance_warning" and again["data"]["percentage"] == "70.00"

            # A restart rebuilds nothing in memory that matters: the full sweep sends no repeat.
            await supervisor.stop_child("warnings")
            await supervisor.start_child(ChildSpec("warnings", lambda: WarningWatcher(fresh_db, bus), mailbox_size=64))
            with trio.move_on_after(0.5):
                unexpected = await student.receive()
                pytest.fail(f"repeated notification after a restart: {unexpected}")
            await supervisor.shutdown()
            nursery.cancel_scope.cancel()
    count = await fresh_db.fetchval("SELECT count(*) FROM notifications WHERE kind = 'attendance_warning'")
    assert count == 6  # two crossings x (the student + two teachers)


async def test_the_sweep_catches_changes_nobody_announced(fresh_db):
    bus = LiveBus()
    await seed_course(fresh_db, ["present"] * 4)
    with bus.subscribe([user_topic("s1")]) as student:
        async with trio.open_nursery() as nursery:
            supervisor = await start(nursery, fresh_db, bus, sweep_every_s=0.1)
            assert await fresh_db.fetchval("SELECT count(*) FROM attendance_warnings") == 0  # never below
            await add_closed_sessions(fresh_db, ["absent"] * 2)  # 4 of 6: written behind everyone's back
            warning = await receive(student)
            assert warning["kind"] == "attendance_warning" and warning["data"]["percentage"] == "66.66"
            await supervisor.shutdown()
            nursery.cancel_scope.cancel()


async def test_a_stream_of_check_ins_is_rechecked_in_coalesced_batches(fresh_db):
    """Each re-check costs round trips whatever its size: a stream is re-checked at most every recheck_every_s."""
    bus = LiveBus()
    await seed_course(fresh_db, ["present"] * 4)
    ids = await add_closed_sessions(fresh_db, ["present"] * 20)
    with bus.subscribe([user_topic("s1")]) as student:
        async with trio.open_nursery() as nursery:
            supervisor, watcher = await start_watcher(nursery, fresh_db, bus, recheck_every_s=0.4)
            for sid in ids:  # 20 check-ins over ~0.2 s; the mailbox empties between them
                bus.publish(session_topic(sid), LiveAttendance(sid, "s1", "present", NOW.isoformat(), "qr"))
                await trio.sleep(0.01)
            marked = [await receive(student) for _ in ids]
            assert sorted(m["data"]["session_id"] for m in marked) == sorted(ids)
            assert 1 <= watcher.rechecks <= 3, watcher.rechecks
            await supervisor.shutdown()
            nursery.cancel_scope.cancel()


async def add_live_session(db: Database, ends_in: timedelta = timedelta(minutes=40)) -> str:
    sid = f"live-{uuid.uuid4().hex[:8]}"
    await db.execute("INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status)"
                     " VALUES ($1, 'c', 'r', $2, $3, 'open')", sid, NOW - timedelta(minutes=10), NOW + ends_in)
    return sid


async def test_a_check_in_into_a_live_session_recomputes_no_standing(fresh_db):
    """Until a session is held it counts as remaining whatever its record says: no standing to recompute."""
    bus = LiveBus()
    await seed_course(fresh_db, ["present"] * 4)
    live = await add_live_session(fresh_db)
    with bus.subscribe([user_topic("s1")]) as student:
        async with trio.open_nursery() as nursery:
            supervisor, watcher = await start_watcher(nursery, fresh_db, bus, sweep_every_s=3600, recheck_every_s=0)
            await full_pass_done(watcher, 1)  # the full pass at start: s1's one enrolment

            bus.publish(session_topic(live), LiveAttendance(live, "s1", "present", NOW.isoformat(), "qr"))
            marked = await receive(student)
            assert (marked["kind"], marked["data"]["session_id"]) == ("attendance_marked", live)
            assert watcher.pairs_rechecked == 1

            # A record of a held session (a late scan, a mark after the close) is recomputed.
            [held] = await add_closed_sessions(fresh_db, ["present"])
            bus.publish(session_topic(held), LiveAttendance(held, "s1", "present", NOW.isoformat(), "qr"))
            marked = await receive(student)
            assert marked["data"]["session_id"] == held
            assert watcher.pairs_rechecked == 2
            await supervisor.shutdown()
            nursery.cancel_scope.cancel()


async def test_a_live_session_that_ends_is_counted_by_the_sweep(fresh_db):
    """The check-ins skipped above reach the standing when the session ends: the sweep re-checks its course."""
    bus = LiveBus()
    await seed_course(fresh_db, ["present"] * 2)
    await add_live_session(fresh_db, ends_in=timedelta(minutes=5))  # s1 never checks in: absent once it ends
    clock = [NOW]
    with bus.subscribe([user_topic("s1")]) as student:
        async with trio.open_nursery() as nursery:
            supervisor, watcher = await start_watcher(nursery, fresh_db, bus, now=lambda: clock[0], sweep_every_s=0.1)
            with trio.move_on_after(0.5):
                unexpected = await student.receive()
                pytest.fail(f"a warning while the session runs (2 of 2 held): {unexpected}")
            clock[0] = NOW + timedelta(minutes=6)
            warning = await receive(student)  # 2 of 3 held
            assert warning["kind"] == "attendance_warning" and warning["data"]["percentage"] == "66.66"
            await supervisor.shutdown()
            nursery.cancel_scope.cancel()


async def enrol_another_student(db: Database) -> None:
    await db.execute("INSERT INTO users (id, username, display_name, role, password_hash)"
                     " VALUES ('s2', 's2', 'Sue Two', 'student', 'x')")
    await db.execute("INSERT INTO students (id, roll_number, token_secret) VALUES ('s2', 'R2', 'k')")
    await db.execute("INSERT INTO enrolments (course_id, student_id) VALUES ('c', 's2')")


async def test_a_burst_of_check_ins_reaches_the_actor_in_a_few_tells(fresh_db):
    """The pump hands over what the subscription holds in one tell: 300 updates published at once fill
    a 4-slot mailbox a few times at most, never the subscription, and each gets its notification."""
    bus = LiveBus()
    await seed_course(fresh_db, ["present"] * 4)
    live = await add_live_session(fresh_db)
    with bus.subscribe([user_topic("s1")], capacity=1024) as student:
        async with trio.open_nursery() as nursery:
            supervisor, watcher = await start_watcher(nursery, fresh_db, bus, sweep_every_s=3600, recheck_every_s=0,
                                                      mailbox_size=4)
            await full_pass_done(watcher, 1)  # the full pass at start
            for _ in range(300):
                bus.publish(session_topic(live), LiveAttendance(live, "s1", "present", NOW.isoformat(), "qr"))
            marked = [await receive(student) for _ in range(300)]
            assert {m["kind"] for m in marked} == {"attendance_marked"}
            assert watcher.pairs_rechecked == 1  # no sweep: the subscription never lagged
            assert watcher.rechecks <= 3, watcher.rechecks  # one batch, flushed once (or split by timing)
            await supervisor.shutdown()
            nursery.cancel_scope.cancel()


async def test_a_lagging_subscription_is_caught_up_by_a_sweep_not_a_full_recomputation(fresh_db):
    """Updates the bus dropped are found in PostgreSQL by the watermark sweep: only the pairs whose
    records were written since the last sweep are recomputed, not every enrolment."""
    bus = LiveBus()
    await seed_course(fresh_db, ["present"] * 4)
    await enrol_another_student(fresh_db)
    with bus.subscribe([user_topic("s1")]) as student:
        async with trio.open_nursery() as nursery:
            supervisor, watcher = await start_watcher(nursery, fresh_db, bus, sweep_every_s=3600, recheck_every_s=0)
            await full_pass_done(watcher, 2)  # the full pass at start: s1 and s2
            await add_closed_sessions(fresh_db, ["absent"] * 2)  # s1 at 4 of 6, its updates lost below
            for _ in range(WARNINGS_BUS_BUFFER + 10):  # more than the subscription holds, without a pause
                bus.publish(session_topic("gone"), LiveAttendance("gone", "s1", "present", NOW.isoformat(), "qr"))
            warning = await receive(student)
            while warning["kind"] == "attendance_marked":  # the few the pump took before the buffer overflowed
                warning = await receive(student)
            assert warning["kind"] == "attendance_warning" and warning["data"]["percentage"] == "66.66"
            assert watcher.pairs_rechecked == 3  # s1 again; s2's standing was not recomputed
            await supervisor.shutdown()
            nursery.cancel_scope.cancel()


async def test_a_full_pass_reads_the_enrolments_a_chunk_at_a_time(fresh_db, monkeypatch):
    """The pass at start covers every enrolment, here one per chunk: both students below are warned."""
    monkeypatch.setattr(warnings_module, "FULL_PASS_CHUNK", 1)
    bus = LiveBus()
    await seed_course(fresh_db, ["absent"] * 2)  # s1 at 0 of 2
    await enrol_another_student(fresh_db)  # s2: no record of those held sessions: absent too
    with bus.subscribe([user_topic("s1")]) as s1, bus.subscribe([user_topic("s2")]) as s2:
        async with trio.open_nursery() as nursery:
            supervisor, watcher = await start_watcher(nursery, fresh_db, bus, sweep_every_s=3600)
            for student in (s1, s2):
                warning = await receive(student)
                assert warning["kind"] == "attendance_warning" and warning["data"]["percentage"] == "0.00"
            assert (watcher.pairs_rechecked, watcher.rechecks) == (2, 0)  # one full pass, in two chunks
            await supervisor.shutdown()
            nursery.cancel_scope.cancel()
