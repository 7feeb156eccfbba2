"""Two-factor authentication of the caller: ``/api/v1/me/mfa*``; an admin's reset of someone else's.

Enrolment is two calls: ``POST /api/v1/me/mfa/enrolment`` returns a new seed
(text, ``otpauth://`` URI and QR), ``POST /api/v1/me/mfa/enrolment/confirm``
with a code from the app turns it on and returns the recovery codes, once.
Roles that require MFA (``ctx.mfa_required_roles``) may call these, ``GET
/api/v1/me/mfa`` and ``/api/v1/me`` before they have enrolled; everything else
answers them 403 ``mfa_enrollment_required`` (web/auth.py ``require``).

Confirming replaces the caller's session: the tokens they held say "no second
factor". A browser (cookies) gets the new pair as cookies; an API client
(``Authorization: Bearer``) gets it in the response's ``tokens``.
"""
from __future__ import annotations

import base64
from typing import Annotated

import msgspec
from quart import Blueprint, Response, g, jsonify, request

from hub.db import mfa as mfa_db
from hub.db.users import get_user

from .. import auth, mfa
from ..apidoc import (
    BODY_ERRORS,
    BOOL,
    INT,
    STR,
    TIME,
    array,
    error,
    json_request,
    json_response,
    nullable,
    obj,
    operation,
    path_param,
    ref,
)
from ..auth import ROLES, current_principal, require
from ..context import current_context
from ..errors import WebError, not_found, unauthenticated
from ..feeds import utc_now
from ..request import json_body
from .auth_api import _tokens_json

bp = Blueprint("mfa_api", __name__, url_prefix="/api/v1")

Code = Annotated[str, msgspec.Meta(min_length=1, max_length=mfa.MAX_CODE_CHARS)]


class StartEnrolment(msgspec.Struct):
    """No fields: a POST body of ``{}`` (POSTs take JSON only, see web/auth.py on CSRF)."""


class CodeBody(msgspec.Struct):
    #: A 6-digit code from the authenticator app (or, where accepted, a recovery code).
    code: Code


class MfaReset(msgspec.Struct):
    #: Why (e.g. "lost phone, identity checked in person"); kept in the audit log.
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""


async def _status_json(user_id: str, role: str) -> dict:
    record = await mfa_db.get_mfa(current_context().db, user_id)
    enabled = record is not None and record.enabled
    return {
        "enabled": enabled,
        "required": role in current_context().mfa_required_roles,
        "enrolment_pending": record is not None and not record.enabled,
        "enrolled_at": record.confirmed_at if record is not None and enabled else None,
        "recovery_codes_left": record.recovery_codes_left if record is not None and enabled else 0,
    }


@bp.get("/me/mfa")
@require(during_mfa_enrolment=True)
async def status() -> Response:
    principal = current_principal()
    return jsonify(await _status_json(principal.user_id, principal.role))


@bp.post("/me/mfa/enrolment")
@require(during_mfa_enrolment=True)
async def start_enrolment() -> Response:
    await json_body(StartEnrolment)
    ctx = current_context()
    user = await get_user(ctx.db, current_principal().user_id)
    if user is None:
        raise unauthenticated("Your account no longer exists.")
    enrolment = await mfa.begin_enrolment(ctx, user.id, user.username)
    return jsonify({
        "secret": enrolment.secret, "otpauth_uri": enrolment.otpauth_uri,
        "qr_svg": "data:image/svg+xml;base64," + base64.b64encode(enrolment.qr_svg).decode(),
    })


@bp.post("/me/mfa/enrolment/confirm")
@require(during_mfa_enrolment=True)
async def confirm_enrolment() -> Response:
    body = await json_body(CodeBody)
    ctx = current_context()
    user_id = current_principal().user_id
    codes = await mfa.confirm_enrolment(ctx, user_id, body.code)
    pair = await auth.reissue_after_enrolment(ctx, user_id)
    answer: dict = {"recovery_codes": codes}
    if request.headers.get("Authorization") is None:
        g.issued_tokens = pair  # a browser: the app's after-request hook sets the cookies
    else:
        answer["tokens"] = _tokens_json(pair)
    return jsonify(answer)


@bp.post("/me/mfa/recovery-codes")
@require()
async def new_recovery_codes() -> Response:
    body = await json_body(CodeBody)
    codes = await mfa.regenerate_recovery_codes(current_context(), current_principal().user_id, body.code)
    return jsonify({"recovery_codes": codes})


@bp.post("/me/mfa/disable")
@require()
async def disable() -> Response:
    body = await json_body(CodeBody)
    principal = current_principal()
    await mfa.disable(current_context(), principal.user_id, principal.role, body.code)
    return Response(b"", status=204)


