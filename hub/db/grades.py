"""Grades in PostgreSQL: the campus grade scale, course credits, grade sheets, release, final
results (``course_results``), the student's grades, GPA, what-if and transcript.

The arithmetic is the pure :mod:`hub.domain.grades`; this module loads what it needs and stores
what it decides. **The release rule** (docs/academics.md): a student sees nothing of a course-term
(no marks, no grade, no GPA contribution) until a ``grade_releases`` row exists for it. Every
student-facing read in the hub checks it the same way: :func:`released` / :data:`RELEASED_SQL`,
or the :data:`RELEASED_JOIN_SQL` condition inside a query over ``assessments a``.

A course-term's *final* result is stored once its grades are released and its term has ended
(:func:`finalize_due`, also run by :func:`release`), or when an admin records a withdrawal; until
then a released course counts in the GPA with its result computed from the marks (``provisional``).
Stored results keep their letter and points, so a later scale edit never rewrites a transcript.

Concurrency contract: every ``Database`` function is one ``db.run`` (one connection, one trio ↔
asyncio hop) and may be called from any trio task; writes are one transaction (cancelling the caller
rolls back) with their audit entry last. :func:`released` and :func:`load_scale` take the caller's
asyncpg connection, inside its ``Database.run`` work. Refusals are :class:`hub.db.academic.AcademicError`
subclasses (status, code, message, field), rendered by the web layer.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Any, Iterable, Mapping, Sequence

import asyncpg

from hub.domain.grades import (
    FAILED,
    PASSED,
    WITHDRAWN,
    Band,
    InvalidScale,
    Item,
    Result,
    Scale,
    WhatIf,
    final_percent,
    gpa,
    make_scale,
    missing_marks,
    projected_results,
    result_from_percent,
    running_percent,
    shown_gpa,
    shown_percent,
    term_gpas,
    what_if,
)

from ._pool import Database
from .academic import Conflict, Invalid, NotFound
from .notifications import NewNotification, add_notifications
from .security_audit import record as audit_record

#: ``$1`` course id, ``$2`` term id: whether that course-term's grades are released (students may see them).
RELEASED_SQL = "SELECT EXISTS (SELECT 1 FROM grade_releases WHERE course_id = $1 AND term_id = $2)"
#: The same rule as a condition inside a query over ``assessments a``.
RELEASED_JOIN_SQL = ("EXISTS (SELECT 1 FROM grade_releases gr"
                     " WHERE gr.course_id = a.course_id AND gr.term_id = a.term_id)")

NOTIFICATION_KIND = "grades_released"

#: The students of a course-term: enrolled in one of its sections, or holding a mark in one of its
#: assessments (``$1`` course, ``$2`` term); with their section (NULL when only a mark ties them).
_ROSTER_SQL = """
SELECT r.student_id, max(r.section_id) AS section_id, u.display_name AS name, st.roll_number
FROM (
    SELECT e.student_id, e.section_id FROM enrolments e JOIN sections s ON s.id = e.section_id
    WHERE e.course_id = $1 AND s.term_id = $2
    UNION
    SELECT m.student_id, NULL FROM assessment_marks m JOIN assessments a ON a.id = m.assessment_id
    WHERE a.course_id = $1 AND a.term_id = $2
) r
JOIN students st ON st.id = r.student_id JOIN users u ON u.id = r.student_id
GROUP BY r.student_id, u.display_name, st.roll_number
ORDER BY u.display_name, st.roll_number
"""

#: Every (course, term) a student has: by enrolment in a section, by a mark, or by a stored result.
_STUDENT_COURSE_TERMS_SQL = """
SELECT DISTINCT x.course_id, x.term_id FROM (
    SELECT e.course_id, s.term_id FROM enrolments e JOIN sections s ON s.id = e.section_id
    WHERE e.student_id = $1
    UNION
    SELECT a.course_id, a.term_id FROM assessment_marks m JOIN assessments a ON a.id = m.assessment_id
    WHERE m.student_id = $1
    UNION
    SELECT course_id, term_id FROM course_results WHERE student_id = $1
) x
"""


# --- records ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScaleInfo:
    """The active scale and who changed it last."""

    scale: Scale
    updated_at: datetime
    updated_by: str | None


@dataclass(frozen=True)
class Assessment:
    id: int
    kind: str
    title: str
    section_id: str | None
    weight: Decimal
    max_marks: Decimal
    held_on: date | None


@dataclass(frozen=True)
class CourseTerm:
    course_id: str
    code: str
    title: str
    credits: Decimal
    term_id: str
    term_name: str
    starts_on: date
    ends_on: date
    released_at: datetime | None
    released_by: str | None


@dataclass(frozen=True)
class Mark:
    status: str
    marks: Decimal | None


@dataclass(frozen=True)
class StoredResult:
    student_id: str
    course_id: str
    term_id: str
    percent: Decimal | None
    letter: str | None
    points: Decimal | None
    credits: Decimal
    outcome: str
    finalized_at: datetime
    finalized_by: str | None


@dataclass(frozen=True)
class SheetRow:
    """One student's line of a grade sheet."""

    student_id: str
    name: str
    roll_number: str
    section_id: str | None
    marks: dict[int, Mark]
    running_percent: Fraction | None
    final_percent: Fraction | None
    band: Band | None
    missing: int
    result: StoredResult | None


