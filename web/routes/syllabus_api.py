"""Syllabus and topic progress API (issue 16 §1), under ``/api/v1``.

- The syllabus of a course: read (its faculty, admins, its students), edit
  (admins and the course's faculty: add, change, reorder, delete, set
  prerequisites) and import from CSV (``?dry_run=1`` previews, then apply).
- What a session covered and how well each student understood it: through
  the session's live actor when it runs, else straight to PostgreSQL, one
  use case either way (hub/db/syllabus.py, like faculty marks); other open
  rosters see it live (``LiveTopics``, ``LiveUnderstanding``).
- A student's progress (only their own; faculty: their courses' students,
  limited to those courses; admins anyone) and a course's coverage and pace
  against the plan.

Refusals of the rules (:class:`hub.domain.syllabus.SyllabusProblem`) answer
400 ``invalid_request`` with ``field``; an import answers 422
``import_rejected`` listing every bad line.
"""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType
from quart import Blueprint, Response, jsonify, request

from hub.db import syllabus as db_syllabus
from hub.db.academic import may_manage_course
from hub.db.class_sessions import session_course
from hub.db.insights import course_info
from hub.domain.session_messages import Receipt, SessionNotLive
from hub.domain.syllabus import (
    MAX_EST_MINUTES,
    MAX_TITLE,
    MAX_TOPICS,
    MAX_UNIT,
    STATUSES,
    RecordUnderstanding,
    SyllabusProblem,
    TagTopics,
    parse_syllabus_csv,
)

from ..access import attendance_scope, authorize_session
from ..apidoc import (
    BAD_URL,
    BOOL,
    INT,
    NUMBER,
    STR,
    TIME,
    array,
    enum,
    error,
    json_request,
    json_response,
    not_found,
    nullable,
    obj,
    operation,
    path_param,
    query_str,
    ref,
)
from ..auth import Principal, current_principal, require
from ..checkin_flow import settled
from ..context import WebContext, current_context
from ..errors import WebError, forbidden, invalid
from ..request import Id, flag_arg, json_body, present_fields, text_arg

bp = Blueprint("syllabus_api", __name__, url_prefix="/api/v1")

_BIGINT = 2**63 - 1
Title = Annotated[str, Meta(min_length=1, max_length=MAX_TITLE)]
Unit = Annotated[str, Meta(max_length=MAX_UNIT)]
Minutes = Annotated[int, Meta(ge=1, le=MAX_EST_MINUTES)]
TopicId = Annotated[int, Meta(ge=1, le=_BIGINT)]
TopicIds = Annotated[list[TopicId], Meta(max_length=MAX_TOPICS)]
Level = Annotated[int, Meta(ge=1, le=5)]
#: Levels per request: a whole lecture hall.
MAX_LEVELS = 1000


class TopicBody(msgspec.Struct):
    """A new topic; ``position`` (1-based) puts it there, moving later ones down (default: last)."""

    title: Title
    est_minutes: Minutes
    unit: Unit | None = None
    prerequisites: TopicIds = []
    position: Annotated[int, Meta(ge=1, le=MAX_TOPICS)] | None = None


class TopicPatch(msgspec.Struct):
    """Some of a topic's fields; ``prerequisites`` replaces the whole list; ``unit`` ``null`` clears it."""

    title: Title | UnsetType = UNSET
    est_minutes: Minutes | UnsetType = UNSET
    unit: Unit | None | UnsetType = UNSET
    prerequisites: TopicIds | UnsetType = UNSET


class TopicOrder(msgspec.Struct):
    """Every topic id of the syllabus, in the new order."""

    order: Annotated[list[TopicId], Meta(min_length=1, max_length=MAX_TOPICS)]


class SyllabusCsv(msgspec.Struct):
    """The syllabus import as JSON: the CSV file's text."""

    csv: str


class SessionTopicsBody(msgspec.Struct):
    """The syllabus topics the session covered (the whole set; empty clears it)."""

    topic_ids: TopicIds


class LevelBody(msgspec.Struct):
    student_id: Id
    level: Level


