"""An R30x module emulated on a pseudo-terminal, for tests and the demo.

The driver opens ``emulator.path`` (a symlink, like ``/dev/serial/by-id/…``)
exactly as it would open real hardware. Fingers are scripted::

    emu = R30xEmulator(tmp_path / "fp0", templates={7: b"..."})
    emu.start()
    emu.place_finger(page=7, score=180)   # next GenImg sees a finger, Search finds page 7
    emu.place_finger(page=None)           # an unknown finger: Search answers "not found"
    emu.unplug(); emu.replug()            # the pty vanishes, then reappears (new /dev/pts/N)
    emu.inject_garbage(b"\\x00\\xff...")     # line noise before the next answer

Each placed finger stays on the sensor for ``touch_polls`` GenImg polls, then
is lifted. The emulator thread is a daemon; :meth:`close` stops it.
"""
from __future__ import annotations

import collections
import os
import select
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from ..pty_port import VirtualSerialPort
from .r30x import (
    BAD_LOCATION,
    DELETE_CHAR,
    DOWN_CHAR,
    FEATURE_FAIL,
    GEN_IMG,
    IMG2TZ,
    NO_FINGER,
    NOT_FOUND,
    OK,
    PACKET_RECEIVE_ERR,
    PID_COMMAND,
    PID_DATA,
    PID_END,
    SEARCH,
    STORE,
    TEMPLATE_NUM,
    VFY_PWD,
    WRONG_PASSWORD,
    PacketReader,
    ack,
)


@dataclass(frozen=True)
class Finger:
    """``page=None``: a finger the module does not know. ``score``: the raw match score."""

    page: int | None
    score: int = 150
    touch_polls: int = 2


class R30xEmulator:
    def __init__(self, path: "str | Path", *, password: int = 0, capacity: int = 1000,
                 templates: "dict[int, bytes] | None" = None) -> None:
        self.path = Path(path)
        self.password = password
        self.capacity = capacity
        #: page id → template bytes, as stored in the module's flash.
        self.templates: dict[int, bytes] = dict(templates or {})
        self.commands: collections.Counter[int] = collections.Counter()
        self.handshakes = 0
        self._fingers: collections.deque[Finger] = collections.deque()
        self._current: Finger | None = None
        self._polls_left = 0
        self._features: Finger | None = None
        self._char_buffer = bytearray()
        self._receiving_char = False
        self._garbage = bytearray()
        self._lock = threading.Lock()
        self.port = VirtualSerialPort(self.path)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.reader = PacketReader()

    # ------------------------------------------------------------ control

    def start(self) -> "R30xEmulator":
        self.replug()
        return self

    def place_finger(self, page: int | None, score: int = 150, touch_polls: int = 2) -> None:
        with self._lock:
            self._fingers.append(Finger(page, score, touch_polls))

    @property
    def fingers_waiting(self) -> int:
        with self._lock:
            return len(self._fingers) + (self._current is not None)

    def inject_garbage(self, data: bytes) -> None:
        """Sent just before the next answer, as line noise would arrive."""
        with self._lock:
            self._garbage += data

    def unplug(self) -> None:
        """Close the pty (the driver's reads fail with EIO) and remove the symlink."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
        self.port.unplug()

    def replug(self) -> None:
        """A fresh pty (a new ``/dev/pts/N``) behind the same symlink."""
        self.unplug()
        master = self.port.replug()
        self.reader = PacketReader()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(master, self._stop),
                                        name="r30x-emulator", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.unplug()

    # ------------------------------------------------------------- module

    def _serve(self, master: int, stop: threading.Event) -> None:
        while not stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(master, 1024)
            except OSError:
                return
            for packet in self.reader.feed(data):
                reply = self._handle(packet.pid, packet.payload)
                if reply is None:
                    continue
                with self._lock:
                    noise, self._garbage = bytes(self._garbage), bytearray()
                try:
                    os.write(master, noise + reply)
                except OSError:
                    return

    def _handle(self, pid: int, payload: bytes) -> bytes | None:
        if pid in (PID_DATA, PID_END):
            if self._receiving_char:
                self._char_buffer += payload
                if pid == PID_END:
                    self._receiving_char = False
            return None
        if pid != PID_COMMAND or not payload:
            return ack(PACKET_RECEIVE_ERR)
        instruction, params = payload[0], payload[1:]
        self.commands[instruction] += 1
        if instruction == VFY_PWD:
            if len(params) == 4 and struct.unpack(">I", params)[0] == self.password:
                self.handshakes += 1
                return ack(OK)
            return ack(WRONG_PASSWORD)
        if instruction == GEN_IMG:
            return ack(OK if self._take_image() else NO_FINGER)
        if instruction == IMG2TZ:
            with self._lock:
                self._features = self._current
            return ack(OK if self._features is not None else FEATURE_FAIL)
        if instruction == SEARCH:
            finger = self._features
            if finger is None or finger.page is None or finger.page not in self.templates:
                return ack(NOT_FOUND)
            return ack(OK, struct.pack(">HH", finger.page, finger.score))
        if instruction == DOWN_CHAR:
            self._char_buffer = bytearray()
            self._receiving_char = True
            return ack(OK)
        if instruction == STORE:
            _, page = struct.unpack(">BH", params[:3])
            if page >= self.capacity:
                return ack(BAD_LOCATION)
            self.templates[page] = bytes(self._char_buffer)
            return ack(OK)
        if instruction == DELETE_CHAR:
            page, count = struct.unpack(">HH", params[:4])
            for p in range(page, page + count):
                self.templates.pop(p, None)
            return ack(OK)
        if instruction == TEMPLATE_NUM:
            return ack(OK, struct.pack(">H", len(self.templates)))
        return ack(PACKET_RECEIVE_ERR)

    def _take_image(self) -> bool:
        with self._lock:
            if self._current is None and self._fingers:
                self._current = self._fingers.popleft()
                self._polls_left = self._current.touch_polls
            if self._current is None:
                return False
            self._polls_left -= 1
            if self._polls_left < 0:  # lifted: this poll sees an empty sensor
                self._current = None
                return False
            return True
