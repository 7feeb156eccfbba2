"""Device online/offline rules and health fields. Pure: the device actor supplies the time.

Three sources decide the state: the retained status (online on connect,
offline on clean shutdown), the broker's Last Will (offline, connection
lost) and the device actor's own heartbeat-timeout timer. Any authenticated
event is proof of life.

- Statuses and Wills are signed by the device (the ingress verifies them);
  what is left to judge is their order (:func:`judge_status`). A status is
  applied only if its ``ts`` is strictly larger than that of the last one
  applied (``status_ts``). The agent gives a connection's online status the
  connection's ``ts`` and its Will ``ts + 1``: the Will applies to the
  connection the hub believes online (or a newer one), never to an older
  one, and a replayed old status or Will (or the retained one re-sent on
  every hub restart) changes nothing.
- A status stamped more than :data:`STATUS_MAX_AHEAD_MS` ahead of the hub's
  clock is refused: within that margin a device's fast clock can hold its
  state against its own next status for at most that long, and its signed
  events win at once (an event brings an offline device back, ``traffic``).
- Every transition to online is a connect (``last_connect_at`` and its
  reason: ``connected``, or ``traffic`` for a device heard from without a
  status); every transition to offline is a disconnect (``connection
  lost``, ``shutdown``, ``heartbeat timeout``). A new ``online`` status
  while online is a reconnect and counts as a connect.
- Heartbeats carry firmware, uptime, outbox depth, and optionally battery,
  signal and the agent's error count; the hub estimates the clock skew.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Iterable, Literal

from schemas import DeviceStatus, Heartbeat


@dataclass(frozen=True)
class DeviceHealth:
    """A device's health: the one declaration of its fields.

    The other forms are derived from it: the ``device_health`` columns and their
    SQL (hub/db/device_health.py, :data:`HEALTH_FIELDS`), the row the writer
    persists (this object itself), the device list's health part and the
    browser's JSON (:data:`PUBLISHED_HEALTH_FIELDS`). A new field is added here,
    in a migration, and nowhere else.
    """

    device_id: str
    online: bool = False
    last_seen: datetime | None = None
    last_change: datetime | None = None
    reason: str = "never seen"
    firmware: str = ""
    uptime_s: int = 0
    outbox_depth: int = 0
    #: ``ts`` of the last status applied (:func:`judge_status`); only a larger one applies, so
    #: an old status (a late or replayed Will, a re-sent retained status) cannot undo a newer one.
    status_ts: int = 0
    last_connect_at: datetime | None = None
    last_connect_reason: str = ""
    last_disconnect_at: datetime | None = None
    last_disconnect_reason: str = ""
    battery_pct: float | None = None
    signal_dbm: int | None = None
    #: Device clock minus hub clock, in ms (positive: the device runs ahead).
    clock_skew_ms: int | None = None
    #: Errors the edge agent counted since it started (driver faults, publish failures).
    error_count: int = 0

    def _with(self, **changes: object) -> "DeviceHealth":
        """``dataclasses.replace`` without re-running ``__init__``: every event steps the
        health, and replace() on these 19 fields was ~18 µs of it (the fields need no checks)."""
        new = object.__new__(DeviceHealth)
        fields = new.__dict__
        fields.update(self.__dict__)
        fields.update(changes)
        return new

    def _to(self, online: bool, reason: str, at: datetime) -> "DeviceHealth":
        if online == self.online and reason == self.reason:
            return self
        changed = self._with(online=online, reason=reason, last_change=at)
        if online and not self.online:
            return changed._with(last_connect_at=at, last_connect_reason=reason)
        if self.online and not online:
            return changed._with(last_disconnect_at=at, last_disconnect_reason=reason)
        return changed

    def judge_status(self, status: DeviceStatus, hub_now_ms: int) -> "StatusVerdict":
        """How ``status`` (signature already verified) orders against this health; see :func:`judge_status`."""
        return judge_status(self.status_ts, status.ts, hub_now_ms)

    def on_status(self, status: DeviceStatus, at: datetime) -> "DeviceHealth":
        """Apply ``status`` if it is newer than the last one applied; otherwise change nothing."""
        if status.ts <= self.status_ts:
            return self
        online = status.state == "online"
        reason = status.reason or status.state
        state = self._to(online, reason, at)._with(status_ts=status.ts)
        if online and self.online:  # a new connection of a device we already believed online
            state = state._with(last_connect_at=at, last_connect_reason=reason)
        return state

    def on_event(self, at: datetime) -> "DeviceHealth":
        seen = self._with(last_seen=at)
        return seen if self.online else seen._to(True, "traffic", at)

    def on_heartbeat(self, heartbeat: Heartbeat, at: datetime, clock_skew_ms: int | None = None) -> "DeviceHealth":
        """Record a heartbeat; ``clock_skew_ms`` is the hub's estimate, None to keep the last one."""
        return self.on_event(at)._with(
            firmware=heartbeat.firmware, uptime_s=heartbeat.uptime_s, outbox_depth=heartbeat.outbox_depth,
            battery_pct=heartbeat.battery_pct, signal_dbm=heartbeat.signal_dbm, error_count=heartbeat.error_count,
            clock_skew_ms=self.clock_skew_ms if clock_skew_ms is None else clock_skew_ms,
        )

    def on_heartbeat_timeout(self, at: datetime) -> "DeviceHealth":
        return self._to(False, "heartbeat timeout", at) if self.online else self


#: How far ahead of the hub's clock a status's ``ts`` may be. Beyond it the status is refused
#: (``clock_skew``); within it a fast clock holds the device's state against its own next
#: status for at most this long. Small, because the agent stamps statuses with its clock
#: corrected by the hub's ``time_sync`` and its events (120 s allowed) win anyway.
STATUS_MAX_AHEAD_MS = 10_000

