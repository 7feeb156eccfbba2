"""Terminal rosters catch up with what no request announces: timetables, new terminals, time passing.

The web queues roster changes at once when people and enrolments change
(web/routes/terminal_roster_api.py). Other changes also move a student's PIN
between terminals: a slot or session moved to another room, sessions
generated for a new term, a terminal registered in a room, a course's last
session ending, an import by the CLI (no running hub to tell). This keeper
reconciles the whole registry every ``interval_s`` (15 minutes): one plan,
only the differences queued (hub/db/terminal_roster.py), so a quiet campus
costs three queries and no command. The plan also removes (template, then
page) any fingerprint page whose student has no active biometric consent, so
a consent closed outside the withdrawal path (an erasure, a database edit)
still empties the terminals within one period.

The first pass comes one interval after start, not at boot: a restart must not
race requests that queue the same changes (the plan's advisory lock makes that
harmless, but a quiet start is easier to reason about in tests and demos).
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from typing import Awaitable, Callable

import trio

from actors.service import ServiceActor
from hub.db import Database
from hub.db.terminal_roster import RosterSyncResult, queue_plan, reconcile

log = logging.getLogger("hub.services.terminal_rosters")

#: Seconds between two full reconciles.
RECONCILE_INTERVAL_S = 900.0
#: Who the audit trail of a command names when no person asked.
ISSUER = "system:terminal-rosters"


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class TerminalRosterKeeper(ServiceActor):
    """Reconciles every terminal's roster on a fixed period and hands the commands to the dispatcher.

    Concurrency contract: one task (its ``serve``); each pass is one
    transaction then one ``create_command`` per command, so a stop between
    passes loses nothing. A failed pass (the database is down) is logged and
    retried at the next period; it never crashes the keeper.
    """

    def __init__(self, db: Database, send_command: Callable[[uuid.UUID], Awaitable[None]], *,
                 device_offline_after_s: float, interval_s: float = RECONCILE_INTERVAL_S,
                 now: Callable[[], datetime] = _utc_now) -> None:
        self._db = db
        self._send_command = send_command
        self._device_offline_after_s = device_offline_after_s
        self._interval_s = interval_s
        self._now = now

    async def serve(self) -> None:
        while True:
            await trio.sleep(self._interval_s)
            try:
                await self.reconcile_all()
            except Exception:  # a database outage must not stop the keeper: the next period retries
                log.exception("terminal roster reconcile failed; retrying in %.0f s", self._interval_s)

    async def reconcile_all(self) -> RosterSyncResult:
        """One pass: plan every terminal's differences, queue them, hand each command to the dispatcher."""
        now = self._now()
        plan = await reconcile(self._db, now=now, student_ids=None)
        result = await queue_plan(self._db, plan, issued_by=ISSUER, now=now,
                                  device_offline_after_s=self._device_offline_after_s)
        for command in result.commands:
            await self._send_command(command.command_id)
        if result.commands:
            log.info("terminal rosters: %d change(s) on %d terminal(s), %d command(s) queued",
                     len(plan.upserts) + len(plan.deletes), len(plan.changes), len(result.commands))
        return result
