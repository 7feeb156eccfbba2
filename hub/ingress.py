"""MQTT ingress: decode, authenticate and route every inbound message.

The real input is the MQTT client's bounded channel; while this actor waits
on a full device mailbox it does not read the channel, the channel fills,
and the client stops reading the socket. Every message ends in exactly one
commit (accepted or rejected) and is acknowledged only after that commit.
"""
from __future__ import annotations

import logging

import trio

from actors import ActorRef, ChildSpec, Supervisor
from hub.delivery import deliver
from hub.commits import reject
from hub.db import Database
from hub.db.state import DeviceRecord, load_devices
from hub.device_actor import DEVICE_MAILBOX, DeviceActor, DeviceEvent, StatusUpdate
from hub.mqtt import InboundMessage, TrioMqttClient
from hub.service import ServiceActor
from schemas import Topics, WireError, decode_frame, decode_status, verify

log = logging.getLogger("hub.ingress")

#: An unknown device id triggers a registry reload at most this often.
_REGISTRY_RELOAD_MIN_S = 2.0


class Ingress(ServiceActor):
    def __init__(
        self, *, client: TrioMqttClient, topics: Topics, db: Database, devices: Supervisor,
        writer: ActorRef, scheduler: ActorRef, offline_after_s: float,
    ) -> None:
        self._client = client
        self._topics = topics
        self._db = db
        self._devices = devices
        self._writer = writer
        self._scheduler = scheduler
        self._offline_after_s = offline_after_s
        self._registry: dict[str, DeviceRecord] = {}
        self._registry_loaded_at = -1e9

    async def started(self) -> None:
        await self._reload_registry()
        # Device actors exist from the start, so their offline timers run
        # even for a device that never speaks again after a hub restart.
        for record in self._registry.values():
            await self._device_ref(record)
        await super().started()

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
        ref = await self._device_ref(record)
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
        if frame.alg != record.alg:
            await deliver(self._writer, reject(message, "bad_signature", f"device uses {record.alg}, not {frame.alg}"))
            return
        try:
            verify(frame, record.key)
        except WireError as exc:
            await deliver(self._writer, reject(message, exc.reason, exc.detail))
            return
        ref = await self._device_ref(record)
        await deliver(ref, DeviceEvent(message, event))

    async def _lookup(self, device_id: str) -> DeviceRecord | None:
        record = self._registry.get(device_id)
        if record is None and trio.current_time() - self._registry_loaded_at >= _REGISTRY_RELOAD_MIN_S:
            await self._reload_registry()
            record = self._registry.get(device_id)
        return record

    async def _reload_registry(self) -> None:
        self._registry = {d.device_id: d for d in await load_devices(self._db)}
        self._registry_loaded_at = trio.current_time()

    async def _device_ref(self, record: DeviceRecord) -> ActorRef:
        ref = self._devices.lookup(record.device_id)
        if ref is None:
            ref = await self._devices.start_child(ChildSpec(
                id=record.device_id,
                start=lambda: DeviceActor(
                    record, db=self._db, writer=self._writer, scheduler=self._scheduler,
                    offline_after_s=self._offline_after_s,
                ),
                mailbox_size=DEVICE_MAILBOX,
            ))
        return ref
