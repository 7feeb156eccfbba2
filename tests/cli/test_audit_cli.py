"""``campushub audit export`` / ``audit verify``: an export re-hashes offline to the database's own
chain, and any edit, removal or garbage in the file is pinpointed (exit 1); usage errors exit 2."""
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
from hub.db.attendance import AttendanceChange, apply_attendance_changes
from hub.db.seed import ensure_campus

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 4, 10, 0, tzinfo=timezone.utc)


def _seed(url: str) -> dict:
    """A small campus, ten attendance changes and one entry with exact decimals (numeric(5,2)
    prints 75.00, which a float would turn into 75.0 and so fail to verify)."""

    async def work(db) -> dict:
        campus = await ensure_campus(db, rooms=1, students=4, now=NOW)
        session = campus.sessions[0]

        async def change(conn) -> None:
            for n, status in enumerate(("present", "late", "absent", "excused", "present")):
                await apply_attendance_changes(conn, [
                    AttendanceChange(session.session_id, s, status, "manual") for s in session.enrolled[:2]],
                    actor="usr-admin", reason=f"round {n} \u2014 \"quoted\"\n")

        await db.run(change, transaction=True)
        await db.execute(
            "INSERT INTO audit_log (actor, entity, entity_id, before, after, reason) VALUES"
            " ('usr-admin', 'course_rules', 'c1', '{\"warning_pct\": 75.00, \"late_weight\": 0.800}',"
            "  '{\"warning_pct\": 80.50, \"late_weight\": 1E-1, \"tags\": [\"é\", null, true]}', 'policy')")
        head = await db.fetchrow("SELECT id, hash, at FROM audit_log ORDER BY id DESC LIMIT 1")
        count = await db.fetchval("SELECT count(*) FROM audit_log")
        return {"head_id": head["id"], "head_hash": bytes(head["hash"]).hex(), "count": count}

    return run_with_database(url, work)


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _verify(capsys, path: Path, *extra: str) -> tuple[int, dict]:
    code, out, _ = _cli(capsys, "audit", "verify", str(path), "--json", *extra)
    return code, json.loads(out)


