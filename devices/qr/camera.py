"""QR camera: grey frames from a pluggable frame source, decoded with pyzbar (libzbar0).

Frame sources (all blocking, run in the driver thread):

* :class:`ImageDirectoryFrames`: image files in a folder (PNG, JPEG, … via
  Pillow), in name order, then new files as they appear: a camera or a
  capture tool dropping snapshots, or tests.
* :class:`RawVideoFrames`: a capture command writing raw 8-bit grey frames
  to stdout; :func:`v4l2_command` builds the ffmpeg command line for a V4L2
  camera (``/dev/video0``). The command exiting (camera unplugged) is a
  fault: it is restarted with backoff.
* :class:`IterableFrames`: frames from any iterable (tests, other code).

Debouncing: a code held in front of the camera is seen in many consecutive
frames but read once; it is read again only after it has been out of sight
for ``debounce_s``.
"""
from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable, Iterable, Iterator, Protocol, Sequence

from .._pump import Emit, pump
from ..base import QrRead

log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".gif", ".tif", ".tiff", ".webp"})
#: The longest text the wire format takes (``QrScan.text``).
MAX_TEXT = 512


@dataclass(frozen=True)
class Frame:
    """One 8-bit greyscale image, row-major, ``width * height`` bytes; ``at`` = capture time."""

    pixels: bytes
    width: int
    height: int
    at: float

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1 or len(self.pixels) != self.width * self.height:
            raise ValueError(f"frame of {len(self.pixels)} bytes is not {self.width}x{self.height} grey")


class FrameError(Exception):
    """One frame could not be read (a corrupt file); the source goes on."""


class CameraDown(Exception):
    """The frame source failed as a whole (unplugged, capture command died)."""


class FrameSource(Protocol):
    """``frames(stop)`` yields frames until ``stop`` is set, raising :class:`FrameError`
    for a bad frame (iteration may continue) or :class:`CameraDown` when it failed."""

    def frames(self, stop: threading.Event) -> Iterator["Frame | FrameError"]: ...


def decode_qr(frame: Frame) -> list[str]:
    """The QR texts in ``frame`` (pyzbar; needs the system ``libzbar0``)."""
    from pyzbar.pyzbar import ZBarSymbol, decode  # import late: a clear error if libzbar0 is missing

    found = decode((frame.pixels, frame.width, frame.height), symbols=[ZBarSymbol.QRCODE])
    return [d.data.decode("utf-8", "replace")[:MAX_TEXT] for d in found if d.data]


