"""Assessments other than assignments (quiz, practical, midterm, exam, project) and every
assessment's marks as the gradebook shows them.

One table of graded work (``assessments``, migration 0028) and one of marks
(``assessment_marks``). Assignments are the same rows of kind ``assignment``,
created and marked by hub/db/assignments.py (late penalties); this module
creates, edits and deletes the other kinds and records their marks, one by one
or in bulk, and reads every kind for the gradebook.

Marks are academic records, so every real change of one is an entry in the
hash-chained audit log, as an attendance change is (hub/db/attendance.py):
entity ``assessment_mark``, action ``recorded`` (first mark) or ``changed``,
with the student and course set (a faculty member's audit search sees their
courses' entries; erasure redacts them with the student's others) and the
mark before and after. Creating, editing and deleting an assessment is
recorded too (entity ``assessment``): deleting one deletes its marks.

The release rule: before ``grade_releases`` holds the (course, term), a
student sees no marks at all (:data:`RELEASED`); faculty and admins always do.

Concurrency contract: every function taking a ``Database`` is one ``db.run``
(writes in one transaction, rolled back if the caller is cancelled) and may be
called from any trio task. :func:`write_marks` runs inside the caller's
transaction: it first takes the audit chain's lock (``lock_attendance``, as
attendance writers do: chain lock, then rows), so concurrent mark writers
serialise from the read of the current marks to their commit.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Sequence

import asyncpg

from ._pool import Database
from .academic import Conflict, Invalid, NotFound
from .attendance import lock_attendance
from .security_audit import record as audit_record

#: The kinds this module creates (assignments: hub/db/assignments.py).
OTHER_KINDS = ("quiz", "practical", "midterm", "exam", "project")
ALL_KINDS = ("assignment", *OTHER_KINDS)
MARK_STATUSES = ("graded", "absent", "exempt")
MAX_FEEDBACK = 2000

#: SQL condition (alias ``a`` = assessments): the course-term's grades are released to its students.
RELEASED = "EXISTS (SELECT 1 FROM grade_releases gr WHERE gr.course_id = a.course_id AND gr.term_id = a.term_id)"

#: SQL condition (aliases ``a`` = assessments, ``e`` = enrolments): the enrolment is one of the
#: assessment's students: enrolled in its course, in a section of its term (or in none), and in its
#: section when it has one.
IN_SCOPE = (
    "e.course_id = a.course_id"
    " AND (e.section_id IS NULL OR EXISTS (SELECT 1 FROM sections es WHERE es.id = e.section_id"
    "      AND es.term_id = a.term_id))"
    " AND (a.section_id IS NULL OR e.section_id = a.section_id)"
)


@dataclass(frozen=True)
class Assessment:
    id: int
    course_id: str
    course_code: str
    course_title: str
    term_id: str
    section_id: str | None
    section_name: str | None
    kind: str
    title: str
    max_marks: Decimal
    weight: Decimal
    held_on: date | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    #: Students with a mark row (graded, absent or exempt).
    marked: int


_SELECT = (
    "SELECT a.id, a.course_id, c.code AS course_code, c.title AS course_title, a.term_id, a.section_id,"
    " sec.name AS section_name, a.kind, a.title, a.max_marks, a.weight, a.held_on, a.created_by, a.created_at,"
    " a.updated_at, (SELECT count(*) FROM assessment_marks m WHERE m.assessment_id = a.id) AS marked"
    " FROM assessments a JOIN courses c ON c.id = a.course_id LEFT JOIN sections sec ON sec.id = a.section_id"
)


@dataclass(frozen=True)
class NewAssessment:
    course_id: str
    term_id: str
    kind: str
    title: str
    max_marks: Decimal
    weight: Decimal
    section_id: str | None = None
    held_on: date | None = None


#: The fields an edit may change.
EDITABLE = ("title", "max_marks", "weight", "held_on", "section_id")


@dataclass(frozen=True)
class Mark:
    """One student's mark for one assessment (what the gradebook and the student see)."""

    assessment_id: int
    student_id: str
    status: str
    marks: Decimal | None
    raw_marks: Decimal | None
    penalty_note: str | None
    feedback: str | None
    graded_by: str | None
    graded_at: datetime


@dataclass(frozen=True)
class MarkEntry:
    """The mark one student should have: ``graded`` with ``marks``; ``absent`` (counts 0) or
    ``exempt`` (left out of the course grade) without."""

    student_id: str
    status: str
    marks: Decimal | None = None
    feedback: str | None = None


