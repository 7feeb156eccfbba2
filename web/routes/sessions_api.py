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
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify

from hub.db import class_sessions as db_sessions
from hub.db.academic import may_manage_course
from hub.domain.timetable import zone

from ..apidoc import (
    BAD_URL,
    BEARER,
    BODY_ERRORS,
    CONFLICT,
    DATE,
    FORBIDDEN,
    INT,
    STR,
    TIME,
    UNAUTHENTICATED,
    array,
    enum,
    json_request,
    json_response,
    not_found,
    nullable,
    obj,
    path_param,
    query_str,
    ref,
)
from ..auth import Principal, current_principal, require
from ..context import current_context
from ..errors import forbidden, invalid
from ..paging import page_json, page_of, page_params, page_request
from ..request import MAX_TEXT, Id, Instant, choice_arg, day_arg, instant_arg, json_body, text_arg
from ..serialize import record_json

bp = Blueprint("sessions_api", __name__, url_prefix="/api/v1")

STATUSES = ("scheduled", "open", "closed", "cancelled")
MAX_SESSION = timedelta(hours=12)
#: The day view's page size: a whole day's sessions, so the page rarely needs a second request.
TODAY_PAGE = 100


Minutes = Annotated[int, Meta(ge=0, le=240)]
Topics = Annotated[list[Annotated[str, Meta(max_length=db_sessions.MAX_TOPIC_LENGTH)]],
                   Meta(max_length=db_sessions.MAX_TOPICS)]


class SessionCreate(msgspec.Struct):
    """A manual session; the rule fields default to the course's rules."""

    course_id: Id
    room_id: Id
    starts_at: Instant
    ends_at: Instant
    section_id: Id | None = None
    grace_minutes: Minutes | None = None
    opens_minutes_before: Minutes | None = None
    late_cutoff_minutes: Annotated[int, Meta(ge=0, le=600)] | None = None
    topics: Annotated[list[Annotated[str, Meta(max_length=MAX_TEXT)]], Meta(max_length=db_sessions.MAX_TOPICS)] = []


class SessionCancel(msgspec.Struct):
    reason: Annotated[str, Meta(min_length=1, max_length=500, pattern=r"\S")]


class SessionReschedule(msgspec.Struct):
    starts_at: Instant
    ends_at: Instant
    room_id: Id | None = None


class SessionTopics(msgspec.Struct):
    topics: Topics


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


def session_detail_json(detail: db_sessions.SessionDetail) -> dict[str, Any]:
    """A session with its latest actions (the ``ClassSessionDetail`` schema); a session alone is its record."""
    return {**record_json(detail.session), "history": [record_json(e) for e in detail.history]}


def _scope(principal: Principal) -> str | None:
    return principal.user_id if principal.role == "faculty" else None


