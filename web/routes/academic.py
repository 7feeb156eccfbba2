"""Academic administration API: terms, holidays, rooms, courses, sections, faculty
assignments, enrolments (list + CSV import), weekly timetable slots, timetable
generation and course rules.

Writes are admin-only. Faculty may read, limited to the courses they
coordinate or are assigned to. Bodies are JSON, read into the structs below
(web/request.py's ``json_body``; they are also the OpenAPI bodies), except
the enrolment import, which also takes ``text/csv`` up to
:data:`IMPORT_MAX_BYTES` (web/app.py raises the body limit for that route
only). A change that affects sessions (term dates or timezone, a holiday, a
slot, generation) regenerates the term's sessions in the same transaction
(hub/db/timetable.py), answers what it did to them (``timetable`` and a
``message``), and tells the scheduler through ``WebContext.sessions_changed``
after the commit. PATCH routes change only the fields present in the body.
"""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType
from quart import Blueprint, Response, jsonify, request

from hub.db import academic as db_academic
from hub.db import enrolments as db_enrolments
from hub.db import timetable as db_timetable
from hub.db.academic import ASSIGNMENT_ROLES, ROOM_TYPES, SLOT_KINDS, Course, ImportRejected, Room, SlotFields, new_id
from hub.db.session_snapshots import sessions_enrolling
from hub.db.timetable import RegenerationResult, TimetableChange, regenerate_term
from hub.domain.enrolment_import import parse_enrolment_csv
from hub.domain.timetable import InvalidTimezone, zone

from ..apidoc import (
    BAD_BODY,
    BAD_URL,
    BEARER,
    BODY_ERRORS,
    BOOL,
    CONFLICT,
    DATE,
    FORBIDDEN,
    INT,
    NUMBER,
    STR,
    TIME,
    UNAUTHENTICATED,
    array,
    enum,
    error,
    json_request,
    json_response,
    not_found,
    nullable,
    obj,
    path_param,
    query_int,
    query_str,
    ref,
)
from ..auth import Principal, current_principal, require
from ..context import current_context
from ..errors import WebError, forbidden, invalid
from ..feeds import utc_now
from ..live_rosters import rosters_changed
from ..paging import page_json, page_of, page_params, page_request
from ..request import (
    ClockTime,
    Id,
    Text,
    Weekday,
    flag_arg,
    int_arg,
    json_body,
    one_of,
    present_fields,
    text_arg,
)
from ..serialize import record_json
from .terminal_roster_api import terminal_rosters_changed

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

bp = Blueprint("academic", __name__, url_prefix="/api/v1")


# --- presenters ----------------------------------------------------------------------

def academic_json(record: DataclassInstance) -> dict[str, Any]:
    """An academic record (hub/db/academic.py) as the API shows it: its fields, times of day as ``"HH:MM"``."""
    return {name: value.strftime("%H:%M") if isinstance(value, time) else value
            for name, value in record_json(record).items()}


def regeneration_json(result: RegenerationResult) -> dict[str, Any]:
    """What a regeneration did to a term's sessions: counts, and the first 100 created and cancelled ids."""
    return {
        "term_id": result.term_id, "dry_run": result.dry_run, "kept": result.kept,
        "skipped_holidays": result.skipped_holidays,
        "created": len(result.created), "updated": len(result.updated),
        "deleted": len(result.deleted), "cancelled": len(result.cancelled), "restored": len(result.restored),
        "created_ids": result.created[:100], "cancelled_ids": result.cancelled[:100],
    }


def timetable_change_json(change: TimetableChange) -> dict[str, Any]:
    """The changed term, holiday or slot, with its regeneration of each term it affected (``timetable``)."""
    return {**academic_json(change.row), "timetable": [regeneration_json(r) for r in change.results]}

#: The enrolment import's body limit (the app's default is 64 KiB).
IMPORT_MAX_BYTES = 2 * 1024 * 1024
IMPORT_PATH = "/api/v1/enrolments/import"


def _faculty_scope(principal: Principal) -> str | None:
    """The faculty filter of a read: their own courses; ``None`` (everything) for admin and ops."""
    return principal.user_id if principal.role == "faculty" else None


def _now() -> datetime:
    return datetime.fromtimestamp(current_context().now(), timezone.utc)


#: A short name: a course code, a section's name.
ShortText = Annotated[str, Meta(min_length=1, max_length=32, pattern=r"\S")]
TimezoneName = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"\S",
                                   description="An IANA name; default (absent or null): the campus timezone.")]
Capacity = Annotated[int, Meta(ge=1, le=100_000)]
Minutes = Annotated[int, Meta(ge=0, le=240)]
Percent = Annotated[float, Meta(ge=0, le=100)]


class TermBody(msgspec.Struct):
    """A term (``id`` only on creation: generated when absent)."""

    name: Text
    starts_on: date
    ends_on: date
    timezone: TimezoneName | None = None
    id: Id | None = None


class TermPatch(msgspec.Struct):
    name: Text | UnsetType = UNSET
    starts_on: date | UnsetType = UNSET
    ends_on: date | UnsetType = UNSET
    timezone: TimezoneName | None | UnsetType = UNSET


class HolidayBody(msgspec.Struct):
    """A holiday: one day, or ``starts_on`` to ``ends_on``."""

    name: Text
    starts_on: date
    ends_on: date | None = None


class HolidayPatch(msgspec.Struct):
    name: Text | UnsetType = UNSET
    starts_on: date | UnsetType = UNSET
    ends_on: date | UnsetType = UNSET


