"""Web identities: users and their refresh tokens.

Concurrency contract: every function is one round trip on the shared
:class:`~hub.db.Database` and may be called from any trio task. Refresh-token
rotation runs in one transaction with the presented row locked (``FOR
UPDATE``), so two concurrent uses of the same token cannot both succeed: the
second one sees it revoked and is treated as a reuse.

Only hashes of refresh tokens are stored; the caller hashes (see
``web.auth``), this module never sees a usable token.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from ._pool import Database


@dataclass(frozen=True)
class UserRecord:
    id: str
    username: str
    display_name: str
    role: str
    #: argon2id hash (``hub.core.passwords``); kept out of reprs and logs.
    password_hash: str = field(repr=False)


@dataclass(frozen=True)
class RefreshRotation:
    """Outcome of presenting a refresh token.

    ``user`` is set only when the token was live and has been replaced by the
    new one. ``reused`` means a token that had already been rotated or revoked
    was presented: a sign it was copied, so every live refresh token of its
    user has been revoked too (the user must log in again everywhere).
    """

    user: UserRecord | None
    reused: bool = False


_USER_COLUMNS = "id, username, display_name, role, password_hash"


def _user(row: asyncpg.Record) -> UserRecord:
    return UserRecord(row["id"], row["username"], row["display_name"], row["role"], row["password_hash"])


async def get_user_by_username(db: Database, username: str) -> UserRecord | None:
    row = await db.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE username = $1", username)
    return None if row is None else _user(row)


async def get_user(db: Database, user_id: str) -> UserRecord | None:
    row = await db.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", user_id)
    return None if row is None else _user(row)


async def store_refresh_token(
    db: Database, *, token_hash: bytes, user_id: str, expires_at: datetime
) -> None:
    await db.execute(
        "INSERT INTO refresh_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
        token_hash, user_id, expires_at,
    )


async def rotate_refresh_token(
    db: Database, *, old_hash: bytes, new_hash: bytes, now: datetime, expires_at: datetime
) -> RefreshRotation:
    """Revoke the token ``old_hash`` and store ``new_hash`` in its place, atomically.

    Unknown or expired tokens give ``RefreshRotation(None)``; a revoked one
    gives ``RefreshRotation(None, reused=True)`` after revoking all of its
    user's live tokens. ``now`` is the caller's clock, so tests can move time.
    """

    async def work(conn: asyncpg.Connection) -> RefreshRotation:
        row = await conn.fetchrow(
            "SELECT user_id, expires_at, revoked_at FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
            old_hash,
        )
        if row is None:
            return RefreshRotation(None)
        if row["revoked_at"] is not None:
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
                row["user_id"], now,
            )
            return RefreshRotation(None, reused=True)
        if row["expires_at"] <= now:
            return RefreshRotation(None)
        await conn.execute("UPDATE refresh_tokens SET revoked_at = $2 WHERE token_hash = $1", old_hash, now)
        await conn.execute(
            "INSERT INTO refresh_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
            new_hash, row["user_id"], expires_at,
        )
        user = await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", row["user_id"])
        return RefreshRotation(_user(user))

    return await db.run(work, transaction=True)


async def revoke_refresh_token(db: Database, token_hash: bytes, now: datetime) -> bool:
    """Revoke one live token (logout). False if it was unknown or already revoked."""
    status = await db.execute(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
        token_hash, now,
    )
    return status == "UPDATE 1"
