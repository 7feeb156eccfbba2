"""Grades and GPA under /api/v1: the grade scale and course credits (admin), grade sheets and
release (faculty of the course, admin), withdrawals (admin), and the student's own grades,
what-if and transcript (docs/academics.md, "Grades and GPA").

Before a course-term is released its students see nothing of it: no marks, no grade, no GPA
contribution (hub/db/grades.py, the release rule). Percentages and GPAs are computed exactly
and shown with two decimals, rounded down (hub/domain/grades.py).

Concurrency contract: each handler is one request task; a write is one transaction in
hub/db/grades.py, audited there; notifications of a release are published after its commit.
"""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify

from hub.db.academic import may_manage_course
from hub.db.grades import (
    GradeSheet,
    ScaleInfo,
    StudentCourse,
    Transcript,
    WhatIfOutcome,
    active_scale,
    course_credits,
    course_terms,
    grade_sheet,
    record_withdrawal,
    release,
    save_scale,
    set_course_credits,
    student_courses,
    transcript,
    transcript_csv,
    what_if_for,
)
from hub.db.notifications import publish_notifications
from hub.domain.grades import MAX_BANDS, SCALE_KINDS, Band, Scale, shown_gpa, shown_percent

from ..apidoc import (
    BAD_BODY,
    BAD_URL,
    BEARER,
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
    not_found,
    nullable,
    obj,
    operation,
    path_param,
    query_str,
    ref,
)
from ..auth import current_principal, require
from ..context import current_context
from ..errors import forbidden
from ..request import Id, json_body, one_of, text_arg
from ._records import campus_today

bp = Blueprint("grades_api", __name__, url_prefix="/api/v1")

Percent = Annotated[float, Meta(ge=0, le=100)]
Marks = Annotated[float, Meta(ge=0, le=1_000_000)]


class BandBody(msgspec.Struct):
    """One band: percentages from ``min_percent`` up to the next band's minimum earn ``letter``."""

    letter: Annotated[str, Meta(min_length=1, max_length=20)]
    min_percent: Percent
    points: Annotated[float, Meta(ge=0, le=10)]
    is_pass: bool


class ScaleBody(msgspec.Struct):
    """The campus's grade scale: the bands must not overlap (distinct minimums) nor leave a gap
    (the lowest starts at 0); higher bands never earn fewer points; passing bands are the top ones."""

    name: Annotated[str, Meta(min_length=1, max_length=100)]
    kind: Annotated[str, one_of(SCALE_KINDS)]
    bands: Annotated[list[BandBody], Meta(min_length=1, max_length=MAX_BANDS)]


class CreditsBody(msgspec.Struct):
    """A course's credits (0-40, at most one decimal): its weight in the credit-weighted GPA."""

    credits: Annotated[float, Meta(ge=0, le=40)]


class WithdrawalBody(msgspec.Struct):
    """The student who withdrew from the course-term, and why (kept in the audit log)."""

    student_id: Id
    reason: Annotated[str, Meta(max_length=500)] = ""


class HopeBody(msgspec.Struct):
    assessment_id: Annotated[int, Meta(ge=1)]
    marks: Marks


class CourseHopesBody(msgspec.Struct):
    course_id: Id
    hopes: Annotated[list[HopeBody], Meta(max_length=200)]


class WhatIfBody(msgspec.Struct):
    """Hoped-for marks in some of the student's courses of one term."""

    term_id: Id
    courses: Annotated[list[CourseHopesBody], Meta(max_length=30)]


def _dec(value: float) -> Decimal:
    return Decimal(str(value))


def _pct(value: Fraction | None) -> float | None:
    return None if value is None else float(shown_percent(value))


def _gpa(value: Fraction | None) -> float | None:
    return None if value is None else float(shown_gpa(value))


