"""Assessments API: quizzes, practicals, midterms, exams and projects with their marks (one by one
and in bulk, absent and exempt), the course gradebook, exam sittings with their clash check, and
the exam timetables with attendance eligibility. All under ``/api/v1``.

Ownership: writes and the gradebook are for faculty who teach the course (coordinator or
assigned) and admins. A student sees only their own marks, and only once the course-term's
grades are released (``grade_releases``); their own exam timetable shows at once, with their
attendance eligibility. Assignments are assessments too (kind ``assignment``): they show in the
gradebook, but are created and marked on their own page (web/routes/assignments_api.py).
"""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType
from quart import Blueprint, Response, jsonify, request

from hub.db import assessments as db_assessments
from hub.db import exams as db_exams
from hub.db.academic import may_manage_course
from hub.db.assessments import (
    OTHER_KINDS,
    Assessment,
    Gradebook,
    Mark,
    MarkEntry,
    MarkRefused,
    MarksResult,
    NewAssessment,
)
from hub.db.exams import NewSitting, Sitting, SittingClash, SittingFields
from hub.db.insights import standings
from hub.db.notifications import publish_notifications
from hub.db.submissions import parse_marks_csv
from hub.domain.exam_schedule import Clash
from hub.domain.grades import Item, running_percent, shown_percent