def load_image(path: "str | Path", at: float | None = None) -> Frame:
    """Read an image file as a grey :class:`Frame`; raises :class:`FrameError` if it is not one."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            grey = img.convert("L")
            return Frame(grey.tobytes(), grey.width, grey.height,
                         os.path.getmtime(path) if at is None else at)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise FrameError(f"{path}: {exc}") from exc


class IterableFrames:
    """Frames (or image paths) from an iterable, read once."""

    def __init__(self, items: "Iterable[Frame | str | Path]", clock: Callable[[], float] = time.time) -> None:
        self._items = items
        self._clock = clock

    def frames(self, stop: threading.Event) -> Iterator["Frame | FrameError"]:
        for item in self._items:
            if stop.is_set():
                return
            if isinstance(item, Frame):
                yield item
            else:
                try:
                    yield load_image(item, self._clock())
                except FrameError as exc:
                    yield exc


class ImageDirectoryFrames:
    """Every image file of ``path`` in name order, then each new or rewritten file once, polling every ``interval_s``.

    A file is known by its name, size and modification time: a camera that overwrites one
    snapshot file is read at each rewrite, and a file caught half-written (a bad frame) is
    read again once its writer has finished with it.
    ``delete_after``: remove each file once decoded (a spool folder that must not grow); a
    file that cannot be decoded is removed when it is still unchanged one poll later.
    A missing folder is :class:`CameraDown` (retried by the camera with backoff).
    """

    def __init__(self, path: "str | Path", *, interval_s: float = 0.2, delete_after: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self.delete_after = delete_after
        self._clock = clock
        self._read: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) when last read
        self._unreadable: set[str] = set()  # names whose last read was a bad frame

    def _images(self) -> Iterator[tuple[str, tuple[int, int]]]:
        """(name, (size, mtime_ns)) of each image file in the folder; OSError if the folder cannot be read."""
        with os.scandir(self.path) as listing:
            for entry in listing:
                if not (entry.is_file() and Path(entry.name).suffix.lower() in _IMAGE_SUFFIXES):
                    continue
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue  # deleted between the listing and now: as if listed a moment later
                yield entry.name, (st.st_size, st.st_mtime_ns)

    def frames(self, stop: threading.Event) -> Iterator["Frame | FrameError"]:
        while not stop.is_set():
            try:
                entries = sorted(self._images())
            except OSError as exc:
                raise CameraDown(f"{self.path}: {exc}") from exc
            # Forget names no longer present so the map stays as small as the folder.
            present = dict(entries)
            for gone in self._read.keys() - present.keys():
                del self._read[gone]
            self._unreadable &= present.keys()
            for name, signature in entries:
                if stop.is_set():
                    break
                file = self.path / name
                if self._read.get(name) == signature:
                    if self.delete_after and name in self._unreadable:
                        file.unlink(missing_ok=True)  # still bad a poll later: not being written
                    continue
                self._read[name] = signature
                try:
                    frame = load_image(file, self._clock())
                except FrameError as exc:
                    self._unreadable.add(name)  # read again only once the file changes
                    yield exc
                    continue
                self._unreadable.discard(name)
                yield frame
                if self.delete_after:
                    file.unlink(missing_ok=True)
            if stop.wait(self.interval_s):
                return


def v4l2_command(device: str, width: int, height: int, fps: float = 5.0) -> list[str]:
    """ffmpeg reading a V4L2 camera, writing raw grey frames of ``width`` x ``height`` to stdout."""
    return ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "v4l2", "-i", device,
            "-vf", f"fps={fps},scale={width}:{height}", "-pix_fmt", "gray", "-f", "rawvideo", "-"]


class RawVideoFrames:
    """Frames of ``width * height`` grey bytes read from a capture command's stdout."""

    def __init__(self, argv: Sequence[str], width: int, height: int,
                 clock: Callable[[], float] = time.time) -> None:
        if not argv:
            raise ValueError("a capture command is needed")
        self.argv = list(argv)
        self.width = width
        self.height = height
        self._clock = clock

    def frames(self, stop: threading.Event) -> Iterator["Frame | FrameError"]:
        size = self.width * self.height
        try:
            proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL)
        except OSError as exc:
            raise CameraDown(f"cannot start {self.argv[0]}: {exc}") from exc
        assert proc.stdout is not None
        try:
            while not stop.is_set():
                buf = bytearray()
                while len(buf) < size:
                    chunk = proc.stdout.read(size - len(buf))
                    if not chunk:
                        raise CameraDown(f"{self.argv[0]} ended (exit {proc.poll()})")
                    buf += chunk
                yield Frame(bytes(buf), self.width, self.height, self._clock())
        finally:
            # Closing stdout first: a blocked read elsewhere cannot hold the process.
            proc.kill()
            proc.stdout.close()
            proc.wait()


class Debouncer:
    """Reads a code once while it stays in view; again after ``hold_s`` out of sight."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self._last_seen: dict[str, float] = {}

    def new_codes(self, texts: Iterable[str], at: float) -> list[str]:
        fresh = []
        for text in dict.fromkeys(texts):
            last = self._last_seen.get(text)
            if last is None or at - last > self.hold_s:
                fresh.append(text)
            self._last_seen[text] = at
        if len(self._last_seen) > 64:  # prune codes long out of sight
            self._last_seen = {t: s for t, s in self._last_seen.items() if at - s <= self.hold_s}
        return fresh


class QrCameraSource:
    """A camera as a :class:`~devices.base.Source` of QR reads.

    ``faults`` counts bad frames and camera failures; on a failure the frame
    source is reopened with exponential backoff (``backoff_initial_s`` up to
    ``backoff_max_s``). A finite frame source (e.g. :class:`IterableFrames`)
    ends the iteration when exhausted.
    """

    def __init__(self, frames: FrameSource, *, name: str = "qr-camera", debounce_s: float = 2.0,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 10.0,
                 decoder: Callable[[Frame], list[str]] = decode_qr) -> None:
        if debounce_s < 0:
            raise ValueError("debounce_s must be >= 0")
        self.name = name
        self.source = frames
        self.debounce_s = debounce_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._decode = decoder
        self.faults = 0
        self.frames_read = 0
        self.codes_read = 0

    def __aiter__(self) -> AsyncIterator[QrRead]:
        return pump(self._work, name=self.name)

    def _work(self, emit: Emit[QrRead], stop: threading.Event) -> None:
        debounce = Debouncer(self.debounce_s)
        delay = self.backoff_initial_s
        while not stop.is_set():
            try:
                for frame in self.source.frames(stop):
                    if isinstance(frame, FrameError):
                        self.faults += 1
                        log.warning("%s: skipped a bad frame: %s", self.name, frame)
                        continue
                    self.frames_read += 1
                    delay = self.backoff_initial_s
                    for text in debounce.new_codes(self._decode(frame), frame.at):
                        self.codes_read += 1
                        if not emit(QrRead(text, frame.at)):
                            return
                return  # a finite source is exhausted (or stop was set)
            except CameraDown as exc:
                self.faults += 1
                log.warning("%s: %s; retrying in %.1fs", self.name, exc, delay)
                if stop.wait(delay):
                    return
                delay = min(delay * 2, self.backoff_max_s)
