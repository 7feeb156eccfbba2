"""Per-device intake limits: a token bucket on the hub's clock, a flood detector on the device's. Pure: time is passed in.

**Token bucket** (:class:`TokenBucket`).

``rate`` tokens flow in per second up to ``burst``; each event takes one.
A device that was quiet (or offline, filling its outbox) has a full bucket
and may send ``burst`` events at once; a device that keeps sending faster
than ``rate`` runs dry and is refused until tokens flow back. Memory is two
floats per bucket, whatever the rate.

**Flood detector** (:class:`FloodDetector`). The bucket must admit a full
outbox at once (its burst equals the edge agent's ``max_outbox_rows``) and
runs on the hub's clock, so a hub draining a backlog sees every device at its
own processing speed: it can only act after ``burst`` events. The detector
looks at what legitimate traffic cannot produce: the density of a device's
own signed timestamps (``event.ts``, ms, device clock). An agent stamps each
event when it is captured, so live, drained from its outbox after an outage,
or drained by a hub from a backlog, its events carry at most the device's real
capture rate per second of its clock (a busy door ~2 scans/s, a sensor a
reading every few seconds). A firmware loop or a flooding device stamps
hundreds or thousands within one second. The detector counts events per
second of the device's clock (the last :data:`FLOOD_WINDOWS` distinct
seconds, so interleaving a few seconds does not reset the count) and refuses
those beyond ``events_per_s`` in any one second. A device that spreads forged
timestamps over many seconds evades it, and still meets the token bucket.

:class:`DeviceLimiter` holds both for one device. Every object here is
mutable state owned by one actor (the ingress): never shared between tasks.
Each decision is a method call, so the hot path costs a few integer and
float operations and no allocation.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

#: Distinct seconds of the device's clock a :class:`FloodDetector` counts at once.
FLOOD_WINDOWS = 4


@dataclass(frozen=True)
class RateLimit:
    """``rate`` events per second sustained, ``burst`` at once after a quiet spell."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if not self.rate > 0 or not self.burst >= 1:
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1, not {self.rate}/{self.burst}")


class TokenBucket:
    """One device's bucket. ``now`` is any monotonic clock in seconds (the hub passes trio's)."""

    __slots__ = ("_limit", "_tokens", "_at")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self._limit = limit
        self._tokens = limit.burst
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self._limit.burst, self._tokens + (now - self._at) * self._limit.rate)
            self._at = now

    def full(self, now: float) -> bool:
        """Whether the bucket is full at ``now``: the device stayed within its rate for ``burst / rate`` s."""
        self._refill(now)
        return self._tokens >= self._limit.burst

    def take(self, now: float) -> bool:
        """Take one token at ``now``: ``True`` if the event is within the limit, ``False`` if refused."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class FloodDetector:
    """Counts one device's events per second of its own clock; refuses those beyond ``events_per_s`` in a second.

    ``ts_ms`` is the event's signed timestamp (milliseconds, the device's
    clock). Counts are kept for the last :data:`FLOOD_WINDOWS` distinct seconds
    seen (a ring indexed by the second): events of an earlier second that
    arrive late count towards it while it is among them, and start it afresh
    once it was overwritten (so late arrivals can only under-count, never
    refuse a device within its density).
    """

    __slots__ = ("_limit", "_seconds", "_counts")

    def __init__(self, events_per_s: int) -> None:
        if events_per_s < 1:
            raise ValueError(f"a flood threshold needs events_per_s >= 1, not {events_per_s}")
        self._limit = events_per_s
        self._seconds = [-1] * FLOOD_WINDOWS
        self._counts = [0] * FLOOD_WINDOWS

    def admit(self, ts_ms: int) -> bool:
        """Count an event stamped ``ts_ms``: ``True`` within the density, ``False`` beyond it (refuse it)."""
        second = ts_ms // 1000
        slot = second % FLOOD_WINDOWS
        if self._seconds[slot] != second:
            self._seconds[slot] = second
            self._counts[slot] = 0
        self._counts[slot] += 1
        return self._counts[slot] <= self._limit


class Verdict(Enum):
    """A :class:`DeviceLimiter`'s decision on one event.

    ``admitted``: the event is within both limits. ``settled``: the device is
    within them both for long enough to end a rate-limit episode (the bucket
    was full before this event, and this event was not beyond the density).
    ``cause``: why an event is refused (``"rate"``: the bucket is dry;
    ``"flood"``: too many events in one second of the device's clock).
    """

    ADMITTED = (True, False, None)
    ADMITTED_SETTLED = (True, True, None)
    REFUSED_RATE = (False, False, "rate")
    REFUSED_FLOOD = (False, False, "flood")

    def __init__(self, admitted: bool, settled: bool, cause: str | None) -> None:
        self.admitted = admitted
        self.settled = settled
        self.cause = cause


class DeviceLimiter:
    """One device's token bucket (hub clock) and flood detector (device clock), decided together.

    An event beyond the density is refused without taking a token (the
    bucket measures the events the hub admits); an event within it takes one.
    """

    __slots__ = ("_bucket", "_flood")

    def __init__(self, limit: RateLimit, flood_events_per_s: int, now: float) -> None:
        self._bucket = TokenBucket(limit, now)
        self._flood = FloodDetector(flood_events_per_s)

    def admit(self, now: float, ts_ms: int) -> Verdict:
        """Decide on an event the hub sees at ``now`` (its clock, s) stamped ``ts_ms`` (the device's, ms)."""
        if not self._flood.admit(ts_ms):
            return Verdict.REFUSED_FLOOD
        settled = self._bucket.full(now)
        if self._bucket.take(now):
            return Verdict.ADMITTED_SETTLED if settled else Verdict.ADMITTED
        return Verdict.REFUSED_RATE  # a full bucket always has a token (burst >= 1): never settled here
