"""The "due in 24 h" reminder actor: its exact timer (a controlled clock), at most one reminder per
(assignment, student), nobody who already submitted, a NOTIFY waking it when an assignment is
published, and one sender among several hub processes (the advisory lock)."""
from __future__ import annotations

import math
import os
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import trio

from actors import ChildSpec, Supervisor
from hub.core.bus import LiveBus, user_topic
from hub.db import open_database
from hub.db.assignments import AssignmentFields, create_assignment, publish
from hub.db.submissions import submit
from hub.services.assignment_reminders import AssignmentReminders

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
async def rdb(aio_loop, fresh_database_url: str):
    async with open_database(fresh_database_url, max_size=4) as database:
        await database.execute("INSERT INTO users (id, username, display_name, role, password_hash) VALUES"
                               " ('fac', 'fac', 'Fac', 'faculty', 'x'), ('s1', 's1', 'S1', 'student', 'x'),"
                               " ('s2', 's2', 'S2', 'student', 'x')")
        for sid in ("s1", "s2"):
            await database.execute("INSERT INTO students (id, roll_number, token_secret) VALUES ($1, $1, $2)",
                                   sid, os.urandom(32))
        await database.execute("INSERT INTO courses (id, code, title, faculty_id) VALUES ('c', 'C1', 'Nets', 'fac')")
        await database.execute("INSERT INTO enrolments (course_id, student_id) VALUES ('c', 's1'), ('c', 's2')")
        await database.execute("INSERT INTO terms (id, name, starts_on, ends_on) VALUES ('t', 'T', $1, $2)",
                               T0.date() - timedelta(days=30), T0.date() + timedelta(days=90))
        yield database


async def published(db, due: datetime, title: str, now: datetime) -> int:
    fields = AssignmentFields(title=title, max_marks=Decimal(10), weight=Decimal(5), instructions="",
                              opens_at=None, due_at=due, cut_off_at=None, grace_minutes=0,
                              penalty_percent=Decimal(0), penalty_period="day", penalty_cap_percent=Decimal(100),
                              pass_percent=None, max_attempts=2)
    made = await create_assignment(db, course_id="c", term_id="t", section_id=None, fields=fields, created_by="fac")
    await publish(db, made.id, now)
    return made.id


async def reminders(db, student: str) -> list:
    return await db.fetch("SELECT data->>'assessment_id' AS id FROM notifications WHERE user_id = $1"
                          " AND kind = 'assignment_due' ORDER BY id", student)


async def test_exact_timer_once_each_and_not_after_submitting(rdb) -> None:
    now = [T0]
    actor = AssignmentReminders(rdb, LiveBus(), clock=lambda: now[0].timestamp())
    soon = await published(rdb, T0 + timedelta(hours=30), "Soon", T0)
    await published(rdb, T0 + timedelta(days=20), "Later", T0)
    await submit(rdb, soon, "s2", text="done early", files=[], now=T0)

    # Nothing yet; the timer points exactly at 24 h before the nearest due date.
    assert await actor.run_once() == pytest.approx(6 * 3600)
    assert await reminders(rdb, "s1") == []
    now[0] = T0 + timedelta(hours=6)
    delay = await actor.run_once()
    assert [r["id"] for r in await reminders(rdb, "s1")] == [str(soon)]
    assert await reminders(rdb, "s2") == []                       # already submitted: no reminder
    assert delay == pytest.approx((timedelta(days=19) - timedelta(hours=6)).total_seconds())
    # A second pass (or a second hub) sends nothing again.
    await actor.run_once()
    assert len(await reminders(rdb, "s1")) == 1


async def test_notify_wakes_the_one_lock_holder(rdb) -> None:
    bus = LiveBus()
    start = datetime.now(timezone.utc)
    await published(rdb, start + timedelta(days=10), "Far", start)
    actors_made: list[AssignmentReminders] = []

    def make() -> AssignmentReminders:
        made = AssignmentReminders(rdb, bus, lock_retry_s=0.2)
        actors_made.append(made)
        return made

    with bus.subscribe([user_topic("s1")]) as inbox:
        async with trio.open_nursery() as nursery:
            root = Supervisor("root")
            await nursery.start(root.run)
            # Two hub processes' actors: one takes the lock, the other keeps looking.
            await root.start_child(ChildSpec("reminders_a", make))
            await root.start_child(ChildSpec("reminders_b", make))
            with trio.fail_after(10):
                while sum(a.passes for a in actors_made) == 0:
                    await trio.sleep(0.05)
            passes_before = sum(a.passes for a in actors_made)
            # Idle until day 9 now; a newly published assignment due in 23 h must wake the holder.
            nearby = await published(rdb, datetime.now(timezone.utc) + timedelta(hours=23), "Nearby",
                                     datetime.now(timezone.utc))
            with trio.fail_after(10):
                message = await inbox.receive()
            # Pushed live by the actor after its commit (the helper above publishes nothing on the bus).
            assert message.notification["kind"] == "assignment_due"
            with trio.fail_after(10):
                while len(await reminders(rdb, "s1")) < 1:
                    await trio.sleep(0.05)
            assert sum(a.passes for a in actors_made) > passes_before
            # Only the lock holder ran passes.
            assert sorted(a.passes > 0 for a in actors_made) == [False, True]
            nursery.cancel_scope.cancel()
    assert [r["id"] for r in await reminders(rdb, "s1")] == [str(nearby)]
    assert [r["id"] for r in await reminders(rdb, "s2")] == [str(nearby)]
    # "Far" still waits: the next timer points at 24 h before it.
    delay = await AssignmentReminders(rdb, bus).run_once()
    assert not math.isinf(delay) and timedelta(seconds=delay) > timedelta(days=8, hours=23)
