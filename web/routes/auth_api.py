"""Tokens and the caller: ``/api/v1/auth/*`` and ``/api/v1/me``. Same authentication as the pages (Bearer or cookies).

Errors are always ``{"error": {"code", "message", "field"?}}`` (web/errors.py).
POST bodies must be ``application/json`` (415 otherwise): part of the CSRF
defence, see web/auth.py. The auth endpoints take and return tokens in JSON
bodies only; browsers use the login form and cookies instead.
"""
from __future__ import annotations

from typing import Annotated

import msgspec
from quart import Blueprint, Response, jsonify

from hub.db.users import UserRecord, get_user

from .. import auth
from ..auth import SecondFactorRequired, TokenPair, current_principal, require
from ..context import current_context
from ..errors import unauthenticated
from ..mfa import MAX_CODE_CHARS
from ..request import NonEmpty, json_body

bp = Blueprint("auth_api", __name__, url_prefix="/api/v1")


def user_json(user: UserRecord) -> dict:
    return {"id": user.id, "username": user.username, "display_name": user.display_name, "role": user.role}


def _tokens_json(pair: TokenPair) -> dict:
    return {
        "token_type": "Bearer",
        "access_token": pair.access_token,
        "expires_in": int(pair.access_expires_at - pair.issued_at),
        "refresh_token": pair.refresh_token,
        "refresh_expires_in": int(pair.refresh_expires_at - pair.issued_at),
        "user": user_json(pair.user),
    }


# --- auth ---------------------------------------------------------------------------

class Credentials(msgspec.Struct):
    username: NonEmpty
    password: NonEmpty


class RefreshToken(msgspec.Struct):
    refresh_token: NonEmpty


class SecondFactor(msgspec.Struct):
    #: From the login's ``mfa_required`` answer.
    mfa_token: Annotated[str, msgspec.Meta(min_length=1, max_length=auth.MAX_MFA_TOKEN_CHARS)]
    #: A 6-digit TOTP code or a recovery code (``xxxxx-xxxxx``).
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CODE_CHARS)]


def second_factor_json(challenge: SecondFactorRequired, now: float) -> dict:
    return {"mfa_required": True, "mfa_token": challenge.mfa_token,
            "expires_in": max(0, int(challenge.expires_at - now)), "methods": ["totp", "recovery_code"]}


@bp.post("/auth/login")
async def login() -> Response:
    """Tokens, or (for an account with two-factor authentication) a pending login for /auth/login/mfa."""
    body = await json_body(Credentials)
    ctx = current_context()
    outcome = await auth.login(ctx, body.username, body.password)
    if isinstance(outcome, SecondFactorRequired):
        return jsonify(second_factor_json(outcome, ctx.now()))
    return jsonify(_tokens_json(outcome))


@bp.post("/auth/login/mfa")
async def login_second_factor() -> Response:
    body = await json_body(SecondFactor)
    return jsonify(_tokens_json(await auth.complete_login(current_context(), body.mfa_token, body.code)))


@bp.post("/auth/refresh")
async def refresh() -> Response:
    body = await json_body(RefreshToken)
    return jsonify(_tokens_json(await auth.refresh(current_context(), body.refresh_token)))


@bp.post("/auth/logout")
async def logout() -> Response:
    """Revoke the refresh token (possessing it is the proof). The access token lapses on its own."""
    body = await json_body(RefreshToken)
    await auth.logout(current_context(), body.refresh_token)
    return Response(b"", status=204)


# --- the caller ---------------------------------------------------------------------------

@bp.get("/me")
@require(during_mfa_enrolment=True)
async def me() -> Response:
    user = await get_user(current_context().db, current_principal().user_id)
    if user is None:
        raise unauthenticated("Your account no longer exists.")
    return jsonify(user_json(user))