@dataclass(frozen=True)
class GradeSheet:
    course_term: CourseTerm
    scale: Scale
    assessments: list[Assessment]
    rows: list[SheetRow]
    term_ended: bool

    @property
    def total_weight(self) -> Decimal:
        return sum((a.weight for a in self.assessments), Decimal(0))

    @property
    def distribution_basis(self) -> str:
        """``running`` while the term runs unreleased (missing work would make everyone fail), else ``final``."""
        return "final" if self.term_ended or self.course_term.released_at is not None else "running"

    def distribution(self) -> list[tuple[str, int]]:
        """How many students earn each grade, highest first: stored results first, else the band of the
        percentage :attr:`distribution_basis` names; withdrawals as ``W``."""
        counts = {b.letter: 0 for b in self.scale.bands}
        withdrawn = 0
        running = self.distribution_basis == "running"
        for row in self.rows:
            pct = row.running_percent if running else row.final_percent
            if row.result is not None and row.result.outcome == WITHDRAWN:
                withdrawn += 1
            elif row.result is not None and row.result.letter is not None:
                counts[row.result.letter] = counts.get(row.result.letter, 0) + 1
            elif pct is not None:
                counts[self.scale.band_for(pct).letter] += 1
        out = list(counts.items())
        if withdrawn:
            out.append(("W", withdrawn))
        return out


@dataclass(frozen=True)
class StudentCourse:
    """A course-term as its student sees it: marks only once released."""

    course_term: CourseTerm
    assessments: list[Assessment]
    #: Empty until released.
    marks: dict[int, Mark]
    released: bool
    running_percent: Fraction | None
    final_percent: Fraction | None
    band: Band | None
    result: StoredResult | None

    @property
    def provisional(self) -> bool:
        """Released, but its term has not ended yet (or it is not finalized): the result may still change."""
        return self.released and self.result is None


@dataclass(frozen=True)
class TranscriptLine:
    course_term: CourseTerm
    percent: Fraction | None
    letter: str | None
    points: Decimal | None
    credits: Decimal
    outcome: str
    provisional: bool


@dataclass(frozen=True)
class TranscriptTerm:
    term_id: str
    term_name: str
    starts_on: date
    lines: list[TranscriptLine]
    term_gpa: Fraction | None
    cumulative_gpa: Fraction | None
    credits_attempted: Decimal
    credits_earned: Decimal


@dataclass(frozen=True)
class Transcript:
    student_id: str
    name: str
    roll_number: str
    terms: list[TranscriptTerm]
    cumulative_gpa: Fraction | None
    scale: Scale


@dataclass(frozen=True)
class ReleaseOutcome:
    course_term: CourseTerm
    students: int
    missing_marks: int
    finalized: int
    #: Stored notifications, for ``publish_notifications`` after the commit.
    notifications: list[dict]


