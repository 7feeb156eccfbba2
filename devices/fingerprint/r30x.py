"""R30x fingerprint modules (R305/R307/R503, as used by the Adafruit library) over serial.

Packet (all multi-byte fields big-endian)::

    EF 01 | address (4, default FF FF FF FF) | packet id (1) | length (2) | payload | checksum (2)

``packet id``: 01 command, 02 data, 07 acknowledgement, 08 end of data.
``length`` counts the payload plus the 2 checksum bytes; ``checksum`` is the
16-bit sum of packet id, both length bytes and every payload byte.

The codec (:func:`encode_packet`, :class:`PacketReader`) is pure. The driver
(:class:`R30xSource`) runs the module's own matching in a thread: ``VfyPwd``
once per connection, then polls ``GenImg`` → ``Img2Tz`` → ``Search`` and
yields a :class:`~devices.base.FingerprintMatch` (page id, score). Templates
stay on the module; only the match leaves it.
"""
from __future__ import annotations

import logging
import struct
import threading
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable

from .._pump import Emit, pump
from ..base import FingerprintMatch
from ..serial_link import LinkDown, SerialLink

log = logging.getLogger(__name__)

HEADER = b"\xef\x01"
DEFAULT_ADDRESS = 0xFFFFFFFF
DEFAULT_BAUDRATE = 57600

# Packet ids.
PID_COMMAND = 0x01
PID_DATA = 0x02
PID_ACK = 0x07
PID_END = 0x08

# Instruction codes.
GEN_IMG = 0x01
IMG2TZ = 0x02
SEARCH = 0x04
REG_MODEL = 0x05
STORE = 0x06
DOWN_CHAR = 0x09
DELETE_CHAR = 0x0C
VFY_PWD = 0x13
TEMPLATE_NUM = 0x1D

# Confirmation codes (first byte of an acknowledgement payload).
OK = 0x00
PACKET_RECEIVE_ERR = 0x01
NO_FINGER = 0x02
IMAGE_FAIL = 0x03
IMAGE_MESSY = 0x06
FEATURE_FAIL = 0x07
NOT_FOUND = 0x09
BAD_LOCATION = 0x0B
WRONG_PASSWORD = 0x13

#: Longest payload accepted on read: data packets carry up to 256 bytes.
MAX_PAYLOAD = 256
_HEAD_LEN = 9  # header(2) + address(4) + pid(1) + length(2)


class R30xError(Exception):
    """The module answered, but not with success (``code`` is its confirmation code)."""

    def __init__(self, instruction: int, code: int) -> None:
        super().__init__(f"instruction 0x{instruction:02x} failed with code 0x{code:02x}")
        self.instruction = instruction
        self.code = code


class ModuleTimeout(Exception):
    """No valid acknowledgement within the timeout."""


@dataclass(frozen=True)
class Packet:
    pid: int
    payload: bytes
    address: int = DEFAULT_ADDRESS


def checksum(pid: int, payload: bytes) -> int:
    length = len(payload) + 2
    return (pid + (length >> 8) + (length & 0xFF) + sum(payload)) & 0xFFFF


def encode_packet(pid: int, payload: bytes, address: int = DEFAULT_ADDRESS) -> bytes:
    """The wire bytes of one packet."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes > {MAX_PAYLOAD}")
    return (HEADER + struct.pack(">IBH", address, pid, len(payload) + 2) + payload
            + struct.pack(">H", checksum(pid, payload)))


def command(instruction: int, params: bytes = b"", address: int = DEFAULT_ADDRESS) -> bytes:
    return encode_packet(PID_COMMAND, bytes([instruction]) + params, address)


def ack(code: int, data: bytes = b"", address: int = DEFAULT_ADDRESS) -> bytes:
    return encode_packet(PID_ACK, bytes([code]) + data, address)


class PacketReader:
    """Incremental decoder that resynchronises on garbage.

    ``feed`` returns the complete, checksum-valid packets found so far.
    Bytes before a header are skipped (``garbage_bytes``); a packet with an
    impossible length or a wrong checksum is dropped by skipping its header
    and scanning again (``bad_packets``), so one corrupted packet never hides
    the next good one.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.garbage_bytes = 0
        self.bad_packets = 0

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[Packet]:
        self._buf += data
        out: list[Packet] = []
        while True:
            start = self._buf.find(HEADER)
            if start < 0:
                # Keep a trailing 0xEF: it may be the first half of the next header.
                keep = 1 if self._buf.endswith(HEADER[:1]) else 0
                self.garbage_bytes += len(self._buf) - keep
                del self._buf[: len(self._buf) - keep]
                return out
            if start:
                self.garbage_bytes += start
                del self._buf[:start]
            if len(self._buf) < _HEAD_LEN:
                return out
            address, pid, length = struct.unpack_from(">IBH", self._buf, 2)
            if pid not in (PID_COMMAND, PID_DATA, PID_ACK, PID_END) or not 2 < length <= MAX_PAYLOAD + 2:
                self._drop_header()
                continue
            end = _HEAD_LEN + length
            if len(self._buf) < end:
                return out
            payload = bytes(self._buf[_HEAD_LEN: end - 2])
            (got,) = struct.unpack_from(">H", self._buf, end - 2)
            if got != checksum(pid, payload):
                self._drop_header()
                continue
            del self._buf[:end]
            out.append(Packet(pid, payload, address))

    def _drop_header(self) -> None:
        self.bad_packets += 1
        self.garbage_bytes += 2
        del self._buf[:2]


