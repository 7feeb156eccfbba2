"""``campushub users create-admin`` and ``users list`` as a real subprocess, from an empty database."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.core.passwords import verify_password
from hub.db import run_with_database

pytestmark = pytest.mark.integration

STRONG = "violet-harbour-quietly-42"


def campushub(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", "users", *args], capture_output=True, text=True,
                          env=env, input=stdin, timeout=60)


@pytest.fixture
def env(empty_database_url: str, tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, CAMPUSHUB_DATABASE_URL=empty_database_url, CAMPUSHUB_DATA_DIR=str(tmp_path / "data"))


def test_create_admin_on_an_empty_database(env: dict[str, str], empty_database_url: str) -> None:
    made = campushub(env, "create-admin", "alice", "--password-stdin", "--display-name", "Alice Admin",
                     stdin=STRONG + "\n")
    assert made.returncode == 0, made.stderr
    assert "created admin alice" in made.stdout and STRONG not in made.stdout + made.stderr
    row = run_with_database(empty_database_url, lambda db: db.fetchrow(
        "SELECT id, role, display_name, password_hash FROM users WHERE username = 'alice'"))
    assert (row["role"], row["display_name"]) == ("admin", "Alice Admin")
    assert verify_password(row["password_hash"], STRONG)
    actor = run_with_database(empty_database_url, lambda db: db.fetchval(
        "SELECT actor FROM audit_log WHERE entity = 'user' AND entity_id = $1 AND action = 'created'", row["id"]))
    assert actor.startswith("cli:")

    # An admin exists: refused (1) unless --force.
    again = campushub(env, "create-admin", "bob", "--password-stdin", stdin=STRONG + "\n")
    assert again.returncode == 1 and "--force" in again.stderr
    forced = campushub(env, "create-admin", "bob", "--password-stdin", "--force", stdin=STRONG + "\n")
    assert forced.returncode == 0, forced.stderr
    taken = campushub(env, "create-admin", "bob", "--password-stdin", "--force", stdin=STRONG + "\n")
    assert taken.returncode == 1 and "taken" in taken.stderr

    listed = campushub(env, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    accounts = json.loads(listed.stdout)
    assert accounts["total"] == 2
    assert [(a["username"], a["role"], a["active"]) for a in accounts["items"]] == [("alice", "admin", True),
                                                                                    ("bob", "admin", True)]
    table = campushub(env, "list")
    assert table.returncode == 0 and "alice" in table.stdout and "USERNAME" in table.stdout


def test_create_admin_refuses_bad_input(env: dict[str, str], empty_database_url: str) -> None:
    cases = [
        (("create-admin", "alice", "--password-stdin"), "short\n", "password refused"),
        (("create-admin", "alice", "--password-stdin"), "password1234\n", "password refused"),
        (("create-admin", "alice", "--password-stdin"), "\n", "no password"),
        (("create-admin", "x", "--password-stdin"), STRONG + "\n", "username"),
        (("create-admin", "alice", "--password-stdin", "--email", "nope"), STRONG + "\n", "email"),
        (("create-admin", "alice", "--password-stdin", "--display-name", "a\x01b"), STRONG + "\n", "display_name"),
        (("create-admin", "alice", "--password-stdin"), "x" * 5000 + "\n", "too long"),
    ]
    for args, stdin, message in cases:
        result = campushub(env, *args, stdin=stdin)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert campushub(env, "create-admin", "alice").returncode == 2  # --password-stdin is required
    count = run_with_database(empty_database_url, lambda db: db.fetchval("SELECT count(*) FROM users"))
    assert count == 0


def test_no_database_configured_is_a_usage_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CAMPUSHUB_DATABASE_URL", "CAMPUSHUB_MQTT_URL")}
    env["CAMPUSHUB_DATA_DIR"] = str(tmp_path / "nothing")
    result = campushub(env, "list")
    assert result.returncode == 2 and "CAMPUSHUB_DATABASE_URL" in result.stderr