# --- the release rule ------------------------------------------------------------------

async def released(conn: asyncpg.Connection, course_id: str, term_id: str) -> bool:
    """Whether students may see the course-term's marks and grades (inside the caller's ``Database.run``)."""
    return bool(await conn.fetchval(RELEASED_SQL, course_id, term_id))


# --- scale ------------------------------------------------------------------------------

async def load_scale(conn: asyncpg.Connection) -> ScaleInfo:
    """The active scale (migration 0031 seeds one; an admin edits it in place)."""
    head = await conn.fetchrow(
        "SELECT id, name, kind, updated_at, updated_by FROM grade_scales WHERE active")
    if head is None:
        raise NotFound("No grade scale is set up.", "scale")
    bands = await conn.fetch(
        "SELECT letter, min_percent, points, is_pass FROM grade_bands WHERE scale_id = $1", head["id"])
    scale = make_scale(head["name"], head["kind"], (Band(**dict(b)) for b in bands))
    return ScaleInfo(scale, head["updated_at"], head["updated_by"])


async def active_scale(db: Database) -> ScaleInfo:
    return await db.run(load_scale)


def _bands_json(scale: Scale) -> list[dict[str, Any]]:
    return [{"letter": b.letter, "min_percent": str(b.min_percent), "points": str(b.points), "is_pass": b.is_pass}
            for b in scale.bands]


async def save_scale(db: Database, name: str, kind: str, bands: Sequence[Band], *, actor: str) -> ScaleInfo:
    """Replace the active scale's name, kind and bands, audited. Raises :class:`Invalid` (with the
    domain's ``field``) for bands that overlap, leave a gap or disagree; nothing is written then.
    Stored course results keep the grades they were given."""
    try:
        scale = make_scale(name, kind, bands)
    except InvalidScale as exc:
        raise Invalid(str(exc), exc.field) from None

    async def work(conn: asyncpg.Connection) -> ScaleInfo:
        before = await load_scale(conn)
        scale_id = await conn.fetchval(
            "UPDATE grade_scales SET name = $1, kind = $2, updated_at = now(), updated_by = $3"
            " WHERE active RETURNING id", scale.name, scale.kind, actor)
        await conn.execute("DELETE FROM grade_bands WHERE scale_id = $1", scale_id)
        await conn.executemany(
            "INSERT INTO grade_bands (scale_id, letter, min_percent, points, is_pass) VALUES ($1, $2, $3, $4, $5)",
            [(scale_id, b.letter, b.min_percent, b.points, b.is_pass) for b in scale.bands])
        saved = await load_scale(conn)
        await audit_record(conn, actor=actor, action="updated", entity="grade_scale", entity_id=str(scale_id),
                           before={"name": before.scale.name, "kind": before.scale.kind,
                                   "bands": _bands_json(before.scale)},
                           after={"name": scale.name, "kind": scale.kind, "bands": _bands_json(scale)})
        return saved

    return await db.run(work, transaction=True)


async def set_course_credits(db: Database, course_id: str, credits: Decimal, *, actor: str) -> Decimal:
    """Set a course's credits (0-40, one decimal), audited. Results already stored keep theirs."""
    if not 0 <= credits <= 40 or credits != credits.quantize(Decimal("0.1")):
        raise Invalid("Credits are from 0 to 40, with at most one decimal.", "credits")

    async def work(conn: asyncpg.Connection) -> Decimal:
        before = await conn.fetchval("SELECT credits FROM courses WHERE id = $1 FOR UPDATE", course_id)
        if before is None:
            raise NotFound("No such course.", "course_id")
        await conn.execute("UPDATE courses SET credits = $2 WHERE id = $1", course_id, credits)
        await audit_record(conn, actor=actor, action="credits_changed", entity="course", entity_id=course_id,
                           before={"credits": str(before)}, after={"credits": str(credits)})
        return credits

    return await db.run(work, transaction=True)


