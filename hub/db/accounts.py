"""Accounts: one-time codes (activation, admin reset), setting and changing passwords.

A one-time code lets whoever holds it choose the password of one account,
once, before it expires: an *activation* code for an account that never had
a password (made by the people import or the API), a *reset* code issued by
an admin. Only the code's SHA-256 is stored; the plain code is returned once
to the caller, who shows it once. A reset blanks the old password at once
(it may be the reason for the reset), sets ``must_change_password`` and
revokes the user's refresh tokens.

Passwords reach this module already judged (``hub.domain.password_policy``)
and hashed (``hub.core.passwords``) by the caller: argon2 work never runs
inside a transaction. A change is a compare-and-set on the hash the caller
verified, so two concurrent changes cannot both win.

Concurrency contract: every function is one transaction on the shared
:class:`~hub.db.Database` (``*_in`` variants run inside the caller's), safe
from any trio task. Redeeming locks the code's row (``FOR UPDATE``), so a
code is used once even when presented twice at the same moment. Each action
records a security-audit entry as its transaction's last statement.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

import asyncpg

from ._pool import Database
from .security_audit import record
from .users import AccountError, AccountRecord, get_account

Purpose = Literal["activation", "reset"]

ACTIVATION_LIFETIME = timedelta(days=14)
RESET_LIFETIME = timedelta(hours=72)
#: Crockford's base32 alphabet: no I, L, O, U, so a code read aloud or copied by hand survives.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE_CHARS = 20  # 100 random bits
#: Longer input is not a code (bounds what is normalised and hashed).
MAX_CODE_INPUT = 64


@dataclass(frozen=True)
class IssuedCode:
    """A code as shown, once, to the admin: ``code`` is never stored."""

    user_id: str
    purpose: Purpose
    code: str
    expires_at: datetime

    def __repr__(self) -> str:  # the code stays out of logs and tracebacks
        return f"IssuedCode(user_id={self.user_id!r}, purpose={self.purpose!r}, expires_at={self.expires_at!r})"


def new_code() -> str:
    """A fresh code, e.g. ``7K2QM-XW9PA-D4HTR-0BC3N``."""
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_CHARS))
    return "-".join(raw[i:i + 5] for i in range(0, _CODE_CHARS, 5))


def normalise_code(code: str) -> str | None:
    """The canonical form of what a person typed (case, spaces and dashes ignored), or None if it cannot be a code."""
    if len(code) > MAX_CODE_INPUT:
        return None
    raw = "".join(c for c in code.upper() if c not in " -\t")
    raw = raw.replace("O", "0").replace("I", "1").replace("L", "1")
    if len(raw) != _CODE_CHARS or any(c not in _ALPHABET for c in raw):
        return None
    return raw


def _code_hash(code: str) -> bytes | None:
    canonical = normalise_code(code)
    return None if canonical is None else hashlib.sha256(canonical.encode()).digest()


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(timezone.utc)


async def issue_code_in(conn: asyncpg.Connection, *, user_id: str, purpose: Purpose, actor: str | None,
                        now: datetime | None = None, audit: bool = True) -> IssuedCode:
    """Issue a code inside the caller's transaction; earlier unused codes of the user stop working.

    ``audit=False`` when the caller records one entry for a larger action (the people import).
    """
    at = _now(now)
    code = new_code()
    expires_at = at + (ACTIVATION_LIFETIME if purpose == "activation" else RESET_LIFETIME)
    await conn.execute("UPDATE one_time_codes SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL", user_id, at)
    code_hash = _code_hash(code)
    assert code_hash is not None
    await conn.execute(
        "INSERT INTO one_time_codes (code_hash, user_id, purpose, created_by, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6)", code_hash, user_id, purpose, actor, at, expires_at)
    if audit:
        await record(conn, actor=actor or "system", action="code_issued", entity="account", entity_id=user_id,
                     before=None, after={"purpose": purpose, "expires_at": expires_at.isoformat()}, reason="")
    return IssuedCode(user_id, purpose, code, expires_at)


#: Ends every session of the account (SQL, ``%`` the parameter number of the change's time). Access
#: tokens carry whole seconds (``iat``), so sessions restart at the next whole second, and at least a
#: second after the previous restart: a token issued after one reset is still refused by the next
#: one, however close the two. web/auth.py dates new tokens no earlier; web/protection.py refuses older ones.
_NEW_SESSIONS_FROM = ("sessions_valid_from = GREATEST(date_trunc('second', $%d::timestamptz) + interval '1 second',"
                      " sessions_valid_from + interval '1 second')")


async def issue_activation(db: Database, *, user_id: str, actor: str | None,
                           now: datetime | None = None) -> IssuedCode:
    """A new activation code for an account that has no password yet (a lost first code)."""

    async def work(conn: asyncpg.Connection) -> IssuedCode:
        row = await conn.fetchrow("SELECT password_hash FROM users WHERE id = $1 FOR UPDATE", user_id)
        if row is None:
            raise AccountError("No such user.", "id")
        if row["password_hash"]:
            raise AccountError("This account already has a password: reset it instead.", "id")
        return await issue_code_in(conn, user_id=user_id, purpose="activation", actor=actor, now=now)

    return await db.run(work, transaction=True)


async def issue_reset(db: Database, *, user_id: str, actor: str, reason: str = "",
                      now: datetime | None = None) -> IssuedCode:
    """An admin's reset: the old password stops working, the user's sessions end, a reset code is issued.

    Refresh tokens are revoked and access tokens issued before ``now`` are refused
    (``sessions_valid_from``, checked by web/protection.py once the caller invalidates the account).
    """
    at = _now(now)

    async def work(conn: asyncpg.Connection) -> IssuedCode:
        row = await conn.fetchrow(
            "UPDATE users SET password_hash = '', must_change_password = true, updated_at = $2,"
            f" {_NEW_SESSIONS_FROM % 2} WHERE id = $1 RETURNING username", user_id, at)
        if row is None:
            raise AccountError("No such user.", "id")
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", user_id, at)
        issued = await issue_code_in(conn, user_id=user_id, purpose="reset", actor=actor, now=at, audit=False)
        await record(conn, actor=actor, action="password_reset", entity="account", entity_id=user_id,
                     before=None, after={"username": row["username"], "expires_at": issued.expires_at.isoformat()},
                     reason=reason)
        return issued

    return await db.run(work, transaction=True)


async def end_sessions(conn: asyncpg.Connection, *, user_id: str, at: datetime) -> bool:
    """Every session of the user ends, as with a password reset; False for an unknown user.

    Runs inside the caller's transaction (an admin's MFA reset, in
    ``hub.db.mfa.remove_mfa``: whoever held the lost second factor keeps no
    session). Refresh tokens are revoked and access tokens issued before
    ``at`` are refused (``sessions_valid_from``) once the caller invalidates
    the account (web/protection.py).
    """
    found = await conn.fetchval(
        f"UPDATE users SET updated_at = $2, {_NEW_SESSIONS_FROM % 2} WHERE id = $1 RETURNING true", user_id, at)
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", user_id, at)
    return bool(found)


async def code_holder(db: Database, code: str, *, now: datetime | None = None) -> AccountRecord | None:
    """The active account a live code belongs to (to judge the new password against its name), or None."""
    code_hash = _code_hash(code)
    if code_hash is None:
        return None
    user_id = await db.fetchval(
        "SELECT c.user_id FROM one_time_codes c JOIN users u ON u.id = c.user_id"
        " WHERE c.code_hash = $1 AND c.used_at IS NULL AND c.expires_at > $2 AND u.deactivated_at IS NULL",
        code_hash, _now(now))
    return None if user_id is None else await get_account(db, user_id)


async def redeem_code(db: Database, *, code: str, user_id: str, password_hash: str,
                      now: datetime | None = None) -> None:
    """Use ``code`` (held by ``user_id``, from :func:`code_holder`) to set the account's password.

    Raises :class:`AccountError` when the code is unknown, used, expired or
    another account's, or the account is deactivated.
    """
    at = _now(now)
    code_hash = _code_hash(code)

    async def work(conn: asyncpg.Connection) -> None:
        row = None if code_hash is None else await conn.fetchrow(
            "SELECT user_id, purpose, expires_at, used_at FROM one_time_codes WHERE code_hash = $1 FOR UPDATE",
            code_hash)
        if row is None or row["used_at"] is not None or row["expires_at"] <= at or row["user_id"] != user_id:
            raise AccountError("This code is not valid: it may have expired or been used already. "
                               "Ask an administrator for a new one.", "code")
        updated = await conn.fetchval(
            "UPDATE users SET password_hash = $2, must_change_password = false, updated_at = $3"
            " WHERE id = $1 AND deactivated_at IS NULL RETURNING username", user_id, password_hash, at)
        if updated is None:
            raise AccountError("This account is deactivated.", "code")
        await conn.execute("UPDATE one_time_codes SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL",
                           user_id, at)
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", user_id, at)
        action = "activated" if row["purpose"] == "activation" else "password_set_after_reset"
        await record(conn, actor=user_id, action=action, entity="account", entity_id=user_id,
                     before=None, after={"username": updated}, reason="")

    await db.run(work, transaction=True)


async def change_password(db: Database, *, user_id: str, verified_hash: str, password_hash: str,
                          now: datetime | None = None) -> None:
    """Replace the password whose hash the caller verified (``verified_hash``) with ``password_hash``.

    Clears ``must_change_password``. Refused (:class:`AccountError`) when the
    password changed meanwhile or the account is gone or deactivated. Every
    session of the user ends: refresh tokens are revoked and access tokens
    issued before ``now`` are refused (``sessions_valid_from``); the caller
    re-issues its own session after the commit.
    """
    at = _now(now)

    async def work(conn: asyncpg.Connection) -> None:
        updated = await conn.fetchval(
            "UPDATE users SET password_hash = $3, must_change_password = false, updated_at = $4,"
            f" {_NEW_SESSIONS_FROM % 4}"
            " WHERE id = $1 AND password_hash = $2 AND password_hash <> '' AND deactivated_at IS NULL"
            " RETURNING username", user_id, verified_hash, password_hash, at)
        if updated is None:
            raise AccountError("The current password is not correct.", "current_password")
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", user_id, at)
        await record(conn, actor=user_id, action="password_changed", entity="account", entity_id=user_id,
                     before=None, after={"username": updated}, reason="")

    await db.run(work, transaction=True)


async def must_change_password(db: Database, user_id: str) -> bool:
    """Whether the user must choose a new password before anything else."""
    return bool(await db.fetchval("SELECT must_change_password FROM users WHERE id = $1", user_id))