class UnderstandingBody(msgspec.Struct):
    """Understanding levels 1-5, of one topic the session covered or (``topic_id`` null) of the session."""

    levels: Annotated[list[LevelBody], Meta(min_length=1, max_length=MAX_LEVELS)]
    topic_id: TopicId | None = None


# --- who may do what --------------------------------------------------------------------------------

async def _may_edit(ctx: WebContext, principal: Principal, course_id: str) -> None:
    if await course_info(ctx.db, course_id) is None:
        raise WebError(404, "not_found", "No such course.")
    if principal.role == "admin":
        return
    if principal.role != "faculty" or not await may_manage_course(ctx.db, principal.user_id, course_id):
        raise forbidden("You do not teach this course.")


async def _may_read(ctx: WebContext, principal: Principal, course_id: str) -> None:
    if principal.role == "student":
        if await course_info(ctx.db, course_id) is None or not await ctx.db.fetchval(
                "SELECT EXISTS (SELECT 1 FROM enrolments WHERE course_id = $1 AND student_id = $2)",
                course_id, principal.user_id):
            raise forbidden("You are not enrolled in this course.")
        return
    await _may_edit(ctx, principal, course_id)


async def _topic_for_edit(ctx: WebContext, principal: Principal, topic_id: int) -> str:
    if topic_id > _BIGINT:
        raise WebError(404, "not_found", "No such topic.")
    course_id = await db_syllabus.topic_course(ctx.db, topic_id)
    await _may_edit(ctx, principal, course_id)
    return course_id


def _refused(problem: SyllabusProblem) -> WebError:
    return invalid(problem.message, field=problem.field)


# --- JSON --------------------------------------------------------------------------------------------

def topic_json(topic: db_syllabus.Topic) -> dict[str, Any]:
    return {"id": topic.topic_id, "course_id": topic.course_id, "position": topic.position, "title": topic.title,
            "unit": topic.unit, "est_minutes": topic.est_minutes, "prerequisites": list(topic.prerequisites),
            "updated_at": topic.updated_at.isoformat()}


def syllabus_json(course_id: str, topics: list[db_syllabus.Topic] | tuple[db_syllabus.Topic, ...]) -> dict:
    return {"course_id": course_id, "topics": [topic_json(t) for t in topics],
            "total_minutes": sum(t.est_minutes for t in topics)}


def tagging_json(tagging: db_syllabus.SessionTagging) -> dict[str, Any]:
    return {
        "session_id": tagging.session_id, "course_id": tagging.course_id,
        "topics": [topic_json(t) for t in tagging.topics], "tagged": list(tagging.tagged),
        "covered_before": list(tagging.covered_before),
        "suggestions": [{"topic_id": s.topic_id, "why": s.why} for s in tagging.suggestions],
        "levels": [{"student_id": s, "topic_id": t, "level": level} for s, t, level in tagging.levels],
    }


def pace_json(pace: db_syllabus.StudentPace) -> dict[str, Any]:
    return asdict(pace)


def course_pace_json(pace: db_syllabus.CoursePace, topics: list[db_syllabus.Topic]) -> dict[str, Any]:
    titles = {t.topic_id: t for t in topics}
    return {
        "course_id": pace.course_id, "section_id": pace.section_id, "topics_total": pace.topics_total,
        "topics_covered": pace.topics_covered, "planned_total_minutes": pace.planned_total_minutes,
        "planned_minutes": pace.planned_minutes, "covered_minutes": pace.covered_minutes,
        "pace_ratio": pace.pace_ratio,
        "points": [{"session_id": p.session_id, "starts_at": p.starts_at.isoformat(), "held": p.held,
                    "planned_minutes": p.planned_minutes, "covered_minutes": p.covered_minutes} for p in pace.points],
        "topics": [{"topic_id": t, "title": titles[t].title if t in titles else "", "position":
                    titles[t].position if t in titles else 0, "sessions": n, "students_done": d,
                    "students_need_review": r, "students": e} for t, n, d, r, e in pace.topics],
    }