@dataclass(frozen=True)
class MarksResult:
    """What :func:`record_marks` did: the marks that changed (after), and how many were already so."""

    changed: list[Mark]
    unchanged: int


class MarkRefused(Invalid):
    """A bulk of marks with bad entries; ``errors`` names each (index, field, message); nothing was written."""

    def __init__(self, errors: Sequence[tuple[int, str, str]]) -> None:
        first = errors[0]
        super().__init__(f"{len(errors)} mark(s) refused; nothing was recorded. First: {first[2]}",
                         f"marks[{first[0]}].{first[1]}")
        self.errors = list(errors)


def _assessment(row: asyncpg.Record) -> Assessment:
    return Assessment(**dict(row))


def _mark(row: asyncpg.Record) -> Mark:
    return Mark(**{k: row[k] for k in Mark.__dataclass_fields__})


# --- assessments -----------------------------------------------------------------

async def assessment_in(conn: asyncpg.Connection, assessment_id: int) -> Assessment:
    """In the caller's connection: one assessment (:class:`NotFound` if there is none)."""
    row = await conn.fetchrow(_SELECT + " WHERE a.id = $1", assessment_id)
    if row is None:
        raise NotFound("No such assessment.", "assessment_id")
    return _assessment(row)


async def get_assessment(db: Database, assessment_id: int) -> Assessment:
    row = await db.fetchrow(_SELECT + " WHERE a.id = $1", assessment_id)
    if row is None:
        raise NotFound("No such assessment.", "assessment_id")
    return _assessment(row)


async def list_assessments(db: Database, course_id: str, term_id: str | None = None) -> list[Assessment]:
    """A course's assessments of every kind (of one term, or all), by date then id."""
    rows = await db.fetch(
        _SELECT + " WHERE a.course_id = $1 AND ($2::text IS NULL OR a.term_id = $2)"
        " ORDER BY a.term_id, a.held_on NULLS LAST, a.id", course_id, term_id)
    return [_assessment(r) for r in rows]


def _check_numbers(max_marks: Decimal, weight: Decimal) -> None:
    if not Decimal(0) < max_marks <= Decimal("100000"):
        raise Invalid("'max_marks' must be more than 0 (at most 100000).", "max_marks")
    if not Decimal(0) <= weight <= Decimal(100):
        raise Invalid("'weight' must be from 0 to 100 (percent of the course grade).", "weight")


async def _check_section(conn: asyncpg.Connection, section_id: str | None, course_id: str, term_id: str) -> None:
    if section_id is None:
        return
    row = await conn.fetchrow("SELECT course_id, term_id FROM sections WHERE id = $1", section_id)
    if row is None or row["course_id"] != course_id or row["term_id"] != term_id:
        raise Invalid("'section_id' must be a section of the course in that term.", "section_id")


def _audit_state(a: Assessment) -> dict[str, Any]:
    return {"course_id": a.course_id, "term_id": a.term_id, "section_id": a.section_id, "kind": a.kind,
            "title": a.title, "max_marks": str(a.max_marks), "weight": str(a.weight),
            "held_on": None if a.held_on is None else a.held_on.isoformat()}


async def create_assessment(db: Database, new: NewAssessment, *, actor: str) -> Assessment:
    """A quiz, practical, midterm, exam or project of a course in a term (or one section of it)."""
    if new.kind not in OTHER_KINDS:
        raise Invalid(f"'kind' must be one of {', '.join(OTHER_KINDS)} (assignments have their own page).", "kind")
    _check_numbers(new.max_marks, new.weight)

    async def work(conn: asyncpg.Connection) -> Assessment:
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM courses WHERE id = $1)", new.course_id):
            raise NotFound("No such course.", "course_id")
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM terms WHERE id = $1)", new.term_id):
            raise NotFound("No such term.", "term_id")
        await _check_section(conn, new.section_id, new.course_id, new.term_id)
        assessment_id = await conn.fetchval(
            "INSERT INTO assessments (course_id, term_id, section_id, kind, title, max_marks, weight, held_on,"
            " created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            new.course_id, new.term_id, new.section_id, new.kind, new.title, new.max_marks, new.weight,
            new.held_on, actor)
        created = _assessment(await conn.fetchrow(_SELECT + " WHERE a.id = $1", assessment_id))
        await audit_record(conn, actor=actor, action="created", entity="assessment", entity_id=str(assessment_id),
                           after=_audit_state(created))
        return created

    return await db.run(work, transaction=True)


