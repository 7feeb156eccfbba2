"""Run a blocking driver loop in a thread and read what it emits as an async iterator.

Every hardware driver here (serial ports, camera pipes, pyzbar) blocks, so
each iteration of a driver runs its loop in one daemon thread. The thread
hands items to the event loop with ``call_soon_threadsafe``; at most
``buffer`` items wait in memory, beyond which :func:`Emit` blocks the thread
(backpressure onto the device, which buffers or drops as hardware does).
"""
from __future__ import annotations

import asyncio
import threading
from typing import AsyncIterator, Callable, Generic, TypeVar

T = TypeVar("T")

_EOF = object()
#: How long the consumer waits for the thread to finish after iteration ends.
#: Drivers poll ``stop`` at least every ~0.2 s, so this is only ever reached by a
#: thread stuck in a system call; it is a daemon and cannot keep the process alive.
JOIN_TIMEOUT_S = 2.0


class Emit(Generic[T]):
    """Handed to the worker: ``emit(item)`` delivers one item; ``False`` means stop now."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: "asyncio.Queue[object]",
                 stop: threading.Event, room: threading.Semaphore) -> None:
        self._loop = loop
        self._queue = queue
        self._stop = stop
        self._room = room

    def __call__(self, item: T) -> bool:
        # Poll so a cancelled consumer never leaves this thread waiting forever.
        while not self._room.acquire(timeout=0.2):
            if self._stop.is_set():
                return False
        return not self._stop.is_set() and self._put(item)

    def _put(self, item: object) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
            return True
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return False


Worker = Callable[[Emit[T], threading.Event], None]


async def pump(worker: "Worker[T]", *, name: str, buffer: int = 64) -> AsyncIterator[T]:
    """Yield what ``worker(emit, stop)`` emits from its own thread.

    The iteration ends when the worker returns and raises what the worker
    raised. Cancelling the consumer (or closing the generator) sets ``stop``
    and waits up to :data:`JOIN_TIMEOUT_S` for the thread to close its device,
    so the next iteration can open it again at once.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    stop = threading.Event()
    room = threading.Semaphore(buffer)
    emit: Emit[T] = Emit(loop, queue, stop, room)

    def run() -> None:
        try:
            worker(emit, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            emit._put(exc)
            return
        emit._put(_EOF)

    thread = threading.Thread(target=run, name=f"{name}-driver", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _EOF:
                return
            if isinstance(item, BaseException):
                raise item
            room.release()
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        if thread.is_alive():
            # A second cancel interrupts this wait; the daemon thread then finishes alone.
            await asyncio.to_thread(thread.join, JOIN_TIMEOUT_S)
