"""Class sessions API: list, create, open, close, cancel, reschedule, tag topics; faculty's "today".

Faculty manage the sessions of courses they coordinate or are assigned to;
admins any session; students none of this. Each change is committed by
``hub.db.class_sessions`` (with a ``session_events`` entry), then the
scheduler is told (``WebContext.sessions_changed``) so it re-arms the
session's exact open/close timers; closing one makes it ask the session
actor to mark the absentees.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Any

from quart import Blueprint, Response, jsonify

from hub.db import class_sessions as db_sessions
from hub.db.academic import may_manage_course
from hub.domain.timetable import zone

from ..apidoc import (
    BAD_BODY,
    BAD_URL,
    BEARER,
    CONFLICT,
    DATE,
    FORBIDDEN,
    INT,
    NOT_JSON,
    STR,
    TIME,
    TOO_LARGE,
    UNAUTHENTICATED,
    array,
    enum,
    json_request,
    json_response,
    not_found,
    nullable,
    obj,
    page_of,
    page_params,
    path_param,
    query_str,
    ref,
)
from ..auth import Principal, current_principal, require
from ..context import current_context
from ..errors import forbidden, invalid
from . import _academic_fields as f
from .api import DEFAULT_PAGE, MAX_PAGE, _int_arg, _json_body

bp = Blueprint("sessions_api", __name__, url_prefix="/api/v1")

STATUSES = ("scheduled", "open", "closed", "cancelled")
MAX_SESSION = timedelta(hours=12)


def _now() -> datetime:
    return datetime.fromtimestamp(current_context().now(), timezone.utc)


async def _authorize_course(principal: Principal, course_id: str) -> None:
    if principal.role == "faculty" and not await may_manage_course(current_context().db, principal.user_id, course_id):
        raise forbidden("You do not teach this course.")


async def _authorize(session_id: str) -> Principal:
    """404 for an unknown session, 403 unless the caller may manage it."""
    principal = current_principal()
    course_id = await db_sessions.session_course(current_context().db, session_id)
    await _authorize_course(principal, course_id)
    return principal


def _scope(principal: Principal) -> str | None:
    return principal.user_id if principal.role == "faculty" else None


def _span(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise invalid("'ends_at' must be after 'starts_at'.", field="ends_at")
    if ends_at - starts_at > MAX_SESSION:
        raise invalid("A session lasts at most 12 hours.", field="ends_at")


@bp.get("/sessions")
@require("admin", "faculty")
@f.translated
async def sessions() -> Response:
    return jsonify(await db_sessions.list_sessions(
        current_context().db, _int_arg("limit", DEFAULT_PAGE, 1, MAX_PAGE), _int_arg("offset", 0, 0, 10**9),
        start=f.arg_instant("from"), end=f.arg_instant("to"), course_id=f.arg_id("course_id"),
        section_id=f.arg_id("section_id"), status=f.arg_choice("status", STATUSES),
        faculty_id=_scope(current_principal()), term_id=f.arg_id("term_id")))


@bp.get("/faculty/today")
@require("admin", "faculty")
@f.translated
async def today() -> Response:
    """Sessions overlapping a day (default today) in the campus timezone: the caller's courses (admin: all)."""
    ctx = current_context()
    tz = zone(ctx.campus_timezone)
    day = f.arg_day("date") or _now().astimezone(tz).date()
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    page = await db_sessions.list_sessions(
        ctx.db, _int_arg("limit", 100, 1, MAX_PAGE), _int_arg("offset", 0, 0, 10**9), start=start, end=end,
        faculty_id=_scope(current_principal()))
    return jsonify({**page, "date": day, "timezone": ctx.campus_timezone})


@bp.post("/sessions")
@require("admin", "faculty")
@f.translated
async def create() -> tuple[Response, int]:
    ctx, principal = current_context(), current_principal()
    body = await _json_body()
    course_id = f.ident(body, "course_id")
    starts_at, ends_at = f.instant(body, "starts_at"), f.instant(body, "ends_at")
    _span(starts_at, ends_at)
    new = db_sessions.NewSession(
        course_id=course_id, room_id=f.ident(body, "room_id"), starts_at=starts_at, ends_at=ends_at,
        section_id=f.optional_ident(body, "section_id"),
        grace_minutes=f.integer(body, "grace_minutes", 0, 240, optional=True),
        opens_minutes_before=f.integer(body, "opens_minutes_before", 0, 240, optional=True),
        late_cutoff_minutes=f.integer(body, "late_cutoff_minutes", 0, 600, optional=True),
        topics=tuple(db_sessions.clean_topics(
            f.string_list(body, "topics", max_items=db_sessions.MAX_TOPICS) if "topics" in body else [])),
    )
    await _authorize_course(principal, course_id)
    session = await db_sessions.create_session(ctx.db, new, actor=principal.user_id, now=_now())
    await ctx.sessions_changed([session["session_id"]])
    return jsonify(session), 201


