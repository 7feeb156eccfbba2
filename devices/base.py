"""What every device integration provides: a :class:`Source` of readings.

Layout (one folder per integration, same file names in each, like Home
Assistant integrations)::

    devices/base.py           Source protocol + reading dataclasses
    devices/qr/source.py      QR scanners (scripted queue, line-oriented streams)
    devices/sensor/source.py  room sensors (simulated random walk)
    devices/sensor/serial_line.py  line-based serial sensors (``T:23.5,H:40``)
    devices/qr/camera.py      QR camera: frames decoded with pyzbar
    devices/fingerprint/      R30x fingerprint modules (codec, driver, pty emulator)
    devices/zkteco/           ZKTeco ADMS ("iclock") push protocol, pure parsing
    devices/serial_link.py    a serial port that reopens itself (unplug/replug)
    devices/_pump.py          blocking driver loop in a thread -> async iterator

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


@dataclass(frozen=True)
class FingerprintMatch:
    """A fingerprint module matched a finger to the template stored at ``page_id``.

    ``score`` is normalised to 0..1; ``raw_score`` is what the module reported.
    Templates never leave the module: only this result travels on.
    """

    page_id: int
    score: float
    raw_score: int
    at: float


Reading = Union[QrRead, SensorSample, FingerprintMatch]


@runtime_checkable
class Source(Protocol):
    """An asyncio async iterable of readings; ``name`` is used in logs and stats.

    Hardware drivers also expose ``faults: int`` (I/O errors, unplugs, garbage
    packets counted since construction), which the edge agent adds to its
    heartbeat's ``error_count``; sources that know them expose
    ``battery_pct`` / ``signal_dbm`` (``None`` = unknown). These are optional
    attributes, read with ``getattr(source, "faults", 0)``.
    """

    name: str

    def __aiter__(self) -> AsyncIterator[Reading]: ...