def progress_json(course: db_syllabus.CourseProgress) -> dict[str, Any]:
    return {"course_id": course.course_id, "code": course.code, "title": course.title,
            "topics": [asdict(t) for t in course.topics], "pace": pace_json(course.pace)}


# --- the syllabus ----------------------------------------------------------------------------------

@bp.get("/courses/<course_id>/syllabus")
@require("admin", "faculty", "student")
async def get_syllabus(course_id: str) -> Response:
    ctx = current_context()
    await _may_read(ctx, current_principal(), course_id)
    return jsonify(syllabus_json(course_id, await db_syllabus.list_topics(ctx.db, course_id)))


@bp.post("/courses/<course_id>/syllabus")
@require("admin", "faculty")
async def add_topic(course_id: str) -> Response:
    ctx = current_context()
    body = await json_body(TopicBody)
    await _may_edit(ctx, current_principal(), course_id)
    try:
        topic = await db_syllabus.create_topic(ctx.db, course_id, title=body.title, est_minutes=body.est_minutes,
                                               unit=body.unit, prerequisites=body.prerequisites,
                                               position=body.position)
    except SyllabusProblem as problem:
        raise _refused(problem) from None
    response = jsonify(topic_json(topic))
    response.status_code = 201
    return response


@bp.patch("/syllabus/topics/<int:topic_id>")
@require("admin", "faculty")
async def change_topic(topic_id: int) -> Response:
    ctx = current_context()
    changes = present_fields(await json_body(TopicPatch))
    await _topic_for_edit(ctx, current_principal(), topic_id)
    try:
        topic = await db_syllabus.update_topic(ctx.db, topic_id, changes)
    except SyllabusProblem as problem:
        raise _refused(problem) from None
    return jsonify(topic_json(topic))


@bp.delete("/syllabus/topics/<int:topic_id>")
@require("admin", "faculty")
async def remove_topic(topic_id: int) -> Response:
    ctx = current_context()
    await _topic_for_edit(ctx, current_principal(), topic_id)
    return jsonify(topic_json(await db_syllabus.delete_topic(ctx.db, topic_id)))


@bp.put("/courses/<course_id>/syllabus/order")
@require("admin", "faculty")
async def reorder(course_id: str) -> Response:
    ctx = current_context()
    body = await json_body(TopicOrder)
    await _may_edit(ctx, current_principal(), course_id)
    try:
        topics = await db_syllabus.reorder_topics(ctx.db, course_id, body.order)
    except SyllabusProblem as problem:
        raise _refused(problem) from None
    return jsonify(syllabus_json(course_id, topics))


async def _import_text() -> str:
    """The CSV: a ``text/csv`` body, or a JSON body ``{"csv": "..."}``."""
    if request.mimetype == "text/csv":
        raw = await request.get_data(as_text=False)
        assert isinstance(raw, bytes)  # as_text=False; quart's stub says str | bytes
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid("The file must be UTF-8 text (save it as 'CSV UTF-8').", field="csv") from None
    if request.is_json:
        return (await json_body(SyllabusCsv, storable_text=False)).csv
    raise WebError(415, "unsupported_media_type", "Send text/csv, or application/json with a 'csv' field.")


@bp.post("/courses/<course_id>/syllabus/import")
@require("admin", "faculty")
async def import_syllabus(course_id: str) -> Response:
    """All or nothing: 422 with every bad line, or what changed (``dry_run``: what would) and the syllabus."""
    ctx = current_context()
    text = await _import_text()
    dry_run = flag_arg("dry_run")
    await _may_edit(ctx, current_principal(), course_id)
    parsed = parse_syllabus_csv(text)
    errors = list(parsed.errors)
    result = None
    if not errors:
        try:
            result = await db_syllabus.import_syllabus(ctx.db, course_id, parsed.rows, dry_run=dry_run)
        except db_syllabus.SyllabusImportRejected as rejected:
            errors = rejected.errors
    if errors:
        response = jsonify({
            "error": {"code": "import_rejected", "field": "csv",
                      "message": f"{len(errors)} problem(s) in the file; nothing was imported."},
            "errors": [e.as_dict() for e in sorted(errors, key=lambda e: (e.line, e.field or ""))],
        })
        response.status_code = 422
        return response
    assert result is not None
    return jsonify({"dry_run": result.dry_run, "created": result.created, "updated": result.updated,
                    "unchanged": result.unchanged, "kept": result.kept,
                    **syllabus_json(course_id, result.topics)})


