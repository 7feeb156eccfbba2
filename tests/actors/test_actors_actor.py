"""Actor, ActorRef, ask/tell, hooks and timers (actors/_actor.py)."""

import gc
import tracemalloc
from contextlib import asynccontextmanager

import pytest
import trio

from actors import (
    Actor,
    ActorCrashed,
    ActorRef,
    ActorStopped,
    AskTimeout,
    ChildSpec,
    Restart,
    Supervisor,
    Timer,
)


@asynccontextmanager
async def supervisor(**kwargs):
    sup = Supervisor("test", **kwargs)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        yield sup
        await sup.shutdown()


class Counter(Actor):
    def __init__(self, log=None):
        self.count = 0
        self.log = log if log is not None else []

    async def started(self):
        self.log.append(("started", self.ref.name))

    async def stopping(self):
        self.log.append(("stopping", self.count))

    async def handle(self, message):
        if message == "inc":
            self.count += 1
        elif message == "get":
            return self.count
        elif message == "boom":
            raise ValueError("boom")
        elif message == "slow":
            await trio.sleep(10)
            return "slow done"
        elif message == "stop":
            self.stop()
            return "stopping"
        elif isinstance(message, tuple) and message[0] == "echo":
            return message[1]


async def test_tell_and_ask_reply_in_order(autojump_clock):
    async with supervisor() as sup:
        ref = await sup.start_child(ChildSpec("c", Counter))
        assert isinstance(ref, ActorRef)
        for _ in range(3):
            await ref.tell("inc")
        assert await ref.ask("get") == 3
        assert await ref.ask(("echo", {"x": 1})) == {"x": 1}
        assert (ref.name, ref.capacity, ref.depth, ref.alive) == ("c", 64, 0, True)


async def test_ask_timeout(autojump_clock):
    async with supervisor() as sup:
        ref = await sup.start_child(ChildSpec("c", Counter))
        start = trio.current_time()
        with pytest.raises(AskTimeout) as info:
            await ref.ask("slow", timeout=1.5)
        assert isinstance(info.value, TimeoutError)
        assert trio.current_time() - start == pytest.approx(1.5)
        # The message is still handled; the actor is not disturbed by the timeout.
        assert await ref.ask("get", timeout=20) == 0


async def test_ask_crash_reports_cause_and_actor_restarts(autojump_clock):
    log = []
    async with supervisor() as sup:
        ref = await sup.start_child(ChildSpec("c", lambda: Counter(log)))
        await ref.tell("inc")
        with pytest.raises(ActorCrashed) as info:
            await ref.ask("boom")
        assert isinstance(info.value.__cause__, ValueError)
        # Same ref, fresh instance (state reset), crash counted.
        assert await ref.ask("get") == 0
        assert sup.restarts == 1
        assert log == [("started", "c"), ("stopping", 1), ("started", "c")]


async def test_started_runs_first_with_ref_set(autojump_clock):
    seen = []

    class Early(Actor):
        async def started(self):
            seen.append(("started", self.ref))
            await self.ref.tell("from started")  # queued for this instance

        async def handle(self, message):
            seen.append(("handle", message))

    async with supervisor() as sup:
        ref = await sup.start_child(ChildSpec("e", Early))
        await ref.tell("external")
        await trio.testing.wait_all_tasks_blocked()
    assert seen == [("started", ref), ("handle", "from started"), ("handle", "external")]


async def test_unsupervised_actor_has_no_ref():
    with pytest.raises(RuntimeError):
        _ = Counter().ref
    with pytest.raises(RuntimeError):
        Counter().send_after(1, "x")


async def test_stop_ends_after_current_message(autojump_clock):
    log = []
    async with supervisor() as sup:
        ref = await sup.start_child(ChildSpec("c", lambda: Counter(log), restart=Restart.TRANSIENT))
        outcomes = []

        async def ask_later():
            try:
                outcomes.append(await ref.ask("get"))
            except ActorStopped as exc:
                outcomes.append(exc)

        await ref.tell("inc")
        async with trio.open_nursery() as nursery:
            # Queue "stop" then an ask behind it before the actor runs.
            ref.try_tell("stop")
            nursery.start_soon(ask_later)
        # Transient + normal exit: removed, ref permanently stopped.
        assert sup.lookup("c") is None
        assert not ref.alive
        assert isinstance(outcomes[0], ActorStopped)
        with pytest.raises(ActorStopped):
            await ref.tell("inc")
        with pytest.raises(ActorStopped):
            await ref.ask("get")
    assert log == [("started", "c"), ("stopping", 1)]