def _num(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


# --- presenters ---------------------------------------------------------------------------

def scale_json(scale: Scale) -> dict[str, Any]:
    bands = []
    for i, b in enumerate(scale.bands):
        upper = scale.bands[i - 1].min_percent if i else None
        bands.append({"letter": b.letter, "min_percent": float(b.min_percent),
                      "below_percent": _num(upper), "points": float(b.points), "is_pass": b.is_pass})
    return {"name": scale.name, "kind": scale.kind, "bands": bands}


def scale_info_json(info: ScaleInfo) -> dict[str, Any]:
    return {**scale_json(info.scale), "updated_at": info.updated_at.isoformat(), "updated_by": info.updated_by}


def _course_term_json(ct: Any) -> dict[str, Any]:
    return {"course_id": ct.course_id, "code": ct.code, "title": ct.title, "credits": float(ct.credits),
            "term_id": ct.term_id, "term_name": ct.term_name, "starts_on": ct.starts_on.isoformat(),
            "ends_on": ct.ends_on.isoformat(), "released": ct.released_at is not None,
            "released_at": ct.released_at.isoformat() if ct.released_at else None}


def _assessment_json(a: Any) -> dict[str, Any]:
    return {"id": a.id, "kind": a.kind, "title": a.title, "section_id": a.section_id, "weight": float(a.weight),
            "max_marks": float(a.max_marks), "held_on": a.held_on.isoformat() if a.held_on else None}


def _mark_json(mark: Any) -> dict[str, Any]:
    return {"status": mark.status, "marks": _num(mark.marks)}


def _result_json(r: Any) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"percent": _num(r.percent), "letter": r.letter, "points": _num(r.points), "credits": float(r.credits),
            "outcome": r.outcome, "finalized_at": r.finalized_at.isoformat()}


def sheet_json(sheet: GradeSheet) -> dict[str, Any]:
    return {
        "course_term": _course_term_json(sheet.course_term),
        "term_ended": sheet.term_ended,
        "total_weight": float(sheet.total_weight),
        "assessments": [_assessment_json(a) for a in sheet.assessments],
        "students": [{
            "student_id": r.student_id, "name": r.name, "roll_number": r.roll_number, "section_id": r.section_id,
            "marks": {str(k): _mark_json(m) for k, m in r.marks.items()},
            "running_percent": _pct(r.running_percent), "final_percent": _pct(r.final_percent),
            "letter": r.band.letter if r.band else None, "points": _num(r.band.points) if r.band else None,
            "passes": r.band.is_pass if r.band else None, "missing_marks": r.missing,
            "result": _result_json(r.result),
        } for r in sheet.rows],
        "distribution": [{"letter": letter, "students": n} for letter, n in sheet.distribution()],
        "distribution_basis": sheet.distribution_basis,
        "missing_marks": sum(r.missing for r in sheet.rows),
        "scale": scale_json(sheet.scale),
    }


def student_course_json(sc: StudentCourse) -> dict[str, Any]:
    body: dict[str, Any] = {
        "course_term": _course_term_json(sc.course_term),
        "released": sc.released,
        "assessments": [_assessment_json(a) for a in sc.assessments],
    }
    if sc.released:
        body.update({
            "marks": {str(k): _mark_json(m) for k, m in sc.marks.items()},
            "running_percent": _pct(sc.running_percent), "final_percent": _pct(sc.final_percent),
            "letter": sc.result.letter if sc.result else (sc.band.letter if sc.band else None),
            "provisional": sc.provisional, "result": _result_json(sc.result),
        })
    else:  # the release rule: nothing of the marks, not even whether any exist
        body.update({"marks": {}, "running_percent": None, "final_percent": None, "letter": None,
                     "provisional": False, "result": None})
    return body