# --- a session's topics and understanding ------------------------------------------------------------

async def apply_syllabus(ctx: WebContext, session_id: str, ask: TagTopics | RecordUnderstanding) -> None:
    """Through the live session actor, else straight to PostgreSQL (hub/db/syllabus.py): one use case.
    400 (``field`` set) for a refused request, nothing applied; 503 if the commit did not land.
    Once committed, either way, the risk actor re-scores the students concerned (the whole course
    for new topic tags)."""
    try:
        receipt = await ctx.session_call(session_id, ask)
    except SessionNotLive:
        try:
            plan = await db_syllabus.record_syllabus(ctx.db, session_id, ask)
        except SyllabusProblem as problem:
            raise _refused(problem) from None
        for topic, message in plan.live:
            ctx.bus.publish(topic, message)
    else:
        assert isinstance(receipt, Receipt)  # the session actor answers these with a Receipt
        if not receipt.accepted:
            raise invalid(receipt.detail, field=receipt.field)
        await settled(receipt)
    students = [student_id for student_id, _ in ask.levels] if isinstance(ask, RecordUnderstanding) else []
    await ctx.risk_changed(await session_course(ctx.db, session_id), students)


def _now(ctx: WebContext) -> datetime:
    return datetime.fromtimestamp(ctx.now(), timezone.utc)


@bp.get("/sessions/<session_id>/syllabus-topics")
@require("admin", "faculty")
async def session_topics(session_id: str) -> Response:
    ctx = current_context()
    await authorize_session(ctx, current_principal(), session_id)
    return jsonify(tagging_json(await db_syllabus.session_tagging(ctx.db, session_id)))


@bp.put("/sessions/<session_id>/syllabus-topics")
@require("admin", "faculty")
async def tag_topics(session_id: str) -> Response:
    ctx, principal = current_context(), current_principal()
    body = await json_body(SessionTopicsBody)
    await authorize_session(ctx, principal, session_id)
    course_id = await session_course(ctx.db, session_id)
    own = {t.topic_id for t in await db_syllabus.list_topics(ctx.db, course_id)}
    for i, topic_id in enumerate(body.topic_ids):
        if topic_id not in own:
            raise invalid("This topic is not in this course's syllabus.", field=f"topic_ids[{i}]")
    await apply_syllabus(ctx, session_id, TagTopics(tuple(body.topic_ids), principal.user_id, _now(ctx)))
    return jsonify(tagging_json(await db_syllabus.session_tagging(ctx.db, session_id)))


@bp.post("/sessions/<session_id>/understanding")
@require("admin", "faculty")
async def understanding(session_id: str) -> Response:
    ctx, principal = current_context(), current_principal()
    body = await json_body(UnderstandingBody)
    await authorize_session(ctx, principal, session_id)
    if body.topic_id is not None:
        tagging = await db_syllabus.session_tagging(ctx.db, session_id)
        if body.topic_id not in tagging.tagged:
            raise invalid("Tag this topic as covered in the session first.", field="topic_id")
    levels = tuple((item.student_id, item.level) for item in body.levels)
    await apply_syllabus(ctx, session_id, RecordUnderstanding(levels, body.topic_id, principal.user_id, _now(ctx)))
    return jsonify({"session_id": session_id, "topic_id": body.topic_id, "recorded": len(levels)})


# --- progress and coverage ---------------------------------------------------------------------------

@bp.get("/students/<student_id>/progress")
@require("admin", "faculty", "student")
async def student_progress(student_id: str) -> Response:
    """A student's own progress; faculty see it only in the courses they teach."""
    ctx, principal = current_context(), current_principal()
    faculty = await attendance_scope(ctx, principal, student_id)
    courses = await db_syllabus.student_progress(ctx.db, student_id, now=_now(ctx))
    if faculty is not None:
        courses = [c for c in courses if await may_manage_course(ctx.db, faculty, c.course_id)]
    return jsonify({"student_id": student_id, "courses": [progress_json(c) for c in courses]})


