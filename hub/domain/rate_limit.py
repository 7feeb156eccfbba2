"""A token bucket: a device's sustained event rate with a burst allowance. Pure: time is passed in.

``rate`` tokens flow in per second up to ``burst``; each event takes one.
A device that was quiet (or offline, filling its outbox) has a full bucket
and may send ``burst`` events at once; a device that keeps sending faster
than ``rate`` runs dry and is refused until tokens flow back. Memory is two
floats per bucket, whatever the rate.

The bucket is mutable state owned by one actor (the ingress): never shared
between tasks. The decision is a method call, so the hot path costs a few
float operations and no allocation.
"""
from __future__ import annotations

from dataclasses import dataclass


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
