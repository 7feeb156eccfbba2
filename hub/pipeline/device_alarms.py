"""The alarm and threshold state of one device actor, and the campus's current threshold rules.

:class:`DeviceAlarms` is owned by exactly one :class:`~hub.pipeline.device_actor.DeviceActor`
(never shared): its active alarms by type, recently cleared ones (so an
acknowledgement right after a clear needs no query), and each threshold
rule's evaluation state. It turns readings and online/offline changes into
:class:`~hub.domain.alarms.AlarmChange` steps and persisted records, using
the pure rules of hub/domain. Because one actor handles every message of a
device in order, two racing readings can never raise two alarms.

:class:`ThresholdBook` holds the current :class:`~hub.domain.thresholds.RuleBook`,
an immutable snapshot. Only :func:`thresholds_changed` (the web's callback,
after a rule is created, changed or deleted) replaces it; device actors read
it once when they start and are then told about changes with
:class:`RulesChanged`, so no actor queries rules per reading or at start.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime

from actors import ActorRef, Supervisor
from actors.delivery import deliver
from hub.core.bus import DEVICES_TOPIC, LiveAlarm, LiveUpdate
from hub.core.records import AlarmRow, ThresholdStateRow
from hub.db import Database
from hub.db.device_health import DeviceSnapshot
from hub.db.thresholds import load_rule_set
from hub.domain.alarms import (
    OFFLINE_ALARM,
    RATE_LIMIT_ALARM,
    Alarm,
    AlarmChange,
    offline_change,
    rate_limit_change,
)
from hub.domain.anomaly import ANOMALY_ALARM, AnomalyReport, anomaly_change
from hub.domain.thresholds import RuleBook, RuleState, evaluate, reconcile
from hub.mqtt import InboundMessage
from schemas import Event

log = logging.getLogger("hub.alarms")

#: Cleared alarms a device actor remembers (for an acknowledgement soon after the clear).
RECENT_CLEARED = 32
#: Alarm types no threshold rule owns: a change of the rules never clears them.
_RULELESS_TYPES = frozenset({OFFLINE_ALARM, RATE_LIMIT_ALARM, ANOMALY_ALARM})


@dataclass(frozen=True)
class RateLimitChanged:
    """Tell a device actor: its events tripped the ingress's per-device limit, or are within it again.

    ``tripped``: the device's token bucket ran dry; ``refused`` is the first
    event refused, which the actor commits as a ``rate_limited`` rejection
    together with the ``rate_limited`` alarm (so the message is acknowledged
    only after both are stored). Later refusals of the same episode go to the
    writer directly. Not ``tripped``: the bucket filled again (the device kept
    within its rate for ``burst / rate`` seconds); the alarm clears.
    """

    tripped: bool
    detail: str
    refused: tuple[InboundMessage, Event] | None = None


@dataclass(frozen=True)
class RulesChanged:
    """Tell a device actor: the campus's threshold rules are now ``book``."""

    book: RuleBook


def alarm_row(alarm: Alarm) -> AlarmRow:
    return AlarmRow(
        alarm.id, alarm.device_id, alarm.room_id, alarm.type, alarm.severity, alarm.state, alarm.raised_at,
        alarm.acked_at, alarm.acked_by, alarm.cleared_at, alarm.cleared_by, alarm.value, alarm.message,
        dict(alarm.details), alarm.updated_at or alarm.raised_at,
    )


def alarm_live(alarm: Alarm) -> LiveUpdate:
    """The alarm's live message on DEVICES_TOPIC (published after the commit)."""
    return (DEVICES_TOPIC, LiveAlarm(
        alarm.id, alarm.device_id, alarm.room_id, alarm.type, alarm.severity, alarm.state,
        alarm.raised_at.isoformat(), alarm.cleared_at.isoformat() if alarm.cleared_at else None,
        alarm.acked_by, alarm.value, alarm.message,
    ))


class ThresholdBook:
    """The current rule book. Replaced whole (never mutated) by :meth:`reload`; any task may read ``current``."""

    def __init__(self, book: RuleBook | None = None) -> None:
        self.current = book or RuleBook()

    async def reload(self, db: Database) -> RuleBook:
        """Load every rule and room type (one round trip) and make it current."""
        self.current = (await load_rule_set(db)).book()
        return self.current


async def thresholds_changed(db: Database, book: ThresholdBook, devices: Supervisor) -> None:
    """Reload the rules and tell every running device actor. Called by the web after a rule write.

    Blocks the caller while it tells each actor (waiting only on a full mailbox).
    """
    current = await book.reload(db)
    for device_id in devices.child_ids():
        ref = devices.lookup(device_id)
        if isinstance(ref, ActorRef):  # None: stopped meanwhile (device children are actors, never supervisors)
            try:
                await deliver(ref, RulesChanged(current))
            except Exception:  # noqa: BLE001 - an actor that stopped meanwhile has nothing to update
                log.debug("device %s stopped before the rules reached it", device_id)