def transcript_json(t: Transcript) -> dict[str, Any]:
    return {
        "student_id": t.student_id, "name": t.name, "roll_number": t.roll_number,
        "cumulative_gpa": _gpa(t.cumulative_gpa), "max_points": float(t.scale.max_points),
        "terms": [{
            "term_id": term.term_id, "term_name": term.term_name, "starts_on": term.starts_on.isoformat(),
            "term_gpa": _gpa(term.term_gpa), "cumulative_gpa": _gpa(term.cumulative_gpa),
            "credits_attempted": float(term.credits_attempted), "credits_earned": float(term.credits_earned),
            "courses": [{
                "course_id": line.course_term.course_id, "code": line.course_term.code,
                "title": line.course_term.title, "credits": float(line.credits), "percent": _pct(line.percent),
                "letter": line.letter, "points": _num(line.points), "outcome": line.outcome,
                "provisional": line.provisional,
            } for line in term.lines],
        } for term in t.terms],
    }


def what_if_json(w: WhatIfOutcome) -> dict[str, Any]:
    return {
        "term_id": w.term_id, "term_gpa": _gpa(w.term_gpa), "cumulative_gpa": _gpa(w.cumulative_gpa),
        "courses": [{
            "course_id": sc.course_term.course_id, "code": sc.course_term.code, "percent": _pct(r.percent),
            "letter": r.band.letter if r.band else None, "points": _num(r.band.points) if r.band else None,
            "passes": r.band.is_pass if r.band else None, "left_out": r.left_out,
        } for sc, r in w.courses],
    }


# --- scale and credits (admin) -------------------------------------------------------------

@bp.get("/grade-scale")
@require()
async def get_scale() -> Response:
    return jsonify(scale_info_json(await active_scale(current_context().db)))


@bp.put("/grade-scale")
@require("admin")
async def put_scale() -> Response:
    body = await json_body(ScaleBody)
    bands = [Band(b.letter.strip(), _dec(b.min_percent), _dec(b.points), b.is_pass) for b in body.bands]
    saved = await save_scale(current_context().db, body.name, body.kind, bands, actor=current_principal().user_id)
    return jsonify(scale_info_json(saved))


@bp.get("/grade-credits")
@require("admin")
async def list_credits() -> Response:
    rows = await course_credits(current_context().db)
    return jsonify({"items": [{"course_id": i, "code": c, "title": t, "credits": float(cr)} for i, c, t, cr in rows]})


@bp.put("/courses/<course_id>/credits")
@require("admin")
async def put_credits(course_id: str) -> Response:
    body = await json_body(CreditsBody)
    credits = await set_course_credits(current_context().db, course_id, _dec(body.credits),
                                       actor=current_principal().user_id)
    return jsonify({"course_id": course_id, "credits": float(credits)})


# --- faculty: grade sheets and release ------------------------------------------------------

async def _check_course(course_id: str) -> None:
    principal = current_principal()
    if principal.role == "admin":
        return
    if not await may_manage_course(current_context().db, principal.user_id, course_id):
        raise forbidden("You do not teach this course.")


@bp.get("/grades/courses")
@require("faculty", "admin")
async def list_course_terms() -> Response:
    principal = current_principal()
    term_id = text_arg("term_id")
    rows = await course_terms(current_context().db, None if principal.role == "admin" else principal.user_id)
    return jsonify({"items": [_course_term_json(ct) for ct in rows if term_id is None or ct.term_id == term_id]})


@bp.get("/courses/<course_id>/terms/<term_id>/grades")
@require("faculty", "admin")
async def get_sheet(course_id: str, term_id: str) -> Response:
    await _check_course(course_id)
    ctx = current_context()
    return jsonify(sheet_json(await grade_sheet(ctx.db, course_id, term_id, campus_today(ctx))))


@bp.post("/courses/<course_id>/terms/<term_id>/grades/release")
@require("faculty", "admin")
async def post_release(course_id: str, term_id: str) -> Response:
    await _check_course(course_id)
    ctx = current_context()
    outcome = await release(ctx.db, course_id, term_id, actor=current_principal().user_id, today=campus_today(ctx))
    publish_notifications(ctx.bus, outcome.notifications)
    return jsonify({"course_term": _course_term_json(outcome.course_term), "students": outcome.students,
                    "notified": len(outcome.notifications), "missing_marks": outcome.missing_marks,
                    "finalized": outcome.finalized})


