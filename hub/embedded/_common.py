"""Small helpers shared by the embedded services: ports, readiness waits, directory locks.

Everything here is synchronous and blocking; none of it touches trio.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Callable


class EmbeddedServiceError(RuntimeError):
    """An embedded service could not be started (or its data dir is in use)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago.

    Racy by nature (someone may take it before the service binds it); the
    starters retry with a new port when the service fails to bind.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the services themselves use it: a port in TIME_WAIT
        # after our own previous run counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def choose_port(host: str, remembered: Path, requested: int | None) -> int:
    """``requested`` if given and free; else the port used last time on this data dir if free; else any free port.

    Reusing the last port means a restarted service keeps its URL, so clients
    that reconnect (the hub's MQTT client, asyncpg pools) find it again.
    """
    if requested is not None:
        # Checked up front: a service started on a taken port would look ready
        # (the port answers) until it notices it could not bind.
        if not port_is_free(host, requested):
            raise EmbeddedServiceError(f"{host}:{requested} is already in use")
        return requested
    try:
        last = int(remembered.read_text().strip())
    except (OSError, ValueError):
        last = None
    if last is not None and port_is_free(host, last):
        return last
    return free_port(host)


def tcp_accepts(host: str, port: int, timeout: float) -> bool:
    """True if a TCP connection to host:port succeeds within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    failed: Callable[[], str | None] = lambda: None,
    what: str,
) -> None:
    """Poll ``ready()`` every 20 ms until it is true.

    ``failed()`` returning a message aborts early (e.g. the process exited).
    Raises :class:`EmbeddedServiceError` naming ``what`` on failure or timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        message = failed()
        if message is not None:
            raise EmbeddedServiceError(f"{what}: {message}")
        if time.monotonic() >= deadline:
            raise EmbeddedServiceError(f"{what}: not ready after {timeout:.1f} s")
        time.sleep(0.02)


class DirLock:
    """An exclusive ``flock`` on ``path`` held for the life of a service.

    One process at a time may run a service on a data dir. The kernel drops
    the lock when the holder dies, however it dies, so a lock that can be
    taken means any server still running on the dir is an orphan.
    """

    def __init__(self, path: Path, what: str) -> None:
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            self._fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise EmbeddedServiceError(
                    f"{what}: {path.parent} is in use by another process"
                ) from None
            raise

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def process_alive(pid: int) -> bool:
    """False once ``pid`` has exited, even if it is a zombie nobody has reaped yet
    (an orphan's new parent, often a container's PID 1, may reap it late)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages; '' if unreadable."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
