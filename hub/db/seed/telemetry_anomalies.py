"""Seeded hourly telemetry with daily and weekly rhythms and injected anomalies (labelled).

:func:`synthetic_history` is pure (numpy, one seeded generator): the demo
(:func:`ensure_anomaly_demo`), bench/anomaly_eval.py and the tests all draw
their history from it, so the evaluation measures the detectors on the same
kind of data the demo shows.

A room's climate, hour by hour (levels close to the simulator's, hub/app/simulator.py):

- occupancy: a weekly timetable per room (weekdays 08:00-18:00, each hour
  taught with probability 0.6 by a class of 40-100 % of the room, attendance
  varying by -25 to +10 % from week to week), a class cancelled in one week
  in ten, nobody at night or at the weekend;
- CO2 (ppm): 420 outdoors plus up to ~480 with a full room, building over
  two hours; temperature (°C): a daily cycle warmest at 15:00, +0.8 with a
  full room, and the weather (day to day, around the season's norm); humidity (%): 42 plus
  people plus the weather; each with noise, a within-hour spread that grows
  with occupancy, and about 60 readings an hour.

Injected anomalies (each an episode of consecutive hours of one series, labelled hour by hour):

- ``spike``: 1-3 hours far off the level (mostly up);
- ``drift``: 1.5-4 days of a linear ramp away from the truth (a sensor losing
  its calibration), back to normal after it;
- ``stuck``: 4-24 hours repeating the last value (spread 0);
- ``dropout``: 2-12 hours with 0-30 % of the readings (an hour with none has no row).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import asyncpg
import numpy as np

from hub.domain.anomaly import epoch_hour, hour_floor

from .._pool import Database

INJECTED_KINDS: tuple[str, ...] = ("spike", "drift", "stuck", "dropout")
#: (metric, unit)
METRICS: tuple[tuple[str, str], ...] = (("co2", "ppm"), ("temperature", "°C"), ("humidity", "%"))
READINGS_PER_HOUR = 60
_SPIKE = {"co2": (400.0, 900.0), "temperature": (3.0, 6.0), "humidity": (12.0, 25.0)}
_DRIFT = {"co2": (250.0, 500.0), "temperature": (2.0, 4.0), "humidity": (8.0, 15.0)}
_LENGTH = {"spike": (1, 3), "drift": (36, 96), "stuck": (4, 24), "dropout": (2, 12)}


@dataclass(frozen=True)
class HourRow:
    """One row of ``sensor_readings_hourly``."""

    device_id: str
    metric: str
    unit: str
    hour: int  # whole hours since 1970-01-01 UTC
    n: int
    mean: float
    min: float
    max: float


@dataclass(frozen=True)
class Episode:
    device_id: str
    metric: str
    kind: str
    first_hour: int
    hours: int


@dataclass
class SyntheticHistory:
    rows: list[HourRow]
    episodes: list[Episode] = field(default_factory=list)

    def labels(self) -> dict[tuple[str, str, int], int]:
        """(device, metric, hour) → index of its episode, for every injected hour."""
        out = {}
        for i, e in enumerate(self.episodes):
            for h in range(e.first_hour, e.first_hour + e.hours):
                out[(e.device_id, e.metric, h)] = i
        return out


def _weather(rng: np.random.Generator, days: int, sd: float, persistence: float = 0.85) -> np.ndarray:
    """Day-to-day weather around the season's norm: AR(1), stationary standard deviation ``sd``."""
    out = np.zeros(days)
    out[0] = rng.normal(0, sd)
    innovation = sd * np.sqrt(1 - persistence ** 2)
    for d in range(1, days):
        out[d] = persistence * out[d - 1] + rng.normal(0, innovation)
    return out


