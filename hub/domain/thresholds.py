"""Threshold rules on sensor readings: scope, duration, hysteresis, severity. Pure: time is passed in.

A rule says "``metric`` ``op`` (above/below) ``value`` for ``duration_s``
seconds is an alarm of ``severity``; it clears once the value is back past
``clear_value``" (hysteresis: ``clear_value`` ≤ ``value`` for above, ≥ for
below, so a value hovering at the threshold does not flap).

- The duration counts device time, from the first breaching reading, while
  every reading keeps breaching; one reading back at or under the trip
  level (above a below-rule's) resets it. A rule is checked when a reading
  arrives, so detection lags by at most one reading interval.
- Readings older than the last one evaluated for a rule (late replays from
  an edge outbox) are stored but do not move its state back in time.
- Rules of one metric and direction form one alarm type,
  ``<metric>_high`` or ``<metric>_low``: their most severe active rule sets
  the alarm's severity, so a critical rule escalates the open alarm instead
  of opening a second one.
- Scope: for a room, per alarm type, rules of that room override rules of
  its room type, which override campus-wide rules (neither set).

Evaluation is O(rules of the reading's metric), with no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Iterable, Literal, Mapping, Sequence

from .alarms import SEVERITIES, Alarm, AlarmChange, most_severe, new_alarm, severity_rank

Op = Literal["above", "below"]
OPS: tuple[str, ...] = ("above", "below")


@dataclass(frozen=True)
class ThresholdRule:
    id: int
    metric: str
    op: str
    value: float
    clear_value: float
    duration_s: int
    severity: str
    room_type: str | None = None
    room_id: str | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        problem = rule_problem(self.op, self.value, self.clear_value, self.duration_s, self.severity,
                               self.room_type, self.room_id)
        if problem is not None:
            raise ValueError(problem[1])

    @property
    def alarm_type(self) -> str:
        return alarm_type(self.metric, self.op)

    @property
    def scope(self) -> str:
        return "room" if self.room_id is not None else "room_type" if self.room_type is not None else "campus"

    def breached(self, value: float) -> bool:
        return value > self.value if self.op == "above" else value < self.value

    def back_to_normal(self, value: float) -> bool:
        return value <= self.clear_value if self.op == "above" else value >= self.clear_value


def alarm_type(metric: str, op: str) -> str:
    return f"{metric}_{'high' if op == 'above' else 'low'}"


def rule_problem(
    op: str, value: float, clear_value: float, duration_s: int, severity: str,
    room_type: str | None = None, room_id: str | None = None,
) -> tuple[str, str] | None:
    """``(field, message)`` of the first thing wrong with a rule, else ``None`` (shared with the API)."""
    if op not in OPS:
        return "op", "op must be 'above' or 'below'"
    if severity not in SEVERITIES:
        return "severity", f"severity must be one of {', '.join(SEVERITIES)}"
    if not 0 <= duration_s <= 7 * 86400:
        return "duration_s", "duration_s must be between 0 and 604800 (7 days)"
    if op == "above" and clear_value > value:
        return "clear_value", "for an 'above' rule, clear_value must not exceed value"
    if op == "below" and clear_value < value:
        return "clear_value", "for a 'below' rule, clear_value must not be under value"
    if room_type is not None and room_id is not None:
        return "room_id", "give room_type or room_id, not both"
    return None


@dataclass(frozen=True)
class RuleState:
    """One rule's evaluation state on one device."""

    #: Device time of the first reading of the current unbroken breach (None: not breaching).
    pending_since: datetime | None = None
    #: The rule has tripped and not yet cleared.
    active: bool = False
    #: Device time of the last reading evaluated (not persisted on every reading).
    last_ts: datetime | None = None

    def persisted_part(self) -> tuple[datetime | None, bool]:
        return self.pending_since, self.active


def step(rule: ThresholdRule, state: RuleState, value: float, at: datetime) -> RuleState:
    """The rule's state after a reading of ``value`` at device time ``at``."""
    if state.last_ts is not None and at < state.last_ts:
        return state  # a late replay: never move a rule back in time
    if state.active:
        if rule.back_to_normal(value):
            return RuleState(None, False, at)
        return replace(state, last_ts=at)
    if not rule.breached(value):
        return RuleState(None, False, at)
    since = state.pending_since or at
    return RuleState(since, at - since >= timedelta(seconds=rule.duration_s), at)


@dataclass(frozen=True)
class Verdict:
    """What the rules of one alarm type say after a reading."""

    alarm_type: str
    #: The most severe active rule, or None: the condition is clear.
    rule: ThresholdRule | None
    value: float
    unit: str
    at: datetime

    @property
    def severity(self) -> str | None:
        return None if self.rule is None else self.rule.severity


def evaluate(
    rules: Sequence[ThresholdRule], states: Mapping[int, RuleState], value: float, unit: str, at: datetime,
) -> tuple[dict[int, RuleState], list[Verdict]]:
    """Step every rule of one metric (for one device) with a reading.

    Returns the new state of each rule whose state changed (``last_ts``
    included) and one verdict per alarm type among ``rules``.
    """
    changed: dict[int, RuleState] = {}
    active: dict[str, ThresholdRule | None] = {}
    for rule in rules:
        before = states.get(rule.id) or RuleState()
        after = step(rule, before, value, at)
        if after is not before:
            changed[rule.id] = after
        best = active.setdefault(rule.alarm_type, None)
        if after.active and (best is None or severity_rank(rule.severity) > severity_rank(best.severity)):
            active[rule.alarm_type] = rule
    return changed, [Verdict(t, rule, value, unit, at) for t, rule in active.items()]


