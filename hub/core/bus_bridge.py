"""The live bus across workers: each worker's live messages reach the other workers' buses through the broker.

:class:`LiveBusBridge` joins one worker's :class:`~hub.core.bus.LiveBus` to one MQTT
topic of the deployment, :attr:`schemas.Topics.live_bus` (``{prefix}/v1/hub/live``;
QoS 1, never retained; only the hub's account may read or write it, see
``hub.adapters.mosquitto_auth``). Every worker publishes there what is published on
its own bus, and hands what the others published to its bus's
:meth:`~hub.core.bus.LiveBus.publish_local`, so a browser connected to any worker sees
the updates of every worker.

Wire format (:func:`encode_live` / :func:`decode_live`): one MessagePack array
``[origin, incarnation, [[seq, topic, message], ...]]`` per MQTT message: the worker
id of the publisher, a random number drawn by each bridge when it is made (a
restarted worker keeps its id and gets a new incarnation), then the live messages
the bridge had waiting, in order, each with its number in that incarnation (1, 2,
3...; every locally published message takes one, sent or not), its bus topic and
the message itself, tagged with its ``type`` as in its JSON. A message decodes as a
tagged union of every :class:`~hub.core.bus.LiveMessage` subclass
(:data:`LIVE_MESSAGE_TYPES`, found from the classes themselves). Several live
messages per publish (at most :data:`SEND_BATCH`, and what fits a packet): a commit
of a few hundred check-ins publishes a few hundred live messages at once, and one
QoS 1 publish each filled the buffer and dropped them (a two-worker drain with
check-ins).

What is lost, and how a remote subscriber learns of it. A live message is a hint
that the database changed: a lost one calls for the same resync as a subscription
that overflowed, :data:`~hub.core.bus.LAGGED` ("reload your snapshot"). A message may
be lost between workers when the bridge's buffer is full (:attr:`BridgeStats.dropped`:
``publish`` never waits for the broker), when it does not fit a packet the broker
takes (:attr:`BridgeStats.oversize`), when it cannot be encoded
(:attr:`BridgeStats.unencodable`), or while a connection is down (the broker's queue
for a session is bounded, and a session may be gone). The sequence numbers make each
of these visible to every receiver: a number skipped by an origin
(:attr:`BridgeStats.gaps`; the first message heard from an origin counts as one
unless it is its number 1), or an origin that comes back as a new incarnation (its
last messages may have died with it), or a reconnect of the receiver's own
connection, makes the receiving bridge call :meth:`~hub.core.bus.LiveBus.lag_all`:
every subscriber of that worker gets ``LAGGED`` before the next message, because
nothing says which topics the lost messages were for. A gap is seen when the origin's
next message arrives; a reconnect is acted on at once. A worker that dies with
messages unsent leaves a gap no one sees (until it comes back under its id): its
partitions' new owner starts from the database anyway. Duplicates (QoS 1 redelivery)
are recognised by their number and dropped (:attr:`BridgeStats.duplicates`).

No echo: a message heard from the broker goes to ``publish_local``, which does not
call :attr:`~hub.core.bus.LiveBus.on_publish`, so it is never sent out again; what
comes back from our own worker id (the broker sends a subscriber its own messages) is
ignored (:attr:`BridgeStats.own`), as it was delivered here when it was published.

A payload that does not decode is acknowledged (it would come back forever
otherwise), counted (:attr:`BridgeStats.undecodable`) and logged with its text
escaped (:func:`hub.core.log_format.escape_controls`); nothing else happens.

Concurrency contract: one bridge per bus and per worker, in the bus's trio run.
:meth:`LiveBusBridge.run` owns its ``TrioMqttClient`` (it runs it and is the only
reader of its messages: give the bridge a client of its own). While ``run`` runs, the
bridge is the bus's ``on_publish``: :meth:`LiveBusBridge.forward` is synchronous,
never blocks and never raises (a full buffer drops and counts); a task of ``run``
encodes and publishes in order, another decodes what arrives and fans it out here,
synchronously, before acknowledging it. The counters are plain ints, read them any
time. Cancel ``run`` to stop; it detaches from the bus on the way out.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any, Union

import msgspec
import trio

from hub.core.bus import LiveBus, LiveMessage
from hub.core.config import MQTT_MAX_PACKET_SIZE
from hub.core.log_format import escape_controls
from hub.mqtt import InboundMessage, TrioMqttClient, receive_batches
from schemas import Topics

log = logging.getLogger("hub.bus_bridge")

#: Messages waiting to be sent before :meth:`LiveBusBridge.forward` drops (a default; per bridge).
DEFAULT_BUFFER = 1024
#: Room left in a packet for the PUBLISH's fixed header (<= 5 bytes), topic, packet id and properties.
_PACKET_OVERHEAD = 512
#: How many received messages the receiving task handles (and acknowledges in one write) at once.
_RECEIVE_BATCH = 256
#: At most this many live messages travel in one MQTT message (and no more than fit a packet).
SEND_BATCH = 256


def _tagged_subclasses(base: type[LiveMessage]) -> tuple[type[LiveMessage], ...]:
    """Every subclass of ``base`` at any depth that carries a tag, in declaration order (no duplicates)."""
    found: dict[type[LiveMessage], None] = {}
    pending = list(base.__subclasses__())
    while pending:
        cls = pending.pop(0)
        if cls.__struct_config__.tag is not None:
            found[cls] = None
        pending.extend(cls.__subclasses__())
    return tuple(found)


#: Every kind of live message, from the declarations in hub/core/bus.py (a subclass declared anywhere
#: else must be imported before this module, as bus.py's own are).
LIVE_MESSAGE_TYPES: tuple[type[LiveMessage], ...] = _tagged_subclasses(LiveMessage)

#: ``[origin, incarnation, [[seq, topic, message], ...]]``: see the module doc.
_WIRE_TYPE: Any = tuple[str, int, list[tuple[int, str, Union[LIVE_MESSAGE_TYPES]]]]  # type: ignore[valid-type]
_DECODER = msgspec.msgpack.Decoder(_WIRE_TYPE)
_ENCODER = msgspec.msgpack.Encoder()


@dataclass(frozen=True, slots=True)
class WireLive:
    """One live message as it travels between workers (see the module doc)."""

    origin: str
    incarnation: int
    seq: int
    topic: str
    message: LiveMessage


def _encode_entry(seq: int, topic: str, message: LiveMessage) -> bytes:
    """One ``[seq, topic, message]`` of a payload. Raises ``msgspec.EncodeError``/``TypeError`` if a
    free-form field (``dict[str, Any]``) holds what MessagePack cannot carry."""
    return _ENCODER.encode((seq, topic, message))


def _payload(origin: str, incarnation: int, entries: list[bytes]) -> bytes:
    return _ENCODER.encode((origin, incarnation, [msgspec.Raw(entry) for entry in entries]))


def encode_live(*wires: WireLive) -> bytes:
    """The MessagePack payload carrying ``wires`` (at least one, all of one origin and incarnation).

    Raises ``ValueError`` for none or mixed origins, ``msgspec.EncodeError``/``TypeError`` if a
    free-form field (``dict[str, Any]``) holds what MessagePack cannot carry."""
    if not wires:
        raise ValueError("a payload carries at least one live message")
    origin, incarnation = wires[0].origin, wires[0].incarnation
    if any(w.origin != origin or w.incarnation != incarnation for w in wires):
        raise ValueError("one payload carries the messages of one origin and incarnation")
    return _payload(origin, incarnation, [_encode_entry(w.seq, w.topic, w.message) for w in wires])


def decode_live(payload: bytes) -> list[WireLive]:
    """The messages in ``payload``, in order; raises ``msgspec.DecodeError`` (``ValidationError``
    included) if it is not a payload of live messages."""
    origin, incarnation, entries = _DECODER.decode(payload)
    return [WireLive(origin, incarnation, seq, topic, message) for seq, topic, message in entries]


@dataclass(slots=True)
class BridgeStats:
    """Counters of one :class:`LiveBusBridge`; plain ints, read them any time."""

    sent: int = 0  # messages handed to the MQTT client
    publishes: int = 0  # MQTT messages they travelled in (several live messages each)
    dropped: int = 0  # not sent: the buffer was full (remote subscribers get LAGGED)
    oversize: int = 0  # not sent: larger than the broker's packet limit (remote subscribers get LAGGED)
    unencodable: int = 0  # not sent: a free-form field MessagePack cannot carry (remote subscribers get LAGGED)
    received: int = 0  # messages of other workers published on the local bus
    own: int = 0  # messages of our own worker id, ignored
    duplicates: int = 0  # redeliveries (a number already seen from that origin), ignored
    undecodable: int = 0  # payloads that are not a live message, ignored
    gaps: int = 0  # times an origin skipped numbers
    lagged: int = 0  # times every local subscriber was given LAGGED (gaps, new incarnations, reconnects)


class LiveBusBridge:
    """Carries ``bus``'s messages to the other workers' buses and theirs to ``bus``, through ``client``.

    ``worker_id`` names this worker among the deployment's (unique per worker: messages from the same
    id are taken for our own and ignored). ``client``: a ``TrioMqttClient`` of the bridge's own, not yet
    run; ``clean_start=True`` with a short ``session_expiry_s`` suits it (a reconnect already means
    LAGGED here, so a long session only keeps the broker queueing for a worker that is gone) and
    ``max_packet_size=MQTT_MAX_PACKET_SIZE``. ``buffer``: messages waiting to be sent before
    :meth:`forward` drops. See the module doc for the wire format and the concurrency contract.
    """

    def __init__(self, bus: LiveBus, client: TrioMqttClient, topics: Topics, worker_id: str, *,
                 buffer: int = DEFAULT_BUFFER) -> None:
        if not worker_id:
            raise ValueError("worker_id is required")
        self._bus = bus
        self._client = client
        self._topic = topics.live_bus
        self.worker_id = worker_id
        #: Drawn once per bridge: tells a restarted worker (same id, numbers from 1 again) from a replay.
        self.incarnation = secrets.randbits(63)
        self.stats = BridgeStats()
        self._seq = 0
        self._send, self._outbox = trio.open_memory_channel[tuple[int, str, LiveMessage]](buffer)
        self._dropping = False
        self._dropped_at_start = 0
        #: origin -> (incarnation, last number) of the other workers heard from.
        self._heard: dict[str, tuple[int, int]] = {}
        # What a payload's entries may take: the rest of a packet is the PUBLISH's own header and
        # topic, and the payload's array headers, origin and incarnation.
        self._max_entries_size = (MQTT_MAX_PACKET_SIZE - _PACKET_OVERHEAD - len(self._topic.encode())
                                  - len(worker_id.encode()) - 32)
        self._warned_twin = False

    # ------------------------------------------------------------------ publishing side

    def forward(self, topic: str, message: LiveMessage) -> None:
        """The bus's ``on_publish``: queue ``message`` for the other workers. Synchronous, never blocks.

        When the buffer is full the message is dropped and counted (its number is spent, so every
        receiver sees the gap and gives its subscribers LAGGED); one warning per run of drops.
        """
        self._seq += 1
        try:
            self._send.send_nowait((self._seq, topic, message))
        except trio.WouldBlock:
            self.stats.dropped += 1
            if not self._dropping:
                self._dropping, self._dropped_at_start = True, self.stats.dropped - 1
                log.warning("live bus bridge %s: buffer full, dropping live messages for the other workers "
                            "(their subscribers will be told to resync)", escape_controls(self.worker_id))
            return
        if self._dropping:
            self._dropping = False
            log.warning("live bus bridge %s: sending again after dropping %d live messages",
                        escape_controls(self.worker_id), self.stats.dropped - self._dropped_at_start)

    async def _send_loop(self) -> None:
        """Publish in order what :meth:`forward` queued: everything waiting at once, as few payloads."""
        async for batch in receive_batches(self._outbox, SEND_BATCH):
            entries: list[bytes] = []
            size = 0
            for seq, topic, message in batch:
                entry = self._entry(seq, topic, message)
                if entry is None:
                    continue  # its number is never sent: the receivers see a gap
                if entries and size + len(entry) > self._max_entries_size:
                    await self._publish(entries)
                    entries, size = [], 0
                entries.append(entry)
                size += len(entry)
            if entries:
                await self._publish(entries)

    def _entry(self, seq: int, topic: str, message: LiveMessage) -> bytes | None:
        """``message`` encoded for a payload, or None (counted and logged) if it cannot be sent."""
        try:
            entry = _encode_entry(seq, topic, message)
        except (msgspec.EncodeError, TypeError, ValueError) as exc:
            self.stats.unencodable += 1
            log.warning("live bus bridge: cannot encode a %s message for %s: %s", type(message).__name__,
                        escape_controls(topic), escape_controls(str(exc)))
            return None
        if len(entry) > self._max_entries_size:
            # The broker would disconnect us for it (its max_packet_size): never sent, seen as a gap.
            self.stats.oversize += 1
            log.warning("live bus bridge: a %s message for %s is %d bytes, over the %d the broker takes; "
                        "not sent", type(message).__name__, escape_controls(topic), len(entry),
                        self._max_entries_size)
            return None
        return entry

    async def _publish(self, entries: list[bytes]) -> None:
        await self._client.publish(self._topic, _payload(self.worker_id, self.incarnation, entries),
                                   qos=1, retain=False)
        self.stats.sent += len(entries)
        self.stats.publishes += 1

    # ------------------------------------------------------------------ receiving side

    async def _on_connect(self, client: TrioMqttClient) -> None:
        await client.subscribe(self._topic, qos=1)
        if client.generation > 1:
            # The connection was lost: what the others published meanwhile may be lost with it.
            self._lag_all()

    def _lag_all(self) -> None:
        self.stats.lagged += 1
        self._bus.lag_all()

    def _receive_one(self, inbound: InboundMessage) -> None:
        if inbound.topic != self._topic:
            self._undecodable(inbound, f"unexpected topic {inbound.topic!r}")
            return
        try:
            wires = decode_live(inbound.payload)
        except msgspec.DecodeError as exc:
            self._undecodable(inbound, str(exc))
            return
        for wire in wires:
            self._deliver(wire)

    def _deliver(self, wire: WireLive) -> None:
        if wire.origin == self.worker_id:
            self.stats.own += 1
            if wire.incarnation != self.incarnation and not self._warned_twin:
                self._warned_twin = True  # an older bridge of ours, or another worker with our id
                log.warning("live bus bridge %s: heard another incarnation of this worker id; if another worker "
                            "uses it, its messages are ignored here", escape_controls(self.worker_id))
            return
        heard = self._heard.get(wire.origin)
        if heard is not None and heard[0] == wire.incarnation:
            if wire.seq <= heard[1]:
                self.stats.duplicates += 1
                return
            if wire.seq != heard[1] + 1:
                self.stats.gaps += 1
                self._lag_all()
        elif heard is not None:
            self._lag_all()  # the origin restarted: its last messages may have died with it
        elif wire.seq != 1:
            self.stats.gaps += 1  # the first we hear of it: what it published before may have been for us
            self._lag_all()
        self._heard[wire.origin] = (wire.incarnation, wire.seq)
        self.stats.received += 1
        self._bus.publish_local(wire.topic, wire.message)

    def _undecodable(self, inbound: InboundMessage, reason: str) -> None:
        self.stats.undecodable += 1
        log.warning("live bus bridge: ignoring an undecodable message (%d bytes on %s): %s",
                    len(inbound.payload), escape_controls(inbound.topic), escape_controls(reason))

    async def _receive_loop(self) -> None:
        async for batch in receive_batches(self._client.messages, _RECEIVE_BATCH):
            for inbound in batch:
                self._receive_one(inbound)
            self._client.ack_many(batch)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Attach to the bus, connect and subscribe, then carry messages both ways until cancelled.

        ``task_status.started()`` after the first connection is subscribed. Messages published on
        the bus from the moment ``run`` is called are numbered and buffered (while the broker cannot
        be reached, up to the buffer, then dropped). Raises ``RuntimeError`` if the bus already has
        an ``on_publish``. Single use, as its client.
        """
        if self._bus.on_publish is not None:
            raise RuntimeError("the live bus already has an on_publish hook (one bridge per bus)")
        self._bus.on_publish = self.forward
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(lambda task_status: self._client.run(
                    on_connect=self._on_connect, task_status=task_status))
                nursery.start_soon(self._send_loop)  # publishes from then on (QoS 1 is queued while disconnected)
                nursery.start_soon(self._receive_loop)
                task_status.started()
        finally:
            if self._bus.on_publish == self.forward:
                self._bus.on_publish = None
