"""The academic model in PostgreSQL: terms, holidays, rooms, courses, sections,
faculty assignments, enrolments (with the all-or-nothing CSV import),
weekly timetable slots and per-course rules. Writes that change which
sessions a term should have (term dates, holidays, slots) live in
:mod:`hub.db.timetable`, which regenerates in the same transaction.

Concurrency contract: every function is one ``db.run`` (one connection, one
trio ↔ asyncio hop) and may be called from any trio task; writes run in one
transaction, so cancelling the caller rolls them back. Refusals are raised
as :class:`AcademicError` subclasses carrying an HTTP-like status, a stable
code, a message and the offending field; the web layer turns them into its
JSON errors. Results are records (frozen dataclasses, below), never asyncpg
records; the web layer presents them (web/routes/academic.py).
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Callable, Sequence, TypeVar

import asyncpg

from hub.domain.enrolment_import import EnrolmentRow, RowError, one_section_per_course

from ._pool import Database
from .paging import Page
from .security_audit import record as audit_record

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ROOM_TYPES = ("lecture_hall", "lab", "seminar_room", "tutorial_room", "auditorium", "other")
SLOT_KINDS = ("lecture", "lab", "tutorial")
ASSIGNMENT_ROLES = ("instructor", "assistant")

RULE_DEFAULTS: dict[str, Any] = {
    "grace_minutes": 10, "late_cutoff_minutes": 30, "opens_minutes_before": 15,
    "late_weight": 0.8, "warning_pct": 75.0, "eligible_pct": 75.0, "condonable_pct": 65.0,
}


# --- errors --------------------------------------------------------------------

class AcademicError(Exception):
    status = 400
    code = "invalid_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Invalid(AcademicError):
    pass


class NotFound(AcademicError):
    status = 404
    code = "not_found"


class Conflict(AcademicError):
    status = 409
    code = "conflict"


class ImportRejected(AcademicError):
    """The import was refused as a whole; ``errors`` lists every bad row."""

    status = 422
    code = "import_rejected"

    def __init__(self, errors: Sequence[RowError]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the file; nothing was imported.", "csv")
        self.errors = list(errors)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- records ---------------------------------------------------------------------

@dataclass(frozen=True)
class TermRow:
    id: str
    name: str
    starts_on: date
    ends_on: date
    timezone: str


@dataclass(frozen=True)
class HolidayRow:
    id: int
    name: str
    starts_on: date
    ends_on: date


@dataclass(frozen=True)
class Room:
    id: str
    name: str
    building: str
    room_type: str
    capacity: int | None


@dataclass(frozen=True)
class Course:
    id: str
    code: str
    title: str
    faculty_id: str
    faculty_name: str
    enrolled: int


@dataclass(frozen=True)
class Section:
    id: str
    course_id: str
    course_code: str
    term_id: str
    name: str
    capacity: int | None
    enrolled: int


@dataclass(frozen=True)
class Assignment:
    """A faculty member assigned to a course (or one section of it)."""

    id: int
    course_id: str
    course_code: str
    faculty_id: str
    faculty_name: str
    section_id: str | None
    role: str
    assigned_at: datetime


@dataclass(frozen=True)
class Enrolment:
    course_id: str
    course_code: str
    section_id: str | None
    section_name: str | None
    student_id: str
    roll_number: str
    student_name: str


@dataclass(frozen=True)
class Slot:
    """A weekly timetable slot with its section's course and term and its room's name."""

    id: str
    section_id: str
    course_id: str
    course_code: str
    section_name: str
    term_id: str
    room_id: str
    room_name: str
    weekday: int
    starts_time: time
    ends_time: time
    valid_from: date | None
    valid_until: date | None
    kind: str


@dataclass(frozen=True)
class CourseRules:
    """A course's attendance rules (:data:`RULE_DEFAULTS` when it has none: ``customised`` false)."""

    course_id: str
    grace_minutes: int
    late_cutoff_minutes: int
    opens_minutes_before: int
    late_weight: float
    warning_pct: float
    eligible_pct: float
    condonable_pct: float
    customised: bool
    updated_at: datetime | None
    updated_by: str | None


RecordT = TypeVar("RecordT")


def as_record(kind: Callable[..., RecordT], row: asyncpg.Record) -> RecordT:
    """``row`` as the record ``kind`` (its columns by name; numeric columns as floats)."""
    return kind(**{key: float(value) if isinstance(value, Decimal) else value for key, value in row.items()})


