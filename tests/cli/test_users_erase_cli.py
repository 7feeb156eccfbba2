"""``campushub users erase ID --yes`` as a real subprocess: refused while active, then erases a former student."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from support.privacy_world import build_privacy_world, make_former

from hub.db import run_with_database
from hub.db.audit_archive import archive_and_prune
from hub.db.personal_data import pseudonym

pytestmark = pytest.mark.integration


def campushub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", "users", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_erase_a_former_student_from_the_command_line(fresh_database_url: str, tmp_path: Path) -> None:
    env = dict(os.environ, CAMPUSHUB_DATABASE_URL=fresh_database_url, CAMPUSHUB_DATA_DIR=str(tmp_path / "data"))
    now = datetime.now(timezone.utc)
    world = run_with_database(fresh_database_url, lambda db: build_privacy_world(db, now, webhook=False))
    student = world.target.id

    unconfirmed = campushub(env, "erase", student)
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    active = campushub(env, "erase", student, "--yes")
    assert active.returncode == 1 and "active" in active.stderr and "Deactivate" in active.stderr

    run_with_database(fresh_database_url, lambda db: make_former(db, world, world.target))
    # The audit log so far is archived to segment files and pruned (retention): erasure must reach there too.
    archive_dir = tmp_path / "data" / "audit-archive"
    pruned = run_with_database(fresh_database_url, lambda db: archive_and_prune(
        db, older_than=datetime.now(timezone.utc) + timedelta(minutes=1), archive_dir=archive_dir, dry_run=False))
    assert pruned.entries_pruned > 0 and pruned.segment_paths
    segments = "".join(p.read_text() for p in pruned.segment_paths)
    assert world.target.name in segments and world.target.email in segments  # else the check below proves nothing

    done = campushub(env, "erase", student, "--yes", "--reason", "request 9", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["pseudonym"] == pseudonym(student) and report["already_erased"] is False
    assert report["changed"]["audit_archive:redacted"] > 0
    segments = "".join(p.read_text() for p in sorted(archive_dir.glob("*.jsonl")))
    for marker in world.markers(world.target):
        assert marker not in segments, marker
    assert world.other.name in segments
    verified = subprocess.run([sys.executable, "-m", "hub", "audit", "verify", "--archive-dir", str(archive_dir)],
                              capture_output=True, text=True, env=env, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    row = run_with_database(fresh_database_url, lambda db: db.fetchrow(
        "SELECT u.display_name, u.email, s.roll_number FROM users u JOIN students s USING (id) WHERE u.id = $1",
        student))
    assert tuple(row) == ("Erased student", None, pseudonym(student))
    actor = run_with_database(fresh_database_url, lambda db: db.fetchval(
        "SELECT actor FROM audit_log WHERE entity = 'personal_data' AND action = 'erased' AND entity_id = $1",
        student))
    assert actor.startswith("cli:")

    again = campushub(env, "erase", student, "--yes")
    assert again.returncode == 0 and "already erased" in again.stdout
    unknown = campushub(env, "erase", f"stu-none-{world.sfx}", "--yes")
    assert unknown.returncode == 1 and "No such student" in unknown.stderr
