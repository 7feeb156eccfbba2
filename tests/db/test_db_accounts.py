"""One-time codes, resets and password changes (hub/db/accounts.py) against the real PostgreSQL."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import pytest

from hub.db import Database, open_database
from hub.db.accounts import (
    AccountError,
    change_password,
    code_holder,
    issue_activation,
    issue_reset,
    must_change_password,
    new_code,
    normalise_code,
    redeem_code,
)

pytestmark = pytest.mark.integration

NOW = datetime(2031, 5, 5, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=4) as database:
        await database.execute(
            "INSERT INTO users (id, username, display_name, role, password_hash) VALUES"
            " ('u-new', 'newbie', 'New Person', 'faculty', ''), ('u-old', 'oldie', 'Old Hand', 'ops', 'H1')")
        await database.execute(
            "INSERT INTO refresh_tokens (token_hash, user_id, expires_at) VALUES ($1, 'u-old', $2)",
            b"t" * 32, NOW + timedelta(days=1))
        yield database


def test_codes_are_long_random_and_forgiving_to_type() -> None:
    code = new_code()
    assert len(code) == 23 and code.count("-") == 3 and code != new_code()
    assert normalise_code(code.lower().replace("-", " ")) == code.replace("-", "")
    assert normalise_code("short") is None and normalise_code("x" * 1000) is None
    assert normalise_code("0" * 19 + "U") is None  # not in the alphabet


async def test_activation_code_sets_the_first_password_once(fresh_db: Database) -> None:
    issued = await issue_activation(fresh_db, user_id="u-new", actor="u-admin", now=NOW)
    assert issued.code not in repr(issued)
    assert issued.expires_at == NOW + timedelta(days=14)
    holder = await code_holder(fresh_db, issued.code.lower(), now=NOW)
    assert holder is not None and holder.username == "newbie"
    await redeem_code(fresh_db, code=issued.code, user_id="u-new", password_hash="NEWHASH", now=NOW)
    assert await fresh_db.fetchval("SELECT password_hash FROM users WHERE id = 'u-new'") == "NEWHASH"
    assert await code_holder(fresh_db, issued.code, now=NOW) is None
    with pytest.raises(AccountError) as refused:
        await redeem_code(fresh_db, code=issued.code, user_id="u-new", password_hash="AGAIN", now=NOW)
    assert refused.value.field == "code"
    stored = await fresh_db.fetch("SELECT code_hash FROM one_time_codes")
    assert all(issued.code.replace("-", "").encode() not in bytes(r["code_hash"]) for r in stored)
    actions = [r["action"] for r in await fresh_db.fetch(
        "SELECT action FROM audit_log WHERE entity = 'account' ORDER BY id")]
    assert actions == ["code_issued", "activated"]


async def test_an_account_with_a_password_gets_a_reset_not_an_activation(fresh_db: Database) -> None:
    with pytest.raises(AccountError, match="reset it instead"):
        await issue_activation(fresh_db, user_id="u-old", actor="u-admin", now=NOW)


async def test_expired_codes_and_earlier_codes_do_not_work(fresh_db: Database) -> None:
    first = await issue_activation(fresh_db, user_id="u-new", actor=None, now=NOW)
    second = await issue_activation(fresh_db, user_id="u-new", actor=None, now=NOW)
    assert await code_holder(fresh_db, first.code, now=NOW) is None
    late = NOW + timedelta(days=15)
    assert await code_holder(fresh_db, second.code, now=late) is None
    with pytest.raises(AccountError):
        await redeem_code(fresh_db, code=second.code, user_id="u-new", password_hash="X", now=late)


async def test_a_code_is_only_for_its_own_account(fresh_db: Database) -> None:
    issued = await issue_activation(fresh_db, user_id="u-new", actor=None, now=NOW)
    with pytest.raises(AccountError):
        await redeem_code(fresh_db, code=issued.code, user_id="u-old", password_hash="X", now=NOW)


async def test_reset_blanks_the_password_revokes_sessions_and_forces_a_change(fresh_db: Database) -> None:
    issued = await issue_reset(fresh_db, user_id="u-old", actor="u-admin", reason="lost phone", now=NOW)
    assert issued.expires_at == NOW + timedelta(hours=72) and issued.purpose == "reset"
    assert await fresh_db.fetchval("SELECT password_hash FROM users WHERE id = 'u-old'") == ""
    assert await must_change_password(fresh_db, "u-old")
    assert await fresh_db.fetchval("SELECT revoked_at FROM refresh_tokens WHERE user_id = 'u-old'") == NOW
    audit = await fresh_db.fetchrow("SELECT actor, action, reason FROM audit_log WHERE entity = 'account'")
    assert audit is not None and dict(audit) == {"actor": "u-admin", "action": "password_reset", "reason": "lost phone"}
    await redeem_code(fresh_db, code=issued.code, user_id="u-old", password_hash="H2", now=NOW)
    assert not await must_change_password(fresh_db, "u-old")


async def test_reset_of_an_unknown_user_is_refused(fresh_db: Database) -> None:
    with pytest.raises(AccountError, match="No such user"):
        await issue_reset(fresh_db, user_id="nobody", actor="u-admin", now=NOW)


async def test_change_is_a_compare_and_set_on_the_verified_hash(fresh_db: Database) -> None:
    await fresh_db.execute("UPDATE users SET must_change_password = true WHERE id = 'u-old'")
    await change_password(fresh_db, user_id="u-old", verified_hash="H1", password_hash="H2", now=NOW)
    assert await fresh_db.fetchval("SELECT password_hash FROM users WHERE id = 'u-old'") == "H2"
    assert not await must_change_password(fresh_db, "u-old")
    with pytest.raises(AccountError) as refused:  # a concurrent change already replaced H1
        await change_password(fresh_db, user_id="u-old", verified_hash="H1", password_hash="H3", now=NOW)
    assert refused.value.field == "current_password"


async def test_no_password_cannot_be_changed_without_a_code(fresh_db: Database) -> None:
    with pytest.raises(AccountError):
        await change_password(fresh_db, user_id="u-new", verified_hash="", password_hash="H", now=NOW)


async def test_a_deactivated_account_cannot_redeem(fresh_db: Database) -> None:
    issued = await issue_activation(fresh_db, user_id="u-new", actor=None, now=NOW)
    await fresh_db.execute("UPDATE users SET deactivated_at = $1 WHERE id = 'u-new'", NOW)
    assert await code_holder(fresh_db, issued.code, now=NOW) is None
    with pytest.raises(AccountError, match="deactivated"):
        await redeem_code(fresh_db, code=issued.code, user_id="u-new", password_hash="X", now=NOW)


async def test_a_reset_or_change_restarts_sessions_at_a_later_whole_second_each_time(fresh_db: Database) -> None:
    """Access tokens carry whole seconds: each end of sessions must be a distinct, later second."""
    at = NOW + timedelta(microseconds=250_000)
    cutoff = "SELECT sessions_valid_from FROM users WHERE id = 'u-old'"
    await change_password(fresh_db, user_id="u-old", verified_hash="H1", password_hash="H2", now=at)
    assert await fresh_db.fetchval(cutoff) == NOW + timedelta(seconds=1)
    assert await fresh_db.fetchval("SELECT count(*) FROM refresh_tokens WHERE user_id = 'u-old'"
                                   " AND revoked_at IS NULL") == 0  # the other sessions end too
    await issue_reset(fresh_db, user_id="u-old", actor="admin", now=at)  # the same instant: still a later second
    assert await fresh_db.fetchval(cutoff) == NOW + timedelta(seconds=2)
    assert await fresh_db.fetchval("SELECT sessions_valid_from FROM users WHERE id = 'u-new'") is None
