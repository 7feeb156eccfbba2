"""Check-in through the web: the phone's display-mode check-in, faculty marks, flag review, the display code.

Pages: ``GET /c/<session>/<window>/<code>`` (what the display's QR opens; no
login needed) and ``GET /checkin/<pending>`` (a student page that completes
it). JSON API under ``/api/v1``: see :data:`OPENAPI_PATHS`. A live session's
records change only through its session actor (web/checkin_flow.py).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify, redirect, request, url_for
from werkzeug.wrappers.response import Response as WerkzeugResponse

from hub.db.checkin import (
    FLAG_STATES,
    decide_flag,
    display_session,
    enrolled_students,
    flag_json,
    flag_update,
    get_flag,
    list_flags,
    session_records,
)
from hub.db.checkin_networks import session_restriction
from hub.domain.checkin import FLAG_KINDS, STATUSES
from hub.domain.checkin_network import place_client
from hub.domain.display_code import DISPLAY_WINDOW_SECONDS
from hub.domain.session_messages import DisplayCheckin, Receipt, SessionNotLive

from ..access import authorize_session
from ..apidoc import (
    BAD_URL,
    BEARER,
    BODY_ERRORS,
    BOOL,
    FORBIDDEN,
    INT,
    NOT_JSON,
    STR,
    TIME,
    TOO_LARGE,
    UNAUTHENTICATED,
    array,
    enum,
    error,
    json_request,
    json_response,
    nullable,
    obj,
    path_param,
    query_str,
    ref,
)
from ..apidoc import (
    not_found as doc_not_found,
)
from ..auth import current_principal, request_client_address, require
from ..checkin_flow import (
    apply_marks,
    device_cookie,
    device_hash,
    hash_device,
    issue_pending,
    read_pending,
    set_device_cookie,
    settled,
)
from ..context import current_context
from ..errors import WebError, invalid, not_found
from ..feeds import utc_now
from ..paging import page_json, page_of, page_params, page_request
from ..request import choice_arg, json_body, one_of
from ._pages import render_page

bp = Blueprint("checkin", __name__)

MAX_MARKS = 1000
MAX_REASON = 500
_BIGINT = 2**63 - 1

#: Why a faculty member marked or reviewed (kept in the audit log).
Reason = Annotated[str, Meta(max_length=MAX_REASON, description="Why (kept in the audit log).")]


class DisplayCheckinRequest(msgspec.Struct):
    pending: Annotated[str, Meta(min_length=1, description="The pending check-in token (the path of /checkin/{pending}).")]


class MarkRequest(msgspec.Struct):
    student_id: str
    status: Annotated[str, one_of(STATUSES)]


class MarksRequest(msgspec.Struct):
    marks: Annotated[list[MarkRequest], Meta(min_length=1, max_length=MAX_MARKS)]
    reason: Reason = ""


class MarkUnmarkedRequest(msgspec.Struct):
    status: Annotated[str, one_of(STATUSES)]
    reason: Reason = ""


class FlagReview(msgspec.Struct):
    decision: Annotated[str, one_of(("accept", "reject"))]
    note: Reason = ""


_REFUSALS = {
    "duplicate_checkin": "You are already checked in for this session.",
    "not_enrolled": "You are not enrolled in this session's course.",
    "outside_session_window": "Check-in for this session is not open at the time you scanned.",
    "after_late_cutoff": "You scanned after the late cut-off; ask your teacher.",
}


# --- the display's QR -> the phone ---------------------------------------------------------

def display_url(session_id: str, window: int, code: str) -> str:
    """The absolute URL the display's QR code holds."""
    return f"{request.url_root.rstrip('/')}/c/{session_id}/{window}/{code}"


