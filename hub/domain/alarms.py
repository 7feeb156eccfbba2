"""Alarms: severities, the four-state lifecycle, escalation, the offline alarm. Pure: time is passed in.

Lifecycle (as ThingsBoard's)::

    active_unacked ──ack──► active_acked
          │                      │
        clear                  clear
          ▼                      ▼
    cleared_unacked ──ack──► cleared_acked

An alarm is cleared automatically when its condition clears (by ``system``)
or manually by ops; it is acknowledged by a user. A cleared alarm is closed
for good: if the condition comes back, a new alarm is raised. At most one
*active* alarm exists per device and type (the device actor owns them, so
racing messages cannot raise two), any number of types may be active at
once, and a cleared-but-unacknowledged alarm never blocks a new one.

Severity follows the condition while the alarm is active: a higher one
escalates it (and an acknowledged alarm needs acknowledging again), a lower
one de-escalates it (the acknowledgement stands). ``details["peak_severity"]``
keeps the highest reached.

This module also holds the frozen messages the web sends to a device actor
(:class:`AckAlarm`, :class:`ClearAlarm`) and its reply (:class:`AlarmResult`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

Severity = Literal["critical", "major", "minor", "warning"]
AlarmState = Literal["active_unacked", "active_acked", "cleared_unacked", "cleared_acked"]

#: Most severe first.
SEVERITIES: tuple[str, ...] = ("critical", "major", "minor", "warning")
STATES: tuple[str, ...] = ("active_unacked", "active_acked", "cleared_unacked", "cleared_acked")
ACTIVE_STATES = frozenset({"active_unacked", "active_acked"})
#: Who clears an alarm whose condition went away.
SYSTEM = "system"

#: The alarm of a device that went offline.
OFFLINE_ALARM = "device_offline"
#: A device that said goodbye (clean shutdown) is less alarming than one that vanished.
_PLANNED_OFFLINE_REASONS = frozenset({"shutdown"})
#: The alarm of a device that sent more events than its rate limit allows (the ingress's token bucket).
RATE_LIMIT_ALARM = "rate_limited"
RATE_LIMIT_SEVERITY = "minor"


def severity_rank(severity: str) -> int:
    """Higher is more severe: warning 1 … critical 4."""
    return len(SEVERITIES) - SEVERITIES.index(severity)


def most_severe(severities: "list[str] | tuple[str, ...]") -> str | None:
    return max(severities, key=severity_rank) if severities else None


class AlarmTransitionError(ValueError):
    """A lifecycle step that the alarm's state does not allow (``code``: already_acked, already_cleared)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Alarm:
    id: int
    device_id: str
    room_id: str | None
    type: str
    severity: str
    state: str
    raised_at: datetime
    value: float | None = None
    message: str = ""
    acked_at: datetime | None = None
    acked_by: str | None = None
    cleared_at: datetime | None = None
    cleared_by: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def acked(self) -> bool:
        return self.state in ("active_acked", "cleared_acked")

    def acknowledge(self, by: str, at: datetime) -> "Alarm":
        """active_unacked → active_acked, cleared_unacked → cleared_acked."""
        if self.acked:
            raise AlarmTransitionError("already_acked", f"alarm {self.id} is already acknowledged")
        state = "active_acked" if self.active else "cleared_acked"
        return replace(self, state=state, acked_at=at, acked_by=by, updated_at=at)

    def clear(self, by: str, at: datetime, message: str | None = None) -> "Alarm":
        """active_unacked → cleared_unacked, active_acked → cleared_acked."""
        if not self.active:
            raise AlarmTransitionError("already_cleared", f"alarm {self.id} is already cleared")
        state = "cleared_acked" if self.acked else "cleared_unacked"
        return replace(self, state=state, cleared_at=at, cleared_by=by, updated_at=at,
                       message=self.message if message is None else message)

    def with_severity(self, severity: str, at: datetime, value: float | None, message: str) -> "Alarm":
        """The active alarm at a new severity; an escalation needs a fresh acknowledgement."""
        if severity == self.severity or not self.active:
            return self
        escalated = severity_rank(severity) > severity_rank(self.severity)
        peak = most_severe([severity, self.details.get("peak_severity", self.severity)])
        return replace(
            self, severity=severity, value=value, message=message, updated_at=at,
            state="active_unacked" if escalated else self.state,
            acked_at=None if escalated else self.acked_at, acked_by=None if escalated else self.acked_by,
            details={**self.details, "peak_severity": peak},
        )