class RoomBody(msgspec.Struct):
    name: Text
    building: Text
    room_type: Annotated[str, one_of(ROOM_TYPES)] = "lecture_hall"
    capacity: Capacity | None = None
    id: Id | None = None


class RoomPatch(msgspec.Struct):
    """Some of a room's fields (``capacity`` ``null`` clears it); its id is fixed."""

    name: Text | UnsetType = UNSET
    building: Text | UnsetType = UNSET
    room_type: Annotated[str, one_of(ROOM_TYPES)] | UnsetType = UNSET
    capacity: Capacity | None | UnsetType = UNSET


class CourseBody(msgspec.Struct):
    """A course; ``faculty_id`` is its coordinator."""

    code: ShortText
    title: Text
    faculty_id: Id
    id: Id | None = None


class CoursePatch(msgspec.Struct):
    """Some of a course's fields; a new ``faculty_id`` becomes its coordinator."""

    code: ShortText | UnsetType = UNSET
    title: Text | UnsetType = UNSET
    faculty_id: Id | UnsetType = UNSET


class CourseRulesBody(msgspec.Struct):
    """A course's rules: the fields given replace the course's; the others take the defaults."""

    grace_minutes: Minutes | UnsetType = UNSET
    late_cutoff_minutes: Annotated[int, Meta(ge=0, le=600)] | UnsetType = UNSET
    opens_minutes_before: Minutes | UnsetType = UNSET
    late_weight: Annotated[float, Meta(ge=0, le=1)] | UnsetType = UNSET
    warning_pct: Percent | UnsetType = UNSET
    eligible_pct: Percent | UnsetType = UNSET
    condonable_pct: Percent | UnsetType = UNSET


class SectionBody(msgspec.Struct):
    course_id: Id
    term_id: Id
    name: ShortText
    capacity: Capacity | None = None
    id: Id | None = None


class SectionPatch(msgspec.Struct):
    """A section's name or capacity (``null`` clears it); its course and term are fixed."""

    name: ShortText | UnsetType = UNSET
    capacity: Capacity | None | UnsetType = UNSET


class AssignmentBody(msgspec.Struct):
    course_id: Id
    faculty_id: Id
    section_id: Id | None = None
    role: Annotated[str, one_of(ASSIGNMENT_ROLES)] = "instructor"


class SlotBody(msgspec.Struct):
    """A weekly slot; times are in the term's timezone."""

    section_id: Id
    room_id: Id
    weekday: Weekday
    starts_time: ClockTime
    ends_time: ClockTime
    valid_from: date | None = None
    valid_until: date | None = None
    kind: Annotated[str, one_of(SLOT_KINDS)] = "lecture"
    id: Id | None = None


class SlotPatch(msgspec.Struct):
    room_id: Id | UnsetType = UNSET
    weekday: Weekday | UnsetType = UNSET
    starts_time: ClockTime | UnsetType = UNSET
    ends_time: ClockTime | UnsetType = UNSET
    valid_from: date | None | UnsetType = UNSET
    valid_until: date | None | UnsetType = UNSET
    kind: Annotated[str, one_of(SLOT_KINDS)] | UnsetType = UNSET


def _timezone(given: str | None) -> str:
    """``given`` (stripped), or the campus timezone; 400 unless it is an IANA name."""
    name = given.strip() if given is not None else current_context().campus_timezone
    try:
        zone(name)
    except InvalidTimezone:
        raise invalid(f"'timezone' must be an IANA timezone name such as Europe/Berlin; got {name!r}.",
                      field="timezone") from None
    return name


# --- terms ---------------------------------------------------------------------------

@bp.get("/terms")
@require("admin", "faculty")
async def terms() -> Response:
    paging = page_request()
    items, total = await db_academic.list_terms(current_context().db, paging.limit, paging.offset)
    return jsonify(page_json(map(academic_json, items), total, paging))


@bp.post("/terms")
@require("admin")
async def create_term() -> tuple[Response, int]:
    body = await json_body(TermBody)
    return jsonify(academic_json(await db_academic.create_term(
        current_context().db, body.id or new_id("term"), body.name.strip(), body.starts_on, body.ends_on,
        _timezone(body.timezone)))), 201


@bp.put("/terms/<term_id>")
@require("admin")
async def update_term(term_id: str) -> Response:
    """Replace name, dates and timezone (default: the campus's); new dates or timezone regenerate."""
    body = await json_body(TermBody)
    fields = {"name": body.name.strip(), "starts_on": body.starts_on, "ends_on": body.ends_on,
              "timezone": _timezone(body.timezone)}
    return await _answer(await db_timetable.update_term(
        current_context().db, term_id, fields, now=_now(), actor=current_principal().user_id))


@bp.patch("/terms/<term_id>")
@require("admin")
async def patch_term(term_id: str) -> Response:
    fields = present_fields(await json_body(TermPatch))
    if "name" in fields:
        fields["name"] = fields["name"].strip()
    if "timezone" in fields:
        fields["timezone"] = _timezone(fields["timezone"])
    return await _answer(await db_timetable.update_term(
        current_context().db, term_id, fields, now=_now(), actor=current_principal().user_id))


@bp.delete("/terms/<term_id>")
@require("admin")
async def delete_term(term_id: str) -> Response:
    """Delete a term without sections (audited); 409 saying what still refers to it."""
    return jsonify(academic_json(await db_academic.delete_term(
        current_context().db, term_id, actor=current_principal().user_id)))