@bp.get("/sessions/<session_id>")
@require("admin", "faculty")
@f.translated
async def detail(session_id: str) -> Response:
    await _authorize(session_id)
    return jsonify(await db_sessions.session_detail(current_context().db, session_id))


async def _changed(session: dict) -> Response:
    await current_context().sessions_changed([session["session_id"]])
    return jsonify(session)


@bp.post("/sessions/<session_id>/open")
@require("admin", "faculty")
@f.translated
async def open_(session_id: str) -> Response:
    principal = await _authorize(session_id)
    return await _changed(await db_sessions.open_session(
        current_context().db, session_id, actor=principal.user_id, now=_now()))


@bp.post("/sessions/<session_id>/close")
@require("admin", "faculty")
@f.translated
async def close(session_id: str) -> Response:
    principal = await _authorize(session_id)
    return await _changed(await db_sessions.close_session(
        current_context().db, session_id, actor=principal.user_id, now=_now()))


@bp.post("/sessions/<session_id>/cancel")
@require("admin", "faculty")
@f.translated
async def cancel(session_id: str) -> Response:
    principal = await _authorize(session_id)
    body = await _json_body()
    reason = f.text(body, "reason", max_length=500)
    return await _changed(await db_sessions.cancel_session(
        current_context().db, session_id, reason, actor=principal.user_id, now=_now()))


@bp.post("/sessions/<session_id>/reschedule")
@require("admin", "faculty")
@f.translated
async def reschedule(session_id: str) -> Response:
    principal = await _authorize(session_id)
    body = await _json_body()
    starts_at, ends_at = f.instant(body, "starts_at"), f.instant(body, "ends_at")
    _span(starts_at, ends_at)
    return await _changed(await db_sessions.reschedule_session(
        current_context().db, session_id, starts_at, ends_at, f.optional_ident(body, "room_id"),
        actor=principal.user_id, now=_now()))


@bp.put("/sessions/<session_id>/topics")
@require("admin", "faculty")
@f.translated
async def topics(session_id: str) -> Response:
    principal = await _authorize(session_id)
    body = await _json_body()
    values = f.string_list(body, "topics", max_items=db_sessions.MAX_TOPICS,
                           max_length=db_sessions.MAX_TOPIC_LENGTH)
    return jsonify(await db_sessions.set_topics(
        current_context().db, session_id, values, actor=principal.user_id, now=_now()))


# --- OpenAPI -------------------------------------------------------------------------

_ROLES = ["admin", "faculty"]
_ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", "maxLength": 64}
_SESSION = path_param("session_id", "Class session id.")
_NOT_FOUND = not_found("session")
_TOPICS = {"type": "array", "maxItems": 50, "items": {"type": "string", "maxLength": 200}}