def _climate(rng: np.random.Generator, hours: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One room's true (mean, spread) per metric over ``hours``."""
    weekday = ((hours // 24) + 3) % 7
    hod = hours % 24
    timetable = (rng.random((5, 10)) < 0.6) * rng.uniform(0.4, 1.0, (5, 10))
    occ = np.zeros(hours.size)
    teaching = (weekday < 5) & (hod >= 8) & (hod < 18)
    occ[teaching] = timetable[weekday[teaching], hod[teaching] - 8]
    weeks = (hours - hours[0]) // 168
    cancelled = rng.random((int(weeks.max()) + 1, 5, 10)) < 0.1
    occ[teaching] *= ~cancelled[weeks[teaching], weekday[teaching], hod[teaching] - 8]
    # Attendance varies from week to week.
    occ[teaching] *= rng.uniform(0.75, 1.1, (int(weeks.max()) + 1, 5, 10))[
        weeks[teaching], weekday[teaching], hod[teaching] - 8]
    build = occ.copy()
    build[1:] = 0.7 * occ[1:] + 0.3 * occ[:-1]
    days = (hours - hours[0]) // 24
    n_days = int(days.max()) + 1
    weather_t = _weather(rng, n_days, 0.6)
    weather_h = _weather(rng, n_days, 2.5)
    offset = rng.normal(0, 1)
    co2 = 420 + 15 * offset + 480 * build + rng.normal(0, 15, hours.size)
    temp = (20.5 + 0.5 * offset + 1.2 * np.sin(2 * np.pi * (hod - 9) / 24) + 0.8 * build + weather_t[days]
            + rng.normal(0, 0.12, hours.size))
    hum = 42 + 2 * offset + 5 * build + weather_h[days] + rng.normal(0, 0.8, hours.size)
    wobble = rng.lognormal(0, 0.2, (3, hours.size))
    return {
        "co2": (co2, (25 + 180 * occ) * wobble[0]),
        "temperature": (temp, (0.15 + 0.4 * occ) * wobble[1]),
        "humidity": (hum, (0.8 + 2.0 * occ) * wobble[2]),
    }


def synthetic_history(
    devices: list[str], *, end_hour: int, hours: int, seed: int = 1,
    kinds: tuple[str, ...] = INJECTED_KINDS, episodes_per_series_week: float = 0.4,
    planted: tuple[Episode, ...] = (),
) -> SyntheticHistory:
    """``hours`` of hourly rows ending before ``end_hour`` (epoch hours) for each device and metric, with
    random episodes of ``kinds`` (about ``episodes_per_series_week`` per series and week) plus the
    ``planted`` ones; none overlaps another of its series."""
    rng = np.random.default_rng(seed)
    span = np.arange(end_hour - hours, end_hour, dtype=np.int64)
    rows: list[HourRow] = []
    episodes: list[Episode] = []
    for device in devices:
        climate = _climate(rng, span)
        for metric, unit in METRICS:
            mean, spread = (a.copy() for a in climate[metric])
            n = READINGS_PER_HOUR - rng.poisson(0.5, span.size)
            taken = np.zeros(span.size, dtype=bool)
            mine = [e for e in planted if e.device_id == device and e.metric == metric]
            count = rng.poisson(episodes_per_series_week * hours / 168) if kinds else 0
            for _ in range(count):
                kind = str(rng.choice(list(kinds)))
                length = int(rng.integers(_LENGTH[kind][0], _LENGTH[kind][1] + 1))
                start = int(rng.integers(1, max(2, span.size - length)))
                mine.append(Episode(device, metric, kind, int(span[start]), length))
            for e in mine:
                i0 = int(e.first_hour - span[0])
                i1 = min(i0 + e.hours, span.size)
                if i0 < 1 or i0 >= span.size or taken[max(0, i0 - 2):i1 + 2].any():
                    continue
                taken[i0:i1] = True
                _inject(rng, e.kind, metric, mean, spread, n, i0, i1)
                episodes.append(Episode(e.device_id, metric, e.kind, e.first_hour, i1 - i0))
            low = mean - spread * rng.uniform(0.3, 0.7, span.size)
            for i in range(span.size):
                if n[i] <= 0:
                    continue
                rows.append(HourRow(device, metric, unit, int(span[i]), int(n[i]), float(mean[i]),
                                    float(min(low[i], mean[i])), float(max(low[i] + spread[i], mean[i]))))
    return SyntheticHistory(rows, episodes)


def _inject(rng: np.random.Generator, kind: str, metric: str, mean: np.ndarray, spread: np.ndarray,
            n: np.ndarray, i0: int, i1: int) -> None:
    if kind == "spike":
        sign = 1.0 if rng.random() < 0.8 else -1.0
        mean[i0:i1] += sign * rng.uniform(*_SPIKE[metric])
    elif kind == "drift":
        mean[i0:i1] += np.linspace(0, 1, i1 - i0 + 1)[1:] * rng.uniform(*_DRIFT[metric])
    elif kind == "stuck":
        mean[i0:i1] = mean[i0 - 1]
        spread[i0:i1] = 0.0
    elif kind == "dropout":
        n[i0:i1] = np.floor(n[i0:i1] * rng.uniform(0.0, 0.3, i1 - i0)).astype(n.dtype)
    else:
        raise ValueError(f"unknown anomaly kind {kind!r}")


# --- the demo ----------------------------------------------------------------------------------------

#: Days of seeded history (the fit needs a week at least; four give every hour of the week four samples).
DEMO_DAYS = 28
#: Rooms (the first ones of the campus) that get seeded history.
DEMO_ROOMS = 6


def demo_plants(devices: list[str], end_hour: int) -> tuple[Episode, ...]:
    """Recent anomalies the demo shows at once: a spike a day ago (its alarm cleared since), a sensor stuck
    for the last 8 hours, a drift still growing, readings missing for 4 hours yesterday."""
    plants = []
    shapes = (("co2", "spike", 30, 2), ("temperature", "stuck", 8, 8), ("humidity", "drift", 40, 40),
              ("co2", "dropout", 22, 4))
    for device, (metric, kind, ago, length) in zip(devices[1:], shapes):
        plants.append(Episode(device, metric, kind, end_hour - ago, length))
    return tuple(plants)


async def ensure_anomaly_demo(db: Database, device_ids: list[str], *, now: datetime) -> int:
    """For ``campushub demo`` only (not in ``ensure_campus``: the hub tests' devices keep no history, so the
    anomaly actor of a test hub has nothing to fit): :data:`DEMO_DAYS` of hourly history for the first
    :data:`DEMO_ROOMS` devices, ending at the hour before ``now``, unless they have older history already
    (seeded once; rows that exist are kept). The hub's anomaly actor then fits at start and scores the last
    two days: the planted episodes (:func:`demo_plants`) show as unusual hours and alarms. Returns the rows
    written: one transaction, one COPY of about 12,000 rows."""
    devices = device_ids[:DEMO_ROOMS]
    if not devices:
        return 0
    return await db.run(lambda conn: _seed_demo(conn, devices, now), transaction=True)


async def _seed_demo(conn: asyncpg.Connection, devices: list[str], now: datetime) -> int:
    end = hour_floor(now)
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM sensor_readings_hourly WHERE device_id = ANY($1::text[])"
                           " AND hour < $2)", devices, end - timedelta(days=2)):
        return 0
    end_hour = epoch_hour(end)
    history = synthetic_history(devices, end_hour=end_hour, hours=DEMO_DAYS * 24, seed=16,
                                kinds=("spike",), episodes_per_series_week=0.1,
                                planted=demo_plants(devices, end_hour))
    have = {(r["device_id"], r["metric"], epoch_hour(r["hour"])) for r in await conn.fetch(
        "SELECT device_id, metric, hour FROM sensor_readings_hourly WHERE device_id = ANY($1::text[])"
        " AND hour >= $2", devices, end - timedelta(days=DEMO_DAYS))}
    records = [(r.device_id, r.metric, datetime.fromtimestamp(r.hour * 3600, timezone.utc), r.unit, r.n,
                r.mean * r.n, r.min, r.max) for r in history.rows if (r.device_id, r.metric, r.hour) not in have]
    await conn.copy_records_to_table("sensor_readings_hourly", records=records,
                                     columns=["device_id", "metric", "hour", "unit", "n", "sum", "min", "max"])
    return len(records)