def normalise_score(raw: int, full_scale: int) -> float:
    """A module score (0..~300 on R307) as 0..1, saturating at ``full_scale``."""
    return max(0.0, min(1.0, raw / full_scale))


class R30xModule:
    """Request/response with one module over a :class:`SerialLink`. One thread only."""

    def __init__(self, link: SerialLink, *, address: int = DEFAULT_ADDRESS,
                 ack_timeout_s: float = 1.0) -> None:
        self.link = link
        self.address = address
        self.ack_timeout_s = ack_timeout_s
        self.reader = PacketReader()

    def transact(self, instruction: int, params: bytes = b"") -> tuple[int, bytes]:
        """Send one command; return (confirmation code, data). Raises ``ModuleTimeout``/``LinkDown``."""
        self.link.write(command(instruction, params, self.address))
        deadline = time.monotonic() + self.ack_timeout_s
        while time.monotonic() < deadline:
            for packet in self.reader.feed(self.link.read(64)):
                if packet.pid == PID_ACK and packet.payload:
                    return packet.payload[0], packet.payload[1:]
                # Anything else (a stray data packet, an echo) is not our answer.
        raise ModuleTimeout(f"no answer to instruction 0x{instruction:02x}")

    def verify_password(self, password: int) -> None:
        code, _ = self.transact(VFY_PWD, struct.pack(">I", password))
        if code != OK:
            raise R30xError(VFY_PWD, code)

    def capture(self) -> bool:
        """``True`` if a finger is on the sensor and its image was taken."""
        code, _ = self.transact(GEN_IMG)
        if code in (NO_FINGER, IMAGE_FAIL):
            return False
        if code != OK:
            raise R30xError(GEN_IMG, code)
        return True

    def search(self, capacity: int) -> tuple[int, int] | None:
        """Features of the captured image → (page id, score), or ``None`` when nobody matches.

        Raises :class:`R30xError` for an image too poor to extract features from.
        """
        code, _ = self.transact(IMG2TZ, b"\x01")
        if code != OK:
            raise R30xError(IMG2TZ, code)
        code, data = self.transact(SEARCH, struct.pack(">BHH", 1, 0, capacity))
        if code == NOT_FOUND:
            return None
        if code != OK or len(data) < 4:
            raise R30xError(SEARCH, code)
        page, score = struct.unpack_from(">HH", data)
        return page, score

    def store_template(self, page: int, template: bytes, chunk: int = 128) -> None:
        """Load ``template`` into char buffer 1 (``DownChar`` + data packets) and store it at ``page``."""
        code, _ = self.transact(DOWN_CHAR, b"\x01")
        if code != OK:
            raise R30xError(DOWN_CHAR, code)
        parts = [template[i:i + chunk] for i in range(0, len(template), chunk)] or [b""]
        for i, part in enumerate(parts):
            pid = PID_END if i == len(parts) - 1 else PID_DATA
            self.link.write(encode_packet(pid, part, self.address))
        code, _ = self.transact(STORE, struct.pack(">BH", 1, page))
        if code != OK:
            raise R30xError(STORE, code)

    def delete_template(self, page: int) -> None:
        code, _ = self.transact(DELETE_CHAR, struct.pack(">HH", page, 1))
        if code != OK:
            raise R30xError(DELETE_CHAR, code)


@dataclass(frozen=True)
class TemplateJob:
    """Enrol (``template`` given) or delete (``template=None``) page ``page`` on the module."""

    page: int
    template: bytes | None
    done: Callable[[BaseException | None], None] = lambda exc: None