def _span(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise invalid("'ends_at' must be after 'starts_at'.", field="ends_at")
    if ends_at - starts_at > MAX_SESSION:
        raise invalid("A session lasts at most 12 hours.", field="ends_at")


@bp.get("/sessions")
@require("admin", "faculty")
async def sessions() -> Response:
    paging = page_request()
    items, total = await db_sessions.list_sessions(
        current_context().db, paging.limit, paging.offset,
        start=instant_arg("from"), end=instant_arg("to"), course_id=text_arg("course_id"),
        section_id=text_arg("section_id"), status=choice_arg("status", STATUSES),
        faculty_id=_scope(current_principal()), term_id=text_arg("term_id"))
    return jsonify(page_json(map(record_json, items), total, paging))


@bp.get("/faculty/today")
@require("admin", "faculty")
async def today() -> Response:
    """Sessions overlapping a day (default today) in the campus timezone: the caller's courses (admin: all)."""
    ctx = current_context()
    tz = zone(ctx.campus_timezone)
    day = day_arg("date") or _now().astimezone(tz).date()
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    paging = page_request(TODAY_PAGE)
    items, total = await db_sessions.list_sessions(
        ctx.db, paging.limit, paging.offset, start=start, end=end, faculty_id=_scope(current_principal()))
    return jsonify(page_json(map(record_json, items), total, paging, date=day, timezone=ctx.campus_timezone))


@bp.post("/sessions")
@require("admin", "faculty")
async def create() -> tuple[Response, int]:
    ctx, principal = current_context(), current_principal()
    body = await json_body(SessionCreate)
    _span(body.starts_at, body.ends_at)
    new = db_sessions.NewSession(
        course_id=body.course_id, room_id=body.room_id, starts_at=body.starts_at, ends_at=body.ends_at,
        section_id=body.section_id, grace_minutes=body.grace_minutes,
        opens_minutes_before=body.opens_minutes_before, late_cutoff_minutes=body.late_cutoff_minutes,
        topics=tuple(db_sessions.clean_topics(body.topics)),
    )
    await _authorize_course(principal, body.course_id)
    session = await db_sessions.create_session(ctx.db, new, actor=principal.user_id, now=_now())
    await ctx.sessions_changed([session.session_id])
    return jsonify(record_json(session)), 201


@bp.get("/sessions/<session_id>")
@require("admin", "faculty")
async def detail(session_id: str) -> Response:
    await _authorize(session_id)
    return jsonify(session_detail_json(await db_sessions.session_detail(current_context().db, session_id)))


async def _changed(session: db_sessions.ClassSession) -> Response:
    await current_context().sessions_changed([session.session_id])
    return jsonify(record_json(session))


@bp.post("/sessions/<session_id>/open")
@require("admin", "faculty")
async def open_(session_id: str) -> Response:
    principal = await _authorize(session_id)
    return await _changed(await db_sessions.open_session(
        current_context().db, session_id, actor=principal.user_id, now=_now()))


@bp.post("/sessions/<session_id>/close")
@require("admin", "faculty")
async def close(session_id: str) -> Response:
    principal = await _authorize(session_id)
    return await _changed(await db_sessions.close_session(
        current_context().db, session_id, actor=principal.user_id, now=_now()))


@bp.post("/sessions/<session_id>/cancel")
@require("admin", "faculty")
async def cancel(session_id: str) -> Response:
    principal = await _authorize(session_id)
    reason = (await json_body(SessionCancel)).reason.strip()
    return await _changed(await db_sessions.cancel_session(
        current_context().db, session_id, reason, actor=principal.user_id, now=_now()))


@bp.post("/sessions/<session_id>/reschedule")
@require("admin", "faculty")
async def reschedule(session_id: str) -> Response:
    principal = await _authorize(session_id)
    body = await json_body(SessionReschedule)
    _span(body.starts_at, body.ends_at)
    return await _changed(await db_sessions.reschedule_session(
        current_context().db, session_id, body.starts_at, body.ends_at, body.room_id,
        actor=principal.user_id, now=_now()))


@bp.put("/sessions/<session_id>/topics")
@require("admin", "faculty")
async def topics(session_id: str) -> Response:
    principal = await _authorize(session_id)
    values = (await json_body(SessionTopics)).topics
    return jsonify(record_json(await db_sessions.set_topics(
        current_context().db, session_id, values, actor=principal.user_id, now=_now())))


# --- OpenAPI -------------------------------------------------------------------------

_ROLES = ["admin", "faculty"]
_SESSION = path_param("session_id", "Class session id.")
_NOT_FOUND = not_found("session")


def _op(summary: str, ok: dict, *, params: list | None = None, body: type[msgspec.Struct] | None = None,
        errors: dict | None = None) -> dict:
    responses = {**ok, "401": UNAUTHENTICATED, "403": FORBIDDEN}
    if params:
        responses["400"] = BAD_URL
    if body is not None:
        responses.update(BODY_ERRORS)
    responses.update(errors or {})
    op: dict[str, Any] = {"summary": summary, "tags": ["sessions"], "security": BEARER, "x-roles": _ROLES,
                          "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = json_request(body, "A JSON object.")
    return op


def _action(summary: str, body: type[msgspec.Struct] | None = None) -> dict:
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
    "FacultyToday": page_of(ref("ClassSession"), date=DATE, timezone=STR),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/sessions": {
        "get": _op("Class sessions overlapping [from, to), oldest first (faculty: their courses)",
                   {"200": json_response(page_of(ref("ClassSession")), "One page.")},
                   params=[*page_params(),
                           query_str("from", "Ends after this instant.", {"type": "string", "format": "date-time"}),
                           query_str("to", "Starts before this instant.", {"type": "string", "format": "date-time"}),
                           query_str("course_id", "Only this course."), query_str("section_id", "Only this section."),
                           query_str("status", "Only this status.", enum(*STATUSES)),
                           query_str("term_id", "Only sessions of this term's sections.")]),
        "post": _op("Create a (manual) session; rule fields default to the course's rules",
                    {"201": json_response(ref("ClassSession"), "Created.")},
                    body=SessionCreate,
                    errors={"404": not_found("course or room"), "409": CONFLICT}),
    },
    "/api/v1/faculty/today": {
        "get": _op("Today's sessions (a day in the campus timezone) of the caller's courses; admin: all",
                   {"200": json_response(ref("FacultyToday"), "The day's sessions.")},
                   params=[*page_params(TODAY_PAGE),
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
        SessionCancel),
    "/api/v1/sessions/{session_id}/reschedule": _action(
        "Move a scheduled session without records (same id; rescheduled_from keeps the first start)",
        SessionReschedule),
    "/api/v1/sessions/{session_id}/topics": {
        "put": _op("Replace the topics the session covered",
                   {"200": json_response(ref("ClassSession"), "The session now.")}, params=[_SESSION],
                   body=SessionTopics,
                   errors={"404": _NOT_FOUND, "409": CONFLICT}),
    },
}
