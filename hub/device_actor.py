"""One actor per device: health, last seen, the heartbeat timer, and routing of its check-ins.

Because every message of a device passes through its one actor in order,
two messages a few milliseconds apart can never race each other.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import trio

from actors import Actor, ActorRef
from hub.bus import DEVICES_TOPIC
from hub.delivery import deliver
from hub.commits import accept, reject, utc_from_ms
from hub.db import Database
from hub.db.state import DeviceRecord, load_device_health
from hub.domain.health import DeviceHealth
from hub.mqtt import InboundMessage
from hub.records import Commit, DeviceHealthRow, SensorRow, digest_key, internal_key
from hub.scheduler import ResolveSession
from hub.session_actor import Scan
from schemas import (
    BiometricMatchEvent, DeviceStatus, Event, HeartbeatEvent, QrScanEvent, SensorReadingEvent,
)

log = logging.getLogger("hub.device")

#: Mailbox: bounded, Overflow.BLOCK. The ingress waits when it is full, so
#: one flooding device slows only the ingress, and nothing is dropped.
DEVICE_MAILBOX = 256
#: A device whose clock runs this far ahead of the hub's is not believed.
MAX_FUTURE_SKEW_S = 120.0


@dataclass(frozen=True)
class DeviceEvent:
    message: InboundMessage
    event: Event


@dataclass(frozen=True)
class StatusUpdate:
    message: InboundMessage
    status: DeviceStatus


@dataclass(frozen=True)
class GetHealth:
    """Ask: the current :class:`DeviceHealth`."""


@dataclass(frozen=True)
class _HeartbeatDeadline:
    pass


class DeviceActor(Actor):
    def __init__(
        self, device: DeviceRecord, *, db: Database, writer: ActorRef, scheduler: ActorRef,
        offline_after_s: float,
    ) -> None:
        self.device = device
        self._db = db
        self._writer = writer
        self._scheduler = scheduler
        self._offline_after_s = offline_after_s
        self._health = DeviceHealth(device.device_id)
        # One timer at a time; proof of life only moves the deadline, and the
        # timer re-arms for the remainder when it fires early. No per-event task churn.
        self._deadline = 0.0
        self._timer = None

    async def started(self) -> None:
        record = (await load_device_health(self._db, [self.device.device_id])).get(self.device.device_id)
        if record is not None:
            self._health = DeviceHealth(
                record.device_id, record.online, record.last_seen, record.last_change, record.reason,
                record.firmware, record.uptime_s, record.outbox_depth,
            )
            if record.online:
                self._extend_deadline()

    async def handle(self, message):
        if isinstance(message, GetHealth):
            return self._health
        try:
            if isinstance(message, DeviceEvent):
                await self._on_event(message)
            elif isinstance(message, StatusUpdate):
                await self._on_status(message)
            elif isinstance(message, _HeartbeatDeadline):
                await self._on_deadline()
        except Exception as exc:
            if isinstance(message, (DeviceEvent, StatusUpdate)):
                event = message.event if isinstance(message, DeviceEvent) else None
                await deliver(self._writer, reject(
                    message.message, "internal_error", f"{type(exc).__name__}: {exc}", event=event))
            raise
        return None

    async def _on_event(self, item: DeviceEvent) -> None:
        event, message = item.event, item.message
        if event.ts / 1000 > message.received_at + MAX_FUTURE_SKEW_S:
            await deliver(self._writer, reject(
                message, "clock_skew", f"device time is {event.ts / 1000 - message.received_at:.0f}s ahead",
                event=event))
            return
        now = datetime.now(timezone.utc)
        before = self._health
        self._extend_deadline()
        if isinstance(event, HeartbeatEvent):
            self._health = self._health.on_heartbeat(event.body, now)
            await deliver(self._writer, accept(event, message, (self._health_row(),), live=self._live()))
            return
        self._health = self._health.on_event(now)
        # Last-seen is kept in memory; the row is written on a state change or a heartbeat.
        extra = (self._health_row(),) if self._health.online != before.online else ()
        live = self._live() if extra else ()
        if isinstance(event, SensorReadingEvent):
            body = event.body
            row = SensorRow(
                uuid.UUID(bytes=event.id), event.device, body.metric, body.value, body.unit, utc_from_ms(event.ts))
            await deliver(self._writer, accept(event, message, (row, *extra), live=live))
        elif isinstance(event, (QrScanEvent, BiometricMatchEvent)):
            if extra:
                await deliver(self._writer, Commit(internal_key(), extra, live=live))
            await self._route_scan(item)
        else:  # pragma: no cover - the decoder admits no other kind
            await deliver(self._writer, reject(message, "unsupported_kind", event.kind, event=event))

    async def _route_scan(self, item: DeviceEvent) -> None:
        at = utc_from_ms(item.event.ts)
        log.debug("device %s: scan at %s", self.device.device_id, at)
        route = await self._scheduler.ask(ResolveSession(self.device.room_id, at), timeout=10)
        log.debug("device %s: scan routed to %s", self.device.device_id, route)
        if route is None:
            await deliver(self._writer, reject(
                item.message, "no_live_session", f"no session in {self.device.room_id} at {at.isoformat()}",
                event=item.event))
            return
        await deliver(route.ref, Scan(item.message, item.event))

    async def _on_status(self, item: StatusUpdate) -> None:
        if item.status.ts / 1000 > item.message.received_at + MAX_FUTURE_SKEW_S:
            # Statuses only move forward in time: a future one would make every real one "older".
            await deliver(self._writer, reject(
                item.message, "clock_skew",
                f"status time is {item.status.ts / 1000 - item.message.received_at:.0f}s ahead"))
            return
        now = datetime.now(timezone.utc)
        before = self._health
        self._health = self._health.on_status(item.status, now)
        if self._health.online:
            self._extend_deadline()
        changed = self._health != before
        await deliver(self._writer, Commit(
            digest_key(item.message.topic, item.message.payload),
            (self._health_row(),) if changed else (),
            item.message,
            self._live() if changed else (),
        ))

    async def _on_deadline(self) -> None:
        self._timer = None
        remaining = self._deadline - trio.current_time()
        if remaining > 0:
            self._timer = self.send_after(remaining, _HeartbeatDeadline())
            return
        before = self._health
        self._health = self._health.on_heartbeat_timeout(datetime.now(timezone.utc))
        if self._health != before:
            log.info("device %s offline: heartbeat timeout", self.device.device_id)
            await deliver(self._writer, Commit(internal_key(), (self._health_row(),), live=self._live()))

    def _extend_deadline(self) -> None:
        self._deadline = trio.current_time() + self._offline_after_s
        if self._timer is None:
            self._timer = self.send_after(self._offline_after_s, _HeartbeatDeadline())

    def _health_row(self) -> DeviceHealthRow:
        h = self._health
        return DeviceHealthRow(
            h.device_id, h.online, h.last_seen, h.last_change or datetime.now(timezone.utc), h.reason,
            h.firmware, h.uptime_s, h.outbox_depth,
        )

    def _live(self) -> tuple:
        h = self._health
        return ((DEVICES_TOPIC, {
            "type": "device", "device_id": h.device_id, "room_id": self.device.room_id, "online": h.online,
            "last_seen": h.last_seen.isoformat() if h.last_seen else None, "firmware": h.firmware,
            "outbox_depth": h.outbox_depth, "reason": h.reason,
        }),)

