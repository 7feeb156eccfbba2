"""The hub's policy for Python's cyclic garbage collector.

Why the defaults do not do: a full collection scans every tracked object, and
a campus hub tracks hundreds of thousands of them for as long as it runs
(device and session actors, rosters, 2,000 websockets: ~820,000 objects).
With the default thresholds (700, 10, 10) a loaded hub ran a full collection
every 2–3 s, each a 0.8–0.9 s stop of everything, 30 % of its time, and those
pauses set the p99 of every latency (measurements in docs/performance.md,
"Garbage collection").

The policy:

1. At boot, once every long-lived object exists, :func:`freeze_long_lived`
   collects and *freezes*: those objects move to the permanent generation,
   which no collection scans (objects there are still freed by reference
   counting as usual).
2. :data:`THRESHOLDS`: a young collection every 10,000 net allocations
   (not 700), so the short-lived objects of a batch in flight (a few
   hundred milliseconds) mostly die before a collection would promote
   them; a middle one every 5 young ones, so it never has more than five
   young generations' survivors to scan (with 20, its pauses reached
   125–157 ms with 2,000 websockets; with 5, 64–102 ms); a full one every
   400 middle ones, as often as (10,000, 20, 100) would.
3. :class:`CollectorKeeper`, a service actor, freezes again every
   :data:`FREEZE_EVERY_S` what has survived since (``gc.freeze`` is O(1)):
   connections and actors that appeared after boot stop being rescanned.
   Cyclic garbage among frozen objects (a closed websocket's task frames,
   say) is not collected while frozen, so every :data:`REBUILD_EVERY_S` the
   keeper unfreezes, runs one full collection and freezes again: one pause
   of about a second per half hour with 800,000 objects, logged with its
   duration, instead of one every few seconds.

All of it is process-wide state: :func:`collector_policy` applies it for
the life of one hub and restores the previous thresholds afterwards.
"""
from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from actors.service import ServiceActor

log = logging.getLogger("hub.services.collector")

#: (young, middle, old): see the module docstring, point 2.
THRESHOLDS = (10_000, 5, 400)
FREEZE_EVERY_S = 60.0
REBUILD_EVERY_S = 1800.0


@contextmanager
def collector_policy() -> Iterator[None]:
    """Apply :data:`THRESHOLDS` until the block ends; then restore the thresholds and unfreeze.

    Synchronous; call it from the thread that runs the hub. Unfreezing at the
    end hands everything frozen meanwhile back to the collector, so a process
    that runs hubs one after another (the tests) does not keep their garbage.
    """
    previous = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


def freeze_long_lived() -> int:
    """Collect, then freeze every object that survived; returns how many are frozen now.

    Blocks the thread for one full collection (≈1 s per 800,000 tracked
    objects): call it when a pause costs nothing, e.g. at the end of boot.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class CollectorKeeper(ServiceActor):
    """Freezes what has survived every ``freeze_every_s``; rebuilds the frozen set every ``rebuild_every_s``.

    Takes no messages (a :class:`~actors.service.ServiceActor`). Each step runs
    synchronously on the hub's thread between two trio checkpoints; a
    rebuild blocks the whole hub for its full collection, which is why it is
    rare. Cancelling it between steps loses nothing: the next incarnation
    simply freezes later.
    """

    def __init__(self, freeze_every_s: float = FREEZE_EVERY_S, rebuild_every_s: float = REBUILD_EVERY_S) -> None:
        self._freeze_every_s = freeze_every_s
        self._rebuild_every_s = rebuild_every_s
        self.freezes = 0
        self.rebuilds = 0

    async def serve(self) -> None:
        next_rebuild = trio.current_time() + self._rebuild_every_s
        while True:
            await trio.sleep(self._freeze_every_s)
            if trio.current_time() >= next_rebuild:
                self.rebuild()
                next_rebuild = trio.current_time() + self._rebuild_every_s
            else:
                gc.freeze()
                self.freezes += 1

    def rebuild(self) -> None:
        """Unfreeze, collect fully, freeze again (blocks the thread for the collection)."""
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.rebuilds += 1
        log.info("collector: full collection of the frozen set: %d unreachable objects, %.0f ms, %d frozen",
                 found, (time.perf_counter() - started) * 1000, gc.get_freeze_count())
