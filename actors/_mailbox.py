"""The bounded mailbox behind an :class:`ActorRef`.

A mailbox belongs to a supervised child, not to one actor instance: it is
created when the child is first started and survives restarts, so messages
queued while an instance crashes are handled by its successor. It is closed
only when the child is removed for good.

It is a deque plus hand-rolled parking of (at most) one reader and any number
of blocked writers, rather than a trio memory channel, because it must support
evicting the oldest entry (:attr:`Overflow.DROP_OLDEST`) and must stay small:
an idle actor costs one deque and a few slots here.
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from typing import Any

import trio

from ._errors import ActorStopped, MailboxFull

__all__ = ["Overflow", "Mailbox", "Request", "WOKEN", "YIELD_EVERY"]

#: :meth:`Mailbox.get` hands over at most this many queued messages in a row
#: without yielding to other tasks (it always yields when it has to wait).
YIELD_EVERY = 32


class Overflow(enum.Enum):
    """What ``tell``/``ask`` do when the mailbox already holds ``capacity`` messages."""

    #: Wait for room (backpressure onto the sender).
    BLOCK = "block"
    #: Discard the new message and count it in ``dropped``.
    DROP_NEWEST = "drop_newest"
    #: Evict the oldest queued message, count it in ``dropped``, enqueue the new one.
    DROP_OLDEST = "drop_oldest"
    #: Raise :class:`MailboxFull`.
    FAIL = "fail"


class _Woken:
    __slots__ = ()

    def __repr__(self) -> str:
        return "WOKEN"


#: Returned by :meth:`Mailbox.get` when the reader was woken without a message
#: (a stop request, or the mailbox was closed).
WOKEN: Any = _Woken()


class Request:
    """An ``ask`` in flight: the message plus a one-shot slot for its reply.

    Queued in the mailbox in place of the bare message, which is how the actor
    loop tells asks from tells without wrapping every told message.
    """

    __slots__ = ("message", "_event", "_value", "_error")

    def __init__(self, message: Any) -> None:
        self.message = message
        self._event = trio.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def succeed(self, value: Any) -> None:
        # First outcome wins: a late reply must not overwrite an eviction or
        # a stop that the asker may already have seen.
        if not self._event.is_set():
            self._value = value
            self._event.set()

    def fail(self, error: BaseException) -> None:
        if not self._event.is_set():
            self._error = error
            self._event.set()

    async def wait(self) -> Any:
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value


class Mailbox:
    """A bounded FIFO with one reader (the current actor instance).

    Every method must be called from trio tasks of the same run; none is
    thread-safe. Only the actor loop calls :meth:`get`.
    """

    __slots__ = ("name", "capacity", "overflow", "dropped", "closed", "_items", "_reader", "_putters", "_run")

    def __init__(self, name: str, capacity: int, overflow: Overflow) -> None:
        if capacity < 1:
            raise ValueError("mailbox capacity must be at least 1")
        self.name = name
        self.capacity = capacity
        self.overflow = overflow
        self.dropped = 0
        self.closed = False
        self._items: deque[Any] = deque()
        self._reader: trio.lowlevel.Task | None = None
        # Created on first use: most mailboxes never block a sender, and an
        # idle actor should not pay for an empty OrderedDict.
        self._putters: OrderedDict[trio.lowlevel.Task, Any] | None = None
        # Messages handed over in a row without yielding (see get()).
        self._run = 0

    def __len__(self) -> int:
        return len(self._items)

    # -- writers -------------------------------------------------------

    def _push(self, item: Any) -> None:
        self._items.append(item)
        reader = self._reader
        if reader is not None:
            self._reader = None
            trio.lowlevel.reschedule(reader)

    def _evict_oldest(self) -> None:
        old = self._items.popleft()
        self.dropped += 1
        if type(old) is Request:
            old.fail(MailboxFull(f"ask to {self.name!r} evicted from its full mailbox (drop_oldest)"))

    def _stopped(self) -> ActorStopped:
        return ActorStopped(f"actor {self.name!r} is stopped")

    async def put(self, item: Any) -> None:
        """Enqueue ``item``, applying the overflow policy if the mailbox is full.

        Always a checkpoint. Under BLOCK, waits (FIFO among blocked senders)
        until the reader makes room; cancelling that wait leaves nothing
        enqueued. Raises :class:`ActorStopped` if the mailbox is or gets
        closed, :class:`MailboxFull` under FAIL, and under DROP_NEWEST for a
        :class:`Request` (an ask must learn that it was dropped).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.closed:
            raise self._stopped()
        # Senders parked under BLOCK go first even if a slot just freed up:
        # the reader hands them slots directly, so overtaking would starve them.
        if not self._putters and len(self._items) < self.capacity:
            self._push(item)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        overflow = self.overflow
        if overflow is Overflow.BLOCK:
            task = trio.lowlevel.current_task()
            if self._putters is None:
                self._putters = OrderedDict()
            putters = self._putters
            putters[task] = item

            def abort(_: Any) -> trio.lowlevel.Abort:
                del putters[task]
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
            # Woken either by a reader that moved our item into the queue or
            # by close(), which discards it.
            if self.closed:
                raise self._stopped()
            return
        if overflow is Overflow.DROP_OLDEST:
            self._evict_oldest()
            self._push(item)
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        await trio.lowlevel.cancel_shielded_checkpoint()
        if overflow is Overflow.DROP_NEWEST:
            self.dropped += 1
            if type(item) is not Request:
                return
        raise MailboxFull(f"mailbox of {self.name!r} is full ({self.capacity} messages)")

    def try_put(self, item: Any) -> bool:
        """Enqueue without blocking; ``False`` if ``item`` was not enqueued.

        Under DROP_OLDEST a full mailbox evicts its oldest message (counted in
        ``dropped``) and ``item`` is enqueued. Under every other policy a full
        mailbox (or one with blocked senders) returns ``False`` and counts
        nothing. A closed mailbox returns ``False``.
        """
        if self.closed:
            return False
        if not self._putters and len(self._items) < self.capacity:
            self._push(item)
            return True
        if self.overflow is Overflow.DROP_OLDEST:
            self._evict_oldest()
            self._push(item)
            return True
        return False

    # -- the reader ----------------------------------------------------

    def _take(self) -> Any:
        item = self._items.popleft()
        putters = self._putters
        if putters:
            task, waiting = putters.popitem(last=False)
            self._items.append(waiting)
            trio.lowlevel.reschedule(task)
        return item

    async def get(self) -> Any:
        """Return the oldest message, waiting for one if the mailbox is empty.

        Only the actor loop may call this (one reader at a time). Always a
        cancellation point. It yields to other tasks whenever it waits, and
        otherwise once every :data:`YIELD_EVERY` messages: a busy actor takes
        queued messages in a row, without a trip through trio's scheduler
        per message (on the hub's per-event path that trip was a large share
        of the CPU per event, docs/performance.md), yet never starves the
        others. Returns :data:`WOKEN` instead of a message if woken by
        :meth:`interrupt` or :meth:`close`. Cancelling the wait loses nothing.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._items:
            item = self._take()
            self._run += 1
            if self._run >= YIELD_EVERY:
                self._run = 0
                await trio.lowlevel.cancel_shielded_checkpoint()
            return item
        self._run = 0
        if self.closed:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return WOKEN
        self._reader = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._reader = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        if self._items:
            return self._take()
        return WOKEN

    def interrupt(self) -> None:
        """Wake a reader parked in :meth:`get` so it re-checks its stop flag."""
        reader = self._reader
        if reader is not None:
            self._reader = None
            trio.lowlevel.reschedule(reader)

    def close(self) -> None:
        """Close for good: discard queued messages, fail waiting senders.

        Queued asks fail with :class:`ActorStopped`; blocked senders raise it.
        Idempotent; never blocks.
        """
        if self.closed:
            return
        self.closed = True
        items = self._items
        self._items = deque()
        for item in items:
            if type(item) is Request:
                item.fail(self._stopped())
        putters = self._putters
        self._putters = None
        if putters:
            for task in putters:
                trio.lowlevel.reschedule(task)
        self.interrupt()
