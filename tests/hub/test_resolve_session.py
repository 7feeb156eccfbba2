"""A slow scheduler is backpressure, not a fault: ``resolve_session`` asks again instead of raising.

Under a backlog the scheduler starts hundreds of session actors one after the other; a device actor
whose ask timed out used to crash, and hundreds crashing at once stopped the hub (bench/drain.py, 500 rooms).
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import datetime, timezone

import pytest
import trio

from actors import Actor, ActorCrashed, ChildSpec, Supervisor
from hub.pipeline import scheduler as scheduler_module
from hub.pipeline.scheduler import ResolveSession, resolve_session

AT = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)


class SlowScheduler(Actor):
    """Answers each ResolveSession after ``delays`` (one per ask, in order); raises on ``room-broken``."""

    def __init__(self, delays: list[float]) -> None:
        self.delays = delays
        self.asked: list[str] = []

    async def handle(self, message: object) -> object:
        assert isinstance(message, ResolveSession)
        self.asked.append(message.room_id)
        if message.room_id == "room-broken":
            raise RuntimeError("scheduler bug")
        await trio.sleep(self.delays.pop(0) if self.delays else 0)
        return f"route-for-{message.room_id}"


@asynccontextmanager
async def running(actor: SlowScheduler):
    sup = Supervisor("test")
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = await sup.start_child(ChildSpec("scheduler", lambda: actor))
        yield ref
        await sup.shutdown()


async def test_a_slow_answer_is_waited_for_not_raised(autojump_clock, monkeypatch, caplog) -> None:
    monkeypatch.setattr(scheduler_module, "RESOLVE_ASK_S", 1.0)
    actor = SlowScheduler([30.0, 0.1])  # far slower than the first ask's limit: the second ask waits it out
    async with running(actor) as ref:
        started = trio.current_time()
        route = await resolve_session(ref, "room-1", AT)
        waited = trio.current_time() - started
    assert route == "route-for-room-1"
    assert actor.asked == ["room-1"] * 2  # one more ask, not one per timeout
    assert 30.0 <= waited < 31.0
    assert sum("waiting for it" in r.getMessage() for r in caplog.records) == 1


async def test_a_crashing_scheduler_still_raises(autojump_clock) -> None:
    async with running(SlowScheduler([])) as ref:
        with pytest.raises(ActorCrashed):
            await resolve_session(ref, "room-broken", AT)
