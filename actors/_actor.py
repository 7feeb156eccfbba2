"""Actors, their stable references, and the loop that runs one instance."""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

import trio

from ._errors import ActorCrashed, ActorStopped, AskTimeout
from ._mailbox import WOKEN, Mailbox, Request

__all__ = ["Actor", "ActorRef", "Timer"]

_log = logging.getLogger("actors")


class ActorRef:
    """The address of a supervised actor child.

    One ref per child for the child's whole life in its supervisor: it stays
    valid across restarts because the mailbox it wraps does. It becomes
    permanently stopped when the child is removed (``stop_child``, supervisor
    shutdown or escalation, or an exit that its restart policy does not
    restart); from then on ``tell``/``ask`` raise :class:`ActorStopped`.

    All methods must be called from trio tasks of the run that hosts the
    supervisor. Refs are created by :class:`Supervisor`, never directly.
    """

    __slots__ = ("_mailbox", "_alive", "_current")

    def __init__(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox
        self._alive = False
        # The ask being handled right now, so that whoever ends the instance
        # can answer it (ActorCrashed / ActorStopped) instead of leaving the
        # asker to time out.
        self._current: Request | None = None

    @property
    def name(self) -> str:
        """The child id this ref was created for."""
        return self._mailbox.name

    @property
    def depth(self) -> int:
        """Messages queued and not yet taken by the actor."""
        return len(self._mailbox)

    @property
    def capacity(self) -> int:
        """The mailbox bound (``ChildSpec.mailbox_size``)."""
        return self._mailbox.capacity

    @property
    def dropped(self) -> int:
        """Messages discarded by DROP_NEWEST / DROP_OLDEST since the child was first started."""
        return self._mailbox.dropped

    @property
    def alive(self) -> bool:
        """True while an instance has finished ``started()`` and has not ended.

        False between a crash and the restart, and forever once stopped.
        """
        return self._alive

    async def tell(self, message: Any) -> None:
        """Send ``message`` without waiting for it to be handled.

        Any task may call it; it is always a checkpoint. With room in the
        mailbox it returns at once. With a full mailbox it follows the child's
        :class:`Overflow` policy: BLOCK waits for room (cancelling the wait
        leaves nothing enqueued), DROP_NEWEST discards ``message`` and counts
        it in ``dropped``, DROP_OLDEST evicts the oldest queued message and
        counts it, FAIL raises :class:`MailboxFull`.

        Raises :class:`ActorStopped` if the actor is permanently stopped
        (also if that happens while blocked waiting for room). Messages told
        while the actor is restarting are queued for the next instance.
        """
        await self._mailbox.put(message)

    def try_tell(self, message: Any) -> bool:
        """Send ``message`` if that needs no waiting; never blocks, never raises.

        Returns False, counting nothing, when the message was not enqueued:
        the mailbox is full (or has blocked senders) under BLOCK, DROP_NEWEST
        or FAIL, or the actor is permanently stopped. Under DROP_OLDEST a full
        mailbox evicts its oldest message (counted in ``dropped``) and this
        returns True. Not a checkpoint: callable from synchronous code.
        """
        return self._mailbox.try_put(message)

    async def ask(self, message: Any, timeout: float = 5.0) -> Any:
        """Send ``message`` and wait for the return value of ``handle()``.

        ``timeout`` bounds the whole exchange, including waiting for room in a
        full BLOCK mailbox and time spent queued behind other messages or
        waiting for a restart; on expiry raises :class:`AskTimeout` (the
        message may still be handled later; its reply is discarded).
        Cancelling the caller abandons the reply the same way.

        Raises :class:`ActorCrashed` (``__cause__`` = the error) if handling
        this message raised, :class:`ActorStopped` if the actor is or becomes
        permanently stopped before replying (or is killed by its supervisor
        while handling it), :class:`MailboxFull` if the mailbox is full under
        FAIL or DROP_NEWEST (the latter counts it as dropped), or if the
        queued ask is evicted under DROP_OLDEST.
        """
        request = Request(message)
        with trio.move_on_after(timeout):
            await self._mailbox.put(request)
            return await request.wait()
        raise AskTimeout(f"no reply from {self.name!r} within {timeout}s")

    def __repr__(self) -> str:
        return f"<ActorRef {self.name!r} depth={self.depth}/{self.capacity} alive={self._alive}>"


class Timer:
    """Handle of a delayed message scheduled with :meth:`Actor.send_after`."""

    __slots__ = ("_scope",)

    def __init__(self, scope: trio.CancelScope) -> None:
        self._scope = scope

    def cancel(self) -> None:
        """Make sure the message is not sent, unless it already was.

        Synchronous and idempotent; any task may call it.
        """
        self._scope.cancel()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called (whether or not it had fired)."""
        return self._scope.cancel_called


async def _fire(scope: trio.CancelScope, delay_s: float, mailbox: Mailbox, message: Any) -> None:
    with scope:
        await trio.sleep(delay_s)
        try:
            await mailbox.put(message)
        except Exception:
            # MailboxFull (FAIL policy) or ActorStopped: nobody to report to;
            # a timer message is as droppable as any other tell.
            pass


class Actor:
    """Base class of actors: subclass it and implement :meth:`handle`.

    An instance handles one message at a time, in mailbox order, in a task
    owned by its supervisor. It is built by ``ChildSpec.start`` and used for
    one incarnation only: a restart builds a fresh instance, so state kept in
    attributes is reset by a crash.
    """

    # Class-level defaults rather than an __init__, so subclasses need not
    # call super().__init__(). The supervisor sets them before started().
    _ref: ActorRef | None = None
    _nursery: trio.Nursery | None = None
    _stop_requested: bool = False

    async def handle(self, message: Any) -> Any:
        """Handle one message; the return value is the reply to an ``ask``.

        Runs in the actor's task; the next message is not taken until it
        returns. Raising crashes the instance: the message is dropped, an
        ``ask`` waiting on it gets :class:`ActorCrashed`, and the supervisor
        applies the child's restart policy. May be cancelled if the
        supervisor's ``shutdown_timeout`` for this child runs out.
        """
        raise NotImplementedError

    async def started(self) -> None:
        """Hook run once per instance before the first message.

        ``self.ref`` is set. Raising is a crash of this instance (restart
        policy applies). The supervisor waits for it before starting the next
        child, so keep it bounded.
        """

    async def stopping(self) -> None:
        """Hook run when an instance whose ``started()`` succeeded ends.

        Runs after the last message and after timers and :attr:`nursery`
        tasks are cancelled; on an orderly stop (``stop()``, ``stop_child``,
        shutdown) and, best effort, after a crash. Bounded by the child's
        ``shutdown_timeout`` and cancelled when it runs out. Not run if the
        instance is cancelled from outside. Raising turns a normal exit into a
        crash; after a crash the error is logged and the original crash kept.
        """

    @property
    def ref(self) -> ActorRef:
        """This actor's own :class:`ActorRef` (set before ``started()``)."""
        if self._ref is None:
            raise RuntimeError("this actor was not started by a Supervisor")
        return self._ref

    @property
    def nursery(self) -> trio.Nursery:
        """The instance's own nursery, for background tasks.

        Open from ``started()`` until the message loop ends; its tasks are
        cancelled when the instance ends (stop, crash, restart), and a task
        that raises crashes the instance.
        """
        if self._nursery is None:
            raise RuntimeError("this actor is not running")
        return self._nursery

    def send_after(self, delay_s: float, message: Any) -> Timer:
        """Tell ``message`` to this actor after ``delay_s`` seconds.

        Synchronous; call it from the actor's own code between ``started()``
        and the end of the message loop. The timer is a task in this
        instance's nursery, so it dies with the instance (a crash or restart
        cancels it) and costs nothing once fired or cancelled. When it fires,
        a full mailbox applies the overflow policy like any ``tell`` (under
        BLOCK the timer waits for room; under FAIL the message is lost).
        """
        nursery = self.nursery
        scope = trio.CancelScope()
        nursery.start_soon(_fire, scope, max(0.0, delay_s), self.ref._mailbox, message)
        return Timer(scope)

    def stop(self) -> None:
        """End this instance normally once the current message is handled.

        Synchronous; meant for the actor's own code (``started()``,
        ``handle()``, its nursery tasks). Queued messages are not handled by
        this instance. Whether the child is restarted follows its
        :class:`Restart` policy for a normal exit.
        """
        self._stop_requested = True
        if self._ref is not None:
            self._ref._mailbox.interrupt()


def _unwrap(exc: BaseException) -> BaseException:
    # The instance nursery wraps a failing task's error in an ExceptionGroup;
    # supervisors, observers and ActorCrashed.__cause__ want the error itself.
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _serve(actor: Actor, ref: ActorRef) -> BaseException | None:
    mailbox = ref._mailbox
    handle = actor.handle
    while not actor._stop_requested and not mailbox.closed:
        item = await mailbox.get()
        if item is WOKEN:
            continue
        if type(item) is Request:
            ref._current = item
            try:
                reply = await handle(item.message)
            except Exception as exc:
                ref._current = None
                crashed = ActorCrashed(f"{ref.name!r} crashed handling the asked message: {exc!r}")
                crashed.__cause__ = exc
                item.fail(crashed)
                return exc
            ref._current = None
            item.succeed(reply)
        else:
            try:
                await handle(item)
            except Exception as exc:
                return exc
    return None


async def run_instance(
    actor: Actor, ref: ActorRef, stopping_timeout: float, ready: Callable[[], None]
) -> BaseException | None:
    """Run one incarnation of ``actor`` on ``ref``'s mailbox until it ends.

    Used by the supervisor only. Returns None for a normal exit (``stop()``
    or a stop request from the supervisor) or the error that crashed it.
    Calls ``ready()`` once ``started()`` has returned or raised. Cancellation
    propagates (the in-flight ask, if any, gets :class:`ActorStopped`).
    """
    actor._ref = ref
    crash: BaseException | None = None
    started = False
    try:
        async with trio.open_nursery() as nursery:
            actor._nursery = nursery
            try:
                await actor.started()
                started = True
            except Exception as exc:
                crash = exc
            finally:
                ready()
            if started:
                ref._alive = True
                crash = await _serve(actor, ref)
            nursery.cancel_scope.cancel()
    except Exception as exc:
        if crash is None:
            crash = _unwrap(exc)
    finally:
        ref._alive = False
        actor._nursery = None
        request = ref._current
        if request is not None:
            ref._current = None
            if crash is not None:
                error: BaseException = ActorCrashed(f"{ref.name!r} crashed: {crash!r}")
                error.__cause__ = crash
            else:
                error = ActorStopped(f"{ref.name!r} was stopped while handling the asked message")
            request.fail(error)
    if started:
        with trio.move_on_after(stopping_timeout if stopping_timeout >= 0 else math.inf):
            try:
                await actor.stopping()
            except Exception as exc:
                if crash is None:
                    crash = exc
                else:
                    _log.warning("stopping() of crashed actor %r raised", ref.name, exc_info=exc)
    return crash