async def _locked_assessment(conn: asyncpg.Connection, assessment_id: int) -> Assessment:
    await conn.execute("SELECT 1 FROM assessments WHERE id = $1 FOR UPDATE", assessment_id)
    row = await conn.fetchrow(_SELECT + " WHERE a.id = $1", assessment_id)
    if row is None:
        raise NotFound("No such assessment.", "assessment_id")
    return _assessment(row)


async def update_assessment(db: Database, assessment_id: int, changes: dict[str, Any], *, actor: str) -> Assessment:
    """Change some of :data:`EDITABLE`. Refused for assignments (their page edits them), and a
    ``max_marks`` below a mark already given (lower that mark first)."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise Invalid(f"Cannot change {', '.join(sorted(unknown))}.", sorted(unknown)[0])

    async def work(conn: asyncpg.Connection) -> Assessment:
        before = await _locked_assessment(conn, assessment_id)
        if before.kind not in OTHER_KINDS:
            raise Conflict("Assignments are edited on the assignments page.", "kind")
        merged = {f: getattr(before, f) for f in EDITABLE} | changes
        _check_numbers(merged["max_marks"], merged["weight"])
        if not merged["title"] or len(merged["title"]) > 200:
            raise Invalid("'title' must be 1 to 200 characters.", "title")
        if "section_id" in changes:
            await _check_section(conn, merged["section_id"], before.course_id, before.term_id)
        top = await conn.fetchval("SELECT max(marks) FROM assessment_marks WHERE assessment_id = $1", assessment_id)
        if top is not None and top > merged["max_marks"]:
            raise Conflict(f"A student already has {top} marks: 'max_marks' cannot go below that.", "max_marks")
        await conn.execute(
            "UPDATE assessments SET title = $2, max_marks = $3, weight = $4, held_on = $5, section_id = $6,"
            " updated_at = now() WHERE id = $1",
            assessment_id, merged["title"], merged["max_marks"], merged["weight"], merged["held_on"],
            merged["section_id"])
        after = _assessment(await conn.fetchrow(_SELECT + " WHERE a.id = $1", assessment_id))
        await audit_record(conn, actor=actor, action="updated", entity="assessment", entity_id=str(assessment_id),
                           before=_audit_state(before), after=_audit_state(after))
        return after

    return await db.run(work, transaction=True)


async def delete_assessment(db: Database, assessment_id: int, *, actor: str) -> Assessment:
    """Delete a non-assignment assessment with its marks and sittings (audited, with how many marks went)."""

    async def work(conn: asyncpg.Connection) -> Assessment:
        before = await _locked_assessment(conn, assessment_id)
        if before.kind not in OTHER_KINDS:
            raise Conflict("Assignments are deleted on the assignments page.", "kind")
        await conn.execute("DELETE FROM assessments WHERE id = $1", assessment_id)
        await audit_record(conn, actor=actor, action="deleted", entity="assessment", entity_id=str(assessment_id),
                           before=_audit_state(before) | {"marks": before.marked})
        return before

    return await db.run(work, transaction=True)


# --- marks -----------------------------------------------------------------------

_CENTS = Decimal("0.01")


def _snapshot(status: str, marks: Decimal | None, feedback: str | None) -> dict[str, Any]:
    """A mark as the audit log stores it and as changes are compared (marks as stored: two decimals)."""
    return {"status": status, "marks": None if marks is None else str(marks.quantize(_CENTS)), "feedback": feedback}


def check_entry(entry: MarkEntry, max_marks: Decimal) -> tuple[str, str] | None:
    """(field, message) if the entry can never be recorded for an assessment out of ``max_marks``."""
    if entry.status not in MARK_STATUSES:
        return "status", f"'status' must be one of {', '.join(MARK_STATUSES)}."
    if entry.status == "graded":
        if entry.marks is None:
            return "marks", "A graded mark needs 'marks'."
        if not Decimal(0) <= entry.marks <= max_marks:
            return "marks", f"Marks must be from 0 to {max_marks.normalize():f}."
        if entry.marks != entry.marks.quantize(_CENTS):
            return "marks", "Marks have at most two decimals."
    elif entry.marks is not None:
        return "marks", f"An {entry.status} mark has no marks."
    if entry.feedback is not None and len(entry.feedback) > MAX_FEEDBACK:
        return "feedback", f"Feedback is at most {MAX_FEEDBACK} characters."
    return None


async def write_marks(
    conn: asyncpg.Connection, assessment: Assessment, entries: Sequence[MarkEntry], *, actor: str, reason: str = "",
) -> MarksResult:
    """Inside the caller's transaction: set each entry's mark (raw = counted marks: no penalty here)
    and append one audit entry per real change. Every student must be one of the assessment's
    (:data:`IN_SCOPE`); all or nothing (:class:`MarkRefused` lists every bad entry)."""
    errors: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        problem = check_entry(entry, assessment.max_marks)
        if problem is not None:
            errors.append((i, *problem))
        if entry.student_id in seen:
            errors.append((i, "student_id", "This student appears twice."))
        seen.add(entry.student_id)
    await lock_attendance(conn)
    ids = [e.student_id for e in entries]
    enrolled = {r["student_id"] for r in await conn.fetch(
        f"SELECT e.student_id FROM assessments a JOIN enrolments e ON {IN_SCOPE}"
        " WHERE a.id = $1 AND e.student_id = ANY($2::text[])", assessment.id, ids)}
    errors += [(i, "student_id", f"{e.student_id} does not take this assessment.")
               for i, e in enumerate(entries) if e.student_id not in enrolled]
    if errors:
        raise MarkRefused(sorted(errors))
    current = {r["student_id"]: r for r in await conn.fetch(
        "SELECT student_id, status, marks, feedback FROM assessment_marks"
        " WHERE assessment_id = $1 AND student_id = ANY($2::text[]) FOR UPDATE", assessment.id, ids)}
    changes: list[tuple[MarkEntry, dict[str, Any] | None, dict[str, Any]]] = []
    for entry in entries:
        old = current.get(entry.student_id)
        # Feedback left out (None) keeps what is there; "" clears it.
        feedback = entry.feedback if entry.feedback is not None else (old["feedback"] if old else None)
        after = _snapshot(entry.status, entry.marks, feedback or None)
        before = None if old is None else _snapshot(old["status"], old["marks"], old["feedback"])
        if before != after:
            changes.append((entry, before, after))
    if changes:
        await conn.execute(
            "WITH upserted AS ("
            "  INSERT INTO assessment_marks (assessment_id, student_id, status, raw_marks, marks, feedback,"
            "   graded_by, graded_at)"
            "  SELECT $1, s, st, m, m, f, $8, now()"
            "  FROM unnest($2::text[], $3::text[], $4::numeric[], $5::text[]) AS u(s, st, m, f)"
            "  ON CONFLICT (assessment_id, student_id) DO UPDATE SET status = EXCLUDED.status,"
            "   raw_marks = EXCLUDED.raw_marks, marks = EXCLUDED.marks, feedback = EXCLUDED.feedback,"
            "   penalty_note = NULL, graded_by = EXCLUDED.graded_by, graded_at = EXCLUDED.graded_at"
            "  RETURNING 1"
            ")"
            " INSERT INTO audit_log (actor, entity, action, entity_id, student_id, course_id, before, after, reason)"
            " SELECT $8, 'assessment_mark', u.action, $1::text || '/' || u.s, u.s, $9, u.b::jsonb, u.a::jsonb, $10"
            " FROM unnest($2::text[], $6::text[], $7::text[], $11::text[]) WITH ORDINALITY AS u(s, b, a, action, ord)"
            " ORDER BY u.ord",
            assessment.id, [c[0].student_id for c in changes], [c[0].status for c in changes],
            [c[0].marks for c in changes], [c[2]["feedback"] for c in changes],
            [None if c[1] is None else json.dumps(c[1]) for c in changes], [json.dumps(c[2]) for c in changes],
            actor, assessment.course_id, reason, ["recorded" if c[1] is None else "changed" for c in changes])
    rows = await conn.fetch(
        "SELECT * FROM assessment_marks WHERE assessment_id = $1 AND student_id = ANY($2::text[])"
        " ORDER BY student_id", assessment.id, [c[0].student_id for c in changes])
    return MarksResult([_mark(r) for r in rows], len(entries) - len(changes))


class _DryRun(Exception):
    def __init__(self, result: MarksResult) -> None:
        self.result = result


async def record_marks(
    db: Database, assessment_id: int, entries: Sequence[MarkEntry], *, actor: str, reason: str = "",
    dry_run: bool = False,
) -> MarksResult:
    """Record marks of a non-assignment assessment (one or many), all or nothing, audited.
    ``dry_run``: check and count exactly as a real run, then roll back."""

    async def work(conn: asyncpg.Connection) -> MarksResult:
        row = await conn.fetchrow(_SELECT + " WHERE a.id = $1", assessment_id)
        if row is None:
            raise NotFound("No such assessment.", "assessment_id")
        assessment = _assessment(row)
        if assessment.kind not in OTHER_KINDS:
            raise Conflict("Assignment marks are given in the assignment's grading queue (late penalties apply).",
                           "kind")
        result = await write_marks(conn, assessment, entries, actor=actor, reason=reason)
        if dry_run:
            raise _DryRun(result)  # rolls the transaction back
        return result

    try:
        return await db.run(work, transaction=True)
    except _DryRun as done:
        return done.result


# --- reads -----------------------------------------------------------------------

@dataclass(frozen=True)
class GradebookStudent:
    student_id: str
    student_name: str
    roll_number: str
    section_id: str | None
    section_name: str | None


@dataclass(frozen=True)
class Gradebook:
    """Every assessment of a course-term (columns) and its students (rows) with their marks."""

    course_id: str
    term_id: str
    assessments: list[Assessment]
    students: list[GradebookStudent]
    #: (assessment id, student id) -> mark.
    marks: dict[tuple[int, str], Mark]
    released: bool


async def course_terms(db: Database, course_id: str) -> list[str]:
    """The terms a course is taught in (its sections' terms), latest first."""
    rows = await db.fetch(
        "SELECT DISTINCT t.id, t.starts_on FROM sections s JOIN terms t ON t.id = s.term_id WHERE s.course_id = $1"
        " ORDER BY t.starts_on DESC, t.id", course_id)
    return [r["id"] for r in rows]


async def gradebook(db: Database, course_id: str, term_id: str, section_id: str | None = None) -> Gradebook:
    """The course-term's gradebook (one section's students and the assessments they take, if given)."""

    async def work(conn: asyncpg.Connection) -> Gradebook:
        assessments = [_assessment(r) for r in await conn.fetch(
            _SELECT + " WHERE a.course_id = $1 AND a.term_id = $2"
            " AND ($3::text IS NULL OR a.section_id IS NULL OR a.section_id = $3)"
            " ORDER BY a.held_on NULLS LAST, a.id", course_id, term_id, section_id)]
        students = [GradebookStudent(**dict(r)) for r in await conn.fetch(
            "SELECT e.student_id, u.display_name AS student_name, st.roll_number, e.section_id,"
            " sec.name AS section_name"
            " FROM enrolments e JOIN students st ON st.id = e.student_id JOIN users u ON u.id = e.student_id"
            " LEFT JOIN sections sec ON sec.id = e.section_id"
            " WHERE e.course_id = $1 AND (e.section_id IS NULL OR sec.term_id = $2)"
            " AND ($3::text IS NULL OR e.section_id = $3)"
            " ORDER BY st.roll_number", course_id, term_id, section_id)]
        marks = {(r["assessment_id"], r["student_id"]): _mark(r) for r in await conn.fetch(
            "SELECT m.* FROM assessment_marks m JOIN assessments a ON a.id = m.assessment_id"
            " WHERE a.course_id = $1 AND a.term_id = $2", course_id, term_id)}
        released = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM grade_releases WHERE course_id = $1 AND term_id = $2)", course_id, term_id)
        return Gradebook(course_id, term_id, assessments, students, marks, released)

    return await db.run(work)


@dataclass(frozen=True)
class StudentMark:
    """One assessment of a student's course with their mark (``None``: not marked yet)."""

    assessment: Assessment
    mark: Mark | None


async def student_marks(db: Database, student_id: str, *, released_only: bool) -> list[StudentMark]:
    """Every assessment the student takes, with their mark. ``released_only`` (the student's own
    view): only courses whose grades are released, so nothing of an unreleased course shows."""
    async def work(conn: asyncpg.Connection) -> list[StudentMark]:
        found = [_assessment(r) for r in await conn.fetch(
            _SELECT + " WHERE EXISTS (SELECT 1 FROM enrolments e WHERE e.student_id = $1 AND " + IN_SCOPE + ")"
            " AND (NOT $2 OR " + RELEASED + ") ORDER BY c.code, a.held_on NULLS LAST, a.id",
            student_id, released_only)]
        marks = {r["assessment_id"]: _mark(r) for r in await conn.fetch(
            "SELECT * FROM assessment_marks WHERE student_id = $1 AND assessment_id = ANY($2::bigint[])",
            student_id, [a.id for a in found])}
        return [StudentMark(a, marks.get(a.id)) for a in found]

    return await db.run(work)
