"""Threshold rules on simulated time: duration, hysteresis, escalation, scope (hub/domain/thresholds.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hub.domain.alarms import Alarm
from hub.domain.thresholds import (
    RuleBook,
    RuleState,
    ThresholdRule,
    evaluate,
    reconcile,
    rule_problem,
    step,
)

T0 = datetime(2026, 5, 4, 13, 0, tzinfo=timezone.utc)
HOT = ThresholdRule(1, "temperature", "above", 30.0, 28.0, 300, "major")
VERY_HOT = ThresholdRule(2, "temperature", "above", 35.0, 33.0, 60, "critical")
COLD = ThresholdRule(3, "temperature", "below", 12.0, 14.0, 600, "minor")
LEAK = ThresholdRule(4, "water_leak", "above", 0.5, 0.5, 0, "critical")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(rules, readings, states=None):
    """Feed (second, value) readings; return the final states and every verdict's severity per reading."""
    states = dict(states or {})
    severities = []
    for second, value in readings:
        changed, verdicts = evaluate(rules, states, value, "°C", at(second))
        states.update(changed)
        severities.append({v.alarm_type: v.severity for v in verdicts})
    return states, severities


def test_above_30_for_5_minutes_trips_only_after_5_minutes():
    readings = [(s, 31.0) for s in range(0, 301, 30)]
    states, severities = run([HOT], readings)
    assert all(s["temperature_high"] is None for s in severities[:-1])
    assert severities[-1]["temperature_high"] == "major"
    assert states[1].active and states[1].pending_since == at(0)


def test_one_reading_back_under_the_trip_level_restarts_the_duration():
    readings = [(0, 31.0), (200, 31.0), (230, 29.5), (260, 31.0), (500, 31.0), (560, 31.0)]
    _, severities = run([HOT], readings)
    assert [s["temperature_high"] for s in severities] == [None, None, None, None, None, "major"]


def test_hysteresis_keeps_the_alarm_until_the_clear_level():
    readings = [(0, 31.0), (300, 31.0), (330, 29.0), (360, 28.5), (390, 28.0)]
    _, severities = run([HOT], readings)
    assert [s["temperature_high"] for s in severities] == [None, "major", "major", "major", None]


def test_a_higher_severity_rule_escalates_the_same_alarm_type_and_steps_back_down():
    readings = [(0, 36.0), (60, 36.0), (300, 36.0), (330, 32.0), (360, 27.0)]
    _, severities = run([HOT, VERY_HOT], readings)
    assert [s["temperature_high"] for s in severities] == [None, "critical", "critical", "major", None]


def test_above_and_below_rules_of_one_metric_are_separate_alarm_types():
    _, severities = run([HOT, COLD], [(0, 11.0), (600, 11.0)])
    assert severities[-1] == {"temperature_high": None, "temperature_low": "minor"}


def test_a_rule_without_duration_trips_on_the_first_reading():
    _, severities = run([LEAK], [(0, 0.0), (5, 1.0), (10, 0.0)])
    assert [s["water_leak_high"] for s in severities] == [None, "critical", None]


def test_late_replayed_readings_do_not_move_a_rule_back_in_time():
    state = step(HOT, RuleState(), 31.0, at(100))
    assert step(HOT, state, 20.0, at(50)) is state


def test_restored_state_keeps_counting_the_duration():
    restored = {1: RuleState(pending_since=at(0), active=False, last_ts=at(240))}
    _, severities = run([HOT], [(300, 31.0)], restored)
    assert severities[0]["temperature_high"] == "major"


def test_reconcile_raises_once_escalates_and_clears():
    states, _ = run([HOT, VERY_HOT], [(0, 36.0), (300, 36.0)])
    _, verdicts = evaluate([HOT, VERY_HOT], states, 36.0, "°C", at(310))
    change = reconcile(None, verdicts[0], device_id="d", room_id="r")
    assert change.kind == "raised" and change.alarm.severity == "critical" and change.alarm.id == 0
    assert change.alarm.message == "temperature 36 °C above 35 for 1 min"
    alarm = Alarm(7, "d", "r", "temperature_high", "critical", "active_acked", at(310), 36.0, "m",
                  acked_by="ops", details={"peak_severity": "critical"})
    assert reconcile(alarm, verdicts[0], device_id="d", room_id="r") is None  # same severity: nothing to write
    _, verdicts = evaluate([HOT, VERY_HOT], states, 32.0, "°C", at(320))
    lowered = reconcile(alarm, verdicts[0], device_id="d", room_id="r").alarm
    assert lowered.severity == "major" and lowered.state == "active_acked"  # de-escalation keeps the ack
    _, verdicts = evaluate([HOT, VERY_HOT], states, 20.0, "°C", at(330))
    cleared = reconcile(alarm, verdicts[0], device_id="d", room_id="r")
    assert cleared.kind == "cleared" and cleared.alarm.state == "cleared_acked"
    assert cleared.alarm.cleared_by == "system"


def test_scope_room_overrides_room_type_overrides_campus_per_alarm_type():
    server_hot = ThresholdRule(10, "temperature", "above", 27.0, 25.0, 120, "major", room_type="server_room")
    room_hot = ThresholdRule(11, "temperature", "above", 24.0, 23.0, 60, "minor", room_id="r-lab")
    book = RuleBook((HOT, VERY_HOT, COLD, LEAK, server_hot, room_hot),
                    {"r-lab": "server_room", "r-srv": "server_room", "r-101": "lecture_hall"})
    assert book.for_room("r-101")["temperature"] == (HOT, VERY_HOT, COLD)
    assert book.for_room("r-srv")["temperature"] == (COLD, server_hot)  # the campus "below" rule still applies
    assert book.for_room("r-lab")["temperature"] == (COLD, room_hot)
    assert book.for_room("r-101")["water_leak"] == (LEAK,)


def test_disabled_rules_do_not_apply():
    off = ThresholdRule(5, "co2", "above", 1000.0, 900.0, 0, "warning", enabled=False)
    assert "co2" not in RuleBook((off,)).for_room("r")


@pytest.mark.parametrize("args, field", [
    (("sideways", 30, 28, 0, "major"), "op"),
    (("above", 30, 28, 0, "fatal"), "severity"),
    (("above", 30, 31, 0, "major"), "clear_value"),
    (("below", 12, 11, 0, "major"), "clear_value"),
    (("above", 30, 28, -1, "major"), "duration_s"),
    (("above", 30, 28, 0, "major", "lab", "r-1"), "room_id"),
])
def test_invalid_rules_are_refused_with_the_field(args, field):
    assert rule_problem(*args)[0] == field
    with pytest.raises(ValueError):
        ThresholdRule(1, "temperature", *args[:3], args[3], args[4], *args[5:])
