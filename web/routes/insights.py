"""Insights API: standings (percentage, max reachable, eligibility), reports + CSV, charts' series,
and condonation. All under ``/api/v1``. (The notification centre and webhook subscriptions are
web/routes/notifications_api.py.)

Ownership: a student sees only their own standing, series and condonations
(the id comes from the token, or must equal it); a faculty member only the
courses they teach (coordinator or assigned); an admin everything.
"""
from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify, request

from hub.db.condonation import (
    AlreadyOpen,
    Application,
    create_application,
    decide_application,
    get_application,
    list_applications,
)
from hub.db.insights import (
    CourseInfo,
    course_faculty,
    course_info,
    course_rules,
    course_term,
    course_timeline,
    section_course,
    standings,
    student_timeline,
    teaches_course,
)
from hub.db.notifications import (
    NewNotification,
    add_notifications,
    publish_notifications,
)
from hub.domain.eligibility import CONDONABLE, shown

from ..access import attendance_scope
from ..apidoc import (
    BAD_BODY,
    BAD_URL,
    BOOL,
    CONFLICT,
    DATE,
    INT,
    NUMBER,
    STR,
    TIME,
    array,
    enum,
    error,
    json_request,
    json_response,
    nullable,
    obj,
    operation,
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
from ..feeds import utc_now
from ..insights import (
    course_series_json,
    report_csv,
    report_summary,
    standing_json,
    student_series_json,
    term_json,
)
from ..paging import page_json, page_of, page_params, page_request
from ..request import NonEmpty, choice_arg, json_body, one_of, path_id

bp = Blueprint("insights", __name__, url_prefix="/api/v1")

MAX_REASON = 2000
CONDONATION_STATES = ("pending", "approved", "rejected")


class CondonationRequest(msgspec.Struct):
    course_id: NonEmpty
    reason: Annotated[str, Meta(min_length=1, max_length=MAX_REASON, description="Why (trimmed; not blank).")]


class CondonationDecision(msgspec.Struct):
    decision: Annotated[str, one_of(("approved", "rejected"))]
    note: Annotated[str, Meta(max_length=MAX_REASON, description="Shown to the student.")] = ""


# --- scopes ------------------------------------------------------------------------------------

async def _course_scope(principal: Principal, course_id: str) -> CourseInfo:
    """404 for an unknown course, 403 for faculty who do not teach it."""
    ctx = current_context()
    course = await course_info(ctx.db, course_id)
    if course is None:
        raise not_found("No such course.")
    if principal.role == "faculty" and not await teaches_course(ctx.db, principal.user_id, course_id):
        raise forbidden("You do not teach this course.")
    if principal.role not in ("faculty", "admin"):
        raise forbidden()
    return course


async def _section_arg(course_id: str) -> str | None:
    section_id = request.args.get("section_id") or None
    if section_id is not None and await section_course(current_context().db, section_id) != course_id:
        raise invalid("No such section in this course.", field="section_id")
    return section_id


async def _visible_courses(principal: Principal, student_id: str) -> set[str] | None:
    """Authorise reading a student's figures; the courses a faculty member may see (None: all)."""
    ctx = current_context()
    faculty_id = await attendance_scope(ctx, principal, student_id)
    if faculty_id is None:
        return None
    rows = await standings(ctx.db, utc_now(ctx), student_id=student_id)
    visible = set()
    for course_id in {r.course_id for r in rows}:
        if await teaches_course(ctx.db, faculty_id, course_id):
            visible.add(course_id)
    return visible


# --- standings and series ---------------------------------------------------------------------

async def student_standings(student_id: str, visible: set[str] | None = None) -> list[dict]:
    """Per-course standing of a student (the page uses this too)."""
    ctx = current_context()
    rows = await standings(ctx.db, utc_now(ctx), student_id=student_id)
    return [standing_json(r) for r in rows if visible is None or r.course_id in visible]


@bp.get("/students/<student_id>/standing")
@require("student", "faculty", "admin")
async def student_standing(student_id: str) -> Response:
    visible = await _visible_courses(current_principal(), student_id)
    return jsonify({"student_id": student_id, "courses": await student_standings(student_id, visible)})


@bp.get("/students/<student_id>/courses/<course_id>/series")
@require("student", "faculty", "admin")
async def student_series(student_id: str, course_id: str) -> Response:
    ctx = current_context()
    visible = await _visible_courses(current_principal(), student_id)
    if visible is not None and course_id not in visible:
        raise forbidden("You do not teach this course.")
    now = utc_now(ctx)
    enrolment = await standings(ctx.db, now, student_id=student_id, course_id=course_id)
    if not enrolment:
        raise not_found("The student is not enrolled in this course.")
    rules = await course_rules(ctx.db, course_id)
    points = student_series_json(await student_timeline(ctx.db, student_id, course_id, now), rules)
    term = await course_term(ctx.db, course_id, enrolment[0].section_id)
    return jsonify({"student_id": student_id, "course_id": course_id, "term": term_json(term),
                    "warning_pct": float(rules.warning_pct), "points": points})


async def course_report_items(course_id: str, section_id: str | None) -> list[dict]:
    ctx = current_context()
    rows = await standings(ctx.db, utc_now(ctx), course_id=course_id, section_id=section_id)
    return [standing_json(r) for r in rows]


@bp.get("/courses/<course_id>/report")
@require("faculty", "admin")
async def course_report(course_id: str) -> Response:
    ctx = current_context()
    course = await _course_scope(current_principal(), course_id)
    section_id = await _section_arg(course_id)
    paging = page_request()
    items = await course_report_items(course_id, section_id)
    held = len(await course_timeline(ctx.db, course_id, utc_now(ctx), section_id))
    return jsonify(page_json(paging.of(items), len(items), paging, course=_course_json(course),
                             section_id=section_id, summary=report_summary(items, held)))


@bp.get("/courses/<course_id>/report.csv")
@require("faculty", "admin")
async def course_report_csv(course_id: str) -> Response:
    course = await _course_scope(current_principal(), course_id)
    section_id = await _section_arg(course_id)
    body = report_csv(await course_report_items(course_id, section_id))
    name = f"{course.code}{'-' + section_id if section_id else ''}-attendance.csv"
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return Response(body, content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{safe}"'})


@bp.get("/courses/<course_id>/series")
@require("faculty", "admin")
async def course_series(course_id: str) -> Response:
    ctx = current_context()
    await _course_scope(current_principal(), course_id)
    section_id = await _section_arg(course_id)
    rules = await course_rules(ctx.db, course_id)
    points = course_series_json(await course_timeline(ctx.db, course_id, utc_now(ctx), section_id), rules)
    term = await course_term(ctx.db, course_id, section_id)
    return jsonify({"course_id": course_id, "section_id": section_id, "term": term_json(term),
                    "warning_pct": float(rules.warning_pct), "points": points})


def _course_json(course: CourseInfo) -> dict:
    return {"course_id": course.course_id, "course_code": course.code, "course_title": course.title}


# --- condonation ---------------------------------------------------------------------------

def application_json(a: Application) -> dict:
    return {
        "id": a.id, "student_id": a.student_id, "student_name": a.student_name, "roll_number": a.roll_number,
        "course_id": a.course_id, "course_code": a.course_code, "course_title": a.course_title,
        "reason": a.reason, "percentage": float(a.percentage), "state": a.state, "created_at": a.created_at,
        "decided_at": a.decided_at, "decided_by": a.decided_by, "decision_note": a.decision_note,
    }


@bp.post("/condonations")
@require("student")
async def apply_condonation() -> tuple[Response, int]:
    """A student applies for their own course; only while their band is condonable."""
    ctx, principal = current_context(), current_principal()
    body = await json_body(CondonationRequest)
    reason = body.reason.strip()
    if not reason:
        raise invalid(f"'reason' must be 1 to {MAX_REASON} characters.", field="reason")
    now = utc_now(ctx)
    rows = await standings(ctx.db, now, student_id=principal.user_id, course_id=body.course_id)
    if not rows:
        raise invalid("You are not enrolled in this course.", field="course_id")
    st = rows[0].standing()
    if st.band != CONDONABLE:
        raise WebError(409, "not_condonable",
                       f"Condonation is only for attendance in the condonable band; yours is {st.band}.")
    assert st.percentage is not None  # a condonable band has a percentage (hub/domain/eligibility.py's band)
    pct = shown(st.percentage)
    teachers = (await course_faculty(ctx.db, [rows[0].course_id])).get(rows[0].course_id, set())

    async def work(conn) -> tuple[Application, list[dict]]:
        application = await create_application(conn, principal.user_id, rows[0].course_id, reason, pct, now)
        notes = [NewNotification(
            user_id=t, kind="condonation_requested",
            title=f"{rows[0].course_code}: condonation requested by {rows[0].student_name}",
            body=f"{rows[0].student_name} ({rows[0].roll_number}) is at {pct}% and asks for condonation.",
            link=f"/faculty/reports?course_id={rows[0].course_id}",
            data={"application_id": application.id, "course_id": rows[0].course_id,
                  "student_id": principal.user_id},
        ) for t in sorted(teachers)]
        return application, await add_notifications(conn, notes)

    try:
        application, published = await ctx.db.run(work, transaction=True)
    except AlreadyOpen:
        raise WebError(409, "conflict", "You already have a pending or approved application for this course.") from None
    publish_notifications(ctx.bus, published)
    return jsonify(application_json(application)), 201


@bp.get("/condonations")
@require("student", "faculty", "admin")
async def condonations() -> Response:
    ctx, principal = current_context(), current_principal()
    paging = page_request()
    state = choice_arg("state", CONDONATION_STATES)
    items, total = await list_applications(
        ctx.db,
        student_id=principal.user_id if principal.role == "student" else None,
        faculty_id=principal.user_id if principal.role == "faculty" else None,
        course_id=request.args.get("course_id") or None, state=state, limit=paging.limit, offset=paging.offset,
    )
    return jsonify(page_json([application_json(a) for a in items], total, paging))


@bp.post("/condonations/<application_id>/decision")
@require("faculty", "admin")
async def decide_condonation(application_id: str) -> Response:
    ctx, principal = current_context(), current_principal()
    found = await get_application(ctx.db, path_id(application_id, "application"))
    if found is None:
        raise not_found("No such application.")
    await _course_scope(principal, found.course_id)
    body = await json_body(CondonationDecision)
    note = body.note
    now = utc_now(ctx)

    async def work(conn) -> tuple[Application | None, list[dict]]:
        decided = await decide_application(conn, found.id, body.decision == "approved", principal.user_id,
                                           note, now)
        if decided is None:
            return None, []
        return decided, await add_notifications(conn, [NewNotification(
            user_id=decided.student_id, kind="condonation_decided",
            title=f"{decided.course_code}: condonation {decided.state}",
            body=note or f"Your condonation application for {decided.course_code} was {decided.state}.",
            link="/student", data={"application_id": decided.id, "course_id": decided.course_id,
                                   "state": decided.state},
        )])

    decided, published = await ctx.db.run(work, transaction=True)
    if decided is None:
        raise WebError(409, "conflict", "This application has already been decided.")
    publish_notifications(ctx.bus, published)
    return jsonify(application_json(decided))


# --- OpenAPI ----------------------------------------------------------------------------------------

_PCT = nullable(NUMBER)
_BAND = enum("eligible", "condonable", "barred")

OPENAPI_SCHEMAS: dict = {
    "Standing": obj({
        "student_id": STR, "student_name": STR, "roll_number": STR,
        "course_id": STR, "course_code": STR, "course_title": STR,
        "section_id": nullable(STR), "section_name": nullable(STR),
        "counts": obj({k: INT for k in ("present", "late", "absent", "excused", "held", "remaining")}),
        "percentage": {**_PCT, "description": "Weighted percentage so far, two decimals rounded down; null "
                                              "while no session counts."},
        "max_reachable": {**NUMBER, "description": "Percentage at the end of term if every remaining session "
                                                   "is attended."},
        "band": _BAND, "best_band": _BAND,
        "eligibility": enum("eligible", "condoned", "condonable", "barred"),
        "below_warning": BOOL,
        "needed_for_eligible": {**nullable(INT), "description": "Remaining sessions to attend to end eligible; "
                                                                "null if no longer possible."},
        "rules": obj({"late_weight": NUMBER, "warning_pct": NUMBER, "eligible_pct": NUMBER,
                      "condonable_pct": NUMBER, "excused_counts": BOOL}),
        "condonation": nullable(obj({"id": INT, "state": enum(*CONDONATION_STATES)})),
    }),
    "CondonationApplication": obj({
        "id": INT, "student_id": STR, "student_name": STR, "roll_number": STR, "course_id": STR,
        "course_code": STR, "course_title": STR, "reason": STR, "percentage": NUMBER,
        "state": enum(*CONDONATION_STATES), "created_at": TIME, "decided_at": nullable(TIME),
        "decided_by": nullable(STR), "decision_note": STR,
    }),
}

_STUDENTS = ["student", "faculty", "admin"]
_TEACHERS = ["faculty", "admin"]

_PAGE = page_params()
_STUDENT = path_param("student_id", "Student (user) id.")
_COURSE = path_param("course_id", "Course id.")
_SECTION = query_str("section_id", "Only this section of the course.")
_SERIES_POINTS = {
    "warning_pct": NUMBER,
    "term": {**nullable(obj({"term_id": STR, "name": STR, "starts_on": DATE, "ends_on": DATE, "starts_at": TIME})),
             "description": "The term the chart covers (null: no section of the course is in a term); the chart "
                            "starts at `starts_at`, midnight of its first day in the term's timezone."},
}

OPENAPI_PATHS: dict = {
    "/api/v1/students/{student_id}/standing": {"get": operation(
        "A student's percentage, max reachable and eligibility per course (the student, their faculty, admin)",
        "insights", _STUDENTS, {
            "200": json_response(obj({"student_id": STR, "courses": array(ref("Standing"))}), "Standing."),
            "400": BAD_URL, "404": doc_not_found("student")},
        params=[_STUDENT])},
    "/api/v1/students/{student_id}/courses/{course_id}/series": {"get": operation(
        "The student's cumulative percentage after each held (ended) session of a course (for a chart)",
        "insights", _STUDENTS, {
            "200": json_response(obj({"student_id": STR, "course_id": STR, **_SERIES_POINTS, "points": array(obj({
                "session_id": STR, "starts_at": TIME, "status": enum("present", "late", "absent", "excused"),
                "percentage": _PCT}))}), "Series."),
            "400": BAD_URL, "404": doc_not_found("student or enrolment")},
        params=[_STUDENT, _COURSE])},
    "/api/v1/courses/{course_id}/report": {"get": operation(
        "Course (or section) report: every enrolled student's standing, with a summary (paginated)",
        "insights", _TEACHERS, {
            "200": json_response(page_of(ref("Standing"), course=obj({
                "course_id": STR, "course_code": STR, "course_title": STR}),
                section_id=nullable(STR), summary=obj({
                    "students": INT, "sessions_held": INT, "average_percentage": _PCT,
                    "bands": obj({"eligible": INT, "condonable": INT, "barred": INT}),
                    "condoned": INT, "below_warning": INT})), "Report."),
            "400": BAD_URL, "404": doc_not_found("course")},
        params=[_COURSE, _SECTION, *_PAGE])},
    "/api/v1/courses/{course_id}/report.csv": {"get": operation(
        "The same report as CSV (every student, same figures)", "insights", _TEACHERS, {
            "200": {"description": "CSV with a header row.", "content": {"text/csv": {"schema": STR}}},
            "400": BAD_URL, "404": doc_not_found("course")},
        params=[_COURSE, _SECTION])},
    "/api/v1/courses/{course_id}/series": {"get": operation(
        "Attendance rate of each held (ended) session of a course (or section), for a chart", "insights", _TEACHERS, {
            "200": json_response(obj({"course_id": STR, "section_id": nullable(STR), **_SERIES_POINTS,
                                      "points": array(obj({
                                          "session_id": STR, "starts_at": TIME, "present": INT, "late": INT,
                                          "absent": INT, "excused": INT, "percentage": _PCT}))}), "Series."),
            "400": BAD_URL, "404": doc_not_found("course")},
        params=[_COURSE, _SECTION])},
    "/api/v1/condonations": {
        "get": operation("Condonation applications, newest first (own / taught courses / all)", "condonation",
                         _STUDENTS, {"200": json_response(page_of(ref("CondonationApplication")), "One page."),
                                     "400": BAD_URL},
                         params=[query_str("state", "Only this state.", enum(*CONDONATION_STATES)),
                                 query_str("course_id", "Only this course."), *_PAGE]),
        "post": operation("Apply for condonation (students in the condonable band)", "condonation", ["student"], {
            "201": json_response(ref("CondonationApplication"), "Applied."), "400": BAD_BODY,
            "409": error("`not_condonable`: the band is not condonable; `conflict`: already applied.")},
            body=json_request(CondonationRequest, "The course and why.")),
    },
    "/api/v1/condonations/{application_id}/decision": {"post": operation(
        "Approve or reject a pending application (faculty teaching the course, admin)", "condonation", _TEACHERS, {
            "200": json_response(ref("CondonationApplication"), "Decided."), "400": BAD_BODY,
            "404": doc_not_found("application"), "409": CONFLICT},
        params=[path_param("application_id", "Application id.")],
        body=json_request(CondonationDecision, "The decision."))},
}
