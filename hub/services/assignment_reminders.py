"""The "due in 24 h" reminders of assignments: one notification per (assignment, student), on one exact timer.

Each pass (:func:`hub.db.submissions.send_due_reminders`) notifies every student whose own due date
(their extension's, if any) is within 24 h, who has not submitted and was not reminded; the reminder
row (``assignment_reminders``) and the notification commit together, so a student is reminded at most
once. Then the actor sleeps exactly until the next reminder falls due (``next_reminder_at``), or until
a due date may have moved: publishing, editing and extensions send a PostgreSQL NOTIFY at their commit
(``hub.db.assignments.due_changed``), which wakes it. No polling.

Several hub processes may run it: a session advisory lock (``REMINDER_LOCK``) on a connection of its
own lets one send reminders; the others look again every :data:`LOCK_RETRY_S` (and take over when the
holder's connection drops, which releases the lock). A failed pass is logged and retried after
:data:`RETRY_S`; it never crashes the actor.

Concurrency contract: one task (its ``serve``); it takes no messages (a ``ServiceActor``). Notifications
are published on the live bus after their commit (``publish_notifications``, which never blocks).
Stopping it cancels the wait; the lock connection is closed in a shielded ``finally``.
"""
from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timezone
from typing import Callable

import trio

from actors.service import ServiceActor
from hub.core.bus import LiveBus
from hub.db import Database
from hub.db.notifications import publish_notifications
from hub.db.submissions import next_reminder_at, reminder_watch, send_due_reminders

log = logging.getLogger("hub.services.assignment_reminders")

#: Another hub process holds the lock: look again this often.
LOCK_RETRY_S = 60.0
#: A pass that failed (the database is down) is retried this soon.
RETRY_S = 60.0


class AssignmentReminders(ServiceActor):
    """Sends "due in 24 h" reminders; see the module docstring."""

    def __init__(self, db: Database, bus: LiveBus, *, clock: Callable[[], float] = time.time,
                 lock_retry_s: float = LOCK_RETRY_S) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self._lock_retry_s = lock_retry_s
        self.passes = 0  # for tests and logs: passes run while holding the lock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), timezone.utc)

    async def serve(self) -> None:
        while True:
            try:
                async with reminder_watch(self._db) as wakeups:
                    if wakeups is None:
                        await trio.sleep(self._lock_retry_s)
                        continue
                    await self._remind_while_holding(wakeups)
            except Exception as exc:  # noqa: BLE001 - logged; a down database must not crash-loop the tree
                log.warning("assignment reminders: %s; retrying in %.0f s", exc, RETRY_S)
                await trio.sleep(RETRY_S)

    async def _remind_while_holding(self, wakeups: trio.MemoryReceiveChannel[None]) -> None:
        while True:
            delay = await self.run_once()
            with trio.move_on_after(delay):
                try:
                    await wakeups.receive()
                except trio.EndOfChannel:
                    log.warning("assignment reminders: lost the lock connection; taking the lock again")
                    return
            while True:  # one pass answers every change that arrived meanwhile
                try:
                    wakeups.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break

    async def run_once(self) -> float:
        """Send what is due now; return the seconds until the next reminder falls due (inf if none waits)."""
        now = self._now()
        notes = await send_due_reminders(self._db, now)
        self.passes += 1
        if notes:
            publish_notifications(self._bus, notes)
            log.info("assignment reminders: %d student(s) reminded of work due within 24 h", len(notes))
        upcoming = await next_reminder_at(self._db, now)
        if upcoming is None:
            return math.inf
        return max(0.0, (upcoming - self._now()).total_seconds())