async def _paged(conn: asyncpg.Connection, kind: Callable[..., RecordT], select: str, where: str, order: str, args: list,
                 limit: int, offset: int) -> Page[RecordT]:
    total = await conn.fetchval(f"SELECT count(*) FROM ({select} {where}) AS q", *args)
    n = len(args)
    rows = await conn.fetch(f"{select} {where} ORDER BY {order} LIMIT ${n + 1} OFFSET ${n + 2}",
                            *args, limit, offset)
    return Page([as_record(kind, r) for r in rows], total)


# --- access --------------------------------------------------------------------

_MANAGES = (
    "EXISTS (SELECT 1 FROM courses mc WHERE mc.id = {course} AND mc.faculty_id = {user})"
    " OR EXISTS (SELECT 1 FROM faculty_assignments mfa WHERE mfa.course_id = {course} AND mfa.faculty_id = {user})"
)


def manages_sql(course: str, user: str) -> str:
    """SQL condition: ``user`` (coordinator or assigned faculty) may manage ``course``."""
    return "(" + _MANAGES.format(course=course, user=user) + ")"


async def may_manage_course(db: Database, user_id: str, course_id: str) -> bool:
    return await db.fetchval("SELECT " + manages_sql("$1", "$2"), course_id, user_id)


# --- terms and holidays --------------------------------------------------------

TERM_SELECT = "SELECT id, name, starts_on, ends_on, timezone FROM terms"


async def list_terms(db: Database, limit: int, offset: int) -> Page[TermRow]:
    return await db.run(lambda conn: _paged(conn, TermRow, TERM_SELECT, "", "starts_on DESC, id", [], limit, offset))


async def create_term(db: Database, term_id: str, name: str, starts_on: date, ends_on: date,
                      tz: str) -> TermRow:
    """Create a term (409 if the id exists). Changes to a term regenerate its sessions:
    :func:`hub.db.timetable.update_term`."""
    check_range(starts_on, ends_on)
    row = await db.fetchrow(
        "INSERT INTO terms (id, name, starts_on, ends_on, timezone) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (id) DO NOTHING RETURNING id, name, starts_on, ends_on, timezone",
        term_id, name, starts_on, ends_on, tz)
    if row is None:
        raise Conflict(f"A term with id {term_id!r} exists.", "id")
    return as_record(TermRow, row)


async def delete_term(db: Database, term_id: str, *, actor: str) -> TermRow:
    """Delete a term with no sections, audited; 409 otherwise (its sections hold its slots, enrolments
    and sessions), nothing deleted."""

    async def work(conn: asyncpg.Connection) -> TermRow:
        row = await conn.fetchrow(TERM_SELECT + " WHERE id = $1 FOR UPDATE", term_id)
        if row is None:
            raise NotFound("No such term.", "term_id")
        sections = await conn.fetchval("SELECT count(*) FROM sections WHERE term_id = $1", term_id)
        what = f"Term {row['name']}"
        _refuse_delete(what, _counted([(sections, "section", "sections")]),
                       "Delete its sections first, or change the term's dates instead.", "term_id")
        await _delete_row(conn, "DELETE FROM terms WHERE id = $1", term_id, what, "term_id")
        term = as_record(TermRow, row)
        await audit_record(conn, actor=actor, action="deleted", entity="term", entity_id=term_id,
                           before={"name": term.name, "starts_on": term.starts_on.isoformat(),
                                   "ends_on": term.ends_on.isoformat()}, after=None)
        return term

    return await db.run(work, transaction=True)


def check_range(starts_on: date, ends_on: date) -> None:
    if ends_on < starts_on:
        raise Invalid("'ends_on' must not be before 'starts_on'.", "ends_on")


async def list_holidays(db: Database, limit: int, offset: int, *, year: int | None = None,
                        ) -> Page[HolidayRow]:
    """Holidays; adding, changing or deleting one regenerates sessions (hub/db/timetable.py)."""
    where, args = "", []
    if year is not None:
        where, args = "WHERE starts_on <= make_date($1, 12, 31) AND ends_on >= make_date($1, 1, 1)", [year]
    return await db.run(lambda conn: _paged(
        conn, HolidayRow, "SELECT id, name, starts_on, ends_on FROM holidays", where, "starts_on, id", args, limit, offset))


# --- rooms ---------------------------------------------------------------------

_ROOM = "SELECT id, name, building, room_type, capacity FROM rooms"


async def list_rooms(db: Database, limit: int, offset: int) -> Page[Room]:
    return await db.run(lambda conn: _paged(conn, Room, _ROOM, "", "building, name, id", [], limit, offset))


