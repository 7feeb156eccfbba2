"""``campushub users import FILE [--dry-run] [--codes FILE]`` as a real subprocess, from an empty database."""
from __future__ import annotations

import csv
import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hub.db import run_with_database

pytestmark = pytest.mark.integration

PEOPLE = ("role,name,username,email,roll_number,program,section\n"
          "student,Asha Rao,,asha@campus.example,21CS001,B.Tech CSE,A\n"
          "faculty,Meera Iyer,miyer,meera@campus.example,,,\n")


def campushub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", "users", *args], capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.fixture
def env(empty_database_url: str, tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, CAMPUSHUB_DATABASE_URL=empty_database_url, CAMPUSHUB_DATA_DIR=str(tmp_path / "data"))


def _count(url: str) -> int:
    return run_with_database(url, lambda db: db.fetchval("SELECT count(*) FROM users"))


def test_dry_run_import_codes_and_reimport(env: dict[str, str], empty_database_url: str, tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE, encoding="utf-8")

    dry = campushub(env, "import", str(people), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would create 2 account(s)" in dry.stderr and dry.stdout == ""
    assert _count(empty_database_url) == 0

    done = campushub(env, "import", str(people))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["username"] for r in rows] == ["21CS001", "miyer"] and all(r["activation_code"] for r in rows)
    assert _count(empty_database_url) == 2

    again = campushub(env, "import", str(people))
    assert again.returncode == 0 and "created 0 account(s); 2 already there" in again.stderr and again.stdout == ""


def test_codes_go_to_a_private_file(env: dict[str, str], tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text(PEOPLE, encoding="utf-8")
    codes = tmp_path / "codes.csv"
    done = campushub(env, "import", str(people), "--codes", str(codes))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and stat.S_IMODE(codes.stat().st_mode) == 0o600
    assert "activation_code" in codes.read_text()


def test_bad_rows_are_all_reported_and_nothing_is_imported(env: dict[str, str], empty_database_url: str,
                                                           tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("role,name,username\nfaculty,Good,good1\nwizard,Merlin,merlin\nops,=1+1,olu1\n", encoding="utf-8")
    result = campushub(env, "import", str(bad))
    assert result.returncode == 1
    assert f"{bad}:3: role: unknown role" in result.stderr and f"{bad}:4: name:" in result.stderr
    assert "2 problem(s); nothing was imported" in result.stderr
    assert _count(empty_database_url) == 0


def test_wrong_encoding_and_too_large_and_missing(env: dict[str, str], tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes("role,name,username\nfaculty,José,jose1\n".encode("latin-1"))
    result = campushub(env, "import", str(latin))
    assert result.returncode == 1 and ":2: -: the file is not UTF-8" in result.stderr
    huge = tmp_path / "huge.csv"
    huge.write_bytes(b"role,name,username\n" + b"faculty,A,aaa\n" * 200_000)
    assert campushub(env, "import", str(huge)).returncode == 2
    assert campushub(env, "import", str(tmp_path / "missing.csv")).returncode == 2
