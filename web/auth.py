"""Authentication and role checks for pages, the JSON API and websockets.

Tokens
------
- Access token: a JWT (HS256, ``ctx.jwt_secret``) valid 15 minutes, claims
  ``sub`` (user id), ``role``, ``exp``, ``iat``, ``jti``. Checked on every
  request against its account (:func:`authenticate`, web/protection.py): a
  deactivated or deleted account, or a token recalled by logout, gets 401 at
  once, and the account's current role applies, not the token's. Websockets
  close (4401) when it expires or the account changes.
- Refresh token: 32 random bytes (urlsafe base64), stored only as its SHA-256
  (the token is random, a slow hash would add nothing), valid 14 days,
  rotated on every use, revoked on logout. Presenting a rotated or revoked
  token revokes every live refresh token of its user: a copied token then
  works at most once, for whoever uses it first.

Two-step login (two-factor authentication, web/mfa.py)
-----------------------------------------------------
For an account with TOTP on, a right password gives no tokens but a
pending-login token (:func:`issue_mfa_token`: 5 minutes, signed with a key
derived for that purpose only, so it never passes for an access token);
:func:`complete_login` takes it with a code. Access tokens carry
``"mfa": true`` when the account had a second factor when they were issued;
:func:`require` holds roles in ``ctx.mfa_required_roles`` without it to the
enrolment views (403 ``mfa_enrollment_required`` elsewhere).

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
thread, at most one per core (``hub.core.passwords.verify_password_async``) and
one per client address at once (``ctx.protection.logins.turn``), so it never
stalls the event loop and a flood of guesses cannot starve a real login.
Failed logins are limited per account and per address (web/protection.py).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import wraps
from typing import Awaitable, Callable, TypeVar
from urllib.parse import urlsplit

import asyncpg
import jwt
import trio
from quart import current_app, g, has_websocket_context, request, websocket

from hub.core.passwords import verify_password_async
from hub.db import security_audit
from hub.db.mfa import mfa_enabled
from hub.db.users import (
    UserRecord,
    get_user,
    get_user_by_username,
    revoke_refresh_token,
    rotate_refresh_token,
    store_refresh_token,
)
from hub.domain.checkin_network import Address
from hub.domain.checkin_network import client_address as resolve_client_address
from hub.domain.roles import ROLES, Role

from .context import WebContext, current_context
from .cookies import ACCESS_COOKIE, REFRESH_COOKIE
from .errors import WebError, client_kind, forbidden, unauthenticated
from .mfa import verify_second_factor

ACCESS_TTL_S = 15 * 60
REFRESH_TTL_S = 14 * 24 * 3600
#: How long the password step of a two-step login stays good for its second factor.
MFA_PENDING_TTL_S = 5 * 60
MAX_MFA_TOKEN_CHARS = 1000
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
    #: The account had a second factor when the token was issued (web/mfa.py): roles in
    #: ``ctx.mfa_required_roles`` need it for everything but enrolling (see :func:`require`).
    mfa: bool = False
    #: Unix seconds the token was issued at (``iat``): a password reset or change refuses older ones.
    issued_at: float = 0.0


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

def issue_access_token(
    ctx: WebContext, user_id: str, role: str, now: int | None = None, *, mfa: bool = False,
) -> tuple[str, Principal]:
    """A signed access token valid from ``now`` (default: ``ctx.now()``) for :data:`ACCESS_TTL_S`."""
    now = int(ctx.now()) if now is None else now
    principal = Principal(user_id, role, float(now + ACCESS_TTL_S), uuid.uuid4().hex, mfa,  # type: ignore[arg-type]
                          float(now))
    claims: dict[str, object] = {"sub": user_id, "role": role, "iat": now, "exp": now + ACCESS_TTL_S,
                                 "jti": principal.token_id}
    if mfa:
        claims["mfa"] = True  # only when true: a token without it means "no second factor"
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
    sub, role, exp, jti, iat = claims["sub"], claims["role"], claims["exp"], claims["jti"], claims["iat"]
    mfa = claims.get("mfa", False)  # tokens issued before MFA existed carry none: no second factor
    if (not isinstance(sub, str) or role not in ROLES or not isinstance(exp, (int, float)) or not isinstance(jti, str)
            or not isinstance(mfa, bool) or not isinstance(iat, (int, float))):
        raise unauthenticated("Invalid access token.", code="invalid_token")
    if exp <= ctx.now():
        raise unauthenticated("Access token expired.", code="token_expired")
    return Principal(sub, role, float(exp), jti, mfa, float(iat))


# --- pending logins (password right, second factor still to come) ------------------------------

def _mfa_token_key(ctx: WebContext) -> bytes:
    # A key of its own, so a pending-login token can never pass for an access token (or anything else).
    return hmac.new(ctx.jwt_secret, b"campushub mfa-pending-login", hashlib.sha256).digest()


def issue_mfa_token(ctx: WebContext, user_id: str, now: int) -> str:
    """The pending-login token of a user whose password was right: worth one second-factor attempt series."""
    claims = {"sub": user_id, "purpose": "mfa", "iat": now, "exp": now + MFA_PENDING_TTL_S, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, _mfa_token_key(ctx), algorithm=JWT_ALGORITHM)


def decode_mfa_token(ctx: WebContext, token: str) -> str:
    """The user id of a live pending-login token; 401 ``invalid_mfa_token`` otherwise."""
    refused = unauthenticated("This login has expired or is not valid; enter your password again.",
                              code="invalid_mfa_token")
    if len(token) > MAX_MFA_TOKEN_CHARS:
        raise refused
    try:
        claims = jwt.decode(token, _mfa_token_key(ctx), algorithms=[JWT_ALGORITHM],
                            options={"require": ["sub", "purpose", "exp", "iat", "jti"],
                                     "verify_exp": False, "verify_iat": False})
    except jwt.PyJWTError:
        raise refused from None
    sub, exp = claims["sub"], claims["exp"]
    if claims["purpose"] != "mfa" or not isinstance(sub, str) or not isinstance(exp, (int, float)) or exp <= ctx.now():
        raise refused
    return sub


# --- login, refresh, logout ---------------------------------------------------

async def _audit_login(ctx: WebContext, action: str, *, actor: str, username: str, **detail: object) -> None:
    """One security-audit entry per login attempt (its own short transaction).

    Bounded: failures are capped by the login limiter, and names are cut to the log's limits.
    """
    after = {"address": client_address(), **detail}

    async def work(conn: asyncpg.Connection) -> None:
        await security_audit.record(conn, actor=actor[:security_audit.MAX_ACTOR_CHARS], action=action,
                                    entity="login", entity_id=username[:security_audit.MAX_ENTITY_ID_CHARS],
                                    after=after)

    await ctx.db.run(work, transaction=True)


def request_client_address() -> Address | None:
    """The client address of the current request or websocket: the peer's, or, when the peer
    is one of the deployment's trusted proxies (``CAMPUSHUB_TRUSTED_PROXIES``), what they
    forwarded. ``None`` when there is no usable address."""
    connection = websocket if has_websocket_context() else request
    return resolve_client_address(connection.remote_addr, connection.headers.getlist("X-Forwarded-For"),
                                  current_app.config.get("CAMPUSHUB_TRUSTED_PROXIES", ()))


def client_address() -> str:
    """:func:`request_client_address` as text (the login limiter's per-address key, audit entries)."""
    address = request_client_address()
    return "unknown" if address is None else str(address)


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


def _pair(ctx: WebContext, user: UserRecord, refresh_token: str, issued_at: int, *, mfa: bool) -> TokenPair:
    if user.sessions_valid_from is not None:
        # The account's sessions restart at a whole second after its last password reset or change
        # (hub/db/accounts.py): a token issued since then is dated no earlier, so the check admits it.
        issued_at = max(issued_at, int(user.sessions_valid_from.timestamp()))
    access, principal = issue_access_token(ctx, user.id, user.role, issued_at, mfa=mfa)
    return TokenPair(
        user, principal, access, principal.expires_at, refresh_token, issued_at + REFRESH_TTL_S, issued_at
    )


@dataclass(frozen=True)
class SecondFactorRequired:
    """The password was right, but the account has two-factor authentication: no tokens yet.

    ``mfa_token`` goes back with a code to :func:`complete_login`.
    """

    user: UserRecord
    mfa_token: str
    expires_at: float


async def login(ctx: WebContext, username: str, password: str) -> TokenPair | SecondFactorRequired:
    """Check the password; a session, or :class:`SecondFactorRequired`; 401 ``invalid_credentials`` otherwise."""
    if "\x00" in username or not _encodable(username) or not _encodable(password):
        # No account has such a name (PostgreSQL text cannot hold NUL), and argon2 cannot
        # hash a lone surrogate: refuse here instead of failing (500) in the query or the hash.
        raise WebError(401, "invalid_credentials", "Wrong username or password.")
    address = client_address()
    ctx.protection.logins.attempt(username, address)  # 429 once the account or the address is over its limit
    async with ctx.protection.logins.turn(address):  # one password check at a time per address
        user = await get_user_by_username(ctx.db, username)
        # An unknown user is verified against a dummy hash: the same work, time and answer as a wrong password.
        matches = await verify_password_async(None if user is None else user.password_hash, password)
    # A deactivated account answers like an unknown one.
    if not matches or user is None or not user.active:
        ctx.protection.logins.failed(username, address)
        await _audit_login(ctx, "login_failed", actor=username, username=username)
        raise WebError(401, "invalid_credentials", "Wrong username or password.")
    ctx.protection.logins.succeeded(username, address)
    now = int(ctx.now())
    if await mfa_enabled(ctx.db, user.id):
        return SecondFactorRequired(user, issue_mfa_token(ctx, user.id, now), float(now + MFA_PENDING_TTL_S))
    return await _start_session(ctx, user, now, mfa=False)


async def complete_login(ctx: WebContext, mfa_token: str, code: str) -> TokenPair:
    """The second step: a pending-login token and a TOTP or recovery code give a session.

    401 ``invalid_mfa_token``, 400 ``invalid_code``, 429 ``too_many_codes`` (web/mfa.py), and the
    login limiter's 429 ``rate_limited``: a wrong code counts as a failed login of the account and the
    address, on top of the per-account code limit of web/mfa.py.
    """
    user = await get_user(ctx.db, decode_mfa_token(ctx, mfa_token))
    if user is None or not user.active:
        raise unauthenticated("This login has expired or is not valid; enter your password again.",
                              code="invalid_mfa_token")
    address = client_address()
    ctx.protection.logins.attempt(user.username, address)
    try:
        await verify_second_factor(ctx, user.id, code)
    except WebError as error:
        if error.code in ("invalid_code", "too_many_codes"):
            ctx.protection.logins.failed(user.username, address)
            await _audit_login(ctx, "login_failed", actor=user.id, username=user.username, second_factor=True)
        raise
    ctx.protection.logins.succeeded(user.username, address)
    return await _start_session(ctx, user, int(ctx.now()), mfa=True)


async def reissue_after_enrolment(ctx: WebContext, user_id: str) -> TokenPair:
    """A fresh session once the caller has enrolled a second factor (their old tokens say they had none)."""
    user = await get_user(ctx.db, user_id)
    if user is None or not user.active:
        raise unauthenticated("Your account is no longer active.", code="account_inactive")
    return await _start_session(ctx, user, int(ctx.now()), mfa=True)


async def reissue_after_password_change(ctx: WebContext, user_id: str) -> TokenPair:
    """The caller's fresh session after changing their own password (which ended all their sessions)."""
    user = await get_user(ctx.db, user_id)
    if user is None or not user.active:
        raise unauthenticated("Your account is no longer active.", code="account_inactive")
    return await _start_session(ctx, user, int(ctx.now()), mfa=await mfa_enabled(ctx.db, user.id))


async def _start_session(ctx: WebContext, user: UserRecord, now: int, *, mfa: bool) -> TokenPair:
    refresh_token = _new_refresh_token()
    await store_refresh_token(
        ctx.db, token_hash=_hash_refresh(refresh_token), user_id=user.id, expires_at=_at(now + REFRESH_TTL_S)
    )
    await _audit_login(ctx, "login_succeeded", actor=user.id, username=user.username, mfa=mfa)
    return _pair(ctx, user, refresh_token, now, mfa=mfa)


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
    return _pair(ctx, rotation.user, new_token, now, mfa=await mfa_enabled(ctx.db, rotation.user.id))


async def logout(ctx: WebContext, refresh_token: str) -> None:
    """Revoke the refresh token, and recall the access token the request carries (if any). Idempotent."""
    revoked = await revoke_refresh_token(ctx.db, _hash_refresh(refresh_token), _at(ctx.now()))
    access = _presented_access_token()
    if revoked and access is not None:  # a made-up refresh token recalls nothing
        try:
            principal = decode_access_token(ctx, access)
        except WebError:
            return  # expired or forged: nothing to recall
        ctx.protection.accounts.recall(principal.token_id, principal.expires_at, ctx.now())


def _presented_access_token() -> str | None:
    """The access token of the current request: its Bearer header, else its cookie."""
    connection = websocket if has_websocket_context() else request
    scheme, _, token = connection.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return connection.cookies.get(ACCESS_COOKIE) or None


def _browser() -> bytes:
    """Who the current request's browser is, for the refresh grace window: its address and user agent."""
    connection = websocket if has_websocket_context() else request
    return hashlib.sha256(
        f"{client_address()}\x00{connection.headers.get('User-Agent', '')}".encode(errors="replace")
    ).digest()


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

    The grace is bound to the browser that rotated (its address and user
    agent, :func:`_browser`): a copy of the cookie presented from elsewhere
    within the window takes the strict path, finds the token already rotated
    and trips the reuse alarm (every refresh token of the user revoked).

    Concurrency contract: used from the app's request tasks of one trio run.
    """

    def __init__(self) -> None:
        self._recent: dict[bytes, _Refreshing] = {}

    async def refresh(self, ctx: WebContext, refresh_token: str) -> TokenPair:
        now = ctx.now()
        for key in [k for k, v in self._recent.items() if v.expires_at <= now]:
            del self._recent[key]
        key = _hash_refresh(refresh_token)
        browser = _browser()
        entry = self._recent.get(key)
        if entry is not None and entry.browser != browser:
            return await refresh(ctx, refresh_token)  # another browser: no grace (a stolen cookie)
        if entry is None:
            entry = self._recent[key] = _Refreshing(now + BROWSER_REFRESH_GRACE_S, browser)
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
    def __init__(self, expires_at: float, browser: bytes) -> None:
        self.expires_at = expires_at
        self.browser = browser
        self.done = trio.Event()
        self.pair: TokenPair | None = None
        self.error: WebError | None = None


# --- per request ---------------------------------------------------------------

async def authenticate(ctx: WebContext) -> Principal:
    """The caller of the current request or websocket handshake; raises 401 ``WebError``.

    When a browser session is refreshed on the way, the new pair is left in
    ``g.issued_tokens`` for the app's after-request hook to set as cookies.

    The token alone is not enough: the account must still stand (exist, not be
    deactivated) and the token must not have been recalled by a logout; the
    principal carries the account's *current* role, not the token's. Both come
    from ``ctx.protection.accounts``, cached and invalidated on every change,
    so logout, deactivation and role changes apply to the very next request.
    """
    return await _standing(ctx, await _token_principal(ctx))


async def _standing(ctx: WebContext, principal: Principal) -> Principal:
    accounts = ctx.protection.accounts
    if accounts.recalled(principal.token_id):
        raise unauthenticated("You have logged out; log in again.", code="token_revoked")
    standing = await accounts.standing(ctx.db, principal.user_id)
    if not standing.exists:
        raise unauthenticated("Your account no longer exists.")
    if not standing.active:
        raise unauthenticated("Your account is no longer active.", code="account_inactive")
    if not standing.admits(principal.issued_at):
        raise unauthenticated("Your password was changed or reset; log in again.", code="token_revoked")
    if standing.role != principal.role:
        return replace(principal, role=standing.role)  # type: ignore[arg-type]
    return principal


async def _token_principal(ctx: WebContext) -> Principal:
    """The principal the request's credentials prove (Bearer, else cookies, refreshing an expired browser session)."""
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


def require(*roles: Role, during_mfa_enrolment: bool = False) -> Callable[[V], V]:
    """Decorate a route or websocket view: authenticate, then allow only ``roles`` (any role if none given).

    Sets ``g.principal``. 401 when unauthenticated, 403 for a role not allowed,
    403 ``mfa_enrollment_required`` for a role that must have two-factor
    authentication (``ctx.mfa_required_roles``) calling without it, unless the
    view is part of enrolling (``during_mfa_enrolment=True``).
    Ownership (which session, which student) is checked by the view, see web/access.py.
    """
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles: {sorted(unknown)}")
    allowed = frozenset(roles or ROLES)

    def decorate(view: V) -> V:
        @wraps(view)
        async def guarded(*args, **kwargs):
            ctx = current_context()
            principal = await authenticate(ctx)
            g.principal = principal
            if principal.role not in allowed:
                raise forbidden()
            if not (during_mfa_enrolment or principal.mfa) and principal.role in ctx.mfa_required_roles:
                raise mfa_enrollment_required()
            if not has_websocket_context():
                ctx.protection.api.request(principal.user_id)  # 429 past the user's request limits
            return await view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


def mfa_enrollment_required() -> WebError:
    return WebError(403, "mfa_enrollment_required",
                    "Your role requires two-factor authentication: set it up at /account/mfa first.")


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
