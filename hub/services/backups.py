"""Scheduled backups: a sealed ``campushub backup`` every few hours into a directory, the newest few kept.

Off by default; on when ``CAMPUSHUB_BACKUP_DIR`` is set (``CAMPUSHUB_BACKUP_INTERVAL_H``,
default 24; ``CAMPUSHUB_BACKUP_KEEP``, default 7). Files are named
``campushub-YYYYMMDDTHHMMSSZ.chbackup`` (UTC), so the directory itself records when
the last backup was made: a restarted hub waits out the rest of the interval
instead of backing up at once.

One hub process runs each backup: the pass takes the backup advisory lock
(hub/db/backup.py) and re-reads the directory under it, so several hub
processes sharing the directory make one backup per interval. (Hubs on
different machines with different directories each keep their own schedule:
configure backups on one of them.)

No polling: one exact timer, to when the newest backup is one interval old.
Progress in /metrics: ``campushub_backup_passes{outcome}``, and the last
success's time, duration and size.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Sequence

import trio

from actors.service import ServiceActor
from hub.adapters.pg_dump import backup_database
from hub.core.metrics import HubMetrics
from hub.db import Database
from hub.db.backup import backup_lock

log = logging.getLogger("hub.services.backups")

#: A pass that failed (database down, disk full, no pg_dump) is retried this soon.
RETRY_AFTER_S = 600.0
#: Another process held the lock (it is backing up now): look again this soon.
LOCKED_RETRY_S = 60.0
SUFFIX = ".chbackup"
_NAME = re.compile(r"^campushub-(\d{8}T\d{6}Z)\.chbackup$")


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def backup_name(at: datetime) -> str:
    return f"campushub-{at.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}{SUFFIX}"


def scheduled_backups(directory: Path) -> list[tuple[datetime, Path]]:
    """The scheduled backups in ``directory``, oldest first (other files are ignored). Blocking."""
    found = []
    for path in directory.iterdir() if directory.is_dir() else ():
        match = _NAME.match(path.name)
        if match:
            found.append((datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc), path))
    return sorted(found)


def _prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups, and partial files of interrupted runs. Blocking.

    Called only under the backup lock, so no partial file belongs to a backup in progress.
    """
    removed = [path for _, path in scheduled_backups(directory)[:-keep]]
    removed += list(directory.glob(f"campushub-*{SUFFIX}.partial"))
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


class ScheduledBackups(ServiceActor):
    """Makes a sealed backup every ``interval`` into ``directory`` and keeps the newest ``keep``.

    Sealed with the campus key of ``db`` (``db.secrets``).

    Concurrency contract: one task (its ``serve``); the backup runs inside it
    (pg_dump as a child process, sealing in worker threads), so stopping the
    actor cancels a backup in progress: pg_dump is killed and its partial file
    deleted. Several hub processes: at most one backs up at a time (advisory
    lock), and each pass re-reads the directory under the lock.
    """

    def __init__(self, db: Database, directory: Path, *, interval: timedelta, keep: int,
                 tool_dirs: Sequence[Path], metrics: HubMetrics | None = None,
                 now: Callable[[], datetime] = _utc_now) -> None:
        if interval <= timedelta(0) or keep < 1:
            raise ValueError("scheduled backups need a positive interval and keep >= 1")
        self._db = db
        self._directory = directory
        self._interval = interval
        self._keep = keep
        self._tool_dirs = list(tool_dirs)
        self._now = now
        self._metrics = metrics

    async def serve(self) -> None:
        while True:
            delay = await self.run_pass()
            await trio.sleep(delay)

    async def run_pass(self) -> float:
        """:meth:`run_due`, with a failure logged, counted and retried in :data:`RETRY_AFTER_S`."""
        try:
            return await self.run_due()
        except Exception:  # pg_dump missing, disk full, database down: log and retry, never crash-loop
            log.exception("scheduled backup failed; retrying in %.0f s", RETRY_AFTER_S)
            if self._metrics is not None:
                self._metrics.backup_passes.labels("failed").inc()
            return RETRY_AFTER_S

    async def _seconds_until_due(self) -> float:
        existing = await trio.to_thread.run_sync(scheduled_backups, self._directory)
        if not existing:
            return 0.0
        return max(0.0, (existing[-1][0] + self._interval - self._now()).total_seconds())

    async def run_due(self) -> float:
        """Back up now if the newest backup is an interval old (or none exists); return seconds to the next check."""
        if (wait := await self._seconds_until_due()) > 0:
            return wait
        async with backup_lock(self._db) as held:
            if not held:
                log.info("another hub process is making the scheduled backup")
                if self._metrics is not None:
                    self._metrics.backup_passes.labels("skipped").inc()
                return LOCKED_RETRY_S
            if (wait := await self._seconds_until_due()) > 0:
                return wait  # another process finished one while we waited for the lock
            await trio.to_thread.run_sync(lambda: self._directory.mkdir(parents=True, exist_ok=True))
            output = self._directory / backup_name(self._now())
            result = await backup_database(self._db, output, self._tool_dirs)
            removed = await trio.to_thread.run_sync(_prune, self._directory, self._keep)
        log.info("scheduled backup %s: %d bytes in %.1f s; removed %d old file(s)",
                 output.name, result.file_bytes, result.seconds, len(removed))
        if self._metrics is not None:
            self._metrics.backup_passes.labels("done").inc()
            self._metrics.backup_last_success.set(self._now().timestamp())
            self._metrics.backup_last_duration.set(result.seconds)
            self._metrics.backup_last_bytes.set(result.file_bytes)
        return self._interval.total_seconds()
