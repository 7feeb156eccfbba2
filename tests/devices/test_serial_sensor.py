"""The line-based serial sensor: parsing, garbage lines, unplug/replug on a pseudo-terminal."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Callable

import pytest

from devices.base import SensorSample
from devices.pty_port import VirtualSerialPort
from devices.sensor.serial_line import LineParser, SerialLineSensorSource


def run(coro):
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)


@pytest.mark.parametrize(("line", "expected"), [
    ("temp=23.5", [("temperature", 23.5, "°C")]),
    ("T:23.5,H:40", [("temperature", 23.5, "°C"), ("humidity", 40.0, "%")]),
    ("temperature=21.0 humidity=41.2 co2=612", [("temperature", 21.0, "°C"), ("humidity", 41.2, "%"),
                                                 ("co2", 612.0, "ppm")]),
    ("CO2: 800ppm; RH: 35%", [("co2", 800.0, "ppm"), ("humidity", 35.0, "%")]),
    ("  t=-4.25  ", [("temperature", -4.25, "°C")]),
])
def test_parses_common_line_formats(line: str, expected: list) -> None:
    p = LineParser()
    assert [(s.metric, s.value, s.unit) for s in p.parse(line, 1.0)] == expected
    assert p.garbage_lines == 0


@pytest.mark.parametrize("line", [
    "hello world", "temp=", "temp=abc", "T:nan", "T:inf", "=23", "23.5", "T:1.2.3", "\x00\x13\x88",
])
def test_garbage_lines_are_counted_not_fatal(line: str) -> None:
    p = LineParser()
    assert p.parse(line, 1.0) == []
    assert p.garbage_lines == 1


def test_battery_and_signal_are_kept_not_emitted_and_unknown_keys_counted() -> None:
    p = LineParser(aliases={"p": ("pressure", "hPa")})
    assert p.parse("bat=87 rssi=-71 P=1013.2 wind=3", 1.0) == [SensorSample("pressure", 1013.2, "hPa", 1.0)]
    assert (p.battery_pct, p.signal_dbm, p.unknown_fields, p.garbage_lines) == (87.0, -71, 1, 0)


class Reader:
    def __init__(self, src: SerialLineSensorSource) -> None:
        self.src = src
        self.samples: list[SensorSample] = []
        self.task = asyncio.create_task(self._go())

    async def _go(self) -> None:
        async for s in self.src:
            self.samples.append(s)

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.task.done():
                self.task.result()
            assert time.monotonic() < deadline, f"timed out; samples={self.samples}"
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def test_reads_a_pty_through_garbage_and_an_unplug(tmp_path: Path) -> None:
    port = VirtualSerialPort(tmp_path / "ttySENSOR")
    port.replug()

    async def main() -> None:
        src = SerialLineSensorSource(str(port.path), backoff_initial_s=0.02, backoff_max_s=0.05)
        r = Reader(src)
        await r.until(lambda: src.link.is_open)
        port.write(b"T:21.5,H:40\r\n")
        port.write(b"\xff\xfe\x00garbage\x01\n")            # binary noise: one garbage line
        port.write(b"x" * 600)                              # an endless line, then its end
        port.write(b"yyy\nco2=700\n")
        await r.until(lambda: len(r.samples) == 3)
        assert src.garbage_lines == 2
        port.unplug()
        await r.until(lambda: src.link.faults >= 2)         # the read error, then failed reopens
        port.replug()
        await r.until(lambda: src.link.is_open and src.link.opens == 2)
        port.write(b"temp=19.0\nbat=55\n")
        await r.until(lambda: len(r.samples) == 4 and src.battery_pct == 55.0)
        await r.close()
        assert [(s.metric, s.value) for s in r.samples] == [
            ("temperature", 21.5), ("humidity", 40.0), ("co2", 700.0), ("temperature", 19.0)]
        assert src.faults == src.link.faults + 2

    try:
        run(main())
    finally:
        port.close()


def test_cancelling_the_reader_closes_the_port(tmp_path: Path) -> None:
    port = VirtualSerialPort(tmp_path / "tty")
    port.replug()

    async def main() -> SerialLineSensorSource:
        src = SerialLineSensorSource(str(port.path))
        r = Reader(src)
        await r.until(lambda: src.link.is_open)
        started = time.monotonic()
        await r.close()
        assert time.monotonic() - started < 1.0
        return src

    try:
        src = run(main())
        assert not src.link.is_open
    finally:
        port.close()
