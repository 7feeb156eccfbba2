"""The scheduler opens and closes sessions with exact timers and re-arms them when told of changes.

Runs the real SessionScheduler on a fresh database under a trio MockClock
that runs at wall speed and is jumped forward between steps (its ``clock``
follows trio's), with a stand-in session actor that records the
CloseSession asks, so hours of timetable pass in a second. (Not autojump:
it would also jump asyncpg's timeouts while a query is in flight.)
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import trio
from trio.testing import MockClock

from actors import Actor, ChildSpec, Supervisor
from hub.db import open_database
from hub.domain.session_messages import CloseSession
from hub.pipeline.scheduler import LINGER_AFTER_END, ScheduleStatus, SessionsChanged, SessionScheduler


class Recorder:
    def __init__(self) -> None:
        self.closed: list[str] = []
        self.started: list[str] = []


class FakeSession(Actor):
    def __init__(self, session_id: str, recorder: Recorder) -> None:
        self.session_id, self.recorder = session_id, recorder

    async def started(self) -> None:
        self.recorder.started.append(self.session_id)

    async def handle(self, message):
        if isinstance(message, CloseSession):
            self.recorder.closed.append(self.session_id)
        return None


@pytest.fixture
def jump_clock() -> MockClock:
    return MockClock(rate=1.0)


async def advance(clock: MockClock, seconds: float) -> None:
    """Jump the clock, then give the scheduler (and its database round trips) real time to act."""
    clock.jump(seconds)
    await trio.sleep(0.3)


@pytest.fixture
async def world(fresh_database_url, aio_loop, jump_clock):
    async with open_database(fresh_database_url) as db:
        await db.execute("INSERT INTO users (id, username, display_name, role, password_hash)"
                         " VALUES ('f', 'f', 'F', 'faculty', 'x')")
        await db.execute("INSERT INTO rooms (id, name, building) VALUES ('r1', 'R1', 'B'), ('r2', 'R2', 'B')")
        await db.execute("INSERT INTO courses (id, code, title, faculty_id) VALUES ('c', 'C', 'C', 'f')")
        yield db


async def _session(db, sid: str, room: str, starts: datetime, minutes: int = 60, status: str = "scheduled") -> None:
    await db.execute(
        "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, opens_minutes_before, status)"
        " VALUES ($1, 'c', $2, $3, $4, 10, $5)", sid, room, starts, starts + timedelta(minutes=minutes), status)


async def _status(db, sid: str) -> tuple[str, bool]:
    row = await db.fetchrow("SELECT status, finalized_at IS NOT NULL AS done FROM class_sessions WHERE id = $1", sid)
    return row["status"], row["done"]


async def _run(db, nursery, base: datetime, recorder: Recorder):
    t0 = trio.current_time()
    root = Supervisor("root")
    await nursery.start(root.run)
    sessions = await root.start_child(ChildSpec("sessions", lambda: Supervisor("sessions")))
    scheduler = await root.start_child(ChildSpec("scheduler", lambda: SessionScheduler(
        db=db, sessions=sessions, writer=None,
        clock=lambda: base + timedelta(seconds=trio.current_time() - t0),
        session_actor=lambda sid: FakeSession(sid, recorder)), mailbox_size=256))
    return root, sessions, scheduler


async def test_open_then_close_on_time_with_auto_absent(world, jump_clock):
    db, base, recorder = world, datetime.now(timezone.utc), Recorder()
    await _session(db, "later", "r1", base + timedelta(minutes=30))
    await _session(db, "missed", "r2", base - timedelta(hours=3))  # its close was missed while "down"
    async with trio.open_nursery() as nursery:
        root, sessions, scheduler = await _run(db, nursery, base, recorder)
        await advance(jump_clock, 1)
        st = await _status(db, "missed")
        assert recorder.closed == ["missed"] and st == ("closed", True)
        assert sessions.lookup("later") is None and await _status(db, "later") == ("scheduled", False)
        await advance(jump_clock, timedelta(minutes=20).total_seconds() - 2)  # window opens at +20 min
        assert sessions.lookup("later") is None
        await advance(jump_clock, 2)
        assert sessions.lookup("later") is not None and await _status(db, "later") == ("open", False)
        await advance(jump_clock, (timedelta(minutes=70) + LINGER_AFTER_END).total_seconds())
        assert recorder.closed == ["missed", "later"]
        assert await _status(db, "later") == ("closed", True)
        assert sessions.lookup("later") is None
        assert (await scheduler.ask(ScheduleStatus()))["later"] == "done"
        nursery.cancel_scope.cancel()


async def test_changes_rearm_timers_without_polling(world, jump_clock):
    db, base, recorder = world, datetime.now(timezone.utc), Recorder()
    async with trio.open_nursery() as nursery:
        root, sessions, scheduler = await _run(db, nursery, base, recorder)
        # Created after boot: nothing happens until the scheduler is told.
        await _session(db, "new", "r1", base + timedelta(hours=1))
        await _session(db, "doomed", "r2", base + timedelta(hours=1))
        await scheduler.tell(SessionsChanged(("new", "doomed")))
        assert set(await scheduler.ask(ScheduleStatus())) == {"new", "doomed"}
        # Rescheduled earlier: opens at the new time. Cancelled: never opens.
        await db.execute("UPDATE class_sessions SET starts_at = starts_at - interval '50 minutes',"
                         " ends_at = ends_at - interval '50 minutes' WHERE id = 'new'")
        await db.execute("UPDATE class_sessions SET status = 'cancelled' WHERE id = 'doomed'")
        await scheduler.tell(SessionsChanged(("new", "doomed")))
        await advance(jump_clock, timedelta(minutes=1).total_seconds())
        assert recorder.started == ["new"]  # 10 min before its new start (+10 min)
        # Faculty closes it early: the scheduler asks for the absentees at once and stops it.
        await db.execute("UPDATE class_sessions SET status = 'closed', closed_at = now() WHERE id = 'new'")
        await scheduler.tell(SessionsChanged(("new",)))
        await advance(jump_clock, 1)
        assert recorder.closed == ["new"] and sessions.lookup("new") is None
        assert await _status(db, "new") == ("closed", True)
        await advance(jump_clock, timedelta(hours=3).total_seconds())
        assert recorder.started == ["new"] and recorder.closed == ["new"]  # nothing more, "doomed" never opened
        # Deleted sessions are forgotten.
        await db.execute("DELETE FROM class_sessions WHERE id = 'doomed'")
        await scheduler.tell(SessionsChanged(("doomed",)))
        assert "doomed" not in await scheduler.ask(ScheduleStatus())
        nursery.cancel_scope.cancel()
