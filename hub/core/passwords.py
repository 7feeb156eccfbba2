"""Password hashing (argon2id). Synchronous and CPU-bound (~50 ms).

From async code use :func:`hash_password_async` / :func:`verify_password_async`:
they run in a worker thread, at most one per core at once (:data:`HASHING`), so
64 parallel wrong logins queue for the cores instead of time-slicing 40 threads
and stretching every login, a real one included, to seconds.
"""
from __future__ import annotations

import os
import secrets
from functools import cache

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

#: Concurrent argon2 computations of this process (a trio run's worth; FIFO).
HASHING = trio.CapacityLimiter(max(1, os.cpu_count() or 1))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(16))


def _verify_or_dummy(password_hash: str | None, password: str) -> bool:
    if password_hash is None:
        verify_password(_dummy_hash(), password)  # same work as a real account's check
        return False
    return verify_password(password_hash, password)


async def hash_password_async(password: str) -> str:
    """:func:`hash_password` in a worker thread, within :data:`HASHING`."""
    return await trio.to_thread.run_sync(hash_password, password, limiter=HASHING)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    """:func:`verify_password` in a worker thread, within :data:`HASHING`.

    ``password_hash=None`` (no such account) verifies against a dummy hash and
    returns False: the same work and answer as a wrong password.
    """
    return await trio.to_thread.run_sync(_verify_or_dummy, password_hash, password, limiter=HASHING)


def warm_up() -> None:
    """Compute the dummy hash now (at startup), so the first unknown user costs no extra hash."""
    _dummy_hash()
