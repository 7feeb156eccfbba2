"""Authentication and role checks for pages, the JSON API and websockets.

Tokens
------
- Access token: a JWT (HS256, ``ctx.jwt_secret``) valid 15 minutes, claims
  ``sub`` (user id), ``role``, ``exp``, ``iat``, ``jti``. Stateless: logout
  cannot recall one, so it is short-lived and websockets close when it
  expires (close code 4401).
- Refresh token: 32 random bytes (urlsafe base64), stored only as its SHA-256
  (the token is random, a slow hash would add nothing), valid 14 days,
  rotated on every use, revoked on logout. Presenting a rotated or revoked
  token revokes every live refresh token of its user: a copied token then
  works at most once, for whoever uses it first.

Where credentials come from
---------------------------
1. ``Authorization: Bearer <access>`` (API clients). Never auto-refreshed.
2. Otherwise the HttpOnly cookies of a browser session. An HTTP request (page
   or API) whose access cookie has *expired* but whose refresh cookie is live
   is refreshed on the spot: the request proceeds and its response carries
   the new cookies (requests of one browser racing to do so share one
   rotation, see :class:`BrowserRefreshes`). A forged or malformed access
   token is never "healed".
   Websocket handshakes are not refreshed (a Set-Cookie on a handshake is not
   reliably stored, and the rotation would orphan the browser's only refresh
   token): they get 401, and the page script fetches ``/api/v1/me`` (which
   refreshes) before reconnecting.

CSRF
----
Both cookies are ``SameSite=Lax``: browsers attach them to cross-site
requests only for top-level GET navigations, and every GET here is
read-only, except ``GET /logout``, whose worst case is logging the user out.
State-changing API calls (``POST /api/v1/...``) accept only
``Content-Type: application/json`` bodies (415 otherwise): a page of another
origin can send that only after a CORS preflight, which this app never
grants; this also covers same-site, cross-origin attackers (a sibling
subdomain), which SameSite does not. The one form POST, ``/login``, and
every websocket handshake must carry a matching ``Origin`` when the browser
sends one (login CSRF, cross-site websocket hijacking).

Concurrency contract: everything here runs in the request's or websocket's
own task. Password verification (argon2, ~50 ms of CPU) runs in a worker
thread via ``trio.to_thread.run_sync`` so it never stalls the event loop.
"""
from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import wraps
from typing import Awaitable, Callable, Literal, TypeVar
from urllib.parse import urlsplit

import jwt
import trio
from quart import current_app, g, has_websocket_context, request, websocket

from hub.core.passwords import hash_password, verify_password
from hub.db.users import (
    UserRecord,
    get_user_by_username,
    revoke_refresh_token,
    rotate_refresh_token,
    store_refresh_token,
)

from .context import WebContext, current_context
from .cookies import ACCESS_COOKIE, REFRESH_COOKIE
from .errors import WebError, client_kind, forbidden, unauthenticated

Role = Literal["admin", "faculty", "student", "ops"]
ROLES: tuple[Role, ...] = ("admin", "faculty", "student", "ops")

ACCESS_TTL_S = 15 * 60
REFRESH_TTL_S = 14 * 24 * 3600
#: How long other requests of a browser may still present the refresh cookie just rotated (see BrowserRefreshes).
BROWSER_REFRESH_GRACE_S = 10.0
JWT_ALGORITHM = "HS256"

