"""``campushub retention run [--dry-run]`` as a real subprocess on a migrated database."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hub.core.records import AcceptedEvent, Commit
from hub.db import Database, run_with_database
from hub.db.ingest import write_batch

pytestmark = pytest.mark.integration

DEVICE = "dev-retention-cli"


def campushub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", "retention", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def _env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, CAMPUSHUB_DATABASE_URL=database_url, CAMPUSHUB_DATA_DIR=str(tmp_path / "data"))


async def _seed(db: Database) -> None:
    await db.execute("INSERT INTO rooms (id, name, building) VALUES ('r-cli', 'R', 'B')")
    await db.execute("INSERT INTO devices (id, room_id, kind, alg, key) VALUES ($1, 'r-cli', 'sensor', 'hmac-sha256',"
                     " '\\x00')", DEVICE)
    now = datetime.now(timezone.utc)
    commits = []
    for days in (0, 20, 21):
        at = now - timedelta(days=days)
        event_id = uuid.uuid4()
        commits.append(Commit(event_id.bytes, (AcceptedEvent(event_id, DEVICE, 1, "heartbeat", at, at, None, {}),),
                              signed_at=at))
    await write_batch(db, commits)


def _counts(url: str) -> tuple[int, int]:
    return run_with_database(url, lambda db: db.fetchrow(
        "SELECT (SELECT count(*) FROM events) AS e, (SELECT count(*) FROM processed_messages) AS l"))


def test_dry_run_reports_and_changes_nothing_then_run_prunes(fresh_database_url: str, tmp_path: Path) -> None:
    run_with_database(fresh_database_url, _seed)
    env = _env(fresh_database_url, tmp_path)
    before = tuple(_counts(fresh_database_url))

    dry = campushub(env, "run", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True and report["skipped"] is False
    assert report["tables"]["events"]["removed"] == 2  # the 20- and 21-day-old events (retention 14 days)
    assert report["tables"]["events"]["partitions_created"] == []
    assert tuple(_counts(fresh_database_url)) == before

    done = campushub(env, "run")
    assert done.returncode == 0, done.stderr
    assert "events" in done.stdout and "removed 2 row(s)" in done.stdout
    assert tuple(_counts(fresh_database_url))[0] == 1


def test_a_database_without_the_migration_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    refused = campushub(_env(empty_database_url, tmp_path), "run", "--dry-run")
    assert refused.returncode == 2 and "campushub migrate" in refused.stderr
