"""Room sensor sources. Only a simulated one for now; real drivers come later."""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Iterable

from ..base import SensorSample


@dataclass(frozen=True)
class MetricSpec:
    """A metric's unit, resting value, plausible bounds and per-tick noise."""

    metric: str
    unit: str
    baseline: float
    low: float
    high: float
    step: float
    decimals: int = 1


DEFAULT_METRICS: dict[str, MetricSpec] = {
    "temperature": MetricSpec("temperature", "°C", 21.5, 15.0, 30.0, 0.15, 2),
    "humidity": MetricSpec("humidity", "%", 45.0, 20.0, 80.0, 0.8, 1),
    "co2": MetricSpec("co2", "ppm", 600.0, 400.0, 2000.0, 25.0, 0),
}


class SimulatedSensorSource:
    """A mean-reverting random walk per metric, one sample per metric every ``interval_s``.

    The first samples come immediately. Deterministic for a given ``seed``
    (values only; ``at`` is the wall clock). Each iteration restarts the walk
    from the baselines with the same seed. Never blocks; cancellation stops it
    at the next sleep.
    """

    def __init__(
        self,
        *,
        interval_s: float = 5.0,
        metrics: Iterable["str | MetricSpec"] = ("temperature", "humidity", "co2"),
        seed: int | None = 0,
        name: str = "simulated-sensor",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        specs = []
        for m in metrics:
            if isinstance(m, MetricSpec):
                specs.append(m)
            elif m in DEFAULT_METRICS:
                specs.append(DEFAULT_METRICS[m])
            else:
                raise ValueError(f"unknown metric {m!r} (known: {', '.join(DEFAULT_METRICS)})")
        if not specs:
            raise ValueError("at least one metric is needed")
        self.name = name
        self.interval_s = interval_s
        self.metrics: tuple[MetricSpec, ...] = tuple(specs)
        self._seed = seed
        self._clock = clock
        self._sleep = sleep

    async def __aiter__(self) -> AsyncIterator[SensorSample]:
        rng = random.Random(self._seed)
        values = {spec.metric: spec.baseline for spec in self.metrics}
        while True:
            at = self._clock()
            for spec in self.metrics:
                v = values[spec.metric]
                # Pull 5 % of the way back to baseline each tick so the walk stays plausible.
                v += rng.gauss(0.0, spec.step) + 0.05 * (spec.baseline - v)
                v = min(spec.high, max(spec.low, v))
                values[spec.metric] = v
                yield SensorSample(spec.metric, round(v, spec.decimals), spec.unit, at)
            await self._sleep(self.interval_s)
