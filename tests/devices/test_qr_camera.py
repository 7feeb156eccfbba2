"""The QR camera driver: pyzbar on frames the tests generate with segno, debounce, bad frames, replug."""
from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path

import pytest
import segno
from PIL import Image

# Submodules, not the bare package: see tests/edge_agent/edge_helpers.py.
from devices.base import QrRead
from devices.qr.camera import (
    Debouncer,
    Frame,
    ImageDirectoryFrames,
    IterableFrames,
    QrCameraSource,
    RawVideoFrames,
    decode_qr,
    load_image,
)

TOKEN = "CH1.s-001.1234.abcdefghijklmnop"


def run(coro):  # a plain asyncio loop, whatever the shared conftest imported
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)


def qr_png(path: Path, text: str, scale: int = 4) -> Path:
    # make_qr: segno.make() picks a Micro QR for short texts, which classroom codes never are.
    segno.make_qr(text, error="m").save(str(path), scale=scale, border=4)
    return path


def frame(tmp_path: Path, text: str, at: float) -> Frame:
    return load_image(qr_png(tmp_path / f"{abs(hash(text))}.png", text), at)


async def collect(source: QrCameraSource, n: int, timeout: float = 5.0) -> list[QrRead]:
    out: list[QrRead] = []

    async def go() -> None:
        async for read in source:
            out.append(read)
            if len(out) >= n:
                return

    await asyncio.wait_for(go(), timeout)
    return out


def test_decodes_a_generated_png(tmp_path: Path) -> None:
    f = load_image(qr_png(tmp_path / "a.png", TOKEN), at=5.0)
    assert (f.width, f.height, f.at) == (148, 148, 5.0) and len(f.pixels) == 148 * 148
    assert decode_qr(f) == [TOKEN]
    blank = Frame(bytes([255]) * (64 * 64), 64, 64, 0.0)
    assert decode_qr(blank) == []


def test_two_codes_in_one_frame(tmp_path: Path) -> None:
    a = Image.open(qr_png(tmp_path / "a.png", "first-code")).convert("L")
    b = Image.open(qr_png(tmp_path / "b.png", "second-code")).convert("L")
    both = Image.new("L", (a.width + b.width, max(a.height, b.height)), 255)
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    both.save(tmp_path / "both.png")
    assert sorted(decode_qr(load_image(tmp_path / "both.png", 0.0))) == ["first-code", "second-code"]


def test_frame_must_match_its_size() -> None:
    with pytest.raises(ValueError, match="not 10x10"):
        Frame(b"\x00" * 99, 10, 10, 0.0)


def test_debouncer_reads_a_code_once_while_in_view() -> None:
    d = Debouncer(2.0)
    assert d.new_codes(["A"], 0.0) == ["A"]
    assert d.new_codes(["A", "A"], 0.2) == []            # same frame twice, still in view
    assert d.new_codes(["A", "B"], 0.4) == ["B"]
    assert d.new_codes([], 1.0) == []                    # out of view briefly (a flicker)
    assert d.new_codes(["A"], 2.3) == []                 # back within 2 s of last sight
    assert d.new_codes(["A"], 4.5) == ["A"]              # gone for > 2 s: a new read


def test_camera_debounces_consecutive_frames(tmp_path: Path) -> None:
    a, b = frame(tmp_path, TOKEN, 0), frame(tmp_path, "other", 0)
    at = lambda f, t: Frame(f.pixels, f.width, f.height, t)  # noqa: E731
    blank = Frame(bytes([255]) * (a.width * a.height), a.width, a.height, 0.0)
    frames = [at(a, 0.0), at(a, 0.1), at(a, 0.2), at(b, 0.3), at(blank, 0.4), at(a, 0.5), at(a, 9.0)]
    src = QrCameraSource(IterableFrames(frames), debounce_s=2.0)
    reads = run(collect(src, 3))
    assert [(r.text, r.at) for r in reads] == [(TOKEN, 0.0), ("other", 0.3), (TOKEN, 9.0)]
    assert src.frames_read == 7 and src.faults == 0