def describe(results: list[RegenerationResult]) -> str:
    """What a change did to sessions, in a sentence for the admin."""
    def total(attr: str) -> int:
        return sum(len(getattr(r, attr)) for r in results)

    parts = []
    if total("created"):
        parts.append(f"{total('created')} session(s) created")
    if total("updated"):
        parts.append(f"{total('updated')} moved to the slot's room or end time")
    if total("restored"):
        parts.append(f"{total('restored')} cancelled session(s) restored")
    if total("deleted"):
        parts.append(f"{total('deleted')} removed")
    if total("cancelled"):
        ids = ", ".join(sid for r in results for sid in r.cancelled[:10])
        parts.append(f"{total('cancelled')} cancelled rather than deleted because they already have attendance"
                     f" or other history ({ids})")
    return ("Sessions: " + "; ".join(parts) + ".") if parts else "No sessions changed."


async def _answer(change: TimetableChange, status: int = 200) -> Response:
    """The changed row with what happened to sessions; the scheduler is told after the commit."""
    if change.changed_session_ids:
        await current_context().sessions_changed(change.changed_session_ids)
    response = jsonify({**timetable_change_json(change), "message": describe(change.results)})
    response.status_code = status
    return response


@bp.post("/terms/<term_id>/generate")
@require("admin")
async def generate(term_id: str) -> Response:
    """Regenerate the term's sessions from its timetable (``?dry_run=1`` only says what would change)."""
    ctx, principal = current_context(), current_principal()
    dry_run = flag_arg("dry_run")
    result = await regenerate_term(ctx.db, term_id, now=_now(), actor=principal.user_id, dry_run=dry_run)
    if not dry_run:
        await ctx.sessions_changed(result.changed_session_ids)
    return jsonify(regeneration_json(result))


# --- holidays ------------------------------------------------------------------------

@bp.get("/holidays")
@require("admin", "faculty")
async def holidays() -> Response:
    year = int_arg("year", 0, 1, 9999) if "year" in request.args else None
    paging = page_request()
    items, total = await db_academic.list_holidays(current_context().db, paging.limit, paging.offset, year=year)
    return jsonify(page_json(map(academic_json, items), total, paging))


@bp.post("/holidays")
@require("admin")
async def add_holiday() -> Response:
    """Add a holiday; the terms it touches lose their sessions on those days at once."""
    body = await json_body(HolidayBody)
    return await _answer(await db_timetable.add_holiday(
        current_context().db, body.name.strip(), body.starts_on, body.ends_on or body.starts_on, now=_now(),
        actor=current_principal().user_id), 201)


