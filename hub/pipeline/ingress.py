"""MQTT ingress: decode, authenticate and route every inbound message.

The real input is the MQTT client's bounded channel; while this actor waits
on a full device mailbox it does not read the channel, the channel fills,
and the client stops reading the socket. Every message ends in exactly one
commit (accepted or rejected) and is acknowledged only after that commit.
The client also stops reading while ``HUB_MAX_UNACKED`` messages (hub/core/config.py)
are read and not yet acknowledged, so however many devices' mailboxes there
are, and whatever the broker sends, the pipeline holds at most that many.

The ingress owns the device registry (id -> algorithm, key, revoked). It
learns about registry changes in four ways: :class:`RegistryChanged`
messages (the web tells it after registering, rotating or revoking, through
``WebContext.devices_changed``); a reload when an unknown id appears; a
reload of one device when its signature fails (a rotation made elsewhere,
e.g. by the CLI); and a full reload when the registry is 30 s old (checked
as messages arrive, no timer). Each is rate-limited, so a flood of bad
messages cannot become a flood of queries. So a rotated key works, and the
old one stops working, without a hub restart.

Bounded intake: a topic whose device id is not of the registry's shape, or
that is too long, is refused by :meth:`Topics.parse` before anything is
looked up (a ``bad_topic`` rejection, stored bounded by the writer). Every
authenticated event then takes a token from its device's bucket
(:class:`~hub.domain.rate_limit.TokenBucket`, ``Settings.device_rate_per_s`` /
``device_burst``) and is counted by its device's flood detector (events per
second of the device's own clock, ``device_flood_events_per_s``, hub/domain/rate_limit.py):
when the bucket is dry, or the device stamped too many events within one
second, the event is rejected ``rate_limited``. The first refusal of an
episode goes first to the quarantine keeper (:class:`~hub.pipeline.quarantine.Trip`,
so the broker cut does not wait behind the flooder's events in the device
actor's mailbox), then to the device actor (:class:`RateLimitChanged`), which
raises the ``rate_limited`` alarm in the same commit as that event; the alarm
clears when the bucket is full again and the device is within its density. Buckets exist
only for registered devices that sent an authentic event (dropped when a
device leaves the registry), so memory is bounded by the registry whatever
ids arrive; unauthenticated traffic is never bucketed (it is rejected
anyway, and its rows are capped per source in storage, hub/db/ingest.py).

Many workers (``Settings.partitions`` >= 1): the ingress reads the channel
its worker's partition sessions share (``inbound``), and runs device actors
only for devices of owned partitions (hub/pipeline/ownership.py); on
:class:`~hub.pipeline.ownership.OwnershipChanged` it starts those of gained
partitions and stops those of lost ones. Two cases at the edges:

- a message read by a partition session that has since disconnected (its
  partition given up, or the connection lost) is dropped unacknowledged,
  counted in ``stale_session``: the broker redelivers it to whoever resumes
  that session, the new owner or this worker again; processing it here
  would only start actors for a partition served elsewhere;
- a message from a device of a partition not owned here, on a connected
  session (the device moved to another room, and its old partition's
  session had not yet unsubscribed it) is processed as any other, counted
  in ``foreign_partition``: it may be the only copy. Its device actor is a
  guest, stopped once the device has been quiet here for
  :data:`GUEST_IDLE_S` (before it could think the device offline).

Mailbox (:data:`INGRESS_MAILBOX`, BLOCK): :class:`RegistryChanged` tells,
:class:`OwnershipChanged` asks and its own guest timer; a sender waits while it is full.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from actors import ActorRef
from actors.delivery import deliver
from actors.service import ServiceActor
from hub.core.config import Settings
from hub.db import Database
from hub.db.device_health import DeviceSnapshot, load_device_snapshots
from hub.db.device_registry import DeviceRecord, load_devices
from hub.domain.alarms import RATE_LIMIT_ALARM
from hub.domain.rate_limit import DeviceLimiter, RateLimit, Verdict
from hub.mqtt import InboundMessage, TrioMqttClient
from hub.pipeline.commands import CommandAckReceived
from hub.pipeline.commits import reject
from hub.pipeline.device_actor import DeviceActorFactory, DeviceEvent, StatusUpdate
from hub.pipeline.device_alarms import RateLimitChanged
from hub.pipeline.ownership import EVERYTHING, OwnershipChanged, PartitionOwnership
from hub.pipeline.quarantine import Trip
from hub.pipeline.session_guard import SessionGuard
from schemas import CommandAckEvent, Event, Frame, Topics, WireError, decode_frame, decode_status, verify

log = logging.getLogger("hub.pipeline.ingress")

#: An unknown device id triggers a registry reload at most this often.
_REGISTRY_RELOAD_MIN_S = 2.0
#: With traffic, the whole registry is reloaded when older than this (changes made
#: without telling the hub, such as a revocation from the CLI, take effect within it).
_REGISTRY_MAX_AGE_S = 30.0
#: A bad signature reloads that one device's record at most this often.
_KEY_RELOAD_MIN_S = 2.0
INGRESS_MAILBOX = 64
#: Settings.device_rate_per_s / device_burst's defaults (hub/core/config.py).
DEFAULT_DEVICE_RATE = RateLimit(Settings.device_rate_per_s, Settings.device_burst)
#: Settings.device_flood_events_per_s's default.
DEFAULT_FLOOD_EVENTS_PER_S = Settings.device_flood_events_per_s
#: A guest device actor (a device of another worker's partition, see the module doc) is stopped
#: once its device has sent nothing here for this long; well under the offline timeout.
GUEST_IDLE_S = 30.0


@dataclass(frozen=True)
class _StopIdleGuests:
    """Tell (the ingress' own timer): stop the guest device actors that have been quiet."""


@dataclass(frozen=True)
class RegistryChanged:
    """Tell: these devices were registered, rotated or revoked; reload their records."""

    device_ids: tuple[str, ...]


class Ingress(ServiceActor):
    def __init__(
        self, *, client: TrioMqttClient, topics: Topics, db: Database, writer: ActorRef,
        device_actors: DeviceActorFactory, commands: ActorRef | None = None,
        device_rate: RateLimit = DEFAULT_DEVICE_RATE, session_guard: SessionGuard | None = None,
        flood_events_per_s: int = DEFAULT_FLOOD_EVENTS_PER_S, quarantine: ActorRef | None = None,
        inbound: trio.MemoryReceiveChannel[InboundMessage] | None = None,
        ownership: PartitionOwnership = EVERYTHING,
    ) -> None:
        self._client = client
        #: What to read: the partition sessions' shared channel, else the client's own.
        self._inbound = inbound
        self._ownership = ownership
        #: Messages of devices in partitions not owned here, processed (see the module doc).
        self.foreign_partition = 0
        #: Messages of partition sessions disconnected since they were read, dropped unacknowledged.
        self.stale_session = 0
        #: Guest device actors: device id -> when its last message came (trio time).
        self._guests: dict[str, float] = {}
        self._topics = topics
        self._db = db
        self._writer = writer
        #: Starts a device's actor on its first message (built by the composition root).
        self._device_actors = device_actors
        #: The CommandDispatcher; without one, command acks go to the device actor like any event.
        self._commands = commands
        self._registry: dict[str, DeviceRecord] = {}
        self._registry_loaded_at = -1e9
        self._key_reloaded_at: dict[str, float] = {}
        self._device_rate = device_rate
        #: Keeps another deployment's messages unacknowledged (hub/pipeline/session_guard.py); None: no guard.
        self._session_guard = session_guard
        self._flood_events_per_s = flood_events_per_s
        #: The QuarantineKeeper (hub/pipeline/quarantine.py), told at once when a device's limit trips; None: none.
        self._quarantine = quarantine
        self._rate_detail = f"more than {device_rate.rate:g} events/s (burst {device_rate.burst:g})"
        self._flood_detail = f"more than {flood_events_per_s:,} events stamped within one second of its clock"
        #: Token buckets and flood detectors of registered devices (keys always a subset of the registry's).
        self._buckets: dict[str, DeviceLimiter] = {}
        #: Devices in a rate-limit episode (their alarm raised, not yet cleared).
        self._limited: set[str] = set()

    async def started(self) -> None:
        await self._reload_registry()
        # Device actors exist from the start, so their offline timers run
        # even for a device that never speaks again after a hub restart. Their stored state
        # comes from one query for all of them, not one per actor.
        snapshots = await load_device_snapshots(self._db)
        # An episode open before a restart ends (and its alarm clears) once the device is within its rate.
        self._limited = {device_id for device_id, snapshot in snapshots.items()
                         if device_id in self._registry and any(
                             alarm.type == RATE_LIMIT_ALARM for alarm in snapshot.alarms)}
        for record in self._registry.values():
            if self._ownership.owns_room(record.room_id):
                await self._device_actors.ensure(record, snapshots.get(record.device_id, DeviceSnapshot()))
        await super().started()

    async def handle(self, message: object) -> None:
        if isinstance(message, OwnershipChanged):
            await self._ownership_changed()
        elif isinstance(message, _StopIdleGuests):
            await self._stop_idle_guests()
        elif isinstance(message, RegistryChanged):
            await self._reload_devices(message.device_ids)
        else:
            raise TypeError(f"Ingress takes RegistryChanged and OwnershipChanged messages only, got {message!r}")

    async def _ownership_changed(self) -> None:
        """Stop the actors of devices no longer ours; start those of devices now ours, from PostgreSQL."""
        # Nothing owned: nothing to start, and no query (this may be a database outage,
        # hub/app/partition_sessions.py). Otherwise the registry first, so that a device moved to
        # another worker's room meanwhile is stopped here.
        may_query = not (self._ownership.partitioned and not self._ownership.owned)
        if may_query:
            await self._reload_registry()
        devices = self._device_actors.devices
        for device_id in devices.child_ids():
            record = self._registry.get(device_id)
            if record is None or not self._ownership.owns_room(record.room_id):
                await devices.stop_child(device_id)
        if not may_query:
            return
        gained = [r for r in self._registry.values()
                  if self._ownership.owns_room(r.room_id) and self._device_actors.running(r.device_id) is None]
        if gained:
            snapshots = await load_device_snapshots(self._db)
            for record in gained:
                await self._device_actors.ensure(record, snapshots.get(record.device_id, DeviceSnapshot()))

    async def serve(self) -> None:
        channel = self._inbound if self._inbound is not None else self._client.messages
        async for message in channel:
            # Route everything already waiting before the next scheduling round:
            # one wake-up per drained batch, not per message. Routing blocks only
            # on a full mailbox, and the channel empties because its filler, the
            # MQTT reader, cannot run until this loop yields.
            while True:
                try:
                    await self.route(message)
                except Exception as exc:
                    # As in the device and session actors: keep (and ack) the poison
                    # message before crashing, so a redelivery cannot crash us again.
                    await deliver(self._writer, reject(message, "internal_error", f"{type(exc).__name__}: {exc}"))
                    raise
                try:
                    message = channel.receive_nowait()
                except trio.WouldBlock:
                    break

    async def route(self, message: InboundMessage) -> None:
        log.debug("route %s (%d bytes)", message.topic, len(message.payload))
        if self._ownership.partitioned and message.client is not None and (
                message.generation != message.client.generation or not message.client.connected):
            self.stale_session += 1
            return
        parsed = self._topics.parse(message.topic)
        if parsed is None:
            await self._bad_topic(message)
            return
        device_id, channel = parsed
        if channel == "status":
            await self._route_status(message, device_id)
        elif channel == "up":
            await self._route_event(message, device_id)
        else:
            await self._bad_topic(message)

    async def _bad_topic(self, message: InboundMessage) -> None:
        """A topic we cannot route: rejected and acked if our own subscriptions brought it, else foreign.

        Under our filters (an empty or ill-shaped device level) it is ours: a
        ``bad_topic`` rejection. Outside them it came with a session carrying
        another deployment's subscriptions: acking would delete it for its
        owner, so it is neither stored nor acked (the guard steps away).
        """
        guard = self._session_guard
        if guard is not None and not guard.is_ours(message.topic):
            guard.foreign(message.topic, message.generation)
            return
        await deliver(self._writer, reject(message, "bad_topic", message.topic))

    async def _route_status(self, message: InboundMessage, device_id: str) -> None:
        """A status or Last Will reaches the device's actor only if signed by that device (docs/protocol.md).

        The actor then judges its order (stale, duplicate, too far ahead); here
        the refusals are the wire's (``unsigned_status``, ``schema``, ...),
        ``device_mismatch``, the registry's and ``bad_signature``.
        """
        if not message.payload:
            # An empty retained message clears the topic (the broker has already erased the retained
            # status; the health in PostgreSQL is untouched): kept as a rejection, nothing to judge.
            await deliver(self._writer, reject(message, "empty_status", device_id))
            return
        try:
            frame, status = decode_status(message.payload)
        except WireError as exc:
            await deliver(self._writer, reject(message, exc.reason, exc.detail))
            return
        if status.device != device_id:
            await deliver(self._writer, reject(
                message, "device_mismatch", f"topic says {device_id}, status says {status.device}"))
            return
        record = await self._verified_record(message, frame, device_id)
        if record is None:
            return
        if self._ownership.partitioned:
            self._note_guest(record)
        ref = await self._device_actors.ensure(record)
        await deliver(ref, StatusUpdate(message, status))

    def _note_guest(self, record: DeviceRecord) -> None:
        """Count a message of a device another worker serves; its actor here is a guest (module doc)."""
        if self._ownership.owns_room(record.room_id):
            return
        self.foreign_partition += 1
        if not self._guests:
            self.send_after(GUEST_IDLE_S, _StopIdleGuests())
        self._guests[record.device_id] = trio.current_time()

    async def _stop_idle_guests(self) -> None:
        now = trio.current_time()
        devices = self._device_actors.devices
        for device_id, seen in list(self._guests.items()):
            record = self._registry.get(device_id)
            if record is not None and self._ownership.owns_room(record.room_id):
                del self._guests[device_id]  # ours now: no longer a guest
                continue
            ref = self._device_actors.running(device_id)
            if now - seen >= GUEST_IDLE_S and (ref is None or ref.depth == 0):
                del self._guests[device_id]
                await devices.stop_child(device_id)
        if self._guests:
            self.send_after(GUEST_IDLE_S, _StopIdleGuests())

    async def _verified_record(self, message: InboundMessage, frame: Frame, device_id: str) -> DeviceRecord | None:
        """``device_id``'s record if ``frame`` is signed by its current key; else ``None``, ``message`` rejected.

        A bad signature reloads that device's record (rate-limited, :meth:`_reload_key`)
        and judges again: the key may have been rotated or revoked behind our back.
        """
        record = await self._lookup(device_id)
        problem = self._record_problem(frame, record, device_id)
        if problem is not None and problem[0] == "bad_signature" and await self._reload_key(device_id):
            record = self._registry.get(device_id)
            problem = self._record_problem(frame, record, device_id)
        if problem is not None:
            await deliver(self._writer, reject(message, *problem))
            return None
        return record

    @classmethod
    def _record_problem(cls, frame: Frame, record: DeviceRecord | None, device_id: str) -> tuple[str, str] | None:
        """Why ``frame`` cannot be accepted from ``device_id`` (unknown, revoked, not signed by its key), or ``None``."""
        if record is None:
            return "unknown_device", device_id
        if record.revoked:
            return "revoked_device", device_id
        return cls._signature_problem(frame, record)

    async def _route_event(self, message: InboundMessage, topic_device: str) -> None:
        try:
            frame, event = decode_frame(message.payload)
        except WireError as exc:
            await deliver(self._writer, reject(message, exc.reason, exc.detail))
            return
        if event.device != topic_device:
            await deliver(self._writer, reject(
                message, "device_mismatch", f"topic says {topic_device}, envelope says {event.device}"))
            return
        record = await self._verified_record(message, frame, event.device)
        if record is None:
            return
        if self._ownership.partitioned:
            self._note_guest(record)
        if not await self._within_rate(message, event, record):
            return
        if isinstance(event, CommandAckEvent) and self._commands is not None:
            await deliver(self._commands, CommandAckReceived(message, event))
            return
        ref = await self._device_actors.ensure(record)
        await deliver(ref, DeviceEvent(message, event))

    async def _within_rate(self, message: InboundMessage, event: Event, record: DeviceRecord) -> bool:
        """Judge the event by its device's limits. ``False``: refused, and its rejection is on its way.

        The first refusal of an episode tells the quarantine keeper at once
        (:class:`Trip`, before anything else: the keeper's mailbox holds only
        trips and releases, while the device actor's may be full of the
        flooder's events), then the device actor, which commits the refused
        event with the ``rate_limited`` alarm.
        """
        now = trio.current_time()
        device_id = record.device_id
        limiter = self._buckets.get(device_id)
        if limiter is None:
            limiter = self._buckets[device_id] = DeviceLimiter(self._device_rate, self._flood_events_per_s, now)
        verdict = limiter.admit(now, event.ts)
        if device_id in self._limited and verdict.settled:
            self._limited.discard(device_id)
            await deliver(await self._device_actors.ensure(record), RateLimitChanged(False, self._rate_detail))
        if verdict.admitted:
            return True
        detail = self._flood_detail if verdict is Verdict.REFUSED_FLOOD else self._rate_detail
        if device_id in self._limited:
            await deliver(self._writer, reject(message, "rate_limited", detail, event=event))
        else:
            self._limited.add(device_id)
            log.warning("device %s: %s; its events are refused until it slows down", device_id, detail)
            if self._quarantine is not None:
                await deliver(self._quarantine, Trip(device_id, detail))
            await deliver(await self._device_actors.ensure(record),
                          RateLimitChanged(True, detail, (message, event)))
        return False

    @staticmethod
    def _signature_problem(frame: Frame, record: DeviceRecord) -> tuple[str, str] | None:
        """``(reason, detail)`` if ``frame`` is not signed by ``record``'s current key, else ``None``."""
        if frame.alg != record.alg:
            return "bad_signature", f"device uses {record.alg}, not {frame.alg}"
        try:
            verify(frame, record.key)
        except WireError as exc:
            return exc.reason, exc.detail
        return None

    async def _reload_key(self, device_id: str) -> bool:
        """Reload one device's record unless that was done in the last ``_KEY_RELOAD_MIN_S``."""
        now = trio.current_time()
        if now - self._key_reloaded_at.get(device_id, -1e9) < _KEY_RELOAD_MIN_S:
            return False
        self._key_reloaded_at[device_id] = now
        await self._reload_devices((device_id,))
        return True

    async def _reload_devices(self, device_ids: tuple[str, ...]) -> None:
        found = {d.device_id: d for d in await load_devices(self._db, list(device_ids))}
        for device_id in device_ids:
            record = found.get(device_id)
            if record is None:
                self._registry.pop(device_id, None)
                self._buckets.pop(device_id, None)
                self._limited.discard(device_id)
            else:
                self._registry[device_id] = record

    async def _lookup(self, device_id: str) -> DeviceRecord | None:
        age = trio.current_time() - self._registry_loaded_at
        if age >= _REGISTRY_MAX_AGE_S:
            # Catches changes nobody told us about (e.g. `campushub devices revoke` on another machine).
            await self._reload_registry()
        record = self._registry.get(device_id)
        if record is None and trio.current_time() - self._registry_loaded_at >= _REGISTRY_RELOAD_MIN_S:
            await self._reload_registry()
            record = self._registry.get(device_id)
        return record

    async def _reload_registry(self) -> None:
        self._registry = {d.device_id: d for d in await load_devices(self._db)}
        self._registry_loaded_at = trio.current_time()
        # At most every _REGISTRY_MAX_AGE_S with traffic: a linear pass is nothing.
        self._buckets = {k: b for k, b in self._buckets.items() if k in self._registry}
        self._limited &= self._registry.keys()