async def save_room(db: Database, room_id: str, name: str, building: str, room_type: str, capacity: int | None,
                    *, create: bool) -> Room:
    if create:
        row = await db.fetchrow(
            "INSERT INTO rooms (id, name, building, room_type, capacity) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (id) DO NOTHING RETURNING id, name, building, room_type, capacity",
            room_id, name, building, room_type, capacity)
        if row is None:
            raise Conflict(f"A room with id {room_id!r} exists.", "id")
    else:
        row = await db.fetchrow(
            "UPDATE rooms SET name = $2, building = $3, room_type = $4, capacity = $5 WHERE id = $1"
            " RETURNING id, name, building, room_type, capacity", room_id, name, building, room_type, capacity)
        if row is None:
            raise NotFound("No such room.", "room_id")
    return as_record(Room, row)


async def update_room(db: Database, room_id: str, changes: dict[str, Any]) -> Room:
    """Change some of a room's fields (``capacity`` ``None`` clears it); 404 for an unknown room."""

    async def work(conn: asyncpg.Connection) -> Room:
        row = await conn.fetchrow(_ROOM + " WHERE id = $1 FOR UPDATE", room_id)
        if row is None:
            raise NotFound("No such room.", "room_id")
        merged = {**dict(row), **changes}
        return as_record(Room, await conn.fetchrow(
            "UPDATE rooms SET name = $2, building = $3, room_type = $4, capacity = $5 WHERE id = $1"
            " RETURNING id, name, building, room_type, capacity",
            room_id, merged["name"], merged["building"], merged["room_type"], merged["capacity"]))

    return await db.run(work, transaction=True)


def _counted(counts: Sequence[tuple[int, str, str]]) -> list[str]:
    """``"3 class sessions"``-style phrases for the non-zero counts of ``(n, singular, plural)``."""
    return [f"{n} {one if n == 1 else many}" for n, one, many in counts if n]


def _refuse_delete(what: str, holders: list[str], advice: str, field: str) -> None:
    """409 saying what still refers to the thing and what to do instead (nothing is deleted)."""
    if holders:
        raise Conflict(f"{what} cannot be deleted: {', '.join(holders)} still refer to it, and deleting it "
                       f"would leave them without it. {advice}", field)


async def _delete_row(conn: asyncpg.Connection, sql: str, key: Any, what: str, field: str) -> None:
    """Run the DELETE; a reference our checks did not name (another table) becomes the same 409."""
    try:
        async with conn.transaction():
            await conn.execute(sql, key)
    except asyncpg.ForeignKeyViolationError as exc:
        table = getattr(exc, "table_name", None) or "other records"
        raise Conflict(f"{what} cannot be deleted: records in {table.replace('_', ' ')} still refer to it.",
                       field) from None


async def delete_room(db: Database, room_id: str, *, actor: str) -> Room:
    """Delete a room that nothing refers to, audited; 409 (nothing deleted) while sessions, timetable slots,
    devices or tickets still name it. Its own check-in networks and threshold rules go with it."""

    async def work(conn: asyncpg.Connection) -> Room:
        row = await conn.fetchrow(_ROOM + " WHERE id = $1 FOR UPDATE", room_id)
        if row is None:
            raise NotFound("No such room.", "room_id")
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM class_sessions WHERE room_id = $1) AS sessions,"
            " (SELECT count(*) FROM timetable_slots WHERE room_id = $1) AS slots,"
            " (SELECT count(*) FROM devices WHERE room_id = $1) AS devices,"
            " (SELECT count(*) FROM tickets WHERE room_id = $1) AS tickets", room_id)
        _refuse_delete(f"Room {row['name']}", _counted([
            (counts["sessions"], "class session", "class sessions"),
            (counts["slots"], "timetable slot", "timetable slots"),
            (counts["devices"], "device", "devices"),
            (counts["tickets"], "ticket", "tickets")]),
            "Move its timetable slots and devices to another room; a room that has held sessions is kept "
            "for their records (rename it instead).", "room_id")
        await _delete_row(conn, "DELETE FROM rooms WHERE id = $1", room_id, f"Room {row['name']}", "room_id")
        room = as_record(Room, row)
        await audit_record(conn, actor=actor, action="deleted", entity="room", entity_id=room_id,
                           before={"name": room.name, "building": room.building}, after=None)
        return room

    return await db.run(work, transaction=True)


# --- courses -------------------------------------------------------------------

_COURSE = (
    "SELECT c.id, c.code, c.title, c.faculty_id, u.display_name AS faculty_name,"
    " (SELECT count(*) FROM enrolments e WHERE e.course_id = c.id) AS enrolled"
    " FROM courses c JOIN users u ON u.id = c.faculty_id"
)


async def list_courses(db: Database, limit: int, offset: int, *, faculty_id: str | None = None,
                       ) -> Page[Course]:
    """All courses, or (``faculty_id``) those the faculty coordinates or is assigned to."""
    where, args = "", []
    if faculty_id is not None:
        where, args = "WHERE " + manages_sql("c.id", "$1"), [faculty_id]
    return await db.run(lambda conn: _paged(conn, Course, _COURSE, where, "c.code, c.id", args, limit, offset))


