"""OTP-style supervisors: start, watch, restart and stop children."""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import Any, Iterable, Protocol

import trio

from ._actor import Actor, ActorRef, run_instance
from ._errors import ActorStopped, ChildExists, SupervisorEscalation
from ._mailbox import Mailbox
from ._spec import ChildSpec, Restart, Strategy

__all__ = ["Supervisor", "SupervisorObserver"]

_log = logging.getLogger("actors")


class SupervisorObserver(Protocol):
    """Receives supervision events, e.g. to feed metrics.

    Called synchronously from the supervisor's task: must not block. An
    exception it raises is logged and otherwise ignored.
    """

    def child_restarted(self, supervisor: str, child: str, error: BaseException | None) -> None:
        """``child`` of ``supervisor`` ended and is about to be restarted.

        ``error`` is what crashed it, or None for a normal exit of a PERMANENT
        child. Called once per restart decision, also when ONE_FOR_ALL /
        REST_FOR_ONE restart siblings along with it.
        """
        ...


# Child states. A child is in exactly one of them; only the supervisor's
# structural operations (under its lock) and the end of an incarnation move it.
_RUNNING = "running"  # an incarnation task exists
_EXITED = "exited"  # incarnation ended on its own; queued for the main loop
_STOPPED = "stopped"  # incarnation ended because the supervisor stopped it
_PENDING = "pending"  # waiting for its backoff to start again


class _Child:
    __slots__ = (
        "spec",
        "seq",
        "ref",
        "instance",
        "scope",
        "state",
        "reason",
        "delay",
        "started_at",
        "restart_at",
        "ready",
        "done",
        "killing",
        "removed",
    )

    def __init__(self, spec: ChildSpec, seq: int, ref: ActorRef | None, delay: float) -> None:
        self.spec = spec
        self.seq = seq
        self.ref = ref
        self.instance: Actor | Supervisor | None = None
        self.scope: trio.CancelScope | None = None
        self.state = _STOPPED
        self.reason: BaseException | None = None
        self.delay = delay
        self.started_at = 0.0
        self.restart_at = 0.0
        # Events exist only while someone waits on them, to keep idle
        # children small.
        self.ready: trio.Event | None = None
        self.done: trio.Event | None = None
        self.killing = False
        self.removed = False

    def set_ready(self) -> None:
        if self.ready is not None:
            self.ready.set()


class _ReadyStatus:
    # Stands in for trio's TaskStatus when running a child supervisor: the
    # parent starts children with start_soon + an Event rather than
    # nursery.start, so that a child's startup failure is a crash handled by
    # the restart policy, not an error thrown at whoever called start_child.
    __slots__ = ("_child",)

    def __init__(self, child: _Child) -> None:
        self._child = child

    def started(self, value: Any = None) -> None:
        self._child.set_ready()