@bp.post("/users/<user_id>/mfa/reset")
@require("admin")
async def reset(user_id: str) -> Response:
    """An admin turns someone's MFA off (a lost phone); their sessions end; they enrol again at their next login."""
    body = await json_body(MfaReset)
    ctx = current_context()
    if await get_user(ctx.db, user_id) is None:
        raise not_found("No such user.")
    if user_id == current_principal().user_id:
        raise WebError(403, "forbidden", "Reset your own two-factor authentication from /account/mfa instead.")
    # Like a password reset: whoever holds the lost factor's sessions is out at once (tokens, websockets).
    if not await mfa_db.remove_mfa(ctx.db, user_id, actor=current_principal().user_id, reason=body.reason,
                                   end_sessions_at=utc_now(ctx)):
        raise WebError(409, "mfa_not_enabled", "Two-factor authentication is not on for this account.")
    ctx.protection.accounts.invalidate(user_id)
    return Response(b"", status=204)


# --- OpenAPI --------------------------------------------------------------------------------

_ENROLMENT_NOTE = " Allowed before enrolling, for roles that require MFA."
_CODES = obj({"recovery_codes": {**array(STR), "description": "Shown once; each works once."}})
_WRONG_CODE = error("`invalid_code`: wrong code, or one already used; `invalid_request`: a malformed body.")
_TOO_MANY = error("`too_many_codes`: 10 wrong codes within 15 minutes (`Retry-After`).")
_ALL = list(ROLES)

OPENAPI_SCHEMAS = {
    "MfaStatus": obj({
        "enabled": BOOL, "required": BOOL, "enrolment_pending": BOOL, "enrolled_at": nullable(TIME),
        "recovery_codes_left": INT,
    }),
    "MfaEnrolment": obj({
        "secret": {**STR, "description": "Base32 TOTP seed, for typing into an authenticator app."},
        "otpauth_uri": STR, "qr_svg": {**STR, "description": "The URI as an SVG QR code, a data: URI."},
    }),
}

OPENAPI_PATHS = {
    "/api/v1/me/mfa": {"get": operation(
        "The caller's two-factor authentication status." + _ENROLMENT_NOTE, "mfa", _ALL,
        {"200": json_response(ref("MfaStatus"), "Status.")})},
    "/api/v1/me/mfa/enrolment": {"post": operation(
        "Start enrolling TOTP: a new seed (replaces an unconfirmed one)." + _ENROLMENT_NOTE, "mfa", _ALL,
        {"200": json_response(ref("MfaEnrolment"), "The seed, shown once."), **BODY_ERRORS,
         "409": error("`mfa_already_enabled`.")},
        body=json_request(StartEnrolment, "An empty object."))},
    "/api/v1/me/mfa/enrolment/confirm": {"post": operation(
        "Confirm the enrolment with a code: MFA on, recovery codes returned once, the session renewed"
        " (cookies, or `tokens` for a Bearer caller)." + _ENROLMENT_NOTE, "mfa", _ALL,
        {"200": json_response(obj({"recovery_codes": array(STR), "tokens": ref("Tokens")},
                                  required=["recovery_codes"]), "Enrolled."),
         **BODY_ERRORS, "400": _WRONG_CODE, "409": error("`no_pending_enrolment`.")},
        body=json_request(CodeBody, "A code from the authenticator app."))},
    "/api/v1/me/mfa/recovery-codes": {"post": operation(
        "New recovery codes (the old ones stop working); needs a TOTP code.", "mfa", _ALL,
        {"200": json_response(_CODES, "The new codes, shown once."), **BODY_ERRORS, "400": _WRONG_CODE,
         "409": error("`mfa_not_enabled`."), "429": _TOO_MANY},
        body=json_request(CodeBody, "A TOTP code."))},
    "/api/v1/me/mfa/disable": {"post": operation(
        "Turn the caller's MFA off (needs a code); refused for roles that require it (`mfa_required`).",
        "mfa", _ALL,
        {"204": {"description": "Off."}, **BODY_ERRORS, "400": _WRONG_CODE, "409": error("`mfa_not_enabled`."),
         "429": _TOO_MANY},
        body=json_request(CodeBody, "A TOTP or recovery code."))},
    "/api/v1/users/{user_id}/mfa/reset": {"post": operation(
        "Turn a user's MFA off (a lost phone; audited); their sessions end at once and they enrol again "
        "(admin).", "mfa", ["admin"],
        {"204": {"description": "Off."}, **BODY_ERRORS, "404": error("`not_found`: no such user."),
         "409": error("`mfa_not_enabled`.")},
        params=[path_param("user_id", "User id.")],
        body=json_request(MfaReset, "Why."))},
}
