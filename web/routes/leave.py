"""Leave: the JSON API (``/api/v1/leave``) and the student's leave page.

Who may do what (docs/records.md): a student applies, sees and cancels only
their own; a faculty member sees, decides, cancels and reads the document of
the leaves they may decide (:func:`hub.db.leave.may_decide`); an admin all.
After a decision commits, live session actors reload the changed records and
the notifications are pushed (web/routes/_records.py).
"""
from __future__ import annotations

import base64
import binascii
from datetime import date
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify

from hub.db import leave as store
from hub.domain.leave import (
    DOCUMENT_TYPES,
    LEAVE_STATUSES,
    MAX_DOCUMENT_BYTES,
    MAX_LEAVE_DAYS,
    MAX_NOTE_CHARS,
    MAX_REASON_CHARS,
    LeaveRuleError,
    validate_document,
)

from ..apidoc import (
    BAD_URL,
    BEARER,
    BODY_ERRORS,
    DATE,
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
from ..errors import WebError, forbidden, invalid, not_found
from ..paging import page_json, page_of, page_params, page_request
from ..request import EmptyBody, choice_arg, json_body
from ..serialize import record_json
from ..uploads import LARGE_BODIES, attachment_disposition
from ._pages import render_page
from ._records import ID_SCHEMA, MAX_ID, after_commit, campus_today, now_utc

bp = Blueprint("leave", __name__)


def _rule_error(error: LeaveRuleError) -> WebError:
    status = {"conflict": 409, "document_too_large": 413, "document_quota_exceeded": 413,
              "unsupported_document": 415}.get(error.code, 400)
    return WebError(status, error.code, error.message, error.field)


def leave_json(leave: store.Leave) -> dict[str, Any]:
    """A leave application as the API shows it (the ``Leave`` schema): its document with the URL it is served at."""
    shown = record_json(leave)
    if leave.document is not None:
        shown["document"] = {**record_json(leave.document), "url": f"/api/v1/leave/{leave.id}/document"}
    return shown


async def _visible(principal: Principal, leave_id: int) -> store.Leave:
    """The leave if the principal may see it: 404 when there is none, 403 when it is not theirs."""
    ctx = current_context()
    if leave_id > MAX_ID:
        raise not_found("No such leave application.")
    try:
        leave = await store.get_leave(ctx.db, leave_id)
    except store.LeaveNotFound:
        raise not_found("No such leave application.") from None
    if principal.role == "student":
        if leave.student_id != principal.user_id:
            raise forbidden("This is not your leave application.")
    elif not await store.may_decide(ctx.db, principal.user_id, principal.role, leave_id):
        raise forbidden("You do not teach this student in the days of this leave.")
    return leave


class LeaveDocument(msgspec.Struct):
    """A leave's supporting document, inline. Its type is sniffed from the bytes (``validate_document``)."""

    data_base64: Annotated[str, Meta(min_length=1, description=f"The file, at most {MAX_DOCUMENT_BYTES} bytes.",
                                     extra_json_schema={"contentEncoding": "base64"})]
    filename: str = ""
    content_type: Annotated[str | None, Meta(description=f"One of {', '.join(DOCUMENT_TYPES)}.")] = None


class LeaveApplication(msgspec.Struct):
    starts_on: date
    ends_on: date
    reason: Annotated[str, Meta(min_length=1, max_length=MAX_REASON_CHARS)]
    document: LeaveDocument | None = None


class LeaveDecision(msgspec.Struct):
    note: Annotated[str, Meta(max_length=MAX_NOTE_CHARS, description="Optional, shown to the student.")] | None = None


def _document(given: LeaveDocument | None) -> store.NewDocument | None:
    if given is None:
        return None
    try:
        data = base64.b64decode(given.data_base64, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("'document.data_base64' is not valid base64.", field="document") from None
    try:
        content_type, clean = validate_document(data, given.content_type, given.filename)
    except LeaveRuleError as refused:
        raise _rule_error(refused) from None
    return store.NewDocument(clean, content_type, data)


# --- API ---------------------------------------------------------------------------------------

@bp.post("/api/v1/leave")
@require("student")
async def apply() -> tuple[Response, int]:
    ctx, principal = current_context(), current_principal()
    body = await json_body(LeaveApplication)
    document = _document(body.document)
    try:
        outcome = await store.apply_for_leave(
            ctx.db, student_id=principal.user_id, starts_on=body.starts_on, ends_on=body.ends_on,
            reason=body.reason, document=document, today=campus_today(ctx))
    except LeaveRuleError as refused:
        raise _rule_error(refused) from None
    await after_commit(ctx, {}, outcome.notifications)
    return jsonify(leave_json(outcome.leave)), 201


@bp.get("/api/v1/leave")
@require("student", "faculty", "admin")
async def list_leave() -> Response:
    ctx, principal = current_context(), current_principal()
    paging = page_request()
    status = choice_arg("status", LEAVE_STATUSES)
    if principal.role == "student":
        items, total = await store.list_leaves(ctx.db, limit=paging.limit, offset=paging.offset,
                                               student_id=principal.user_id, status=status)
    elif principal.role == "faculty":
        items, total = await store.list_leaves(ctx.db, limit=paging.limit, offset=paging.offset,
                                               decider_id=principal.user_id, status=status)
    else:
        items, total = await store.list_leaves(ctx.db, limit=paging.limit, offset=paging.offset, status=status)
    return jsonify(page_json(map(leave_json, items), total, paging))


@bp.get("/api/v1/leave/<int:leave_id>")
@require("student", "faculty", "admin")
async def get_leave(leave_id: int) -> Response:
    return jsonify(leave_json(await _visible(current_principal(), leave_id)))


async def _decide(leave_id: int, approve: bool) -> Response:
    ctx, principal = current_context(), current_principal()
    note = (await json_body(LeaveDecision)).note or ""
    await _visible(principal, leave_id)
    try:
        outcome = await store.decide_leave(ctx.db, leave_id, approve=approve, decided_by=principal.user_id,
                                           note=note, now=now_utc(ctx))
    except LeaveRuleError as refused:
        raise _rule_error(refused) from None
    await after_commit(ctx, outcome.affected, outcome.notifications)
    return jsonify(leave_json(outcome.leave))


@bp.post("/api/v1/leave/<int:leave_id>/approve")
@require("faculty", "admin")
async def approve(leave_id: int) -> Response:
    return await _decide(leave_id, True)


@bp.post("/api/v1/leave/<int:leave_id>/reject")
@require("faculty", "admin")
async def reject(leave_id: int) -> Response:
    return await _decide(leave_id, False)


@bp.post("/api/v1/leave/<int:leave_id>/cancel")
@require("student", "faculty", "admin")
async def cancel(leave_id: int) -> Response:
    ctx, principal = current_context(), current_principal()
    await json_body(EmptyBody)
    await _visible(principal, leave_id)
    try:
        outcome = await store.cancel_leave(ctx.db, leave_id, cancelled_by=principal.user_id, now=now_utc(ctx))
    except LeaveRuleError as refused:
        raise _rule_error(refused) from None
    await after_commit(ctx, outcome.affected, outcome.notifications)
    return jsonify(leave_json(outcome.leave))


@bp.get("/api/v1/leave/<int:leave_id>/document")
@require("student", "faculty", "admin")
async def document(leave_id: int) -> Response:
    await _visible(current_principal(), leave_id)
    found = await store.get_document(current_context().db, leave_id)
    if found is None:
        raise not_found("This application has no document.")
    # Served as an attachment with its sniffed type and nosniff: never rendered as our own page.
    return Response(found.data, content_type=found.content_type, headers={
        "Content-Disposition": attachment_disposition(found.filename),
        "Content-Security-Policy": "default-src 'none'; sandbox",
    })


# --- page --------------------------------------------------------------------------------------

@bp.get("/student/leave")
@require("student")
async def student_page() -> str:
    return await render_page("student_leave.html", max_days=MAX_LEAVE_DAYS,
                             max_mb=MAX_DOCUMENT_BYTES // (1024 * 1024), today=campus_today(current_context()))


# --- OpenAPI ------------------------------------------------------------------------------------

_LEAVE_ID = path_param("leave_id", "Leave application id.", ID_SCHEMA)
_ANY = ["student", "faculty", "admin"]
_NOT_FOUND = doc_not_found("leave application")
_UPLOAD_LIMIT = LARGE_BODIES[("POST", "/api/v1/leave")]

OPENAPI_SCHEMAS: dict = {
    "Leave": obj({
        "id": INT, "student_id": STR, "student_name": STR, "roll_number": STR, "starts_on": DATE, "ends_on": DATE,
        "reason": STR, "status": enum(*LEAVE_STATUSES), "applied_at": TIME, "decided_by": nullable(STR),
        "decided_by_name": nullable(STR), "decided_at": nullable(TIME), "decision_note": STR,
        "cancelled_by": nullable(STR), "cancelled_at": nullable(TIME), "updated_at": TIME,
        "document": nullable(obj({"filename": STR, "content_type": enum(*DOCUMENT_TYPES), "size_bytes": INT,
                                  "url": STR})),
        "excused_sessions": {**INT, "description": "Records this leave currently holds excused."},
    }),
}

_DECISION = {
    "requestBody": json_request(LeaveDecision, "An optional note for the student."),
    "responses": {
        "200": json_response(ref("Leave"), "The leave after the decision."), **BODY_ERRORS,
        "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": _NOT_FOUND,
        "409": error("`conflict`: the leave is not `applied` (already decided or cancelled)."),
    },
}

OPENAPI_PATHS: dict = {
    "/api/v1/leave": {
        "post": {
            "summary": "Apply for leave (a student, for themself), with an optional PDF/JPEG/PNG document",
            "tags": ["leave"], "security": BEARER, "x-roles": ["student"],
            "requestBody": json_request(
                LeaveApplication, f"The leave. This route accepts bodies up to {_UPLOAD_LIMIT} bytes."),
            "responses": {
                "201": json_response(ref("Leave"), "Filed (status `applied`)."),
                "400": BODY_ERRORS["400"], "401": UNAUTHENTICATED, "403": FORBIDDEN,
                "409": error("`conflict`: it overlaps another applied or approved leave of yours."),
                "413": error("`request_entity_too_large` (body), `document_too_large` (the document) or "
                             "`document_quota_exceeded` (the student's documents, cancelled ones included until "
                             "they are deleted 7 days after the cancellation, would exceed 25 MB; the message "
                             "gives the limit and the space used)."),
                "415": error("`unsupported_media_type` (not JSON) or `unsupported_document` (not a PDF, JPEG "
                             "or PNG by its bytes, or not the type declared)."),
            },
        },
        "get": {
            "summary": "Leave applications, newest first: a student's own, those a faculty member may decide, "
                       "or all (admin)",
            "tags": ["leave"], "security": BEARER, "x-roles": _ANY,
            "parameters": [*page_params(),
                           query_str("status", "Only this status.", enum(*LEAVE_STATUSES))],
            "responses": {"200": json_response(page_of(ref("Leave")), "A page."), "400": BAD_URL,
                          "401": UNAUTHENTICATED, "403": FORBIDDEN},
        },
    },
    "/api/v1/leave/{leave_id}": {"get": {
        "summary": "One leave application (its student, a faculty member who may decide it, admin)",
        "tags": ["leave"], "security": BEARER, "x-roles": _ANY, "parameters": [_LEAVE_ID],
        "responses": {"200": json_response(ref("Leave"), "The leave."), "400": BAD_URL,
                      "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": _NOT_FOUND},
    }},
    "/api/v1/leave/{leave_id}/approve": {"post": {
        "summary": "Approve an applied leave: the absences it covers become excused, past and future",
        "tags": ["leave"], "security": BEARER, "x-roles": ["faculty", "admin"], "parameters": [_LEAVE_ID],
        **_DECISION,
    }},
    "/api/v1/leave/{leave_id}/reject": {"post": {
        "summary": "Reject an applied leave", "tags": ["leave"], "security": BEARER,
        "x-roles": ["faculty", "admin"], "parameters": [_LEAVE_ID], **_DECISION,
    }},
    "/api/v1/leave/{leave_id}/cancel": {"post": {
        "summary": "Cancel an applied or approved leave (its student, a faculty member who may decide it, admin); "
                   "an approved one's excused records get back what they held before",
        "tags": ["leave"], "security": BEARER, "x-roles": _ANY, "parameters": [_LEAVE_ID],
        "requestBody": json_request(EmptyBody, "An empty JSON object."),
        "responses": {
            "200": json_response(ref("Leave"), "The cancelled leave."), **BODY_ERRORS,
            "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": _NOT_FOUND,
            "409": error("`conflict`: already rejected or cancelled."),
        },
    }},
    "/api/v1/leave/{leave_id}/document": {"get": {
        "summary": "Download a leave's document (its student, a faculty member who may decide it, admin)",
        "tags": ["leave"], "security": BEARER, "x-roles": _ANY, "parameters": [_LEAVE_ID],
        "responses": {
            "200": {"description": "The file, as an attachment.",
                    "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in DOCUMENT_TYPES}},
            "400": BAD_URL, "401": UNAUTHENTICATED, "403": FORBIDDEN,
            "404": error("`not_found`: no such leave application, or it has no document."),
        },
    }},
}