def _int_path(raw: str, name: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # isdigit() alone takes "²"
        raise invalid(f"'{name}' must be a positive integer.", field=name)
    return int(raw)


@bp.patch("/holidays/<holiday_id>")
@require("admin")
async def patch_holiday(holiday_id: str) -> Response:
    holiday = _int_path(holiday_id, "holiday_id")
    fields = present_fields(await json_body(HolidayPatch))
    if "name" in fields:
        fields["name"] = fields["name"].strip()
    return await _answer(await db_timetable.update_holiday(
        current_context().db, holiday, fields, now=_now(),
        actor=current_principal().user_id))


@bp.delete("/holidays/<holiday_id>")
@require("admin")
async def delete_holiday(holiday_id: str) -> Response:
    """Delete a holiday; its days get their sessions back."""
    return await _answer(await db_timetable.delete_holiday(
        current_context().db, _int_path(holiday_id, "holiday_id"), now=_now(), actor=current_principal().user_id))


# --- rooms ---------------------------------------------------------------------------

@bp.get("/rooms")
@require("admin", "faculty", "ops")
async def rooms() -> Response:
    paging = page_request()
    items, total = await db_academic.list_rooms(current_context().db, paging.limit, paging.offset)
    return jsonify(page_json(map(academic_json, items), total, paging))


async def _save_room(room_id: str, body: RoomBody, create: bool) -> Room:
    return await db_academic.save_room(
        current_context().db, room_id, body.name.strip(), body.building.strip(), body.room_type, body.capacity,
        create=create)


@bp.post("/rooms")
@require("admin")
async def create_room() -> tuple[Response, int]:
    body = await json_body(RoomBody)
    return jsonify(academic_json(await _save_room(body.id or new_id("room"), body, True))), 201


@bp.put("/rooms/<room_id>")
@require("admin")
async def update_room(room_id: str) -> Response:
    return jsonify(academic_json(await _save_room(room_id, await json_body(RoomBody), False)))


@bp.patch("/rooms/<room_id>")
@require("admin")
async def patch_room(room_id: str) -> Response:
    fields = present_fields(await json_body(RoomPatch))
    if "name" in fields:
        fields["name"] = fields["name"].strip()
    if "building" in fields:
        fields["building"] = fields["building"].strip()
    return jsonify(academic_json(await db_academic.update_room(current_context().db, room_id, fields)))


@bp.delete("/rooms/<room_id>")
@require("admin")
async def delete_room(room_id: str) -> Response:
    """Delete a room nothing refers to (audited); 409 saying what still refers to it and what to do."""
    return jsonify(academic_json(await db_academic.delete_room(
        current_context().db, room_id, actor=current_principal().user_id)))


# --- courses -------------------------------------------------------------------------

@bp.get("/courses")
@require("admin", "faculty")
async def courses() -> Response:
    scope = _faculty_scope(current_principal())
    paging = page_request()
    items, total = await db_academic.list_courses(current_context().db, paging.limit, paging.offset, faculty_id=scope)
    return jsonify(page_json(map(academic_json, items), total, paging))


async def _save_course(course_id: str, body: CourseBody, create: bool) -> Course:
    return await db_academic.save_course(
        current_context().db, course_id, body.code.strip(), body.title.strip(), body.faculty_id, create=create)


@bp.post("/courses")
@require("admin")
async def create_course() -> tuple[Response, int]:
    body = await json_body(CourseBody)
    return jsonify(academic_json(await _save_course(body.id or new_id("course"), body, True))), 201


@bp.put("/courses/<course_id>")
@require("admin")
async def update_course(course_id: str) -> Response:
    return jsonify(academic_json(await _save_course(course_id, await json_body(CourseBody), False)))


@bp.patch("/courses/<course_id>")
@require("admin")
async def patch_course(course_id: str) -> Response:
    fields = present_fields(await json_body(CoursePatch))
    if "code" in fields:
        fields["code"] = fields["code"].strip()
    if "title" in fields:
        fields["title"] = fields["title"].strip()
    return jsonify(academic_json(await db_academic.update_course(current_context().db, course_id, fields)))


@bp.delete("/courses/<course_id>")
@require("admin")
async def delete_course(course_id: str) -> Response:
    """Delete a course without sections, sessions or enrolments (audited); 409 otherwise."""
    return jsonify(academic_json(await db_academic.delete_course(
        current_context().db, course_id, actor=current_principal().user_id)))


@bp.get("/courses/<course_id>/rules")
@require("admin", "faculty")
async def course_rules(course_id: str) -> Response:
    ctx, principal = current_context(), current_principal()
    rules = await db_academic.get_rules(ctx.db, course_id)
    if principal.role == "faculty" and not await db_academic.may_manage_course(ctx.db, principal.user_id, course_id):
        raise forbidden("You do not teach this course.")
    return jsonify(academic_json(rules))


@bp.put("/courses/<course_id>/rules")
@require("admin")
async def put_course_rules(course_id: str) -> Response:
    values: dict[str, Any] = present_fields(await json_body(CourseRulesBody))
    if "late_weight" in values:
        values["late_weight"] = round(values["late_weight"], 3)
    for name in ("warning_pct", "eligible_pct", "condonable_pct"):
        if name in values:
            values[name] = round(values[name], 2)
    return jsonify(academic_json(await db_academic.put_rules(
        current_context().db, course_id, values, actor=current_principal().user_id, now=_now())))


# --- sections and assignments ------------------------------------------------------

@bp.get("/sections")
@require("admin", "faculty")
async def sections() -> Response:
    paging = page_request()
    items, total = await db_academic.list_sections(
        current_context().db, paging.limit, paging.offset, term_id=text_arg("term_id"),
        course_id=text_arg("course_id"), faculty_id=_faculty_scope(current_principal()))
    return jsonify(page_json(map(academic_json, items), total, paging))


@bp.post("/sections")
@require("admin")
async def create_section() -> tuple[Response, int]:
    body = await json_body(SectionBody)
    return jsonify(academic_json(await db_academic.create_section(
        current_context().db, body.id or new_id("sec"), body.course_id, body.term_id, body.name.strip(),
        body.capacity))), 201


@bp.patch("/sections/<section_id>")
@require("admin")
async def patch_section(section_id: str) -> Response:
    """Rename a section or change (``null``: clear) its capacity; its course and term are fixed."""
    fields = present_fields(await json_body(SectionPatch))
    if "name" in fields:
        fields["name"] = fields["name"].strip()
    return jsonify(academic_json(await db_academic.update_section(current_context().db, section_id, fields)))


@bp.delete("/sections/<section_id>")
@require("admin")
async def delete_section(section_id: str) -> Response:
    """Delete a section without enrolments, slots or sessions (audited); 409 otherwise."""
    return jsonify(academic_json(await db_academic.delete_section(
        current_context().db, section_id, actor=current_principal().user_id)))


@bp.get("/faculty-assignments")
@require("admin", "faculty")
async def assignments() -> Response:
    principal = current_principal()
    faculty_id = principal.user_id if principal.role == "faculty" else text_arg("faculty_id")
    paging = page_request()
    items, total = await db_academic.list_assignments(
        current_context().db, paging.limit, paging.offset, course_id=text_arg("course_id"), faculty_id=faculty_id)
    return jsonify(page_json(map(academic_json, items), total, paging))


@bp.post("/faculty-assignments")
@require("admin")
async def add_assignment() -> tuple[Response, int]:
    body = await json_body(AssignmentBody)
    return jsonify(academic_json(await db_academic.add_assignment(
        current_context().db, body.course_id, body.faculty_id, body.section_id, body.role))), 201


@bp.delete("/faculty-assignments/<assignment_id>")
@require("admin")
async def remove_assignment(assignment_id: str) -> Response:
    return jsonify(academic_json(await db_academic.remove_assignment(
        current_context().db, _int_path(assignment_id, "assignment_id"))))


# --- enrolments ----------------------------------------------------------------------

@bp.get("/enrolments")
@require("admin", "faculty")
async def enrolments() -> Response:
    paging = page_request()
    items, total = await db_academic.list_enrolments(
        current_context().db, paging.limit, paging.offset, course_id=text_arg("course_id"),
        section_id=text_arg("section_id"), student_id=text_arg("student_id"),
        faculty_id=_faculty_scope(current_principal()))
    return jsonify(page_json(map(academic_json, items), total, paging))


class EnrolmentCsv(msgspec.Struct):
    """The enrolment import as JSON: the CSV file's text."""

    csv: str


async def _import_text() -> str:
    """The CSV: a ``text/csv`` body, or a JSON body ``{"csv": "..."}``."""
    if request.mimetype == "text/csv":
        try:
            raw = await request.get_data(as_text=False)
            assert isinstance(raw, bytes)  # as_text=False; quart's stub says str | bytes
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid("The file must be UTF-8 text.", field="csv") from None
    if request.is_json:
        # The CSV parser refuses NUL and unpaired surrogates itself, naming their line (a 422).
        return (await json_body(EnrolmentCsv, storable_text=False)).csv
    raise WebError(415, "unsupported_media_type", "Send text/csv, or application/json with a 'csv' field.")


@bp.post("/enrolments/import")
@require("admin")
async def import_enrolments() -> Response:
    """All or nothing: 422 with every bad row (line, field, reason) and nothing applied, or 200 with counts."""
    text = await _import_text()
    term_id = text_arg("term_id")
    dry_run = flag_arg("dry_run")
    parsed = parse_enrolment_csv(text)
    errors = list(parsed.errors)
    try:
        # With problems in the file, the rows that parsed are still checked (dry run) so that
        # one answer lists every bad line.
        summary = await db_academic.import_enrolments(current_context().db, parsed.rows, term_id=term_id,
                                                      dry_run=dry_run or bool(errors)) if parsed.rows else None
    except ImportRejected as exc:
        errors += exc.errors
    if errors:
        return _rejected(sorted(errors, key=lambda e: (e.line, e.field or "")))
    assert summary is not None  # a file without rows is an error (parse_enrolment_csv)
    if summary.created and not summary.dry_run:
        # New enrolments join the rosters of their courses' live sessions at once.
        await rosters_changed(current_context(), student_ids=[r.student_id for r in parsed.rows if r.student_id],
                              roll_numbers=[r.roll_number for r in parsed.rows if r.roll_number])
    if (summary.created or summary.moved) and not summary.dry_run:
        # One plan for the whole file: a few roster_sync commands per terminal, not one per student.
        await terminal_rosters_changed(current_context(), issued_by=current_principal().user_id,
                                       student_ids=[r.student_id for r in parsed.rows if r.student_id],
                                       roll_numbers=[r.roll_number for r in parsed.rows if r.roll_number])
    return jsonify(record_json(summary))


@bp.delete("/sections/<section_id>/enrolments/<student_id>")
@require("admin")
async def unenrol(section_id: str, student_id: str) -> Response:
    """Take a student out of a section: audited; their records stay; live rosters and terminals follow at once."""
    ctx = current_context()
    actor = current_principal().user_id
    # The student's live sessions, found while they are still enrolled in them.
    live = await sessions_enrolling(ctx.db, utc_now(ctx), student_ids=[student_id])
    removed = await db_enrolments.unenrol(ctx.db, section_id, student_id, actor=actor)
    await rosters_changed(ctx, student_ids=[student_id], session_ids=live)
    synced = await terminal_rosters_changed(ctx, issued_by=actor, student_ids=[student_id])
    return jsonify({"section_id": removed.section_id, "course_id": removed.course_id,
                    "student_id": removed.student_id,
                    "terminal_commands": 0 if synced is None else len(synced.commands)})


def _rejected(errors) -> Response:
    response = jsonify({
        "error": {"code": "import_rejected", "field": "csv",
                  "message": f"{len(errors)} problem(s) in the file; nothing was imported."},
        "errors": [e.as_dict() for e in errors],
    })
    response.status_code = 422
    return response


# --- timetable slots -----------------------------------------------------------------

@bp.get("/timetable-slots")
@require("admin", "faculty")
async def slots() -> Response:
    paging = page_request()
    items, total = await db_academic.list_slots(
        current_context().db, paging.limit, paging.offset, term_id=text_arg("term_id"),
        section_id=text_arg("section_id"), room_id=text_arg("room_id"), faculty_id=_faculty_scope(current_principal()))
    return jsonify(page_json(map(academic_json, items), total, paging))


@bp.post("/timetable-slots")
@require("admin")
async def add_slot() -> Response:
    """Add a weekly slot; its sessions from now to the term's end are created at once."""
    body = await json_body(SlotBody)
    slot = SlotFields(
        room_id=body.room_id, weekday=int(body.weekday), starts_time=body.starts_time, ends_time=body.ends_time,
        valid_from=body.valid_from, valid_until=body.valid_until, kind=body.kind)
    return await _answer(await db_timetable.create_slot(
        current_context().db, body.id or new_id("slot"), body.section_id, slot, now=_now(),
        actor=current_principal().user_id), 201)


@bp.patch("/timetable-slots/<slot_id>")
@require("admin")
async def patch_slot(slot_id: str) -> Response:
    """Change a slot (its section is fixed); its term's future sessions follow at once."""
    fields = present_fields(await json_body(SlotPatch))
    if "weekday" in fields:
        fields["weekday"] = int(fields["weekday"])
    return await _answer(await db_timetable.update_slot(
        current_context().db, slot_id, fields, now=_now(), actor=current_principal().user_id))


@bp.delete("/timetable-slots/<slot_id>")
@require("admin")
async def remove_slot(slot_id: str) -> Response:
    """Delete the slot; its future sessions are removed (or cancelled, if they have history) at once."""
    ctx = current_context()
    result = await db_timetable.delete_slot(ctx.db, slot_id, now=_now(), actor=current_principal().user_id)
    await ctx.sessions_changed(result.changed_session_ids)
    return jsonify(regeneration_json(result))


# --- OpenAPI -------------------------------------------------------------------------

_ADMIN = ["admin"]
_READERS = ["admin", "faculty"]


def _op(summary: str, tag: str, roles: list[str], ok: dict, *, params: list | None = None,
        body: type[msgspec.Struct] | None = None, errors: dict | None = None) -> dict:
    responses = {**ok, "401": UNAUTHENTICATED, "403": FORBIDDEN}
    if params:
        responses["400"] = BAD_URL
    if body is not None:
        responses.update(BODY_ERRORS)
    responses.update(errors or {})
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "security": BEARER, "x-roles": roles,
                          "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = json_request(body, "A JSON object.")
    return op


def _listing(summary: str, tag: str, roles: list[str], item: str, filters: list | None = None) -> dict:
    return {"get": _op(summary, tag, roles, {"200": json_response(page_of(ref(item)), "One page.")},
                       params=[*page_params(), *(filters or [])])}


_RULE_INTEGERS = ("grace_minutes", "late_cutoff_minutes", "opens_minutes_before")
_IMPORT_REJECTED = error("`import_rejected`: the file has bad rows; `errors` lists each (line, field, reason). "
                         "Nothing was imported.")
_STILL_REFERRED = error("`conflict`: other records still refer to it; the message names them and what to do. "
                        "Nothing was deleted.")
_GEN_PARAMS = [path_param("term_id", "Term id."),
               query_str("dry_run", "`1`/`true`: only report what would change.", enum("0", "1", "true", "false"))]
_PATH_TERM = path_param("term_id", "Term id.")
_PATH_HOLIDAY = path_param("holiday_id", "Holiday id.", {"type": "string", "pattern": r"^\d+$"})

_TERM_PROPS = {"id": STR, "name": STR, "starts_on": DATE, "ends_on": DATE, "timezone": STR}
_HOLIDAY_PROPS = {"id": INT, "name": STR, "starts_on": DATE, "ends_on": DATE}
_SLOT_PROPS = {
    "id": STR, "section_id": STR, "course_id": STR, "course_code": STR, "section_name": STR, "term_id": STR,
    "room_id": STR, "room_name": STR, "weekday": {"type": "integer", "minimum": 0, "maximum": 6},
    "starts_time": STR, "ends_time": STR, "valid_from": nullable(DATE), "valid_until": nullable(DATE),
    "kind": enum(*SLOT_KINDS)}
#: What a change did to sessions: one regeneration per affected term, and a sentence saying it.
_CHANGE_PROPS = {"timetable": array(ref("TimetableGeneration")), "message": STR}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "Term": obj(_TERM_PROPS),
    "TermChange": obj({**_TERM_PROPS, **_CHANGE_PROPS}),
    "Holiday": obj(_HOLIDAY_PROPS),
    "HolidayChange": obj({**_HOLIDAY_PROPS, **_CHANGE_PROPS}),
    "Room": obj({"id": STR, "name": STR, "building": STR, "room_type": STR, "capacity": nullable(INT)}),
    "Course": obj({"id": STR, "code": STR, "title": STR, "faculty_id": STR, "faculty_name": STR, "enrolled": INT}),
    "Section": obj({"id": STR, "course_id": STR, "course_code": STR, "term_id": STR, "name": STR,
                    "capacity": nullable(INT), "enrolled": INT}),
    "FacultyAssignment": obj({"id": INT, "course_id": STR, "course_code": STR, "faculty_id": STR,
                              "faculty_name": STR, "section_id": nullable(STR), "role": enum(*ASSIGNMENT_ROLES),
                              "assigned_at": TIME}),
    "Enrolment": obj({"course_id": STR, "course_code": STR, "section_id": nullable(STR),
                      "section_name": nullable(STR), "student_id": STR, "roll_number": STR, "student_name": STR}),
    "EnrolmentImport": obj({"rows": INT, "created": INT, "moved": INT, "unchanged": INT, "dry_run": BOOL}),
    "TimetableSlot": obj(_SLOT_PROPS),
    "TimetableSlotChange": obj({**_SLOT_PROPS, **_CHANGE_PROPS}),
    "TimetableGeneration": obj({
        "term_id": STR, "dry_run": BOOL, "kept": INT, "skipped_holidays": INT, "created": INT, "updated": INT,
        "deleted": INT, "cancelled": INT, "restored": INT, "created_ids": array(STR), "cancelled_ids": array(STR)}),
    "CourseRules": obj({
        "course_id": STR,
        **{k: (INT if k in _RULE_INTEGERS else NUMBER) for k in CourseRulesBody.__struct_fields__},
        "customised": BOOL, "updated_at": nullable(TIME), "updated_by": nullable(STR)}),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/terms": {
        **_listing("Terms, newest first", "academic", _READERS, "Term"),
        "post": _op("Create a term (timezone defaults to the campus timezone)", "academic", _ADMIN,
                    {"201": json_response(ref("Term"), "Created.")}, body=TermBody,
                    errors={"409": CONFLICT}),
    },
    "/api/v1/terms/{term_id}": {
        "put": _op("Replace a term's name, dates and timezone; new dates or timezone regenerate its sessions",
                   "academic", _ADMIN, {"200": json_response(ref("TermChange"), "Updated.")}, params=[_PATH_TERM],
                   body=TermBody, errors={"404": not_found("term")}),
        "patch": _op("Change some of a term's fields; new dates or timezone regenerate its sessions", "academic",
                     _ADMIN, {"200": json_response(ref("TermChange"), "Updated.")}, params=[_PATH_TERM],
                     body=TermPatch, errors={"404": not_found("term")}),
        "delete": _op("Delete a term without sections (audited); 409 says what still refers to it", "academic",
                      _ADMIN, {"200": json_response(ref("Term"), "Deleted.")}, params=[_PATH_TERM],
                      errors={"404": not_found("term"), "409": _STILL_REFERRED}),
    },
    "/api/v1/terms/{term_id}/generate": {
        "post": _op("Generate the term's sessions from its timetable (idempotent)", "academic", _ADMIN,
                    {"200": json_response(ref("TimetableGeneration"), "What changed (or would, with dry_run).")},
                    params=_GEN_PARAMS, errors={"404": not_found("term")}),
    },
    "/api/v1/holidays": {
        **_listing("Holidays (campus-wide days without classes)", "academic", _READERS, "Holiday",
                   [query_int("year", 1, 9999, 2025, "Only holidays touching this year.")]),
        "post": _op("Add a holiday (one day, or starts_on..ends_on); the terms it touches lose their future "
                    "sessions on those days at once (cancelled instead of deleted when they have history)",
                    "academic", _ADMIN, {"201": json_response(ref("HolidayChange"), "Added.")},
                    body=HolidayBody),
    },
    "/api/v1/holidays/{holiday_id}": {
        "patch": _op("Change a holiday's name or dates; the terms touching its old or new days are regenerated",
                     "academic", _ADMIN, {"200": json_response(ref("HolidayChange"), "Updated.")},
                     params=[_PATH_HOLIDAY], body=HolidayPatch,
                     errors={"404": not_found("holiday")}),
        "delete": _op("Delete a holiday; its days get their sessions back", "academic", _ADMIN,
                      {"200": json_response(ref("HolidayChange"), "Deleted.")}, params=[_PATH_HOLIDAY],
                      errors={"404": not_found("holiday")}),
    },
    "/api/v1/rooms": {
        **_listing("Rooms", "academic", ["admin", "faculty", "ops"], "Room"),
        "post": _op("Create a room", "academic", _ADMIN, {"201": json_response(ref("Room"), "Created.")},
                    body=RoomBody, errors={"409": CONFLICT}),
    },
    "/api/v1/rooms/{room_id}": {
        "put": _op("Update a room", "academic", _ADMIN, {"200": json_response(ref("Room"), "Updated.")},
                   params=[path_param("room_id", "Room id.")], body=RoomBody, errors={"404": not_found("room")}),
        "patch": _op("Change some of a room's fields", "academic", _ADMIN,
                     {"200": json_response(ref("Room"), "Updated.")}, params=[path_param("room_id", "Room id.")],
                     body=RoomPatch, errors={"404": not_found("room")}),
        "delete": _op("Delete a room no session, slot, device or ticket refers to (audited); 409 says what "
                      "still refers to it", "academic", _ADMIN, {"200": json_response(ref("Room"), "Deleted.")},
                      params=[path_param("room_id", "Room id.")],
                      errors={"404": not_found("room"), "409": _STILL_REFERRED}),
    },
    "/api/v1/courses": {
        **_listing("Courses (faculty: the ones they teach)", "academic", _READERS, "Course"),
        "post": _op("Create a course; its faculty_id is its coordinator", "academic", _ADMIN,
                    {"201": json_response(ref("Course"), "Created.")}, body=CourseBody,
                    errors={"409": CONFLICT}),
    },
    "/api/v1/courses/{course_id}": {
        "put": _op("Update a course", "academic", _ADMIN, {"200": json_response(ref("Course"), "Updated.")},
                   params=[path_param("course_id", "Course id.")], body=CourseBody,
                   errors={"404": not_found("course"), "409": CONFLICT}),
        "patch": _op("Change some of a course's fields (a new faculty_id becomes its coordinator)", "academic",
                     _ADMIN, {"200": json_response(ref("Course"), "Updated.")},
                     params=[path_param("course_id", "Course id.")], body=CoursePatch,
                     errors={"404": not_found("course"), "409": CONFLICT}),
        "delete": _op("Delete a course without sections, sessions or enrolments (audited; its rules and "
                      "assignments go with it); 409 says what still refers to it", "academic", _ADMIN,
                      {"200": json_response(ref("Course"), "Deleted.")},
                      params=[path_param("course_id", "Course id.")],
                      errors={"404": not_found("course"), "409": _STILL_REFERRED}),
    },
    "/api/v1/courses/{course_id}/rules": {
        "get": _op("A course's check-in and eligibility rules (defaults when not customised)", "academic",
                   _READERS, {"200": json_response(ref("CourseRules"), "The rules.")},
                   params=[path_param("course_id", "Course id.")], errors={"404": not_found("course")}),
        "put": _op("Replace a course's rules (missing fields take the defaults; existing sessions keep theirs)",
                   "academic", _ADMIN, {"200": json_response(ref("CourseRules"), "Saved.")},
                   params=[path_param("course_id", "Course id.")],
                   body=CourseRulesBody, errors={"404": not_found("course")}),
    },
    "/api/v1/sections": {
        **_listing("Sections (faculty: of their courses)", "academic", _READERS, "Section",
                   [query_str("term_id", "Only this term."), query_str("course_id", "Only this course.")]),
        "post": _op("Create a section of a course in a term", "academic", _ADMIN,
                    {"201": json_response(ref("Section"), "Created.")},
                    body=SectionBody,
                    errors={"404": not_found("course or term"), "409": CONFLICT}),
    },
    "/api/v1/sections/{section_id}": {
        "patch": _op("Rename a section or change its capacity (null clears it)", "academic", _ADMIN,
                     {"200": json_response(ref("Section"), "Updated.")},
                     params=[path_param("section_id", "Section id.")],
                     body=SectionPatch,
                     errors={"404": not_found("section"), "409": CONFLICT}),
        "delete": _op("Delete a section without enrolments, slots or sessions (audited); 409 says what still "
                      "refers to it", "academic", _ADMIN, {"200": json_response(ref("Section"), "Deleted.")},
                      params=[path_param("section_id", "Section id.")],
                      errors={"404": not_found("section"), "409": _STILL_REFERRED}),
    },
    "/api/v1/sections/{section_id}/enrolments/{student_id}": {
        "delete": _op("Unenrol a student from a section: audited; their records stay; they leave live rosters "
                      "and their terminal roster changes are queued at once", "academic", _ADMIN,
                      {"200": json_response(obj({"section_id": STR, "course_id": STR, "student_id": STR,
                                                 "terminal_commands": INT}), "Unenrolled.")},
                      params=[path_param("section_id", "Section id."), path_param("student_id", "Student id.")],
                      errors={"404": not_found("section or enrolment")}),
    },
    "/api/v1/faculty-assignments": {
        **_listing("Faculty assignments (faculty: their own)", "academic", _READERS, "FacultyAssignment",
                   [query_str("course_id", "Only this course."), query_str("faculty_id", "Only this faculty.")]),
        "post": _op("Assign a faculty member to a course (or one section of it)", "academic", _ADMIN,
                    {"201": json_response(ref("FacultyAssignment"), "Assigned.")},
                    body=AssignmentBody,
                    errors={"404": not_found("course"), "409": CONFLICT}),
    },
    "/api/v1/faculty-assignments/{assignment_id}": {
        "delete": _op("Remove an assignment (not the coordinator's)", "academic", _ADMIN,
                      {"200": json_response(ref("FacultyAssignment"), "Removed.")},
                      params=[path_param("assignment_id", "Assignment id.", {"type": "string", "pattern": r"^\d+$"})],
                      errors={"404": not_found("assignment"), "409": CONFLICT}),
    },
    "/api/v1/enrolments": {
        **_listing("Enrolments (faculty: of their courses)", "academic", _READERS, "Enrolment",
                   [query_str("course_id", "Only this course."), query_str("section_id", "Only this section."),
                    query_str("student_id", "Only this student.")]),
    },
    IMPORT_PATH: {
        "post": {
            "summary": "Import enrolments from CSV, all or nothing", "tags": ["academic"], "security": BEARER,
            "x-roles": _ADMIN,
            "description": "Columns (header row, any order): `student_id` or `roll_number`; `section_id`, or "
                           "`course_code` + `section` (the section's name in `term_id`). A student already in "
                           "another section of the course is moved. Up to 2 MiB.",
            "parameters": [query_str("term_id", "The term whose sections `course_code` + `section` name."),
                           query_str("dry_run", "`1`/`true`: validate only.", enum("0", "1", "true", "false"))],
            "requestBody": {"required": True, "content": {
                "text/csv": {"schema": STR},
                "application/json": {"schema": EnrolmentCsv},
            }},
            "responses": {
                "200": json_response(ref("EnrolmentImport"), "Imported (or, with dry_run, would be)."),
                "400": BAD_BODY, "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": not_found("term"),
                "413": error("`request_entity_too_large`: the file is over 2 MiB."),
                "415": error("`unsupported_media_type`: send text/csv or application/json."),
                "422": _IMPORT_REJECTED,
            },
        },
    },
    "/api/v1/timetable-slots": {
        **_listing("Weekly timetable slots (faculty: of their courses)", "academic", _READERS, "TimetableSlot",
                   [query_str("term_id", "Only this term."), query_str("section_id", "Only this section."),
                    query_str("room_id", "Only this room.")]),
        "post": _op("Add a weekly slot (weekday 0 = Monday, or its name; times in the term's timezone); its "
                    "sessions from now to the term's end are created at once",
                    "academic", _ADMIN, {"201": json_response(ref("TimetableSlotChange"), "Added.")},
                    body=SlotBody,
                    errors={"404": not_found("section or room"), "409": CONFLICT}),
    },
    "/api/v1/timetable-slots/{slot_id}": {
        "patch": _op("Change a slot's room, day, times, validity or kind; its term's future sessions follow",
                     "academic", _ADMIN, {"200": json_response(ref("TimetableSlotChange"), "Updated.")},
                     params=[path_param("slot_id", "Slot id.")],
                     body=SlotPatch,
                     errors={"404": not_found("timetable slot or room"), "409": CONFLICT}),
        "delete": _op("Delete a slot; its future sessions are removed (cancelled if they have history)",
                      "academic", _ADMIN, {"200": json_response(ref("TimetableGeneration"), "Deleted.")},
                      params=[path_param("slot_id", "Slot id.")], errors={"404": not_found("timetable slot")}),
    },
}
