"""Academic administration API: terms, holidays, rooms, courses, sections, faculty
assignments, enrolments (list + CSV import), weekly timetable slots, timetable
generation and course rules.

Writes are admin-only. Faculty may read, limited to the courses they
coordinate or are assigned to. Bodies are JSON (``api._json_body``), except
the enrolment import, which also takes ``text/csv`` up to
:data:`IMPORT_MAX_BYTES` (web/app.py raises the body limit for that route
only). A change that affects sessions (term dates or timezone, a holiday, a
slot, generation) regenerates the term's sessions in the same transaction
(hub/db/timetable.py), answers what it did to them (``timetable`` and a
``message``), and tells the scheduler through ``WebContext.sessions_changed``
after the commit. PATCH routes change only the fields present in the body.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

from quart import Blueprint, Response, jsonify, request

from hub.db import academic as db_academic
from hub.db import timetable as db_timetable
from hub.db.academic import ASSIGNMENT_ROLES, ROOM_TYPES, SLOT_KINDS, ImportRejected, SlotFields
from hub.db.timetable import RegenerationResult, TimetableChange, regenerate_term
from hub.domain.enrolment_import import parse_enrolment_csv
from hub.domain.timetable import WEEKDAYS, InvalidTimezone, zone

from ..apidoc import (
    BAD_BODY,
    BAD_URL,
    BEARER,
    BOOL,
    CONFLICT,
    DATE,
    FORBIDDEN,
    INT,
    NOT_JSON,
    NUMBER,
    STR,
    TIME,
    TOO_LARGE,
    UNAUTHENTICATED,
    array,
    enum,
    error,
    json_request,
    json_response,
    not_found,
    nullable,
    obj,
    page_of,
    page_params,
    path_param,
    query_int,
    query_str,
    ref,
)
from ..auth import Principal, current_principal, require
from ..context import current_context
from ..errors import WebError, forbidden, invalid
from . import _academic_fields as f
from .api import DEFAULT_PAGE, MAX_PAGE, _int_arg, _json_body

bp = Blueprint("academic", __name__, url_prefix="/api/v1")

#: The enrolment import's body limit (the app's default is 64 KiB).
IMPORT_MAX_BYTES = 2 * 1024 * 1024
IMPORT_PATH = "/api/v1/enrolments/import"


def _page() -> tuple[int, int]:
    return _int_arg("limit", DEFAULT_PAGE, 1, MAX_PAGE), _int_arg("offset", 0, 0, 10**9)


def _faculty_scope(principal: Principal) -> str | None:
    """The faculty filter of a read: their own courses; ``None`` (everything) for admin and ops."""
    return principal.user_id if principal.role == "faculty" else None


def _now() -> datetime:
    return datetime.fromtimestamp(current_context().now(), timezone.utc)


def _timezone(body: dict) -> str:
    name = f.text(body, "timezone", max_length=64, default=current_context().campus_timezone)
    try:
        zone(name)
    except InvalidTimezone:
        raise invalid(f"'timezone' must be an IANA timezone name such as Europe/Berlin; got {name!r}.",
                      field="timezone") from None
    return name


# --- terms ---------------------------------------------------------------------------

@bp.get("/terms")
@require("admin", "faculty")
@f.translated
async def terms() -> Response:
    return jsonify(await db_academic.list_terms(current_context().db, *_page()))


@bp.post("/terms")
@require("admin")
@f.translated
async def create_term() -> tuple[Response, int]:
    body = await _json_body()
    term_id = f.ident(body, "id", prefix="term")
    return jsonify(await db_academic.create_term(
        current_context().db, term_id, f.text(body, "name"), f.day(body, "starts_on"), f.day(body, "ends_on"),
        _timezone(body))), 201


_TERM_FIELDS: dict[str, Callable[[dict, str], Any]] = {
    "name": lambda body, name: f.text(body, name),
    "starts_on": lambda body, name: f.day(body, name),
    "ends_on": lambda body, name: f.day(body, name),
    "timezone": lambda body, name: _timezone(body),
}


@bp.put("/terms/<term_id>")
@require("admin")
@f.translated
async def update_term(term_id: str) -> Response:
    """Replace name, dates and timezone (default: the campus's); new dates or timezone regenerate."""
    body = await _json_body()
    return await _answer(await db_timetable.update_term(
        current_context().db, term_id, {name: read(body, name) for name, read in _TERM_FIELDS.items()},
        now=_now(), actor=current_principal().user_id))


@bp.patch("/terms/<term_id>")
@require("admin")
@f.translated
async def patch_term(term_id: str) -> Response:
    body = await _json_body()
    return await _answer(await db_timetable.update_term(
        current_context().db, term_id, _present(body, _TERM_FIELDS), now=_now(),
        actor=current_principal().user_id))


def _present(body: dict, fields: dict[str, Callable[[dict, str], Any]]) -> dict[str, Any]:
    """The PATCH changes: each field the body names, read (and refused with a 400) by its reader."""
    return {name: read(body, name) for name, read in fields.items() if name in body}


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
    response = jsonify({**change.as_dict(), "message": describe(change.results)})
    response.status_code = status
    return response


@bp.post("/terms/<term_id>/generate")
@require("admin")
@f.translated
async def generate(term_id: str) -> Response:
    """Regenerate the term's sessions from its timetable (``?dry_run=1`` only says what would change)."""
    ctx, principal = current_context(), current_principal()
    dry_run = f.arg_flag("dry_run")
    result = await regenerate_term(ctx.db, term_id, now=_now(), actor=principal.user_id, dry_run=dry_run)
    if not dry_run:
        await ctx.sessions_changed(result.changed_session_ids)
    return jsonify(result.as_dict())


# --- holidays ------------------------------------------------------------------------

@bp.get("/holidays")
@require("admin", "faculty")
@f.translated
async def holidays() -> Response:
    year = _int_arg("year", 0, 1, 9999) if "year" in request.args else None
    return jsonify(await db_academic.list_holidays(current_context().db, *_page(), year=year))


_HOLIDAY_FIELDS: dict[str, Callable[[dict, str], Any]] = {
    "name": lambda body, name: f.text(body, name),
    "starts_on": lambda body, name: f.day(body, name),
    "ends_on": lambda body, name: f.day(body, name),
}


@bp.post("/holidays")
@require("admin")
@f.translated
async def add_holiday() -> Response:
    """Add a holiday; the terms it touches lose their sessions on those days at once."""
    body = await _json_body()
    starts_on = f.day(body, "starts_on")
    ends_on = f.day(body, "ends_on", optional=True) or starts_on
    return await _answer(await db_timetable.add_holiday(
        current_context().db, f.text(body, "name"), starts_on, ends_on, now=_now(),
        actor=current_principal().user_id), 201)


def _int_path(raw: str, name: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # isdigit() alone takes "²"
        raise invalid(f"'{name}' must be a positive integer.", field=name)
    return int(raw)


@bp.patch("/holidays/<holiday_id>")
@require("admin")
@f.translated
async def patch_holiday(holiday_id: str) -> Response:
    holiday = _int_path(holiday_id, "holiday_id")
    body = await _json_body()
    return await _answer(await db_timetable.update_holiday(
        current_context().db, holiday, _present(body, _HOLIDAY_FIELDS), now=_now(),
        actor=current_principal().user_id))


@bp.delete("/holidays/<holiday_id>")
@require("admin")
@f.translated
async def delete_holiday(holiday_id: str) -> Response:
    """Delete a holiday; its days get their sessions back."""
    return await _answer(await db_timetable.delete_holiday(
        current_context().db, _int_path(holiday_id, "holiday_id"), now=_now(), actor=current_principal().user_id))


# --- rooms ---------------------------------------------------------------------------

@bp.get("/rooms")
@require("admin", "faculty", "ops")
@f.translated
async def rooms() -> Response:
    return jsonify(await db_academic.list_rooms(current_context().db, *_page()))


async def _save_room(room_id: str, body: dict, create: bool) -> dict:
    return await db_academic.save_room(
        current_context().db, room_id, f.text(body, "name"), f.text(body, "building"),
        f.choice(body, "room_type", ROOM_TYPES, "lecture_hall"),
        f.integer(body, "capacity", 1, 100_000, optional=True), create=create)


@bp.post("/rooms")
@require("admin")
@f.translated
async def create_room() -> tuple[Response, int]:
    body = await _json_body()
    return jsonify(await _save_room(f.ident(body, "id", prefix="room"), body, True)), 201


@bp.put("/rooms/<room_id>")
@require("admin")
@f.translated
async def update_room(room_id: str) -> Response:
    return jsonify(await _save_room(room_id, await _json_body(), False))


# --- courses -------------------------------------------------------------------------

@bp.get("/courses")
@require("admin", "faculty")
@f.translated
async def courses() -> Response:
    scope = _faculty_scope(current_principal())
    return jsonify(await db_academic.list_courses(current_context().db, *_page(), faculty_id=scope))


async def _save_course(course_id: str, body: dict, create: bool) -> dict:
    return await db_academic.save_course(
        current_context().db, course_id, f.text(body, "code", max_length=32), f.text(body, "title"),
        f.ident(body, "faculty_id"), create=create)


@bp.post("/courses")
@require("admin")
@f.translated
async def create_course() -> tuple[Response, int]:
    body = await _json_body()
    return jsonify(await _save_course(f.ident(body, "id", prefix="course"), body, True)), 201


@bp.put("/courses/<course_id>")
@require("admin")
@f.translated
async def update_course(course_id: str) -> Response:
    return jsonify(await _save_course(course_id, await _json_body(), False))


@bp.get("/courses/<course_id>/rules")
@require("admin", "faculty")
@f.translated
async def course_rules(course_id: str) -> Response:
    ctx, principal = current_context(), current_principal()
    rules = await db_academic.get_rules(ctx.db, course_id)
    if principal.role == "faculty" and not await db_academic.may_manage_course(ctx.db, principal.user_id, course_id):
        raise forbidden("You do not teach this course.")
    return jsonify(rules)


@bp.put("/courses/<course_id>/rules")
@require("admin")
@f.translated
async def put_course_rules(course_id: str) -> Response:
    body = await _json_body()
    values: dict[str, Any] = {}
    for name, high in (("grace_minutes", 240), ("late_cutoff_minutes", 600), ("opens_minutes_before", 240)):
        if name in body:
            values[name] = f.integer(body, name, 0, high)
    if "late_weight" in body:
        values["late_weight"] = round(f.number(body, "late_weight", 0, 1), 3)
    for name in ("warning_pct", "eligible_pct", "condonable_pct"):
        if name in body:
            values[name] = round(f.number(body, name, 0, 100), 2)
    return jsonify(await db_academic.put_rules(
        current_context().db, course_id, values, actor=current_principal().user_id, now=_now()))


# --- sections and assignments ------------------------------------------------------

@bp.get("/sections")
@require("admin", "faculty")
@f.translated
async def sections() -> Response:
    return jsonify(await db_academic.list_sections(
        current_context().db, *_page(), term_id=f.arg_id("term_id"), course_id=f.arg_id("course_id"),
        faculty_id=_faculty_scope(current_principal())))


@bp.post("/sections")
@require("admin")
@f.translated
async def create_section() -> tuple[Response, int]:
    body = await _json_body()
    return jsonify(await db_academic.create_section(
        current_context().db, f.ident(body, "id", prefix="sec"), f.ident(body, "course_id"),
        f.ident(body, "term_id"), f.text(body, "name", max_length=32),
        f.integer(body, "capacity", 1, 100_000, optional=True))), 201


_SECTION_FIELDS: dict[str, Callable[[dict, str], Any]] = {
    "name": lambda body, name: f.text(body, name, max_length=32),
    "capacity": lambda body, name: f.integer(body, name, 1, 100_000, optional=True),
}


@bp.patch("/sections/<section_id>")
@require("admin")
@f.translated
async def patch_section(section_id: str) -> Response:
    """Rename a section or change (``null``: clear) its capacity; its course and term are fixed."""
    body = await _json_body()
    return jsonify(await db_academic.update_section(current_context().db, section_id,
                                                    _present(body, _SECTION_FIELDS)))


@bp.get("/faculty-assignments")
@require("admin", "faculty")
@f.translated
async def assignments() -> Response:
    principal = current_principal()
    faculty_id = principal.user_id if principal.role == "faculty" else f.arg_id("faculty_id")
    return jsonify(await db_academic.list_assignments(
        current_context().db, *_page(), course_id=f.arg_id("course_id"), faculty_id=faculty_id))


@bp.post("/faculty-assignments")
@require("admin")
@f.translated
async def add_assignment() -> tuple[Response, int]:
    body = await _json_body()
    return jsonify(await db_academic.add_assignment(
        current_context().db, f.ident(body, "course_id"), f.ident(body, "faculty_id"),
        f.optional_ident(body, "section_id"), f.choice(body, "role", ASSIGNMENT_ROLES, "instructor"))), 201


@bp.delete("/faculty-assignments/<assignment_id>")
@require("admin")
@f.translated
async def remove_assignment(assignment_id: str) -> Response:
    return jsonify(await db_academic.remove_assignment(
        current_context().db, _int_path(assignment_id, "assignment_id")))


# --- enrolments ----------------------------------------------------------------------

@bp.get("/enrolments")
@require("admin", "faculty")
@f.translated
async def enrolments() -> Response:
    return jsonify(await db_academic.list_enrolments(
        current_context().db, *_page(), course_id=f.arg_id("course_id"), section_id=f.arg_id("section_id"),
        student_id=f.arg_id("student_id"), faculty_id=_faculty_scope(current_principal())))


async def _import_text() -> str:
    """The CSV: a ``text/csv`` body, or a JSON body ``{"csv": "..."}``."""
    mimetype = request.mimetype
    raw = await request.get_data()
    if mimetype == "text/csv":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid("The file must be UTF-8 text.", field="csv") from None
    if mimetype == "application/json":
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("csv"), str):
            raise invalid("The body must be a JSON object with a 'csv' string.", field="csv")
        return body["csv"]
    raise WebError(415, "unsupported_media_type", "Send text/csv, or application/json with a 'csv' field.")


@bp.post("/enrolments/import")
@require("admin")
@f.translated
async def import_enrolments() -> Response:
    """All or nothing: 422 with every bad row (line, field, reason) and nothing applied, or 200 with counts."""
    text = await _import_text()
    term_id = f.arg_id("term_id")
    dry_run = f.arg_flag("dry_run")
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
    return jsonify(summary.as_dict())


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
@f.translated
async def slots() -> Response:
    return jsonify(await db_academic.list_slots(
        current_context().db, *_page(), term_id=f.arg_id("term_id"), section_id=f.arg_id("section_id"),
        room_id=f.arg_id("room_id"), faculty_id=_faculty_scope(current_principal())))


def _weekday(body: dict, name: str) -> int:
    weekday = body.get(name)
    if isinstance(weekday, str) and weekday.lower() in WEEKDAYS:
        weekday = WEEKDAYS.index(weekday.lower())
    return f.integer({name: weekday}, name, 0, 6)


_SLOT_FIELDS: dict[str, Callable[[dict, str], Any]] = {
    "room_id": lambda body, name: f.ident(body, name),
    "weekday": _weekday,
    "starts_time": lambda body, name: f.clock_time(body, name),
    "ends_time": lambda body, name: f.clock_time(body, name),
    "valid_from": lambda body, name: f.day(body, name, optional=True),
    "valid_until": lambda body, name: f.day(body, name, optional=True),
    "kind": lambda body, name: f.choice(body, name, SLOT_KINDS),
}


@bp.post("/timetable-slots")
@require("admin")
@f.translated
async def add_slot() -> Response:
    """Add a weekly slot; its sessions from now to the term's end are created at once."""
    body = await _json_body()
    slot_id, section_id = f.ident(body, "id", prefix="slot"), f.ident(body, "section_id")
    slot = SlotFields(
        room_id=f.ident(body, "room_id"), weekday=_weekday(body, "weekday"),
        starts_time=f.clock_time(body, "starts_time"), ends_time=f.clock_time(body, "ends_time"),
        valid_from=f.day(body, "valid_from", optional=True), valid_until=f.day(body, "valid_until", optional=True),
        kind=f.choice(body, "kind", SLOT_KINDS, "lecture"))
    return await _answer(await db_timetable.create_slot(
        current_context().db, slot_id, section_id, slot, now=_now(), actor=current_principal().user_id), 201)


@bp.patch("/timetable-slots/<slot_id>")
@require("admin")
@f.translated
async def patch_slot(slot_id: str) -> Response:
    """Change a slot (its section is fixed); its term's future sessions follow at once."""
    body = await _json_body()
    return await _answer(await db_timetable.update_slot(
        current_context().db, slot_id, _present(body, _SLOT_FIELDS), now=_now(), actor=current_principal().user_id))


@bp.delete("/timetable-slots/<slot_id>")
@require("admin")
@f.translated
async def remove_slot(slot_id: str) -> Response:
    """Delete the slot; its future sessions are removed (or cancelled, if they have history) at once."""
    ctx = current_context()
    result = await db_timetable.delete_slot(ctx.db, slot_id, now=_now(), actor=current_principal().user_id)
    await ctx.sessions_changed(result.changed_session_ids)
    return jsonify(result.as_dict())


# --- OpenAPI -------------------------------------------------------------------------

_ADMIN = ["admin"]
_READERS = ["admin", "faculty"]
_ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", "maxLength": 64}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 200}
_HHMM = {"type": "string", "pattern": r"^\d{2}:\d{2}$"}
_DAY = {"type": "string", "format": "date"}


def _op(summary: str, tag: str, roles: list[str], ok: dict, *, params: list | None = None,
        body: dict | None = None, errors: dict | None = None) -> dict:
    responses = {**ok, "401": UNAUTHENTICATED, "403": FORBIDDEN}
    if params:
        responses["400"] = BAD_URL
    if body is not None:
        responses.update({"400": BAD_BODY, "413": TOO_LARGE, "415": NOT_JSON})
    responses.update(errors or {})
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "security": BEARER, "x-roles": roles,
                          "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = json_request(body, "JSON object; unknown fields are ignored.")
    return op


def _listing(summary: str, tag: str, roles: list[str], item: str, filters: list | None = None) -> dict:
    return {"get": _op(summary, tag, roles, {"200": json_response(page_of(ref(item)), "One page.")},
                       params=[*page_params(MAX_PAGE, DEFAULT_PAGE), *(filters or [])])}


_TERM_BODY = obj({"id": _ID, "name": _TEXT, "starts_on": _DAY, "ends_on": _DAY,
                  "timezone": {"type": "string", "minLength": 1, "maxLength": 64}},
                 required=["name", "starts_on", "ends_on"], closed=False)
_ROOM_BODY = obj({"id": _ID, "name": _TEXT, "building": _TEXT, "room_type": enum(*ROOM_TYPES),
                  "capacity": nullable({"type": "integer", "minimum": 1, "maximum": 100000})},
                 required=["name", "building"], closed=False)
_COURSE_BODY = obj({"id": _ID, "code": {"type": "string", "minLength": 1, "maxLength": 32}, "title": _TEXT,
                    "faculty_id": _ID}, required=["code", "title", "faculty_id"], closed=False)
_PCT = {"type": "number", "minimum": 0, "maximum": 100}
_RULE_FIELDS = {
    "grace_minutes": {"type": "integer", "minimum": 0, "maximum": 240},
    "late_cutoff_minutes": {"type": "integer", "minimum": 0, "maximum": 600},
    "opens_minutes_before": {"type": "integer", "minimum": 0, "maximum": 240},
    "late_weight": {"type": "number", "minimum": 0, "maximum": 1},
    "warning_pct": _PCT, "eligible_pct": _PCT, "condonable_pct": _PCT,
}
_IMPORT_REJECTED = error("`import_rejected`: the file has bad rows; `errors` lists each (line, field, reason). "
                         "Nothing was imported.")
_GEN_PARAMS = [path_param("term_id", "Term id."),
               query_str("dry_run", "`1`/`true`: only report what would change.", enum("0", "1", "true", "false"))]
_PATH_TERM = path_param("term_id", "Term id.")
_PATH_HOLIDAY = path_param("holiday_id", "Holiday id.", {"type": "string", "pattern": r"^\d+$"})
_TERM_PATCH = obj({"name": _TEXT, "starts_on": _DAY, "ends_on": _DAY,
                   "timezone": {"type": "string", "minLength": 1, "maxLength": 64}}, required=[], closed=False)
_HOLIDAY_FIELDS_DOC = {"name": _TEXT, "starts_on": _DAY, "ends_on": _DAY}
_SLOT_FIELDS_DOC = {
    "room_id": _ID, "weekday": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 6}, enum(*WEEKDAYS)]},
    "starts_time": _HHMM, "ends_time": _HHMM, "valid_from": nullable(_DAY), "valid_until": nullable(_DAY),
    "kind": enum(*SLOT_KINDS)}

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
        "course_id": STR, **{k: (INT if v["type"] == "integer" else NUMBER) for k, v in _RULE_FIELDS.items()},
        "customised": BOOL, "updated_at": nullable(TIME), "updated_by": nullable(STR)}),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/terms": {
        **_listing("Terms, newest first", "academic", _READERS, "Term"),
        "post": _op("Create a term (timezone defaults to the campus timezone)", "academic", _ADMIN,
                    {"201": json_response(ref("Term"), "Created.")}, body=_TERM_BODY,
                    errors={"409": CONFLICT}),
    },
    "/api/v1/terms/{term_id}": {
        "put": _op("Replace a term's name, dates and timezone; new dates or timezone regenerate its sessions",
                   "academic", _ADMIN, {"200": json_response(ref("TermChange"), "Updated.")}, params=[_PATH_TERM],
                   body=_TERM_BODY, errors={"404": not_found("term")}),
        "patch": _op("Change some of a term's fields; new dates or timezone regenerate its sessions", "academic",
                     _ADMIN, {"200": json_response(ref("TermChange"), "Updated.")}, params=[_PATH_TERM],
                     body=_TERM_PATCH, errors={"404": not_found("term")}),
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
                    body=obj(_HOLIDAY_FIELDS_DOC, required=["name", "starts_on"], closed=False)),
    },
    "/api/v1/holidays/{holiday_id}": {
        "patch": _op("Change a holiday's name or dates; the terms touching its old or new days are regenerated",
                     "academic", _ADMIN, {"200": json_response(ref("HolidayChange"), "Updated.")},
                     params=[_PATH_HOLIDAY], body=obj(_HOLIDAY_FIELDS_DOC, required=[], closed=False),
                     errors={"404": not_found("holiday")}),
        "delete": _op("Delete a holiday; its days get their sessions back", "academic", _ADMIN,
                      {"200": json_response(ref("HolidayChange"), "Deleted.")}, params=[_PATH_HOLIDAY],
                      errors={"404": not_found("holiday")}),
    },
    "/api/v1/rooms": {
        **_listing("Rooms", "academic", ["admin", "faculty", "ops"], "Room"),
        "post": _op("Create a room", "academic", _ADMIN, {"201": json_response(ref("Room"), "Created.")},
                    body=_ROOM_BODY, errors={"409": CONFLICT}),
    },
    "/api/v1/rooms/{room_id}": {
        "put": _op("Update a room", "academic", _ADMIN, {"200": json_response(ref("Room"), "Updated.")},
                   params=[path_param("room_id", "Room id.")], body=_ROOM_BODY, errors={"404": not_found("room")}),
    },
    "/api/v1/courses": {
        **_listing("Courses (faculty: the ones they teach)", "academic", _READERS, "Course"),
        "post": _op("Create a course; its faculty_id is its coordinator", "academic", _ADMIN,
                    {"201": json_response(ref("Course"), "Created.")}, body=_COURSE_BODY,
                    errors={"409": CONFLICT}),
    },
    "/api/v1/courses/{course_id}": {
        "put": _op("Update a course", "academic", _ADMIN, {"200": json_response(ref("Course"), "Updated.")},
                   params=[path_param("course_id", "Course id.")], body=_COURSE_BODY,
                   errors={"404": not_found("course"), "409": CONFLICT}),
    },
    "/api/v1/courses/{course_id}/rules": {
        "get": _op("A course's check-in and eligibility rules (defaults when not customised)", "academic",
                   _READERS, {"200": json_response(ref("CourseRules"), "The rules.")},
                   params=[path_param("course_id", "Course id.")], errors={"404": not_found("course")}),
        "put": _op("Replace a course's rules (missing fields take the defaults; existing sessions keep theirs)",
                   "academic", _ADMIN, {"200": json_response(ref("CourseRules"), "Saved.")},
                   params=[path_param("course_id", "Course id.")],
                   body=obj(_RULE_FIELDS, required=[], closed=False), errors={"404": not_found("course")}),
    },
    "/api/v1/sections": {
        **_listing("Sections (faculty: of their courses)", "academic", _READERS, "Section",
                   [query_str("term_id", "Only this term."), query_str("course_id", "Only this course.")]),
        "post": _op("Create a section of a course in a term", "academic", _ADMIN,
                    {"201": json_response(ref("Section"), "Created.")},
                    body=obj({"id": _ID, "course_id": _ID, "term_id": _ID,
                              "name": {"type": "string", "minLength": 1, "maxLength": 32},
                              "capacity": nullable({"type": "integer", "minimum": 1, "maximum": 100000})},
                             required=["course_id", "term_id", "name"], closed=False),
                    errors={"404": not_found("course or term"), "409": CONFLICT}),
    },
    "/api/v1/sections/{section_id}": {
        "patch": _op("Rename a section or change its capacity (null clears it)", "academic", _ADMIN,
                     {"200": json_response(ref("Section"), "Updated.")},
                     params=[path_param("section_id", "Section id.")],
                     body=obj({"name": {"type": "string", "minLength": 1, "maxLength": 32},
                               "capacity": nullable({"type": "integer", "minimum": 1, "maximum": 100000})},
                              required=[], closed=False),
                     errors={"404": not_found("section"), "409": CONFLICT}),
    },
    "/api/v1/faculty-assignments": {
        **_listing("Faculty assignments (faculty: their own)", "academic", _READERS, "FacultyAssignment",
                   [query_str("course_id", "Only this course."), query_str("faculty_id", "Only this faculty.")]),
        "post": _op("Assign a faculty member to a course (or one section of it)", "academic", _ADMIN,
                    {"201": json_response(ref("FacultyAssignment"), "Assigned.")},
                    body=obj({"course_id": _ID, "faculty_id": _ID, "section_id": nullable(_ID),
                              "role": enum(*ASSIGNMENT_ROLES)}, required=["course_id", "faculty_id"], closed=False),
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
                "application/json": {"schema": obj({"csv": STR}, closed=False)},
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
                    body=obj({"id": _ID, "section_id": _ID, **_SLOT_FIELDS_DOC},
                             required=["section_id", "room_id", "weekday", "starts_time", "ends_time"],
                             closed=False),
                    errors={"404": not_found("section or room"), "409": CONFLICT}),
    },
    "/api/v1/timetable-slots/{slot_id}": {
        "patch": _op("Change a slot's room, day, times, validity or kind; its term's future sessions follow",
                     "academic", _ADMIN, {"200": json_response(ref("TimetableSlotChange"), "Updated.")},
                     params=[path_param("slot_id", "Slot id.")],
                     body=obj(_SLOT_FIELDS_DOC, required=[], closed=False),
                     errors={"404": not_found("timetable slot or room"), "409": CONFLICT}),
        "delete": _op("Delete a slot; its future sessions are removed (cancelled if they have history)",
                      "academic", _ADMIN, {"200": json_response(ref("TimetableGeneration"), "Deleted.")},
                      params=[path_param("slot_id", "Slot id.")], errors={"404": not_found("timetable slot")}),
    },
}
