"""Scheduled backups (hub/services/backups.py) on a real PostgreSQL: due by the directory's newest file,
pruned to the retention count, and skipped while another process holds the backup lock. The clock is
injected; nothing waits on real time."""
from __future__ import annotations

import dataclasses
import io
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import pytest
import trio

from hub.adapters.backup_format import KEY_PURPOSE, iter_plaintext
from hub.app.backup_cli import tool_dirs
from hub.app.supervision import run_hub
from hub.core.config import Settings
from hub.core.metrics import HubMetrics
from hub.db import Database
from hub.db.backup import backup_lock
from hub.services.backups import LOCKED_RETRY_S, RETRY_AFTER_S, ScheduledBackups, backup_name, scheduled_backups

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
INTERVAL = timedelta(hours=6)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def _service(db: Database, directory: Path, clock: Clock, keep: int = 2,
             metrics: HubMetrics | None = None) -> ScheduledBackups:
    return ScheduledBackups(db, directory, interval=INTERVAL, keep=keep, tool_dirs=tool_dirs(Settings()),
                            metrics=metrics, now=clock)


def _passes(metrics: HubMetrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value("campushub_backup_passes_total", {"outcome": outcome})


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_backs_up_when_due_and_keeps_the_newest(db: Database, campus, tmp_path: Path) -> None:
    directory, clock, metrics = tmp_path / "backups", Clock(), HubMetrics()
    service = _service(db, directory, clock, metrics=metrics)

    assert await service.run_due() == INTERVAL.total_seconds()  # none yet: backs up at once
    assert _names(directory) == [backup_name(START)]
    assert _passes(metrics, "done") == 1
    assert metrics.registry.get_sample_value("campushub_backup_last_success_timestamp_seconds") == START.timestamp()
    assert metrics.registry.get_sample_value("campushub_backup_last_bytes") == (directory / backup_name(START)).stat(
    ).st_size
    clock.now += timedelta(hours=1)
    assert await service.run_due() == (INTERVAL - timedelta(hours=1)).total_seconds()  # not due: the exact wait
    assert _names(directory) == [backup_name(START)]

    (directory / f"{backup_name(START - timedelta(days=1))}.partial").write_bytes(b"left by a killed run")
    (directory / "notes.txt").write_text("not ours: left alone")
    for n in (1, 2):
        clock.now = START + n * INTERVAL
        assert await service.run_due() == INTERVAL.total_seconds()
    # Three made, two kept (the newest), the stale partial file removed, other files untouched.
    assert _names(directory) == sorted([backup_name(START + INTERVAL), backup_name(START + 2 * INTERVAL),
                                        "notes.txt"])
    assert [at for at, _ in scheduled_backups(directory)] == [START + INTERVAL, START + 2 * INTERVAL]

    newest = scheduled_backups(directory)[-1][1]
    opened = b"".join(iter_plaintext(io.BytesIO(newest.read_bytes()).read, lambda key_id, salt: db.secrets.derive_key(
        KEY_PURPOSE, key_id=key_id, salt=salt)[1]))
    assert opened.startswith(b"PGDMP")  # a pg_dump custom-format archive, sealed with the campus key


async def test_a_restarted_hub_waits_for_the_rest_of_the_interval(db: Database, campus, tmp_path: Path) -> None:
    directory, clock = tmp_path / "backups", Clock()
    await _service(db, directory, clock).run_due()
    clock.now += timedelta(hours=5)
    restarted = _service(db, directory, clock)
    assert await restarted.run_due() == timedelta(hours=1).total_seconds()
    assert len(scheduled_backups(directory)) == 1


async def test_only_the_holder_of_the_lock_backs_up(db: Database, campus, tmp_path: Path) -> None:
    directory, clock, metrics = tmp_path / "backups", Clock(), HubMetrics()
    service = _service(db, directory, clock, metrics=metrics)
    async with backup_lock(db) as held:
        assert held  # "another hub process" holds it now
        assert await service.run_due() == LOCKED_RETRY_S
        assert _passes(metrics, "skipped") == 1 and not _passes(metrics, "done")
        assert not directory.exists() or _names(directory) == []
        async with backup_lock(db) as second:
            assert not second
    assert await service.run_due() == INTERVAL.total_seconds()  # released: this one backs up
    assert len(scheduled_backups(directory)) == 1


async def test_a_failed_pass_is_counted_and_retried_without_leaving_files(
        db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory, metrics = tmp_path / "backups", HubMetrics()
    # No directory to look for pg_dump in: the pass fails with the finder's message.
    without_tools = ScheduledBackups(db, directory, interval=INTERVAL, keep=2, tool_dirs=[], metrics=metrics,
                                     now=Clock())
    assert await without_tools.run_pass() == RETRY_AFTER_S
    assert _passes(metrics, "failed") == 1
    assert "no pg_dump/pg_restore of PostgreSQL" in caplog.text
    assert not directory.exists() or _names(directory) == []


def test_settings_refuse_a_useless_schedule() -> None:
    with pytest.raises(ValueError, match="CAMPUSHUB_BACKUP_INTERVAL_H"):
        Settings.from_env({"CAMPUSHUB_BACKUP_DIR": "/tmp/x", "CAMPUSHUB_BACKUP_KEEP": "0"})
    settings = Settings.from_env({"CAMPUSHUB_BACKUP_DIR": "/srv/backups", "CAMPUSHUB_BACKUP_INTERVAL_H": "12"})
    assert (settings.backup_dir, settings.backup_interval_h, settings.backup_keep) == (Path("/srv/backups"), 12.0, 7)
    assert Settings.from_env({}).backup_dir is None  # off by default


async def test_the_hub_runs_scheduled_backups_only_when_configured(
        hub_settings: Settings, hub_campus, aio_loop, tmp_path: Path) -> None:
    directory = tmp_path / "scheduled"
    configured = dataclasses.replace(hub_settings, backup_dir=directory, backup_interval_h=24, backup_keep=3)
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, configured, port=None))
        assert hub.child("backups") is not None
        with trio.fail_after(60):  # a generous bound on a shared machine, not a performance claim
            while not scheduled_backups(directory):
                await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, hub_settings, port=None))
        assert hub_settings.backup_dir is None and hub.child("backups") is None
        nursery.cancel_scope.cancel()
