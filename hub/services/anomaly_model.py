"""The two anomaly detectors for hourly telemetry, fitted per (metric, room type): scikit-learn and a baseline.

- :class:`BaselineDetector`: the robust seasonal baseline of hub/domain/anomaly.py
  (median per hour of the week, MAD scale; level, stuck and dropout scores),
  one fit per series inside each (metric, room type) group.
- :class:`ForestDetector`: an :class:`sklearn.ensemble.IsolationForest` per
  (metric, room type) on each hour's features (:func:`forest_features`: the
  level and its change from the previous hour, both in the series' own
  robust units, the within-hour spread and reading count relative to the
  series' usual, the hour of day as a circle, the weekday). An hour is
  unusual when its isolation score is above the training hours'
  ``1 - contamination`` quantile.

bench/anomaly_eval.py measures both on injected anomalies (precision and
recall per kind); the hub uses :data:`HUB_DETECTOR`, the better one there
(figures and why: docs/analytics.md, "Predictive maintenance").

Everything here is CPU-bound and synchronous: the anomaly actor runs
:func:`fit_groups` in a worker thread (``trio.to_thread.run_sync``); the
fitted objects are immutable once returned and may be read from any thread.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence

import numpy as np

from hub.domain.anomaly import (
    STUCK_MIN_READINGS,
    STUCK_SPREAD,
    THRESHOLD,
    HourScore,
    SeriesBaseline,
    fit_baseline,
    robust_scale,
    score_hour,
    slots_of_epoch_hours,
)

#: The detector the hub runs (bench/anomaly_eval.py: better F1 on every injected kind; docs/analytics.md).
HUB_DETECTOR = "baseline"
DETECTORS = ("baseline", "isolation_forest")
#: A series needs this many hours with readings before it is fitted (a week: every hour of the week seen once).
MIN_FIT_HOURS = 168
#: The forest's assumed share of unusual hours in its training history.
FOREST_CONTAMINATION = 0.01


@dataclass
class SeriesHistory:
    """The hours of one series (one device's one metric), dense: an hour without readings has ``n`` 0,
    ``mean`` NaN and ``spread`` 0. ``hours`` are whole hours since 1970-01-01 UTC, ascending, no gaps."""

    device_id: str
    metric: str
    room_type: str
    unit: str
    hours: np.ndarray
    n: np.ndarray
    mean: np.ndarray
    spread: np.ndarray

    @property
    def key(self) -> tuple[str, str]:
        return self.device_id, self.metric

    @property
    def group(self) -> tuple[str, str]:
        return self.metric, self.room_type

    def window(self, first_hour: int, end_hour: int) -> "SeriesHistory":
        """The hours in [first_hour, end_hour)."""
        keep = (self.hours >= first_hour) & (self.hours < end_hour)
        return SeriesHistory(self.device_id, self.metric, self.room_type, self.unit, self.hours[keep],
                             self.n[keep], self.mean[keep], self.spread[keep])


def dense_series(device_id: str, metric: str, room_type: str, unit: str,
                 rows: Iterable[tuple[int, int, float, float]], start: int, end: int) -> SeriesHistory:
    """A dense :class:`SeriesHistory` of [max(start, first row), end) from ``(epoch hour, n, mean, spread)`` rows;
    hours before the series' first row are not counted (a device installed later did not drop out)."""
    by_hour = {h: (n, mean, spread) for h, n, mean, spread in rows if start <= h < end}
    first = min(by_hour) if by_hour else end
    hours = np.arange(first, end, dtype=np.int64)
    n = np.zeros(hours.size, dtype=np.int64)
    mean = np.full(hours.size, np.nan)
    spread = np.zeros(hours.size)
    for i, h in enumerate(hours.tolist()):
        got = by_hour.get(h)
        if got is not None and got[0] > 0:
            n[i], mean[i], spread[i] = got
    return SeriesHistory(device_id, metric, room_type, unit, hours, n, mean, spread)


class Fitted(Protocol):
    """A fitted detector of one (metric, room type) group."""

    detector: str

    def score(self, series: SeriesHistory, first: int) -> list[HourScore]:
        """Scores of ``series``' hours from index ``first`` on (earlier hours serve as context); [] if the
        series was not fitted."""
        ...

    def state(self) -> dict[str, Any]:
        """What a restarted hub needs to score without refitting (JSON), or {} if it must refit."""
        ...


@dataclass
class FitReport:
    """Figures of one group's fit (stored with the model: docs/analytics.md)."""

    series: int = 0
    hours: int = 0
    skipped_series: int = 0
    flagged_share: float = 0.0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return {"series": self.series, "hours": self.hours, "skipped_series": self.skipped_series,
                "flagged_share": round(self.flagged_share, 5), "fit_seconds": round(self.seconds, 3), **self.extra}


# --- the robust seasonal baseline ------------------------------------------------------------------


@dataclass
class FittedBaseline:
    fits: dict[str, SeriesBaseline]
    detector: str = "baseline"

    def score(self, series: SeriesHistory, first: int) -> list[HourScore]:
        fit = self.fits.get(series.device_id)
        if fit is None:
            return []
        slots = slots_of_epoch_hours(series.hours)
        out = []
        for i in range(first, series.hours.size):
            n = int(series.n[i])
            mean = None if n == 0 else float(series.mean[i])
            out.append(score_hour(fit, int(slots[i]), n, mean, float(series.spread[i])))
        return out

    def state(self) -> dict[str, Any]:
        return {device: fit.to_json() for device, fit in self.fits.items()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "FittedBaseline":
        return cls({device: SeriesBaseline.from_json(data) for device, data in state.items()})


class BaselineDetector:
    name = "baseline"

    def fit(self, group: Sequence[SeriesHistory]) -> tuple[FittedBaseline, FitReport]:
        started = time.perf_counter()
        report = FitReport()
        fits: dict[str, SeriesBaseline] = {}
        for s in group:
            if int((s.n > 0).sum()) < MIN_FIT_HOURS:
                report.skipped_series += 1
                continue
            fits[s.device_id] = fit_baseline(s.hours, s.n, s.mean, s.spread)
            report.series += 1
            report.hours += int(s.hours.size)
        fitted = FittedBaseline(fits)
        flagged = sum(sum(1 for h in fitted.score(s, 0) if h.unusual) for s in group if s.device_id in fits)
        report.flagged_share = flagged / report.hours if report.hours else 0.0
        report.seconds = time.perf_counter() - started
        return fitted, report


# --- the isolation forest ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesNorm:
    """A series' own robust units, for the forest's features."""

    median: float
    scale: float
    n_median: float
    spread_median: float


def series_norm(s: SeriesHistory) -> SeriesNorm:
    seen = s.n > 0
    mean = s.mean[seen]
    median = float(np.median(mean)) if mean.size else 0.0
    scale = robust_scale(mean, max(0.01 * abs(median), 1e-3))
    return SeriesNorm(median, scale, float(np.median(s.n)) if s.n.size else 0.0,
                      float(np.median(s.spread[seen])) if mean.size else 0.0)


def forest_features(s: SeriesHistory, norm: SeriesNorm) -> np.ndarray:
    """One row per hour: level, change from the previous hour, log spread ratio, count ratio, hour of day
    (sin, cos), weekday. An hour without readings sits at the usual level with no change."""
    seen = s.n > 0
    level = np.where(seen, (np.nan_to_num(s.mean, nan=norm.median) - norm.median) / norm.scale, 0.0)
    delta = np.zeros_like(level)
    delta[1:] = level[1:] - level[:-1]
    spread_ratio = np.log1p(s.spread / max(norm.spread_median, 1e-9))
    count_ratio = s.n / max(norm.n_median, 1.0)
    hour = s.hours % 24
    weekday = ((s.hours // 24) + 3) % 7
    return np.column_stack([level, delta, spread_ratio, count_ratio, np.sin(2 * np.pi * hour / 24),
                            np.cos(2 * np.pi * hour / 24), weekday]).astype(np.float64)


def _forest_kind(s: SeriesHistory, i: int, norm: SeriesNorm) -> tuple[str, float]:
    if s.n[i] < 0.5 * norm.n_median:
        return "dropout", norm.median
    if s.n[i] >= STUCK_MIN_READINGS and s.spread[i] <= STUCK_SPREAD:
        return "stuck", norm.median
    return ("high" if s.mean[i] >= norm.median else "low"), norm.median


@dataclass
class FittedForest:
    forest: Any  # sklearn.ensemble.IsolationForest (untyped library)
    norms: dict[str, SeriesNorm]
    base: float
    threshold: float
    detector: str = "isolation_forest"

    def _z(self, raw: np.ndarray) -> np.ndarray:
        # Isolation scores as "multiples of the threshold": the threshold maps to THRESHOLD, the median to 0,
        # so the domain's severity steps read them like the baseline's z-scores.
        return THRESHOLD * (raw - self.base) / max(self.threshold - self.base, 1e-9)

    def score(self, series: SeriesHistory, first: int) -> list[HourScore]:
        norm = self.norms.get(series.device_id)
        if norm is None or first >= series.hours.size:
            return []
        raw = -self.forest.score_samples(forest_features(series, norm)[first:])
        z = self._z(raw)
        out = []
        for k, i in enumerate(range(first, series.hours.size)):
            kind, expected = _forest_kind(series, i, norm)
            out.append(HourScore(float(max(z[k], 0.0)), kind, expected))
        return out

    def state(self) -> dict[str, Any]:
        return {}  # refitted at start (a forest is not stored as JSON; pickles are not read from the database)


class ForestDetector:
    name = "isolation_forest"

    def __init__(self, contamination: float = FOREST_CONTAMINATION, n_estimators: int = 100,
                 random_state: int = 0) -> None:
        self.contamination = contamination
        self.n_estimators = n_estimators
        self.random_state = random_state

    def fit(self, group: Sequence[SeriesHistory]) -> tuple[FittedForest, FitReport]:
        from sklearn.ensemble import IsolationForest  # imported when fitting only: a slow import

        started = time.perf_counter()
        report = FitReport()
        norms: dict[str, SeriesNorm] = {}
        rows = []
        for s in group:
            if int((s.n > 0).sum()) < MIN_FIT_HOURS:
                report.skipped_series += 1
                continue
            norms[s.device_id] = norm = series_norm(s)
            rows.append(forest_features(s, norm))
            report.series += 1
            report.hours += int(s.hours.size)
        if not rows:
            raise ValueError("no series with enough history to fit")
        x = np.vstack(rows)
        forest = IsolationForest(n_estimators=self.n_estimators, max_samples=min(256, x.shape[0]),
                                 contamination="auto", random_state=self.random_state).fit(x)
        raw = -forest.score_samples(x)
        threshold = float(np.quantile(raw, 1.0 - self.contamination))
        fitted = FittedForest(forest, norms, float(np.median(raw)), threshold)
        report.flagged_share = float(np.mean(raw >= threshold))
        report.extra = {"contamination": self.contamination, "n_estimators": self.n_estimators}
        report.seconds = time.perf_counter() - started
        return fitted, report


def detector_named(name: str) -> BaselineDetector | ForestDetector:
    if name == "baseline":
        return BaselineDetector()
    if name == "isolation_forest":
        return ForestDetector()
    raise ValueError(f"unknown detector {name!r}")


def fitted_from_state(detector: str, state: dict[str, Any]) -> Fitted | None:
    """A stored fit, or None when the detector must be refitted (the forest)."""
    if detector == "baseline" and state:
        return FittedBaseline.from_state(state)
    return None


@dataclass
class GroupFit:
    metric: str
    room_type: str
    fitted: Fitted
    report: FitReport


def fit_groups(series: Sequence[SeriesHistory], detector: str = HUB_DETECTOR) -> list[GroupFit]:
    """Fit ``detector`` on every (metric, room type) group of ``series``. CPU-bound: run it in a thread.
    Groups without one series of :data:`MIN_FIT_HOURS` are left out."""
    groups: dict[tuple[str, str], list[SeriesHistory]] = {}
    for s in series:
        groups.setdefault(s.group, []).append(s)
    out = []
    for (metric, room_type), members in sorted(groups.items()):
        if not any(int((s.n > 0).sum()) >= MIN_FIT_HOURS for s in members):
            continue
        fitted, report = detector_named(detector).fit(members)
        out.append(GroupFit(metric, room_type, fitted, report))
    return out

