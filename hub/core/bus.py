"""The live bus: its topics, its messages, and their fan-out to live subscribers.

Messages: every kind the bus carries is declared once below, as a frozen
msgspec Struct tagged with its ``type`` (:class:`LiveMessage` and its
subclasses; the docstring of each names its topic). A message becomes the
JSON the browser receives in one way only, :attr:`LiveMessage.json`:
``{"type": <tag>, <field>: <value>, ...}`` in field order, encoded once per
message however many websockets forward it. Times are ISO 8601 strings
(``datetime.isoformat()``, as the API writes them), set by whoever builds
the message. Hub-internal subscribers (the warnings and ticket actors) read
the same typed fields.

Concurrency contract: :meth:`LiveBus.publish` is synchronous and never blocks;
the writer calls it after a commit. Each subscription has a bounded buffer. A
subscriber that falls behind does not slow anyone: its overflowing messages
are dropped and it receives :data:`LAGGED` once, meaning "reload your snapshot".
Messages are immutable, so one instance is shared by every subscriber.

Across workers: :attr:`LiveBus.on_publish`, when set, is called with every message
published here (after the local fan-out, in the same call, so it must not block either);
the bridge to the other workers (``hub.core.bus_bridge``) sets it, and hands what it
hears from them to :meth:`LiveBus.publish_local`, which fans out here only. When
messages from another worker may have been lost, :meth:`LiveBus.lag_all` gives every
subscriber :data:`LAGGED`.
"""
from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, cast, get_type_hints

import msgspec
import trio

from hub.domain.device_health import PUBLISHED_HEALTH_FIELDS, DeviceHealth

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class _Lagged:
    def __repr__(self) -> str:
        return "LAGGED"


#: Delivered to a subscriber whose buffer overflowed; it should resync from the database.
LAGGED = _Lagged()


def session_topic(session_id: str) -> str:
    return f"session:{session_id}"


def student_topic(student_id: str) -> str:
    return f"student:{student_id}"


def user_topic(user_id: str) -> str:
    """A user's own messages (any role): :class:`LiveNotification`, :class:`LiveUnread`, :class:`LiveAccountChanged`."""
    return f"user:{user_id}"


DEVICES_TOPIC = "devices"

#: Hub-internal observers (the warnings actor): every :class:`LiveAttendance` published
#: on a session topic is also offered here, so they need not know the sessions.
ATTENDANCE_TOPIC = "attendance"
_SESSION_PREFIX = "session:"


# --- messages ------------------------------------------------------------------------------------

_ENCODER = msgspec.json.Encoder()


class LiveMessage(msgspec.Struct, frozen=True, tag_field="type", dict=True):
    """A live-bus message. Subclasses set ``tag=`` (the JSON ``type``) and declare their fields.

    ``dict=True`` only gives instances room for the cached :attr:`json`;
    it adds no field.
    """

    @cached_property
    def json(self) -> str:
        """The message as the browser receives it (one websocket text frame).

        Encoded on first use, then shared: a message forwarded to a thousand
        websockets is encoded once, and never if nobody forwards it.
        """
        return _ENCODER.encode(self).decode()