class DeviceAlarms:
    """Alarms and rule states of one device. Owned by its device actor; not thread- or task-shared."""

    def __init__(self, device_id: str, room_id: str | None, book: RuleBook, snapshot: DeviceSnapshot) -> None:
        self.device_id = device_id
        self.room_id = room_id
        self.active: dict[str, Alarm] = {}
        self._recent: OrderedDict[int, Alarm] = OrderedDict()
        for alarm in snapshot.alarms:
            self.active[alarm.type] = alarm
        self._states: dict[int, RuleState] = {
            s.rule_id: RuleState(s.pending_since, s.active, s.last_ts) for s in snapshot.threshold_states
        }
        self._rules = book.for_room(room_id)

    # --- lookups -----------------------------------------------------------------------

    def find(self, alarm_id: int) -> Alarm | None:
        for alarm in self.active.values():
            if alarm.id == alarm_id:
                return alarm
        return self._recent.get(alarm_id)

    def has_rules(self, metric: str) -> bool:
        return metric in self._rules

    # --- decisions (the caller assigns ids to raised alarms, then calls apply) --------------

    def on_reading(
        self, metric: str, value: float, unit: str, at: datetime,
    ) -> tuple[list[ThresholdStateRow], list[AlarmChange]]:
        rules = self._rules.get(metric)
        if not rules:
            return [], []
        changed, verdicts = evaluate(rules, self._states, value, unit, at)
        rows = []
        for rule_id, state in changed.items():
            before = self._states.get(rule_id) or RuleState()
            self._states[rule_id] = state
            if state.persisted_part() != before.persisted_part():
                rows.append(ThresholdStateRow(self.device_id, rule_id, state.pending_since, state.active, at))
        changes = [c for v in verdicts if (c := reconcile(
            self.active.get(v.alarm_type), v, device_id=self.device_id, room_id=self.room_id)) is not None]
        return rows, changes

    def on_online(self, online: bool, reason: str, at: datetime) -> AlarmChange | None:
        return offline_change(self.active.get(OFFLINE_ALARM), online=online, reason=reason, at=at,
                              device_id=self.device_id, room_id=self.room_id)

    def on_rate_limit(self, tripped: bool, at: datetime, detail: str) -> AlarmChange | None:
        """The ingress's token bucket of this device ran dry (``tripped``) or filled again."""
        return rate_limit_change(self.active.get(RATE_LIMIT_ALARM), tripped=tripped, at=at,
                                 device_id=self.device_id, room_id=self.room_id, detail=detail)

    def on_anomaly(self, report: AnomalyReport) -> AlarmChange | None:
        """A scored hour of this device's telemetry (hub/services/anomaly.py): raise, update or clear the
        ``telemetry_anomaly`` alarm (hub.domain.anomaly.anomaly_change)."""
        return anomaly_change(self.active.get(ANOMALY_ALARM), report, device_id=self.device_id,
                              room_id=self.room_id)

    def on_quarantine(self, until: datetime | None, by: str, at: datetime) -> AlarmChange | None:
        """The device's broker quarantine began (``until``) or ended (None): said on its ``rate_limited``
        alarm, if that is still active (one cleared already needs no word of a later release)."""
        alarm = self.active.get(RATE_LIMIT_ALARM)
        if alarm is None:
            return None
        base = alarm.details.get("limit_message", alarm.message)
        if until is not None:
            message = f"{base}; quarantined at the broker until {until.isoformat(timespec='seconds')}"
        else:
            message = f"{base}; released from its broker quarantine ({'cool-down over' if by == 'system' else by})"
        details = {**alarm.details, "limit_message": base,
                   "quarantined_until": until.isoformat() if until is not None else None}
        return AlarmChange("updated", replace(alarm, message=message, details=details, updated_at=at))

    def on_rules(self, book: RuleBook, at: datetime) -> list[AlarmChange]:
        """Adopt new rules; alarm types left without any rule clear, states of removed rules go."""
        self._rules = book.for_room(self.room_id)
        live = {rule.id: rule for rules in self._rules.values() for rule in rules}
        self._states = {rule_id: s for rule_id, s in self._states.items() if rule_id in live}
        types = {rule.alarm_type for rule in live.values()}
        return [
            AlarmChange("cleared", alarm.clear("system", at, f"{alarm.message}; its threshold rule was removed"))
            for alarm_type, alarm in self.active.items()
            if alarm_type not in _RULELESS_TYPES and alarm_type not in types
        ]

    def reset_rules(self, alarm_type: str, at: datetime) -> list[ThresholdStateRow]:
        """After a manual clear: the condition must last the full duration again before a new alarm."""
        rows = []
        for rules in self._rules.values():
            for rule in rules:
                if rule.alarm_type == alarm_type and self._states.get(rule.id, RuleState()).persisted_part() != (None, False):
                    self._states[rule.id] = RuleState(None, False, self._states[rule.id].last_ts)
                    rows.append(ThresholdStateRow(self.device_id, rule.id, None, False, at))
        return rows

    def apply(self, alarm: Alarm) -> None:
        """Record an alarm's new state (its id assigned)."""
        if alarm.active:
            self.active[alarm.type] = alarm
            return
        if self.active.get(alarm.type) is not None and self.active[alarm.type].id == alarm.id:
            del self.active[alarm.type]
        self._recent[alarm.id] = alarm
        self._recent.move_to_end(alarm.id)
        while len(self._recent) > RECENT_CLEARED:
            self._recent.popitem(last=False)


def with_id(alarm: Alarm, alarm_id: int) -> Alarm:
    return replace(alarm, id=alarm_id)