class R30xSource:
    """A fingerprint module as a :class:`~devices.base.Source` of matches.

    Polls for a finger every ``poll_interval_s``; after a read it waits until
    the finger is lifted so one touch gives one match. Matches scoring below
    ``min_score`` (normalised) are counted in ``rejected`` and not yielded.

    Faults (``faults``): serial errors and unplugs (via the link), timeouts,
    garbage bytes / bad packets (one fault per burst), refused passwords. On
    any of them the driver closes the port, backs off, reopens and shakes
    hands again; it never gives up.

    ``enqueue_template`` may be called from any thread; the job runs between
    polls in the driver thread and calls ``job.done`` from it.
    """

    def __init__(
        self,
        port: str,
        *,
        name: str = "r30x",
        baudrate: int = DEFAULT_BAUDRATE,
        password: int = 0,
        address: int = DEFAULT_ADDRESS,
        capacity: int = 1000,
        poll_interval_s: float = 0.2,
        min_score: float = 0.0,
        score_full_scale: int = 200,
        ack_timeout_s: float = 1.0,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1 or poll_interval_s <= 0 or score_full_scale < 1 or not 0 <= min_score <= 1:
            raise ValueError("capacity >= 1, poll_interval_s > 0, score_full_scale >= 1, 0 <= min_score <= 1")
        self.name = name
        self.link = SerialLink(port, baudrate, backoff_initial_s=backoff_initial_s,
                               backoff_max_s=backoff_max_s, read_timeout_s=0.05)
        self.password = password
        self.address = address
        self.capacity = capacity
        self.poll_interval_s = poll_interval_s
        self.min_score = min_score
        self.score_full_scale = score_full_scale
        self.ack_timeout_s = ack_timeout_s
        self._clock = clock
        self._own_faults = 0
        self.matches = 0
        self.no_match = 0
        self.rejected = 0
        self.handshakes = 0
        self._jobs: list[TemplateJob] = []
        self._jobs_lock = threading.Lock()

    @property
    def faults(self) -> int:
        return self.link.faults + self._own_faults

    def enqueue_template(self, job: TemplateJob) -> None:
        with self._jobs_lock:
            self._jobs.append(job)

    def __aiter__(self) -> AsyncIterator[FingerprintMatch]:
        return pump(self._work, name=self.name)

    # --------------------------------------------------------------- thread

    def _work(self, emit: Emit[FingerprintMatch], stop: threading.Event) -> None:
        module = R30xModule(self.link, address=self.address, ack_timeout_s=self.ack_timeout_s)
        delay = self.link.backoff_initial_s
        try:
            while not stop.is_set():
                if not self.link.ensure_open(stop):
                    return
                try:
                    module.reader.reset()
                    module.verify_password(self.password)
                    self.handshakes += 1
                    delay = self.link.backoff_initial_s
                    if not self._poll(module, emit, stop):
                        return
                except LinkDown:
                    continue  # counted by the link; ensure_open backs off
                except (ModuleTimeout, R30xError) as exc:
                    self._own_faults += 1
                    log.warning("%s: %s; reopening in %.1fs", self.name, exc, delay)
                    self.link.close()
                    if stop.wait(delay):
                        return
                    delay = min(delay * 2, self.link.backoff_max_s)
        finally:
            self.link.close()

    def _poll(self, module: R30xModule, emit: Emit[FingerprintMatch], stop: threading.Event) -> bool:
        """Poll until stopped (``False``) or a fault (raises)."""
        garbage_seen = module.reader.garbage_bytes
        finger_down = False
        while not stop.is_set():
            self._run_jobs(module)
            try:
                present = module.capture()
            finally:
                if module.reader.garbage_bytes != garbage_seen:  # one fault per garbage burst
                    garbage_seen = module.reader.garbage_bytes
                    self._own_faults += 1
            if present and not finger_down:
                finger_down = True
                at = self._clock()
                try:
                    found = module.search(self.capacity)
                except R30xError as exc:
                    if exc.code not in (IMAGE_MESSY, FEATURE_FAIL):
                        raise
                    finger_down = False  # a poor image: let the next poll try again
                    continue
                if found is None:
                    self.no_match += 1
                else:
                    page, raw = found
                    score = normalise_score(raw, self.score_full_scale)
                    if score < self.min_score:
                        self.rejected += 1
                    else:
                        self.matches += 1
                        if not emit(FingerprintMatch(page, score, raw, at)):
                            return False
            elif not present:
                finger_down = False
            if stop.wait(self.poll_interval_s):
                return False
        return False

    def _run_jobs(self, module: R30xModule) -> None:
        with self._jobs_lock:
            jobs, self._jobs = self._jobs, []
        for i, job in enumerate(jobs):
            try:
                if job.template is None:
                    module.delete_template(job.page)
                else:
                    module.store_template(job.page, job.template)
            except R30xError as exc:
                job.done(exc)
            except BaseException as exc:
                # The link failed mid-job: keep this and later jobs for the next connection.
                with self._jobs_lock:
                    self._jobs[:0] = jobs[i:]
                raise exc
            else:
                job.done(None)
