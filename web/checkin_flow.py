"""Display-mode check-in plumbing for the web: pending check-in tokens, the phone's device cookie, marks.

Pending check-in token
----------------------
Scanning the classroom display opens ``/c/<session>/<window>/<code>``. The
code is judged right there, at scan time, by the hub's clock; if it is good
the browser gets a *pending check-in token*: ``base64url(json).base64url(mac)``
with ``mac = HMAC-SHA256(HMAC(jwt_secret, "pending-checkin"), json)`` and
claims ``s`` (session), ``w`` (code window), ``t`` (scan time, unix ms),
``n`` (random nonce), ``d`` (SHA-256 of the phone's device cookie),
``c`` (where the scan came from: ``[network, inside, scope]``, the client's
/24 or /48 and its verdict against the room's check-in network restriction,
hub/domain/checkin_network.py; never the full address) and ``exp``. The token is the path of the next page, which needs a student
login: a logged-out student goes through the login form and comes back to
it, and is checked in as of the scan time, without rescanning. It is bound to
the phone (the device cookie) and lives :data:`PENDING_TTL_S`.

Concurrency contract: all functions here are called from request tasks; the
async ones wait for the database or a session actor, never longer than
:data:`COMMIT_TIMEOUT_S` for a commit.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

import trio
from quart import current_app, request
from werkzeug.sansio.response import Response

from hub.db.marks import record_marks
from hub.domain.checkin import InvalidMarks, MarkChange
from hub.domain.checkin_network import ClientNetwork
from hub.domain.session_messages import ManualMarks, Receipt, SessionNotLive

from .context import WebContext
from .errors import WebError, invalid

#: Time to log in after a scan; the check-in still counts as of the scan.
PENDING_TTL_S = 10 * 60
DEVICE_COOKIE = "ch_device"
DEVICE_COOKIE_MAX_AGE = 365 * 24 * 3600
#: A commit normally lands in milliseconds; past this the database is down.
COMMIT_TIMEOUT_S = 15.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _pending_key(ctx: WebContext) -> bytes:
    # A key of its own, so a pending token can never pass for anything else signed with jwt_secret.
    return hmac.new(ctx.jwt_secret, b"pending-checkin", hashlib.sha256).digest()


@dataclass(frozen=True)
class PendingCheckin:
    session_id: str
    window: int
    scanned_at: datetime
    nonce: bytes
    device_hash: bytes
    #: Where the scan came from; ``None`` for a token issued before networks were judged.
    client: ClientNetwork | None = None


def issue_pending(ctx: WebContext, session_id: str, window: int, scanned_at: float, device_hash: bytes,
                  client: ClientNetwork | None = None) -> str:
    claims = {"s": session_id, "w": window, "t": int(scanned_at * 1000), "n": _b64(secrets.token_bytes(12)),
              "d": _b64(device_hash), "exp": int(scanned_at) + PENDING_TTL_S}
    if client is not None:
        claims["c"] = [client.network, client.inside, client.scope]
    body = json.dumps(claims, separators=(",", ":")).encode()
    return f"{_b64(body)}.{_b64(hmac.digest(_pending_key(ctx), body, 'sha256'))}"


def read_pending(ctx: WebContext, token: str) -> PendingCheckin:
    """Verify a pending token; 400 ``invalid_pending`` (forged, malformed) or ``pending_expired``."""
    refused = invalid("This check-in link is not valid; scan the code on the screen again.", field="pending")
    refused.code = "invalid_pending"
    body_part, _, mac_part = token.partition(".")
    try:
        body, mac = _unb64(body_part), _unb64(mac_part)
    except (binascii.Error, ValueError):
        raise refused from None
    if not hmac.compare_digest(mac, hmac.digest(_pending_key(ctx), body, "sha256")):
        raise refused
    claims = json.loads(body)
    if claims["exp"] <= ctx.now():
        raise WebError(400, "pending_expired", "This check-in link has expired; scan the code on the screen again.",
                       "pending")
    client = ClientNetwork(*claims["c"]) if "c" in claims else None
    return PendingCheckin(claims["s"], claims["w"], datetime.fromtimestamp(claims["t"] / 1000, timezone.utc),
                          _unb64(claims["n"]), _unb64(claims["d"]), client)


def hash_device(cookie: str) -> bytes:
    return hashlib.sha256(cookie.encode()).digest()


def device_hash() -> bytes | None:
    """SHA-256 of this browser's device cookie, or None if it has none."""
    cookie = request.cookies.get(DEVICE_COOKIE)
    return hash_device(cookie) if cookie else None


def device_cookie() -> tuple[str, bool]:
    """This browser's device cookie, or a fresh random one (``True``: set it with :func:`set_device_cookie`)."""
    cookie = request.cookies.get(DEVICE_COOKIE)
    if cookie and len(cookie) <= 64:
        return cookie, False
    return _b64(secrets.token_bytes(16)), True


def set_device_cookie(response: Response, cookie: str) -> None:
    response.set_cookie(DEVICE_COOKIE, cookie, max_age=DEVICE_COOKIE_MAX_AGE, path="/", httponly=True,
                        samesite="Lax", secure=bool(current_app.config.get("CAMPUSHUB_SECURE_COOKIES", False)))


async def settled(receipt) -> None:
    """Wait for a session actor's commit; 503 if it did not land."""
    ok = False
    with trio.move_on_after(COMMIT_TIMEOUT_S):
        ok = await receipt.committed()
    if not ok:
        raise WebError(503, "unavailable", "The change could not be stored; try again in a moment.")


async def apply_marks(
    ctx: WebContext, session_id: str, marks: Sequence[tuple[str, str]], *, actor: str, reason: str, source: str,
) -> list[MarkChange]:
    """Faculty marks: through the live session actor, else straight to PostgreSQL; one use case
    either way (hub/db/marks.py: the same judgement, records, audit and live updates).

    Returns the records that changed; 400 (``field`` set) for an invalid mark, nothing applied.
    """
    try:
        receipt = await ctx.session_call(session_id, ManualMarks(tuple(marks), actor, reason, source))
    except SessionNotLive:
        return await _apply_marks_offline(ctx, session_id, marks, actor=actor, reason=reason, source=source)
    assert isinstance(receipt, Receipt)  # the session actor answers ManualMarks with a Receipt
    if not receipt.accepted:
        raise invalid(receipt.detail, field=receipt.field)
    await settled(receipt)
    return list(receipt.changes)


async def _apply_marks_offline(
    ctx: WebContext, session_id: str, marks: Sequence[tuple[str, str]], *, actor: str, reason: str, source: str,
) -> list[MarkChange]:
    try:
        plan = await record_marks(ctx.db, session_id, ManualMarks(tuple(marks), actor, reason, source))
    except InvalidMarks as error:
        raise invalid(str(error), field=error.field) from None
    for topic, message in plan.live:
        ctx.bus.publish(topic, message)
    return list(plan.changes)