def test_export_then_verify_offline(fresh_database_url: str, tmp_path: Path, capsys, monkeypatch) -> None:
    seeded = _seed(fresh_database_url)
    env = dict(os.environ, CAMPUSHUB_DATABASE_URL=fresh_database_url, CAMPUSHUB_DATA_DIR=str(tmp_path / "data"))
    export = tmp_path / "audit.jsonl"
    # Once as a real subprocess: the command as an operator runs it.
    result = subprocess.run([sys.executable, "-m", "hub", "audit", "export", "--output", str(export)],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"wrote {seeded['count']} entries" in result.stderr and result.stdout == ""
    lines = export.read_text().splitlines()
    assert len(lines) == seeded["count"] and '"warning_pct":75.00' in export.read_text()

    code, verdict = _verify(capsys, export)
    assert code == 0, verdict
    assert verdict["ok"] and verdict["entries"] == seeded["count"] and verdict["starts_at_beginning"]
    assert (verdict["head_id"], verdict["head_hash"]) == (seeded["head_id"], seeded["head_hash"])
    code, out, _ = _cli(capsys, "audit", "verify", str(export))
    assert code == 0 and out.startswith(f"intact: {seeded['count']} entries from the first entry of the log")

    # --since: a later stretch of the chain; it verifies, anchored on the entry before it.
    since = (datetime.fromisoformat(json.loads(lines[3])["at"]) + timedelta(microseconds=1)).isoformat()
    monkeypatch.setenv("CAMPUSHUB_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("CAMPUSHUB_DATA_DIR", str(tmp_path / "data"))
    code, _, err = _cli(capsys, "audit", "export", "--since", since, "--output", str(tmp_path / "late.jsonl"))
    assert code == 0, err
    code, _, err = _cli(capsys, "audit", "export", "--format", "csv", "--output", str(tmp_path / "all.csv"))
    assert code == 0, err
    code, verdict = _verify(capsys, tmp_path / "late.jsonl")
    assert code == 0 and 0 < verdict["entries"] < seeded["count"] and not verdict["starts_at_beginning"]
    assert verdict["head_hash"] == seeded["head_hash"]
    csv_bytes = (tmp_path / "all.csv").read_bytes()
    assert csv_bytes.startswith(b"id,at,actor,") and csv_bytes.count(b"\r\n") == seeded["count"] + 1


def test_tampering_with_an_export_is_pinpointed(fresh_database_url: str, tmp_path: Path, capsys,
                                                 monkeypatch) -> None:
    _seed(fresh_database_url)
    export = tmp_path / "audit.jsonl"
    monkeypatch.setenv("CAMPUSHUB_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("CAMPUSHUB_DATA_DIR", str(tmp_path / "data"))
    assert _cli(capsys, "audit", "export", "-o", str(export))[0] == 0
    lines = export.read_text().splitlines(keepends=True)
    entries = [json.loads(line) for line in lines]

    def write(name: str, content: list[str]) -> Path:
        path = tmp_path / name
        path.write_text("".join(content))
        return path

    # An edited reason: that entry's hash no longer matches.
    edited = dict(entries[2], reason="nothing to see")
    code, verdict = _verify(capsys, write("edited.jsonl", [*lines[:2], json.dumps(edited) + "\n", *lines[3:]]))
    assert (code, verdict["ok"], verdict["first_broken_id"], verdict["problem"]) == (
        1, False, entries[2]["id"], "altered")
    # An edited number (75.00 -> 75.0 is a different text, so a different hash).
    numeric = next(i for i, e in enumerate(entries) if e["entity"] == "course_rules")
    code, verdict = _verify(capsys, write("numeric.jsonl", [
        *lines[:numeric], lines[numeric].replace("75.00", "75.0"), *lines[numeric + 1:]]))
    assert (code, verdict["problem"], verdict["first_broken_id"]) == (1, "altered", entries[numeric]["id"])
    # A removed entry: the next one's link does not join...
    cut = write("cut.jsonl", [*lines[:4], *lines[5:]])
    code, verdict = _verify(capsys, cut)
    assert (code, verdict["problem"], verdict["first_broken_id"]) == (1, "broken_link", entries[5]["id"])
    code, out, _ = _cli(capsys, "audit", "verify", str(cut))
    assert code == 1 and out.startswith(f"BROKEN at entry {entries[5]['id']}") and "--allow-gaps" in out
    # ... which a filtered export legitimately has: --allow-gaps counts it, every hash still checked.
    code, verdict = _verify(capsys, cut, "--allow-gaps")
    assert (code, verdict["ok"], verdict["gaps"]) == (0, True, 1)
    # Swapped entries break the links too.
    code, verdict = _verify(capsys, write("swapped.jsonl", [*lines[:2], lines[3], lines[2], *lines[4:]]))
    assert code == 1 and verdict["problem"] == "broken_link"
    # Garbage and non-entries: exit 1 with the line; unreadable file or bad arguments: exit 2.
    code, verdict = _verify(capsys, write("garbage.jsonl", [*lines[:3], "{not json\n"]))
    assert (code, verdict["problem"], verdict["line"]) == (1, "malformed", 4)
    no_at = {k: v for k, v in entries[0].items() if k != "at"}
    code, verdict = _verify(capsys, write("no_at.jsonl", [json.dumps(no_at) + "\n"]))
    assert (code, verdict["problem"]) == (1, "malformed")
    code, verdict = _verify(capsys, write("empty.jsonl", []))
    assert code == 0 and verdict["entries"] == 0
    assert _cli(capsys, "audit", "verify", str(tmp_path / "missing.jsonl"))[0] == 2
    with pytest.raises(SystemExit) as usage:
        main(["audit", "verify", "--archive-dir"])
    assert usage.value.code == 2
    # --archive-dir checks the database's anchors: not with a FILE.
    assert _cli(capsys, "audit", "verify", str(export), "--archive-dir", str(tmp_path))[0] == 2
    with pytest.raises(SystemExit) as usage:
        main(["audit", "export", "--since", "yesterday"])
    assert usage.value.code == 2


def test_an_export_that_cannot_be_written_is_a_usage_error(fresh_database_url: str, tmp_path: Path, capsys,
                                                           monkeypatch) -> None:
    # The OSError is raised inside the database's trio run, so it arrives wrapped in an exception group.
    monkeypatch.setenv("CAMPUSHUB_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("CAMPUSHUB_DATA_DIR", str(tmp_path / "data"))
    target = tmp_path / "no-such-dir" / "audit.jsonl"
    code, _, err = _cli(capsys, "audit", "export", "-o", str(target))
    assert code == 2, err
    assert f"campushub: cannot write {target}: No such file or directory" in err and "Traceback" not in err


def test_an_export_before_migrate_says_so(empty_database_url: str, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CAMPUSHUB_DATABASE_URL", empty_database_url)
    monkeypatch.setenv("CAMPUSHUB_DATA_DIR", str(tmp_path / "data"))
    code, _, err = _cli(capsys, "audit", "export", "-o", str(tmp_path / "audit.jsonl"))
    assert code == 1, err
    assert "run `campushub migrate`" in err and "Traceback" not in err


def test_an_export_with_security_entries_verifies_offline(fresh_database_url: str, tmp_path: Path, capsys,
                                                          monkeypatch) -> None:
    """Attendance changes and security actions interleaved in one chain: the whole export and an
    export of the security entries alone (--allow-gaps) verify; an edited action is pinpointed."""
    from hub.db.security_audit import record

    seeded = _seed(fresh_database_url)

    async def security(db) -> None:
        async def work(conn) -> None:
            await record(conn, actor="usr-admin", action="revoked", entity="device", entity_id="cam-1",
                         before={"revoked": False}, after={"revoked": True, "hmac_key": "k" * 32}, reason="lost")
            await record(conn, actor="alice", action="login_failed", entity="login", entity_id="alice",
                         after={"address": "192.0.2.7"})

        await db.run(work, transaction=True)

    run_with_database(fresh_database_url, security)
    monkeypatch.setenv("CAMPUSHUB_DATABASE_URL", fresh_database_url)
    monkeypatch.setenv("CAMPUSHUB_DATA_DIR", str(tmp_path / "data"))
    export = tmp_path / "audit.jsonl"
    assert _cli(capsys, "audit", "export", "-o", str(export))[0] == 0
    lines = export.read_text().splitlines(keepends=True)
    entries = [json.loads(line) for line in lines]
    assert len(entries) == seeded["count"] + 2 and "k" * 32 not in export.read_text()
    assert [(e["entity"], e["action"]) for e in entries[-2:]] == [("device", "revoked"), ("login", "login_failed")]
    assert entries[0]["action"] is None
    code, verdict = _verify(capsys, export)
    assert (code, verdict["ok"], verdict["entries"]) == (0, True, seeded["count"] + 2)

    security_only = tmp_path / "security.jsonl"
    security_only.write_text("".join(lines[-2:]))
    code, verdict = _verify(capsys, security_only, "--allow-gaps")
    assert (code, verdict["ok"], verdict["entries"]) == (0, True, 2)

    forged = dict(entries[-2], action="rotated")
    (tmp_path / "forged.jsonl").write_text("".join([*lines[:-2], json.dumps(forged) + "\n", lines[-1]]))
    code, verdict = _verify(capsys, tmp_path / "forged.jsonl")
    assert (code, verdict["problem"], verdict["first_broken_id"]) == (1, "altered", entries[-2]["id"])