async def course_credits(db: Database) -> list[tuple[str, str, str, Decimal]]:
    """Every course's (id, code, title, credits), by code: the admin's credits table."""
    rows = await db.fetch("SELECT id, code, title, credits FROM courses ORDER BY code, id")
    return [(r["id"], r["code"], r["title"], r["credits"]) for r in rows]


# --- course-terms ------------------------------------------------------------------------

_COURSE_TERM_SELECT = """
SELECT c.id AS course_id, c.code, c.title, c.credits, t.id AS term_id, t.name AS term_name,
       t.starts_on, t.ends_on, gr.released_at, gr.released_by
FROM courses c CROSS JOIN terms t
LEFT JOIN grade_releases gr ON gr.course_id = c.id AND gr.term_id = t.id
"""


def _course_term(row: asyncpg.Record) -> CourseTerm:
    return CourseTerm(**dict(row))


async def _load_course_term(conn: asyncpg.Connection, course_id: str, term_id: str) -> CourseTerm:
    row = await conn.fetchrow(_COURSE_TERM_SELECT + " WHERE c.id = $1 AND t.id = $2", course_id, term_id)
    if row is None:
        raise NotFound("No such course or term.", "course_id")
    return _course_term(row)


async def course_terms(db: Database, faculty_id: str | None) -> list[CourseTerm]:
    """The course-terms with sections or assessments that ``faculty_id`` manages (every one for ``None``:
    an admin), newest term first, then by code."""
    rows = await db.fetch(
        _COURSE_TERM_SELECT +
        " WHERE EXISTS (SELECT 1 FROM sections s WHERE s.course_id = c.id AND s.term_id = t.id"
        "               UNION ALL SELECT 1 FROM assessments a WHERE a.course_id = c.id AND a.term_id = t.id)"
        "   AND ($1::text IS NULL OR c.faculty_id = $1"
        "        OR EXISTS (SELECT 1 FROM faculty_assignments f WHERE f.course_id = c.id AND f.faculty_id = $1))"
        " ORDER BY t.starts_on DESC, t.id, c.code",
        faculty_id)
    return [_course_term(r) for r in rows]


async def _assessments(conn: asyncpg.Connection, course_id: str, term_id: str) -> list[Assessment]:
    rows = await conn.fetch(
        "SELECT id, kind, title, section_id, weight, max_marks, held_on FROM assessments"
        " WHERE course_id = $1 AND term_id = $2 ORDER BY held_on NULLS LAST, id", course_id, term_id)
    return [Assessment(**dict(r)) for r in rows]


async def _marks(conn: asyncpg.Connection, assessment_ids: Sequence[int],
                 student_ids: Sequence[str]) -> dict[str, dict[int, Mark]]:
    rows = await conn.fetch(
        "SELECT assessment_id, student_id, status, marks FROM assessment_marks"
        " WHERE assessment_id = ANY ($1::bigint[]) AND student_id = ANY ($2::text[])",
        list(assessment_ids), list(student_ids))
    out: dict[str, dict[int, Mark]] = {}
    for r in rows:
        out.setdefault(r["student_id"], {})[r["assessment_id"]] = Mark(r["status"], r["marks"])
    return out


def _items(assessments: Iterable[Assessment], section_id: str | None, marks: Mapping[int, Mark]) -> list[Item]:
    """The student's assessments (course-wide, their section's, or any they hold a mark in) as domain items."""
    out = []
    for a in assessments:
        mark = marks.get(a.id)
        if a.section_id is not None and a.section_id != section_id and mark is None:
            continue
        out.append(Item(a.id, a.weight, a.max_marks, mark.status if mark else None, mark.marks if mark else None))
    return out


def _stored(row: asyncpg.Record) -> StoredResult:
    return StoredResult(**dict(row))


_RESULT_COLUMNS = ("student_id, course_id, term_id, percent, letter, points, credits, outcome, finalized_at,"
                   " finalized_by")


async def _results_of(conn: asyncpg.Connection, course_id: str, term_id: str) -> dict[str, StoredResult]:
    rows = await conn.fetch(f"SELECT {_RESULT_COLUMNS} FROM course_results WHERE course_id = $1 AND term_id = $2",
                            course_id, term_id)
    return {r["student_id"]: _stored(r) for r in rows}