async def save_course(db: Database, course_id: str, code: str, title: str, faculty_id: str,
                      *, create: bool) -> Course:
    """Create or update a course; its coordinator is also recorded as an assigned instructor."""

    async def work(conn: asyncpg.Connection) -> Course:
        role = await conn.fetchval("SELECT role FROM users WHERE id = $1", faculty_id)
        if role != "faculty":
            raise Invalid("'faculty_id' must be the id of a faculty user.", "faculty_id")
        clash = await conn.fetchval("SELECT id FROM courses WHERE code = $1 AND id <> $2", code, course_id)
        if clash is not None:
            raise Conflict(f"Course code {code!r} is taken by {clash!r}.", "code")
        if create:
            done = await conn.fetchval(
                "INSERT INTO courses (id, code, title, faculty_id) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (id) DO NOTHING RETURNING id", course_id, code, title, faculty_id)
            if done is None:
                raise Conflict(f"A course with id {course_id!r} exists.", "id")
        else:
            done = await conn.fetchval(
                "UPDATE courses SET code = $2, title = $3, faculty_id = $4 WHERE id = $1 RETURNING id",
                course_id, code, title, faculty_id)
            if done is None:
                raise NotFound("No such course.", "course_id")
        await conn.execute(
            "INSERT INTO faculty_assignments (course_id, faculty_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            course_id, faculty_id)
        return as_record(Course, await conn.fetchrow(_COURSE + " WHERE c.id = $1", course_id))

    return await db.run(work, transaction=True)


async def update_course(db: Database, course_id: str, changes: dict[str, Any]) -> Course:
    """Change some of a course's fields (``code``, ``title``, ``faculty_id``), by :func:`save_course`'s rules."""
    row = await db.fetchrow("SELECT code, title, faculty_id FROM courses WHERE id = $1", course_id)
    if row is None:
        raise NotFound("No such course.", "course_id")
    merged = {**dict(row), **changes}
    return await save_course(db, course_id, merged["code"], merged["title"], merged["faculty_id"], create=False)


async def delete_course(db: Database, course_id: str, *, actor: str) -> Course:
    """Delete a course that has no sections, sessions or enrolments, audited (its rules and faculty
    assignments go with it); 409 otherwise, nothing deleted."""

    async def work(conn: asyncpg.Connection) -> Course:
        row = await conn.fetchrow(_COURSE + " WHERE c.id = $1", course_id)
        if row is None:
            raise NotFound("No such course.", "course_id")
        await conn.execute("SELECT 1 FROM courses WHERE id = $1 FOR UPDATE", course_id)
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM sections WHERE course_id = $1) AS sections,"
            " (SELECT count(*) FROM class_sessions WHERE course_id = $1) AS sessions,"
            " (SELECT count(*) FROM enrolments WHERE course_id = $1) AS enrolments", course_id)
        what = f"Course {row['code']}"
        _refuse_delete(what, _counted([
            (counts["sections"], "section", "sections"),
            (counts["sessions"], "class session", "class sessions"),
            (counts["enrolments"], "enrolment", "enrolments")]),
            "Delete its sections first; a course that has held sessions is kept for their records.", "course_id")
        await conn.execute("DELETE FROM faculty_assignments WHERE course_id = $1", course_id)
        await conn.execute("DELETE FROM course_rules WHERE course_id = $1", course_id)
        await _delete_row(conn, "DELETE FROM courses WHERE id = $1", course_id, what, "course_id")
        course = as_record(Course, row)
        await audit_record(conn, actor=actor, action="deleted", entity="course", entity_id=course_id,
                           before={"code": course.code, "title": course.title, "faculty_id": course.faculty_id},
                           after=None)
        return course

    return await db.run(work, transaction=True)


# --- sections ------------------------------------------------------------------

_SECTION = (
    "SELECT s.id, s.course_id, c.code AS course_code, s.term_id, s.name, s.capacity,"
    " (SELECT count(*) FROM enrolments e WHERE e.section_id = s.id) AS enrolled"
    " FROM sections s JOIN courses c ON c.id = s.course_id"
)


async def list_sections(db: Database, limit: int, offset: int, *, term_id: str | None = None,
                        course_id: str | None = None, faculty_id: str | None = None) -> Page[Section]:
    where = ("WHERE ($1::text IS NULL OR s.term_id = $1) AND ($2::text IS NULL OR s.course_id = $2)"
             " AND ($3::text IS NULL OR " + manages_sql("s.course_id", "$3") + ")")
    return await db.run(lambda conn: _paged(
        conn, Section, _SECTION, where, "c.code, s.name, s.id", [term_id, course_id, faculty_id], limit, offset))


