"""What every device integration provides: a :class:`Source` of readings.

Layout (one folder per integration, same file names in each, like Home
Assistant integrations)::

    devices/base.py           Source protocol + reading dataclasses
    devices/qr/source.py      QR scanners (scripted queue, line-oriented streams)
    devices/sensor/source.py  room sensors (simulated random walk for now)

Concurrency contract shared by all sources: a source is an *asyncio* async
iterable. Iterating never blocks the event loop (blocking device I/O runs in
a helper thread), and cancelling the iterating task stops it promptly; a
source may be iterated again after an iteration ended or was cancelled.
This package imports nothing else of CampusHub.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Protocol, Union, runtime_checkable


@dataclass(frozen=True)
class QrRead:
    """One decoded QR code. ``at`` is wall-clock Unix time (seconds) of the read."""

    text: str
    at: float


@dataclass(frozen=True)
class SensorSample:
    """One measurement, e.g. ``SensorSample("co2", 612.0, "ppm", at)``."""

    metric: str
    value: float
    unit: str
    at: float


Reading = Union[QrRead, SensorSample]


@runtime_checkable
class Source(Protocol):
    """An asyncio async iterable of readings; ``name`` is used in logs and stats."""

    name: str

    def __aiter__(self) -> AsyncIterator[Reading]: ...
