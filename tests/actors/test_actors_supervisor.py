"""Supervision: restarts, strategies, intensity, backoff, shutdown (actors/_supervisor.py)."""

from contextlib import asynccontextmanager

import pytest
import trio

from actors import (
    Actor,
    ActorCrashed,
    ActorStopped,
    ChildExists,
    ChildSpec,
    Overflow,
    Restart,
    Strategy,
    Supervisor,
    SupervisorEscalation,
)


@asynccontextmanager
async def running(sup):
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        yield sup
        await sup.shutdown()


class Probe(Actor):
    """Records its lifecycle in a shared log; "crash" makes it raise."""

    def __init__(self, name, log):
        self.name = name
        self.log = log
        self.count = 0

    async def started(self):
        self.log.append(f"start {self.name}")

    async def stopping(self):
        self.log.append(f"stop {self.name}")

    async def handle(self, message):
        if message == "crash":
            raise RuntimeError(f"{self.name} crashed")
        if message == "exit":
            self.stop()
        if message == "inc":
            self.count += 1
        if message == "hold":
            await trio.sleep_forever()
        return self.count


def probe(name, log, **spec_kwargs):
    return ChildSpec(name, lambda: Probe(name, log), **spec_kwargs)


class Observer:
    def __init__(self):
        self.events = []

    def child_restarted(self, supervisor, child, error):
        self.events.append((supervisor, child, type(error).__name__ if error else None))


async def test_crash_restarts_with_fresh_state_and_keeps_the_mailbox(autojump_clock):
    log = []
    gate = trio.Event()

    class Worker(Probe):
        async def handle(self, message):
            if message == "wait":
                await gate.wait()
                return None
            return await super().handle(message)

    sup = Supervisor("root", children=[ChildSpec("w", lambda: Worker("w", log))])
    async with running(sup):
        ref = sup.lookup("w")
        await ref.tell("inc")
        await ref.tell("inc")
        assert await ref.ask("inc") == 3
        # Queue a crash followed by more work while the actor is busy.
        await ref.tell("wait")
        await trio.testing.wait_all_tasks_blocked()
        await ref.tell("crash")
        await ref.tell("inc")
        await ref.tell("inc")
        assert ref.depth == 3
        gate.set()
        assert await ref.ask("inc") == 3  # 2 queued after the crash + this one, on a fresh count
        assert sup.lookup("w") is ref
        assert ref.alive
        assert sup.restarts == 1
    assert log == ["start w", "stop w", "start w", "stop w"]


async def test_one_for_all_restarts_every_child(autojump_clock):
    log = []
    sup = Supervisor(
        "all",
        strategy=Strategy.ONE_FOR_ALL,
        children=[probe("a", log), probe("b", log), probe("c", log)],
    )
    async with running(sup):
        refs = {cid: sup.lookup(cid) for cid in sup.child_ids()}
        for ref in refs.values():
            await ref.tell("inc")
        log.clear()
        await refs["b"].tell("crash")
        await trio.sleep(1)  # let the crash be handled and the backoff pass
        assert await refs["a"].ask("inc") == 1  # a was restarted too: count reset
        assert await refs["c"].ask("inc") == 1
        assert sup.restarts == 1
        assert log == ["stop b", "stop c", "stop a", "start a", "start b", "start c"]
        assert {cid: sup.lookup(cid) for cid in sup.child_ids()} == refs


async def test_rest_for_one_restart_order(autojump_clock):
    log = []
    sup = Supervisor(
        "rest",
        strategy=Strategy.REST_FOR_ONE,
        children=[probe("a", log), probe("b", log), probe("c", log), probe("d", log)],
    )
    async with running(sup):
        assert log == ["start a", "start b", "start c", "start d"]
        log.clear()
        await sup.lookup("a").tell("inc")
        await sup.lookup("b").tell("crash")
        await trio.sleep(1)
        assert await sup.lookup("d").ask("inc") == 1
        # b's own stopping() runs as it crashes; then the children started
        # after it stop in reverse order; then all restart in start order.
        assert log == ["stop b", "stop d", "stop c", "start b", "start c", "start d"]
        assert await sup.lookup("a").ask("inc") == 2  # a untouched
        log.clear()
    assert log == ["stop d", "stop c", "stop b", "stop a"]