async def create_section(db: Database, section_id: str, course_id: str, term_id: str, name: str,
                         capacity: int | None) -> Section:
    async def work(conn: asyncpg.Connection) -> Section:
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM courses WHERE id = $1)", course_id):
            raise NotFound("No such course.", "course_id")
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM terms WHERE id = $1)", term_id):
            raise NotFound("No such term.", "term_id")
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO sections (id, course_id, term_id, name, capacity) VALUES ($1, $2, $3, $4, $5)",
                    section_id, course_id, term_id, name, capacity)
        except asyncpg.UniqueViolationError:
            raise Conflict("A section with this id, or this name for the course and term, exists.", "name") from None
        return as_record(Section, await conn.fetchrow(_SECTION + " WHERE s.id = $1", section_id))

    return await db.run(work, transaction=True)


async def update_section(db: Database, section_id: str, changes: dict[str, Any]) -> Section:
    """Change a section's ``name`` and/or ``capacity`` (``None`` clears it); 409 if the name is taken.

    Its course and term are fixed (sessions, slots and enrolments hang on
    them): create another section instead. Nothing about sessions changes.
    """

    async def work(conn: asyncpg.Connection) -> Section:
        row = await conn.fetchrow("SELECT name, capacity FROM sections WHERE id = $1 FOR UPDATE", section_id)
        if row is None:
            raise NotFound("No such section.", "section_id")
        merged = {**dict(row), **changes}
        try:
            async with conn.transaction():
                await conn.execute("UPDATE sections SET name = $2, capacity = $3 WHERE id = $1",
                                   section_id, merged["name"], merged["capacity"])
        except asyncpg.UniqueViolationError:
            raise Conflict("The course already has a section of this name in the term.", "name") from None
        return as_record(Section, await conn.fetchrow(_SECTION + " WHERE s.id = $1", section_id))

    return await db.run(work, transaction=True)


async def delete_section(db: Database, section_id: str, *, actor: str) -> Section:
    """Delete a section with no enrolments, timetable slots or sessions, audited (its section-level
    faculty assignments go with it); 409 otherwise, nothing deleted."""

    async def work(conn: asyncpg.Connection) -> Section:
        row = await conn.fetchrow(_SECTION + " WHERE s.id = $1", section_id)
        if row is None:
            raise NotFound("No such section.", "section_id")
        await conn.execute("SELECT 1 FROM sections WHERE id = $1 FOR UPDATE", section_id)
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM enrolments WHERE section_id = $1) AS enrolments,"
            " (SELECT count(*) FROM timetable_slots WHERE section_id = $1) AS slots,"
            " (SELECT count(*) FROM class_sessions WHERE section_id = $1) AS sessions", section_id)
        what = f"Section {row['course_code']} {row['name']}"
        _refuse_delete(what, _counted([
            (counts["enrolments"], "enrolled student", "enrolled students"),
            (counts["slots"], "timetable slot", "timetable slots"),
            (counts["sessions"], "class session", "class sessions")]),
            "Move its students to another section and delete its timetable slots first; a section that has "
            "held sessions is kept for their records.", "section_id")
        await _delete_row(conn, "DELETE FROM sections WHERE id = $1", section_id, what, "section_id")
        section = as_record(Section, row)
        await audit_record(conn, actor=actor, action="deleted", entity="section", entity_id=section_id,
                           before={"course_id": section.course_id, "term_id": section.term_id,
                                   "name": section.name}, after=None)
        return section

    return await db.run(work, transaction=True)


# --- faculty assignments ---------------------------------------------------------

_ASSIGNMENT = (
    "SELECT fa.id, fa.course_id, c.code AS course_code, fa.faculty_id, u.display_name AS faculty_name,"
    " fa.section_id, fa.role, fa.assigned_at"
    " FROM faculty_assignments fa JOIN courses c ON c.id = fa.course_id JOIN users u ON u.id = fa.faculty_id"
)


async def list_assignments(db: Database, limit: int, offset: int, *, course_id: str | None = None,
                           faculty_id: str | None = None) -> Page[Assignment]:
    where = "WHERE ($1::text IS NULL OR fa.course_id = $1) AND ($2::text IS NULL OR fa.faculty_id = $2)"
    return await db.run(lambda conn: _paged(
        conn, Assignment, _ASSIGNMENT, where, "c.code, u.display_name, fa.id", [course_id, faculty_id], limit, offset))