from ..access import attendance_scope
from ..apidoc import (
    BAD_BODY,
    BAD_URL,
    BOOL,
    DATE,
    INT,
    NUMBER,
    STR,
    TIME,
    TOO_LARGE,
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
from ..apidoc import not_found as doc_not_found
from ..auth import Principal, current_principal, require
from ..context import current_context
from ..errors import WebError, forbidden, invalid, not_found
from ..feeds import utc_now
from ..insights import standing_json
from ..request import Id, Instant, Text, flag_arg, json_body, one_of, path_id, present_fields, storable

bp = Blueprint("assessments_api", __name__, url_prefix="/api/v1")

MAX_BULK = 2000
Marks = Annotated[float, Meta(ge=0, le=100000, description="Marks given (at most two decimals).")]
Weight = Annotated[float, Meta(ge=0, le=100, description="Share of the course grade, percent.")]
MaxMarks = Annotated[float, Meta(gt=0, le=100000, description="What full marks are.")]
Feedback = Annotated[str, Meta(max_length=db_assessments.MAX_FEEDBACK)]
Note = Annotated[str, Meta(max_length=500, description="Shown to the students.")]


class AssessmentCreate(msgspec.Struct):
    term_id: Id
    kind: Annotated[str, one_of(OTHER_KINDS)]
    title: Text
    max_marks: MaxMarks
    weight: Weight
    section_id: Id | None = None
    held_on: date | None = None


class AssessmentChange(msgspec.Struct):
    title: Text | UnsetType = UNSET
    max_marks: MaxMarks | UnsetType = UNSET
    weight: Weight | UnsetType = UNSET
    held_on: date | None | UnsetType = UNSET
    section_id: Id | None | UnsetType = UNSET


class MarkBody(msgspec.Struct):
    status: Annotated[str, one_of(db_assessments.MARK_STATUSES)] = "graded"
    marks: Marks | None = None
    feedback: Feedback | None = None


class BulkMark(msgspec.Struct):
    status: Annotated[str, one_of(db_assessments.MARK_STATUSES)] = "graded"
    student_id: Id | None = None
    roll_number: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    marks: Marks | None = None
    feedback: Feedback | None = None


class BulkMarks(msgspec.Struct):
    marks: Annotated[list[BulkMark], Meta(min_length=1, max_length=MAX_BULK)]
    reason: Annotated[str, Meta(max_length=1000)] = ""


class SittingCreate(msgspec.Struct):
    room_id: Id
    starts_at: Instant
    ends_at: Instant
    section_id: Id | None = None
    student_id: Id | None = None
    note: Note = ""


class SittingMove(msgspec.Struct):
    room_id: Id
    starts_at: Instant
    ends_at: Instant
    note: Note = ""


# --- presenters -------------------------------------------------------------------------------

def _num(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def assessment_json(a: Assessment) -> dict:
    return {"id": a.id, "course_id": a.course_id, "course_code": a.course_code, "course_title": a.course_title,
            "term_id": a.term_id, "section_id": a.section_id, "section_name": a.section_name, "kind": a.kind,
            "title": a.title, "max_marks": float(a.max_marks), "weight": float(a.weight),
            "held_on": None if a.held_on is None else a.held_on.isoformat(), "created_by": a.created_by,
            "created_at": a.created_at.isoformat(), "updated_at": a.updated_at.isoformat(), "marked": a.marked,
            "editable": a.kind in OTHER_KINDS}


def mark_json(m: Mark) -> dict:
    return {"assessment_id": m.assessment_id, "student_id": m.student_id, "status": m.status,
            "marks": _num(m.marks), "raw_marks": _num(m.raw_marks), "penalty_note": m.penalty_note,
            "feedback": m.feedback, "graded_by": m.graded_by, "graded_at": m.graded_at.isoformat()}


def sitting_json(s: Sitting) -> dict:
    return {"id": s.id, "assessment_id": s.assessment_id, "assessment_title": s.assessment_title, "kind": s.kind,
            "course_id": s.course_id, "course_code": s.course_code, "course_title": s.course_title,
            "term_id": s.term_id, "section_id": s.section_id, "section_name": s.section_name,
            "student_id": s.student_id, "student_name": s.student_name, "room_id": s.room_id,
            "room_name": s.room_name, "starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat(),
            "note": s.note, "sitters": s.sitters}


def clash_json(c: Clash) -> dict:
    """One clash: what is in the way, where and when, which of the students, and why in words."""
    return {"kind": c.kind, "with": c.with_kind, "with_id": c.with_id, "label": c.label, "room_id": c.room_id,
            "room_name": c.room_name, "starts_at": c.starts_at.isoformat(), "ends_at": c.ends_at.isoformat(),
            "students": list(c.students), "reason": c.reason}


def _running(book: Gradebook, student_id: str, section_id: str | None) -> float | None:
    """The student's weighted running percentage (hub/domain/grades.py), two decimals rounded down."""
    items = []
    for a in book.assessments:
        if a.section_id is not None and a.section_id != section_id:
            continue  # another section's assessment: not the student's
        m = book.marks.get((a.id, student_id))
        items.append(Item(a.id, a.weight, a.max_marks, None if m is None else m.status,
                          None if m is None else m.marks))
    pct = running_percent(items)
    return None if pct is None else float(shown_percent(pct))


def gradebook_json(book: Gradebook) -> dict:
    """The gradebook: columns (assessments), rows (students with their marks by assessment id and
    their running weighted percentage over what is marked so far)."""
    return {
        "course_id": book.course_id, "term_id": book.term_id, "released": book.released,
        "assessments": [assessment_json(a) for a in book.assessments],
        "students": [{
            "student_id": s.student_id, "student_name": s.student_name, "roll_number": s.roll_number,
            "section_id": s.section_id, "section_name": s.section_name,
            "marks": {str(a.id): mark_json(m) for a in book.assessments
                      if (m := book.marks.get((a.id, s.student_id))) is not None},
            "running_percent": _running(book, s.student_id, s.section_id),
        } for s in book.students],
    }


def _clash_response(clash: SittingClash) -> Response:
    error = {"code": "exam_clash", "message": clash.message}
    if clash.field is not None:
        error["field"] = clash.field
    response = jsonify({"error": error, "clashes": [clash_json(c) for c in clash.clashes]})
    response.status_code = 409
    return response


# --- scopes ----------------------------------------------------------------------------------

async def _teaches(principal: Principal, course_id: str) -> None:
    """403 unless an admin or faculty who teach the course (the course's existence is checked by the caller)."""
    if principal.role == "admin":
        return
    if principal.role != "faculty" or not await may_manage_course(current_context().db, principal.user_id,
                                                                  course_id):
        raise forbidden("You do not teach this course.")


async def _course(course_id: str) -> None:
    if not await current_context().db.fetchval("SELECT EXISTS (SELECT 1 FROM courses WHERE id = $1)", course_id):
        raise not_found("No such course.")


async def _assessment(raw_id: str) -> Assessment:
    """The assessment of the URL, for faculty who teach its course or an admin (404, 403)."""
    found = await db_assessments.get_assessment(current_context().db, path_id(raw_id, "assessment"))
    await _teaches(current_principal(), found.course_id)
    return found


async def _risk_changed(found: Assessment, result: MarksResult) -> None:
    """After marks were committed: the risk actor re-scores the students whose marks changed (never blocks)."""
    if result.changed:
        await current_context().risk_changed(found.course_id, [m.student_id for m in result.changed])


async def _sitting(raw_id: str) -> Sitting:
    found = await db_exams.get_sitting(current_context().db, path_id(raw_id, "sitting"))
    await _teaches(current_principal(), found.course_id)
    return found


# --- assessments -------------------------------------------------------------------------------

@bp.get("/courses/<course_id>/assessments")
@require("faculty", "admin")
async def list_assessments(course_id: str) -> Response:
    await _course(course_id)
    await _teaches(current_principal(), course_id)
    term_id = request.args.get("term_id") or None
    items = await db_assessments.list_assessments(current_context().db, course_id, term_id)
    return jsonify({"course_id": course_id, "items": [assessment_json(a) for a in items]})


@bp.post("/courses/<course_id>/assessments")
@require("faculty", "admin")
async def create_assessment(course_id: str) -> tuple[Response, int]:
    await _course(course_id)
    principal = current_principal()
    await _teaches(principal, course_id)
    body = await json_body(AssessmentCreate)
    created = await db_assessments.create_assessment(current_context().db, NewAssessment(
        course_id=course_id, term_id=body.term_id, kind=body.kind, title=body.title.strip(),
        max_marks=Decimal(str(body.max_marks)), weight=Decimal(str(body.weight)), section_id=body.section_id,
        held_on=body.held_on), actor=principal.user_id)
    return jsonify(assessment_json(created)), 201


@bp.get("/assessments/<assessment_id>")
@require("faculty", "admin")
async def get_assessment(assessment_id: str) -> Response:
    return jsonify(assessment_json(await _assessment(assessment_id)))


@bp.patch("/assessments/<assessment_id>")
@require("faculty", "admin")
async def update_assessment(assessment_id: str) -> Response:
    found = await _assessment(assessment_id)
    changes: dict[str, Any] = present_fields(await json_body(AssessmentChange))
    for name in ("max_marks", "weight"):
        if name in changes:
            changes[name] = Decimal(str(changes[name]))
    if "title" in changes:
        changes["title"] = changes["title"].strip()
    updated = await db_assessments.update_assessment(current_context().db, found.id, changes,
                                                     actor=current_principal().user_id)
    return jsonify(assessment_json(updated))


@bp.delete("/assessments/<assessment_id>")
@require("faculty", "admin")
async def delete_assessment(assessment_id: str) -> Response:
    found = await _assessment(assessment_id)
    deleted = await db_assessments.delete_assessment(current_context().db, found.id,
                                                     actor=current_principal().user_id)
    return jsonify(assessment_json(deleted))


# --- marks ---------------------------------------------------------------------------------------

def _marks_value(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@bp.get("/assessments/<assessment_id>/marks")
@require("faculty", "admin")
async def assessment_marks(assessment_id: str) -> Response:
    found = await _assessment(assessment_id)
    book = await db_assessments.gradebook(current_context().db, found.course_id, found.term_id, found.section_id)
    items = [mark_json(m) for (a, _), m in sorted(book.marks.items()) if a == found.id]
    return jsonify({"assessment": assessment_json(found), "items": items})


@bp.put("/assessments/<assessment_id>/marks/<student_id>")
@require("faculty", "admin")
async def put_mark(assessment_id: str, student_id: str) -> Response:
    """One student's mark (the gradebook's in-place edit): graded with marks, absent or exempt."""
    found = await _assessment(assessment_id)
    body = await json_body(MarkBody)
    entry = MarkEntry(student_id, body.status, _marks_value(body.marks), body.feedback)
    try:
        result = await db_assessments.record_marks(current_context().db, found.id, [entry],
                                                   actor=current_principal().user_id)
    except MarkRefused as refused:
        _, field, message = refused.errors[0]
        raise invalid(message, field=field) from None
    await _risk_changed(found, result)
    mark = result.changed[0] if result.changed else None
    if mark is None:  # nothing changed: answer the mark as it is
        book = await db_assessments.gradebook(current_context().db, found.course_id, found.term_id)
        mark = book.marks[(found.id, student_id)]
    return jsonify({"mark": mark_json(mark), "changed": bool(result.changed)})


@bp.post("/assessments/<assessment_id>/marks")
@require("faculty", "admin")
async def bulk_marks(assessment_id: str) -> Response:
    """Many marks at once (pasted from a sheet): each by student id or roll number; all or nothing."""
    found = await _assessment(assessment_id)
    body = await json_body(BulkMarks)
    rolls = [m.roll_number for m in body.marks if m.student_id is None and m.roll_number is not None]
    by_roll: dict[str, str] = {}
    if rolls:
        rows = await current_context().db.fetch(
            "SELECT roll_number, id FROM students WHERE roll_number = ANY($1::text[])", rolls)
        by_roll = {r["roll_number"]: r["id"] for r in rows}
    entries: list[MarkEntry] = []
    errors: list[dict] = []  # "line": the entry's place in ``marks``, from 1 (the pasted line)
    for i, m in enumerate(body.marks):
        student_id = m.student_id or (by_roll.get(m.roll_number) if m.roll_number else None)
        if student_id is None:
            errors.append({"line": i + 1, "field": "roll_number" if m.roll_number else "student_id",
                           "reason": f"No student with roll number {m.roll_number}." if m.roll_number
                           else "Give 'student_id' or 'roll_number'."})
            continue
        entries.append(MarkEntry(student_id, m.status, _marks_value(m.marks), m.feedback))
    if not errors:
        try:
            result = await db_assessments.record_marks(current_context().db, found.id, entries,
                                                       actor=current_principal().user_id, reason=body.reason)
        except MarkRefused as refused:
            errors = [{"line": i + 1, "field": f, "reason": msg} for i, f, msg in refused.errors]
    if errors:
        response = jsonify({"error": {"code": "marks_refused", "field": f"marks[{errors[0]['line'] - 1}]",
                                      "message": f"{len(errors)} mark(s) refused; nothing was recorded."},
                            "errors": errors})
        response.status_code = 422
        return response
    await _risk_changed(found, result)
    return jsonify({"changed": [mark_json(m) for m in result.changed], "unchanged": result.unchanged})


class MarksCsv(msgspec.Struct):
    """The marks import as JSON: the CSV file's text."""

    csv: str


@bp.post("/assessments/<assessment_id>/marks/import")
@require("faculty", "admin")
async def import_marks(assessment_id: str) -> Response:
    """Marks from a CSV file (``roll_number,marks[,feedback]``, the assignments' import format):
    all or nothing, 422 with every bad line; ``dry_run`` checks without recording."""
    found = await _assessment(assessment_id)
    text = await _csv_text()
    dry_run = flag_arg("dry_run")
    rows, parse_errors = parse_marks_csv(text)
    errors = [{"line": e.line, "field": None, "reason": e.message} for e in parse_errors]
    by_roll: dict[str, str] = {}
    if rows:
        found_rows = await current_context().db.fetch(
            "SELECT roll_number, id FROM students WHERE roll_number = ANY($1::text[])", [r.roll_number for r in rows])
        by_roll = {r["roll_number"]: r["id"] for r in found_rows}
    errors += [{"line": r.line, "field": "roll_number", "reason": f"No student with roll number {r.roll_number}."}
               for r in rows if r.roll_number not in by_roll]
    known = [r for r in rows if r.roll_number in by_roll]
    if not errors and not known:
        errors.append({"line": 1, "field": None, "reason": "The file has no marks."})
    result = None
    if not errors:
        entries = [MarkEntry(by_roll[r.roll_number], "graded", r.raw_marks, r.feedback or None) for r in known]
        try:
            result = await db_assessments.record_marks(current_context().db, found.id, entries,
                                                       actor=current_principal().user_id, reason="CSV import",
                                                       dry_run=dry_run)
        except MarkRefused as refused:
            errors = [{"line": known[i].line, "field": f, "reason": msg} for i, f, msg in refused.errors]
    if errors:
        response = jsonify({"error": {"code": "import_rejected", "field": "csv",
                                      "message": f"{len(errors)} problem(s) in the file; nothing was recorded."},
                            "errors": sorted(errors, key=lambda e: e["line"])})
        response.status_code = 422
        return response
    assert result is not None  # no errors: recorded (or checked)
    if not dry_run:
        await _risk_changed(found, result)
    return jsonify({"dry_run": dry_run, "changed": len(result.changed), "unchanged": result.unchanged})


async def _csv_text() -> str:
    """The CSV: a ``text/csv`` body, or a JSON body ``{"csv": "..."}`` (as the enrolment import takes)."""
    if request.mimetype == "text/csv":
        raw = await request.get_data(as_text=False)
        assert isinstance(raw, bytes)  # as_text=False; quart's stub says str | bytes
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid("The file must be UTF-8 text.", field="csv") from None
        if not storable(text):
            raise invalid("The file holds a character that cannot be stored.", field="csv")
        return text
    if request.is_json:
        return (await json_body(MarksCsv)).csv
    raise WebError(415, "unsupported_media_type", "Send text/csv, or application/json with a 'csv' field.")


@bp.get("/courses/<course_id>/gradebook")
@require("faculty", "admin")
async def course_gradebook(course_id: str) -> Response:
    ctx = current_context()
    await _course(course_id)
    await _teaches(current_principal(), course_id)
    terms = await db_assessments.course_terms(ctx.db, course_id)
    term_id = request.args.get("term_id") or (terms[0] if terms else None)
    if term_id is None:
        raise not_found("This course has no section in any term yet.")
    if term_id not in terms:
        raise invalid("The course has no section in that term.", field="term_id")
    section_id = request.args.get("section_id") or None
    book = await db_assessments.gradebook(ctx.db, course_id, term_id, section_id)
    return jsonify(gradebook_json(book) | {"terms": terms})


@bp.get("/students/<student_id>/marks")
@require("student", "faculty", "admin")
async def student_marks(student_id: str) -> Response:
    """A student's marks: their own only after release; faculty those of their courses; admin all."""
    ctx, principal = current_context(), current_principal()
    faculty_id = await attendance_scope(ctx, principal, student_id)  # 403 / 404 as for attendance
    items = await db_assessments.student_marks(ctx.db, student_id, released_only=principal.role == "student")
    if faculty_id is not None:
        taught = {c for c in {i.assessment.course_id for i in items}
                  if await may_manage_course(ctx.db, faculty_id, c)}
        items = [i for i in items if i.assessment.course_id in taught]
    return jsonify({"student_id": student_id, "items": [
        {"assessment": assessment_json(i.assessment), "mark": None if i.mark is None else mark_json(i.mark)}
        for i in items]})


# --- sittings ------------------------------------------------------------------------------------

def _new_sitting(found: Assessment, body: SittingCreate) -> NewSitting:
    return NewSitting(found.id, SittingFields(body.room_id, body.starts_at, body.ends_at, body.note.strip()),
                      body.section_id, body.student_id)


@bp.get("/assessments/<assessment_id>/sittings")
@require("faculty", "admin")
async def list_sittings(assessment_id: str) -> Response:
    found = await _assessment(assessment_id)
    items = await db_exams.list_sittings(current_context().db, assessment_id=found.id)
    return jsonify({"assessment": assessment_json(found), "items": [sitting_json(s) for s in items]})


@bp.post("/assessments/<assessment_id>/sittings/check")
@require("faculty", "admin")
async def check_sitting(assessment_id: str) -> Response:
    """The clashes a sitting would have, without scheduling it (``exclude``: a sitting being moved)."""
    found = await _assessment(assessment_id)
    body = await json_body(SittingCreate)
    raw_exclude = request.args.get("exclude")
    exclude = None if raw_exclude is None else path_id(raw_exclude, "sitting")
    clashes = await db_exams.check_sitting(current_context().db, _new_sitting(found, body), exclude=exclude)
    return jsonify({"ok": not clashes, "clashes": [clash_json(c) for c in clashes]})


@bp.post("/assessments/<assessment_id>/sittings")
@require("faculty", "admin")
async def create_sitting(assessment_id: str) -> tuple[Response, int] | Response:
    """Schedule a sitting for a section or one student; 409 ``exam_clash`` with the clashes listed."""
    ctx = current_context()
    found = await _assessment(assessment_id)
    body = await json_body(SittingCreate)
    try:
        sitting, notes = await db_exams.schedule_sitting(ctx.db, _new_sitting(found, body),
                                                         actor=current_principal().user_id, now=utc_now(ctx))
    except SittingClash as clash:
        return _clash_response(clash)
    publish_notifications(ctx.bus, notes)
    return jsonify(sitting_json(sitting)), 201


@bp.patch("/sittings/<sitting_id>")
@require("faculty", "admin")
async def move_sitting(sitting_id: str) -> Response:
    ctx = current_context()
    found = await _sitting(sitting_id)
    body = await json_body(SittingMove)
    try:
        sitting, notes = await db_exams.move_sitting(
            ctx.db, found.id, SittingFields(body.room_id, body.starts_at, body.ends_at, body.note.strip()),
            now=utc_now(ctx))
    except SittingClash as clash:
        return _clash_response(clash)
    publish_notifications(ctx.bus, notes)
    return jsonify(sitting_json(sitting))


@bp.delete("/sittings/<sitting_id>")
@require("faculty", "admin")
async def delete_sitting(sitting_id: str) -> Response:
    found = await _sitting(sitting_id)
    return jsonify(sitting_json(await db_exams.delete_sitting(current_context().db, found.id)))


def _eligibility(standing: dict | None) -> dict | None:
    """The attendance figures shown on an exam entry (web/insights.py's standing, trimmed)."""
    if standing is None:
        return None
    return {k: standing[k] for k in ("eligibility", "band", "percentage", "max_reachable", "below_warning")} | {
        "eligible_pct": standing["rules"]["eligible_pct"], "condonable_pct": standing["rules"]["condonable_pct"]}


async def sitting_roster(sitting: Sitting) -> list[dict]:
    """Who sits it, each with their attendance eligibility in the course (the page uses this too)."""
    ctx = current_context()
    sitters = set(await db_exams.sitting_students(ctx.db, sitting.id))
    rows = await standings(ctx.db, utc_now(ctx), course_id=sitting.course_id)
    return [{"student_id": r.student_id, "student_name": r.student_name, "roll_number": r.roll_number,
             "attendance": _eligibility(standing_json(r))} for r in rows if r.student_id in sitters]


@bp.get("/sittings/<sitting_id>/roster")
@require("faculty", "admin")
async def roster(sitting_id: str) -> Response:
    found = await _sitting(sitting_id)
    items = await sitting_roster(found)
    counts = {band: sum(1 for i in items if (i["attendance"] or {}).get("eligibility") == band)
              for band in ("eligible", "condoned", "condonable", "barred")}
    return jsonify({"sitting": sitting_json(found), "items": items, "counts": counts})


async def student_exam_items(student_id: str) -> list[dict]:
    """The student's sittings in time order, each with their eligibility in its course (the page uses this)."""
    ctx = current_context()
    sittings = await db_exams.student_sittings(ctx.db, student_id)
    by_course = {r.course_id: standing_json(r) for r in await standings(ctx.db, utc_now(ctx), student_id=student_id)}
    return [sitting_json(s) | {"attendance": _eligibility(by_course.get(s.course_id))} for s in sittings]


@bp.get("/students/<student_id>/exams")
@require("student", "faculty", "admin")
async def student_exams(student_id: str) -> Response:
    """A student's exam timetable with their eligibility (the student themself; faculty for their courses)."""
    ctx, principal = current_context(), current_principal()
    faculty_id = await attendance_scope(ctx, principal, student_id)  # 403 / 404 as for attendance
    items = await student_exam_items(student_id)
    if faculty_id is not None:
        taught = {c for c in {i["course_id"] for i in items} if await may_manage_course(ctx.db, faculty_id, c)}
        items = [i for i in items if i["course_id"] in taught]
    return jsonify({"student_id": student_id, "items": items})


# --- OpenAPI ----------------------------------------------------------------------------------------

_TEACHERS = ["faculty", "admin"]
_STUDENTS = ["student", "faculty", "admin"]
_COURSE = path_param("course_id", "Course id.")
_ASSESSMENT = path_param("assessment_id", "Assessment id.")
_SITTING = path_param("sitting_id", "Sitting id.")
_STUDENT = path_param("student_id", "Student (user) id.")
_NUM = nullable(NUMBER)
_ELIGIBILITY = nullable(obj({
    "eligibility": enum("eligible", "condoned", "condonable", "barred"),
    "band": enum("eligible", "condonable", "barred"),
    "percentage": {**_NUM, "description": "Attendance so far, percent, two decimals rounded down."},
    "max_reachable": NUMBER, "below_warning": BOOL, "eligible_pct": NUMBER, "condonable_pct": NUMBER}))
_MARKS_REFUSED = error("`marks_refused`: `errors` lists every bad entry (`line`: its place in `marks`, from 1; "
                       "`field`; `reason`); nothing was recorded.")
_CLASH = error("`exam_clash`: the room or the students are busy then (`clashes` says with what and why); "
               "`conflict`: the section or student already has a sitting of this assessment.")

_SITTING_PROPS = {
    "id": INT, "assessment_id": INT, "assessment_title": STR, "kind": STR, "course_id": STR,
    "course_code": STR, "course_title": STR, "term_id": STR, "section_id": nullable(STR),
    "section_name": nullable(STR), "student_id": nullable(STR), "student_name": nullable(STR),
    "room_id": STR, "room_name": STR, "starts_at": TIME, "ends_at": TIME, "note": STR,
    "sitters": {**INT, "description": "Students who sit it."}}

OPENAPI_SCHEMAS: dict = {
    "Assessment": obj({
        "id": INT, "course_id": STR, "course_code": STR, "course_title": STR, "term_id": STR,
        "section_id": nullable(STR), "section_name": nullable(STR),
        "kind": enum(*db_assessments.ALL_KINDS), "title": STR, "max_marks": NUMBER,
        "weight": {**NUMBER, "description": "Share of the course grade, percent."},
        "held_on": nullable(DATE), "created_by": nullable(STR), "created_at": TIME, "updated_at": TIME,
        "marked": {**INT, "description": "Students with a mark (graded, absent or exempt)."},
        "editable": {**BOOL, "description": "False for assignments (marked in their grading queue)."}}),
    "AssessmentMark": obj({
        "assessment_id": INT, "student_id": STR, "status": enum(*db_assessments.MARK_STATUSES),
        "marks": {**_NUM, "description": "What counts (after any late penalty); null when absent or exempt."},
        "raw_marks": _NUM, "penalty_note": nullable(STR), "feedback": nullable(STR), "graded_by": nullable(STR),
        "graded_at": TIME}),
    "ExamSitting": obj(_SITTING_PROPS),
    "StudentExam": obj({**_SITTING_PROPS, "attendance": _ELIGIBILITY}),
    "ExamClash": obj({
        "kind": enum("room", "students"), "with": enum("class", "sitting"), "with_id": STR, "label": STR,
        "room_id": STR, "room_name": STR, "starts_at": TIME, "ends_at": TIME,
        "students": {**array(STR), "description": "The busy students (a students clash)."},
        "reason": {**STR, "description": "What is in the way, in plain words."}}),
}

OPENAPI_PATHS: dict = {
    "/api/v1/courses/{course_id}/assessments": {
        "get": operation("A course's assessments of every kind (one term with `term_id`)", "assessments",
                         _TEACHERS, {"200": json_response(obj({"course_id": STR, "items": array(ref("Assessment"))}),
                                                          "Assessments."),
                                     "400": BAD_URL, "404": doc_not_found("course")},
                         params=[_COURSE, query_str("term_id", "Only this term.")]),
        "post": operation("Create a quiz, practical, midterm, exam or project", "assessments", _TEACHERS, {
            "201": json_response(ref("Assessment"), "Created."), "400": BAD_BODY,
            "404": doc_not_found("course or term")},
            params=[_COURSE], body=json_request(AssessmentCreate, "What it is, its marks and weight."))},
    "/api/v1/assessments/{assessment_id}": {
        "get": operation("One assessment", "assessments", _TEACHERS, {
            "200": json_response(ref("Assessment"), "The assessment."), "404": doc_not_found("assessment")},
            params=[_ASSESSMENT]),
        "patch": operation("Change an assessment (not an assignment)", "assessments", _TEACHERS, {
            "200": json_response(ref("Assessment"), "Changed."), "400": BAD_BODY,
            "404": doc_not_found("assessment"),
            "409": error("`conflict`: an assignment, or full marks below a mark already given.")},
            params=[_ASSESSMENT], body=json_request(AssessmentChange, "The fields to change.")),
        "delete": operation("Delete an assessment with its marks and sittings (audited)", "assessments",
                            _TEACHERS, {"200": json_response(ref("Assessment"), "Deleted."),
                                        "404": doc_not_found("assessment"),
                                        "409": error("`conflict`: an assignment.")},
                            params=[_ASSESSMENT])},
    "/api/v1/assessments/{assessment_id}/marks": {
        "get": operation("Every mark of an assessment", "assessments", _TEACHERS, {
            "200": json_response(obj({"assessment": ref("Assessment"), "items": array(ref("AssessmentMark"))}),
                                 "Marks."), "404": doc_not_found("assessment")}, params=[_ASSESSMENT]),
        "post": operation("Record many marks at once (by student id or roll number); all or nothing, audited",
                          "assessments", _TEACHERS, {
                              "200": json_response(obj({"changed": array(ref("AssessmentMark")),
                                                        "unchanged": INT}), "Recorded."),
                              "400": BAD_BODY, "404": doc_not_found("assessment"), "422": _MARKS_REFUSED,
                              "409": error("`conflict`: an assignment (marked in its grading queue).")},
                          params=[_ASSESSMENT], body=json_request(BulkMarks, "The marks."))},
    "/api/v1/assessments/{assessment_id}/marks/import": {"post": {
        **operation("Record marks from a CSV file (`roll_number,marks[,feedback]`, header optional); all or "
                    "nothing, audited", "assessments", _TEACHERS, {
                        "200": json_response(obj({"dry_run": BOOL, "changed": INT, "unchanged": INT}),
                                             "Recorded (or, with dry_run, would be)."),
                        "400": BAD_BODY, "404": doc_not_found("assessment"),
                        "409": error("`conflict`: an assignment (its own import is in its grading queue)."),
                        "413": TOO_LARGE,
                        "415": error("`unsupported_media_type`: send text/csv or application/json."),
                        "422": error("`import_rejected`: `errors` lists each bad line (line, field, reason); "
                                     "nothing was recorded.")},
                    params=[_ASSESSMENT, query_str("dry_run", "`1`/`true`: check only.",
                                                   enum("0", "1", "true", "false"))]),
        "requestBody": {"required": True, "content": {"text/csv": {"schema": STR},
                                                      "application/json": {"schema": MarksCsv}}}}},
    "/api/v1/assessments/{assessment_id}/marks/{student_id}": {"put": operation(
        "Record or change one student's mark (graded, absent or exempt); audited", "assessments", _TEACHERS, {
            "200": json_response(obj({"mark": ref("AssessmentMark"), "changed": BOOL}), "The mark."),
            "400": BAD_BODY, "404": doc_not_found("assessment"),
            "409": error("`conflict`: an assignment (marked in its grading queue).")},
        params=[_ASSESSMENT, _STUDENT], body=json_request(MarkBody, "The mark."))},
    "/api/v1/courses/{course_id}/gradebook": {"get": operation(
        "The gradebook of a course-term: every assessment (columns) and student (rows) with marks",
        "assessments", _TEACHERS, {
            "200": json_response(obj({
                "course_id": STR, "term_id": STR, "terms": array(STR),
                "released": {**BOOL, "description": "Students see their marks."},
                "assessments": array(ref("Assessment")),
                "students": array(obj({"student_id": STR, "student_name": STR, "roll_number": STR,
                                       "section_id": nullable(STR), "section_name": nullable(STR),
                                       "running_percent": {**_NUM, "description": (
                                           "Weighted percentage over the work marked so far (absent counts 0, "
                                           "exempt is left out), two decimals rounded down; null before any.")},
                                       "marks": {"type": "object", "additionalProperties": ref("AssessmentMark"),
                                                 "description": "By assessment id."}}))}), "Gradebook."),
            "400": BAD_URL, "404": doc_not_found("course")},
        params=[_COURSE, query_str("term_id", "The term (default: the latest)."),
                query_str("section_id", "Only this section.")])},
    "/api/v1/students/{student_id}/marks": {"get": operation(
        "A student's marks (their own: released courses only; faculty: their courses)", "assessments", _STUDENTS, {
            "200": json_response(obj({"student_id": STR, "items": array(obj({
                "assessment": ref("Assessment"), "mark": nullable(ref("AssessmentMark"))}))}), "Marks."),
            "404": doc_not_found("student")},
        params=[_STUDENT])},
    "/api/v1/assessments/{assessment_id}/sittings": {
        "get": operation("An assessment's sittings", "exams", _TEACHERS, {
            "200": json_response(obj({"assessment": ref("Assessment"), "items": array(ref("ExamSitting"))}),
                                 "Sittings."), "404": doc_not_found("assessment")}, params=[_ASSESSMENT]),
        "post": operation("Schedule a sitting for a section or one student (clashes refused); notifies its "
                          "students", "exams", _TEACHERS, {
                              "201": json_response(ref("ExamSitting"), "Scheduled."), "400": BAD_BODY,
                              "404": doc_not_found("assessment or room"), "409": _CLASH},
                          params=[_ASSESSMENT], body=json_request(SittingCreate, "Who, where and when."))},
    "/api/v1/assessments/{assessment_id}/sittings/check": {"post": operation(
        "What a sitting would clash with, without scheduling it", "exams", _TEACHERS, {
            "200": json_response(obj({"ok": BOOL, "clashes": array(ref("ExamClash"))}), "The clashes."),
            "400": BAD_BODY, "404": doc_not_found("assessment or room")},
        params=[_ASSESSMENT, query_str("exclude", "A sitting being moved (never clashes with itself).")],
        body=json_request(SittingCreate, "Who, where and when."))},
    "/api/v1/sittings/{sitting_id}": {
        "patch": operation("Move a sitting (room, time, note); same clash rules; notifies its students", "exams",
                           _TEACHERS, {"200": json_response(ref("ExamSitting"), "Moved."), "400": BAD_BODY,
                                       "404": doc_not_found("sitting or room"), "409": _CLASH},
                           params=[_SITTING], body=json_request(SittingMove, "Where and when.")),
        "delete": operation("Cancel a sitting", "exams", _TEACHERS, {
            "200": json_response(ref("ExamSitting"), "Deleted."), "404": doc_not_found("sitting")},
            params=[_SITTING])},
    "/api/v1/sittings/{sitting_id}/roster": {"get": operation(
        "Who sits it, each with their attendance eligibility", "exams", _TEACHERS, {
            "200": json_response(obj({"sitting": ref("ExamSitting"), "items": array(obj({
                "student_id": STR, "student_name": STR, "roll_number": STR, "attendance": _ELIGIBILITY})),
                "counts": obj({k: INT for k in ("eligible", "condoned", "condonable", "barred")})}), "Roster."),
            "404": doc_not_found("sitting")}, params=[_SITTING])},
    "/api/v1/students/{student_id}/exams": {"get": operation(
        "A student's exam timetable with their attendance eligibility per course", "exams", _STUDENTS, {
            "200": json_response(obj({"student_id": STR, "items": array(ref("StudentExam"))}), "Exams."),
            "404": doc_not_found("student")},
        params=[_STUDENT])},
}
