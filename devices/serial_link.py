"""A serial port that survives unplug and replug.

USB-serial adapters vanish when unplugged (reads fail with ``SerialException``
/ ``EIO``) and come back under the same udev symlink (``/dev/serial/by-id/…``)
or a new ``/dev/ttyUSBn``. :class:`SerialLink` hides that: :meth:`ensure_open`
(re)opens the path with exponential backoff, and any I/O error closes the port,
counts a fault and raises :class:`LinkDown` so the driver resynchronises.

Used only from one driver thread at a time (blocking calls, no locking).
"""
from __future__ import annotations

import logging
import os
import termios
import threading
from typing import Any, Callable

import serial

log = logging.getLogger(__name__)


#: What a vanishing device raises inside pyserial: SerialException, OSError, and
#: termios.error (not an OSError) when the tty goes away during open/configure.
_IO_ERRORS = (serial.SerialException, OSError, termios.error)


class LinkDown(Exception):
    """The port failed (unplugged, I/O error); it is closed and will be reopened."""


class SerialLink:
    """One serial device path, reopened on demand.

    ``faults`` counts failed opens and I/O errors since construction; read it
    from any thread (a plain int). ``opener`` exists for tests and for
    ``serial.serial_for_url`` style URLs.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        *,
        read_timeout_s: float = 0.1,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        opener: Callable[..., Any] | None = None,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.read_timeout_s = read_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.faults = 0
        self.opens = 0
        self._opener = opener or serial.serial_for_url
        self._serial: Any = None

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def ensure_open(self, stop: threading.Event) -> bool:
        """Open the port if closed, retrying with backoff; ``False`` once ``stop`` is set."""
        delay = self.backoff_initial_s
        while self._serial is None:
            if stop.is_set():
                return False
            try:
                # realpath: a udev-style symlink may now point at a new device node.
                self._serial = self._opener(os.path.realpath(self.port) if os.path.exists(self.port)
                                            else self.port, baudrate=self.baudrate,
                                            timeout=self.read_timeout_s, write_timeout=1.0)
                self.opens += 1
                log.info("serial %s open (%d baud)", self.port, self.baudrate)
            except (*_IO_ERRORS, ValueError) as exc:
                self.faults += 1
                log.debug("serial %s: cannot open (%s); retrying in %.1fs", self.port, exc, delay)
                if stop.wait(delay):
                    return False
                delay = min(delay * 2, self.backoff_max_s)
        return not stop.is_set()

    def read(self, size: int = 256) -> bytes:
        """Up to ``size`` bytes, waiting at most ``read_timeout_s`` (``b""`` if none came)."""
        port = self._require()
        try:
            waiting = port.in_waiting
            return port.read(max(1, min(size, waiting)) if waiting else 1)
        except _IO_ERRORS as exc:
            self._fail(exc)
            raise LinkDown(str(exc)) from exc

    def write(self, data: bytes) -> None:
        port = self._require()
        try:
            port.write(data)
            port.flush()
        except _IO_ERRORS as exc:
            self._fail(exc)
            raise LinkDown(str(exc)) from exc

    def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except _IO_ERRORS:
                pass

    def _require(self) -> Any:
        if self._serial is None:
            raise LinkDown("port is closed")
        return self._serial

    def _fail(self, exc: BaseException) -> None:
        self.faults += 1
        log.warning("serial %s: %s; closing, will reopen", self.port, exc)
        self.close()