async def test_group_restart_removes_temporary_siblings(autojump_clock):
    log = []
    sup = Supervisor(
        "all",
        strategy=Strategy.ONE_FOR_ALL,
        children=[probe("a", log), probe("tmp", log, restart=Restart.TEMPORARY), probe("c", log)],
    )
    async with running(sup):
        tmp = sup.lookup("tmp")
        await sup.lookup("a").tell("crash")
        await trio.sleep(1)
        assert sup.child_ids() == ["a", "c"]
        with pytest.raises(ActorStopped):
            await tmp.tell("inc")


async def test_shutdown_stops_children_in_reverse_start_order(autojump_clock):
    log = []
    inner = lambda: Supervisor("inner", children=[probe("i1", log), probe("i2", log)])  # noqa: E731
    sup = Supervisor("root", children=[probe("a", log), ChildSpec("inner", inner), probe("b", log)])
    finished = []
    async with trio.open_nursery() as nursery:

        async def run_root(task_status=trio.TASK_STATUS_IGNORED):
            await sup.run(task_status=task_status)
            finished.append(trio.current_time())

        await nursery.start(run_root)
        await sup.start_child(probe("dyn", log))
        assert log == ["start a", "start i1", "start i2", "start b", "start dyn"]
        refs = [sup.lookup("a"), sup.lookup("dyn")]
        log.clear()
        await sup.shutdown()
        assert finished  # run() has returned by the time shutdown() does
    assert log == ["stop dyn", "stop b", "stop i2", "stop i1", "stop a"]
    assert sup.child_ids() == []
    for ref in refs:
        with pytest.raises(ActorStopped):
            await ref.tell("inc")
    with pytest.raises(ActorStopped):
        await sup.start_child(probe("late", log))
    await sup.shutdown()  # idempotent


async def test_shutdown_timeout_cancels_stubborn_children(autojump_clock):
    log = []

    class Stubborn(Probe):
        async def stopping(self):
            self.log.append(f"stopping {self.name}")
            await trio.sleep_forever()

    sup = Supervisor(
        "root",
        children=[
            probe("polite", log),
            ChildSpec("stubborn", lambda: Stubborn("stubborn", log), shutdown_timeout=2.0),
            probe("busy", log, shutdown_timeout=3.0),
        ],
    )
    async with running(sup):
        busy = sup.lookup("busy")
        outcome = []

        async def ask_busy():
            try:
                await busy.ask("hold", timeout=100)
            except ActorStopped as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask_busy)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            await sup.shutdown()
        # "busy" never finishes its message: cancelled after 3 s, without
        # running stopping(); "stubborn" is cancelled inside stopping() after 2 s.
        assert trio.current_time() - start == pytest.approx(5.0)
        assert len(outcome) == 1
    assert log == ["start polite", "start stubborn", "start busy", "stopping stubborn", "stop polite"]


async def test_stop_child_is_orderly_and_not_restarted(autojump_clock):
    log = []
    sup = Supervisor("root")
    async with running(sup):
        ref = await sup.start_child(probe("x", log))
        await ref.tell("inc")
        assert await sup.stop_child("x") is True
        assert log == ["start x", "stop x"]
        assert sup.lookup("x") is None and sup.child_ids() == []
        assert await sup.stop_child("x") is False
        await trio.sleep(10)
        assert log == ["start x", "stop x"]
        assert sup.restarts == 0
        with pytest.raises(ActorStopped):
            await ref.ask("inc")


async def test_dynamic_children_lookup_counts_and_duplicates(autojump_clock):
    log = []
    devices = lambda: Supervisor("devices")  # noqa: E731
    sup = Supervisor("root", children=[probe("static", log), ChildSpec("devices", devices)])
    async with running(sup):
        dev_sup = sup.lookup("devices")
        assert isinstance(dev_sup, Supervisor) and dev_sup.name == "devices"
        gate_refs = []
        for i in range(3):
            ref = await dev_sup.start_child(probe(f"dev{i}", log, mailbox_size=8))
            gate_refs.append(ref)
            assert dev_sup.lookup(f"dev{i}") is ref
        assert dev_sup.child_ids() == ["dev0", "dev1", "dev2"]
        with pytest.raises(ChildExists):
            await dev_sup.start_child(probe("dev1", log))
        child_sup = await sup.start_child(ChildSpec("sessions", lambda: Supervisor("sessions")))
        assert isinstance(child_sup, Supervisor) and sup.lookup("sessions") is child_sup
        assert sup.lookup("nope") is None
        assert sup.child_ids() == ["static", "devices", "sessions"]
        assert sup.actor_count() == 4

        # Fill two mailboxes behind a message that never finishes.
        await gate_refs[0].tell("hold")
        await gate_refs[1].tell("hold")
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(3):
            await gate_refs[0].tell("inc")
        await gate_refs[1].tell("inc")
        await sup.lookup("static").tell("hold")
        await trio.testing.wait_all_tasks_blocked()
        await sup.lookup("static").tell("inc")
        assert dev_sup.mailbox_depth() == 4
        assert sup.mailbox_depth() == 5

        assert await dev_sup.stop_child("dev2") is True
        assert sup.actor_count() == 3
        assert dev_sup.child_ids() == ["dev0", "dev1"]