def new_alarm(
    alarm_id: int, device_id: str, room_id: str | None, alarm_type: str, severity: str, at: datetime,
    *, value: float | None = None, message: str = "", details: dict[str, Any] | None = None,
) -> Alarm:
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}")
    return Alarm(alarm_id, device_id, room_id, alarm_type, severity, "active_unacked", at, value, message,
                 details={**(details or {}), "peak_severity": severity}, updated_at=at)


@dataclass(frozen=True)
class AlarmChange:
    """An alarm to persist. ``kind`` raised: ``alarm.id`` is 0 until the device actor assigns one."""

    kind: Literal["raised", "updated", "cleared"]
    alarm: Alarm


def offline_severity(reason: str) -> str:
    """``warning`` for a clean shutdown, ``major`` for a lost connection or a silent device."""
    return "warning" if reason in _PLANNED_OFFLINE_REASONS else "major"


def offline_change(
    open_alarm: Alarm | None, *, online: bool, reason: str, at: datetime, device_id: str, room_id: str | None,
) -> AlarmChange | None:
    """The offline alarm's step when a device's online state is (re)decided.

    Offline raises it (or re-grades an open one: a clean shutdown that turns
    into a lost connection is worse); back online clears it.
    """
    if online:
        if open_alarm is None:
            return None
        return AlarmChange("cleared", open_alarm.clear(SYSTEM, at, f"{open_alarm.message}; back online ({reason})"))
    severity = offline_severity(reason)
    message = f"device offline: {reason}"
    if open_alarm is None:
        return AlarmChange("raised", new_alarm(0, device_id, room_id, OFFLINE_ALARM, severity, at,
                                               message=message, details={"reason": reason}))
    if severity == open_alarm.severity:
        return None
    return AlarmChange("updated", open_alarm.with_severity(severity, at, None, message))


def rate_limit_change(
    open_alarm: Alarm | None, *, tripped: bool, at: datetime, device_id: str, room_id: str | None, detail: str,
) -> AlarmChange | None:
    """The rate-limit alarm's step: raised when the device's bucket runs dry (``tripped``), cleared
    when the device has kept within its rate long enough to fill the bucket again.

    A device that trips again while its alarm is active changes nothing (one
    alarm per episode, however many events were refused).
    """
    if tripped:
        if open_alarm is not None:
            return None
        return AlarmChange("raised", new_alarm(0, device_id, room_id, RATE_LIMIT_ALARM, RATE_LIMIT_SEVERITY, at,
                                               message=f"rate limited: {detail}", details={"limit": detail}))
    if open_alarm is None:
        return None
    return AlarmChange("cleared", open_alarm.clear(SYSTEM, at, f"{open_alarm.message}; back within its rate"))


# --- web → device actor ---------------------------------------------------------------


@dataclass(frozen=True)
class AckAlarm:
    """Ask a device actor to acknowledge one of its alarms. Reply: :class:`AlarmResult`."""

    alarm_id: int
    user_id: str
    at: datetime


@dataclass(frozen=True)
class ClearAlarm:
    """Ask a device actor to clear one of its alarms by hand. Reply: :class:`AlarmResult`.

    Clearing a threshold alarm also resets its rules: the condition must hold
    for the rule's duration again before a new alarm is raised.
    """

    alarm_id: int
    user_id: str
    at: datetime


@dataclass(frozen=True)
class AlarmResult:
    """The alarm after the step, or ``error``: ``not_found``, ``already_acked``, ``already_cleared``."""

    alarm: Alarm | None
    error: str | None = None
    message: str = ""
