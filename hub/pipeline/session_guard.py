"""The foreign-session guard: never acknowledge another deployment's messages.

The hub's MQTT session is keyed by its client id. If another client used
that id (a second deployment configured with the same
``CAMPUSHUB_HUB_CLIENT_ID``, or this hub under an earlier topic prefix), the
session the hub resumes carries subscriptions the hub never made, and the
broker hands the hub messages meant for someone else. Acknowledging them
(as a ``bad_topic`` rejection would) deletes them for their owner. So a
message that none of this hub's subscription filters matches is *foreign*:
it is neither stored nor acknowledged, and the hub steps away from the
session (drops the connection without acknowledging anything more, and
stays away for a hold-off that doubles with each trip, so two hubs sharing
an id take turns slowly instead of fighting), which gives the owner back its
unacknowledged messages. A message under our own filters with a malformed
topic (an empty device level, an ill-shaped id) is ours: it stays an
ordinary ``bad_topic`` rejection, stored and acknowledged.

This module decides; it does no I/O and owns no task. The effects (drop the
connection, log, count) are the :class:`GuardEffects` the composition root
supplies (hub/app/broker_session.py).

Concurrency contract: a :class:`SessionGuard` belongs to the ingress actor,
which calls :meth:`SessionGuard.foreign` from its one task; :meth:`problem`
and the counters are plain reads, safe from any task of the same trio run
(e.g. ``/healthz``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

#: Hold-off after the first trip; it doubles with each trip that follows within
#: :data:`RESET_AFTER_S` of the previous one, up to :data:`MAX_HOLD_OFF_S`.
FIRST_HOLD_OFF_S = 30.0
MAX_HOLD_OFF_S = 600.0
#: A trip this long after the previous one starts again from the first hold-off.
RESET_AFTER_S = 2 * MAX_HOLD_OFF_S
#: ``/healthz`` keeps reporting the problem this long after the hold-off of the last trip ends:
#: a deployment still sharing the id trips the guard again within it (devices heartbeat more often).
REPORTED_AFTER_HOLD_OFF_S = 120.0


@dataclass(frozen=True)
class StepAway:
    """Verdict: drop the connection now without acknowledging, and reconnect after ``hold_off_s``."""

    reason: str
    hold_off_s: float
    #: Trips so far, this one included.
    trips: int
    #: The connection generation that carried the foreign message.
    generation: int


class GuardEffects(Protocol):
    """What the guard's verdicts do (supplied by the composition root)."""

    def foreign_message(self, topic: str) -> None:
        """One foreign message seen (and deliberately not acknowledged)."""

    def step_away(self, verdict: StepAway) -> None:
        """Drop the connection without acknowledging and stay away ``verdict.hold_off_s``."""


def matches_filter(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter``, whose wildcards are single-level ``+`` only.

    The hub subscribes to ``{prefix}/v1/dev/+/up`` and ``.../status``; ``+``
    also matches an empty level, as the broker does.
    """
    levels = topic.split("/")
    pattern = topic_filter.split("/")
    return len(levels) == len(pattern) and all(p in ("+", level) for p, level in zip(pattern, levels))


class SessionGuard:
    """Decides whether an inbound message is foreign and when to step away from the session.

    ``filters``: the hub's own subscription filters (``+`` wildcards only).
    ``clock``: monotonic seconds (``trio.current_time`` in the hub).
    """

    def __init__(
        self, filters: Iterable[str], effects: GuardEffects, *, clock: Callable[[], float],
        client_id: str = "", first_hold_off_s: float = FIRST_HOLD_OFF_S, max_hold_off_s: float = MAX_HOLD_OFF_S,
    ) -> None:
        self.filters = tuple(filters)
        if not self.filters or any("#" in f for f in self.filters):
            raise ValueError(f"filters must be non-empty and use '+' wildcards only: {self.filters!r}")
        self._effects = effects
        self._clock = clock
        self._client_id = client_id
        self._first_hold_off_s = first_hold_off_s
        self._max_hold_off_s = max_hold_off_s
        #: Foreign messages seen (none acknowledged) and trips (times the hub stepped away).
        self.foreign_messages = 0
        self.trips = 0
        self._consecutive = 0
        self._last_trip_at: float | None = None
        self._last: StepAway | None = None

    def is_ours(self, topic: str) -> bool:
        """True if one of the hub's own subscriptions matches ``topic`` (then it is ours to judge and ack)."""
        return any(matches_filter(f, topic) for f in self.filters)

    def foreign(self, topic: str, generation: int) -> None:
        """A message no filter of ours matches arrived on connection ``generation``: never ack it.

        Steps away once per connection generation (later foreign messages of
        the same connection are already in flight: they are only counted).
        """
        self.foreign_messages += 1
        self._effects.foreign_message(topic)
        if self._last is not None and self._last.generation >= generation:
            return
        now = self._clock()
        if self._last_trip_at is None or now - self._last_trip_at > RESET_AFTER_S:
            self._consecutive = 0
        self._consecutive += 1
        self.trips += 1
        self._last_trip_at = now
        hold_off = min(self._first_hold_off_s * 2 ** (self._consecutive - 1), self._max_hold_off_s)
        self._last = StepAway(self._reason(topic), hold_off, self.trips, generation)
        self._effects.step_away(self._last)

    def problem(self) -> str | None:
        """The reason to report in ``/healthz`` while a trip is recent, else ``None``."""
        if self._last is None or self._last_trip_at is None:
            return None
        if self._clock() - self._last_trip_at > self._last.hold_off_s + REPORTED_AFTER_HOLD_OFF_S:
            return None
        return self._last.reason

    @property
    def stepped_away(self) -> bool:
        """True during the hold-off of the last trip (the broker connection is down on purpose)."""
        if self._last is None or self._last_trip_at is None:
            return False
        return self._clock() - self._last_trip_at <= self._last.hold_off_s

    def _reason(self, topic: str) -> str:
        # The topic is the broker's, i.e. anyone's: repr() keeps control characters out of the log line.
        shown = topic if len(topic) <= 120 else topic[:120] + "..."
        return (f"the MQTT session of client id {self._client_id!r} carries subscriptions this hub does not "
                f"make (a message on {shown!r}, outside {', '.join(self.filters)}): another deployment "
                "uses this client id, or this hub once ran with another topic prefix. Its messages are "
                "left unacknowledged for their owner; give each deployment its own CAMPUSHUB_HUB_CLIENT_ID "
                "(or leave it unset: derived per deployment)")
