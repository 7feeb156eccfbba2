"""QR scanner sources.

* :class:`ScriptedQrSource`: decoded texts pushed into an ``asyncio.Queue`` by
  someone else (the traffic simulator, tests, a camera decoder task).
* :class:`QrLineSource`: one decoded text per line from a byte/text stream:
  a keyboard-wedge or serial scanner (``/dev/ttyACM0``), a file, or stdin.
"""
from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, AsyncIterator, Callable, Iterator, Union

from ..base import QrRead

#: What a :class:`ScriptedQrSource` queue carries: text (stamped when taken),
#: a ready :class:`QrRead`, or ``None`` meaning "no more scans".
ScriptItem = Union[str, QrRead, None]


class ScriptedQrSource:
    """QR reads fed through an ``asyncio.Queue``.

    Concurrency: ``push_nowait``/``close`` never block and must be called from
    the event loop thread; ``push`` waits for room if the queue is bounded.
    Iteration ends after ``close()``; cancelling the iterating task leaves
    queued items in place for the next iteration.
    """

    def __init__(
        self,
        queue: "asyncio.Queue[ScriptItem] | None" = None,
        *,
        name: str = "scripted-qr",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.queue: asyncio.Queue[ScriptItem] = queue if queue is not None else asyncio.Queue()
        self._clock = clock

    def push_nowait(self, text: str, at: float | None = None) -> None:
        self.queue.put_nowait(QrRead(text, self._clock() if at is None else at))

    async def push(self, text: str, at: float | None = None) -> None:
        await self.queue.put(QrRead(text, self._clock() if at is None else at))

    def close(self) -> None:
        """End the iteration once the items already queued have been read."""
        self.queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[QrRead]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            yield item if isinstance(item, QrRead) else QrRead(item, self._clock())


_EOF = object()


class QrLineSource:
    """One QR read per non-empty line of a stream (trailing ``\\r\\n`` stripped).

    Blocking reads happen in a *daemon* thread per iteration, so a scanner that
    never sends another line can neither block the event loop nor keep the
    process alive at exit. At most ``buffer`` reads wait in memory; beyond that
    the thread stops reading (backpressure onto the stream).

    Cancellation: cancelling the iterating task returns at once; the thread
    notices at its next line (or EOF) and exits without delivering it.
    Iteration ends at EOF. Lines are decoded as UTF-8 (invalid bytes replaced)
    and cut to ``max_len`` characters, the longest text the wire format takes.
    """

    def __init__(
        self,
        stream: "IO[str] | IO[bytes] | None" = None,
        *,
        path: "str | Path | None" = None,
        name: str = "qr-lines",
        clock: Callable[[], float] = time.time,
        buffer: int = 64,
        max_len: int = 512,
    ) -> None:
        if (stream is None) == (path is None):
            raise ValueError("give exactly one of stream= or path=")
        self.name = name
        self._stream = stream
        self._path = None if path is None else str(path)
        self._clock = clock
        self._buffer = buffer
        self._max_len = max_len

    @classmethod
    def open(cls, path: "str | Path", **kwargs: object) -> "QrLineSource":
        """A source reading ``path`` (``"-"`` is stdin). The file is opened lazily, in the
        reader thread, because opening a tty can block."""
        return cls(path=path, **kwargs)  # type: ignore[arg-type]

    def _lines(self) -> Iterator[bytes | str]:
        """Lines of the stream, or of the path read with raw ``os.read``.

        Paths and stdin are read through the bare file descriptor, never a
        buffered file object: a daemon thread blocked inside a BufferedReader
        holds its lock, and the interpreter aborts at exit when it needs that
        lock (``_enter_buffered_busy``), e.g. for ``sys.stdin``.
        """
        if self._stream is not None:
            while line := self._stream.readline():
                yield line
            return
        assert self._path is not None  # __init__ takes exactly one of stream= and path=
        owned = self._path != "-"
        fd = os.open(self._path, os.O_RDONLY) if owned else sys.stdin.fileno()
        try:
            pending = b""
            while chunk := os.read(fd, 4096):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                yield from lines
            if pending:
                yield pending
        finally:
            if owned:
                os.close(fd)

    def _pump(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: "asyncio.Queue[object]",
        stop: threading.Event,
        room: threading.Semaphore,
    ) -> None:
        def deliver(item: object) -> bool:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
                return True
            except RuntimeError:  # the loop is closed: nobody is listening any more
                return False

        try:
            for line in self._lines():
                if stop.is_set():
                    return
                at = self._clock()
                text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
                text = text.strip()[: self._max_len]
                if not text:
                    continue
                # Poll so a cancelled consumer never leaves this thread waiting forever.
                while not room.acquire(timeout=0.2):
                    if stop.is_set():
                        return
                if stop.is_set() or not deliver(QrRead(text, at)):
                    return
        except Exception as exc:  # reported to the consumer, which raises it
            deliver(exc)
            return
        deliver(_EOF)

    async def __aiter__(self) -> AsyncIterator[QrRead]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()
        room = threading.Semaphore(self._buffer)
        thread = threading.Thread(
            target=self._pump, args=(loop, queue, stop, room), name=f"{self.name}-reader", daemon=True
        )
        thread.start()
        try:
            while True:
                item = await queue.get()
                if item is _EOF:
                    return
                if isinstance(item, BaseException):
                    raise item
                room.release()
                assert isinstance(item, QrRead)
                yield item
        finally:
            stop.set()