async def add_assignment(db: Database, course_id: str, faculty_id: str, section_id: str | None,
                         role: str) -> Assignment:
    async def work(conn: asyncpg.Connection) -> Assignment:
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM courses WHERE id = $1)", course_id):
            raise NotFound("No such course.", "course_id")
        if await conn.fetchval("SELECT role FROM users WHERE id = $1", faculty_id) != "faculty":
            raise Invalid("'faculty_id' must be the id of a faculty user.", "faculty_id")
        if section_id is not None and await conn.fetchval(
                "SELECT course_id FROM sections WHERE id = $1", section_id) != course_id:
            raise Invalid("'section_id' must be a section of this course.", "section_id")
        new = await conn.fetchval(
            "INSERT INTO faculty_assignments (course_id, faculty_id, section_id, role) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING RETURNING id", course_id, faculty_id, section_id, role)
        if new is None:
            raise Conflict("This faculty member is already assigned here.", "faculty_id")
        return as_record(Assignment, await conn.fetchrow(_ASSIGNMENT + " WHERE fa.id = $1", new))

    return await db.run(work, transaction=True)


async def remove_assignment(db: Database, assignment_id: int) -> Assignment:
    async def work(conn: asyncpg.Connection) -> Assignment:
        row = await conn.fetchrow(_ASSIGNMENT + " WHERE fa.id = $1", assignment_id)
        if row is None:
            raise NotFound("No such assignment.", "assignment_id")
        if await conn.fetchval(
                "SELECT faculty_id FROM courses WHERE id = $1", row["course_id"]) == row["faculty_id"] \
                and row["section_id"] is None:
            raise Conflict("This is the course's coordinator; change the course's faculty_id instead.")
        await conn.execute("DELETE FROM faculty_assignments WHERE id = $1", assignment_id)
        return as_record(Assignment, row)

    return await db.run(work, transaction=True)


# --- enrolments ----------------------------------------------------------------

_ENROLMENT = (
    "SELECT e.course_id, c.code AS course_code, e.section_id, s.name AS section_name,"
    " e.student_id, st.roll_number, u.display_name AS student_name"
    " FROM enrolments e JOIN courses c ON c.id = e.course_id JOIN students st ON st.id = e.student_id"
    " JOIN users u ON u.id = e.student_id LEFT JOIN sections s ON s.id = e.section_id"
)


async def list_enrolments(db: Database, limit: int, offset: int, *, course_id: str | None = None,
                          section_id: str | None = None, student_id: str | None = None,
                          faculty_id: str | None = None) -> Page[Enrolment]:
    where = ("WHERE ($1::text IS NULL OR e.course_id = $1) AND ($2::text IS NULL OR e.section_id = $2)"
             " AND ($3::text IS NULL OR e.student_id = $3) AND ($4::text IS NULL OR "
             + manages_sql("e.course_id", "$4") + ")")
    return await db.run(lambda conn: _paged(
        conn, Enrolment, _ENROLMENT, where, "c.code, u.display_name, e.student_id",
        [course_id, section_id, student_id, faculty_id], limit, offset))


@dataclass(frozen=True)
class ImportSummary:
    rows: int
    created: int
    moved: int
    unchanged: int
    dry_run: bool