#: ``newer``: apply it; ``same``: the status already applied, seen again (a retained status
#: re-sent, a redelivery); ``older``: an earlier status or the Will of an earlier connection
#: (refused, ``stale_status``); ``ahead``: stamped too far in the future (refused, ``clock_skew``).
StatusVerdict = Literal["newer", "same", "older", "ahead"]


def judge_status(held_ts: int, status_ts: int, hub_now_ms: int) -> StatusVerdict:
    """Order a verified status of ``status_ts`` against the last applied one (``held_ts``) at hub time ``hub_now_ms``.

    ``ahead`` is judged first: a status too far in the future is refused even though it is
    newer, or it would make every later genuine status look older.
    """
    if status_ts > hub_now_ms + STATUS_MAX_AHEAD_MS:
        return "ahead"
    if status_ts > held_ts:
        return "newer"
    return "same" if status_ts == held_ts else "older"


#: Every field, in declaration order: the columns of ``device_health``.
HEALTH_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(DeviceHealth))
#: What the browser is shown (API, live messages): all but ``status_ts``, the hub's own ordering guard.
PUBLISHED_HEALTH_FIELDS: tuple[str, ...] = tuple(name for name in HEALTH_FIELDS if name != "status_ts")
#: What a ``device_health_history`` row keeps of the health at a transition.
HISTORY_HEALTH_FIELDS: tuple[str, ...] = (
    "online", "reason", "firmware", "uptime_s", "outbox_depth", "battery_pct", "signal_dbm", "clock_skew_ms",
    "error_count",
)


def history_change(before: DeviceHealth, after: DeviceHealth) -> str | None:
    """What a health step is worth a history row for: ``online``, ``offline``, ``firmware`` or nothing."""
    if after.online != before.online:
        return "online" if after.online else "offline"
    if after.firmware != before.firmware:
        return "firmware"
    return None


def skew_sample_ms(device_ts_ms: int, received_at_s: float, outbox_depth: int) -> int | None:
    """A clock-skew sample from a heartbeat, or None when it cannot be trusted.

    A heartbeat built while the agent's outbox held a backlog may have waited
    there, and its age would read as a slow clock: only heartbeats sent from
    an empty outbox are samples. Transport delay (milliseconds on a campus
    network) still biases the estimate slightly negative.
    """
    if outbox_depth > 0:
        return None
    return int(device_ts_ms - received_at_s * 1000)


#: Heartbeats this recent tell a device's clock offset (hub.domain.checkin.clock_skew_flag).
SKEW_EVIDENCE_WINDOW = timedelta(minutes=15)
#: Samples one device keeps at most: 15 minutes of heartbeats every 2 s. Beyond it the oldest go first.
CLOCK_SAMPLES_KEPT = 450


@dataclass
class ClockEvidence:
    """One device's clock-offset samples of the last :data:`SKEW_EVIDENCE_WINDOW`: hub receive time
    minus device time of each heartbeat made with an empty outbox (:func:`skew_sample_ms`'s rule).

    Kept in memory by the device's actor, which sees every heartbeat of its device in order, so a
    late check-in needs no query: the smallest sample of the window is the offset (buffering only
    ever makes a difference larger). The samples stored before the actor started are merged once
    (``loaded``), the first time a late check-in needs them. Owned by one actor; not shared.
    """

    loaded: bool = False
    _samples: deque[tuple[datetime, timedelta]] = field(default_factory=lambda: deque(maxlen=CLOCK_SAMPLES_KEPT))

    def add(self, received_at: datetime, offset: timedelta) -> None:
        """A heartbeat made with an empty outbox, received at ``received_at``; older samples leave the window."""
        samples = self._samples
        cutoff = received_at - SKEW_EVIDENCE_WINDOW
        while samples and samples[0][0] < cutoff:
            samples.popleft()
        samples.append((received_at, offset))

    def merge_stored(self, stored: Iterable[tuple[datetime, timedelta]]) -> None:
        """The stored samples (hub.db.checkin.device_clock_samples); samples seen twice change no minimum."""
        merged = sorted([*stored, *self._samples], key=lambda sample: sample[0])
        self._samples = deque(merged[-CLOCK_SAMPLES_KEPT:], maxlen=CLOCK_SAMPLES_KEPT)
        self.loaded = True

    def offset_at(self, received_at: datetime) -> timedelta | None:
        """The device's clock offset as of ``received_at``: the smallest sample received in the window
        before it; ``None`` without one."""
        cutoff = received_at - SKEW_EVIDENCE_WINDOW
        return min((offset for at, offset in self._samples if at >= cutoff), default=None)


#: A pushed heartbeat interval must let this many heartbeats into the hub's offline timeout,
#: so one lost heartbeat (or a slow broker) does not make the device flap offline.
HEARTBEATS_PER_OFFLINE_TIMEOUT = 2


def heartbeat_interval_problem(interval_s: object, offline_after_s: float) -> str | None:
    """Why ``interval_s`` (a ``config_push``'s ``heartbeat_interval_s``) does not fit the hub's
    offline timeout ``offline_after_s``, or None when it fits."""
    if isinstance(interval_s, bool) or not isinstance(interval_s, (int, float)) or not interval_s > 0:
        return "heartbeat_interval_s must be a positive number of seconds"
    longest = offline_after_s / HEARTBEATS_PER_OFFLINE_TIMEOUT
    if interval_s > longest:
        return (f"heartbeat_interval_s {interval_s:g} does not fit the hub's device offline timeout of"
                f" {offline_after_s:g} s: at most {longest:g} s, or every device would flap offline")
    return None
