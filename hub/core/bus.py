"""Fan-out of committed changes to live subscribers (websocket connection actors).

Concurrency contract: :meth:`LiveBus.publish` is synchronous and never blocks;
the writer calls it after a commit. Each subscription has a bounded buffer. A
subscriber that falls behind does not slow anyone: its overflowing messages
are dropped and it receives :data:`LAGGED` once, meaning "reload your snapshot".
"""
from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import trio


class _Lagged:
    def __repr__(self) -> str:
        return "LAGGED"


#: Delivered to a subscriber whose buffer overflowed; it should resync from the database.
LAGGED = _Lagged()

BusMessage = dict[str, Any]


def session_topic(session_id: str) -> str:
    return f"session:{session_id}"


def student_topic(student_id: str) -> str:
    return f"student:{student_id}"


def user_topic(user_id: str) -> str:
    """A user's own notifications (any role): ``{"type": "notification", ...}``."""
    return f"user:{user_id}"


DEVICES_TOPIC = "devices"

#: Hub-internal observers (the warnings actor): every ``{"type": "attendance", ...}`` message
#: published on a session topic is also offered here, so they need not know the sessions.
ATTENDANCE_TOPIC = "attendance"
_SESSION_PREFIX = "session:"


class Subscription:
    """Receive side of one subscriber. Use as an async iterator of messages or ``LAGGED``."""

    def __init__(self, capacity: int) -> None:
        self._send, self._receive = trio.open_memory_channel[BusMessage](capacity)
        self._lagged = False
        self.dropped = 0

    def _offer(self, message: BusMessage) -> None:
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            self._lagged = True
            self.dropped += 1

    async def receive(self) -> BusMessage | _Lagged:
        """Block until a message arrives. Cancellation leaves the subscription intact."""
        if self._lagged:
            self._lagged = False
            while True:  # what is buffered is stale once a resync is due
                try:
                    self._receive.receive_nowait()
                except trio.WouldBlock:
                    break
            return LAGGED
        return await self._receive.receive()

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> BusMessage | _Lagged:
        return await self.receive()


class LiveBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)

    def publish(self, topic: str, message: BusMessage) -> None:
        for subscription in self._subscribers.get(topic, ()):
            subscription._offer(message)
        if topic.startswith(_SESSION_PREFIX) and message.get("type") == "attendance":
            for subscription in self._subscribers.get(ATTENDANCE_TOPIC, ()):
                subscription._offer(message)

    @contextmanager
    def subscribe(self, topics: Iterable[str], capacity: int = 256) -> Iterator[Subscription]:
        """Subscribe for the duration of the block."""
        subscription = Subscription(capacity)
        topics = list(topics)
        for topic in topics:
            self._subscribers[topic].add(subscription)
        try:
            yield subscription
        finally:
            for topic in topics:
                subs = self._subscribers.get(topic)
                if subs is not None:
                    subs.discard(subscription)
                    if not subs:
                        del self._subscribers[topic]

    @property
    def subscriber_count(self) -> int:
        return len({s for subs in self._subscribers.values() for s in subs})
