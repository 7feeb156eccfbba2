"""The pure parts of telemetry anomaly detection: seasonal slots, robust baseline math, scores, severity, the alarm step."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from hub.domain.alarms import ACTIVE_STATES
from hub.domain.anomaly import (
    ANOMALY_ALARM,
    CLEAR_AFTER_NORMAL_HOURS,
    MAD_TO_SD,
    RAISE_AFTER_UNUSUAL_HOURS,
    SLOTS,
    THRESHOLD,
    AnomalyFinding,
    AnomalyReport,
    SeriesBaseline,
    anomaly_change,
    epoch_hour,
    fit_baseline,
    from_epoch_hour,
    held_out_residuals,
    robust_scale,
    score_hour,
    seasonal_medians,
    severity_for,
    slot_of,
    slots_of_epoch_hours,
)

MONDAY = datetime(2026, 3, 2, tzinfo=timezone.utc)  # a Monday, 00:00 UTC


def test_slots_are_hours_of_the_utc_week():
    assert slot_of(MONDAY) == 0
    assert slot_of(MONDAY + timedelta(hours=9)) == 9
    assert slot_of(MONDAY + timedelta(days=6, hours=23)) == SLOTS - 1
    assert slot_of(MONDAY + timedelta(days=7)) == 0
    hours = np.array([epoch_hour(MONDAY + timedelta(hours=h)) for h in range(0, 400, 7)])
    assert slots_of_epoch_hours(hours).tolist() == [slot_of(from_epoch_hour(int(h))) for h in hours]


def test_robust_scale_ignores_outliers_and_keeps_its_floor():
    values = np.array([10.0, 11.0, 9.0, 10.0, 10.5, 9.5, 1000.0])
    assert robust_scale(values, 0.01) == pytest.approx(MAD_TO_SD * 0.5)
    assert robust_scale(np.full(5, 3.0), 0.2) == 0.2
    assert robust_scale(np.array([]), 0.7) == 0.7


def test_seasonal_medians_fall_back_to_the_hour_of_day_then_everything():
    slots = np.array([0, 0, 0, 24 + 5, 3])
    values = np.array([1.0, 2.0, 100.0, 7.0, 4.0])
    medians = seasonal_medians(slots, values)
    assert medians[0] == 2.0  # median of its own three
    assert medians[29] == 7.0
    assert medians[5] == 7.0  # Monday 05:00 never seen: Tuesday's 05:00 stands in
    assert medians[24] == 2.0  # Tuesday 00:00: Monday 00:00's median
    assert medians[1] == pytest.approx(np.median(values))  # hour 1 never seen at all


def test_held_out_residuals_compare_each_week_with_the_others():
    slots = np.array([0, 0, 0])
    weeks = np.array([0, 1, 2])
    values = np.array([1.0, 2.0, 6.0])
    # week 0 against median(2, 6) = 4; week 1 against median(1, 6) = 3.5; week 2 against 1.5
    assert held_out_residuals(slots, weeks, values).tolist() == [-3.0, -1.5, 4.5]


def _weeks_of(pattern: list[float], weeks: int, noise: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    start = epoch_hour(MONDAY)
    hours = np.arange(start, start + weeks * SLOTS, dtype=np.int64)
    mean = np.array([pattern[h % 24] for h in range(hours.size)]) + rng.normal(0, noise, hours.size)
    n = np.full(hours.size, 60)
    spread = np.full(hours.size, 2.0) * rng.lognormal(0, 0.1, hours.size)
    return hours, n, mean, spread


def test_a_fitted_baseline_scores_a_normal_hour_low_and_a_spike_high():
    pattern = [20.0] * 8 + [24.0] * 10 + [20.0] * 6  # warmer during the day
    hours, n, mean, spread = _weeks_of(pattern, 4, noise=0.2)
    fit = fit_baseline(hours, n, mean, spread)
    assert fit.expected[9] == pytest.approx(24.0, abs=0.3)
    assert fit.expected[3] == pytest.approx(20.0, abs=0.3)
    normal = score_hour(fit, 9, 60, 24.1, 2.0)
    assert not normal.unusual
    spike = score_hour(fit, 3, 60, 26.0, 2.0)  # 26 °C at 03:00: normal at noon, not at night
    assert spike.unusual and spike.kind == "high" and spike.expected == pytest.approx(20.0, abs=0.3)
    low = score_hour(fit, 9, 60, 18.0, 2.0)
    assert low.unusual and low.kind == "low"


def test_stuck_and_dropout_hours():
    hours, n, mean, spread = _weeks_of([20.0] * 24, 2, noise=0.2)
    fit = fit_baseline(hours, n, mean, spread)
    stuck = score_hour(fit, 10, 60, 20.0, 0.0)  # a usual value, but not one change in 60 readings
    assert stuck.unusual and stuck.kind == "stuck"
    assert not score_hour(fit, 10, 2, 20.0, 0.0).kind == "stuck"  # too few readings to tell
    silent = score_hour(fit, 10, 0, None, 0.0)
    assert silent.unusual and silent.kind == "dropout"
    few = score_hour(fit, 10, 10, 20.0, 1.5)
    assert few.unusual and few.kind == "dropout"
    assert not score_hour(fit, 10, 57, 20.0, 2.0).unusual


def test_a_flat_series_is_never_called_stuck():
    hours, n, mean, _ = _weeks_of([0.0] * 24, 2)
    fit = fit_baseline(hours, n, mean, np.zeros(hours.size))  # a door contact: flat most of the time
    assert score_hour(fit, 10, 60, 0.0, 0.0).kind != "stuck"


def test_baseline_json_round_trip():
    hours, n, mean, spread = _weeks_of([20.0 + h / 10 for h in range(24)], 2, noise=0.1)
    fit = fit_baseline(hours, n, mean, spread)
    again = SeriesBaseline.from_json(fit.to_json())
    for slot, count, value in ((5, 60, 21.0), (30, 0, None), (100, 60, 25.0)):
        assert score_hour(again, slot, count, value, 1.0).score == pytest.approx(
            score_hour(fit, slot, count, value, 1.0).score, rel=1e-4)


def test_severity_grows_with_the_score():
    assert severity_for(THRESHOLD - 0.01) is None
    assert severity_for(THRESHOLD) == "warning"
    assert severity_for(2 * THRESHOLD) == "minor"
    assert severity_for(4 * THRESHOLD) == "major"
    assert severity_for(1000 * THRESHOLD) == "major"  # never critical: thresholds say what is dangerous


def _finding(score: float, metric: str = "co2") -> AnomalyFinding:
    return AnomalyFinding(metric, "high", score, 1400.0, 650.0, "ppm")


def test_one_alarm_while_unusual_hours_last_then_cleared_after_normal_hours():
    h0 = MONDAY + timedelta(hours=10)
    # One unusual hour alone raises nothing (RAISE_AFTER_UNUSUAL_HOURS)...
    assert anomaly_change(None, AnomalyReport(h0 - timedelta(hours=1), (_finding(7.0),)),
                          device_id="dev-1", room_id="room-1") is None
    # ...the second within RAISE_WINDOW_HOURS does.
    raised = anomaly_change(None, AnomalyReport(h0, (_finding(7.0),), unusual_before=RAISE_AFTER_UNUSUAL_HOURS - 1),
                            device_id="dev-1", room_id="room-1")
    assert raised is not None and raised.kind == "raised"
    alarm = raised.alarm
    assert alarm.type == ANOMALY_ALARM and alarm.severity == "warning" and alarm.state in ACTIVE_STATES
    assert "co2: 1400 ppm on average, higher than the usual 650 ppm" in alarm.message
    alarm = alarm.acknowledge("usr-ops", h0 + timedelta(minutes=70))
    # The next hour is unusual too, and worse: the same alarm, escalated (needs acknowledging again).
    step = anomaly_change(alarm, AnomalyReport(h0 + timedelta(hours=1), (_finding(13.0),)),
                          device_id="dev-1", room_id="room-1")
    assert step is not None and step.kind == "updated"
    alarm = step.alarm
    assert alarm.severity == "minor" and alarm.state == "active_unacked"
    assert alarm.details["unusual_hours"] == 3 and alarm.details["peak_severity"] == "minor"
    # One normal hour is not enough to clear...
    assert anomaly_change(alarm, AnomalyReport(h0 + timedelta(hours=2)), device_id="dev-1", room_id="room-1") is None
    # ...CLEAR_AFTER_NORMAL_HOURS after the last unusual one are.
    cleared = anomaly_change(alarm, AnomalyReport(h0 + timedelta(hours=1 + CLEAR_AFTER_NORMAL_HOURS)),
                             device_id="dev-1", room_id="room-1")
    assert cleared is not None and cleared.kind == "cleared"
    assert cleared.alarm.state == "cleared_unacked" and cleared.alarm.cleared_by == "system"
    # Normal hours with no alarm open change nothing.
    assert anomaly_change(None, AnomalyReport(h0), device_id="dev-1", room_id="room-1") is None


def test_several_metrics_share_the_device_alarm_at_the_worst_severity():
    report = AnomalyReport(MONDAY, (_finding(7.0), AnomalyFinding("temperature", "stuck", 30.0, 21.5, 21.0, "°C")),
                           unusual_before=1)
    step = anomaly_change(None, report, device_id="dev-1", room_id=None)
    assert step is not None
    assert step.alarm.severity == "major"
    assert set(step.alarm.details["metrics"]) == {"co2", "temperature"}
    assert step.alarm.message.index("temperature") < step.alarm.message.index("co2")  # worst first
    assert "kept repeating 21.5 °C" in step.alarm.message
