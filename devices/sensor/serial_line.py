"""Line-based serial sensors: microcontroller boards that print one reading per line.

Accepted lines (fields separated by ``,``, ``;`` or spaces; ``key=value`` or
``key:value``; keys case-insensitive)::

    temp=23.5
    T:23.5,H:40
    temperature=23.5 humidity=41.2 co2=612
    bat=87 rssi=-71                     (battery % / signal dBm: heartbeat fields, not samples)

Each recognised field becomes a :class:`~devices.base.SensorSample`. A line
with no recognisable field, a non-numeric or non-finite value, or longer than
``max_line`` bytes is *garbage*: counted in ``garbage_lines`` and skipped,
never fatal. Unknown keys in an otherwise good line are counted in
``unknown_fields``. Unplug/replug is handled by :class:`~devices.serial_link.SerialLink`.
"""
from __future__ import annotations

import math
import re
import threading
import time
from typing import AsyncIterator, Callable, Mapping

from .._pump import Emit, pump
from ..base import SensorSample
from ..serial_link import LinkDown, SerialLink

#: key (lower case) → (metric, unit). Extend per device with ``aliases``.
DEFAULT_ALIASES: dict[str, tuple[str, str]] = {
    "t": ("temperature", "°C"), "temp": ("temperature", "°C"), "temperature": ("temperature", "°C"),
    "h": ("humidity", "%"), "hum": ("humidity", "%"), "rh": ("humidity", "%"), "humidity": ("humidity", "%"),
    "co2": ("co2", "ppm"), "c": ("co2", "ppm"),
    "noise": ("noise", "dB"), "lux": ("light", "lx"), "light": ("light", "lx"),
}
_BATTERY_KEYS = frozenset({"bat", "battery", "battery_pct"})
_SIGNAL_KEYS = frozenset({"rssi", "signal", "signal_dbm"})
_FIELD_RE = re.compile(r"^([A-Za-z][A-Za-z0-9_]{0,31})\s*[=:]\s*([-+0-9.eE]+)\s*[A-Za-z%°]*$")
_SPLIT_RE = re.compile(r"[,;\s]+(?=[A-Za-z])")


class LineParser:
    """Pure: one line → samples. Keeps the counters and the last battery/signal values."""

    def __init__(self, aliases: "Mapping[str, tuple[str, str]] | None" = None) -> None:
        self.aliases = {k.lower(): v for k, v in {**DEFAULT_ALIASES, **(aliases or {})}.items()}
        self.garbage_lines = 0
        self.unknown_fields = 0
        self.battery_pct: float | None = None
        self.signal_dbm: int | None = None

    def parse(self, line: str, at: float) -> list[SensorSample]:
        line = line.strip()
        if not line:
            return []
        samples: list[SensorSample] = []
        recognised = 0
        for field in _SPLIT_RE.split(line):
            m = _FIELD_RE.match(field.strip())
            if m is None:
                self.garbage_lines += 1
                return []
            key, text = m.group(1).lower(), m.group(2)
            try:
                value = float(text)
            except ValueError:
                self.garbage_lines += 1
                return []
            if not math.isfinite(value):
                self.garbage_lines += 1
                return []
            if key in _BATTERY_KEYS and 0 <= value <= 100:
                self.battery_pct, recognised = value, recognised + 1
            elif key in _SIGNAL_KEYS and -150 <= value <= 0:
                self.signal_dbm, recognised = int(value), recognised + 1
            elif key in self.aliases:
                metric, unit = self.aliases[key]
                samples.append(SensorSample(metric, value, unit, at))
                recognised += 1
            else:
                self.unknown_fields += 1
        if not recognised:
            self.garbage_lines += 1
        return samples


class SerialLineSensorSource:
    """A line-printing sensor on a serial port, as a :class:`~devices.base.Source`.

    ``faults`` = serial errors/unplugs + garbage lines. Blocking reads run in
    the driver thread (see :mod:`devices._pump`); cancelling the consumer
    closes the port within ~0.1 s.
    """

    def __init__(
        self,
        port: str,
        *,
        name: str = "serial-sensor",
        baudrate: int = 9600,
        aliases: "Mapping[str, tuple[str, str]] | None" = None,
        max_line: int = 256,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.link = SerialLink(port, baudrate, backoff_initial_s=backoff_initial_s,
                               backoff_max_s=backoff_max_s)
        self.parser = LineParser(aliases)
        self.max_line = max_line
        self._clock = clock

    @property
    def faults(self) -> int:
        return self.link.faults + self.parser.garbage_lines

    @property
    def garbage_lines(self) -> int:
        return self.parser.garbage_lines

    @property
    def battery_pct(self) -> float | None:
        return self.parser.battery_pct

    @property
    def signal_dbm(self) -> int | None:
        return self.parser.signal_dbm

    def __aiter__(self) -> AsyncIterator[SensorSample]:
        return pump(self._work, name=self.name)

    def _work(self, emit: Emit[SensorSample], stop: threading.Event) -> None:
        try:
            while self.link.ensure_open(stop):
                # A fragment read right after an open fails to parse and counts as
                # garbage, like any other noise: no special case needed.
                pending = b""
                overlong = False  # inside a line already counted as too long
                try:
                    while not stop.is_set():
                        pending += self.link.read(256)
                        *lines, pending = pending.split(b"\n")
                        for raw in lines:
                            if overlong:
                                overlong = False
                                continue
                            for sample in self._parse(raw):
                                if not emit(sample):
                                    return
                        if len(pending) > self.max_line:
                            if not overlong:
                                self.parser.garbage_lines += 1
                            overlong, pending = True, b""
                except LinkDown:
                    continue
        finally:
            self.link.close()

    def _parse(self, raw: bytes) -> list[SensorSample]:
        if len(raw) > self.max_line:
            self.parser.garbage_lines += 1
            return []
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            # Non-ASCII (line noise, wrong baud rate): "°C" suffixes are not sent by boards.
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self.parser.garbage_lines += 1
                return []
        return self.parser.parse(text, self._clock())