def iso_fields(record: DataclassInstance) -> dict[str, Any]:
    """A record's fields by name in declared order, its times as ISO 8601 strings: the body of a
    message built from a record (and of the API object that shows the same record)."""
    out: dict[str, Any] = {}
    for f in fields(record):
        value = getattr(record, f.name)
        out[f.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


#: A message and the topic to publish it on (after the commit that made it true).
LiveUpdate = tuple[str, LiveMessage]


class LiveAttendance(LiveMessage, frozen=True, tag="attendance"):
    """A student's status in a session changed. Topics: the session's and the student's (:meth:`updates`)."""

    session_id: str
    student_id: str
    status: str
    checked_in_at: str | None
    source: str

    def updates(self) -> tuple[LiveUpdate, LiveUpdate]:
        """Where it goes: the live roster (and, through the bus, :data:`ATTENDANCE_TOPIC`) and the student."""
        return (session_topic(self.session_id), self), (student_topic(self.student_id), self)


class LiveFlag(LiveMessage, frozen=True, tag="flag"):
    """A check-in flag raised or reviewed. Topic: the session's. ``flag`` is the API's flag object."""

    session_id: str
    student_id: str
    kind: str
    detail: str
    state: str
    flag: dict[str, Any]


class LiveRoster(LiveMessage, frozen=True, tag="roster"):
    """A live session's roster changed (enrolments, deactivated accounts). Topic: the session's.

    ``added`` are the roster's student objects (as in the roster snapshot), ``removed`` student ids.
    """

    session_id: str
    added: tuple[dict[str, Any], ...]
    removed: tuple[str, ...]


class LiveTopics(LiveMessage, frozen=True, tag="topics"):
    """The syllabus topics a session covered were tagged (the whole set now). Topic: the session's."""

    session_id: str
    topic_ids: tuple[int, ...]
    tagged_by: str


class LiveUnderstanding(LiveMessage, frozen=True, tag="understanding"):
    """Understanding levels (1-5) were recorded in a session, of one topic or (``topic_id`` None) of
    the session. ``levels``: ``[student_id, level]`` pairs. Topic: the session's."""

    session_id: str
    topic_id: int | None
    levels: tuple[tuple[str, int], ...]
    recorded_by: str


_HEALTH_TYPES: dict[str, Any] = get_type_hints(DeviceHealth)
#: The published health fields after ``device_id`` (which comes first, then the room), in declaration order.
_LIVE_HEALTH_FIELDS: tuple[str, ...] = tuple(name for name in PUBLISHED_HEALTH_FIELDS if name != "device_id")
#: Those that are times, which travel as ISO strings (see the module doc).
_LIVE_HEALTH_TIMES: frozenset[str] = frozenset(
    name for name in _LIVE_HEALTH_FIELDS if _HEALTH_TYPES[name] == datetime | None)

#: A device's health changed. Topic: :data:`DEVICES_TOPIC`. Build it with :func:`live_device`.
#:
#: Derived from the one declaration, ``hub.domain.device_health.DeviceHealth``: ``device_id``, the
#: device's ``room_id``, then the other :data:`~hub.domain.device_health.PUBLISHED_HEALTH_FIELDS`
#: (all but ``status_ts``) in their declared order, times as ISO strings.
LiveDevice = cast("type[LiveMessage]", msgspec.defstruct(
    "LiveDevice",
    [("device_id", str), ("room_id", str | None),
     *((name, str | None if name in _LIVE_HEALTH_TIMES else _HEALTH_TYPES[name]) for name in _LIVE_HEALTH_FIELDS)],
    bases=(LiveMessage,), tag="device", frozen=True, module=__name__,
))


def _compile_live_device() -> Callable[[DeviceHealth, str | None], LiveMessage]:
    """:func:`live_device`, written out from the field list at import (as ``dataclasses`` writes
    ``__init__``): it runs on the device actor's per-event path. Per message (CPU time, same sitting):
    3.03 µs with the 17 fields spelled out by hand, 3.35 µs with a loop over the fields, 2.73 µs so."""
    values = ", ".join(f"(health.{name}.isoformat() if health.{name} else None)" if name in _LIVE_HEALTH_TIMES
                       else f"health.{name}" for name in _LIVE_HEALTH_FIELDS)
    namespace: dict[str, Any] = {"LiveDevice": LiveDevice}
    exec(f"def live_device(health, room_id):\n    return LiveDevice(health.device_id, room_id, {values})\n",
         namespace)
    built = namespace["live_device"]
    built.__doc__ = "The :data:`LiveDevice` message of ``health`` (a ``DeviceHealth``) for a device in ``room_id``."
    built.__module__ = __name__
    return built


live_device = _compile_live_device()


class LiveAlarm(LiveMessage, frozen=True, tag="alarm"):
    """An alarm was raised, acknowledged or cleared. Topic: :data:`DEVICES_TOPIC`."""

    alarm_id: int
    device_id: str
    room_id: str | None
    alarm_type: str
    severity: str
    state: str
    raised_at: str
    cleared_at: str | None
    acked_by: str | None
    value: float | None
    message: str


class LiveCommand(LiveMessage, frozen=True, tag="command"):
    """A device command was issued or changed status. Topic: :data:`DEVICES_TOPIC`."""

    command_id: str
    device_id: str
    name: str
    args: dict[str, Any]
    status: str
    ttl_s: int
    ack_timeout_s: int
    issued_by: str
    created_at: str | None
    sent_at: str | None
    expires_at: str | None
    ack_deadline: str | None
    acked_at: str | None
    detail: str


class LiveTicket(LiveMessage, frozen=True, tag="ticket"):
    """A ticket changed: its columns and the SLA verdict. Topic: :data:`DEVICES_TOPIC`.

    ``origin`` is ``hub`` (the ticket actor) or ``web`` (the API; the ticket
    actor re-reads those); ``change`` names what happened (``created``,
    ``assigned``, ``auto_closed``, ``sla_breached``...). Built from the
    ticket record by ``hub.db.tickets.live_ticket``, for both.
    """

    origin: str
    change: str
    id: int
    room_id: str | None
    room_name: str | None
    building: str | None
    device_id: str | None
    alarm_id: int | None
    alarm_type: str | None
    title: str
    description: str
    priority: str
    state: str
    source: str
    assignee: str | None
    assignee_name: str | None
    reported_by: str | None
    reporter_name: str | None
    sla_due_at: str
    sla_breached_at: str | None
    auto_close_after_s: int | None
    created_at: str
    updated_at: str
    resolved_at: str | None
    closed_at: str | None
    close_reason: str
    sla_breached: bool


class LiveTicketComment(LiveMessage, frozen=True, tag="ticket_comment"):
    """A comment was added to a ticket. Topic: :data:`DEVICES_TOPIC`."""

    ticket_id: int
    id: int
    author: str
    author_name: str
    body: str
    created_at: str


class LivePriority(msgspec.Struct, frozen=True):
    """One priority of :class:`LiveTicketPolicy`."""

    priority: str
    resolve_within_s: int
    auto_close_after_s: int | None


class LiveTicketPolicy(LiveMessage, frozen=True, tag="ticket_policy"):
    """The ticket SLA policy was saved. Topic: :data:`DEVICES_TOPIC`."""

    priorities: tuple[LivePriority, ...]
    auto_raise_severities: tuple[str, ...]
    updated_at: str
    updated_by: str | None


class LiveNotification(LiveMessage, frozen=True, tag="notification"):
    """A notification was stored. Topic: its recipient's :func:`user_topic`. ``notification`` is the API's object."""

    notification: dict[str, Any]


class LiveUnread(LiveMessage, frozen=True, tag="unread"):
    """The user's unread count changed (read marks from another tab). Topic: the user's :func:`user_topic`."""

    unread: int


class LiveAccountChanged(LiveMessage, frozen=True, tag="account"):
    """An account's role or state changed (committed). Topic: the user's :func:`user_topic`.

    Published by the people API after a role change, deactivation, reactivation or deletion, so
    the web's per-request account check forgets what it cached and the user's open websockets
    close when ``active`` is false or ``deleted``.
    """

    user_id: str
    role: str
    active: bool
    deleted: bool
    changed_at: str


# --- fan-out -------------------------------------------------------------------------------------


class Subscription:
    """Receive side of one subscriber. Use as an async iterator of messages or ``LAGGED``."""

    def __init__(self, capacity: int) -> None:
        # LAGGED itself travels in the channel only when _lag() finds room (a waiting receiver wakes).
        self._send, self._receive = trio.open_memory_channel[LiveMessage | _Lagged](capacity)
        self._lagged = False
        self.dropped = 0

    def _offer(self, message: LiveMessage) -> None:
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            self._lagged = True
            self.dropped += 1

    def _lag(self) -> None:
        """Make the next receive answer ``LAGGED`` (messages this subscriber never saw were lost elsewhere)."""
        try:
            self._send.send_nowait(LAGGED)  # wakes a receiver waiting on an empty buffer
        except trio.WouldBlock:
            self._lagged = True  # a full buffer: nobody waits, and the flag drains it on the next receive

    async def receive(self) -> LiveMessage | _Lagged:
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

    async def receive_batch(self, limit: int = 1024) -> list[LiveMessage] | _Lagged:
        """Block until a message arrives, then take every message already buffered too (at most ``limit``).

        ``LAGGED`` as :meth:`receive` (never mixed into a batch: a LAGGED found after some messages
        is the answer of the next call). For a consumer that hands what it hears to an actor: one
        tell per batch instead of one per message, so a consumer busy with one long piece of work
        catches up in a few tells instead of filling its mailbox and lagging.
        Cancellation leaves the subscription intact.
        """
        first = await self.receive()
        if isinstance(first, _Lagged):
            return first
        batch = [first]
        while len(batch) < limit and not self._lagged:
            try:
                item = self._receive.receive_nowait()
            except trio.WouldBlock:
                break
            if isinstance(item, _Lagged):
                self._lagged = True
                break
            batch.append(item)
        return batch

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> LiveMessage | _Lagged:
        return await self.receive()


class LiveBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        #: Called as ``on_publish(topic, message)`` after the local fan-out of every :meth:`publish`
        #: (not of :meth:`publish_local`). Synchronous and must never block, as ``publish`` itself.
        self.on_publish: Callable[[str, LiveMessage], None] | None = None

    def publish(self, topic: str, message: LiveMessage) -> None:
        """Offer ``message`` to this process's subscribers of ``topic``, then to :attr:`on_publish`."""
        self.publish_local(topic, message)
        on_publish = self.on_publish
        if on_publish is not None:
            on_publish(topic, message)

    def publish_local(self, topic: str, message: LiveMessage) -> None:
        """Offer ``message`` to this process's subscribers of ``topic`` only (a message another worker published)."""
        for subscription in self._subscribers.get(topic, ()):
            subscription._offer(message)
        if type(message) is LiveAttendance and topic.startswith(_SESSION_PREFIX):
            for subscription in self._subscribers.get(ATTENDANCE_TOPIC, ()):
                subscription._offer(message)

    def lag_all(self) -> None:
        """Give every current subscriber :data:`LAGGED` (next, after what it has buffered): messages may
        have been lost on their way from another worker, and nobody can tell which topics they were for."""
        for subscription in {s for subs in self._subscribers.values() for s in subs}:
            subscription._lag()

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
