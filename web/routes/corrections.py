"""Correction requests: the JSON API (``/api/v1/corrections``), the student's corrections page
and the faculty's queues page (pending leave and corrections).

Who may do what (docs/records.md): a student requests, sees and withdraws only
their own; a faculty member sees and decides those of the courses they manage;
an admin all.
"""
from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify

from hub.db import corrections as store
from hub.domain.corrections import (
    MAX_NOTE_CHARS,
    MAX_REASON_CHARS,
    REQUEST_STATUSES,
    STATUSES,
    CorrectionRuleError,
)

from ..apidoc import (
    BAD_URL,
    BEARER,
    BODY_ERRORS,
    FORBIDDEN,
    INT,
    STR,
    TIME,
    UNAUTHENTICATED,
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
from ..auth import Principal, current_principal, require
from ..context import current_context
from ..errors import WebError, forbidden, not_found
from ..feeds import load_attendance
from ..paging import page_json, page_of, page_params, page_request
from ..request import EmptyBody, NonEmpty, choice_arg, json_body
from ..serialize import record_json
from ._pages import render_page
from ._records import ID_SCHEMA, MAX_ID, after_commit, now_utc

bp = Blueprint("corrections", __name__)


class CorrectionRequest(msgspec.Struct):
    session_id: NonEmpty
    # One of STATUSES: refused (400, naming the field) by hub/domain/corrections.py with its other rules.
    requested_status: Annotated[str, Meta(extra_json_schema={"enum": list(STATUSES)})]
    reason: Annotated[str, Meta(min_length=1, max_length=MAX_REASON_CHARS)]


class CorrectionDecision(msgspec.Struct):
    note: Annotated[str, Meta(max_length=MAX_NOTE_CHARS, description="Optional, shown to the student.")] | None = None


def _rule_error(error: CorrectionRuleError) -> WebError:
    return WebError(409 if error.code == "conflict" else 400, error.code, error.message, error.field)


async def _visible(principal: Principal, correction_id: int) -> store.Correction:
    """The request if the principal may see it: 404 when there is none, 403 when it is not theirs."""
    ctx = current_context()
    if correction_id > MAX_ID:
        raise not_found("No such correction request.")
    try:
        correction = await store.get_correction(ctx.db, correction_id)
    except store.CorrectionNotFound:
        raise not_found("No such correction request.") from None
    if principal.role == "student":
        if correction.student_id != principal.user_id:
            raise forbidden("This is not your correction request.")
    elif not await store.may_decide(ctx.db, principal.user_id, principal.role, correction.course_id):
        raise forbidden("You do not teach this session's course.")
    return correction


# --- API ---------------------------------------------------------------------------------------

@bp.post("/api/v1/corrections")
@require("student")
async def request_correction() -> tuple[Response, int]:
    ctx, principal = current_context(), current_principal()
    body = await json_body(CorrectionRequest)
    try:
        outcome = await store.request_correction(
            ctx.db, student_id=principal.user_id, session_id=body.session_id,
            requested_status=body.requested_status, reason=body.reason, now=now_utc(ctx))
    except store.CorrectionNotFound:
        raise not_found("No such session among your courses.") from None
    except CorrectionRuleError as refused:
        raise _rule_error(refused) from None
    await after_commit(ctx, {}, outcome.notifications)
    return jsonify(record_json(outcome.correction)), 201


@bp.get("/api/v1/corrections")
@require("student", "faculty", "admin")
async def list_corrections() -> Response:
    ctx, principal = current_context(), current_principal()
    paging = page_request()
    status = choice_arg("status", REQUEST_STATUSES)
    scope = {"student": {"student_id": principal.user_id}, "faculty": {"faculty_id": principal.user_id}}
    items, total = await store.list_corrections(ctx.db, limit=paging.limit, offset=paging.offset, status=status,
                                                **scope.get(principal.role, {}))
    return jsonify(page_json([record_json(c) for c in items], total, paging))


@bp.get("/api/v1/corrections/<int:correction_id>")
@require("student", "faculty", "admin")
async def get_correction(correction_id: int) -> Response:
    return jsonify(record_json(await _visible(current_principal(), correction_id)))


async def _decide(correction_id: int, approve: bool) -> Response:
    ctx, principal = current_context(), current_principal()
    note = (await json_body(CorrectionDecision)).note or ""
    await _visible(principal, correction_id)
    try:
        outcome = await store.decide_correction(ctx.db, correction_id, approve=approve,
                                                decided_by=principal.user_id, note=note, now=now_utc(ctx))
    except CorrectionRuleError as refused:
        raise _rule_error(refused) from None
    await after_commit(ctx, outcome.affected, outcome.notifications)
    return jsonify(record_json(outcome.correction))


@bp.post("/api/v1/corrections/<int:correction_id>/approve")
@require("faculty", "admin")
async def approve(correction_id: int) -> Response:
    return await _decide(correction_id, True)


@bp.post("/api/v1/corrections/<int:correction_id>/reject")
@require("faculty", "admin")
async def reject(correction_id: int) -> Response:
    return await _decide(correction_id, False)


@bp.post("/api/v1/corrections/<int:correction_id>/withdraw")
@require("student")
async def withdraw(correction_id: int) -> Response:
    ctx, principal = current_context(), current_principal()
    await json_body(EmptyBody)
    await _visible(principal, correction_id)
    try:
        outcome = await store.withdraw_correction(ctx.db, correction_id, now=now_utc(ctx))
    except CorrectionRuleError as refused:
        raise _rule_error(refused) from None
    return jsonify(record_json(outcome.correction))


# --- pages -------------------------------------------------------------------------------------

@bp.get("/student/corrections")
@require("student")
async def student_page() -> str:
    ctx, principal = current_context(), current_principal()
    attendance = await load_attendance(ctx, principal.user_id)
    return await render_page("student_corrections.html", attendance=attendance, statuses=STATUSES,
                             max_reason=MAX_REASON_CHARS)


@bp.get("/faculty/queues")
@require("faculty", "admin")
async def queues_page() -> str:
    return await render_page("faculty_queues.html")


# --- OpenAPI ------------------------------------------------------------------------------------

_ID = path_param("correction_id", "Correction request id.", ID_SCHEMA)
_ANY = ["student", "faculty", "admin"]
_NOT_FOUND = doc_not_found("correction request")

OPENAPI_SCHEMAS: dict = {
    "Correction": obj({
        "id": INT, "session_id": STR, "student_id": STR, "student_name": STR, "roll_number": STR,
        "course_id": STR, "course_code": STR, "course_title": STR, "session_starts_at": TIME,
        "current_status": {**nullable(enum(*STATUSES)), "description": "The record when the request was made."},
        "requested_status": enum(*STATUSES),
        "record_status": {**nullable(enum(*STATUSES)), "description": "The record now."},
        "reason": STR, "status": enum(*REQUEST_STATUSES), "requested_at": TIME, "decided_by": nullable(STR),
        "decided_by_name": nullable(STR), "decided_at": nullable(TIME), "decision_note": STR, "updated_at": TIME,
    }),
}

_DECISION = {
    "requestBody": json_request(CorrectionDecision, "An optional note for the student."),
    "responses": {
        "200": json_response(ref("Correction"), "The request after the decision."), **BODY_ERRORS,
        "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": _NOT_FOUND,
        "409": error("`conflict`: the request is no longer pending."),
    },
}

OPENAPI_PATHS: dict = {
    "/api/v1/corrections": {
        "post": {
            "summary": "Ask for one of your own attendance records to be corrected (a student)",
            "tags": ["corrections"], "security": BEARER, "x-roles": ["student"],
            "requestBody": json_request(CorrectionRequest, "The record and what it should say."),
            "responses": {
                "201": json_response(ref("Correction"), "Filed (status `pending`)."), **BODY_ERRORS,
                "401": UNAUTHENTICATED, "403": FORBIDDEN,
                "404": error("`not_found`: no such session among your courses."),
                "409": error("`conflict`: a pending request for this record exists, the record already says "
                             "that, or the session is cancelled, not started or too old."),
            },
        },
        "get": {
            "summary": "Correction requests, newest first: a student's own, those of a faculty member's courses, "
                       "or all (admin)",
            "tags": ["corrections"], "security": BEARER, "x-roles": _ANY,
            "parameters": [*page_params(),
                           query_str("status", "Only this status.", enum(*REQUEST_STATUSES))],
            "responses": {"200": json_response(page_of(ref("Correction")), "A page."), "400": BAD_URL,
                          "401": UNAUTHENTICATED, "403": FORBIDDEN},
        },
    },
    "/api/v1/corrections/{correction_id}": {"get": {
        "summary": "One correction request (its student, the course's faculty, admin)",
        "tags": ["corrections"], "security": BEARER, "x-roles": _ANY, "parameters": [_ID],
        "responses": {"200": json_response(ref("Correction"), "The request."), "400": BAD_URL,
                      "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": _NOT_FOUND},
    }},
    "/api/v1/corrections/{correction_id}/approve": {"post": {
        "summary": "Approve: the record gets the requested status (audited)", "tags": ["corrections"],
        "security": BEARER, "x-roles": ["faculty", "admin"], "parameters": [_ID], **_DECISION,
    }},
    "/api/v1/corrections/{correction_id}/reject": {"post": {
        "summary": "Reject a pending request", "tags": ["corrections"],
        "security": BEARER, "x-roles": ["faculty", "admin"], "parameters": [_ID], **_DECISION,
    }},
    "/api/v1/corrections/{correction_id}/withdraw": {"post": {
        "summary": "Withdraw your own pending request", "tags": ["corrections"], "security": BEARER,
        "x-roles": ["student"], "parameters": [_ID],
        "requestBody": json_request(EmptyBody, "An empty JSON object."),
        "responses": {
            "200": json_response(ref("Correction"), "Withdrawn."), **BODY_ERRORS, "401": UNAUTHENTICATED,
            "403": FORBIDDEN, "404": _NOT_FOUND, "409": error("`conflict`: no longer pending."),
        },
    }},
}
