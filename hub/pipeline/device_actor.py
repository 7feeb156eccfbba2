"""One actor per device: health, the heartbeat timer, its alarms and thresholds, routing of its check-ins.

Because every message of a device passes through its one actor in order,
two messages a few milliseconds apart can never race each other: two
readings over a threshold cannot raise two alarms (hub/pipeline/device_alarms.py).

State, rebuilt on start from a :class:`~hub.db.device_health.DeviceSnapshot` (handed
in by the ingress's one boot query, or loaded by the actor itself after a
restart): :class:`DeviceHealth`, the active alarms, each threshold rule's
evaluation state. Every change is persisted through the writer in the same
commit as the message that caused it; alarm acknowledgements and manual
clears (asked by the web, :class:`~hub.domain.alarms.AckAlarm` /
:class:`~hub.domain.alarms.ClearAlarm`) wait for their commit before replying.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

import trio

from actors import Actor, ActorRef, ChildExists, ChildSpec, Supervisor, Timer
from actors.delivery import deliver
from hub.core.bus import DEVICES_TOPIC, LiveUpdate, live_device
from hub.core.config import EVENT_MAX_AGE_S
from hub.core.records import (
    AlarmRow,
    Commit,
    DeviceHealthHistoryRow,
    SensorRow,
    digest_key,
    internal_key,
)
from hub.db import Database
from hub.db.alarms import get_alarm
from hub.db.checkin import device_clock_samples
from hub.db.device_health import DeviceSnapshot, load_device_snapshots, next_alarm_id
from hub.db.device_registry import DeviceRecord, load_devices
from hub.domain.alarms import AckAlarm, Alarm, AlarmChange, AlarmResult, AlarmTransitionError, ClearAlarm
from hub.domain.anomaly import ANOMALY_ALARM, AnomalyReport
from hub.domain.checkin import MAX_CLOCK_SKEW
from hub.domain.device_health import (
    SKEW_EVIDENCE_WINDOW,
    ClockEvidence,
    DeviceHealth,
    history_change,
    skew_sample_ms,
)
from hub.domain.thresholds import RuleBook
from hub.mqtt import InboundMessage
from hub.pipeline.checkin_routing import resolve_elsewhere
from hub.pipeline.commits import accept, reject, signed_at_or_none, utc_from_ms, utc_from_s
from hub.pipeline.device_alarms import (
    DeviceAlarms,
    RateLimitChanged,
    RulesChanged,
    ThresholdBook,
    alarm_live,
    alarm_row,
    with_id,
)
from hub.pipeline.quarantine import QuarantineChanged
from hub.pipeline.scheduler import resolve_session
from hub.pipeline.session_actor import Scan
from hub.pipeline.writer import is_transient
from schemas import (
    BiometricMatchEvent,
    DeviceStatus,
    Event,
    HeartbeatEvent,
    QrScanEvent,
    SensorReadingEvent,
)

log = logging.getLogger("hub.device")

#: Mailbox: bounded, Overflow.BLOCK. The ingress waits when it is full, so
#: one flooding device slows only the ingress, and nothing is dropped.
DEVICE_MAILBOX = 256
#: A device whose clock runs this far ahead of the hub's is not believed.
MAX_FUTURE_SKEW_S = 120.0
#: An alarm acknowledgement or clear waits at most this long for its commit before replying.
ALARM_COMMIT_WAIT_S = 10.0
#: The web's asks of a device actor (queue + commit wait) give up after this long.
WEB_ASK_TIMEOUT_S = ALARM_COMMIT_WAIT_S + 5.0


@dataclass(frozen=True)
class DeviceEvent:
    message: InboundMessage
    event: Event


@dataclass(frozen=True)
class StatusUpdate:
    """Tell: a status or Last Will of this device whose signature the ingress verified."""

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
        offline_after_s: float, thresholds: ThresholdBook | None = None, snapshot: DeviceSnapshot | None = None,
    ) -> None:
        self.device = device
        self._db = db
        self._writer = writer
        self._scheduler = scheduler
        self._offline_after_s = offline_after_s
        self._thresholds = thresholds
        #: Preloaded state for the first start; None: load it in started().
        self._snapshot = snapshot
        self._health = DeviceHealth(device.device_id)
        self._alarms = DeviceAlarms(device.device_id, device.room_id, RuleBook(), DeviceSnapshot())
        # The clock offset a late check-in is judged by, from this device's heartbeats: kept here,
        # where every heartbeat passes, so no check-in queries it (one query per actor life at most).
        self._clock = ClockEvidence()
        # One timer at a time; proof of life only moves the deadline, and the
        # timer re-arms for the remainder when it fires early. No per-event task churn.
        self._deadline = 0.0
        self._timer: Timer | None = None

    async def started(self) -> None:
        snapshot = self._snapshot
        if snapshot is None:
            snapshot = (await load_device_snapshots(self._db, [self.device.device_id])).get(
                self.device.device_id, DeviceSnapshot())
        self._snapshot = None
        if snapshot.health is not None:
            self._health = snapshot.health  # persisted as the domain holds it: nothing to map
            if self._health.online:
                self._extend_deadline()
        book = self._thresholds.current if self._thresholds is not None else RuleBook()
        self._alarms = DeviceAlarms(self.device.device_id, self.device.room_id, book, snapshot)

    async def handle(self, message):
        if isinstance(message, GetHealth):
            return self._health
        if isinstance(message, (AckAlarm, ClearAlarm)):
            return await self._on_alarm_request(message)
        if isinstance(message, AnomalyReport):
            return await self._on_anomaly(message)
        try:
            if isinstance(message, DeviceEvent):
                await self._on_event(message)
            elif isinstance(message, StatusUpdate):
                await self._on_status(message)
            elif isinstance(message, _HeartbeatDeadline):
                await self._on_deadline()
            elif isinstance(message, RulesChanged):
                await self._on_rules(message)
            elif isinstance(message, RateLimitChanged):
                await self._on_rate_limit(message)
            elif isinstance(message, QuarantineChanged):
                await self._on_quarantine(message)
        except Exception as exc:
            if isinstance(message, (DeviceEvent, StatusUpdate)):
                event = message.event if isinstance(message, DeviceEvent) else None
                await deliver(self._writer, reject(
                    message.message, "internal_error", f"{type(exc).__name__}: {exc}", event=event))
            elif isinstance(message, RateLimitChanged) and message.refused is not None:
                await deliver(self._writer, reject(
                    message.refused[0], "internal_error", f"{type(exc).__name__}: {exc}", event=message.refused[1]))
            raise
        return None

    async def _on_event(self, item: DeviceEvent) -> None:
        event, message = item.event, item.message
        if event.ts / 1000 > message.received_at + MAX_FUTURE_SKEW_S:
            await deliver(self._writer, reject(
                message, "clock_skew", f"device time is {event.ts / 1000 - message.received_at:.0f}s ahead",
                event=event))
            return
        if message.received_at - event.ts / 1000 > EVENT_MAX_AGE_S:
            # Older than any redelivery the dedup ledger still remembers (hub/db/retention.py):
            # applying it could apply it twice.
            await deliver(self._writer, reject(
                message, "expired", f"signed {message.received_at - event.ts / 1000:.0f}s ago, more than"
                f" the {EVENT_MAX_AGE_S}s the hub accepts", event=event))
            return
        now = datetime.now(timezone.utc)
        before = self._health
        self._extend_deadline()
        if isinstance(event, HeartbeatEvent):
            skew = skew_sample_ms(event.ts, message.received_at, event.body.outbox_depth)
            self._health = self._health.on_heartbeat(event.body, now, skew)
            if skew is not None:
                received = utc_from_s(message.received_at)
                self._clock.add(received, received - utc_from_ms(event.ts))
            effects, live = await self._health_effects(before, now, write=True)
            await deliver(self._writer, accept(event, message, effects, live=live))
            return
        self._health = self._health.on_event(now)
        # Last-seen is kept in memory; the row is written on a state change or a heartbeat.
        extra, live = await self._health_effects(before, now, write=self._health.online != before.online)
        if isinstance(event, SensorReadingEvent):
            body = event.body
            at = utc_from_ms(event.ts)
            row = SensorRow(uuid.UUID(bytes=event.id), event.device, body.metric, body.value, body.unit, at)
            alarm_effects: tuple = ()
            if self._alarms.has_rules(body.metric):  # the common case ends here: no rule, no work
                alarm_effects, alarm_updates = await self._threshold_effects(body.metric, body.value, body.unit, at)
                live = (*live, *alarm_updates)
            await deliver(self._writer, accept(event, message, (row, *extra, *alarm_effects), live=live))
        elif isinstance(event, (QrScanEvent, BiometricMatchEvent)):
            if extra:
                await deliver(self._writer, Commit(internal_key(), extra, live=live))
            await self._route_scan(message, event)
        else:  # pragma: no cover - the decoder admits no other kind
            await deliver(self._writer, reject(message, "unsupported_kind", event.kind, event=event))

    async def _route_scan(self, message: InboundMessage, event: QrScanEvent | BiometricMatchEvent) -> None:
        at = utc_from_ms(event.ts)
        log.debug("device %s: scan at %s", self.device.device_id, at)
        route = await resolve_session(self._scheduler, self.device.room_id, at)
        from_room = None
        if route is None:  # an early scan, or a student of another room's session (hub/pipeline/checkin_routing.py)
            route, from_room = await resolve_elsewhere(self._db, self._scheduler, self.device.room_id, event, at)
        log.debug("device %s: scan routed to %s", self.device.device_id, route)
        if route is None:
            await deliver(self._writer, reject(
                message, "no_live_session", f"no session in {self.device.room_id} at {at.isoformat()}",
                event=event))
            return
        await deliver(route.ref, Scan(message, event, from_room, await self._clock_offset(at, message)))

    async def _clock_offset(self, at: datetime, message: InboundMessage) -> timedelta | None:
        """The device's clock offset for a scan stamped ``at``: only a late scan needs it (buffered
        offline, or a clock running behind: hub.domain.checkin.clock_skew_flag tells which)."""
        received = utc_from_s(message.received_at)
        if received - at <= MAX_CLOCK_SKEW:
            return None
        if not self._clock.loaded:
            self._clock.merge_stored(await device_clock_samples(
                self._db, self.device.device_id, received - SKEW_EVIDENCE_WINDOW))
        return self._clock.offset_at(received)

    async def _on_status(self, item: StatusUpdate) -> None:
        """A verified status or Will: applied, kept as a duplicate, or refused by its order (hub.domain.device_health)."""
        status, message = item.status, item.message
        verdict = self._health.judge_status(status, int(message.received_at * 1000))
        if verdict == "ahead":
            await deliver(self._writer, reject(
                message, "clock_skew", f"status time is {status.ts / 1000 - message.received_at:.0f}s ahead"))
            return
        if verdict == "older":
            await deliver(self._writer, reject(
                message, "stale_status",
                f"{status.state} of ts {status.ts}, older than the status applied (ts {self._health.status_ts})"))
            return
        now = datetime.now(timezone.utc)
        before = self._health
        self._health = self._health.on_status(status, now)
        if verdict == "newer" and self._health.online:
            # Only a new status is proof of life: the same one seen again may be anybody's replay.
            self._extend_deadline()
        effects, live = await self._health_effects(before, now, write=self._health != before)
        await deliver(self._writer, Commit(digest_key(message.topic, message.payload), effects, message, live,
                                           signed_at=signed_at_or_none(status.ts)))

    async def _on_deadline(self) -> None:
        self._timer = None
        remaining = self._deadline - trio.current_time()
        if remaining > 0:
            self._timer = self.send_after(remaining, _HeartbeatDeadline())
            return
        before = self._health
        now = datetime.now(timezone.utc)
        self._health = self._health.on_heartbeat_timeout(now)
        if self._health != before:
            log.info("device %s offline: heartbeat timeout", self.device.device_id)
            effects, live = await self._health_effects(before, now, write=True)
            await deliver(self._writer, Commit(internal_key(), effects, live=live))

    def _extend_deadline(self) -> None:
        self._deadline = trio.current_time() + self._offline_after_s
        if self._timer is None:
            self._timer = self.send_after(self._offline_after_s, _HeartbeatDeadline())

    # --- health, history and the offline alarm --------------------------------------------

    async def _health_effects(
        self, before: DeviceHealth, now: datetime, *, write: bool,
    ) -> tuple[tuple, tuple[LiveUpdate, ...]]:
        """The records and live updates of a health step from ``before`` (nothing unless ``write``)."""
        if not write:
            return (), ()
        health = self._health
        row = self._health_row()
        effects: list = [row]
        live: list[LiveUpdate] = [self._live_health()]
        change = history_change(before, health)
        if change is not None:
            effects.append(DeviceHealthHistoryRow(change, row, now))
        if health.online != before.online or (not health.online and health.reason != before.reason):
            alarm = self._alarms.on_online(health.online, health.reason, now)
            if alarm is not None:
                record, update = await self._settle(alarm)
                effects.append(record)
                live.append(update)
        return tuple(effects), tuple(live)

    def _health_row(self) -> DeviceHealth:
        """The health to persist: the state itself (immutable, so no copy), unless it has never
        changed state (``device_health.last_change`` is NOT NULL; a status that only moved ``status_ts``)."""
        h = self._health
        return h if h.last_change is not None else replace(h, last_change=datetime.now(timezone.utc))

    def _live_health(self) -> LiveUpdate:
        return DEVICES_TOPIC, live_device(self._health, self.device.room_id)

    # --- thresholds and alarms ---------------------------------------------------------------

    async def _threshold_effects(
        self, metric: str, value: float, unit: str, at: datetime,
    ) -> tuple[tuple, tuple[LiveUpdate, ...]]:
        states, changes = self._alarms.on_reading(metric, value, unit, at)
        effects: list = list(states)
        live: list[LiveUpdate] = []
        for change in changes:
            record, update = await self._settle(change)
            effects.append(record)
            live.append(update)
        return tuple(effects), tuple(live)

    async def _settle(self, change: AlarmChange) -> tuple[AlarmRow, LiveUpdate]:
        """Give a raised alarm its id, adopt the change, and return its record and live update."""
        alarm = change.alarm
        if change.kind == "raised":
            alarm = with_id(alarm, await self._next_alarm_id())
        self._alarms.apply(alarm)
        log.info("device %s: alarm %d %s %s (%s): %s", self.device.device_id, alarm.id, alarm.type,
                 change.kind, alarm.severity, alarm.message)
        return alarm_row(alarm), alarm_live(alarm)

    async def _next_alarm_id(self) -> int:
        # While PostgreSQL is away this waits, as the writer does: backpressure, never a lost reading.
        delay = 0.05
        while True:
            try:
                return await next_alarm_id(self._db)
            except Exception as exc:  # noqa: BLE001 - classified just below
                if not is_transient(exc):
                    raise
                log.warning("device %s: no alarm id (%s); retrying in %.2fs", self.device.device_id, exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _on_rate_limit(self, change: RateLimitChanged) -> None:
        """Raise or clear the ``rate_limited`` alarm; commit the refused event (if any) with it.

        The quarantine keeper was told of a trip by the ingress already (it does
        not wait for this message, queued behind the device's flood)."""
        step = self._alarms.on_rate_limit(change.tripped, datetime.now(timezone.utc), change.detail)
        effects: tuple = ()
        live: tuple[LiveUpdate, ...] = ()
        if step is not None:
            record, update = await self._settle(step)
            effects, live = (record,), (update,)
        if change.refused is not None:
            message, event = change.refused
            await deliver(self._writer, reject(message, "rate_limited", change.detail, event=event,
                                               extra=effects, live=live))
        elif effects:
            await deliver(self._writer, Commit(internal_key(), effects, live=live))

    async def _on_quarantine(self, change: QuarantineChanged) -> None:
        """Say the broker quarantine's start or end on the ``rate_limited`` alarm (and live)."""
        step = self._alarms.on_quarantine(change.until, change.by, datetime.now(timezone.utc))
        if step is not None:
            record, update = await self._settle(step)
            await deliver(self._writer, Commit(internal_key(), (record,), live=(update,)))

    async def _on_rules(self, message: RulesChanged) -> None:
        now = datetime.now(timezone.utc)
        effects: list = []
        live: list[LiveUpdate] = []
        for change in self._alarms.on_rules(message.book, now):
            record, update = await self._settle(change)
            effects.append(record)
            live.append(update)
        if effects:
            await deliver(self._writer, Commit(internal_key(), tuple(effects), live=tuple(live)))

    async def _on_anomaly(self, report: AnomalyReport) -> Alarm | None:
        """Step the ``telemetry_anomaly`` alarm for a scored hour; reply the alarm once committed (None: no
        alarm, or its commit failed or took longer than :data:`ALARM_COMMIT_WAIT_S`)."""
        step = self._alarms.on_anomaly(report)
        if step is None:
            return self._alarms.active.get(ANOMALY_ALARM)
        record, update = await self._settle(step)
        stored = await self._commit_and_wait((record,), (update,))
        return self._alarms.find(record.id) if stored else None

    async def _commit_and_wait(self, effects: tuple, live: tuple[LiveUpdate, ...]) -> bool | None:
        """Commit ``effects`` through the writer and wait at most :data:`ALARM_COMMIT_WAIT_S` for it:
        True stored, False failed, None no answer in time."""
        committed = trio.Event()
        outcome: list[bool] = []

        def on_done(ok: bool) -> None:
            outcome.append(ok)
            committed.set()

        await deliver(self._writer, Commit(internal_key(), effects, live=live, on_done=on_done))
        with trio.move_on_after(ALARM_COMMIT_WAIT_S):
            await committed.wait()
        return outcome[0] if outcome else None

    async def _on_alarm_request(self, request: AckAlarm | ClearAlarm) -> AlarmResult:
        alarm = self._alarms.find(request.alarm_id)
        if alarm is None:  # cleared long ago (or before a restart): committed, so the table is current
            stored = await get_alarm(self._db, request.alarm_id)
            if stored is not None and stored.alarm.device_id == self.device.device_id:
                alarm = stored.alarm
        if alarm is None:
            return AlarmResult(None, "not_found", f"device {self.device.device_id} has no alarm {request.alarm_id}")
        extra: tuple = ()
        try:
            if isinstance(request, AckAlarm):
                after = alarm.acknowledge(request.user_id, request.at)
            else:
                after = alarm.clear(request.user_id, request.at, f"{alarm.message}; cleared by {request.user_id}")
                extra = tuple(self._alarms.reset_rules(alarm.type, request.at))
        except AlarmTransitionError as exc:
            return AlarmResult(alarm, exc.code, exc.message)
        self._alarms.apply(after)
        if await self._commit_and_wait((alarm_row(after), *extra), (alarm_live(after),)) is False:
            log.error("device %s: alarm %d %s was not stored", self.device.device_id, after.id, after.state)
        return AlarmResult(after)


@dataclass(frozen=True)
class DeviceActorFactory:
    """Starts device actors: what they all share, built once by the composition root (hub/app/supervision.py).

    The ingress (a device's first message, or the boot) and the web's
    ``ask_device`` start device actors through the same factory. Immutable;
    its methods may be called from any trio task of the hub's run.
    """

    devices: Supervisor
    db: Database
    writer: ActorRef
    scheduler: ActorRef
    offline_after_s: float
    thresholds: ThresholdBook | None = None

    def spec(self, record: DeviceRecord, snapshot: DeviceSnapshot | None = None) -> ChildSpec:
        """The supervisor spec of a device's actor; ``snapshot`` serves its first start only (a restart reloads)."""
        preload = [snapshot] if snapshot is not None else []

        def start() -> DeviceActor:
            return DeviceActor(record, db=self.db, writer=self.writer, scheduler=self.scheduler,
                               offline_after_s=self.offline_after_s, thresholds=self.thresholds,
                               snapshot=preload.pop() if preload else None)

        return ChildSpec(id=record.device_id, start=start, mailbox_size=DEVICE_MAILBOX)

    def running(self, device_id: str) -> ActorRef | None:
        """The ref of the device's running actor, or None."""
        found = self.devices.lookup(device_id)
        return found if isinstance(found, ActorRef) else None

    async def ensure(self, record: DeviceRecord, snapshot: DeviceSnapshot | None = None) -> ActorRef:
        """The running actor of ``record``'s device, started if there is none (safe against a racing start)."""
        ref = self.running(record.device_id)
        if ref is not None:  # the per-message path: no spec built
            return ref
        started: ActorRef | Supervisor | None
        try:
            started = await self.devices.start_child(self.spec(record, snapshot))
        except ChildExists:  # started meanwhile by another task (the ingress, or a web request)
            started = self.devices.lookup(record.device_id)
        if not isinstance(started, ActorRef):
            raise LookupError(f"device {record.device_id!r} has no actor")
        return started


def device_asker(device_actors: Callable[[], DeviceActorFactory]) -> Callable[[str, object], Awaitable[Any]]:
    """``WebContext.ask_device``: ask a device's actor, starting it if it is not running.

    Raises ``LookupError`` for an unknown device, ``actors.AskTimeout`` after
    :data:`WEB_ASK_TIMEOUT_S`. Callable from any trio task of the hub's run.
    """

    async def ask_device(device_id: str, message: object) -> Any:
        factory = device_actors()
        ref = factory.running(device_id)
        if ref is None:
            records = await load_devices(factory.db, [device_id])
            if not records:
                raise LookupError(f"no device {device_id!r}")
            ref = await factory.ensure(records[0])
        return await ref.ask(message, timeout=WEB_ASK_TIMEOUT_S)

    return ask_device