async def test_send_after_fires_after_delay(autojump_clock):
    fired = []

    class Ticker(Actor):
        async def started(self):
            self.timer = self.send_after(2.5, "tick")
            assert isinstance(self.timer, Timer) and not self.timer.cancelled
            self.send_after(1.0, "early")

        async def handle(self, message):
            fired.append((message, trio.current_time()))
            if message == "cancel":
                self.timer.cancel()
                return self.timer.cancelled

    async with supervisor() as sup:
        start = trio.current_time()
        ref = await sup.start_child(ChildSpec("t", Ticker))
        await trio.sleep(5)
        assert [(m, t - start) for m, t in fired] == [("early", 1.0), ("tick", 2.5)]

        # Cancelling a pending timer keeps its message from ever arriving.
        fired.clear()
        await sup.stop_child("t")
        ref = await sup.start_child(ChildSpec("t", Ticker))
        assert await ref.ask("cancel") is True
        await trio.sleep(5)
        assert [m for m, _ in fired] == ["cancel", "early"]


async def test_timer_dies_with_its_instance(autojump_clock):
    fired = []

    class Doomed(Actor):
        async def started(self):
            fired.append("started")
            if len(fired) == 1:
                self.send_after(1.0, "from first instance")

        async def handle(self, message):
            if message == "boom":
                raise RuntimeError("boom")
            fired.append(message)

    async with supervisor() as sup:
        ref = await sup.start_child(ChildSpec("d", Doomed))
        await trio.sleep(0.5)
        await ref.tell("boom")  # crash before the timer fires
        await trio.sleep(5)
        assert fired == ["started", "started"]


async def test_started_crash_is_a_crash_and_asks_wait_for_the_restart(autojump_clock):
    attempts = []

    class Flaky(Actor):
        async def started(self):
            attempts.append(trio.current_time())
            if len(attempts) < 3:
                raise ConnectionError("database down")

        async def handle(self, message):
            return ("handled by attempt", len(attempts))

    async with supervisor(backoff_initial_s=0.5) as sup:
        start = trio.current_time()
        ref = await sup.start_child(ChildSpec("f", Flaky))
        assert not ref.alive  # first attempt crashed; restart pending
        assert await ref.ask("hello") == ("handled by attempt", 3)
        assert ref.alive
        assert [t - start for t in attempts] == pytest.approx([0, 0.5, 1.5])
        assert sup.restarts == 2


async def test_background_task_failure_crashes_the_actor(autojump_clock):
    starts = []

    class WithWorker(Actor):
        async def started(self):
            starts.append(trio.current_time())
            self.nursery.start_soon(self.worker)

        async def worker(self):
            await trio.sleep(1)
            if len(starts) == 1:
                raise OSError("worker died")
            await trio.sleep_forever()

        async def handle(self, message):
            return message

    class Recorder:
        def __init__(self):
            self.events = []

        def child_restarted(self, supervisor, child, error):
            self.events.append((supervisor, child, error))

    observer = Recorder()
    async with supervisor(observer=observer) as sup:
        ref = await sup.start_child(ChildSpec("w", WithWorker))
        await trio.sleep(3)
        assert len(starts) == 2
        assert [(s, c, type(e)) for s, c, e in observer.events] == [("test", "w", OSError)]
        assert await ref.ask("still works") == "still works"


async def test_stopping_hook_runs_on_shutdown_and_can_still_tell(autojump_clock):
    log = []

    class Sink(Actor):
        async def handle(self, message):
            log.append(message)

    class Flusher(Actor):
        def __init__(self, sink):
            self.sink = sink

        async def stopping(self):
            # Reverse start order: the sink, started first, is still running.
            assert await self.sink.ask("flushed") is None

        async def handle(self, message):
            pass

    sup = Supervisor("s")
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        sink = await sup.start_child(ChildSpec("sink", Sink))
        await sup.start_child(ChildSpec("flusher", lambda: Flusher(sink)))
        await sup.shutdown()
    assert log == ["flushed"]


async def test_idle_actor_memory_is_small(autojump_clock):
    class Idle(Actor):
        async def handle(self, message):
            return message

    n = 300
    async with supervisor() as sup:
        await sup.start_child(ChildSpec("warmup", Idle))
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(n):
                await sup.start_child(ChildSpec(f"a{i}", Idle))
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        per_actor = (after - before) / n
        assert sup.actor_count() == n + 1
        print(f"{per_actor:.0f} bytes per idle actor")
        assert per_actor <= 20_000, f"{per_actor:.0f} bytes per idle actor"