def _stored_percent(pct: Fraction) -> Decimal:
    """numeric(6,3), rounded down (the letter was decided on the exact value)."""
    return (Decimal(pct.numerator) / Decimal(pct.denominator)).quantize(Decimal("0.001"), rounding=ROUND_FLOOR)


async def _sheet(conn: asyncpg.Connection, course_id: str, term_id: str, today: date) -> GradeSheet:
    ct = await _load_course_term(conn, course_id, term_id)
    scale = (await load_scale(conn)).scale
    assessments = await _assessments(conn, course_id, term_id)
    roster = await conn.fetch(_ROSTER_SQL, course_id, term_id)
    marks = await _marks(conn, [a.id for a in assessments], [r["student_id"] for r in roster])
    results = await _results_of(conn, course_id, term_id)
    rows = []
    for r in roster:
        own = marks.get(r["student_id"], {})
        items = _items(assessments, r["section_id"], own)
        final = final_percent(items)
        rows.append(SheetRow(r["student_id"], r["name"], r["roll_number"], r["section_id"], own,
                             running_percent(items), final, scale.band_for(final) if final is not None else None,
                             missing_marks(items), results.get(r["student_id"])))
    return GradeSheet(ct, scale, assessments, rows, ct.ends_on < today)


async def grade_sheet(db: Database, course_id: str, term_id: str, today: date) -> GradeSheet:
    """A course-term's grade sheet for its faculty: every student's marks, running and final
    percentage, grade, missing marks and stored result. ``today``: the campus's date (term ended?)."""
    return await db.run(lambda conn: _sheet(conn, course_id, term_id, today))


# --- release and final results ------------------------------------------------------------

async def _finalize(conn: asyncpg.Connection, sheet: GradeSheet, actor: str | None) -> int:
    """Store the final result of every student of a released, ended course-term without one."""
    ct = sheet.course_term
    rows = []
    for row in sheet.rows:
        if row.result is not None or row.final_percent is None:
            continue
        result, band = result_from_percent(ct.term_id, ct.course_id, ct.credits, row.final_percent, sheet.scale)
        rows.append((row.student_id, ct.course_id, ct.term_id, _stored_percent(row.final_percent), band.letter,
                     result.points, ct.credits, result.outcome, actor))
    if not rows:
        return 0
    await conn.executemany(
        "INSERT INTO course_results (student_id, course_id, term_id, percent, letter, points, credits, outcome,"
        " finalized_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (student_id, course_id, term_id) DO NOTHING", rows)
    return len(rows)


async def release(db: Database, course_id: str, term_id: str, *, actor: str, today: date) -> ReleaseOutcome:
    """Release a course-term's grades to its students, audited, with a ``grades_released`` notification
    to each (publish ``notifications`` after this returns). If the term has ended, the final results
    are stored too.

    Refusals: 404 no such course or term; 400 nothing to release (no assessments); 409 already
    released (when its term has since ended and results are missing, they are stored instead and
    the call succeeds with ``notifications`` empty).
    """

    async def work(conn: asyncpg.Connection) -> ReleaseOutcome:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('grades:' || $1 || '/' || $2))",
                           course_id, term_id)
        sheet = await _sheet(conn, course_id, term_id, today)
        ct = sheet.course_term
        missing = sum(r.missing for r in sheet.rows)
        if ct.released_at is not None:
            finalized = await _finalize(conn, sheet, actor) if sheet.term_ended else 0
            if not finalized:
                raise Conflict("These grades are already released.", "course_id")
            await audit_record(conn, actor=actor, action="finalized", entity="grades",
                               entity_id=f"{course_id}/{term_id}", after={"results": finalized})
            return ReleaseOutcome(ct, len(sheet.rows), missing, finalized, [])
        if not sheet.assessments:
            raise Invalid("There is nothing to release: this course has no assessments in this term.", "course_id")
        released_at = await conn.fetchval(
            "INSERT INTO grade_releases (course_id, term_id, released_by) VALUES ($1, $2, $3) RETURNING released_at",
            course_id, term_id, actor)
        finalized = await _finalize(conn, sheet, actor) if sheet.term_ended else 0
        notes = [NewNotification(
            row.student_id, NOTIFICATION_KIND, f"Grades released: {ct.code}",
            f"Your marks and grade for {ct.code} {ct.title} ({ct.term_name}) are now available.",
            "/student/grades", {"course_id": course_id, "term_id": term_id}) for row in sheet.rows]
        stored = await add_notifications(conn, notes)
        await audit_record(conn, actor=actor, action="released", entity="grades", entity_id=f"{course_id}/{term_id}",
                           before=None, after={"students": len(sheet.rows), "missing_marks": missing,
                                               "finalized": finalized})
        released_ct = replace(ct, released_at=released_at, released_by=actor)
        return ReleaseOutcome(released_ct, len(sheet.rows), missing, finalized, stored)

    return await db.run(work, transaction=True)


