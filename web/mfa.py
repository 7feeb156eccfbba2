"""Second factor: TOTP (RFC 6238, pyotp) and one-time recovery codes.

- The seed is 160 random bits (base32, as authenticator apps expect), sealed
  by the secrets box (``ctx.secrets``) before it reaches the database.
- A code is accepted for the current 30 s step or one step either side
  (clock drift), and only for a step later than the last one accepted
  (hub/db/mfa.py ``accept_totp_step``): replaying a code, even within its
  window, is refused.
- Recovery codes: 10 codes of 50 random bits each (``xxxxx-xxxxx``), shown
  once, stored as SHA-256, each usable once.
- Brute force: after :data:`MAX_FAILED_CODES` wrong codes within
  :data:`FAILED_CODES_WINDOW` the account's second step answers 429 with
  ``Retry-After`` until the window ends, whatever the code (a correct one
  included), so guessing 6 digits is bounded to 10 tries per 15 minutes.

Concurrency contract: every function runs in the calling request's task;
the acceptance of a code is atomic in PostgreSQL (two requests with the same
code: one wins).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import io
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pyotp
import segno

from hub.db import mfa as mfa_db

from .context import WebContext
from .errors import WebError

ISSUER = "CampusHub"
TOTP_STEP_S = 30
TOTP_DIGITS = 6
#: Steps accepted either side of the current one (clock drift between phone and hub).
TOTP_DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
MAX_FAILED_CODES = 10
FAILED_CODES_WINDOW = timedelta(minutes=15)
#: Longest code we look at: a TOTP code is 6 digits, a recovery code 11 characters.
MAX_CODE_CHARS = 32
_RECOVERY_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # 32 symbols, no 0/o, 1/l look-alikes


@dataclass(frozen=True)
class Enrolment:
    """A seed waiting for its first code: shown once to the user."""

    secret: str
    otpauth_uri: str
    qr_svg: bytes


@dataclass(frozen=True)
class SecondFactor:
    """A code that was accepted."""

    method: str  # "totp" or "recovery_code"
    #: For a recovery code: how many are left.
    recovery_codes_left: int | None = None


def _utc(unix_seconds: float) -> datetime:
    return datetime.fromtimestamp(unix_seconds, timezone.utc)


def invalid_code() -> WebError:
    # 400, not 401: a wrong code must not log a signed-in browser out (401 clears its cookies).
    return WebError(400, "invalid_code", "Wrong or already used code.", "code")


def too_many_codes(retry_after: float) -> WebError:
    error = WebError(429, "too_many_codes", "Too many wrong codes: wait before trying again.", "code")
    error.retry_after = max(1, math.ceil(retry_after))
    return error


# --- TOTP -------------------------------------------------------------------------------------

def new_totp_secret() -> str:
    return pyotp.random_base32(32)


def totp_step(unix_seconds: float) -> int:
    return int(unix_seconds // TOTP_STEP_S)


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step whose code ``code`` is (current ± drift), or ``None``. Constant time per step."""
    code = code.strip().replace(" ", "")
    if len(code) != TOTP_DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP_S)
    current = totp_step(now)
    found = None
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def render_qr_svg(text: str) -> bytes:
    out = io.BytesIO()
    segno.make(text, error="m", micro=False).save(out, kind="svg", scale=5, border=4, xmldecl=False)
    return out.getvalue()


# --- recovery codes ---------------------------------------------------------------------------

def new_recovery_codes() -> list[str]:
    def one() -> str:
        chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
        return f"{chars[:5]}-{chars[5:]}"

    return [one() for _ in range(RECOVERY_CODE_COUNT)]


def recovery_code_hash(code: str) -> bytes:
    """SHA-256 of the normalised code (case, spaces and dashes do not matter when typing it)."""
    normal = "".join(ch for ch in code.lower() if ch not in " -")
    return hashlib.sha256(b"campushub-recovery:" + normal.encode()).digest()


def _looks_like_recovery_code(code: str) -> bool:
    normal = "".join(ch for ch in code.lower() if ch not in " -")
    return len(normal) == 10 and all(ch in _RECOVERY_ALPHABET for ch in normal)


# --- flows ------------------------------------------------------------------------------------

