"""Two-factor authentication state: TOTP enrolments (sealed seeds) and recovery codes.

The seed arrives here sealed (hub/core/secrets_box.py) and recovery codes as
hashes: this module never sees a usable secret. The web (web/mfa.py) checks
codes; this module makes each acceptance atomic:

- a TOTP code is accepted by moving ``last_step`` forward with one
  conditional UPDATE, so two concurrent uses of one code (or a replay within
  its 30 s window) cannot both pass;
- a recovery code is spent by one conditional UPDATE of its row.

Enrolment, removal and every spent recovery code are written to the security
audit log (hub/db/security_audit.py) in the same transaction.

Concurrency contract: every function is one round trip or one transaction on
the shared :class:`~hub.db.Database`, callable from any trio task.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from ._pool import Database
from .accounts import end_sessions
from .sealed_secrets import totp_context as totp_context  # re-exported: web/mfa.py seals with it
from .security_audit import record


@dataclass(frozen=True)
class MfaRecord:
    user_id: str
    #: The TOTP seed sealed by the secrets box (context ``totp_context(user_id)``).
    secret_sealed: bytes = field(repr=False)
    #: ``None`` while the enrolment waits for its first code: not yet a second factor.
    confirmed_at: datetime | None
    last_step: int
    failed_codes: int
    failed_since: datetime | None
    recovery_codes_left: int

    @property
    def enabled(self) -> bool:
        return self.confirmed_at is not None


async def get_mfa(db: Database, user_id: str) -> MfaRecord | None:
    row = await db.fetchrow(
        "SELECT m.*, (SELECT count(*) FROM mfa_recovery_codes c WHERE c.user_id = m.user_id AND c.used_at IS NULL)"
        " AS recovery_left FROM user_mfa m WHERE m.user_id = $1", user_id)
    if row is None:
        return None
    return MfaRecord(row["user_id"], bytes(row["secret_sealed"]), row["confirmed_at"], row["last_step"],
                     row["failed_codes"], row["failed_since"], row["recovery_left"])


async def mfa_enabled(db: Database, user_id: str) -> bool:
    return bool(await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM user_mfa WHERE user_id = $1 AND confirmed_at IS NOT NULL)", user_id))


async def begin_enrolment(db: Database, user_id: str, secret_sealed: bytes) -> bool:
    """Store a new unconfirmed seed (replacing an earlier unconfirmed one); False if MFA is already on."""
    status = await db.execute(
        "INSERT INTO user_mfa (user_id, secret_sealed) VALUES ($1, $2)"
        " ON CONFLICT (user_id) DO UPDATE SET secret_sealed = EXCLUDED.secret_sealed, created_at = now(),"
        " last_step = 0, failed_codes = 0, failed_since = NULL WHERE user_mfa.confirmed_at IS NULL",
        user_id, secret_sealed)
    return status == "INSERT 0 1"


async def confirm_enrolment(
    db: Database, user_id: str, *, step: int, recovery_hashes: list[bytes], now: datetime,
) -> bool:
    """Turn the pending enrolment on (its first code was of ``step``) with fresh recovery codes; audited.

    False if there was no pending enrolment (none begun, or already confirmed).
    """

    async def work(conn: asyncpg.Connection) -> bool:
        status = await conn.execute(
            "UPDATE user_mfa SET confirmed_at = $2, last_step = $3, failed_codes = 0, failed_since = NULL"
            " WHERE user_id = $1 AND confirmed_at IS NULL", user_id, now, step)
        if status != "UPDATE 1":
            return False
        await _replace_recovery_codes(conn, user_id, recovery_hashes)
        await record(conn, actor=user_id, action="enrolled", entity="mfa", entity_id=user_id,
                     after={"method": "totp", "recovery_codes": len(recovery_hashes)})
        return True

    return await db.run(work, transaction=True)


async def _replace_recovery_codes(conn: asyncpg.Connection, user_id: str, hashes: list[bytes]) -> None:
    await conn.execute("DELETE FROM mfa_recovery_codes WHERE user_id = $1", user_id)
    await conn.executemany(
        "INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)", [(user_id, h) for h in hashes])


async def replace_recovery_codes(db: Database, user_id: str, hashes: list[bytes]) -> bool:
    """A new set of recovery codes (the old ones stop working); False if MFA is not on. Audited."""

    async def work(conn: asyncpg.Connection) -> bool:
        if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM user_mfa WHERE user_id = $1 AND confirmed_at IS NOT NULL)", user_id):
            return False
        await _replace_recovery_codes(conn, user_id, hashes)
        await record(conn, actor=user_id, action="recovery_codes_replaced", entity="mfa", entity_id=user_id,
                     after={"recovery_codes": len(hashes)})
        return True

    return await db.run(work, transaction=True)


async def accept_totp_step(db: Database, user_id: str, step: int) -> bool:
    """Record that a code of ``step`` was used; False if that step (or a later one) was used already: a replay."""
    status = await db.execute(
        "UPDATE user_mfa SET last_step = $2, failed_codes = 0, failed_since = NULL"
        " WHERE user_id = $1 AND last_step < $2", user_id, step)
    return status == "UPDATE 1"


async def spend_recovery_code(db: Database, user_id: str, code_hash: bytes, now: datetime) -> int | None:
    """Spend one recovery code; the number left after it, or ``None`` if it was unknown or spent. Audited."""

    async def work(conn: asyncpg.Connection) -> int | None:
        status = await conn.execute(
            "UPDATE mfa_recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
            user_id, code_hash, now)
        if status != "UPDATE 1":
            return None
        await conn.execute(
            "UPDATE user_mfa SET failed_codes = 0, failed_since = NULL WHERE user_id = $1", user_id)
        left = await conn.fetchval(
            "SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL", user_id)
        await record(conn, actor=user_id, action="recovery_used", entity="mfa", entity_id=user_id,
                     after={"recovery_codes_left": left})
        return int(left)

    return await db.run(work, transaction=True)


async def count_failed_code(db: Database, user_id: str, now: datetime, window: timedelta) -> tuple[int, datetime]:
    """Count one wrong code; the failures in the current window and when it started.

    A window older than ``window`` starts over at this failure.
    """
    row = await db.fetchrow(
        "UPDATE user_mfa SET"
        " failed_codes = CASE WHEN failed_since IS NULL OR failed_since <= $2::timestamptz - $3::interval"
        "                     THEN 1 ELSE failed_codes + 1 END,"
        " failed_since = CASE WHEN failed_since IS NULL OR failed_since <= $2::timestamptz - $3::interval"
        "                     THEN $2 ELSE failed_since END"
        " WHERE user_id = $1 RETURNING failed_codes, failed_since", user_id, now, window)
    if row is None:
        return 0, now
    return row["failed_codes"], row["failed_since"]


async def remove_mfa(db: Database, user_id: str, *, actor: str, reason: str = "",
                     end_sessions_at: datetime | None = None) -> bool:
    """Turn a user's MFA off (seed and recovery codes deleted); False if it was not on. Audited.

    ``actor``: the user themselves, or the admin who reset it (``reason`` then says why).
    ``end_sessions_at``: an admin's reset (a lost or stolen factor) also ends every session
    of the user, in the same transaction; the caller then invalidates the account cache.
    """

    async def work(conn: asyncpg.Connection) -> bool:
        status = await conn.execute(
            "DELETE FROM user_mfa WHERE user_id = $1 AND confirmed_at IS NOT NULL", user_id)
        if status != "DELETE 1":
            return False
        await conn.execute("DELETE FROM mfa_recovery_codes WHERE user_id = $1", user_id)
        await record(conn, actor=actor, action="removed", entity="mfa", entity_id=user_id,
                     before={"method": "totp"}, reason=reason)
        if end_sessions_at is not None:
            await end_sessions(conn, user_id=user_id, at=end_sessions_at)
        return True

    return await db.run(work, transaction=True)
