"""A virtual serial port on a pseudo-terminal, behind a stable symlink (tests, demo, emulators).

``port.path`` plays the udev symlink (``/dev/serial/by-id/…``): :meth:`replug`
creates a fresh pty (a new ``/dev/pts/N``) and points the symlink at it;
:meth:`unplug` closes the pty, so a driver holding it open gets EIO, and
removes the symlink. The owner reads/writes the master side (``master``).
Not thread-safe: one owner controls plugging.
"""
from __future__ import annotations

import os
import tty
from pathlib import Path


class VirtualSerialPort:
    def __init__(self, path: "str | Path") -> None:
        self.path = Path(path)
        self.master: int | None = None
        self._slave: int | None = None

    @property
    def plugged(self) -> bool:
        return self.master is not None

    def replug(self) -> int:
        """Plug in (again): returns the new master fd."""
        self.unplug()
        master, slave = os.openpty()
        # Raw both ways: the line discipline must not echo or translate bytes.
        tty.setraw(slave)
        tty.setraw(master)
        # Holding the slave open keeps the master readable before a driver opens it.
        self.master, self._slave = master, slave
        tmp = self.path.with_name(self.path.name + ".new")
        tmp.unlink(missing_ok=True)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)
        return master

    def unplug(self) -> None:
        for fd in (self.master, self._slave):
            if fd is not None:
                os.close(fd)
        self.master = self._slave = None
        self.path.unlink(missing_ok=True)

    def write(self, data: bytes) -> None:
        """Bytes the device sends (the driver reads them)."""
        if self.master is None:
            raise OSError("unplugged")
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view):]

    close = unplug