@bp.post("/courses/<course_id>/terms/<term_id>/withdrawals")
@require("admin")
async def post_withdrawal(course_id: str, term_id: str) -> tuple[Response, int]:
    body = await json_body(WithdrawalBody)
    stored = await record_withdrawal(current_context().db, body.student_id, course_id, term_id,
                                     actor=current_principal().user_id, reason=body.reason)
    return jsonify({"student_id": stored.student_id, "course_id": course_id, "term_id": term_id,
                    **(_result_json(stored) or {})}), 201


# --- the student's own -----------------------------------------------------------------------

@bp.get("/me/grades")
@require("student")
async def my_grades() -> Response:
    ctx, principal = current_context(), current_principal()
    courses, scale = await student_courses(ctx.db, principal.user_id)
    t = await transcript(ctx.db, principal.user_id)
    return jsonify({"courses": [student_course_json(sc) for sc in courses], "scale": scale_json(scale),
                    "cumulative_gpa": _gpa(t.cumulative_gpa),
                    "terms": [{"term_id": x.term_id, "term_name": x.term_name, "term_gpa": _gpa(x.term_gpa),
                               "cumulative_gpa": _gpa(x.cumulative_gpa)} for x in t.terms]})


@bp.post("/me/grades/what-if")
@require("student")
async def my_what_if() -> Response:
    body = await json_body(WhatIfBody)
    hopes = {c.course_id: {h.assessment_id: _dec(h.marks) for h in c.hopes} for c in body.courses}
    outcome = await what_if_for(current_context().db, current_principal().user_id, body.term_id, hopes)
    return jsonify(what_if_json(outcome))


@bp.get("/me/transcript")
@require("student")
async def my_transcript() -> Response:
    return jsonify(transcript_json(await transcript(current_context().db, current_principal().user_id)))