def test_directory_source_skips_garbage_files_and_sees_new_ones(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    qr_png(spool / "001.png", "code-1")
    (spool / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")  # garbage
    (spool / "003.jpg").write_bytes(b"")
    (spool / "notes.txt").write_text("ignored: not an image suffix")

    async def main() -> tuple[list[QrRead], int]:
        src = QrCameraSource(ImageDirectoryFrames(spool, interval_s=0.02, delete_after=True), debounce_s=0)
        out: list[QrRead] = []

        async def go() -> None:
            async for read in src:
                out.append(read)
                if len(out) == 1:
                    qr_png(spool / "004.png", "code-2")  # a snapshot arriving later
                if len(out) == 2:
                    return

        await asyncio.wait_for(go(), 5)
        return out, src.faults

    reads, faults = run(main())
    assert [r.text for r in reads] == ["code-1", "code-2"]
    assert faults == 2  # the two unreadable files, each skipped, never fatal
    assert sorted(p.name for p in spool.iterdir()) == ["notes.txt"]  # delete_after


def test_directory_unplugged_then_back(tmp_path: Path) -> None:
    spool = tmp_path / "cam"  # missing: the camera is not there yet

    async def main() -> tuple[list[QrRead], int]:
        src = QrCameraSource(ImageDirectoryFrames(spool, interval_s=0.02), debounce_s=0,
                             backoff_initial_s=0.02, backoff_max_s=0.05)
        task = asyncio.create_task(collect(src, 1))
        await asyncio.sleep(0.2)
        spool.mkdir()
        qr_png(spool / "a.png", "after-replug")
        return await task, src.faults

    reads, faults = run(main())
    assert [r.text for r in reads] == ["after-replug"] and faults >= 2


def test_raw_video_command_restarts_when_it_dies(tmp_path: Path) -> None:
    f = frame(tmp_path, TOKEN, 0)
    raw = tmp_path / "frame.gray"
    raw.write_bytes(f.pixels + f.pixels[: f.width * 10])  # one frame, then a torn one
    # The "camera" writes one frame and exits, as an unplugged V4L2 device makes ffmpeg do.
    argv = [sys.executable, "-c", f"import sys; sys.stdout.buffer.write(open({str(raw)!r}, 'rb').read())"]
    src = QrCameraSource(RawVideoFrames(argv, f.width, f.height), debounce_s=0,
                         backoff_initial_s=0.01, backoff_max_s=0.02)
    started = time.monotonic()
    reads = run(collect(src, 2, timeout=10))
    assert [r.text for r in reads] == [TOKEN, TOKEN]  # read again after the restart
    assert src.faults >= 1 and time.monotonic() - started < 10


def test_a_file_caught_half_written_is_read_once_it_is_complete(tmp_path: Path) -> None:
    spool = tmp_path / "cam"
    spool.mkdir()
    qr_png(tmp_path / "whole.png", "written-slowly")
    whole = (tmp_path / "whole.png").read_bytes()
    (spool / "a.png").write_bytes(whole[: len(whole) // 3])  # the camera is still writing it

    async def main() -> tuple[list[QrRead], int]:
        src = QrCameraSource(ImageDirectoryFrames(spool, interval_s=0.02), debounce_s=0)
        out: list[QrRead] = []

        async def go() -> None:
            async for read in src:
                out.append(read)
                return

        task = asyncio.create_task(asyncio.wait_for(go(), 5))
        while src.faults == 0:  # the torn frame has been seen and skipped
            await asyncio.sleep(0.01)
        (spool / "a.png").write_bytes(whole)  # the writer finishes
        await task
        return out, src.faults

    reads, faults = run(main())
    assert [r.text for r in reads] == ["written-slowly"]
    assert faults == 1


def test_a_file_deleted_while_the_folder_is_listed_makes_no_other_file_read_again(tmp_path: Path, monkeypatch) -> None:
    spool = tmp_path / "cam"
    spool.mkdir()
    qr_png(spool / "a.png", "read-once")
    frames = ImageDirectoryFrames(spool, interval_s=0.01)
    stop = threading.Event()
    source = frames.frames(stop)
    assert decode_qr(next(source)) == ["read-once"]

    real_scandir = os.scandir

    class Vanishing:  # a file listed, then deleted by the camera before its stat
        name, path = "b.png", str(spool / "b.png")

        def is_file(self) -> bool:
            return True

        def stat(self) -> os.stat_result:
            raise FileNotFoundError(self.path)

    class Listing:
        def __init__(self, path: Path) -> None:
            self._inner = real_scandir(path)

        def __enter__(self) -> "Listing":
            return self

        def __exit__(self, *exc: object) -> None:
            self._inner.close()

        def __iter__(self):
            yield Vanishing()
            yield from self._inner

    monkeypatch.setattr(os, "scandir", Listing)
    qr_png(spool / "c.png", "new")
    assert decode_qr(next(source)) == ["new"]  # the next scan: c.png only; a.png is not read again
    stop.set()
