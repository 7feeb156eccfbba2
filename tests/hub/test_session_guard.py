"""The foreign-session guard's decisions (hub/pipeline/session_guard.py): pure, no broker."""
from __future__ import annotations

import pytest

from hub.pipeline.session_guard import (
    FIRST_HOLD_OFF_S,
    MAX_HOLD_OFF_S,
    REPORTED_AFTER_HOLD_OFF_S,
    RESET_AFTER_S,
    SessionGuard,
    StepAway,
    matches_filter,
)
from schemas import Topics

TOPICS = Topics("campus-a")


class Recorder:
    """The guard's effects, recorded."""

    def __init__(self) -> None:
        self.foreign: list[str] = []
        self.verdicts: list[StepAway] = []

    def foreign_message(self, topic: str) -> None:
        self.foreign.append(topic)

    def step_away(self, verdict: StepAway) -> None:
        self.verdicts.append(verdict)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_guard() -> tuple[SessionGuard, Recorder, Clock]:
    effects, clock = Recorder(), Clock()
    guard = SessionGuard((TOPICS.uplink_filter, TOPICS.status_filter), effects, clock=clock, client_id="hub-x")
    return guard, effects, clock


def test_filter_matching_is_the_brokers_single_level_plus():
    assert matches_filter("a/v1/dev/+/up", "a/v1/dev/d1/up")
    assert matches_filter("a/v1/dev/+/up", "a/v1/dev//up")  # "+" matches an empty level
    assert not matches_filter("a/v1/dev/+/up", "a/v1/dev/d1/x/up")
    assert not matches_filter("a/v1/dev/+/up", "a/v1/dev/d1/down")
    assert not matches_filter("a/v1/dev/+/up", "b/v1/dev/d1/up")


def test_our_malformed_topics_stay_ours_and_other_prefixes_are_foreign():
    guard, _, _ = make_guard()
    # Delivered by our own filters: an ordinary bad_topic (stored and acked), never foreign.
    for topic in ("campus-a/v1/dev//up", "campus-a/v1/dev/not a valid id/status", "campus-a/v1/dev/d1/up"):
        assert guard.is_ours(topic), topic
    # Only a session with subscriptions we never made delivers these.
    for topic in ("campus-b/v1/dev/d1/up", "campus-a/v1/dev/d1/down", "campus-a/v1/dev/d1/up/x", "campus-a-old/v1/dev/d/up"):
        assert not guard.is_ours(topic), topic


def test_steps_away_once_per_connection_and_counts_every_foreign_message():
    guard, effects, _ = make_guard()
    for _ in range(5):
        guard.foreign("campus-b/v1/dev/d1/up", generation=1)
    assert guard.foreign_messages == 5 and len(effects.foreign) == 5
    assert [v.hold_off_s for v in effects.verdicts] == [FIRST_HOLD_OFF_S] and guard.trips == 1
    assert effects.verdicts[0].generation == 1 and effects.verdicts[0].trips == 1
    assert "'hub-x'" in effects.verdicts[0].reason and "campus-b/v1/dev/d1/up" in effects.verdicts[0].reason
    # A message of an older connection, seen after we already stepped away from it: counted only.
    guard.foreign("campus-b/v1/dev/d2/up", generation=0)
    assert guard.trips == 1


def test_hold_off_doubles_up_to_its_cap_and_starts_over_after_a_quiet_spell():
    guard, effects, clock = make_guard()
    for generation in range(1, 8):
        guard.foreign("campus-b/v1/dev/d1/up", generation)
        clock.now += effects.verdicts[-1].hold_off_s
    holds = [v.hold_off_s for v in effects.verdicts]
    assert holds == [30.0, 60.0, 120.0, 240.0, 480.0, MAX_HOLD_OFF_S, MAX_HOLD_OFF_S]
    clock.now += RESET_AFTER_S + 1
    guard.foreign("campus-b/v1/dev/d1/up", 8)
    assert effects.verdicts[-1].hold_off_s == FIRST_HOLD_OFF_S and effects.verdicts[-1].trips == 8


def test_problem_is_reported_through_the_hold_off_and_a_while_after():
    guard, _, clock = make_guard()
    assert guard.problem() is None and not guard.stepped_away
    guard.foreign("campus-b/v1/dev/d1/up", 1)
    assert guard.stepped_away and guard.problem() is not None
    clock.now += FIRST_HOLD_OFF_S + 1
    assert not guard.stepped_away and guard.problem() is not None
    clock.now += REPORTED_AFTER_HOLD_OFF_S
    assert guard.problem() is None


def test_a_hostile_topic_cannot_forge_log_lines():
    guard, effects, _ = make_guard()
    guard.foreign("campus-b/v1/dev/x\nCRITICAL hub.auth: forged/up", 1)
    reason = effects.verdicts[0].reason
    assert "\n" not in reason and "\\n" in reason


def test_filters_with_multi_level_wildcards_are_refused():
    with pytest.raises(ValueError):
        SessionGuard(("campus-a/#",), Recorder(), clock=Clock())