async def finalize_due(db: Database, today: date) -> int:
    """Store the final results of every released course-term whose term has ended and that has none yet
    (withdrawals aside). Idempotent; returns how many results it stored. Run by the early-warning
    actor (hub/services/risk.py) at start, daily and before each training on ``course_results``.
    Safe beside a :func:`release` of the same course-term (it takes the same transaction lock)."""

    async def work(conn: asyncpg.Connection) -> int:
        due = await conn.fetch(
            "SELECT gr.course_id, gr.term_id FROM grade_releases gr JOIN terms t ON t.id = gr.term_id"
            " WHERE t.ends_on < $1 AND NOT EXISTS (SELECT 1 FROM course_results cr WHERE cr.course_id = gr.course_id"
            "   AND cr.term_id = gr.term_id AND cr.outcome <> 'withdrawn')", today)
        total = 0
        for row in due:
            # The lock release() takes: a release of the same course-term at the same moment waits.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('grades:' || $1 || '/' || $2))",
                               row["course_id"], row["term_id"])
            total += await _finalize(conn, await _sheet(conn, row["course_id"], row["term_id"], today), None)
        return total

    return await db.run(work, transaction=True)


async def record_withdrawal(db: Database, student_id: str, course_id: str, term_id: str, *, actor: str,
                            reason: str) -> StoredResult:
    """An admin records that a student withdrew from a course-term (it then never counts in the GPA),
    audited. 404 for an unknown student, course or term; 409 if a final result is already stored."""

    async def work(conn: asyncpg.Connection) -> StoredResult:
        await _load_course_term(conn, course_id, term_id)
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM students WHERE id = $1)", student_id):
            raise NotFound("No such student.", "student_id")
        credits = await conn.fetchval("SELECT credits FROM courses WHERE id = $1", course_id)
        row = await conn.fetchrow(
            "INSERT INTO course_results (student_id, course_id, term_id, credits, outcome, finalized_by)"
            " VALUES ($1, $2, $3, $4, 'withdrawn', $5) ON CONFLICT (student_id, course_id, term_id) DO NOTHING"
            f" RETURNING {_RESULT_COLUMNS}", student_id, course_id, term_id, credits, actor)
        if row is None:
            raise Conflict("This student already has a final result in this course.", "student_id")
        await audit_record(conn, actor=actor, action="withdrawn", entity="course_result",
                           entity_id=f"{course_id}/{term_id}", before=None,
                           after={"student_id": student_id, "outcome": WITHDRAWN}, reason=reason)
        return _stored(row)

    return await db.run(work, transaction=True)


# --- the student's side ---------------------------------------------------------------------

