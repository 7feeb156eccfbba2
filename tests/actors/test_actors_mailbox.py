"""Mailbox bounds and overflow policies (actors/_mailbox.py), through ActorRef."""

from contextlib import asynccontextmanager

import pytest
import trio

from actors import (
    Actor,
    ActorStopped,
    ChildSpec,
    MailboxFull,
    Overflow,
    Supervisor,
)
from actors._mailbox import WOKEN, Mailbox


class Gated(Actor):
    """Handles "hold" by waiting on a gate, so later messages pile up."""

    def __init__(self, log, gate):
        self.log = log
        self.gate = gate

    async def handle(self, message):
        if message == "hold":
            await self.gate.wait()
        self.log.append(message)
        return message


@asynccontextmanager
async def gated(overflow, capacity=2):
    """A running supervisor with one Gated child whose mailbox is empty but
    whose instance is stuck handling "hold"."""
    log, gate = [], trio.Event()
    sup = Supervisor("mb")
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        ref = await sup.start_child(
            ChildSpec("g", lambda: Gated(log, gate), mailbox_size=capacity, overflow=overflow)
        )
        await ref.tell("hold")
        await trio.testing.wait_all_tasks_blocked()
        assert ref.depth == 0  # "hold" is being handled, not queued
        yield ref, log, gate, sup
        await sup.shutdown()


async def test_block_applies_backpressure_until_room(autojump_clock):
    async with gated(Overflow.BLOCK) as (ref, log, gate, _):
        await ref.tell("a")
        await ref.tell("b")
        assert (ref.depth, ref.capacity) == (2, 2)

        # A full mailbox makes the sender wait; cancelling the wait enqueues nothing.
        with trio.move_on_after(1) as cs:
            await ref.tell("lost")
        assert cs.cancelled_caught
        assert ref.depth == 2

        unblocked_at = []

        async def send_c():
            await ref.tell("c")
            unblocked_at.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_c)
            await trio.sleep(5)
            assert unblocked_at == []  # still waiting for room
            released_at = trio.current_time()
            gate.set()
        assert unblocked_at == [released_at]
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["hold", "a", "b", "c"]
        assert ref.dropped == 0


async def test_block_serves_blocked_senders_in_fifo_order(autojump_clock):
    async with gated(Overflow.BLOCK, capacity=1) as (ref, log, gate, _):
        await ref.tell("queued")
        async with trio.open_nursery() as nursery:
            for name in ["x1", "x2", "x3"]:
                nursery.start_soon(ref.tell, name)
                await trio.sleep(0.1)  # fix the order in which they block
            gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["hold", "queued", "x1", "x2", "x3"]


async def test_drop_newest_discards_new_messages_and_counts_them(autojump_clock):
    async with gated(Overflow.DROP_NEWEST) as (ref, log, gate, _):
        for message in ["a", "b", "c", "d"]:
            await ref.tell(message)  # never blocks
        assert (ref.depth, ref.dropped) == (2, 2)
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["hold", "a", "b"]


async def test_drop_oldest_evicts_and_counts(autojump_clock):
    async with gated(Overflow.DROP_OLDEST) as (ref, log, gate, _):
        for message in ["a", "b", "c", "d"]:
            await ref.tell(message)
        assert (ref.depth, ref.dropped) == (2, 2)
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["hold", "c", "d"]


async def test_fail_raises_mailbox_full(autojump_clock):
    async with gated(Overflow.FAIL) as (ref, log, gate, _):
        await ref.tell("a")
        await ref.tell("b")
        with pytest.raises(MailboxFull):
            await ref.tell("c")
        assert (ref.depth, ref.dropped) == (2, 0)
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["hold", "a", "b"]


@pytest.mark.parametrize(
    "overflow, accepted, dropped, handled",
    [
        (Overflow.BLOCK, False, 0, ["hold", "a", "b"]),
        (Overflow.FAIL, False, 0, ["hold", "a", "b"]),
        (Overflow.DROP_NEWEST, False, 0, ["hold", "a", "b"]),
        (Overflow.DROP_OLDEST, True, 1, ["hold", "b", "c"]),
    ],
)
async def test_try_tell_never_blocks(autojump_clock, overflow, accepted, dropped, handled):
    async with gated(overflow) as (ref, log, gate, _):
        assert ref.try_tell("a") is True
        assert ref.try_tell("b") is True
        start = trio.current_time()
        assert ref.try_tell("c") is accepted
        assert trio.current_time() == start
        assert (ref.depth, ref.dropped) == (2, dropped)
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert log == handled


async def test_ask_on_full_mailbox_under_each_policy(autojump_clock):
    async with gated(Overflow.FAIL, capacity=1) as (ref, _, gate, _sup):
        await ref.tell("a")
        with pytest.raises(MailboxFull):
            await ref.ask("q")
        gate.set()

    async with gated(Overflow.DROP_NEWEST, capacity=1) as (ref, _, gate, _sup):
        await ref.tell("a")
        with pytest.raises(MailboxFull):
            await ref.ask("q")  # an ask is told, not silently lost
        assert ref.dropped == 1
        gate.set()

    async with gated(Overflow.DROP_OLDEST, capacity=1) as (ref, log, gate, _sup):
        results = []

        async def ask(message):
            try:
                results.append(await ref.ask(message))
            except MailboxFull as exc:
                results.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "q1")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ask, "q2")  # evicts q1, whose asker learns it
            await trio.testing.wait_all_tasks_blocked()
            assert len(results) == 1 and isinstance(results[0], MailboxFull)
            gate.set()
        assert results[1] == "q2"
        assert ref.dropped == 1


async def test_removal_fails_queued_asks_and_blocked_senders(autojump_clock):
    async with gated(Overflow.BLOCK, capacity=1) as (ref, log, gate, sup):
        outcomes = {}

        async def attempt(key, coro_fn):
            try:
                outcomes[key] = await coro_fn()
            except ActorStopped as exc:
                outcomes[key] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(attempt, "queued-ask", lambda: ref.ask("q", timeout=60))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(attempt, "blocked-tell", lambda: ref.tell("t"))
            await trio.testing.wait_all_tasks_blocked()
            assert ref.depth == 1
            # stop_child waits for "hold" to finish (up to shutdown_timeout),
            # but the ref is stopped at once.
            nursery.start_soon(sup.stop_child, "g")
            await trio.testing.wait_all_tasks_blocked()
            assert isinstance(outcomes["queued-ask"], ActorStopped)
            assert isinstance(outcomes["blocked-tell"], ActorStopped)
            gate.set()
        assert ref.depth == 0
        assert log == ["hold"]
        with pytest.raises(ActorStopped):
            await ref.tell("late")
        assert ref.try_tell("late") is False


async def test_mailbox_unit_behaviour():
    with pytest.raises(ValueError):
        Mailbox("m", 0, Overflow.BLOCK)
    box = Mailbox("m", 2, Overflow.DROP_OLDEST)
    await box.put(1)
    assert box.try_put(2)
    assert box.try_put(3)
    assert (len(box), box.dropped) == (2, 1)
    assert await box.get() == 2
    assert await box.get() == 3

    got = []

    async def reader():
        got.append(await box.get())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        box.interrupt()
    assert got == [WOKEN]

    box.close()
    assert box.try_put(4) is False
    with pytest.raises(ActorStopped):
        await box.put(4)
    assert await box.get() is WOKEN