@bp.get("/c/<session_id>/<int:window>/<code>")
async def scanned(session_id: str, window: int, code: str) -> WerkzeugResponse:
    """Judge the code NOW (scan time, hub clock) and where it was read from (the room's check-in
    networks: a signal for review, never a refusal), then hand over to the login-protected page."""
    ctx = current_context()
    session = await display_session(ctx.db, session_id)
    if session is None:
        raise not_found("No such session.")
    now = ctx.now()
    if window > _BIGINT:
        raise invalid("This is not a check-in code.")
    verdict = session.check_code(window, code, now)
    if verdict == "invalid":
        raise WebError(400, "invalid_code", "This is not a valid check-in code for this session.")
    if verdict == "expired":
        raise WebError(400, "expired_code", "This code has expired: scan the code on the screen again.")
    if not session.takes_checkins(utc_now(ctx)):
        raise WebError(409, "session_not_live", "Check-in for this session is not open.")
    cookie, fresh = device_cookie()
    # Where the code was read decides, not where the login finishes: judged now, carried in the token.
    client = place_client(request_client_address(), await session_restriction(ctx.db, session_id))
    token = issue_pending(ctx, session_id, window, now, hash_device(cookie), client)
    response = redirect(url_for("checkin.complete", pending=token), 303)
    if fresh:
        set_device_cookie(response, cookie)
    return response


@bp.get("/checkin/<pending>")
@require("student")
async def complete(pending: str) -> str:
    """The student's page after a scan (after logging in, if they had to): its script posts the token."""
    ctx = current_context()
    claim = read_pending(ctx, pending)
    session = await display_session(ctx.db, claim.session_id)
    if session is None:
        raise not_found("No such session.")
    return await render_page("checkin.html", pending=pending, session=session)


@bp.post("/api/v1/checkin/display")
@require("student")
async def display_checkin() -> Response:
    ctx, principal = current_context(), current_principal()
    body = await json_body(DisplayCheckinRequest)
    claim = read_pending(ctx, body.pending)
    if device_hash() != claim.device_hash:
        raise WebError(403, "other_device", "Finish the check-in on the phone that scanned the code.")
    session = await display_session(ctx.db, claim.session_id)
    if session is None:
        raise not_found("No such session.")
    try:
        receipt = await ctx.session_call(claim.session_id, DisplayCheckin(
            principal.user_id, claim.scanned_at, claim.window, claim.device_hash, claim.nonce,
            request.headers.get("User-Agent", "")[:300], claim.client))
    except SessionNotLive:
        raise WebError(409, "session_not_live", "Check-in for this session has closed.") from None
    assert isinstance(receipt, Receipt)  # what a session actor answers a DisplayCheckin with
    await settled(receipt)
    if not receipt.accepted:
        raise WebError(409, receipt.reason, _REFUSALS.get(receipt.reason, receipt.detail or receipt.reason))
    return jsonify({
        "session_id": session.session_id, "course_code": session.course_code, "status": receipt.status,
        "checked_in_at": receipt.at, "flagged": bool(receipt.flags),
    })


# --- the display code (for the projector page) ----------------------------------------------

@bp.get("/api/v1/sessions/<session_id>/display-code")
@require("faculty", "admin")
async def display_code_now(session_id: str) -> Response:
    ctx = current_context()
    session = await own_display_session(session_id)
    return jsonify(display_code_json(session, ctx.now()))


async def own_display_session(session_id: str):
    ctx = current_context()
    session = await display_session(ctx.db, session_id)
    if session is None:
        raise not_found("No such session.")
    await authorize_session(ctx, current_principal(), session_id)  # coordinator or assigned faculty, admin
    return session


def display_code_json(session, now: float) -> dict:
    """What the display shows: the hub's current window (never the display's clock)."""
    live = session.takes_checkins(datetime.fromtimestamp(now, timezone.utc))
    frame = session.frame(now)
    return {
        "session_id": session.session_id, "live": live, "window_seconds": DISPLAY_WINDOW_SECONDS,
        "window": frame.window if live else None,
        "url": display_url(session.session_id, frame.window, frame.code) if live else None,
        "refresh_in_ms": frame.refresh_in_ms, "opens_at": session.opens_at, "ends_at": session.ends_at,
    }


# --- manual and bulk marks ------------------------------------------------------------------

def _changes_json(session_id: str, changes) -> dict:
    return {"session_id": session_id, "changed": [
        {"student_id": c.student_id, "status": c.status, "before": c.before} for c in changes]}