async def _student_courses(conn: asyncpg.Connection, student_id: str, scale: Scale) -> list[StudentCourse]:
    pairs = await conn.fetch(_STUDENT_COURSE_TERMS_SQL, student_id)
    if not pairs:
        return []
    cts = await conn.fetch(
        _COURSE_TERM_SELECT + " JOIN unnest($1::text[], $2::text[]) AS p (course_id, term_id)"
        " ON p.course_id = c.id AND p.term_id = t.id ORDER BY t.starts_on, t.id, c.code",
        [p["course_id"] for p in pairs], [p["term_id"] for p in pairs])
    section_rows = await conn.fetch(
        "SELECT e.course_id, s.term_id, e.section_id FROM enrolments e JOIN sections s ON s.id = e.section_id"
        " WHERE e.student_id = $1", student_id)
    sections = {(r["course_id"], r["term_id"]): r["section_id"] for r in section_rows}
    results = {(r["course_id"], r["term_id"]): _stored(r) for r in await conn.fetch(
        f"SELECT {_RESULT_COLUMNS} FROM course_results WHERE student_id = $1", student_id)}
    # Marks of released course-terms only: the release rule, in the query itself.
    mark_rows = await conn.fetch(
        "SELECT m.assessment_id, m.status, m.marks FROM assessment_marks m JOIN assessments a ON a.id = m.assessment_id"
        f" WHERE m.student_id = $1 AND {RELEASED_JOIN_SQL}", student_id)
    marks = {r["assessment_id"]: Mark(r["status"], r["marks"]) for r in mark_rows}
    out = []
    for row in cts:
        ct = _course_term(row)
        assessments = await _assessments(conn, ct.course_id, ct.term_id)
        is_released = ct.released_at is not None
        own = {a.id: marks[a.id] for a in assessments if a.id in marks} if is_released else {}
        items = _items(assessments, sections.get((ct.course_id, ct.term_id)), own)
        visible = [a for a in assessments if any(i.assessment_id == a.id for i in items)]
        running = running_percent(items) if is_released else None
        final = final_percent(items) if is_released else None
        band = scale.band_for(final) if final is not None else None
        out.append(StudentCourse(ct, visible, own, is_released, running, final, band,
                                 results.get((ct.course_id, ct.term_id))))
    return out


async def student_courses(db: Database, student_id: str) -> tuple[list[StudentCourse], Scale]:
    """The student's course-terms, oldest term first: assessments always, marks and grades only once released."""

    async def work(conn: asyncpg.Connection) -> tuple[list[StudentCourse], Scale]:
        scale = (await load_scale(conn)).scale
        return await _student_courses(conn, student_id, scale), scale

    return await db.run(work)


def counted_results(courses: Iterable[StudentCourse]) -> list[tuple[StudentCourse, Result, StoredResult | None]]:
    """What counts towards the GPA: stored results, and released courses' results from their marks
    (provisional). Unreleased courses never count."""
    out: list[tuple[StudentCourse, Result, StoredResult | None]] = []
    for sc in courses:
        ct = sc.course_term
        if sc.result is not None:
            r = sc.result
            out.append((sc, Result(ct.term_id, ct.course_id, r.credits, r.points, r.outcome), r))
        elif sc.released and sc.final_percent is not None and sc.band is not None:
            outcome = PASSED if sc.band.is_pass else FAILED
            points = sc.band.points if sc.band.is_pass else Decimal(0)
            out.append((sc, Result(ct.term_id, ct.course_id, ct.credits, points, outcome), None))
    return out


async def transcript(db: Database, student_id: str) -> Transcript:
    """The student's transcript: released courses only, terms in order, each term's GPA and the
    cumulative GPA up to it. Withdrawals are listed and do not count."""

    async def work(conn: asyncpg.Connection) -> Transcript:
        who = await conn.fetchrow(
            "SELECT u.display_name, st.roll_number FROM students st JOIN users u ON u.id = st.id WHERE st.id = $1",
            student_id)
        if who is None:
            raise NotFound("No such student.", "student_id")
        scale = (await load_scale(conn)).scale
        courses = await _student_courses(conn, student_id, scale)
        counted = counted_results(courses)
        order: list[str] = []
        for sc, _, _ in counted:
            if sc.course_term.term_id not in order:
                order.append(sc.course_term.term_id)
        gpas = {t.term_id: t for t in term_gpas([r for _, r, _ in counted], order)}
        terms = []
        for term_id in order:
            these = [(sc, r, stored) for sc, r, stored in counted if sc.course_term.term_id == term_id]
            first = these[0][0].course_term
            lines = [TranscriptLine(
                sc.course_term,
                Fraction(stored.percent) if stored is not None and stored.percent is not None else
                (sc.final_percent if stored is None else None),
                stored.letter if stored is not None else (sc.band.letter if sc.band else None),
                r.points, r.credits, r.outcome, stored is None) for sc, r, stored in these]
            g = gpas[term_id]
            terms.append(TranscriptTerm(term_id, first.term_name, first.starts_on, lines, g.term_gpa,
                                        g.cumulative_gpa, g.credits_attempted, g.credits_earned))
        return Transcript(student_id, who["display_name"], who["roll_number"], terms,
                          gpa(r for _, r, _ in counted), scale)

    return await db.run(work)


