"""The telemetry maintenance actor: partitions ahead, hourly roll-ups, retention (hub/db/telemetry.py).

It runs one maintenance pass soon after it starts and then one just after
every UTC hour boundary, on an exact timer (``send_after`` to the next
boundary plus :data:`AFTER_THE_HOUR_S`), never on a polling loop. Each
pass creates the next days' partitions ahead (so the daily partition is
there long before midnight), rolls up the hours just completed, and drops
what has outlived the retention; see hub/db/telemetry.py for why no hour is
ever lost unaggregated.

Mailbox (:data:`TELEMETRY_MAILBOX`, BLOCK): its own timer messages and
:class:`RunMaintenance` asks (ops tooling, tests). A failed pass is logged
and retried (sooner if PostgreSQL was merely unavailable); it never crashes
the actor, so a bad day cannot exhaust the root supervisor's restarts.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from actors import Actor, Timer
from hub.db import Database
from hub.db.telemetry import MaintenanceReport, RetentionPolicy, ensure_partitions, hour_floor, maintain
from hub.pipeline.writer import is_transient

log = logging.getLogger("hub.services.telemetry")

TELEMETRY_MAILBOX = 8
#: A pass runs this long after each hour boundary, so the hour's last readings are committed.
AFTER_THE_HOUR_S = 60.0
#: After a failed pass because PostgreSQL was unavailable, retry this soon.
RETRY_S = 60.0
#: The first full pass runs this soon after start (not inside started(): the tree's start must not wait on
#: roll-ups; only the partitions are made in started()).
FIRST_RUN_S = 1.0


@dataclass(frozen=True)
class RunMaintenance:
    """Ask: run a pass now; reply the :class:`MaintenanceReport` (raises if the pass fails)."""


@dataclass(frozen=True)
class _Tick:
    pass


def seconds_to_next_run(now_s: float, after_the_hour_s: float = AFTER_THE_HOUR_S) -> float:
    """Seconds from ``now_s`` (unix) to the next hour boundary plus ``after_the_hour_s``."""
    next_run = (now_s // 3600) * 3600 + after_the_hour_s
    while next_run <= now_s:
        next_run += 3600
    return next_run - now_s


class TelemetryMaintenance(Actor):
    def __init__(self, db: Database, policy: RetentionPolicy, *, clock: Callable[[], float] = time.time,
                 after_rollup: Callable[[datetime], None] | None = None) -> None:
        self._db = db
        self._policy = policy
        self._clock = clock
        #: Told (never blocking) the hour up to which the roll-ups are complete, after each pass that ran
        #: (the anomaly actor scores the new hours: hub/services/anomaly.py).
        self._after_rollup = after_rollup
        self._timer: Timer | None = None

    async def started(self) -> None:
        # The tree waits for this (the ingress starts after us): today's partition must exist
        # before readings flow. The whole pass, slower, runs from the first tick.
        try:
            await ensure_partitions(self._db, datetime.fromtimestamp(self._clock(), timezone.utc), self._policy)
        except Exception as exc:  # noqa: BLE001 - the first pass retries; a down database must not stop the tree
            log.warning("telemetry: could not create partitions at start (%s); the first pass retries", exc)
        self._timer = self.send_after(FIRST_RUN_S, _Tick())

    async def handle(self, message: object) -> MaintenanceReport | None:
        if isinstance(message, RunMaintenance):
            return await self._pass()
        if isinstance(message, _Tick):
            delay = seconds_to_next_run(self._clock())
            try:
                await self._pass()
            except Exception as exc:  # noqa: BLE001 - logged; the next pass retries
                if is_transient(exc):
                    log.warning("telemetry maintenance: database unavailable (%s); retrying in %.0fs", exc, RETRY_S)
                    delay = min(delay, RETRY_S)
                else:
                    log.exception("telemetry maintenance failed; next attempt in %.0fs", delay)
            self._timer = self.send_after(delay, _Tick())
            return None
        raise TypeError(f"TelemetryMaintenance cannot handle {message!r}")

    async def _pass(self) -> MaintenanceReport:
        report = await maintain(self._db, datetime.fromtimestamp(self._clock(), timezone.utc), self._policy)
        if report.created or report.dropped or report.folded_late_rows:
            log.info("telemetry: created %s, dropped %s, folded %d late readings", report.created,
                     report.dropped, report.folded_late_rows)
        if self._after_rollup is not None and not report.skipped:
            self._after_rollup(hour_floor(datetime.fromtimestamp(self._clock(), timezone.utc)))
        return report