@bp.get("/me/transcript.csv")
@require("student")
async def my_transcript_csv() -> Response:
    t = await transcript(current_context().db, current_principal().user_id)
    return Response(transcript_csv(t), content_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="transcript.csv"', "Cache-Control": "no-store"})


# --- OpenAPI ----------------------------------------------------------------------------------

_ADMIN = ("admin",)
_TEACHING = ("faculty", "admin")
_STUDENT = ("student",)
_ALL = ("admin", "faculty", "student", "ops")
_COURSE = path_param("course_id", "Course id.")
_TERM = path_param("term_id", "Term id.")
_PCT = nullable({**NUMBER, "description": "Percent, two decimals, rounded down."})
_GPA = nullable({**NUMBER, "description": "GPA, two decimals, rounded down."})
_NUM = nullable(NUMBER)
_MARK = obj({"status": enum("graded", "absent", "exempt"), "marks": _NUM})
_RESULT = nullable(obj({"percent": _NUM, "letter": nullable(STR), "points": _NUM, "credits": NUMBER,
                        "outcome": enum("passed", "failed", "withdrawn"), "finalized_at": TIME}))
_BAD_SCALE = error("`invalid_request`: a malformed body, or bands that overlap, leave a gap or disagree "
                   "(`field` names the band, e.g. `bands[2].min_percent`).")

OPENAPI_SCHEMAS: dict[str, Any] = {
    "GradeScale": obj({
        "name": STR, "kind": enum(*SCALE_KINDS),
        "bands": array(obj({"letter": STR, "min_percent": NUMBER, "below_percent": _NUM, "points": NUMBER,
                            "is_pass": BOOL})),
        "updated_at": TIME, "updated_by": nullable(STR)}, required=["name", "kind", "bands"]),
    "GradeCourseTerm": obj({
        "course_id": STR, "code": STR, "title": STR, "credits": NUMBER, "term_id": STR, "term_name": STR,
        "starts_on": DATE, "ends_on": DATE, "released": BOOL, "released_at": nullable(TIME)}),
    "GradeAssessment": obj({"id": INT, "kind": STR, "title": STR, "section_id": nullable(STR), "weight": NUMBER,
                            "max_marks": NUMBER, "held_on": nullable(DATE)}),
    "GradeSheet": obj({
        "course_term": ref("GradeCourseTerm"), "term_ended": BOOL, "total_weight": NUMBER,
        "assessments": array(ref("GradeAssessment")),
        "students": array(obj({
            "student_id": STR, "name": STR, "roll_number": STR, "section_id": nullable(STR),
            "marks": {"type": "object", "additionalProperties": _MARK, "description": "By assessment id."},
            "running_percent": _PCT, "final_percent": _PCT, "letter": nullable(STR), "points": _NUM,
            "passes": nullable(BOOL), "missing_marks": INT, "result": _RESULT})),
        "distribution": array(obj({"letter": STR, "students": INT})),
        "distribution_basis": {**enum("running", "final"), "description": "Which percentage the distribution "
                               "bands: the running one while the term runs unreleased, else the final one."},
        "missing_marks": INT,
        "scale": ref("GradeScale")}),
    "StudentCourseGrades": obj({
        "course_term": ref("GradeCourseTerm"), "released": BOOL, "assessments": array(ref("GradeAssessment")),
        "marks": {"type": "object", "additionalProperties": _MARK,
                  "description": "By assessment id; empty until released."},
        "running_percent": _PCT, "final_percent": _PCT, "letter": nullable(STR), "provisional": BOOL,
        "result": _RESULT}),
    "Transcript": obj({
        "student_id": STR, "name": STR, "roll_number": STR, "cumulative_gpa": _GPA, "max_points": NUMBER,
        "terms": array(obj({
            "term_id": STR, "term_name": STR, "starts_on": DATE, "term_gpa": _GPA, "cumulative_gpa": _GPA,
            "credits_attempted": NUMBER, "credits_earned": NUMBER,
            "courses": array(obj({"course_id": STR, "code": STR, "title": STR, "credits": NUMBER,
                                  "percent": _PCT, "letter": nullable(STR), "points": _NUM,
                                  "outcome": enum("passed", "failed", "withdrawn"), "provisional": BOOL}))}))}),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/grade-scale": {
        "get": {**operation("The campus's grade scale (any signed-in role)", "grades", _ALL,
                            {"200": json_response(ref("GradeScale"), "The scale, highest band first.")}),
                "security": BEARER},
        "put": {**operation("Replace the grade scale (admin); stored course results keep their grades", "grades",
                            _ADMIN, {"200": json_response(ref("GradeScale"), "Saved."), "400": _BAD_SCALE},
                            body=json_request(ScaleBody, "The scale.")), "security": BEARER},
    },
    "/api/v1/grade-credits": {
        "get": {**operation("Every course's credits (admin)", "grades", _ADMIN, {"200": json_response(
            obj({"items": array(obj({"course_id": STR, "code": STR, "title": STR, "credits": NUMBER}))}),
            "Courses by code.")}), "security": BEARER},
    },
    "/api/v1/courses/{course_id}/credits": {
        "put": {**operation("Set a course's credits (admin)", "grades", _ADMIN, {
            "200": json_response(obj({"course_id": STR, "credits": NUMBER}), "Saved."), "400": BAD_BODY,
            "404": not_found("course")}, params=[_COURSE], body=json_request(CreditsBody, "The credits.")),
            "security": BEARER},
    },
    "/api/v1/grades/courses": {
        "get": {**operation("The course-terms whose grades the caller manages (faculty: their courses; admin: all)",
                            "grades", _TEACHING, {
                                "200": json_response(obj({"items": array(ref("GradeCourseTerm"))}),
                                                     "Newest term first."), "400": BAD_URL},
                            params=[query_str("term_id", "Only this term.")]), "security": BEARER},
    },
    "/api/v1/courses/{course_id}/terms/{term_id}/grades": {
        "get": {**operation("A course-term's grade sheet: marks, percentages, grades, distribution (faculty of "
                            "the course, admin)", "grades", _TEACHING, {
                                "200": json_response(ref("GradeSheet"), "The sheet."),
                                "404": not_found("course or term")}, params=[_COURSE, _TERM]), "security": BEARER},
    },
    "/api/v1/courses/{course_id}/terms/{term_id}/grades/release": {
        "post": {**operation(
            "Release a course-term's grades to its students (audited; each gets a `grades_released` "
            "notification); final results are stored once the term has ended", "grades", _TEACHING, {
                "200": json_response(obj({"course_term": ref("GradeCourseTerm"), "students": INT, "notified": INT,
                                          "missing_marks": INT, "finalized": INT}), "Released."),
                "400": error("`invalid_request`: nothing to release (no assessments in this term)."),
                "404": not_found("course or term"), "409": CONFLICT}, params=[_COURSE, _TERM]),
            "security": BEARER},
    },
    "/api/v1/courses/{course_id}/terms/{term_id}/withdrawals": {
        "post": {**operation("Record a student's withdrawal from a course-term (admin, audited): it never "
                             "counts in the GPA", "grades", _ADMIN, {
                                 "201": json_response(obj({"student_id": STR, "course_id": STR, "term_id": STR,
                                                           "percent": _NUM, "letter": nullable(STR), "points": _NUM,
                                                           "credits": NUMBER, "outcome": STR,
                                                           "finalized_at": TIME}), "Recorded."),
                                 "400": BAD_BODY, "404": not_found("course, term or student"), "409": CONFLICT},
                             params=[_COURSE, _TERM], body=json_request(WithdrawalBody, "The student.")),
                 "security": BEARER},
    },
    "/api/v1/me/grades": {
        "get": {**operation("The caller's courses, marks and grades (released courses only), term and "
                            "cumulative GPA (student)", "grades", _STUDENT, {"200": json_response(obj({
                                "courses": array(ref("StudentCourseGrades")), "scale": ref("GradeScale"),
                                "cumulative_gpa": _GPA,
                                "terms": array(obj({"term_id": STR, "term_name": STR, "term_gpa": _GPA,
                                                    "cumulative_gpa": _GPA}))}), "Oldest term first.")}),
                "security": BEARER},
    },
    "/api/v1/me/grades/what-if": {
        "post": {**operation(
            "What hoped-for marks would give: course percentages and grades, term and cumulative GPA (student). "
            "Assessments without a mark or a hope are left out", "grades", _STUDENT, {
                "200": json_response(obj({
                    "term_id": STR, "term_gpa": _GPA, "cumulative_gpa": _GPA,
                    "courses": array(obj({"course_id": STR, "code": STR, "percent": _PCT, "letter": nullable(STR),
                                          "points": _NUM, "passes": nullable(BOOL), "left_out": INT}))}),
                    "The projection."),
                "400": error("`invalid_request`: a malformed body, a course not yours in that term, a final "
                             "course, or a hope out of range (`field` names it)."),
                "404": not_found("term among yours")}, body=json_request(WhatIfBody, "The hopes.")),
            "security": BEARER},
    },
    "/api/v1/me/transcript": {
        "get": {**operation("The caller's transcript: released courses, terms in order, term and cumulative GPA "
                            "(student)", "grades", _STUDENT, {"200": json_response(ref("Transcript"), "It.")}),
                "security": BEARER},
    },
    "/api/v1/me/transcript.csv": {
        "get": {**operation("The caller's transcript as CSV (student)", "grades", _STUDENT, {
            "200": {"description": "One line per course.", "content": {"text/csv": {"schema": STR}}}}),
            "security": BEARER},
    },
}
