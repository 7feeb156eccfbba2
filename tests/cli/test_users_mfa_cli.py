"""``campushub users reset-mfa``: the way back for an admin who lost their phone (no other admin to reset it)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.db import run_with_database

pytestmark = pytest.mark.integration


def campushub(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", "users", *args], capture_output=True, text=True,
                          env=env, input=stdin, timeout=60)


def test_reset_mfa_turns_it_off_once_and_is_audited(empty_database_url: str, tmp_path: Path) -> None:
    env = dict(os.environ, CAMPUSHUB_DATABASE_URL=empty_database_url, CAMPUSHUB_DATA_DIR=str(tmp_path / "data"))
    made = campushub(env, "create-admin", "alice", "--password-stdin", stdin="violet-harbour-quietly-42\n")
    assert made.returncode == 0, made.stderr

    async def enrolled(db) -> str:
        user_id = await db.fetchval("SELECT id FROM users WHERE username = 'alice'")
        await db.execute("INSERT INTO user_mfa (user_id, secret_sealed, confirmed_at) VALUES ($1, $2, now())",
                         user_id, b"\x01\x01" + b"\x00" * 40)
        await db.execute("INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)", user_id, b"h")
        await db.execute("INSERT INTO refresh_tokens (user_id, token_hash, expires_at)"
                         " VALUES ($1, $2, now() + interval '1 day')", user_id, b"r" * 32)
        return user_id

    user_id = run_with_database(empty_database_url, enrolled)
    reset = campushub(env, "reset-mfa", "alice", "--reason", "lost phone")
    assert reset.returncode == 0, reset.stderr
    assert "turned off" in reset.stdout

    async def state(db) -> tuple:
        left = await db.fetchval("SELECT count(*) FROM user_mfa WHERE user_id = $1", user_id)
        codes = await db.fetchval("SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1", user_id)
        audit = await db.fetchrow("SELECT actor, reason FROM audit_log WHERE entity = 'mfa' AND action = 'removed'"
                                  " AND entity_id = $1", user_id)
        live = await db.fetchval("SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL",
                                 user_id)
        return left, codes, live, audit["actor"], audit["reason"]

    # The lost phone's sessions end with it.
    left, codes, live_refresh_tokens, actor, reason = run_with_database(empty_database_url, state)
    assert (left, codes, live_refresh_tokens, reason) == (0, 0, 0, "lost phone") and actor.startswith("cli:")

    again = campushub(env, "reset-mfa", "alice")
    assert again.returncode == 1 and "no two-factor" in again.stderr
    unknown = campushub(env, "reset-mfa", "nobody")
    assert unknown.returncode == 1 and "no account" in unknown.stderr
    too_long = campushub(env, "reset-mfa", "alice", "--reason", "x" * 501)
    assert too_long.returncode == 2
