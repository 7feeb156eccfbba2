"""Anomalies in a room's hourly telemetry: seasonal slots, the robust seasonal baseline, severity, the alarm step.

Pure: no I/O, time is passed in. The detectors are fitted and run by
hub/services/anomaly_model.py; this module holds the rules both share and
the one the hub uses (the baseline; why, with figures: docs/analytics.md,
"Predictive maintenance").

**An hour of a series.** A series is one device's one metric. Its hour is the
roll-up of ``sensor_readings_hourly`` (count ``n``, mean, min, max); an
hour with no row is an hour with ``n = 0``.

**The robust seasonal baseline** (:class:`SeriesBaseline`), fitted per series
on a few weeks of hours:

- ``expected[slot]``: the median of the hourly means in each hour of the
  week (168 slots, UTC; a slot with no history falls back to the median of
  its hour of day, then of the whole series). Medians, so the anomalies in
  the history (there always are some) do not move it;
- ``scale``: 1.4826 × the MAD of the residuals (mean − expected, each week
  against the medians of the other weeks: :func:`held_out_residuals`), floored
  at :data:`RELATIVE_FLOOR` of the series' typical level so a very steady
  sensor is not alarmed by a tenth of a degree;
- the same for the log of the within-hour spread (max − min) and for the
  reading count.

An hour's score is the largest of three robust z-scores: the level (either
way: ``high`` or ``low``), a spread that collapsed (``stuck``: the sensor
repeats one value) and a count that fell (``dropout``: readings missing).
An hour is unusual at :data:`THRESHOLD` or more; its severity grows with the
score (:func:`severity_for`).

**The alarm** (:func:`anomaly_change`): one ``telemetry_anomaly`` alarm per
device, raised once :data:`RAISE_AFTER_UNUSUAL_HOURS` of its last
:data:`RAISE_WINDOW_HOURS` hours were unusual (in any of its metrics: a
single unusual hour, most often a class that did not take place, is recorded
but not alarmed; bench/anomaly_eval.py counts what that saves), updated
(never re-raised) while unusual hours continue, escalated if the score
grows, and cleared by ``system`` once :data:`CLEAR_AFTER_NORMAL_HOURS`
scored hours in a row were normal. The device actor applies the step, so
the lifecycle is the one every alarm has (hub/domain/alarms.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Sequence

import numpy as np

from .alarms import SYSTEM, Alarm, AlarmChange, most_severe, new_alarm

#: The alarm type of an unusual hour of telemetry.
ANOMALY_ALARM = "telemetry_anomaly"
Kind = Literal["high", "low", "stuck", "dropout"]
KINDS: tuple[str, ...] = ("high", "low", "stuck", "dropout")
SLOTS = 168
#: Robust z-score at which an hour is unusual.
THRESHOLD = 6.0
#: Scores at these multiples of :data:`THRESHOLD` are minor, major (below: warning). Never critical:
#: a statistical surprise is a reason to look, not an emergency (threshold rules say what is dangerous).
SEVERITY_STEPS: tuple[tuple[float, str], ...] = ((4.0, "major"), (2.0, "minor"), (1.0, "warning"))
#: The level's scale is at least this share of the series' typical level (|median|).
RELATIVE_FLOOR = 0.01
#: An absolute floor under every scale (units of the metric), for series that sit at zero.
ABSOLUTE_FLOOR = 1e-3
#: A spread this small is "no change at all" (the sensor repeats one value).
STUCK_SPREAD = 1e-9
#: Stuck needs at least this many readings in the hour (one reading always has spread 0).
STUCK_MIN_READINGS = 3
#: A series flat in at least this share of its history's hours (a door contact) is never called stuck.
FLAT_SHARE_LIMIT = 0.05
#: The offset added to a spread before its log, as a share of the level's scale floor.
SPREAD_OFFSET = 0.01
#: The least scale of the log spread's residuals.
LOG_SPREAD_FLOOR = 0.05
#: The count's scale is at least this share of the expected count.
COUNT_FLOOR = 0.1
#: An alarm is raised once this many of the device's last :data:`RAISE_WINDOW_HOURS` scored hours were unusual.
RAISE_AFTER_UNUSUAL_HOURS = 2
RAISE_WINDOW_HOURS = 3
#: An open anomaly alarm clears after this many scored hours in a row without anything unusual.
CLEAR_AFTER_NORMAL_HOURS = 2
#: MAD to standard deviation, for normally distributed noise.
MAD_TO_SD = 1.4826


def slot_of(hour: datetime) -> int:
    """The hour of the week (0 = Monday 00:00 UTC … 167) of an hour's start."""
    at = hour.astimezone(timezone.utc)
    return at.weekday() * 24 + at.hour