@bp.post("/api/v1/sessions/<session_id>/marks")
@require("faculty", "admin")
async def mark(session_id: str) -> Response:
    ctx, principal = current_context(), current_principal()
    body = await json_body(MarksRequest)
    pairs = [(item.student_id, item.status) for item in body.marks]
    await authorize_session(ctx, principal, session_id)
    changes = await apply_marks(ctx, session_id, pairs, actor=principal.user_id, reason=body.reason.strip(),
                                source="manual" if len(pairs) == 1 else "bulk")
    return jsonify(_changes_json(session_id, changes))


@bp.post("/api/v1/sessions/<session_id>/marks/unmarked")
@require("faculty", "admin")
async def mark_unmarked(session_id: str) -> Response:
    """Bulk: give every student without a record so far one status."""
    ctx, principal = current_context(), current_principal()
    body = await json_body(MarkUnmarkedRequest)
    await authorize_session(ctx, principal, session_id)
    roster = sorted(await enrolled_students(ctx.db, session_id))
    records = await session_records(ctx.db, session_id, roster)
    unmarked = [(s, body.status) for s in roster if records[s] is None]
    changes = await apply_marks(ctx, session_id, unmarked, actor=principal.user_id, reason=body.reason.strip(),
                                source="bulk") if unmarked else []
    return jsonify(_changes_json(session_id, changes))


# --- flags ----------------------------------------------------------------------------------

@bp.get("/api/v1/sessions/<session_id>/flags")
@require("faculty", "admin")
async def flags(session_id: str) -> Response:
    ctx = current_context()
    paging = page_request()
    state = choice_arg("state", (*FLAG_STATES, "all")) or "open"
    await authorize_session(ctx, current_principal(), session_id)
    items, total = await list_flags(ctx.db, session_id, None if state == "all" else state, paging.limit, paging.offset)
    return jsonify(page_json([flag_json(f) for f in items], total, paging))


@bp.post("/api/v1/flags/<int:flag_id>/review")
@require("faculty", "admin")
async def review_flag(flag_id: int) -> Response:
    """``accept``: the check-in stands. ``reject``: the student is marked absent (audited)."""
    ctx, principal = current_context(), current_principal()
    body = await json_body(FlagReview)
    decision, note = body.decision, body.note
    flag = await get_flag(ctx.db, flag_id) if flag_id <= _BIGINT else None
    if flag is None:
        raise not_found("No such flag.")
    await authorize_session(ctx, principal, flag.session_id)  # coordinator or assigned faculty, admin
    if flag.state != "open":
        raise WebError(409, "conflict", f"This flag was already reviewed ({flag.state}).")
    if decision == "reject":
        await apply_marks(ctx, flag.session_id, [(flag.student_id, "absent")], actor=principal.user_id,
                          reason=f"flag review ({flag.kind}): {note}".strip(), source="flag_review")
    state = "accepted" if decision == "accept" else "rejected"
    if not await decide_flag(ctx.db, flag_id, state, principal.user_id, note.strip(), utc_now(ctx)):
        raise WebError(409, "conflict", "This flag was already reviewed.")
    reviewed = await get_flag(ctx.db, flag_id)
    if reviewed is None:  # deleted with its session in between
        raise not_found("No such flag.")
    ctx.bus.publish(*flag_update(reviewed))  # every open roster of the session drops it from its panel
    return jsonify(flag_json(reviewed))


# --- OpenAPI ----------------------------------------------------------------------------------

_SESSION = path_param("session_id", "Class session id.")
_FACULTY = ["faculty", "admin"]

OPENAPI_SCHEMAS: dict = {
    "DisplayCode": obj({
        "session_id": STR, "live": BOOL, "window_seconds": INT, "window": nullable(INT),
        "url": nullable({**STR, "description": "What the QR code holds: /c/{session}/{window}/{code}."}),
        "refresh_in_ms": {**INT, "description": "Ask again after this long (hub time; the display's clock "
                                                "is never used)."},
        "opens_at": TIME, "ends_at": TIME,
    }),
    "DisplayCheckinResult": obj({
        "session_id": STR, "course_code": STR, "status": enum("present", "late"), "checked_in_at": TIME,
        "flagged": {**BOOL, "description": "A proxy-attendance signal was raised for faculty review."},
    }),
    "MarkChanges": obj({
        "session_id": STR,
        "changed": array(obj({"student_id": STR, "status": enum(*STATUSES), "before": nullable(enum(*STATUSES))})),
    }),
    "CheckinFlag": obj({
        "id": INT, "session_id": STR, "student_id": STR, "student_name": STR, "roll_number": STR,
        "kind": enum(*FLAG_KINDS), "detail": STR, "evidence": {"type": "object"}, "source": STR,
        "raised_at": TIME, "state": enum(*FLAG_STATES), "reviewed_by": nullable(STR),
        "reviewed_at": nullable(TIME), "review_note": STR, "status": nullable(enum(*STATUSES)),
    }),
}

