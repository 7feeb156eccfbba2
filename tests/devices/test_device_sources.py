"""Device sources: scripted and line-oriented QR sources, the simulated sensor."""
from __future__ import annotations

import asyncio
import io
import os
import time
from pathlib import Path

import pytest

# Submodules, not the bare package: see tests/edge_agent/edge_helpers.py.
from devices.base import QrRead, SensorSample, Source
from devices.qr.source import QrLineSource, ScriptedQrSource
from devices.sensor.source import DEFAULT_METRICS, SimulatedSensorSource


def run(coro):  # a plain asyncio loop, whatever the shared conftest imported
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)


async def collect(source, n: int | None = None, timeout: float = 2.0) -> list:
    out = []

    async def go() -> None:
        async for reading in source:
            out.append(reading)
            if n is not None and len(out) >= n:
                return

    await asyncio.wait_for(go(), timeout)
    return out


def test_sources_satisfy_the_protocol() -> None:
    assert isinstance(ScriptedQrSource(), Source)
    assert isinstance(QrLineSource(io.BytesIO()), Source)
    assert isinstance(SimulatedSensorSource(), Source)


def test_scripted_source_yields_pushed_texts_until_closed() -> None:
    async def main() -> None:
        src = ScriptedQrSource(clock=lambda: 42.0)
        src.push_nowait("CH1.a")
        await src.push("CH1.b", at=7.5)
        src.queue.put_nowait("raw text")  # plain strings are stamped when read
        src.close()
        assert await collect(src) == [QrRead("CH1.a", 42.0), QrRead("CH1.b", 7.5), QrRead("raw text", 42.0)]

    run(main())


def test_line_source_reads_stream_lines_and_ends_at_eof() -> None:
    data = b"CH1.s1.1.aaaa\r\n\n   \nsecond code\n" + "x".encode() * 600 + b"\n\xff\xfe bad utf8\n"
    readings = run(collect(QrLineSource(io.BytesIO(data))))
    texts = [r.text for r in readings]
    assert texts[:2] == ["CH1.s1.1.aaaa", "second code"]
    assert len(texts[2]) == 512  # cut to the wire format's limit
    assert texts[3].endswith("bad utf8")
    assert all(abs(r.at - time.time()) < 5 for r in readings)
    # text streams work too
    assert [r.text for r in run(collect(QrLineSource(io.StringIO("a\nb\n"))))] == ["a", "b"]


def test_line_source_from_path(tmp_path: Path) -> None:
    path = tmp_path / "scans.txt"
    path.write_text("one\ntwo\n")
    src = QrLineSource.open(path)
    assert [r.text for r in run(collect(src))] == ["one", "two"]
    assert [r.text for r in run(collect(src))] == ["one", "two"]  # re-iterable
    with pytest.raises(FileNotFoundError):
        run(collect(QrLineSource.open(tmp_path / "missing")))


def test_line_source_cancels_promptly_on_a_silent_scanner() -> None:
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(read_fd, "rb")
    try:
        async def main() -> list:
            src = QrLineSource(stream)
            os.write(write_fd, b"first\n")
            got = await collect(src, n=1)
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await collect(src, timeout=0.2)  # the scanner never sends another line
            assert time.monotonic() - started < 1.0
            return got

        assert [r.text for r in run(main())] == ["first"]
    finally:
        os.close(write_fd)
        stream.close()


def test_simulated_sensor_is_seeded_plausible_and_paced() -> None:
    sleeps: list[float] = []

    async def fake_sleep(s: float) -> None:
        sleeps.append(s)

    def make(seed: int) -> SimulatedSensorSource:
        return SimulatedSensorSource(interval_s=2.5, seed=seed, sleep=fake_sleep, clock=lambda: 100.0)

    a = run(collect(make(7), n=300))
    b = run(collect(make(7), n=300))
    c = run(collect(make(8), n=300))
    assert a == b and a != c
    assert all(isinstance(s, SensorSample) and s.at == 100.0 for s in a)
    assert [s.metric for s in a[:3]] == ["temperature", "humidity", "co2"]
    for s in a:
        spec = DEFAULT_METRICS[s.metric]
        assert spec.low <= s.value <= spec.high and s.unit == spec.unit
    assert set(sleeps) == {2.5} and len(sleeps) >= 99  # one sleep per tick of 3 samples


def test_simulated_sensor_real_interval() -> None:
    async def main() -> float:
        src = SimulatedSensorSource(interval_s=0.05, metrics=["co2"])
        started = time.monotonic()
        await collect(src, n=4)
        return time.monotonic() - started

    assert 0.14 <= run(main()) < 1.0


def test_simulated_sensor_rejects_unknown_metrics() -> None:
    with pytest.raises(ValueError, match="pressure"):
        SimulatedSensorSource(metrics=["pressure"])
    with pytest.raises(ValueError):
        SimulatedSensorSource(interval_s=0)
