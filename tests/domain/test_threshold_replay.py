"""hub.domain.thresholds.replay: a rule's trips over one device's readings, judged by the actors' own step."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hub.domain.thresholds import ThresholdRule, Trip, replay

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc)


def minutes(*values: float) -> list[tuple[datetime, float]]:
    return [(T0 + timedelta(minutes=i), v) for i, v in enumerate(values)]


HOT = ThresholdRule(1, "temperature", "above", 30, 28, 120, "major")
COLD = ThresholdRule(2, "temperature", "below", 10, 12, 0, "minor")


def test_a_breach_held_for_the_duration_trips_and_clears_past_the_clear_level():
    # 31 from minute 1; the 2-min duration is met at minute 3; 29 is not yet back (hysteresis); 27 clears.
    trips = replay(HOT, minutes(25, 31, 33, 32, 29, 27, 25))
    assert trips == [Trip(T0 + timedelta(minutes=1), T0 + timedelta(minutes=3), T0 + timedelta(minutes=5), 33)]


def test_a_breach_shorter_than_the_duration_never_trips():
    assert replay(HOT, minutes(31, 35, 25, 31, 25)) == []


def test_a_breach_still_on_at_the_end_is_open_and_a_below_rule_keeps_its_lowest():
    assert replay(COLD, minutes(15, 9, 7, 8)) == [Trip(T0 + timedelta(minutes=1), T0 + timedelta(minutes=1), None, 7)]


def test_two_separate_breaches_are_two_trips():
    trips = replay(COLD, minutes(9, 13, 8, 13))
    assert [(t.since, t.cleared_at, t.peak) for t in trips] == [
        (T0, T0 + timedelta(minutes=1), 9), (T0 + timedelta(minutes=2), T0 + timedelta(minutes=3), 8)]