@pytest.mark.parametrize(
    "restart, how, restarted",
    [
        (Restart.PERMANENT, "exit", True),
        (Restart.PERMANENT, "crash", True),
        (Restart.TRANSIENT, "exit", False),
        (Restart.TRANSIENT, "crash", True),
        (Restart.TEMPORARY, "exit", False),
        (Restart.TEMPORARY, "crash", False),
    ],
)
async def test_restart_policies(autojump_clock, restart, how, restarted):
    log = []
    observer = Observer()
    sup = Supervisor("root", observer=observer)
    async with running(sup):
        ref = await sup.start_child(probe("x", log, restart=restart))
        await ref.tell(how)
        await trio.sleep(1)
        if restarted:
            assert log == ["start x", "stop x", "start x"]
            assert sup.lookup("x") is ref and ref.alive
            assert await ref.ask("inc") == 1
            assert observer.events == [("root", "x", None if how == "exit" else "RuntimeError")]
            assert sup.restarts == 1
        else:
            assert log == ["start x", "stop x"]
            assert sup.lookup("x") is None and not ref.alive
            with pytest.raises(ActorStopped):
                await ref.tell("inc")
            assert observer.events == [] and sup.restarts == 0


class AlwaysCrashes(Actor):
    async def started(self):
        raise ConnectionRefusedError("no database")

    async def handle(self, message):
        pass


async def test_intensity_exceeded_escalates_after_stopping_children(autojump_clock):
    log = []
    sup = Supervisor(
        "root",
        max_restarts=2,
        within_s=10,
        children=[probe("bystander", log), ChildSpec("bad", AlwaysCrashes)],
    )
    start = trio.current_time()
    with pytest.raises(SupervisorEscalation) as info:
        await sup.run()
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert (info.value.supervisor, info.value.child) == ("root", "bad")
    assert sup.restarts == 2
    assert log == ["start bystander", "stop bystander"]
    assert sup.child_ids() == [] and sup.actor_count() == 0
    # Two restarts with backoff 0.01 then 0.02, the third crash escalates.
    assert trio.current_time() - start == pytest.approx(0.03)


async def test_restarts_outside_the_window_do_not_escalate(autojump_clock):
    crashes = []

    class CrashesOnRequest(Actor):
        async def handle(self, message):
            crashes.append(trio.current_time())
            raise RuntimeError("again")

    sup = Supervisor("root", max_restarts=1, within_s=1.0)
    async with running(sup):
        ref = await sup.start_child(ChildSpec("x", CrashesOnRequest))
        for _ in range(4):
            with pytest.raises(ActorCrashed):
                await ref.ask("go")
            await trio.sleep(1.5)  # each restart ages out of the 1 s window
        assert sup.restarts == 4 and ref.alive


async def test_escalation_is_a_crash_of_the_child_supervisor(autojump_clock):
    attempts = []

    class FailsThreeTimes(Actor):
        async def started(self):
            attempts.append(trio.current_time())
            if len(attempts) <= 3:
                raise ConnectionRefusedError(f"attempt {len(attempts)}")

        async def handle(self, message):
            return "ok"

    observer = Observer()
    inner = lambda: Supervisor(  # noqa: E731
        "inner", max_restarts=1, children=[ChildSpec("flaky", FailsThreeTimes)]
    )
    root = Supervisor("root", observer=observer, children=[ChildSpec("inner", inner)])
    async with running(root):
        first_inner = root.lookup("inner")
        await trio.sleep(1)
        second_inner = root.lookup("inner")
        assert second_inner is not first_inner
        assert await second_inner.lookup("flaky").ask("hi") == "ok"
        assert root.restarts == 1
        # inner #1: crash, restart (its one allowed), crash -> escalates;
        # root restarts inner; inner #2: crash, restart, fine.
        assert observer.events == [
            ("inner", "flaky", "ConnectionRefusedError"),  # observer inherited
            ("root", "inner", "SupervisorEscalation"),
            ("inner", "flaky", "ConnectionRefusedError"),
        ]
        assert len(attempts) == 4


