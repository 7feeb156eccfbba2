"""The retention actor: one retention pass (hub/db/retention.py) every hour, on an exact timer.

At start it creates today's and the next days' partitions of ``events`` and
the dedup ledger (the tree waits for that, and the ingress starts after it),
then runs a pass :data:`FIRST_RUN_S` later and one :data:`AFTER_THE_HOUR_S`
after every UTC hour boundary (``trio.sleep`` to the computed instant, never
a polling loop). Hourly, so the batched deletes stay small and a partition
is dropped within the hour its day falls out of the retention.

Several hub processes may run it: the pass's PostgreSQL advisory lock lets
one prune and the others skip (counted ``skipped``). A failed pass is logged
and counted and the next one is tried sooner if PostgreSQL was merely
unavailable; it never crashes the actor, so a bad day cannot exhaust the
root supervisor's restarts.

Concurrency contract: one task (its ``serve``); it takes no messages (a
``ServiceActor``). Progress is in /metrics (``campushub_retention_*``,
hub/core/metrics.py). Stopping it cancels the pass in progress, which rolls
back only the step it was in.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Callable

import trio

from actors.service import ServiceActor
from hub.core.metrics import HubMetrics
from hub.db import Database
from hub.db.retention import RetentionPeriods, RetentionReport, ensure_partitions, run_pass
from hub.pipeline.writer import is_transient
from hub.services.telemetry import seconds_to_next_run

log = logging.getLogger("hub.services.retention")

#: A pass runs this long after each UTC hour boundary (after telemetry's, which runs at :01).
AFTER_THE_HOUR_S = 300.0
#: The first pass runs this soon after start (not inside started(): the tree's start must not wait on it).
FIRST_RUN_S = 5.0
#: After a pass failed because PostgreSQL was unavailable, retry this soon.
RETRY_S = 60.0


class RetentionKeeper(ServiceActor):
    """Prunes every table by its retention rule, hourly; see the module docstring."""

    def __init__(self, db: Database, policy: RetentionPeriods, metrics: HubMetrics | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._policy = policy
        self._metrics = metrics
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), timezone.utc)

    async def started(self) -> None:
        try:
            await ensure_partitions(self._db, self._now(), self._policy)
        except Exception as exc:  # noqa: BLE001 - the first pass retries; a down database must not stop the tree
            log.warning("retention: could not create partitions at start (%s); the first pass retries", exc)
        await super().started()

    async def serve(self) -> None:
        await trio.sleep(FIRST_RUN_S)
        while True:
            delay = seconds_to_next_run(self._clock(), AFTER_THE_HOUR_S)
            try:
                await self.run_once()
            except Exception as exc:  # noqa: BLE001 - logged and counted; the next pass retries
                if self._metrics is not None:
                    self._metrics.retention_passes.labels(outcome="failed").inc()
                if is_transient(exc):
                    log.warning("retention: database unavailable (%s); retrying in %.0fs", exc, RETRY_S)
                    delay = min(delay, RETRY_S)
                else:
                    log.exception("retention pass failed; next attempt in %.0fs", delay)
            await trio.sleep(delay)

    async def run_once(self) -> RetentionReport:
        """One pass now; its report (also in /metrics and the log). Raises if the pass fails."""
        report = await run_pass(self._db, self._now(), self._policy)
        if self._metrics is not None:
            self._record(self._metrics, report)
        if report.skipped:
            log.info("retention: another hub process holds the lock; pass skipped")
        elif any(t.removed for t in report.tables.values()):
            log.info("retention: removed %s in %.1fs", ", ".join(
                f"{t.table} {t.removed}" for t in report.tables.values() if t.removed), report.duration_s)
        return report

    @staticmethod
    def _record(metrics: HubMetrics, report: RetentionReport) -> None:
        metrics.retention_passes.labels(outcome="skipped" if report.skipped else "done").inc()
        if report.skipped:
            return
        metrics.retention_last_run.set(report.at.timestamp())
        metrics.retention_last_duration.set(report.duration_s)
        for table in report.tables.values():
            metrics.retention_rows_removed.labels(table=table.table).inc(table.removed)
            metrics.retention_partitions_dropped.labels(table=table.table).inc(len(table.partitions_dropped))
