"""Retention of leave documents: a cancelled application's document is deleted after a grace period.

Why: documents count against the student's quota (hub/domain/leave.py
``DOCUMENT_QUOTA_BYTES``) until they are gone, and a cancelled application no
longer needs its sick note. The application itself is kept. The grace
period (``CANCELLED_DOCUMENT_GRACE``, 7 days) lets a student or the office
still read it shortly after a cancellation (docs/records.md, "Retention of leave documents").

No polling: one exact timer. After each pass the purger sleeps until the
oldest remaining cancelled document falls due; when none waits, for one
grace period, since a document cancelled from now on cannot fall due sooner.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable

import trio

from actors.service import ServiceActor
from hub.db import Database
from hub.db.leave import next_document_purge, purge_cancelled_documents
from hub.domain.leave import CANCELLED_DOCUMENT_GRACE

log = logging.getLogger("hub.services.leave_documents")

#: A pass that failed (the database is down) is retried this soon.
RETRY_AFTER_S = 60.0


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class LeaveDocumentPurger(ServiceActor):
    """Deletes cancelled applications' documents once their grace period ends.

    Concurrency contract: one task (its ``serve``); each pass is one DELETE
    statement, so a stop between passes loses nothing and the next start
    catches up on whatever fell due meanwhile.
    """

    def __init__(self, db: Database, *, now: Callable[[], datetime] = _utc_now) -> None:
        self._db = db
        self._now = now

    async def serve(self) -> None:
        while True:
            try:
                delay = await self.purge_due()
            except Exception:  # a database outage must not stop the retention: retry, do not crash-loop
                log.exception("leave document purge failed; retrying in %.0f s", RETRY_AFTER_S)
                delay = RETRY_AFTER_S
            await trio.sleep(delay)

    async def purge_due(self) -> float:
        """Delete what is due now; return the seconds until the next document falls due."""
        now = self._now()
        purged = await purge_cancelled_documents(self._db, now)
        if purged:
            log.info("deleted %d document(s) of leave cancelled more than %d days ago", purged,
                     CANCELLED_DOCUMENT_GRACE.days)
        due = await next_document_purge(self._db)
        if due is None:
            return CANCELLED_DOCUMENT_GRACE.total_seconds()
        return max(0.0, (due - now).total_seconds())
