"""The R30x driver against the emulated module on a pseudo-terminal: matches, unplug, garbage."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Callable

from devices.base import FingerprintMatch
from devices.fingerprint.emulator import R30xEmulator
from devices.fingerprint.r30x import GEN_IMG, SEARCH, STORE, R30xError, R30xSource, TemplateJob


def run(coro):
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)


def source(path: Path, **kw: object) -> R30xSource:
    opts: dict[str, object] = dict(poll_interval_s=0.01, backoff_initial_s=0.02, backoff_max_s=0.1,
                                   ack_timeout_s=0.3)
    opts.update(kw)
    return R30xSource(str(path), **opts)  # type: ignore[arg-type]


class Reader:
    """Iterates a source in a task, keeping every match."""

    def __init__(self, src: R30xSource) -> None:
        self.src = src
        self.matches: list[FingerprintMatch] = []
        self.task = asyncio.create_task(self._go())

    async def _go(self) -> None:
        async for m in self.src:
            self.matches.append(m)

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.task.done():
                self.task.result()
            assert time.monotonic() < deadline, f"timed out; matches={self.matches} faults={self.src.faults}"
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def test_a_touch_gives_one_match_with_a_normalised_score(tmp_path: Path) -> None:
    emu = R30xEmulator(tmp_path / "fp", templates={7: b"t7", 8: b"t8"}).start()

    async def main() -> None:
        r = Reader(source(emu.path, score_full_scale=200))
        emu.place_finger(7, score=150, touch_polls=5)  # held for 5 polls: still one read
        await r.until(lambda: emu.fingers_waiting == 0 and r.matches)
        emu.place_finger(None)                          # an unknown finger
        emu.place_finger(8, score=400)
        await r.until(lambda: len(r.matches) == 2)
        await r.close()
        assert [(m.page_id, m.score, m.raw_score) for m in r.matches] == [(7, 0.75, 150), (8, 1.0, 400)]
        assert r.src.no_match == 1 and r.src.faults == 0 and emu.handshakes == 1

    try:
        run(main())
    finally:
        emu.close()


def test_low_scores_are_not_matches(tmp_path: Path) -> None:
    emu = R30xEmulator(tmp_path / "fp", templates={3: b"t"}).start()

    async def main() -> None:
        r = Reader(source(emu.path, min_score=0.5))
        emu.place_finger(3, score=40)
        emu.place_finger(3, score=160)
        await r.until(lambda: len(r.matches) == 1)
        await r.close()
        assert r.matches[0].raw_score == 160 and r.src.rejected == 1

    try:
        run(main())
    finally:
        emu.close()


def test_unplug_and_replug_under_the_same_symlink(tmp_path: Path) -> None:
    emu = R30xEmulator(tmp_path / "fp", templates={1: b"a", 2: b"b"}).start()
    first_pts = emu.path.resolve()

    async def main() -> None:
        r = Reader(source(emu.path))
        emu.place_finger(1)
        await r.until(lambda: len(r.matches) == 1)
        emu.unplug()
        assert not emu.path.exists()
        await r.until(lambda: r.src.faults >= 2)  # the read error, then failed reopens
        emu.replug()
        emu.place_finger(2)
        await r.until(lambda: len(r.matches) == 2)
        await r.close()
        assert [m.page_id for m in r.matches] == [1, 2]
        assert r.src.handshakes == 2  # VfyPwd again on the new connection

    try:
        run(main())
        # os.openpty may hand back the same /dev/pts number; the symlink is what must hold.
        assert emu.path.is_symlink() and first_pts.exists()
    finally:
        emu.close()


def test_garbage_bytes_are_survived_and_counted(tmp_path: Path) -> None:
    emu = R30xEmulator(tmp_path / "fp", templates={5: b"x"}).start()

    async def main() -> None:
        r = Reader(source(emu.path))
        await r.until(lambda: emu.commands[GEN_IMG] >= 2)
        # Line noise, a fake header with a bad checksum, and a stray data packet.
        emu.inject_garbage(b"\x00\xff\x13" + b"\xef\x01\xff\xff\xff\xff\x07\x00\x03\x00\x00\x00" + b"\xef")
        await r.until(lambda: r.src.faults >= 1)
        emu.place_finger(5, score=100)
        await r.until(lambda: len(r.matches) == 1)
        await r.close()
        assert r.matches[0].page_id == 5
        assert emu.handshakes == 1  # resynchronised inside the stream, no reconnect needed

    try:
        run(main())
    finally:
        emu.close()


def test_wrong_password_is_a_fault_and_retried(tmp_path: Path) -> None:
    emu = R30xEmulator(tmp_path / "fp", password=0x1234, templates={1: b"a"}).start()

    async def main() -> None:
        r = Reader(source(emu.path, password=0))
        await r.until(lambda: r.src.faults >= 2)
        assert emu.handshakes == 0 and emu.commands[SEARCH] == 0
        emu.password = 0  # e.g. the module was reset
        emu.place_finger(1)
        await r.until(lambda: len(r.matches) == 1, timeout=8)
        await r.close()

    try:
        run(main())
    finally:
        emu.close()


def test_templates_are_stored_and_deleted_on_the_module(tmp_path: Path) -> None:
    emu = R30xEmulator(tmp_path / "fp", capacity=100).start()
    template = bytes(range(256)) * 2  # 512 bytes: four data packets

    async def main() -> list[BaseException | None]:
        src = source(emu.path, capacity=100)
        results: list[BaseException | None] = []
        src.enqueue_template(TemplateJob(9, template, results.append))
        src.enqueue_template(TemplateJob(500, template, results.append))  # beyond capacity
        r = Reader(src)
        await r.until(lambda: len(results) == 2)
        emu.place_finger(9, score=120)
        await r.until(lambda: len(r.matches) == 1)  # the enrolled template now matches
        src.enqueue_template(TemplateJob(9, None, results.append))
        await r.until(lambda: len(results) == 3)
        await r.close()
        return results

    try:
        results = run(main())
        assert results[0] is None and isinstance(results[1], R30xError) and results[2] is None
        assert emu.commands[STORE] == 2 and 9 not in emu.templates
    finally:
        emu.close()