def slots_of_epoch_hours(hours: np.ndarray) -> np.ndarray:
    """:func:`slot_of` for hours given as whole hours since 1970-01-01 UTC (a Thursday)."""
    days = hours // 24
    return ((days + 3) % 7) * 24 + hours % 24


def robust_scale(values: np.ndarray, floor: float) -> float:
    """1.4826 × median absolute deviation from the median, at least ``floor``; ``floor`` if empty."""
    if values.size == 0:
        return floor
    mad = float(np.median(np.abs(values - np.median(values))))
    return max(MAD_TO_SD * mad, floor)


def _medians_by(groups: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """The median of ``values`` per group 0..size-1 (NaN for an empty group), vectorised: the values are
    laid out as a (most in one group × size) matrix padded with NaN."""
    counts = np.bincount(groups, minlength=size)
    order = np.argsort(groups, kind="stable")
    ordered = groups[order]
    rank = np.arange(groups.size) - (np.cumsum(counts) - counts)[ordered]
    table = np.full((max(int(counts.max()), 1), size), np.nan)
    table[rank, ordered] = values[order]
    out = np.full(size, np.nan)
    seen = counts > 0
    out[seen] = np.nanmedian(table[:, seen], axis=0)
    return out


def seasonal_medians(slots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The median of ``values`` per hour-of-week slot (168), falling back to the hour of day, then all."""
    if values.size == 0:
        return np.zeros(SLOTS)
    out = _medians_by(slots, values, SLOTS)
    by_hour = _medians_by(slots % 24, values, 24)
    by_hour[np.isnan(by_hour)] = float(np.median(values))
    missing = np.isnan(out)
    out[missing] = by_hour[np.arange(SLOTS)[missing] % 24]
    return out


def held_out_residuals(slots: np.ndarray, weeks: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Residuals of each week's values from the slot medians of the *other* weeks (of itself when there
    is one week only). In-sample residuals would understate the scale: with four weeks, each slot's
    median sits among its own four samples, and new weeks then look more surprising than they are."""
    if values.size == 0:
        return values
    unique = np.unique(weeks)
    if unique.size < 2:
        return values - seasonal_medians(slots, values)[slots]
    out = np.empty(values.size)
    for week in unique:
        mine = weeks == week
        out[mine] = values[mine] - seasonal_medians(slots[~mine], values[~mine])[slots[mine]]
    return out


@dataclass(frozen=True)
class SeriesBaseline:
    """The fitted baseline of one series (see the module docstring). JSON-able by :meth:`to_json`."""

    expected: tuple[float, ...]
    scale: float
    spread_expected: tuple[float, ...]
    spread_scale: float
    #: The share of the history's hours with a spread of (almost) zero: a sensor that is often
    #: flat (a door contact) is never called stuck for being flat.
    flat_share: float
    n_expected: float
    n_scale: float
    #: Added to a spread before its log (the log of a flat hour's 0 is then finite).
    spread_offset: float = ABSOLUTE_FLOOR

    def to_json(self) -> dict[str, Any]:
        return {"expected": [round(v, 6) for v in self.expected], "scale": self.scale,
                "spread_expected": [round(v, 6) for v in self.spread_expected], "spread_scale": self.spread_scale,
                "flat_share": self.flat_share, "n_expected": self.n_expected, "n_scale": self.n_scale,
                "spread_offset": self.spread_offset}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SeriesBaseline":
        return cls(tuple(data["expected"]), float(data["scale"]), tuple(data["spread_expected"]),
                   float(data["spread_scale"]), float(data["flat_share"]), float(data["n_expected"]),
                   float(data["n_scale"]), float(data["spread_offset"]))


def fit_baseline(hours: np.ndarray, n: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> SeriesBaseline:
    """Fit one series from its hours (epoch hours), counts, means and spreads (hours with n = 0 included:
    they count for the expected count only)."""
    seen = n > 0
    slots = slots_of_epoch_hours(hours)
    expected = seasonal_medians(slots[seen], mean[seen])
    level = float(np.median(np.abs(mean[seen]))) if seen.any() else 0.0
    floor = max(RELATIVE_FLOOR * level, ABSOLUTE_FLOOR)
    weeks = (hours[seen] - hours[0]) // SLOTS if hours.size else hours
    scale = robust_scale(held_out_residuals(slots[seen], weeks, mean[seen]), floor)
    # The spread is compared on a log scale: it is positive and varies by factors (a full room's CO2
    # moves ten times more within the hour than an empty one's); "no change at all" is then far out.
    log_spread = np.log(spread[seen] + floor * SPREAD_OFFSET)
    spread_expected = seasonal_medians(slots[seen], log_spread)
    spread_scale = robust_scale(held_out_residuals(slots[seen], weeks, log_spread), LOG_SPREAD_FLOOR)
    flat_share = float(np.mean(spread[seen] <= STUCK_SPREAD)) if seen.any() else 1.0
    n_expected = float(np.median(n)) if n.size else 0.0
    n_scale = robust_scale(n.astype(float), max(COUNT_FLOOR * n_expected, 1.0))
    return SeriesBaseline(tuple(float(v) for v in expected), scale, tuple(float(v) for v in spread_expected),
                          spread_scale, flat_share, n_expected, n_scale, floor * SPREAD_OFFSET)


@dataclass(frozen=True)
class HourScore:
    """An hour's score under a baseline: the largest of its three z-scores, and which one it was."""

    score: float
    kind: str
    expected: float

    @property
    def unusual(self) -> bool:
        return self.score >= THRESHOLD


def score_hour(fit: SeriesBaseline, slot: int, n: int, mean: float | None, spread: float) -> HourScore:
    """Score one hour of a series (``mean`` None when ``n`` is 0)."""
    expected = fit.expected[slot]
    dropout = max(0.0, (fit.n_expected - n) / fit.n_scale) if fit.n_expected > 0 else 0.0
    if n == 0 or mean is None:
        return HourScore(dropout, "dropout", expected)
    level = (mean - expected) / fit.scale
    candidates: list[tuple[float, str]] = [(abs(level), "high" if level > 0 else "low"), (dropout, "dropout")]
    if n >= STUCK_MIN_READINGS and spread <= STUCK_SPREAD and fit.flat_share < FLAT_SHARE_LIMIT:
        flat = float(np.log(fit.spread_offset))
        candidates.append((max(0.0, (fit.spread_expected[slot] - flat) / fit.spread_scale), "stuck"))
    score, kind = max(candidates)
    return HourScore(score, kind, expected)


def severity_for(score: float) -> str | None:
    """The alarm severity of an hour's score; None below :data:`THRESHOLD`."""
    for multiple, severity in SEVERITY_STEPS:
        if score >= multiple * THRESHOLD:
            return severity
    return None


# --- the alarm ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnomalyFinding:
    """One unusual hour of one metric of a device."""

    metric: str
    kind: str
    score: float
    value: float | None
    expected: float
    unit: str = ""

    @property
    def severity(self) -> str:
        return severity_for(self.score) or "warning"


@dataclass(frozen=True)
class AnomalyReport:
    """Ask a device actor: the scored ``hour`` of its telemetry. ``findings`` empty: every scored metric was
    normal. Reply: the :class:`~hub.domain.alarms.Alarm` after the step (committed), or None (no alarm)."""

    hour: datetime
    findings: tuple[AnomalyFinding, ...] = field(default_factory=tuple)
    #: How many of the device's :data:`RAISE_WINDOW_HOURS` - 1 hours before ``hour`` were unusual.
    unusual_before: int = 0


def finding_words(finding: AnomalyFinding) -> str:
    """One plain sentence about a finding, with its unit."""
    unit = f" {finding.unit}" if finding.unit else ""
    if finding.kind == "dropout" or finding.value is None:
        return f"{finding.metric}: fewer readings than usual arrived"
    if finding.kind == "stuck":
        return f"{finding.metric}: the sensor kept repeating {finding.value:.4g}{unit}"
    direction = "higher" if finding.kind == "high" else "lower"
    return (f"{finding.metric}: {finding.value:.4g}{unit} on average, {direction} than the usual"
            f" {finding.expected:.4g}{unit} for this hour")


def _details(report: AnomalyReport, base: dict[str, Any]) -> dict[str, Any]:
    metrics = dict(base.get("metrics", {}))
    for f in report.findings:
        metrics[f.metric] = {"kind": f.kind, "score": round(f.score, 2), "severity": f.severity,
                             "value": f.value, "expected": round(f.expected, 4), "unit": f.unit,
                             "hour": report.hour.isoformat()}
    return {**base, "metrics": metrics, "last_unusual_hour": report.hour.isoformat(),
            "unusual_hours": int(base.get("unusual_hours", 0)) + 1}


def anomaly_change(
    open_alarm: Alarm | None, report: AnomalyReport, *, device_id: str, room_id: str | None,
) -> AlarmChange | None:
    """The ``telemetry_anomaly`` alarm's step for one scored hour (see the module docstring)."""
    if not report.findings:
        if open_alarm is None:
            return None
        last = open_alarm.details.get("last_unusual_hour")
        last_hour = datetime.fromisoformat(last) if isinstance(last, str) else open_alarm.raised_at
        if report.hour - last_hour < timedelta(hours=CLEAR_AFTER_NORMAL_HOURS):
            return None
        return AlarmChange("cleared", open_alarm.clear(
            SYSTEM, report.hour + timedelta(hours=1),
            f"{open_alarm.message}; readings usual again for {CLEAR_AFTER_NORMAL_HOURS} hours"))
    if open_alarm is None and 1 + report.unusual_before < RAISE_AFTER_UNUSUAL_HOURS:
        return None  # one unusual hour alone is recorded, not alarmed (an empty room at class time)
    worst = max(report.findings, key=lambda f: f.score)
    severity = most_severe([f.severity for f in report.findings]) or "warning"
    message = "unusual readings: " + "; ".join(finding_words(f) for f in sorted(
        report.findings, key=lambda f: -f.score))
    at = report.hour + timedelta(hours=1)
    if open_alarm is None:
        alarm = new_alarm(0, device_id, room_id, ANOMALY_ALARM, severity, at, value=worst.value, message=message,
                          details=_details(report, {"raised_at_hour": report.hour.isoformat(),
                                                    "unusual_hours": report.unusual_before}))
        return AlarmChange("raised", alarm)
    # Severity follows the hour's findings (an escalation needs a fresh acknowledgement).
    stepped = replace(open_alarm.with_severity(severity, at, worst.value, message),
                      value=worst.value, message=message, updated_at=at)
    return AlarmChange("updated", replace(stepped, details=_details(report, stepped.details)))


def hour_floor(at: datetime) -> datetime:
    at = at.astimezone(timezone.utc)
    return at.replace(minute=0, second=0, microsecond=0)


def epoch_hour(at: datetime) -> int:
    return int(at.astimezone(timezone.utc).timestamp() // 3600)


def from_epoch_hour(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * 3600, timezone.utc)


def summarize_findings(findings: Sequence[AnomalyFinding]) -> dict[str, int]:
    """How many findings of each kind (for logs and the report)."""
    out = {kind: 0 for kind in KINDS}
    for f in findings:
        out[f.kind] = out.get(f.kind, 0) + 1
    return out