async def import_enrolments(db: Database, rows: Sequence[EnrolmentRow], *, term_id: str | None,
                            dry_run: bool) -> ImportSummary:
    """Resolve every parsed row and enrol them all in one transaction, or none.

    Students are found by id or roll number; sections by id or by
    ``(course_code, section name)`` within ``term_id``. Every row that names
    an unknown student or section, or puts a student in two sections of one
    course, is collected; if there is any, :class:`ImportRejected` is raised
    and nothing is written. An existing enrolment in another section of the
    same course is moved to the new section. ``dry_run`` validates only.
    Courses' live session actors read enrolments when they start, so rows
    imported here reach a session that opens afterwards.
    """

    async def work(conn: asyncpg.Connection) -> ImportSummary:
        needs_term = any(r.section_id is None for r in rows)
        if needs_term:
            if term_id is None:
                raise Invalid("'term_id' is required when the file names sections by course_code and section.",
                              "term_id")
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM terms WHERE id = $1)", term_id):
                raise NotFound("No such term.", "term_id")
        by_id = {r["id"] for r in await conn.fetch(
            "SELECT id FROM students WHERE id = ANY($1::text[])", [r.student_id for r in rows if r.student_id])}
        by_roll = {r["roll_number"]: r["id"] for r in await conn.fetch(
            "SELECT id, roll_number FROM students WHERE roll_number = ANY($1::text[])",
            [r.roll_number for r in rows if r.roll_number])}
        sections = {r["id"]: (r["id"], r["course_id"]) for r in await conn.fetch(
            "SELECT id, course_id FROM sections WHERE id = ANY($1::text[])",
            [r.section_id for r in rows if r.section_id])}
        named = {(r["code"], r["name"]): (r["id"], r["course_id"]) for r in await conn.fetch(
            "SELECT s.id, s.course_id, s.name, c.code FROM sections s JOIN courses c ON c.id = s.course_id"
            " WHERE s.term_id = $1", term_id)} if needs_term else {}
        codes = {r["code"] for r in await conn.fetch(
            "SELECT code FROM courses WHERE code = ANY($1::text[])", [r.course_code for r in rows if r.course_code])}
        errors: list[RowError] = []
        resolved: list[tuple[int, str, str, str]] = []
        for row in rows:
            student = None
            if row.student_id is not None:
                if row.student_id in by_id:
                    student = row.student_id
                else:
                    errors.append(RowError(row.line, "student_id", f"no student with id {row.student_id!r}"))
            if row.roll_number is not None:
                by_number = by_roll.get(row.roll_number)
                if by_number is None:
                    errors.append(RowError(row.line, "roll_number", f"no student with roll number {row.roll_number!r}"))
                    student = None
                elif row.student_id is None:
                    student = by_number
                elif student is not None and by_number != student:
                    errors.append(RowError(row.line, "roll_number",
                                           f"roll number {row.roll_number!r} belongs to another student"))
                    student = None
            if row.section_id is not None:
                section = sections.get(row.section_id)
                if section is None:
                    errors.append(RowError(row.line, "section_id", f"no section with id {row.section_id!r}"))
            else:
                section = named.get((row.course_code, row.section_name))
                if section is None:
                    if row.course_code not in codes:
                        errors.append(RowError(row.line, "course_code", f"no course with code {row.course_code!r}"))
                    else:
                        errors.append(RowError(row.line, "section",
                                               f"course {row.course_code} has no section {row.section_name!r}"
                                               f" in term {term_id}"))
            if student is not None and section is not None:
                resolved.append((row.line, student, section[1], section[0]))
        errors += one_section_per_course(resolved)
        if errors:
            raise ImportRejected(sorted(errors, key=lambda e: (e.line, e.field or "")))
        current = {(r["course_id"], r["student_id"]): r["section_id"] for r in await conn.fetch(
            "SELECT course_id, student_id, section_id FROM enrolments"
            " WHERE (course_id, student_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            [r[2] for r in resolved], [r[1] for r in resolved])}
        created = moved = unchanged = 0
        for _, student_id, course_id, section_id in resolved:
            if (course_id, student_id) not in current:
                created += 1
            elif current[(course_id, student_id)] == section_id:
                unchanged += 1
            else:
                moved += 1
        if not dry_run:
            await conn.execute(
                "INSERT INTO enrolments (course_id, student_id, section_id)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::text[])"
                " ON CONFLICT (course_id, student_id) DO UPDATE SET section_id = excluded.section_id"
                " WHERE enrolments.section_id IS DISTINCT FROM excluded.section_id",
                [r[2] for r in resolved], [r[1] for r in resolved], [r[3] for r in resolved])
        return ImportSummary(len(resolved), created, moved, unchanged, dry_run)

    return await db.run(work, transaction=True)


# --- timetable slots -----------------------------------------------------------

_SLOT = (
    "SELECT t.id, t.section_id, s.course_id, c.code AS course_code, s.name AS section_name, s.term_id,"
    " t.room_id, r.name AS room_name, t.weekday, t.starts_time, t.ends_time, t.valid_from, t.valid_until, t.kind"
    " FROM timetable_slots t JOIN sections s ON s.id = t.section_id JOIN courses c ON c.id = s.course_id"
    " JOIN rooms r ON r.id = t.room_id"
)


async def list_slots(db: Database, limit: int, offset: int, *, term_id: str | None = None,
                     section_id: str | None = None, room_id: str | None = None,
                     faculty_id: str | None = None) -> Page[Slot]:
    where = ("WHERE ($1::text IS NULL OR s.term_id = $1) AND ($2::text IS NULL OR t.section_id = $2)"
             " AND ($3::text IS NULL OR t.room_id = $3) AND ($4::text IS NULL OR "
             + manages_sql("s.course_id", "$4") + ")")
    return await db.run(lambda conn: _paged(
        conn, Slot, _SLOT, where, "t.weekday, t.starts_time, c.code, t.id",
        [term_id, section_id, room_id, faculty_id], limit, offset))


@dataclass(frozen=True)
class SlotFields:
    """What a weekly slot says (its section is fixed once created)."""

    room_id: str
    weekday: int
    starts_time: time
    ends_time: time
    valid_from: date | None = None
    valid_until: date | None = None
    kind: str = "lecture"

    def check(self) -> None:
        if self.ends_time <= self.starts_time:
            raise Invalid("'ends_time' must be after 'starts_time'.", "ends_time")
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise Invalid("'valid_until' must not be before 'valid_from'.", "valid_until")


SLOT_COLUMNS = ("room_id", "weekday", "starts_time", "ends_time", "valid_from", "valid_until", "kind")


async def check_slot(conn: asyncpg.Connection, term_id: str, section_id: str, slot: SlotFields,
                     *, exclude: str | None = None) -> None:
    """In the caller's transaction (holding the term's timetable lock): 404 for an unknown room,
    409 if ``slot`` overlaps another slot (not ``exclude``) of the room or the section in the term."""
    slot.check()
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1)", slot.room_id):
        raise NotFound("No such room.", "room_id")
    clash = await conn.fetchrow(
        "SELECT t.id, t.room_id = $2 AS same_room FROM timetable_slots t JOIN sections s ON s.id = t.section_id"
        " WHERE s.term_id = $1 AND (t.room_id = $2 OR t.section_id = $3) AND t.weekday = $4"
        " AND t.starts_time < $6 AND t.ends_time > $5"
        " AND coalesce(t.valid_from, '-infinity'::date) <= coalesce($8::date, 'infinity'::date)"
        " AND coalesce(t.valid_until, 'infinity'::date) >= coalesce($7::date, '-infinity'::date)"
        " AND ($9::text IS NULL OR t.id <> $9) LIMIT 1",
        term_id, slot.room_id, section_id, slot.weekday, slot.starts_time, slot.ends_time, slot.valid_from,
        slot.valid_until, exclude)
    if clash is not None:
        what = "the room" if clash["same_room"] else "the section"
        raise Conflict(f"Overlaps slot {clash['id']} of {what} at that time.",
                       "room_id" if clash["same_room"] else "section_id")


async def get_slot(conn: asyncpg.Connection, slot_id: str) -> Slot:
    return as_record(Slot, await conn.fetchrow(_SLOT + " WHERE t.id = $1", slot_id))


# --- course rules --------------------------------------------------------------

async def get_rules(db: Database, course_id: str) -> CourseRules:
    """The course's rules, or the defaults (``customised`` false) when it has none."""
    async def work(conn: asyncpg.Connection) -> CourseRules:
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM courses WHERE id = $1)", course_id):
            raise NotFound("No such course.", "course_id")
        row = await conn.fetchrow("SELECT * FROM course_rules WHERE course_id = $1", course_id)
        return _rules(course_id, row)

    return await db.run(work)


