"""Login and API protection: failed-login limits, per-user request limits, account freshness.

- :class:`LoginThrottle`: failed logins per account and per client address
  (``limits`` moving windows). An attempt on an account counts at once (so 64
  parallel guesses cannot all slip past the check) and a success clears that
  account's window; the address window counts failures only, so a campus
  behind one NAT address is not locked out by its own successful logins, and
  a success does not clear it (one attacker's own account must not wash out
  their guesses at others).
- :class:`ApiLimiter`: per-user request limits with a burst (a short and a
  long moving window, e.g. ``60/10 seconds;600/minute``) on authenticated
  HTTP requests; websockets and static files are exempt.
- :class:`AccountCache`: each request's account standing (current role,
  active or not), cached in memory and invalidated when the account changes,
  plus the access tokens recalled by a logout; see web/auth.py ``authenticate``.

Every limiter decision is counted in ``campushub_limiter_decisions`` (label
``limiter``: login_account, login_address, api; ``decision``: allowed, refused).

Storage is in memory (``limits``' MemoryStorage): one hub process sees its own
counts. Several hub processes behind one address would share a storage backend
(Redis, memcached, MongoDB: ``limits.storage.storage_from_string``); the
clustering issue decides.

Concurrency contract: every method is synchronous and non-blocking except
:meth:`AccountCache.standing` (one database read on a miss) and
:meth:`AccountCache.changed` (waits for an invalidation); all are called from
the trio tasks of one run. ``limits``' storage takes its own thread lock.
"""
from __future__ import annotations

import math
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import trio
from limits import RateLimitItem, parse, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from prometheus_client import CollectorRegistry, Counter

from hub.core.config import Settings
from hub.core.metrics import limiter_decisions_counter
from hub.db import Database
from hub.db.users import get_user

from .errors import WebError

#: Limiter keys are cut to this length: a hostile username cannot make a key (or a metric) huge.
MAX_KEY_CHARS = 200
#: How long an account's standing is trusted without a change notice: bounds the delay for
#: changes made by another process (the ``campushub users`` CLI).
ACCOUNT_CACHE_TTL_S = 30.0
#: Logins from one address waiting for their password check; more get 429 at once.
MAX_WAITING_PER_ADDRESS = 64
#: At most this many accounts (and recalled tokens) are kept; the oldest go first.
ACCOUNT_CACHE_MAX = 100_000


def rate_limited(retry_after_s: float, message: str) -> WebError:
    """A 429 with ``Retry-After`` (whole seconds, at least 1)."""
    error = WebError(429, "rate_limited", message)
    error.retry_after = max(1, math.ceil(retry_after_s))
    return error


class _Windows:
    """One or more moving windows over one storage, counted under one limiter label."""

    def __init__(self, name: str, items: list[RateLimitItem], limiter: MovingWindowRateLimiter,
                 decisions: Counter) -> None:
        self.name = name
        self.items = items
        self._limiter = limiter
        self._allowed = decisions.labels(limiter=name, decision="allowed")
        self._refused = decisions.labels(limiter=name, decision="refused")

    def _retry_after(self, item: RateLimitItem, key: str) -> float:
        """Seconds until the refusing window has room again."""
        return self._limiter.get_window_stats(item, self.name, key).reset_time - time.time()

    def hit(self, key: str) -> float | None:
        """Count one; ``None`` if allowed, else the seconds until it would be."""
        for item in self.items:
            if not self._limiter.hit(item, self.name, key):
                self._refused.inc()
                return self._retry_after(item, key)
        self._allowed.inc()
        return None

    def test(self, key: str) -> float | None:
        """Would one more be allowed? ``None`` if so, else the seconds to wait. Counts nothing."""
        for item in self.items:
            if not self._limiter.test(item, self.name, key):
                self._refused.inc()
                return self._retry_after(item, key)
        self._allowed.inc()
        return None

    def record(self, key: str) -> None:
        """Count one without deciding anything (a failure already answered)."""
        for item in self.items:
            self._limiter.hit(item, self.name, key)

    def clear(self, key: str) -> None:
        for item in self.items:
            self._limiter.clear(item, self.name, key)


def _key(text: str) -> str:
    return text[:MAX_KEY_CHARS]


class _Turn:
    def __init__(self) -> None:
        self.lock = trio.Lock()
        self.users = 0