async def test_repeated_escalations_escalate_further(autojump_clock):
    inner = lambda: Supervisor(  # noqa: E731
        "inner", max_restarts=0, children=[ChildSpec("bad", AlwaysCrashes)]
    )
    root = Supervisor("root", max_restarts=2, children=[ChildSpec("inner", inner)])
    with pytest.raises(SupervisorEscalation) as info:
        await root.run()
    assert info.value.supervisor == "root"
    cause = info.value.__cause__
    assert isinstance(cause, SupervisorEscalation) and cause.supervisor == "inner"
    assert isinstance(cause.__cause__, ConnectionRefusedError)
    assert root.restarts == 2


async def test_backoff_grows_exponentially_and_resets_after_stability(autojump_clock):
    starts = []
    crash_in_started = [True]

    class Crashy(Actor):
        async def started(self):
            starts.append(trio.current_time())
            if crash_in_started[0]:
                if len(starts) >= 7:
                    crash_in_started[0] = False
                raise RuntimeError("crash")

        async def handle(self, message):
            raise RuntimeError("crash on demand")

    sup = Supervisor("root", max_restarts=100, within_s=10.0, backoff_initial_s=0.1, backoff_max_s=1.0)
    async with running(sup):
        ref = await sup.start_child(ChildSpec("x", Crashy))
        await trio.sleep(5)
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        assert gaps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])
        assert ref.alive

        # Stable for longer than within_s: the next restart is quick again.
        await trio.sleep(20)
        starts.clear()
        crashed_at = trio.current_time()
        await ref.tell("crash")
        await trio.sleep(5)
        assert [t - crashed_at for t in starts] == pytest.approx([0.1])


async def test_external_cancellation_tears_everything_down(autojump_clock):
    log = []
    inner = lambda: Supervisor("inner", children=[probe("i", log)])  # noqa: E731
    sup = Supervisor("root", children=[probe("a", log), ChildSpec("inner", inner)])
    with trio.move_on_after(10) as cs:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            ref = sup.lookup("a")
            inner_ref = sup.lookup("inner").lookup("i")
            await ref.tell("hold")
            pending = []

            async def ask_forever():
                try:
                    await ref.ask("inc", timeout=1000)
                except ActorStopped as exc:
                    pending.append(exc)

            nursery.start_soon(ask_forever)
            await trio.sleep(1)
            cs.cancel()
    assert cs.cancelled_caught
    assert trio.current_time() == pytest.approx(1.0)  # no waiting for shutdown timeouts
    assert log == ["start a", "start i"]  # cancellation skips stopping() hooks
    assert not ref.alive and not inner_ref.alive
    with pytest.raises(ActorStopped):
        await ref.tell("x")
    with pytest.raises(ActorStopped):
        await inner_ref.tell("x")
    await sup.shutdown()  # returns at once


async def test_supervisor_api_misuse(autojump_clock):
    with pytest.raises(ValueError):
        Supervisor("dup", children=[ChildSpec("a", Actor), ChildSpec("a", Actor)])
    with pytest.raises(ValueError):
        ChildSpec("a", Actor, mailbox_size=0)
    sup = Supervisor("idle")
    with pytest.raises(RuntimeError):
        await sup.start_child(ChildSpec("a", Actor))

    sup = Supervisor("bad factory", children=[ChildSpec("a", lambda: "not an actor")])
    with pytest.raises(TypeError):
        await sup.run()

    sup = Supervisor("once")
    async with running(sup):
        with pytest.raises(RuntimeError):
            await sup.run()


async def test_child_spec_is_frozen_with_contract_defaults():
    spec = ChildSpec("x", Actor)
    assert (spec.restart, spec.shutdown_timeout, spec.mailbox_size, spec.overflow) == (
        Restart.PERMANENT,
        5.0,
        64,
        Overflow.BLOCK,
    )
    with pytest.raises(AttributeError):
        spec.id = "y"
    sup = Supervisor("defaults")
    assert sup.strategy is Strategy.ONE_FOR_ONE and sup.restarts == 0