async def begin_enrolment(ctx: WebContext, user_id: str, username: str) -> Enrolment:
    """A new seed for ``user_id``, stored sealed and unconfirmed; 409 if MFA is already on."""
    secret = new_totp_secret()
    sealed = ctx.secrets.encrypt(base64.b32decode(secret), mfa_db.totp_context(user_id))
    if not await mfa_db.begin_enrolment(ctx.db, user_id, sealed):
        raise WebError(409, "mfa_already_enabled", "Two-factor authentication is already on for this account.")
    uri = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP_S).provisioning_uri(
        name=username, issuer_name=ISSUER)
    return Enrolment(secret, uri, render_qr_svg(uri))


def _secret_of(ctx: WebContext, record: mfa_db.MfaRecord) -> str:
    raw = ctx.secrets.decrypt(record.secret_sealed, mfa_db.totp_context(record.user_id))
    return base64.b32encode(raw).decode()


async def confirm_enrolment(ctx: WebContext, user_id: str, code: str) -> list[str]:
    """Check the first code of a pending enrolment and turn MFA on; the recovery codes (shown once)."""
    record = await mfa_db.get_mfa(ctx.db, user_id)
    if record is None or record.enabled:
        raise WebError(409, "no_pending_enrolment", "Start the enrolment first (or it is already confirmed).")
    step = matching_step(_secret_of(ctx, record), code[:MAX_CODE_CHARS], ctx.now())
    if step is None:
        raise invalid_code()
    codes = new_recovery_codes()
    if not await mfa_db.confirm_enrolment(
            ctx.db, user_id, step=step, recovery_hashes=[recovery_code_hash(c) for c in codes], now=_utc(ctx.now())):
        raise WebError(409, "no_pending_enrolment", "Start the enrolment first (or it is already confirmed).")
    return codes


async def verify_second_factor(ctx: WebContext, user_id: str, code: str, *, allow_recovery: bool = True) -> SecondFactor:
    """Accept one TOTP or recovery code of a user with MFA on; 401 ``invalid_code``, 429 ``too_many_codes``.

    Every wrong code counts toward the user's limit; a right one resets it.
    """
    record = await mfa_db.get_mfa(ctx.db, user_id)
    if record is None or not record.enabled:
        raise WebError(409, "mfa_not_enabled", "Two-factor authentication is not on for this account.")
    now = ctx.now()
    if record.failed_codes >= MAX_FAILED_CODES and record.failed_since is not None:
        reopens = record.failed_since + FAILED_CODES_WINDOW
        if reopens > _utc(now):
            raise too_many_codes((reopens - _utc(now)).total_seconds())
    code = code[:MAX_CODE_CHARS + 1]
    if len(code) <= MAX_CODE_CHARS:
        step = matching_step(_secret_of(ctx, record), code, now)
        if step is not None and await mfa_db.accept_totp_step(ctx.db, user_id, step):
            return SecondFactor("totp")
        if step is None and allow_recovery and _looks_like_recovery_code(code):
            left = await mfa_db.spend_recovery_code(ctx.db, user_id, recovery_code_hash(code), _utc(now))
            if left is not None:
                return SecondFactor("recovery_code", left)
    failures, since = await mfa_db.count_failed_code(ctx.db, user_id, _utc(now), FAILED_CODES_WINDOW)
    if failures >= MAX_FAILED_CODES:
        raise too_many_codes((since + FAILED_CODES_WINDOW - _utc(now)).total_seconds())
    raise invalid_code()


async def regenerate_recovery_codes(ctx: WebContext, user_id: str, code: str) -> list[str]:
    """New recovery codes after a current TOTP code (not a recovery code: those are what is being replaced)."""
    await verify_second_factor(ctx, user_id, code, allow_recovery=False)
    codes = new_recovery_codes()
    if not await mfa_db.replace_recovery_codes(ctx.db, user_id, [recovery_code_hash(c) for c in codes]):
        raise WebError(409, "mfa_not_enabled", "Two-factor authentication is not on for this account.")
    return codes


async def disable(ctx: WebContext, user_id: str, role: str, code: str) -> None:
    """Turn the caller's MFA off after a code; refused (403) for roles that require it."""
    if role in ctx.mfa_required_roles:
        raise WebError(403, "mfa_required", "Your role requires two-factor authentication: it cannot be turned off."
                       " To move it to a new phone, ask an admin to reset it, then enrol again.")
    await verify_second_factor(ctx, user_id, code)
    if not await mfa_db.remove_mfa(ctx.db, user_id, actor=user_id):
        raise WebError(409, "mfa_not_enabled", "Two-factor authentication is not on for this account.")
