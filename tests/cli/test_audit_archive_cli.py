"""``campushub audit archive`` / ``audit verify`` of segments and of the database: archive, prune,
verify the segments offline and the database from its anchor; tampering and a missing segment
are reported (exit 1); a dry run deletes nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hub.app.cli import main
from hub.db import run_with_database

pytestmark = pytest.mark.integration

OLD = datetime.now(timezone.utc) - timedelta(days=3000)


def _seed(url: str, old: int, recent: int) -> None:
    async def work(db) -> None:
        async def append(conn) -> None:
            for i in range(old + recent):
                at = OLD + timedelta(minutes=i) if i < old else None
                await conn.execute(
                    "INSERT INTO audit_log (at, actor, entity, entity_id, student_id, after, reason)"
                    " VALUES (coalesce($1, now()), 'usr-fac', 'attendance', 'ses-1/stu-1', 'stu-1',"
                    " $2::jsonb, 'r')", at, json.dumps({"status": "present", "pct": 75.25, "i": i}))

        await db.run(append, transaction=True)

    run_with_database(url, work)


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def env(fresh_database_url: str, tmp_path: Path, monkeypatch) -> str:
    monkeypatch.setenv("CAMPUSHUB_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("CAMPUSHUB_DATA_DIR", str(tmp_path / "data"))
    return fresh_database_url


def test_archive_then_verify_segments_and_database(env: str, tmp_path: Path, capsys) -> None:
    _seed(env, old=5, recent=2)
    out_dir = tmp_path / "segments"

    code, out, err = _cli(capsys, "audit", "archive", "--older-than", "2555", "--output-dir", str(out_dir),
                          "--dry-run", "--json")
    assert code == 0, err
    dry = json.loads(out)
    assert (dry["dry_run"], dry["entries_archived"], dry["entries_pruned"]) == (True, 5, 5)
    assert not out_dir.exists()

    # Once as a real subprocess: the command as an operator (or cron) runs it.
    env_vars = dict(os.environ, CAMPUSHUB_DATABASE_URL=env, CAMPUSHUB_DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run([sys.executable, "-m", "hub", "audit", "archive", "--older-than", "2555",
                             "--output-dir", str(out_dir)], capture_output=True, text=True, env=env_vars, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "archived 5 entries" in result.stdout and "pruned 5" in result.stdout
    [segment] = sorted(out_dir.glob("*.jsonl"))

    # Offline: the segment re-hashes, starts the log, and matches its manifest.
    code, out, _ = _cli(capsys, "audit", "verify", str(segment), "--json")
    verdict = json.loads(out)
    assert (code, verdict["ok"], verdict["entries"], verdict["starts_at_beginning"]) == (0, True, 5, True)
    assert verdict["manifest"] == {"mismatches": []}
    code, out, _ = _cli(capsys, "audit", "verify", str(segment))
    assert code == 0 and out.startswith("intact: 5 entries from the first entry of the log")

    # The database: 2 entries left, continuing the archived 5; with --archive-dir, the segment too.
    code, out, _ = _cli(capsys, "audit", "verify", "--archive-dir", str(out_dir), "--json")
    verdict = json.loads(out)
    assert (code, verdict["ok"], verdict["entries"], verdict["archived_entries"]) == (0, True, 2, 5)
    assert verdict["segments"] == [{"file": segment.name, "ok": True, "problem": None, "mismatches": [],
                                    "line": None, "entries": 5, "redacted": 0}]
    code, out, _ = _cli(capsys, "audit", "verify")
    assert code == 0 and out.startswith("database chain intact: 2 entries, continuing 5 archived entries")

    # A tampered segment: offline and against the anchor.
    lines = segment.read_text().splitlines(keepends=True)
    original = segment.read_text()
    segment.write_text("".join([lines[0], lines[1].replace("75.25", "75.2500"), *lines[2:]]))
    code, out, _ = _cli(capsys, "audit", "verify", str(segment), "--json")
    verdict = json.loads(out)
    assert (code, verdict["problem"], verdict["first_broken_id"]) == (1, "altered", 2)
    code, out, _ = _cli(capsys, "audit", "verify", "--archive-dir", str(out_dir))
    assert code == 1 and f"segment {segment.name}: BROKEN" in out

    # Its tail cut off: each remaining entry verifies, the manifest says it is short.
    segment.write_text("".join(lines[:3]))
    code, out, _ = _cli(capsys, "audit", "verify", str(segment))
    assert code == 1 and out.startswith("BROKEN: the file does not match its segment manifest")
    assert "its number of entries" in out

    # Missing altogether.
    segment.unlink()
    code, out, _ = _cli(capsys, "audit", "verify", "--archive-dir", str(out_dir), "--json")
    verdict = json.loads(out)
    assert code == 1 and verdict["segments"][0]["problem"] == "missing"
    segment.write_text(original)
    assert _cli(capsys, "audit", "verify", "--archive-dir", str(out_dir))[0] == 0


def test_archive_usage_errors(env: str, tmp_path: Path, capsys) -> None:
    _seed(env, old=2, recent=0)
    for bad in (["--older-than", "-1"], ["--older-than", "ten"], []):
        with pytest.raises(SystemExit) as usage:
            main(["audit", "archive", "--output-dir", str(tmp_path), *bad])
        assert usage.value.code == 2
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _cli(capsys, "audit", "archive", "--older-than", "1", "--output-dir", str(blocker / "dir"))
    assert code == 2 and "cannot write segments" in err and "Traceback" not in err
    code, out, _ = _cli(capsys, "audit", "verify", "--json")
    assert code == 0 and json.loads(out)["entries"] == 2  # nothing was deleted


def test_archive_before_migrate_says_so(empty_database_url: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CAMPUSHUB_DATABASE_URL", empty_database_url)
    monkeypatch.setenv("CAMPUSHUB_DATA_DIR", str(tmp_path / "data"))
    code, _, err = _cli(capsys, "audit", "archive", "--older-than", "1", "--output-dir", str(tmp_path / "s"))
    assert code == 1 and "run `campushub migrate`" in err
    code, _, err = _cli(capsys, "audit", "verify")
    assert code == 1 and "run `campushub migrate`" in err