@bp.get("/courses/<course_id>/coverage")
@require("admin", "faculty")
async def coverage(course_id: str) -> Response:
    ctx = current_context()
    await _may_edit(ctx, current_principal(), course_id)
    section_id = text_arg("section_id")
    pace = await db_syllabus.course_pace(ctx.db, course_id, section_id=section_id, as_of=_now(ctx))
    return jsonify(course_pace_json(pace, await db_syllabus.list_topics(ctx.db, course_id)))


# --- OpenAPI ------------------------------------------------------------------------------------------

_COURSE = path_param("course_id", "Course id.")
_SESSION = path_param("session_id", "Session id.")
_TOPIC = path_param("topic_id", "Topic id.", {"type": "integer", "minimum": 1})
_EDITORS = ["admin", "faculty"]
_READERS = ["admin", "faculty", "student"]
_REFUSED = error("`invalid_request`: a value, a taken title, another course's topic or a prerequisite "
                 "cycle (`field` names it).")

_TOPIC_SCHEMA = obj({"id": INT, "course_id": STR, "position": INT, "title": STR, "unit": nullable(STR),
                     "est_minutes": INT, "prerequisites": array(INT), "updated_at": TIME})
_PACE = obj({"student_id": STR, "course_id": STR, "topics_total": INT, "topics_covered": INT, "topics_done": INT,
             "topics_missed": INT, "needs_review": INT, "mean_competency": nullable(NUMBER),
             "planned_minutes": NUMBER, "covered_minutes": NUMBER, "done_minutes": NUMBER,
             "pace_ratio": nullable(NUMBER)})

OPENAPI_SCHEMAS: dict = {
    "SyllabusTopic": _TOPIC_SCHEMA,
    "Syllabus": obj({"course_id": STR, "topics": array(ref("SyllabusTopic")), "total_minutes": INT}),
    "SyllabusImport": obj({"dry_run": BOOL, "created": INT, "updated": INT, "unchanged": INT, "kept": INT,
                           "course_id": STR, "topics": array(ref("SyllabusTopic")), "total_minutes": INT}),
    "SessionTagging": obj({
        "session_id": STR, "course_id": STR, "topics": array(ref("SyllabusTopic")), "tagged": array(INT),
        "covered_before": array(INT),
        "suggestions": array(obj({"topic_id": INT, "why": enum("next", "skipped", "continue")})),
        "levels": array(obj({"student_id": STR, "topic_id": nullable(INT), "level": INT})),
    }),
    "StudentPace": _PACE,
    "StudentProgress": obj({"student_id": STR, "courses": array(obj({
        "course_id": STR, "code": STR, "title": STR, "pace": ref("StudentPace"),
        "topics": array(obj({"topic_id": INT, "position": INT, "title": STR, "unit": nullable(STR),
                             "est_minutes": INT, "status": enum(*STATUSES), "competency": NUMBER,
                             "observations": INT, "last_level": nullable(INT),
                             "minutes_spent": INT, "missed": BOOL})),
    }))}),
    "CourseCoverage": obj({
        "course_id": STR, "section_id": nullable(STR), "topics_total": INT, "topics_covered": INT,
        "planned_total_minutes": INT, "planned_minutes": NUMBER, "covered_minutes": NUMBER,
        "pace_ratio": nullable(NUMBER),
        "points": array(obj({"session_id": STR, "starts_at": TIME, "held": BOOL, "planned_minutes": NUMBER,
                             "covered_minutes": nullable(NUMBER)})),
        "topics": array(obj({"topic_id": INT, "title": STR, "position": INT, "sessions": INT, "students_done": INT,
                             "students_need_review": INT, "students": INT})),
    }),
}

