"""The JSON API, ``/api/v1``. Same authentication as the pages (Bearer or cookies).

Errors are always ``{"error": {"code", "message", "field"?}}`` (web/errors.py).
POST bodies must be ``application/json`` (415 otherwise): part of the CSRF
defence, see web/auth.py. The auth endpoints take and return tokens in JSON
bodies only; browsers use the login form and cookies instead.
"""
from __future__ import annotations

import json

from quart import Blueprint, Response, jsonify, request

from hub.db.users import UserRecord, get_user
from hub.db.web_queries import devices_overview, list_rejections

from .. import auth
from ..access import attendance_scope, authorize_session
from ..auth import TokenPair, current_principal, require
from ..context import current_context
from ..errors import WebError, invalid, unauthenticated
from ..feeds import devices_json, load_attendance, load_roster, roster_json, utc_now

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_PAGE = 500
DEFAULT_PAGE = 50


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


async def _json_body(*required: str) -> dict:
    """The request's JSON object, with each of ``required`` a non-empty string."""
    if not request.is_json:
        raise WebError(415, "unsupported_media_type", "Send a JSON body (Content-Type: application/json).")
    try:
        # Not request.get_json(silent=True): it lets a body that is not UTF-8
        # (UnicodeDecodeError) or nests too deep (RecursionError) escape as a 500.
        body = json.loads(await request.get_data())
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise invalid("The body must be a JSON object.")
    for name, value in body.items():
        if not _storable(name) or not _storable(value):
            raise invalid(f"'{name}' must not contain NUL characters or unpaired surrogates.",
                          field=name if _storable(name) else None)
    for name in required:
        value = body.get(name)
        if not isinstance(value, str) or not value:
            raise invalid(f"'{name}' is required (a non-empty string).", field=name)
    return body


def _storable(value: object) -> bool:
    """True if every string in ``value`` (a parsed JSON value) is text PostgreSQL can hold.

    JSON may spell NUL (``\\u0000``) and unpaired surrogates (``\\ud800``); neither fits in a
    ``text`` or ``jsonb`` column, so any route storing them failed in its query (a 500).
    Refused here once for every route. Iterative: nesting is bounded only by the body size.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return False
            try:
                item.encode()
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"'{name}' must be an integer.", field=name) from None
    if not low <= value <= high:
        raise invalid(f"'{name}' must be between {low} and {high}.", field=name)
    return value


# --- auth ---------------------------------------------------------------------------

@bp.post("/auth/login")
async def login() -> Response:
    body = await _json_body("username", "password")
    return jsonify(_tokens_json(await auth.login(current_context(), body["username"], body["password"])))


@bp.post("/auth/refresh")
async def refresh() -> Response:
    body = await _json_body("refresh_token")
    return jsonify(_tokens_json(await auth.refresh(current_context(), body["refresh_token"])))


@bp.post("/auth/logout")
async def logout() -> Response:
    """Revoke the refresh token (possessing it is the proof). The access token lapses on its own."""
    body = await _json_body("refresh_token")
    await auth.logout(current_context(), body["refresh_token"])
    return Response(b"", status=204)


# --- reads ------------------------------------------------------------------------------

@bp.get("/me")
@require()
async def me() -> Response:
    user = await get_user(current_context().db, current_principal().user_id)
    if user is None:
        raise unauthenticated("Your account no longer exists.")
    return jsonify(user_json(user))


@bp.get("/sessions/<session_id>/roster")
@require("faculty", "admin")
async def session_roster(session_id: str) -> Response:
    ctx = current_context()
    await authorize_session(ctx, current_principal(), session_id)  # coordinator or assigned faculty
    roster = await load_roster(ctx, session_id)
    return jsonify(roster_json(roster, utc_now(ctx)))


@bp.get("/students/<student_id>/attendance")
@require("student", "faculty", "admin")
async def student_attendance(student_id: str) -> Response:
    ctx = current_context()
    faculty_id = await attendance_scope(ctx, current_principal(), student_id)
    return jsonify(await load_attendance(ctx, student_id, faculty_id))


@bp.get("/devices")
@require("ops", "admin")
async def devices() -> Response:
    return jsonify(devices_json(await devices_overview(current_context().db)))


@bp.get("/rejections")
@require("admin", "ops")
async def rejections() -> Response:
    limit = _int_arg("limit", DEFAULT_PAGE, 1, MAX_PAGE)
    offset = _int_arg("offset", 0, 0, 10**9)
    reason = request.args.get("reason") or None
    page = await list_rejections(current_context().db, limit, offset, reason)
    return jsonify({
        "items": [
            {
                "id": r.id, "received_at": r.received_at, "reason": r.reason, "detail": r.detail,
                "topic": r.topic, "device_id": r.device_id, "kind": r.kind, "session_id": r.session_id,
                "event_id": r.event_id, "payload_bytes": r.payload_bytes,
            }
            for r in page.items
        ],
        "total": page.total,
        "limit": limit,
        "offset": offset,
        "reason": reason,
    })