def _rules(course_id: str, row: asyncpg.Record | None) -> CourseRules:
    if row is None:
        return CourseRules(course_id=course_id, **RULE_DEFAULTS, customised=False, updated_at=None, updated_by=None)
    values: dict[str, Any] = {k: float(v) if isinstance(v, Decimal) else v for k, v in row.items()}
    return CourseRules(course_id=course_id, **{k: values[k] for k in RULE_DEFAULTS}, customised=True,
                       updated_at=values["updated_at"], updated_by=values["updated_by"])


async def put_rules(db: Database, course_id: str, values: dict[str, Any], *, actor: str,
                    now: datetime) -> CourseRules:
    """Replace the course's rules (missing fields take the defaults). Existing sessions keep theirs."""
    merged = {**RULE_DEFAULTS, **values}
    if merged["condonable_pct"] > merged["eligible_pct"]:
        raise Invalid("'condonable_pct' must not exceed 'eligible_pct'.", "condonable_pct")
    if merged["late_cutoff_minutes"] < merged["grace_minutes"]:
        raise Invalid("'late_cutoff_minutes' must not be less than 'grace_minutes'.", "late_cutoff_minutes")

    async def work(conn: asyncpg.Connection) -> CourseRules:
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM courses WHERE id = $1)", course_id):
            raise NotFound("No such course.", "course_id")
        columns = list(RULE_DEFAULTS)
        row = await conn.fetchrow(
            f"INSERT INTO course_rules (course_id, {', '.join(columns)}, updated_at, updated_by)"
            f" VALUES ($1, {', '.join(f'${i + 2}' for i in range(len(columns)))}, ${len(columns) + 2},"
            f" ${len(columns) + 3})"
            f" ON CONFLICT (course_id) DO UPDATE SET"
            f" {', '.join(f'{c} = excluded.{c}' for c in columns)}, updated_at = excluded.updated_at,"
            f" updated_by = excluded.updated_by RETURNING *",
            course_id, *(Decimal(str(merged[c])) if isinstance(merged[c], float) else merged[c] for c in columns),
            now, actor)
        return _rules(course_id, row)

    return await db.run(work, transaction=True)