OPENAPI_PATHS: dict = {
    "/api/v1/courses/{course_id}/syllabus": {
        "get": operation("A course's syllabus in order (its faculty, admins, its students)", "syllabus", _READERS,
                         {"200": json_response(ref("Syllabus"), "The syllabus."), "400": BAD_URL,
                          "404": not_found("course")}, params=[_COURSE]),
        "post": operation("Add a topic to a course's syllabus", "syllabus", _EDITORS,
                          {"201": json_response(ref("SyllabusTopic"), "The new topic."), "400": _REFUSED,
                           "404": not_found("course")},
                          params=[_COURSE], body=json_request(TopicBody, "The topic.")),
    },
    "/api/v1/syllabus/topics/{topic_id}": {
        "patch": operation("Rename a topic, change its unit, time or prerequisites", "syllabus", _EDITORS,
                           {"200": json_response(ref("SyllabusTopic"), "The topic."), "400": _REFUSED,
                            "404": not_found("topic")},
                           params=[_TOPIC], body=json_request(TopicPatch, "The fields to change.")),
        "delete": operation("Delete a topic (with its tags, levels and progress)", "syllabus", _EDITORS,
                            {"200": json_response(ref("SyllabusTopic"), "The deleted topic."), "400": BAD_URL,
                             "404": not_found("topic")}, params=[_TOPIC]),
    },
    "/api/v1/courses/{course_id}/syllabus/order": {"put": operation(
        "Reorder a course's syllabus", "syllabus", _EDITORS,
        {"200": json_response(ref("Syllabus"), "The syllabus."), "400": _REFUSED, "404": not_found("course")},
        params=[_COURSE], body=json_request(TopicOrder, "Every topic id, in order."))},
    "/api/v1/courses/{course_id}/syllabus/import": {"post": {
        **operation("Import a syllabus from CSV (title, duration, unit, prerequisites): preview with dry_run, "
                    "then apply", "syllabus", _EDITORS,
                    {"200": json_response(ref("SyllabusImport"), "What changed (or would) and the syllabus."),
                     "400": BAD_URL, "404": not_found("course"),
                     "422": error("`import_rejected`: `errors` lists every bad line (line, field, reason).")},
                    params=[_COURSE, query_str("dry_run", "`1`/`true`: preview only.",
                                               enum("0", "1", "true", "false"))],
                    body=json_request(SyllabusCsv, "The CSV (or send it as text/csv).")),
    }},
    "/api/v1/sessions/{session_id}/syllabus-topics": {
        "get": operation("What a session covered, suggestions and understanding levels so far", "syllabus",
                         _EDITORS, {"200": json_response(ref("SessionTagging"), "The tagging state."),
                                    "400": BAD_URL, "404": not_found("session")}, params=[_SESSION]),
        "put": operation("Tag the syllabus topics a session covered (through the live session actor if any)",
                         "syllabus", _EDITORS,
                         {"200": json_response(ref("SessionTagging"), "The tagging state."), "400": _REFUSED,
                          "404": not_found("session"), "503": error("`unavailable`.")},
                         params=[_SESSION], body=json_request(SessionTopicsBody, "The topics.")),
    },
    "/api/v1/sessions/{session_id}/understanding": {"post": operation(
        "Record understanding levels 1-5 per student, of a topic or of the session", "syllabus", _EDITORS,
        {"200": json_response(obj({"session_id": STR, "topic_id": nullable(INT), "recorded": INT}), "Recorded."),
         "400": _REFUSED, "404": not_found("session"), "503": error("`unavailable`.")},
        params=[_SESSION], body=json_request(UnderstandingBody, "The levels."))},
    "/api/v1/students/{student_id}/progress": {"get": operation(
        "A student's topic progress and pace per course (a student: only their own)", "syllabus", _READERS,
        {"200": json_response(ref("StudentProgress"), "Progress per course."), "400": BAD_URL,
         "404": not_found("student")}, params=[path_param("student_id", "Student id.")])},
    "/api/v1/courses/{course_id}/coverage": {"get": operation(
        "A course's syllabus coverage and pace against the plan, per session and per topic", "syllabus", _EDITORS,
        {"200": json_response(ref("CourseCoverage"), "Coverage."), "400": BAD_URL, "404": not_found("course")},
        params=[_COURSE, query_str("section_id", "Only this section's sessions and students.")])},
}