class LoginThrottle:
    """Failed logins per account and per client address, and one password check at a time per address."""

    MESSAGE = "Too many failed logins; try again later."
    BUSY = "Too many logins at once from your address; try again in a moment."

    def __init__(self, per_account: str, per_address: str, decisions: Counter) -> None:
        limiter = MovingWindowRateLimiter(MemoryStorage())
        self._account = _Windows("login_account", [parse(per_account)], limiter, decisions)
        self._address = _Windows("login_address", [parse(per_address)], limiter, decisions)
        self._turns: dict[str, _Turn] = {}
        self._busy = decisions.labels(limiter="login_concurrency", decision="refused")

    @asynccontextmanager
    async def turn(self, address: str) -> AsyncIterator[None]:
        """Hold while checking a password: one check at a time per address, at most
        :data:`MAX_WAITING_PER_ADDRESS` waiting (429 beyond).

        The cores (``hub.core.passwords.HASHING``) are shared fairly this way: 64
        parallel guesses from one address take one core slot, not the whole queue,
        so a real login from elsewhere is checked at once.
        """
        key = _key(address)
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = _Turn()
        if turn.users >= MAX_WAITING_PER_ADDRESS:
            self._busy.inc()
            raise rate_limited(1, self.BUSY)
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._turns[key]

    def attempt(self, username: str, address: str) -> None:
        """Before checking a password: 429 if the account or the address is over its limit.

        Counts the attempt against the account (cleared again by :meth:`succeeded`).
        """
        wait = self._address.test(_key(address))
        if wait is None:
            wait = self._account.hit(_key(username))
        if wait is not None:
            raise rate_limited(wait, self.MESSAGE)

    def failed(self, username: str, address: str) -> None:
        """A wrong password, an unknown user, or a wrong second factor."""
        self._address.record(_key(address))

    def succeeded(self, username: str, address: str) -> None:
        """The account's failures are forgotten (not the address's)."""
        self._account.clear(_key(username))


class ApiLimiter:
    """Per-user request limits with a burst: every window in ``limits_text`` must allow the request."""

    MESSAGE = "Too many requests; slow down."

    def __init__(self, limits_text: str, decisions: Counter) -> None:
        self._windows = _Windows("api", list(parse_many(limits_text)),
                                 MovingWindowRateLimiter(MemoryStorage()), decisions)

    def request(self, user_id: str) -> None:
        """Count one request of ``user_id``; 429 with Retry-After over the limit."""
        wait = self._windows.hit(_key(user_id))
        if wait is not None:
            raise rate_limited(wait, self.MESSAGE)


@dataclass(frozen=True)
class AccountStanding:
    """What a request may assume about its account."""

    role: str
    active: bool
    #: False once the account is deleted (or never existed): the token's user is gone.
    exists: bool = True
    #: Unix seconds: access tokens issued (``iat``) before it are refused, because a password
    #: reset or change ended the sessions they belong to. None: no cutoff.
    sessions_valid_from: float | None = None

    def admits(self, issued_at: float) -> bool:
        """Whether a token issued at ``issued_at`` (unix seconds) belongs to a session still allowed."""
        return self.sessions_valid_from is None or issued_at >= self.sessions_valid_from


class AccountCache:
    """Account standing by user id, and the access tokens recalled by logouts.

    ``invalidate(user_id)`` is what every change of an account (role,
    deactivation, deletion, password reset or change) must call after its commit: the
    next request re-reads the account, and the user's open websockets, which
    wait in :meth:`changed`, re-check it and close when it no longer stands.
    """

    def __init__(self, ttl_s: float = ACCOUNT_CACHE_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._standing: dict[str, tuple[float, AccountStanding]] = {}
        self._changed: dict[str, trio.Event] = {}
        #: jti -> access-token expiry (unix seconds) of tokens recalled by a logout.
        self._recalled: dict[str, float] = {}

    async def standing(self, db: Database, user_id: str) -> AccountStanding:
        now = self._clock()
        cached = self._standing.get(user_id)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        user = await get_user(db, user_id)
        standing = AccountStanding(
            role="" if user is None else user.role,
            active=user is not None and user.active,
            exists=user is not None,
            sessions_valid_from=(None if user is None or user.sessions_valid_from is None
                                 else user.sessions_valid_from.timestamp()),
        )
        if len(self._standing) >= ACCOUNT_CACHE_MAX:
            self._standing.pop(next(iter(self._standing)))
        self._standing[user_id] = (now, standing)
        return standing

    def invalidate(self, user_id: str) -> None:
        """The account changed (after the commit): forget its standing and wake its websockets."""
        self._standing.pop(user_id, None)
        event = self._changed.pop(user_id, None)
        if event is not None:
            event.set()

    async def changed(self, user_id: str) -> None:
        """Wait until :meth:`invalidate` is called for ``user_id``."""
        event = self._changed.get(user_id)
        if event is None:
            event = self._changed[user_id] = trio.Event()
        await event.wait()

    def recall(self, token_id: str, expires_at: float, now: float) -> None:
        """A logout: refuse this access token until it expires."""
        for jti in [jti for jti, exp in self._recalled.items() if exp <= now]:
            del self._recalled[jti]
        if len(self._recalled) >= ACCOUNT_CACHE_MAX:
            self._recalled.pop(next(iter(self._recalled)))
        self._recalled[token_id] = expires_at

    def recalled(self, token_id: str) -> bool:
        return token_id in self._recalled


class Protection:
    """The web app's limiters and account cache (one per app; ``WebContext.protection``)."""

    def __init__(self, settings: Settings | None = None, decisions: Counter | None = None) -> None:
        settings = settings or Settings()
        if decisions is None:
            decisions = limiter_decisions_counter(CollectorRegistry())
        self.logins = LoginThrottle(settings.login_limit_account, settings.login_limit_address, decisions)
        self.api = ApiLimiter(settings.api_rate_limits, decisions)
        self.accounts = AccountCache()