V = TypeVar("V", bound=Callable[..., Awaitable])


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a valid access token."""

    user_id: str
    role: Role
    #: Unix seconds at which the access token stops being accepted.
    expires_at: float
    token_id: str


@dataclass(frozen=True)
class TokenPair:
    """What a login or refresh hands out."""

    user: UserRecord
    principal: Principal
    access_token: str
    access_expires_at: float
    refresh_token: str
    refresh_expires_at: float
    issued_at: int


# --- access tokens -------------------------------------------------------------

def issue_access_token(ctx: WebContext, user_id: str, role: str, now: int | None = None) -> tuple[str, Principal]:
    """A signed access token valid from ``now`` (default: ``ctx.now()``) for :data:`ACCESS_TTL_S`."""
    now = int(ctx.now()) if now is None else now
    principal = Principal(user_id, role, float(now + ACCESS_TTL_S), uuid.uuid4().hex)  # type: ignore[arg-type]
    claims = {"sub": user_id, "role": role, "iat": now, "exp": now + ACCESS_TTL_S, "jti": principal.token_id}
    return jwt.encode(claims, ctx.jwt_secret, algorithm=JWT_ALGORITHM), principal


def decode_access_token(ctx: WebContext, token: str) -> Principal:
    """Verify signature, algorithm, claims and expiry (against ``ctx.now``); 401 otherwise."""
    try:
        # Expiry is checked below against ctx.now (the app's one clock), not PyJWT's time.time().
        claims = jwt.decode(
            token, ctx.jwt_secret, algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "role", "exp", "iat", "jti"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        raise unauthenticated("Invalid access token.", code="invalid_token") from None
    sub, role, exp, jti = claims["sub"], claims["role"], claims["exp"], claims["jti"]
    if not isinstance(sub, str) or role not in ROLES or not isinstance(exp, (int, float)) or not isinstance(jti, str):
        raise unauthenticated("Invalid access token.", code="invalid_token")
    if exp <= ctx.now():
        raise unauthenticated("Access token expired.", code="token_expired")
    return Principal(sub, role, float(exp), jti)


# --- login, refresh, logout ---------------------------------------------------

_dummy_hash: str | None = None


async def _password_matches(password_hash: str | None, password: str) -> bool:
    """Verify in a worker thread; an unknown user costs the same as a wrong password (no username probing)."""
    global _dummy_hash
    if password_hash is None:
        if _dummy_hash is None:
            _dummy_hash = await trio.to_thread.run_sync(hash_password, secrets.token_hex(16))
        await trio.to_thread.run_sync(verify_password, _dummy_hash, password)
        return False
    return await trio.to_thread.run_sync(verify_password, password_hash, password)


def _encodable(text: str) -> bool:
    """UTF-8 encodable: no unpaired surrogate (which JSON's \\ud800 escapes can produce)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _hash_refresh(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _new_refresh_token() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def _at(unix_seconds: float) -> datetime:
    return datetime.fromtimestamp(unix_seconds, timezone.utc)


def _pair(ctx: WebContext, user: UserRecord, refresh_token: str, issued_at: int) -> TokenPair:
    access, principal = issue_access_token(ctx, user.id, user.role, issued_at)
    return TokenPair(
        user, principal, access, principal.expires_at, refresh_token, issued_at + REFRESH_TTL_S, issued_at
    )


async def login(ctx: WebContext, username: str, password: str) -> TokenPair:
    """Check the password and start a session; 401 ``invalid_credentials`` otherwise."""
    if "\x00" in username or not _encodable(username) or not _encodable(password):
        # No account has such a name (PostgreSQL text cannot hold NUL), and argon2 cannot
        # hash a lone surrogate: refuse here instead of failing (500) in the query or the hash.
        raise WebError(401, "invalid_credentials", "Wrong username or password.")
    user = await get_user_by_username(ctx.db, username)
    if not await _password_matches(None if user is None else user.password_hash, password) or user is None:
        raise WebError(401, "invalid_credentials", "Wrong username or password.")
    now = int(ctx.now())
    refresh_token = _new_refresh_token()
    await store_refresh_token(
        ctx.db, token_hash=_hash_refresh(refresh_token), user_id=user.id, expires_at=_at(now + REFRESH_TTL_S)
    )
    return _pair(ctx, user, refresh_token, now)


async def refresh(ctx: WebContext, refresh_token: str) -> TokenPair:
    """Rotate the refresh token and issue a new access token; 401 ``invalid_refresh_token`` otherwise.

    The role comes from the database, so a role change takes effect at the next refresh.
    """
    now = int(ctx.now())
    new_token = _new_refresh_token()
    rotation = await rotate_refresh_token(
        ctx.db, old_hash=_hash_refresh(refresh_token), new_hash=_hash_refresh(new_token),
        now=_at(now), expires_at=_at(now + REFRESH_TTL_S),
    )
    if rotation.user is None:
        message = "Refresh token already used; log in again." if rotation.reused else "Invalid refresh token."
        raise unauthenticated(message, code="invalid_refresh_token")
    return _pair(ctx, rotation.user, new_token, now)


async def logout(ctx: WebContext, refresh_token: str) -> None:
    """Revoke the refresh token. Idempotent."""
    await revoke_refresh_token(ctx.db, _hash_refresh(refresh_token), _at(ctx.now()))


class BrowserRefreshes:
    """Single-flight refresh of browser sessions, per app.

    One browser often sends several requests with the same expired access
    cookie and the same refresh cookie at once: two tabs whose websockets
    close at the same expiry, a QR reload racing a page load. Rotating per
    request would make every request after the first look like a stolen,
    reused token and revoke the session. Instead the first request rotates
    and every request presenting the same refresh token within
    :data:`BROWSER_REFRESH_GRACE_S` gets that same new pair. Only the cookie
    path uses this; ``POST /api/v1/auth/refresh`` stays strict.

    Concurrency contract: used from the app's request tasks of one trio run.
    """

    def __init__(self) -> None:
        self._recent: dict[bytes, _Refreshing] = {}

    async def refresh(self, ctx: WebContext, refresh_token: str) -> TokenPair:
        now = ctx.now()
        for key in [k for k, v in self._recent.items() if v.expires_at <= now]:
            del self._recent[key]
        key = _hash_refresh(refresh_token)
        entry = self._recent.get(key)
        if entry is None:
            entry = self._recent[key] = _Refreshing(now + BROWSER_REFRESH_GRACE_S)
            try:
                entry.pair = await refresh(ctx, refresh_token)
            except WebError as error:
                entry.error = error
            except BaseException:
                del self._recent[key]  # e.g. the database is down: let the next request try again
                raise
            finally:
                entry.done.set()
        else:
            await entry.done.wait()
        if entry.pair is not None:
            return entry.pair
        raise entry.error or WebError(503, "unavailable", "Try again in a moment.")


class _Refreshing:
    def __init__(self, expires_at: float) -> None:
        self.expires_at = expires_at
        self.done = trio.Event()
        self.pair: TokenPair | None = None
        self.error: WebError | None = None


# --- per request ---------------------------------------------------------------

async def authenticate(ctx: WebContext) -> Principal:
    """The caller of the current request or websocket handshake; raises 401 ``WebError``.

    When a browser session is refreshed on the way, the new pair is left in
    ``g.issued_tokens`` for the app's after-request hook to set as cookies.
    """
    kind = client_kind()
    connection = websocket if kind == "websocket" else request
    header = connection.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated("Use 'Authorization: Bearer <access token>'.", code="invalid_token")
        return decode_access_token(ctx, token.strip())
    access = connection.cookies.get(ACCESS_COOKIE)
    refresh_token = connection.cookies.get(REFRESH_COOKIE)
    if access:
        try:
            return decode_access_token(ctx, access)
        except WebError as error:
            if error.code != "token_expired" or not refresh_token or kind == "websocket":
                raise
    if refresh_token and kind != "websocket":
        pair = await current_app.extensions["campushub.refreshes"].refresh(ctx, refresh_token)
        g.issued_tokens = pair
        return pair.principal
    raise unauthenticated()


def require(*roles: Role) -> Callable[[V], V]:
    """Decorate a route or websocket view: authenticate, then allow only ``roles`` (any role if none given).

    Sets ``g.principal``. 401 when unauthenticated, 403 for a role not allowed.
    Ownership (which session, which student) is checked by the view, see web/access.py.
    """
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles: {sorted(unknown)}")
    allowed = frozenset(roles or ROLES)

    def decorate(view: V) -> V:
        @wraps(view)
        async def guarded(*args, **kwargs):
            principal = await authenticate(current_context())
            g.principal = principal
            if principal.role not in allowed:
                raise forbidden()
            return await view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


def current_principal() -> Principal:
    """The principal set by :func:`require` for this request or websocket."""
    return g.principal


def origin_allowed() -> bool:
    """False if the browser says this request comes from another origin (form POSTs, websocket handshakes)."""
    connection = websocket if has_websocket_context() else request
    origin = connection.headers.get("Origin")
    if origin is None:
        return True  # not a browser, or one that does not send it; SameSite still applies
    return urlsplit(origin).netloc == connection.host
