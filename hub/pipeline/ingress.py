"""MQTT ingress: decode, authenticate and route every inbound message.

The real input is the MQTT client's bounded channel; while this actor waits
on a full device mailbox it does not read the channel, the channel fills,
and the client stops reading the socket. Every message ends in exactly one
commit (accepted or rejected) and is acknowledged only after that commit.

The ingress owns the device registry (id -> algorithm, key, revoked). It
learns about registry changes in four ways: :class:`RegistryChanged`
messages (the web tells it after registering, rotating or revoking, through
``WebContext.devices_changed``); a reload when an unknown id appears; a
reload of one device when its signature fails (a rotation made elsewhere,
e.g. by the CLI); and a full reload when the registry is 30 s old (checked
as messages arrive, no timer). Each is rate-limited, so a flood of bad
messages cannot become a flood of queries. So a rotated key works, and the
old one stops working, without a hub restart.

Mailbox (:data:`INGRESS_MAILBOX`, BLOCK): only :class:`RegistryChanged`
messages; a sender waits while it is full.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from actors import ActorRef
from actors.delivery import deliver
from actors.service import ServiceActor
from hub.db import Database
from hub.db.device_health import DeviceSnapshot, load_device_snapshots
from hub.db.device_registry import DeviceRecord, load_devices
from hub.mqtt import InboundMessage, TrioMqttClient
from hub.pipeline.commands import CommandAckReceived
from hub.pipeline.commits import reject
from hub.pipeline.device_actor import DeviceActorFactory, DeviceEvent, StatusUpdate
from schemas import CommandAckEvent, Frame, Topics, WireError, decode_frame, decode_status, verify

log = logging.getLogger("hub.pipeline.ingress")

#: An unknown device id triggers a registry reload at most this often.
_REGISTRY_RELOAD_MIN_S = 2.0
#: With traffic, the whole registry is reloaded when older than this (changes made
#: without telling the hub, such as a revocation from the CLI, take effect within it).
_REGISTRY_MAX_AGE_S = 30.0
#: A bad signature reloads that one device's record at most this often.
_KEY_RELOAD_MIN_S = 2.0
INGRESS_MAILBOX = 64


@dataclass(frozen=True)
class RegistryChanged:
    """Tell: these devices were registered, rotated or revoked; reload their records."""

    device_ids: tuple[str, ...]


class Ingress(ServiceActor):
    def __init__(
        self, *, client: TrioMqttClient, topics: Topics, db: Database, writer: ActorRef,
        device_actors: DeviceActorFactory, commands: ActorRef | None = None,
    ) -> None:
        self._client = client
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

    async def started(self) -> None:
        await self._reload_registry()
        # Device actors exist from the start, so their offline timers run
        # even for a device that never speaks again after a hub restart. Their stored state
        # comes from one query for all of them, not one per actor.
        snapshots = await load_device_snapshots(self._db)
        for record in self._registry.values():
            await self._device_actors.ensure(record, snapshots.get(record.device_id, DeviceSnapshot()))
        await super().started()

    async def handle(self, message: object) -> None:
        if not isinstance(message, RegistryChanged):
            raise TypeError(f"Ingress takes RegistryChanged messages only, got {message!r}")
        await self._reload_devices(message.device_ids)

    async def serve(self) -> None:
        channel = self._client.messages
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
        parsed = self._topics.parse(message.topic)
        if parsed is None:
            await deliver(self._writer, reject(message, "bad_topic", message.topic))
            return
        device_id, channel = parsed
        if channel == "status":
            await self._route_status(message, device_id)
        elif channel == "up":
            await self._route_event(message, device_id)
        else:
            await deliver(self._writer, reject(message, "bad_topic", message.topic))

    async def _route_status(self, message: InboundMessage, device_id: str) -> None:
        if not message.payload:
            # An empty retained message clears the topic (e.g. decommissioning): nothing to judge.
            await deliver(self._writer, reject(message, "empty_status", device_id))
            return
        try:
            status = decode_status(message.payload)
        except WireError as exc:
            await deliver(self._writer, reject(message, exc.reason, exc.detail))
            return
        record = await self._lookup(device_id)
        if record is None:
            await deliver(self._writer, reject(message, "unknown_device", device_id))
            return
        if record.revoked:
            await deliver(self._writer, reject(message, "revoked_device", device_id))
            return
        ref = await self._device_actors.ensure(record)
        await deliver(ref, StatusUpdate(message, status))

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
        record = await self._lookup(event.device)
        if record is None:
            await deliver(self._writer, reject(message, "unknown_device", event.device))
            return
        if record.revoked:
            await deliver(self._writer, reject(message, "revoked_device", event.device))
            return
        problem = self._signature_problem(frame, record)
        if problem is not None and await self._reload_key(record.device_id):
            # Maybe rotated (or revoked) behind our back: judge again with the fresh record.
            record = self._registry.get(event.device)
            if record is None or record.revoked:
                await deliver(self._writer, reject(message, "revoked_device" if record else "unknown_device",
                                                   event.device))
                return
            problem = self._signature_problem(frame, record)
        if problem is not None:
            await deliver(self._writer, reject(message, *problem))
            return
        if isinstance(event, CommandAckEvent) and self._commands is not None:
            await deliver(self._commands, CommandAckReceived(message, event))
            return
        ref = await self._device_actors.ensure(record)
        await deliver(ref, DeviceEvent(message, event))

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