def _op(summary: str, ok: dict, *, params: list | None = None, body: dict | None = None,
        errors: dict | None = None) -> dict:
    responses = {**ok, "401": UNAUTHENTICATED, "403": FORBIDDEN}
    if params:
        responses["400"] = BAD_URL
    if body is not None:
        responses.update({"400": BAD_BODY, "413": TOO_LARGE, "415": NOT_JSON})
    responses.update(errors or {})
    op: dict[str, Any] = {"summary": summary, "tags": ["sessions"], "security": BEARER, "x-roles": _ROLES,
                          "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = json_request(body, "JSON object; unknown fields are ignored.")
    return op


def _action(summary: str, body: dict | None = None) -> dict:
    return {"post": _op(summary, {"200": json_response(ref("ClassSession"), "The session now.")},
                        params=[_SESSION], body=body,
                        errors={"404": _NOT_FOUND, "409": CONFLICT})}


_SESSION_FIELDS = {
    "session_id": STR, "course_id": STR, "course_code": STR, "course_title": STR, "section_id": nullable(STR),
    "section_name": nullable(STR), "room_id": STR, "room_name": STR, "starts_at": TIME, "ends_at": TIME,
    "opens_at": TIME, "grace_minutes": INT, "opens_minutes_before": INT, "late_cutoff_minutes": INT,
    "status": enum(*STATUSES), "origin": enum("timetable", "manual"), "slot_id": nullable(STR),
    "topics": array(STR), "cancel_reason": nullable(STR), "rescheduled_from": nullable(TIME),
    "opened_at": nullable(TIME), "opened_by": nullable(STR), "closed_at": nullable(TIME),
    "closed_by": nullable(STR), "finalized_at": nullable(TIME), "enrolled": INT, "checked_in": INT,
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "ClassSession": obj(_SESSION_FIELDS),
    "ClassSessionDetail": obj({**_SESSION_FIELDS, "history": array(obj({
        "at": TIME, "actor": STR, "action": STR, "details": {"type": "object"}}))}),
    "FacultyToday": obj({"items": array(ref("ClassSession")), "total": INT, "limit": INT, "offset": INT,
                         "date": DATE, "timezone": STR}),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/sessions": {
        "get": _op("Class sessions overlapping [from, to), oldest first (faculty: their courses)",
                   {"200": json_response(page_of(ref("ClassSession")), "One page.")},
                   params=[*page_params(MAX_PAGE, DEFAULT_PAGE),
                           query_str("from", "Ends after this instant.", {"type": "string", "format": "date-time"}),
                           query_str("to", "Starts before this instant.", {"type": "string", "format": "date-time"}),
                           query_str("course_id", "Only this course."), query_str("section_id", "Only this section."),
                           query_str("status", "Only this status.", enum(*STATUSES)),
                           query_str("term_id", "Only sessions of this term's sections.")]),
        "post": _op("Create a (manual) session; rule fields default to the course's rules",
                    {"201": json_response(ref("ClassSession"), "Created.")},
                    body=obj({"course_id": _ID, "room_id": _ID, "section_id": nullable(_ID),
                              "starts_at": {"type": "string", "format": "date-time"},
                              "ends_at": {"type": "string", "format": "date-time"},
                              "grace_minutes": {"type": "integer", "minimum": 0, "maximum": 240},
                              "opens_minutes_before": {"type": "integer", "minimum": 0, "maximum": 240},
                              "late_cutoff_minutes": {"type": "integer", "minimum": 0, "maximum": 600},
                              "topics": _TOPICS},
                             required=["course_id", "room_id", "starts_at", "ends_at"], closed=False),
                    errors={"404": not_found("course or room"), "409": CONFLICT}),
    },
    "/api/v1/faculty/today": {
        "get": _op("Today's sessions (a day in the campus timezone) of the caller's courses; admin: all",
                   {"200": json_response(ref("FacultyToday"), "The day's sessions.")},
                   params=[*page_params(MAX_PAGE, 100),
                           query_str("date", "The day, YYYY-MM-DD (default: today).", DATE)]),
    },
    "/api/v1/sessions/{session_id}": {
        "get": _op("A session with its history of faculty actions",
                   {"200": json_response(ref("ClassSessionDetail"), "The session.")},
                   params=[_SESSION], errors={"404": _NOT_FOUND}),
    },
    "/api/v1/sessions/{session_id}/open": _action(
        "Open check-in now (early: the check-in window is widened to start now)"),
    "/api/v1/sessions/{session_id}/close": _action(
        "Close now (early: the session ends now); absentees are then marked by the session actor"),
    "/api/v1/sessions/{session_id}/cancel": _action(
        "Cancel a session that has not closed (records are kept)",
        obj({"reason": {"type": "string", "minLength": 1, "maxLength": 500}}, required=["reason"], closed=False)),
    "/api/v1/sessions/{session_id}/reschedule": _action(
        "Move a scheduled session without records (same id; rescheduled_from keeps the first start)",
        obj({"starts_at": {"type": "string", "format": "date-time"},
             "ends_at": {"type": "string", "format": "date-time"}, "room_id": _ID},
            required=["starts_at", "ends_at"], closed=False)),
    "/api/v1/sessions/{session_id}/topics": {
        "put": _op("Replace the topics the session covered",
                   {"200": json_response(ref("ClassSession"), "The session now.")}, params=[_SESSION],
                   body=obj({"topics": _TOPICS}, required=["topics"], closed=False),
                   errors={"404": _NOT_FOUND, "409": CONFLICT}),
    },
}
