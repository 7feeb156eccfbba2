"""Assignments: the JSON API (``/api/v1/assignments``): create, edit, publish and delete; attachments,
extensions; students' submissions with their receipts; the grading queue, grading (marks or rubric,
the late penalty applied), the bulk zip download and the marks CSV import.

Who may do what (docs/academics.md, "Assignments"): faculty who manage the course (coordinator or
assigned, ``hub.db.academic.manages_sql``) and admins manage an assignment and its work; a student sees
published assignments they are enrolled for and only their own work: another student's submission is
404, a course they do not take 403. Before the course's grades are released for the term a student sees
"returned" and the feedback, but no marks (``hub.db.submissions.student_mark``).
"""
from __future__ import annotations

import base64
import binascii
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify

from hub.db import assessments as db_assessments
from hub.db import assignments as store
from hub.db import submissions as work_store
from hub.db.academic import may_manage_course
from hub.domain.late_policy import describe_lateness, hundredths
from hub.domain.leave import DOCUMENT_TYPES, MAX_DOCUMENT_BYTES, LeaveRuleError, validate_document

from ..apidoc import (
    BAD_URL,
    BOOL,
    CONFLICT,
    INT,
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
from ..context import WebContext, current_context
from ..errors import WebError, forbidden, invalid
from ..errors import not_found as missing
from ..request import EmptyBody, Id, Instant, json_body, path_id, text_arg
from ..serialize import record_json
from ..uploads import attachment_disposition
from ._records import after_commit, now_utc

bp = Blueprint("assignments_api", __name__)

#: The marks CSV's largest size (web/uploads.py allows the body).
IMPORT_MAX_BYTES = 1024 * 1024

# msgspec cannot bound a Decimal: the bounds are checked by _bounded (and the tables' CHECKs).
Decimalish = Annotated[Decimal, Meta(description="Marks, 0 to 100000 (a number or a decimal string).")]
Percent = Annotated[Decimal, Meta(description="A percentage, 0 to 100 (a number or a decimal string).")]
Positive = Annotated[Decimal, Meta(description="More than 0, at most 100000 (a number or a decimal string).")]


def _bounded(value: Decimal | None, field: str, low: Decimal, high: Decimal, *, above_low: bool = False) -> None:
    """400 unless ``value`` is a finite number within the bounds with at most 3 decimals."""
    if value is None:
        return
    exponent = value.as_tuple().exponent
    if (not value.is_finite() or not isinstance(exponent, int) or exponent < -3 or value > high
            or value < low or (above_low and value == low)):
        raise invalid(f"'{field}' must be a number from {low} to {high} with at most 3 decimals.", field=field)


class Criterion(msgspec.Struct):
    criterion: Annotated[str, Meta(min_length=1, max_length=300)]
    max_points: Positive


class CourseworkBody(msgspec.Struct):
    """An assignment as faculty set it. ``section_id`` null: every section of the course in the term."""

    course_id: Id
    term_id: Id
    title: Annotated[str, Meta(min_length=1, max_length=200, pattern=r"\S")]
    max_marks: Positive
    due_at: Instant
    section_id: Id | None = None
    weight: Percent = Decimal(0)
    instructions: Annotated[str, Meta(max_length=20000)] = ""
    opens_at: Instant | None = None
    cut_off_at: Instant | None = None
    grace_minutes: Annotated[int, Meta(ge=0, le=10080)] = 0
    penalty_percent: Percent = Decimal(0)
    penalty_period: Literal["day", "started_day"] = "started_day"
    penalty_cap_percent: Percent = Decimal(100)
    pass_percent: Percent | None = None
    max_attempts: Annotated[int, Meta(ge=1, le=20)] = 3
    rubric: Annotated[list[Criterion], Meta(max_length=30)] = []
    topic_ids: Annotated[list[Annotated[int, Meta(ge=1)]], Meta(max_length=50)] = []


class FileBody(msgspec.Struct):
    """One file, inline. Its type is sniffed from the bytes, as for leave documents."""

    data_base64: Annotated[str, Meta(min_length=1, description=f"The file, at most {MAX_DOCUMENT_BYTES} bytes.",
                                     extra_json_schema={"contentEncoding": "base64"})]
    filename: Annotated[str, Meta(max_length=300)] = ""
    content_type: Annotated[str | None, Meta(description=f"One of {', '.join(DOCUMENT_TYPES)}.")] = None


class SubmissionBody(msgspec.Struct):
    text: Annotated[str, Meta(max_length=work_store.MAX_TEXT_CHARS)] = ""
    files: Annotated[list[FileBody], Meta(max_length=work_store.MAX_FILES)] = []


class ExtensionBody(msgspec.Struct):
    due_at: Instant
    cut_off_at: Instant | None = None
    reason: Annotated[str, Meta(max_length=1000)] = ""


class RubricScore(msgspec.Struct):
    criterion_id: Annotated[int, Meta(ge=1)]
    points: Decimalish


class GradeBody(msgspec.Struct):
    """Marks as given (before any late penalty), or points per rubric criterion (the marks are their sum);
    with both, they must agree."""

    student_id: Id
    raw_marks: Decimalish | None = None
    rubric: Annotated[list[RubricScore], Meta(max_length=30)] = []
    feedback: Annotated[str, Meta(max_length=5000)] = ""


class MarksImportBody(msgspec.Struct):
    """``roll_number,marks[,feedback]`` lines; ``apply`` false (the default) only previews."""

    csv: Annotated[str, Meta(min_length=1, max_length=IMPORT_MAX_BYTES)]
    apply: bool = False


# --- presenters ---------------------------------------------------------------------------------

def _dec(value: Decimal | None) -> str | None:
    """Decimal figures as strings with two decimals: exact, as stored."""
    return None if value is None else str(hundredths(value))


def assignment_json(a: store.Assignment) -> dict[str, Any]:
    shown = record_json(a)
    for name in ("max_marks", "weight", "penalty_percent", "penalty_cap_percent", "pass_percent"):
        shown[name] = _dec(shown[name])
    shown["rubric"] = [{**record_json(c), "max_points": _dec(c.max_points)} for c in a.rubric]
    shown["attachments"] = [{**record_json(f), "url": f"/api/v1/assignments/{a.id}/attachments/{f.id}"}
                            for f in a.attachments]
    return shown


def submission_json(s: work_store.Submission) -> dict[str, Any]:
    shown = record_json(s)
    shown["late"] = describe_lateness(s.late_minutes) if s.late_minutes else None
    shown["files"] = [{**record_json(f), "url": f"/api/v1/submissions/{s.id}/files/{f.id}"} for f in s.files]
    return shown


def _maybe(submission: work_store.Submission | None) -> dict[str, Any] | None:
    return None if submission is None else submission_json(submission)


def mark_json(m: work_store.Mark | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {"status": m.status, "raw_marks": _dec(m.raw_marks), "marks": _dec(m.marks),
            "penalty_note": m.penalty_note, "feedback": m.feedback, "graded_at": m.graded_at,
            "rubric": [{"criterion_id": c, "points": _dec(p)} for c, p in m.rubric]}


def queue_json(row: work_store.QueueRow) -> dict[str, Any]:
    return {"student_id": row.student_id, "roll_number": row.roll_number, "student_name": row.student_name,
            "due_at": row.due_at, "cut_off_at": row.cut_off_at, "extended": row.extended,
            "submission": None if row.submission is None else submission_json(row.submission),
            "mark": mark_json(row.mark)}


# --- access -------------------------------------------------------------------------------------

async def _managed(principal: Principal, raw_id: str) -> int:
    """The assignment id if the principal manages it: 404 when there is none, 403 when not theirs."""
    assessment_id = path_id(raw_id, "assignment")
    if not await store.may_manage(current_context().db, principal.user_id, principal.role, assessment_id):
        raise forbidden("You do not teach this assignment's course.")
    return assessment_id


async def _visible(principal: Principal, raw_id: str) -> int:
    """Managers see any assignment they manage; a student only a published one of their courses."""
    assessment_id = path_id(raw_id, "assignment")
    ctx = current_context()
    if principal.role == "student":
        if not await store.is_for_student(ctx.db, assessment_id, principal.user_id):
            # Whether it exists is not the student's business unless it is theirs.
            raise missing("No such assignment.")
        return assessment_id
    return await _managed(principal, raw_id)


async def _risk_changed(ctx: WebContext, assessment_id: int, student_ids: list[str]) -> None:
    """After a commit that changed these students' marks or submissions: the risk actor re-scores them
    (never blocks; without a hub, nothing)."""
    if student_ids:
        course_id = (await db_assessments.get_assessment(ctx.db, assessment_id)).course_id
        await ctx.risk_changed(course_id, student_ids)


def _file(given: FileBody, field: str) -> store.NewFile:
    try:
        data = base64.b64decode(given.data_base64, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"'{field}.data_base64' is not valid base64.", field=field) from None
    try:
        content_type, clean = validate_document(data, given.content_type, given.filename)
    except LeaveRuleError as refused:
        status = {"document_too_large": 413, "unsupported_document": 415}.get(refused.code, 400)
        raise WebError(status, refused.code, refused.message.replace("The document", "The file"), field) from None
    return store.NewFile(clean, content_type, data)


def _fields(body: CourseworkBody) -> store.AssignmentFields:
    _bounded(body.max_marks, "max_marks", Decimal(0), Decimal(100000), above_low=True)
    for name in ("weight", "penalty_percent", "penalty_cap_percent", "pass_percent"):
        _bounded(getattr(body, name), name, Decimal(0), Decimal(100))
    for criterion in body.rubric:
        _bounded(criterion.max_points, "rubric", Decimal(0), Decimal(100000), above_low=True)
    return store.AssignmentFields(
        title=body.title.strip(), max_marks=body.max_marks, weight=body.weight, instructions=body.instructions,
        opens_at=body.opens_at, due_at=body.due_at, cut_off_at=body.cut_off_at, grace_minutes=body.grace_minutes,
        penalty_percent=body.penalty_percent, penalty_period=body.penalty_period,
        penalty_cap_percent=body.penalty_cap_percent, pass_percent=body.pass_percent,
        max_attempts=body.max_attempts, rubric=tuple((c.criterion.strip(), c.max_points) for c in body.rubric),
        topic_ids=tuple(body.topic_ids))


# --- assignments --------------------------------------------------------------------------------

@bp.get("/api/v1/assignments")
@require("student", "faculty", "admin")
async def list_assignments() -> Response:
    ctx, principal = current_context(), current_principal()
    course_id = text_arg("course_id")
    if principal.role == "student":
        items = [a for a in await store.list_for_student(ctx.db, principal.user_id)
                 if course_id is None or a.course_id == course_id]
        mine = {}
        for a in items:
            subs = await work_store.student_submissions(ctx.db, a.id, principal.user_id)
            mine[a.id] = subs[0] if subs else None
        return jsonify({"items": [{**assignment_json(a), "students": None, "submitted": None, "returned": None,
                                   "my_submission": _maybe(mine[a.id])} for a in items], "total": len(items)})
    user = None if principal.role == "admin" else principal.user_id
    items = await store.list_for_faculty(ctx.db, user, course_id=course_id)
    return jsonify({"items": [assignment_json(a) for a in items], "total": len(items)})


@bp.post("/api/v1/assignments")
@require("faculty", "admin")
async def create() -> tuple[Response, int]:
    ctx, principal = current_context(), current_principal()
    body = await json_body(CourseworkBody)
    if principal.role == "faculty" and not await _manages_course(principal.user_id, body.course_id):
        raise forbidden("You do not teach this course.")
    created = await store.create_assignment(ctx.db, course_id=body.course_id, term_id=body.term_id,
                                            section_id=body.section_id, fields=_fields(body),
                                            created_by=principal.user_id)
    return jsonify(assignment_json(created)), 201


async def _manages_course(user_id: str, course_id: str) -> bool:
    return await may_manage_course(current_context().db, user_id, course_id)


@bp.get("/api/v1/assignments/<raw_id>")
@require("student", "faculty", "admin")
async def get_one(raw_id: str) -> Response:
    principal = current_principal()
    assessment_id = await _visible(principal, raw_id)
    found = assignment_json(await store.get_assignment(current_context().db, assessment_id))
    if principal.role == "student":
        found.update(students=None, submitted=None, returned=None)
    return jsonify(found)


@bp.put("/api/v1/assignments/<raw_id>")
@require("faculty", "admin")
async def update(raw_id: str) -> Response:
    assessment_id = await _managed(current_principal(), raw_id)
    body = await json_body(CourseworkBody)
    current = await store.get_assignment(current_context().db, assessment_id)
    if (body.course_id, body.term_id, body.section_id) != (current.course_id, current.term_id, current.section_id):
        raise invalid("An assignment cannot move to another course, term or section.", field="course_id")
    return jsonify(assignment_json(await store.update_assignment(current_context().db, assessment_id,
                                                                 _fields(body))))


@bp.delete("/api/v1/assignments/<raw_id>")
@require("faculty", "admin")
async def delete(raw_id: str) -> tuple[str, int]:
    assessment_id = await _managed(current_principal(), raw_id)
    await store.delete_assignment(current_context().db, assessment_id)
    return "", 204


@bp.post("/api/v1/assignments/<raw_id>/publish")
@require("faculty", "admin")
async def publish(raw_id: str) -> Response:
    ctx = current_context()
    assessment_id = await _managed(current_principal(), raw_id)
    await json_body(EmptyBody)
    published, notes = await store.publish(ctx.db, assessment_id, now_utc(ctx))
    await after_commit(ctx, {}, notes)
    return jsonify(assignment_json(published))


# --- attachments --------------------------------------------------------------------------------

@bp.post("/api/v1/assignments/<raw_id>/attachments")
@require("faculty", "admin")
async def add_attachment(raw_id: str) -> tuple[Response, int]:
    principal = current_principal()
    assessment_id = await _managed(principal, raw_id)
    file = _file(await json_body(FileBody), "file")
    added = await store.add_attachment(current_context().db, assessment_id, file, principal.user_id)
    return jsonify({**record_json(added), "url": f"/api/v1/assignments/{assessment_id}/attachments/{added.id}"}), 201


@bp.get("/api/v1/assignments/<raw_id>/attachments/<raw_file>")
@require("student", "faculty", "admin")
async def get_attachment(raw_id: str, raw_file: str) -> Response:
    assessment_id = await _visible(current_principal(), raw_id)
    found = await store.get_attachment(current_context().db, assessment_id, path_id(raw_file, "attachment"))
    if found is None:
        raise missing("No such attachment.")
    return _download(found)


@bp.delete("/api/v1/assignments/<raw_id>/attachments/<raw_file>")
@require("faculty", "admin")
async def delete_attachment(raw_id: str, raw_file: str) -> tuple[str, int]:
    assessment_id = await _managed(current_principal(), raw_id)
    if not await store.delete_attachment(current_context().db, assessment_id, path_id(raw_file, "attachment")):
        raise missing("No such attachment.")
    return "", 204


def _download(found: store.StoredFile) -> Response:
    # Served as an attachment with its sniffed type: never rendered as our own page (as leave documents).
    return Response(found.data, content_type=found.content_type, headers={
        "Content-Disposition": attachment_disposition(found.filename),
        "Content-Security-Policy": "default-src 'none'; sandbox",
    })


# --- extensions ---------------------------------------------------------------------------------

@bp.get("/api/v1/assignments/<raw_id>/extensions")
@require("faculty", "admin")
async def list_extensions(raw_id: str) -> Response:
    assessment_id = await _managed(current_principal(), raw_id)
    items = await store.list_extensions(current_context().db, assessment_id)
    return jsonify({"items": [record_json(x) for x in items], "total": len(items)})


@bp.put("/api/v1/assignments/<raw_id>/extensions/<student_id>")
@require("faculty", "admin")
async def grant_extension(raw_id: str, student_id: str) -> Response:
    principal = current_principal()
    assessment_id = await _managed(principal, raw_id)
    body = await json_body(ExtensionBody)
    granted = await store.grant_extension(current_context().db, assessment_id, student_id, due_at=body.due_at,
                                          cut_off_at=body.cut_off_at, reason=body.reason.strip(),
                                          granted_by=principal.user_id)
    return jsonify(record_json(granted))


@bp.delete("/api/v1/assignments/<raw_id>/extensions/<student_id>")
@require("faculty", "admin")
async def revoke_extension(raw_id: str, student_id: str) -> tuple[str, int]:
    assessment_id = await _managed(current_principal(), raw_id)
    if not await store.revoke_extension(current_context().db, assessment_id, student_id):
        raise missing("This student has no extension.")
    return "", 204


# --- submissions --------------------------------------------------------------------------------

@bp.post("/api/v1/assignments/<raw_id>/submissions")
@require("student")
async def submit(raw_id: str) -> tuple[Response, int]:
    ctx, principal = current_context(), current_principal()
    assessment_id = await _visible(principal, raw_id)
    body = await json_body(SubmissionBody)
    files = [_file(f, f"files[{i}]") for i, f in enumerate(body.files)]
    submission = await work_store.submit(ctx.db, assessment_id, principal.user_id, text=body.text, files=files,
                                         now=now_utc(ctx))
    await _risk_changed(ctx, assessment_id, [principal.user_id])
    return jsonify(submission_json(submission)), 201


@bp.get("/api/v1/assignments/<raw_id>/mine")
@require("student")
async def mine(raw_id: str) -> Response:
    ctx, principal = current_context(), current_principal()
    assessment_id = await _visible(principal, raw_id)
    subs = await work_store.student_submissions(ctx.db, assessment_id, principal.user_id)
    mark = await work_store.student_mark(ctx.db, assessment_id, principal.user_id)
    own = await ctx.db.run(lambda conn: store.student_deadline(conn, assessment_id, principal.user_id))
    return jsonify({"submissions": [submission_json(s) for s in subs], "mark": mark_json(mark),
                    "due_at": own.due_at, "cut_off_at": own.cut_off_at, "extended": own.extended})


@bp.get("/api/v1/submissions/<raw_id>/files/<raw_file>")
@require("student", "faculty", "admin")
async def submission_file(raw_id: str, raw_file: str) -> Response:
    ctx, principal = current_context(), current_principal()
    submission = await work_store.get_submission(ctx.db, path_id(raw_id, "submission"))
    if submission is None or (principal.role == "student" and submission.student_id != principal.user_id):
        raise missing("No such submission.")  # another student's work does not exist for a student
    if principal.role != "student":
        await _managed(principal, str(submission.assessment_id))
    found = await work_store.get_file(ctx.db, submission.id, path_id(raw_file, "file"))
    if found is None:
        raise missing("No such file.")
    return _download(found)


# --- grading ------------------------------------------------------------------------------------

@bp.get("/api/v1/assignments/<raw_id>/queue")
@require("faculty", "admin")
async def queue(raw_id: str) -> Response:
    assessment_id = await _managed(current_principal(), raw_id)
    rows = await work_store.grading_queue(current_context().db, assessment_id)
    return jsonify({"items": [queue_json(r) for r in rows], "total": len(rows),
                    "waiting": sum(1 for r in rows if r.submission is not None and r.submission.status == "submitted")})


@bp.post("/api/v1/assignments/<raw_id>/grades")
@require("faculty", "admin")
async def grade(raw_id: str) -> Response:
    ctx, principal = current_context(), current_principal()
    assessment_id = await _managed(principal, raw_id)
    body = await json_body(GradeBody)
    _bounded(body.raw_marks, "raw_marks", Decimal(0), Decimal(100000))
    for score in body.rubric:
        _bounded(score.points, "rubric", Decimal(0), Decimal(100000))
    graded, notes = await work_store.grade(
        ctx.db, assessment_id, work_store.Grade(body.student_id, body.raw_marks,
                                                {s.criterion_id: s.points for s in body.rubric},
                                                body.feedback.strip()),
        graded_by=principal.user_id, now=now_utc(ctx))
    await after_commit(ctx, {}, notes)
    await _risk_changed(ctx, assessment_id, [graded.student_id])
    return jsonify({"student_id": graded.student_id, "raw_marks": _dec(graded.raw_marks),
                    "marks": _dec(graded.marks), "penalty_note": graded.penalty_note})


@bp.post("/api/v1/assignments/<raw_id>/marks/import")
@require("faculty", "admin")
async def import_marks(raw_id: str) -> Response:
    ctx, principal = current_context(), current_principal()
    assessment_id = await _managed(principal, raw_id)
    body = await json_body(MarksImportBody)
    result = await work_store.import_marks(ctx.db, assessment_id, body.csv, apply=body.apply,
                                           graded_by=principal.user_id, now=now_utc(ctx))
    await after_commit(ctx, {}, result.notifications)
    if result.applied:
        await _risk_changed(ctx, assessment_id, [g.student_id for g in result.rows])
    return jsonify({"applied": result.applied, "errors": [record_json(e) for e in result.errors],
                    "rows": [{"student_id": g.student_id, "raw_marks": _dec(g.raw_marks), "marks": _dec(g.marks),
                              "penalty_note": g.penalty_note} for g in result.rows]})


@bp.get("/api/v1/assignments/<raw_id>/submissions.zip")
@require("faculty", "admin")
async def download_zip(raw_id: str) -> Response:
    """Every student's latest attempt, streamed: one file read from PostgreSQL at a time."""
    ctx = current_context()
    assessment_id = await _managed(current_principal(), raw_id)
    return Response(work_store.submissions_zip(ctx.db, assessment_id), content_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="assignment-{assessment_id}-submissions.zip"'})


# --- OpenAPI ------------------------------------------------------------------------------------

_ID = path_param("raw_id", "Assignment id (an assessment of kind `assignment`).", INT)
_FILE = path_param("raw_file", "File id.", INT)
_STUDENT = path_param("student_id", "Student id.", STR)
_MANAGERS = ["faculty", "admin"]
_ALL = ["student", "faculty", "admin"]
_NOT_FOUND = {"404": not_found("assignment")}
_DEC = {"type": "string", "pattern": r"^\d+\.\d{2}$", "description": "Exact, two decimals."}
_REFUSED = error("`assignment_not_open`, `assignment_closed` (past the cut-off), `attempts_used`, "
                 "`resubmission_after_due` or `already_returned`.")
_FILE_REFUSED = {"413": error("`request_entity_too_large` (body) or `document_too_large` (a file over 5 MB)."),
                 "415": error("`unsupported_media_type` (not JSON) or `unsupported_document` (not a PDF, JPEG or "
                              "PNG by its bytes, or not the type declared).")}


def _uploads(op: dict) -> dict:
    """An upload operation: its files' own 413/415 refusals."""
    return {**op, "responses": {**op["responses"], **_FILE_REFUSED}}


_BINARY = {"description": "The file, as an attachment.",
           "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in DOCUMENT_TYPES}}

OPENAPI_SCHEMAS: dict = {
    "Assignment": obj({
        "id": INT, "course_id": STR, "course_code": STR, "course_title": STR, "term_id": STR,
        "section_id": nullable(STR), "title": STR, "max_marks": _DEC, "weight": _DEC, "instructions": STR,
        "opens_at": nullable(TIME), "due_at": TIME, "cut_off_at": nullable(TIME), "grace_minutes": INT,
        "penalty_percent": _DEC, "penalty_period": enum("day", "started_day"), "penalty_cap_percent": _DEC,
        "pass_percent": nullable(_DEC), "max_attempts": INT, "published_at": nullable(TIME),
        "created_by": nullable(STR), "released": BOOL, "submitted": nullable(INT), "returned": nullable(INT),
        "students": nullable(INT),
        "rubric": array(obj({"id": INT, "position": INT, "criterion": STR, "max_points": _DEC})),
        "attachments": array(obj({"id": INT, "filename": STR, "content_type": STR, "size_bytes": INT,
                                  "sha256": STR, "url": STR})),
        "topic_ids": array(INT),
        "my_submission": nullable(ref("Submission")),
    }, required=["id", "title", "due_at"]),
    "Submission": obj({
        "id": INT, "assessment_id": INT, "student_id": STR, "attempt": INT, "submitted_at": TIME, "text": STR,
        "late_minutes": INT, "late": nullable(STR), "sha256": {**STR, "description": "The receipt: SHA-256 of the "
                                                                        "attempt's manifest."},
        "status": enum("submitted", "returned"),
        "files": array(obj({"id": INT, "filename": STR, "content_type": STR, "size_bytes": INT, "sha256": STR,
                            "url": STR})),
    }),
    "AssignmentMark": obj({
        "status": STR, "raw_marks": nullable(_DEC), "marks": nullable(_DEC), "penalty_note": nullable(STR),
        "feedback": nullable(STR), "graded_at": TIME,
        "rubric": array(obj({"criterion_id": INT, "points": _DEC})),
    }),
    "Graded": obj({"student_id": STR, "raw_marks": _DEC, "marks": _DEC, "penalty_note": nullable(STR)}),
}

OPENAPI_PATHS: dict = {
    "/api/v1/assignments": {
        "get": operation("Assignments: a student's published ones (with their latest attempt), a faculty "
                         "member's courses', or all (admin)", "assignments", _ALL,
                         {"200": json_response(obj({"items": array(ref("Assignment")), "total": INT}), "The list."),
                          "400": BAD_URL}, params=[query_str("course_id", "Only this course.")]),
        "post": operation("Create a draft assignment (faculty of the course, admin)", "assignments", _MANAGERS,
                          {"201": json_response(ref("Assignment"), "Created, unpublished."),
                           "400": error("`invalid_request`: e.g. a rubric whose points do not add up to the "
                                        "maximum marks, or a cut-off before the due date.")},
                          body=json_request(CourseworkBody, "The assignment.")),
    },
    "/api/v1/assignments/{raw_id}": {
        "get": operation("One assignment (its managers; a student it is published for)", "assignments", _ALL,
                         {"200": json_response(ref("Assignment"), "The assignment."), **_NOT_FOUND},
                         params=[_ID]),
        "put": operation("Edit an assignment (maximum marks and rubric fixed once work was marked)", "assignments",
                         _MANAGERS, {"200": json_response(ref("Assignment"), "Saved."), "400": BAD_URL,
                                     **_NOT_FOUND, "409": CONFLICT},
                         params=[_ID], body=json_request(CourseworkBody, "The assignment.")),
        "delete": operation("Delete an assignment nobody has submitted to", "assignments", _MANAGERS,
                            {"204": {"description": "Deleted."}, **_NOT_FOUND,
                             "409": error("`conflict`: students have submitted work.")}, params=[_ID]),
    },
    "/api/v1/assignments/{raw_id}/publish": {"post": operation(
        "Publish: students see it and are notified (`assignment_published`)", "assignments", _MANAGERS,
        {"200": json_response(ref("Assignment"), "Published (again: no change)."), "400": BAD_URL, **_NOT_FOUND},
        params=[_ID], body=json_request(EmptyBody, "An empty JSON object."))},
    "/api/v1/assignments/{raw_id}/attachments": {"post": _uploads(
        operation("Attach a PDF/JPEG/PNG to the instructions (at most 5)", "assignments", _MANAGERS,
                    {"201": json_response(obj({"id": INT, "filename": STR, "content_type": STR,
                                               "size_bytes": INT, "sha256": STR, "url": STR}), "Attached."),
                     "400": BAD_URL, **_NOT_FOUND, "409": error("`conflict`: already 5 attachments.")},
                    params=[_ID], body=json_request(FileBody, "The file.")))},
    "/api/v1/assignments/{raw_id}/attachments/{raw_file}": {
        "get": operation("Download an attachment", "assignments", _ALL, {"200": _BINARY, **_NOT_FOUND},
                         params=[_ID, _FILE]),
        "delete": operation("Remove an attachment", "assignments", _MANAGERS,
                            {"204": {"description": "Removed."}, **_NOT_FOUND}, params=[_ID, _FILE]),
    },
    "/api/v1/assignments/{raw_id}/extensions": {"get": operation(
        "Students' extensions", "assignments", _MANAGERS,
        {"200": json_response(obj({"items": array(obj({
            "assessment_id": INT, "student_id": STR, "roll_number": STR, "student_name": STR, "due_at": TIME,
            "cut_off_at": nullable(TIME), "reason": STR, "granted_by": nullable(STR), "granted_at": TIME})),
            "total": INT}), "The list."), **_NOT_FOUND}, params=[_ID])},
    "/api/v1/assignments/{raw_id}/extensions/{student_id}": {
        "put": operation("Give a student their own due date (and cut-off)", "assignments", _MANAGERS,
                         {"200": json_response(obj({}, closed=False), "The extension."), **_NOT_FOUND},
                         params=[_ID, _STUDENT], body=json_request(ExtensionBody, "The student's dates.")),
        "delete": operation("Withdraw a student's extension", "assignments", _MANAGERS,
                            {"204": {"description": "Withdrawn."}, **_NOT_FOUND}, params=[_ID, _STUDENT]),
    },
    "/api/v1/assignments/{raw_id}/submissions": {"post": _uploads(
        operation("Submit work (a student, for themself): text and up to 3 PDF/JPEG/PNG files; the answer is "
                    "the receipt (time and SHA-256)", "assignments", ["student"],
                    {"201": json_response(ref("Submission"), "Stored."), "400": BAD_URL, **_NOT_FOUND,
                     "409": _REFUSED}, params=[_ID], body=json_request(SubmissionBody, "The work.")))},
    "/api/v1/assignments/{raw_id}/mine": {"get": operation(
        "A student's own attempts, dates and mark (marks only after the grades are released)", "assignments",
        ["student"], {"200": json_response(obj({"submissions": array(ref("Submission")),
                                                "mark": nullable(ref("AssignmentMark")), "due_at": TIME,
                                                "cut_off_at": nullable(TIME), "extended": BOOL}), "Yours."),
                      **_NOT_FOUND}, params=[_ID])},
    "/api/v1/submissions/{raw_id}/files/{raw_file}": {"get": operation(
        "Download a submitted file (its student, the assignment's managers)", "assignments", _ALL,
        {"200": _BINARY, "404": not_found("submission or file")},
        params=[path_param("raw_id", "Submission id.", INT), _FILE])},
    "/api/v1/assignments/{raw_id}/queue": {"get": operation(
        "The grading queue: every student with their latest attempt and mark, waiting work first", "assignments",
        _MANAGERS, {"200": json_response(obj({"items": array(obj({
            "student_id": STR, "roll_number": STR, "student_name": STR, "due_at": TIME, "cut_off_at": nullable(TIME),
            "extended": BOOL, "submission": nullable(ref("Submission")), "mark": nullable(ref("AssignmentMark"))})),
            "total": INT, "waiting": INT}), "The queue."), **_NOT_FOUND}, params=[_ID])},
    "/api/v1/assignments/{raw_id}/grades": {"post": operation(
        "Grade a student's latest attempt and return it (`assignment_graded`); the late penalty is applied",
        "assignments", _MANAGERS, {"200": json_response(ref("Graded"), "Graded and returned."), **_NOT_FOUND},
        params=[_ID], body=json_request(GradeBody, "Marks and/or rubric points, and feedback."))},
    "/api/v1/assignments/{raw_id}/marks/import": {"post": operation(
        "Import marks from CSV (roll number, marks, feedback): a preview unless `apply`; all or nothing",
        "assignments", _MANAGERS, {"200": json_response(obj({
            "applied": BOOL, "errors": array(obj({"line": INT, "message": STR})), "rows": array(ref("Graded"))}),
            "The preview or the result, with every bad line."), **_NOT_FOUND},
        params=[_ID], body=json_request(MarksImportBody, "The CSV text."))},
    "/api/v1/assignments/{raw_id}/submissions.zip": {"get": operation(
        "Every student's latest attempt as a zip (streamed), one folder per roll number", "assignments", _MANAGERS,
        {"200": {"description": "The zip.", "content": {"application/zip": {"schema": {"type": "string",
                                                                                      "format": "binary"}}}},
         **_NOT_FOUND}, params=[_ID])},
}