class Supervisor:
    """Starts children, restarts them per their policy, stops them in order.

    ``strategy`` chooses which children restart together; ``max_restarts``
    restarts within ``within_s`` seconds are tolerated, one more makes the
    supervisor stop all children and raise :class:`SupervisorEscalation` out
    of :meth:`run`. Each restart waits a per-child backoff: the first
    ``backoff_initial_s``, doubling up to ``backoff_max_s``; it resets once
    the child ran for ``within_s`` without ending. ``children`` are the
    static :class:`ChildSpec` s, started in order by :meth:`run`.
    ``observer`` (see :class:`SupervisorObserver`) is inherited by child
    supervisors that have none.

    Structural operations (start/stop/restart of children) are serialized,
    like an OTP supervisor process: one waits for another to finish,
    including the ``started()`` of the child being started. Consequently an
    actor must not call ``stop_child``/``shutdown`` on its own supervisor to
    end itself (use :meth:`Actor.stop`): that would wait for the actor's own
    message to finish until its ``shutdown_timeout`` runs out. Likewise a
    child's ``started()`` must not call ``start_child``/``stop_child`` on its
    own supervisor (deadlock: the supervisor is waiting for that
    ``started()``).
    """

    def __init__(
        self,
        name: str,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within_s: float = 5.0,
        backoff_initial_s: float = 0.01,
        backoff_max_s: float = 1.0,
        children: Iterable[ChildSpec] = (),
        observer: SupervisorObserver | None = None,
    ) -> None:
        static = tuple(children)
        ids = [spec.id for spec in static]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate child ids in supervisor {name!r}: {ids}")
        if max_restarts < 0 or within_s <= 0:
            raise ValueError("max_restarts must be >= 0 and within_s > 0")
        if backoff_initial_s < 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("need 0 <= backoff_initial_s <= backoff_max_s")
        self._name = name
        self._strategy = strategy
        self._max_restarts = max_restarts
        self._within_s = within_s
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._static = static
        self._observer = observer
        self._children: dict[str, _Child] = {}
        self._seq = 0
        self._pending: set[_Child] = set()
        self._exits: deque[_Child] = deque()
        self._history: deque[float] = deque()
        self._restarts = 0
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._wakeup: trio.Event | None = None
        self._ran = False
        self._closing = False
        self._finished = trio.Event()
        self._escalation: SupervisorEscalation | None = None

    # -- introspection -------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def strategy(self) -> Strategy:
        return self._strategy

    @property
    def restarts(self) -> int:
        """Restart decisions taken by this supervisor (not its descendants)."""
        return self._restarts

    def lookup(self, child_id: str) -> ActorRef | Supervisor | None:
        """The child's :class:`ActorRef`, or for a child supervisor its current
        instance (the last one started while it is restarting); None if there
        is no such child. Synchronous."""
        child = self._children.get(child_id)
        if child is None:
            return None
        if child.ref is not None:
            return child.ref
        instance = child.instance
        assert not isinstance(instance, Actor)  # an actor child always has a ref
        return instance

    def child_ids(self) -> list[str]:
        """Ids of the current children, in start order. Synchronous."""
        return list(self._children)

    def actor_count(self) -> int:
        """Actor children of this supervisor and, recursively, its child
        supervisors (including children waiting to be restarted)."""
        count = 0
        for child in self._children.values():
            if child.ref is not None:
                count += 1
            elif isinstance(child.instance, Supervisor):
                count += child.instance.actor_count()
        return count

    def mailbox_depth(self) -> int:
        """Messages queued in all actor mailboxes of this subtree."""
        depth = 0
        for child in self._children.values():
            if child.ref is not None:
                depth += child.ref.depth
            elif isinstance(child.instance, Supervisor):
                depth += child.instance.mailbox_depth()
        return depth

    def __repr__(self) -> str:
        return f"<Supervisor {self._name!r} {self._strategy.value} children={len(self._children)}>"

    # -- public operations ---------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the supervisor: ``await nursery.start(sup.run)``.

        Starts the static children in order (each one's ``started()`` has
        returned or crashed before the next starts), then reports started
        with ``self`` as the value, then supervises until :meth:`shutdown`,
        after which it returns. Raises :class:`SupervisorEscalation` (after
        stopping all children) when restart intensity is exceeded, and
        whatever a static child's ``start`` factory raises. A supervisor
        instance runs once. Cancelling it cancels every child at once
        (no ``stopping()`` hooks) and permanently stops their refs.
        """
        if self._ran:
            raise RuntimeError(f"supervisor {self._name!r} has already been run")
        self._ran = True
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    async with self._lock:
                        for spec in self._static:
                            if self._closing:
                                break
                            await self._add(spec)
                except Exception as exc:
                    # Raised out of the nursery below rather than from inside
                    # it, so the caller sees the factory's error unwrapped.
                    error = exc
                    nursery.cancel_scope.cancel()
                else:
                    task_status.started(self)
                    await self._supervise()
        finally:
            self._nursery = None
            self._closing = True
            for child in self._children.values():
                child.removed = True
                if child.ref is not None:
                    child.ref._mailbox.close()
            self._children.clear()
            self._pending.clear()
            self._finished.set()
        if error is not None:
            raise error
        if self._escalation is not None:
            raise self._escalation

    async def shutdown(self) -> None:
        """Stop all children in reverse start order, then let :meth:`run` return.

        Any task may call it; it returns once ``run()`` has finished (at once
        if it never ran or already finished) and is idempotent. Each child
        gets its ``shutdown_timeout`` to finish its current message and its
        ``stopping()`` hook (a child supervisor: to shut down its subtree),
        then is cancelled. Queued messages are discarded and their asks get
        :class:`ActorStopped`. Cancelling the caller stops only the wait;
        the shutdown goes on. To remove a child supervisor use its parent's
        :meth:`stop_child`: a PERMANENT child that shuts itself down has
        exited normally and is restarted.
        """
        self._request_shutdown()
        if self._ran:
            await self._finished.wait()
        else:
            await trio.lowlevel.checkpoint()

    async def start_child(self, spec: ChildSpec) -> ActorRef | Supervisor:
        """Add and start a dynamic child; returns its ref (or the child supervisor).

        Waits for structural operations in progress and for the new child's
        ``started()`` to return or crash (a crash there is handled by the
        restart policy, and the ref is still returned). The child is appended
        to the start order. Raises :class:`ChildExists` for an id in use,
        :class:`ActorStopped` once the supervisor is shutting down or done,
        RuntimeError before ``run()`` started, and whatever ``spec.start``
        raises. If the caller is cancelled while the child is starting, the
        child still gets started.
        """
        async with self._lock:
            self._check_open()
            if spec.id in self._children:
                raise ChildExists(f"supervisor {self._name!r} already has a child {spec.id!r}")
            return await self._add(spec)

    async def stop_child(self, child_id: str) -> bool:
        """Stop a child in an orderly way and remove it; it is not restarted.

        Its ref is permanently stopped at once (queued asks get
        :class:`ActorStopped`), then the running instance gets its
        ``shutdown_timeout`` to finish its message and ``stopping()`` before
        being cancelled. Returns True once it has ended, False if there was no
        such child. If the caller is cancelled, the child is cancelled at
        once and still removed.
        """
        async with self._lock:
            child = self._children.get(child_id)
            if child is None:
                return False
            self._remove(child)
            await self._terminate(child)
            return True

    # -- internals -----------------------------------------------------

    def _check_open(self) -> None:
        if self._closing:
            raise ActorStopped(f"supervisor {self._name!r} is shutting down")
        if self._nursery is None:
            raise RuntimeError(f"supervisor {self._name!r} is not running")

    def _request_shutdown(self) -> None:
        self._closing = True
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _make(self, spec: ChildSpec, actor: bool | None) -> Actor | Supervisor:
        instance = spec.start()
        if isinstance(instance, Actor):
            is_actor = True
        elif isinstance(instance, Supervisor):
            is_actor = False
        else:
            raise TypeError(f"ChildSpec {spec.id!r}: start() returned {instance!r}, not an Actor or Supervisor")
        if actor is not None and actor != is_actor:
            raise TypeError(f"ChildSpec {spec.id!r}: start() switched between Actor and Supervisor")
        return instance

    async def _add(self, spec: ChildSpec) -> ActorRef | Supervisor:
        instance = self._make(spec, None)
        ref = None
        if isinstance(instance, Actor):
            ref = ActorRef(Mailbox(spec.id, spec.mailbox_size, spec.overflow))
        self._seq += 1
        child = _Child(spec, self._seq, ref, self._backoff_initial)
        self._children[spec.id] = child
        await self._start(child, instance)
        if isinstance(instance, Supervisor):
            return instance
        assert ref is not None  # made above for every Actor
        return ref

    async def _start(self, child: _Child, instance: Actor | Supervisor | None = None) -> None:
        # Lock held. Returns once the instance's started() (or a child
        # supervisor's startup) has finished either way.
        # Set before the factory runs so that a factory that keeps failing
        # does not look like a long-stable child to the backoff reset.
        child.started_at = trio.current_time()
        if instance is None:
            try:
                instance = self._make(child.spec, child.ref is not None)
            except Exception as exc:
                child.state = _EXITED
                child.reason = exc
                self._exits.append(child)
                return
        child.instance = instance
        if isinstance(instance, Supervisor):
            if instance._observer is None:
                instance._observer = self._observer
        else:
            instance._stop_requested = False
        child.state = _RUNNING
        child.killing = False
        child.reason = None
        child.scope = trio.CancelScope()
        child.ready = ready = trio.Event()
        assert self._nursery is not None
        self._nursery.start_soon(self._incarnation, child, instance, name=f"actors:{self._name}/{child.spec.id}")
        try:
            await ready.wait()
        finally:
            child.ready = None

    async def _incarnation(self, child: _Child, instance: Actor | Supervisor) -> None:
        reason: BaseException | None = None
        scope = child.scope
        assert scope is not None
        try:
            with scope:
                if isinstance(instance, Actor):
                    assert child.ref is not None
                    reason = await run_instance(instance, child.ref, child.spec.shutdown_timeout, child.set_ready)
                else:
                    await instance.run(task_status=_ReadyStatus(child))
        except Exception as exc:
            reason = exc
        finally:
            self._ended(child, reason)

    def _ended(self, child: _Child, reason: BaseException | None) -> None:
        # Synchronous: also runs while the incarnation is being cancelled.
        child.set_ready()
        if child.done is not None:
            child.done.set()
        if child.killing or child.removed or self._closing:
            child.state = _STOPPED
            return
        child.state = _EXITED
        child.reason = reason
        self._exits.append(child)
        self._wake()

    async def _terminate(self, child: _Child) -> None:
        # Lock held. Orderly stop within shutdown_timeout, then cancel.
        if child.state is not _RUNNING:
            if child.state is _EXITED:
                child.state = _STOPPED  # its queued exit is moot now
            return
        child.killing = True
        instance = child.instance
        if isinstance(instance, Supervisor):
            instance._request_shutdown()
        else:
            assert isinstance(instance, Actor) and child.ref is not None
            instance._stop_requested = True
            child.ref._mailbox.interrupt()
        child.done = done = trio.Event()
        try:
            with trio.move_on_after(child.spec.shutdown_timeout):
                await done.wait()
        finally:
            # Also when our caller is cancelled: never leave a child running
            # that nobody supervises any more.
            if child.state is _RUNNING:
                assert child.scope is not None
                child.scope.cancel()
        await done.wait()
        child.done = None

    def _remove(self, child: _Child) -> None:
        if self._children.get(child.spec.id) is child:
            del self._children[child.spec.id]
        child.removed = True
        self._pending.discard(child)
        if child.ref is not None:
            child.ref._mailbox.close()

    async def _stop_all(self) -> None:
        self._pending.clear()
        for child in reversed(list(self._children.values())):
            self._remove(child)
            await self._terminate(child)

    async def _supervise(self) -> None:
        while not self._closing:
            if self._exits:
                child = self._exits.popleft()
                async with self._lock:
                    if self._closing:
                        break
                    await self._handle_exit(child)
                if self._escalation is not None:
                    return
                continue
            deadline = min((c.restart_at for c in self._pending), default=math.inf)
            if deadline <= trio.current_time():
                async with self._lock:
                    if self._closing:
                        break
                    await self._restart_due()
                continue
            # No checkpoint between the checks above and here, so no wakeup
            # can be missed.
            self._wakeup = trio.Event()
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
            self._wakeup = None
        async with self._lock:
            await self._stop_all()

    def _restart_policy_applies(self, child: _Child, reason: BaseException | None) -> bool:
        restart = child.spec.restart
        if restart is Restart.PERMANENT:
            return True
        if restart is Restart.TRANSIENT:
            return reason is not None
        return False

    async def _handle_exit(self, child: _Child) -> None:
        # Lock held.
        if child.removed or child.state is not _EXITED:
            return  # stopped, removed or restarted meanwhile
        reason = child.reason
        child.reason = None
        if not self._restart_policy_applies(child, reason):
            self._remove(child)
            return
        now = trio.current_time()
        history = self._history
        while history and history[0] <= now - self._within_s:
            history.popleft()
        history.append(now)
        if len(history) > self._max_restarts:
            escalation = SupervisorEscalation(self._name, child.spec.id, self._max_restarts, self._within_s)
            escalation.__cause__ = reason
            self._escalation = escalation
            self._closing = True
            await self._stop_all()
            return
        self._restarts += 1
        observer = self._observer
        if observer is not None:
            try:
                observer.child_restarted(self._name, child.spec.id, reason)
            except Exception:
                _log.exception("observer of supervisor %r raised", self._name)
        if now - child.started_at >= self._within_s:
            child.delay = self._backoff_initial
        delay = child.delay
        child.delay = min(delay * 2, self._backoff_max)

        if self._strategy is Strategy.ONE_FOR_ONE:
            group = [child]
        else:
            siblings = list(self._children.values())
            if self._strategy is Strategy.ONE_FOR_ALL:
                group = siblings
            else:
                group = siblings[siblings.index(child) :]
        for sibling in reversed(group):
            if sibling is not child:
                await self._terminate(sibling)
        restart_at = now + delay
        for sibling in group:
            if sibling.removed:
                continue
            if sibling is not child and sibling.spec.restart is Restart.TEMPORARY:
                self._remove(sibling)
                continue
            sibling.state = _PENDING
            sibling.restart_at = restart_at
            self._pending.add(sibling)

    async def _restart_due(self) -> None:
        # Lock held. Children due together (a ONE_FOR_ALL / REST_FOR_ONE
        # group) start in their original start order.
        now = trio.current_time()
        due = sorted((c for c in self._pending if c.restart_at <= now), key=lambda c: c.seq)
        for child in due:
            if self._closing:
                return
            if child.removed or child not in self._pending:
                continue
            self._pending.discard(child)
            await self._start(child)