def describe(rule: ThresholdRule, value: float, unit: str) -> str:
    """E.g. ``temperature 31.2 °C above 30 for 5 min``."""
    unit = f" {unit}" if unit else ""
    if rule.duration_s == 0:
        span = ""
    elif rule.duration_s % 60 == 0:
        span = f" for {rule.duration_s // 60} min"
    else:
        span = f" for {rule.duration_s} s"
    return f"{rule.metric} {value:g}{unit} {rule.op} {rule.value:g}{span}"


def reconcile(
    open_alarm: Alarm | None, verdict: Verdict, *, device_id: str, room_id: str | None,
) -> AlarmChange | None:
    """The alarm step a verdict calls for, given the open (active) alarm of its type, if any."""
    rule = verdict.rule
    if rule is None:
        if open_alarm is None:
            return None
        message = f"{open_alarm.message}; cleared at {verdict.value:g}"
        return AlarmChange("cleared", open_alarm.clear("system", verdict.at, message))
    message = describe(rule, verdict.value, verdict.unit)
    details = {"metric": rule.metric, "op": rule.op, "threshold": rule.value, "clear_value": rule.clear_value,
               "duration_s": rule.duration_s, "rule_id": rule.id, "unit": verdict.unit}
    if open_alarm is None:
        return AlarmChange("raised", new_alarm(
            0, device_id, room_id, verdict.alarm_type, rule.severity, verdict.at,
            value=verdict.value, message=message, details=details))
    if rule.severity == open_alarm.severity:
        return None
    changed = open_alarm.with_severity(rule.severity, verdict.at, verdict.value, message)
    return AlarmChange("updated", replace(changed, details={**changed.details, **details}))


@dataclass(frozen=True)
class RuleBook:
    """Every enabled rule, and each room's type: enough to pick any device's rules. Immutable."""

    rules: tuple[ThresholdRule, ...] = ()
    room_types: Mapping[str, str] = field(default_factory=dict)

    def for_room(self, room_id: str | None) -> dict[str, tuple[ThresholdRule, ...]]:
        """metric → the rules that apply in ``room_id`` (most specific scope per alarm type)."""
        room_type = self.room_types.get(room_id) if room_id is not None else None
        by_type: dict[str, dict[str, list[ThresholdRule]]] = {}
        for rule in self.rules:
            if not rule.enabled:
                continue
            if rule.room_id is not None and rule.room_id != room_id:
                continue
            if rule.room_type is not None and rule.room_type != room_type:
                continue
            by_type.setdefault(rule.alarm_type, {}).setdefault(rule.scope, []).append(rule)
        chosen: dict[str, list[ThresholdRule]] = {}
        for scopes in by_type.values():
            rules = scopes.get("room") or scopes.get("room_type") or scopes.get("campus") or []
            for rule in rules:
                chosen.setdefault(rule.metric, []).append(rule)
        return {metric: tuple(sorted(rules, key=lambda r: r.id)) for metric, rules in chosen.items()}


def rules_by_id(rules: Iterable[ThresholdRule]) -> dict[int, ThresholdRule]:
    return {r.id: r for r in rules}


@dataclass(frozen=True)
class Trip:
    """One time a rule tripped on one device's readings: what a preview reports as "would have fired"."""

    #: Device time of the first reading of the breach (the duration counts from here).
    since: datetime
    #: When the rule's duration was met: the alarm would have been raised (or escalated) then.
    tripped_at: datetime
    #: When the value came back past ``clear_value`` (None: still past it at the last reading).
    cleared_at: datetime | None
    #: The furthest value past the trip level during the breach (highest for above, lowest for below).
    peak: float


def replay(rule: ThresholdRule, readings: Iterable[tuple[datetime, float]]) -> list[Trip]:
    """Every trip of ``rule`` over one device's ``readings`` (device time, value; oldest first),
    judged by :func:`step` exactly as the device actor judges live readings, from a clear state."""
    trips: list[Trip] = []
    state = RuleState()
    peak: float | None = None
    tripped_at: datetime | None = None
    for at, value in readings:
        before, state = state, step(rule, state, value, at)
        if before.active and not state.active:  # cleared
            assert before.pending_since is not None and tripped_at is not None and peak is not None
            trips.append(Trip(before.pending_since, tripped_at, at, peak))
            peak = tripped_at = None
            continue
        if state.pending_since is None:
            peak = None
            continue
        if rule.breached(value):
            peak = value if peak is None else max(peak, value) if rule.op == "above" else min(peak, value)
        if state.active and not before.active:
            tripped_at = at
    if state.active and state.pending_since is not None and tripped_at is not None and peak is not None:
        trips.append(Trip(state.pending_since, tripped_at, None, peak))
    return trips


__all__ = [
    "OPS", "RuleBook", "RuleState", "ThresholdRule", "Trip", "Verdict", "alarm_type", "describe",
    "evaluate", "most_severe", "reconcile", "replay", "rule_problem", "rules_by_id", "step",
]