OPENAPI_PATHS: dict = {
    "/api/v1/checkin/display": {"post": {
        "summary": "Complete a display-mode check-in (the student who scanned, on the same phone)",
        "tags": ["checkin"], "security": BEARER, "x-roles": ["student"],
        "requestBody": json_request(DisplayCheckinRequest, "The pending check-in token from /c/…."),
        "responses": {
            "200": json_response(ref("DisplayCheckinResult"), "Checked in."),
            "400": error("`invalid_request`, `invalid_pending` or `pending_expired`."),
            "401": UNAUTHENTICATED,
            "403": error("`forbidden` (not a student) or `other_device`: finish on the phone that scanned."),
            "404": doc_not_found("session"),
            "409": error("Refused: `duplicate_checkin`, `not_enrolled`, `outside_session_window`, "
                         "`after_late_cutoff` or `session_not_live`."),
            "413": TOO_LARGE, "415": NOT_JSON,
            "503": error("`unavailable`: the check-in could not be stored."),
        },
    }},
    "/api/v1/sessions/{session_id}/display-code": {"get": {
        "summary": "The display's current session code and QR URL, by hub time (faculty teaching it, admin)",
        "tags": ["checkin"], "security": BEARER, "x-roles": _FACULTY, "parameters": [_SESSION],
        "responses": {"200": json_response(ref("DisplayCode"), "The current code."), "400": BAD_URL,
                      "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": doc_not_found("session")},
    }},
    "/api/v1/sessions/{session_id}/marks": {"post": {
        "summary": "Mark students (manual: one mark; bulk: several), through the live session actor",
        "tags": ["checkin"], "security": BEARER, "x-roles": _FACULTY, "parameters": [_SESSION],
        "requestBody": json_request(MarksRequest, "The marks."),
        "responses": {"200": json_response(ref("MarkChanges"), "The records that changed."), **BODY_ERRORS,
                      "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": doc_not_found("session"),
                      "503": error("`unavailable`.")},
    }},
    "/api/v1/sessions/{session_id}/marks/unmarked": {"post": {
        "summary": "Bulk: give every student without a record one status",
        "tags": ["checkin"], "security": BEARER, "x-roles": _FACULTY, "parameters": [_SESSION],
        "requestBody": json_request(MarkUnmarkedRequest, "The status."),
        "responses": {"200": json_response(ref("MarkChanges"), "The records that changed."), **BODY_ERRORS,
                      "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": doc_not_found("session"),
                      "503": error("`unavailable`.")},
    }},
    "/api/v1/sessions/{session_id}/flags": {"get": {
        "summary": "Proxy-attendance flags of a session, newest first (faculty teaching it, admin)",
        "tags": ["checkin"], "security": BEARER, "x-roles": _FACULTY,
        "parameters": [_SESSION, *page_params(),
                       query_str("state", "Which flags (default `open`).", enum(*FLAG_STATES, "all"))],
        "responses": {"200": json_response(page_of(ref("CheckinFlag")), "One page."), "400": BAD_URL,
                      "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": doc_not_found("session")},
    }},
    "/api/v1/flags/{flag_id}/review": {"post": {
        "summary": "Review a flag: `accept` keeps the check-in, `reject` marks the student absent",
        "tags": ["checkin"], "security": BEARER, "x-roles": _FACULTY,
        "parameters": [path_param("flag_id", "Flag id.", {"type": "integer", "minimum": 0})],
        "requestBody": json_request(FlagReview, "The decision."),
        "responses": {"200": json_response(ref("CheckinFlag"), "The reviewed flag."), **BODY_ERRORS,
                      "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": doc_not_found("flag"),
                      "409": error("`conflict`: already reviewed."), "503": error("`unavailable`.")},
    }},
}