def _shown(value: Fraction | None, show: Any) -> str:
    return "" if value is None else str(show(value))


def transcript_csv(t: Transcript) -> str:
    """The transcript as CSV: one line per course, terms in order, with the term's and the cumulative GPA
    (two decimals, rounded down, as on the page)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["term", "course_code", "course_title", "credits", "percent", "grade", "points", "outcome",
                     "provisional", "term_gpa", "cumulative_gpa"])
    for term in t.terms:
        for line in term.lines:
            writer.writerow([
                _safe(term.term_name), _safe(line.course_term.code), _safe(line.course_term.title), str(line.credits),
                _shown(line.percent, shown_percent), line.letter or "",
                "" if line.points is None or line.outcome == WITHDRAWN else str(line.points),
                line.outcome, "yes" if line.provisional else "no",
                _shown(term.term_gpa, shown_gpa), _shown(term.cumulative_gpa, shown_gpa)])
    return out.getvalue()


def _safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --- what-if -------------------------------------------------------------------------------

@dataclass(frozen=True)
class WhatIfOutcome:
    courses: list[tuple[StudentCourse, WhatIf]]
    term_id: str
    term_gpa: Fraction | None
    cumulative_gpa: Fraction | None
    scale: Scale


async def what_if_for(db: Database, student_id: str, term_id: str,
                      hopes: Mapping[str, Mapping[int, Decimal]]) -> WhatIfOutcome:
    """The grades and GPA the student's hoped-for marks would give, for their courses of ``term_id``
    (``hopes``: course id -> assessment id -> marks). Pure arithmetic on what the student may see:
    marks of released courses, never of unreleased ones (whose hopes stand in for every assessment).
    Courses of the term without hopes count as they stand (released ones) or not at all.
    Raises :class:`Invalid` for a course not theirs in that term or a hope out of range."""
    courses, scale = await student_courses(db, student_id)
    in_term = {sc.course_term.course_id: sc for sc in courses if sc.course_term.term_id == term_id}
    if not in_term:
        raise NotFound("You have no courses in this term.", "term_id")
    projections: list[tuple[StudentCourse, WhatIf]] = []
    for i, (course_id, course_hopes) in enumerate(hopes.items()):
        sc = in_term.get(course_id)
        if sc is None:
            raise Invalid("This course is not one of yours in this term.", f"courses[{i}].course_id")
        if sc.result is not None:
            raise Invalid("This course is final; its grade can no longer change.", f"courses[{i}].course_id")
        items = [Item(a.id, a.weight, a.max_marks, m.status if m else None, m.marks if m else None)
                 for a in sc.assessments for m in (sc.marks.get(a.id),)]
        try:
            projections.append((sc, what_if(course_id, items, course_hopes, scale)))
        except ValueError as exc:
            raise Invalid(f"{exc}.", f"courses[{i}].hopes") from None
    projected_ids = {sc.course_term.course_id for sc, _ in projections}
    counted = [(sc, r) for sc, r, _ in counted_results(courses)
               if not (sc.course_term.term_id == term_id and sc.course_term.course_id in projected_ids)]
    projected = projected_results(term_id, ((w, sc.course_term.credits) for sc, w in projections))
    term_results = [r for sc, r in counted if sc.course_term.term_id == term_id] + projected
    all_results = [r for _, r in counted] + projected
    return WhatIfOutcome(projections, term_id, gpa(term_results), gpa(all_results), scale)
