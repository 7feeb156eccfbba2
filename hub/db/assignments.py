"""Assignments in PostgreSQL: an ``assessments`` row of kind 'assignment' plus its ``assignments`` row
(dates, late policy, attempts), rubric, attachments, topics and per-student extensions (migration 0029).

Who may change what is decided by the caller (web/routes/assignments_api.py, with
:func:`hub.db.academic.manages_sql`); these functions check the data: a section of the course and term,
topics of the course, a rubric whose points add up to the maximum marks, no deletion once a student has
submitted. Publishing notifies every student the assignment is for, in the same transaction
(:func:`hub.db.notifications.add_notifications`); the caller publishes them live after the commit.
Attachments are stored sealed with the campus key (``db.secrets``, bound to the row's id:
:func:`hub.db.sealed_secrets.assignment_attachment_context`) and opened only by :func:`get_attachment`.

Concurrency contract: every function is one ``db.run`` (one connection, one trio ↔ asyncio hop) and may be
called from any trio task; writes are one transaction, so cancelling the caller rolls them back.
Refusals are :class:`hub.db.academic.AcademicError` subclasses (status, code, message, field).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Sequence

import asyncpg

from hub.core.secrets_box import SecretsBox
from hub.domain.late_policy import Deadline, LatePolicy, deadline_for

from ._pool import Database
from .academic import AcademicError, Conflict, Invalid, NotFound, manages_sql
from .notifications import NewNotification, add_notifications
from .sealed_secrets import assignment_attachment_context

#: The students an assessment ``a`` is for: enrolled in its course, in its section if it has one,
#: else in any section of its term. Use as ``WHERE`` condition with ``e`` = enrolments.
AUDIENCE_SQL = ("e.course_id = a.course_id AND (CASE WHEN a.section_id IS NOT NULL THEN e.section_id = a.section_id"
                " ELSE e.section_id IS NULL OR EXISTS (SELECT 1 FROM sections s WHERE s.id = e.section_id"
                " AND s.term_id = a.term_id) END)")

#: A student sees an assessment's marks only once the course's grades are released for its term
#: (the campus-wide rule, shared with hub/db/grades.py). ``a`` = assessments.
RELEASED_SQL = "EXISTS (SELECT 1 FROM grade_releases gr WHERE gr.course_id = a.course_id AND gr.term_id = a.term_id)"


#: Channel of the NOTIFY sent when due dates may have moved (the reminder actor re-arms its timer).
DUE_CHANGED_CHANNEL = "campushub_assignment_due"


async def due_changed(conn: asyncpg.Connection, assessment_id: int) -> None:
    """Tell the reminder actor (on whichever hub holds its lock) that due dates may have moved; delivered
    at the commit of the caller's transaction (PostgreSQL NOTIFY), never before."""
    await conn.execute("SELECT pg_notify($1, $2)", DUE_CHANGED_CHANNEL, str(assessment_id))


class Refused(AcademicError):
    """A refusal with its own status and code (e.g. 409 ``assignment_closed``)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message, field)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Criterion:
    id: int
    position: int
    criterion: str
    max_points: Decimal


@dataclass(frozen=True)
class Attachment:
    id: int
    filename: str
    content_type: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Assignment:
    id: int
    course_id: str
    course_code: str
    course_title: str
    term_id: str
    section_id: str | None
    title: str
    max_marks: Decimal
    weight: Decimal
    instructions: str
    opens_at: datetime | None
    due_at: datetime
    cut_off_at: datetime | None
    grace_minutes: int
    penalty_percent: Decimal
    penalty_period: str
    penalty_cap_percent: Decimal
    pass_percent: Decimal | None
    max_attempts: int
    published_at: datetime | None
    created_by: str | None
    released: bool
    submitted: int
    returned: int
    students: int
    rubric: tuple[Criterion, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    topic_ids: tuple[int, ...] = ()

    @property
    def policy(self) -> LatePolicy:
        return LatePolicy(self.grace_minutes, self.penalty_percent, self.penalty_period, self.penalty_cap_percent,
                          self.pass_percent)


@dataclass(frozen=True)
class AssignmentFields:
    """What faculty set on an assignment (create and edit)."""

    title: str
    max_marks: Decimal
    weight: Decimal
    instructions: str
    opens_at: datetime | None
    due_at: datetime
    cut_off_at: datetime | None
    grace_minutes: int
    penalty_percent: Decimal
    penalty_period: str
    penalty_cap_percent: Decimal
    pass_percent: Decimal | None
    max_attempts: int
    rubric: tuple[tuple[str, Decimal], ...] = ()
    topic_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class NewFile:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class StoredFile:
    filename: str
    content_type: str
    data: bytes


_SELECT = (
    "SELECT a.id, a.course_id, c.code AS course_code, c.title AS course_title, a.term_id, a.section_id, a.title,"
    " a.max_marks, a.weight, g.instructions, g.opens_at, g.due_at, g.cut_off_at, g.grace_minutes,"
    " g.penalty_percent, g.penalty_period, g.penalty_cap_percent, g.pass_percent, g.max_attempts,"
    " g.published_at, a.created_by, " + RELEASED_SQL + " AS released,"
    " (SELECT count(DISTINCT s.student_id) FROM assignment_submissions s WHERE s.assessment_id = a.id) AS submitted,"
    " (SELECT count(DISTINCT s.student_id) FROM assignment_submissions s WHERE s.assessment_id = a.id"
    "   AND s.status = 'returned') AS returned,"
    " (SELECT count(*) FROM enrolments e WHERE " + AUDIENCE_SQL + ") AS students"
    " FROM assessments a JOIN assignments g ON g.assessment_id = a.id JOIN courses c ON c.id = a.course_id"
)


async def _load(conn: asyncpg.Connection, where: str, args: Sequence[object], order: str = "g.due_at, a.id",
                *, details: bool = False) -> list[Assignment]:
    rows = await conn.fetch(f"{_SELECT} WHERE {where} ORDER BY {order}", *args)
    found = [Assignment(**dict(row)) for row in rows]
    if not details or not found:
        return found
    ids = [a.id for a in found]
    rubric: dict[int, list[Criterion]] = {}
    for r in await conn.fetch("SELECT id, assessment_id, position, criterion, max_points FROM assignment_rubric_criteria"
                              " WHERE assessment_id = ANY($1) ORDER BY position", ids):
        rubric.setdefault(r["assessment_id"], []).append(
            Criterion(r["id"], r["position"], r["criterion"], r["max_points"]))
    files: dict[int, list[Attachment]] = {}
    for r in await conn.fetch("SELECT id, assessment_id, filename, content_type, size_bytes, sha256"
                              " FROM assignment_attachments WHERE assessment_id = ANY($1) ORDER BY id", ids):
        files.setdefault(r["assessment_id"], []).append(
            Attachment(r["id"], r["filename"], r["content_type"], r["size_bytes"], bytes(r["sha256"]).hex()))
    topics: dict[int, list[int]] = {}
    for r in await conn.fetch("SELECT assessment_id, topic_id FROM assessment_topics WHERE assessment_id = ANY($1)"
                              " ORDER BY topic_id", ids):
        topics.setdefault(r["assessment_id"], []).append(r["topic_id"])
    return [replace(a, rubric=tuple(rubric.get(a.id, ())), attachments=tuple(files.get(a.id, ())),
                    topic_ids=tuple(topics.get(a.id, ()))) for a in found]


async def get_assignment(db: Database, assessment_id: int) -> Assignment:
    """The assignment with its rubric, attachments and topics; :class:`NotFound` if there is none."""
    found = await db.run(lambda conn: _load(conn, "a.id = $1", [assessment_id], details=True))
    if not found:
        raise NotFound("No such assignment.")
    return found[0]


async def list_for_faculty(db: Database, user_id: str | None, *, course_id: str | None = None) -> list[Assignment]:
    """Assignments of the courses ``user_id`` manages (every course for ``None``: admin), soonest due first."""
    where = "($1::text IS NULL OR " + manages_sql("a.course_id", "$1") + ") AND ($2::text IS NULL OR a.course_id = $2)"
    return await db.run(lambda conn: _load(conn, where, [user_id, course_id], details=True))


async def list_for_student(db: Database, student_id: str) -> list[Assignment]:
    """Published assignments for the student's enrolments, soonest due first."""
    where = ("g.published_at IS NOT NULL AND EXISTS (SELECT 1 FROM enrolments e WHERE e.student_id = $1 AND "
             + AUDIENCE_SQL + ")")
    return await db.run(lambda conn: _load(conn, where, [student_id], details=True))


async def is_for_student(db: Database, assessment_id: int, student_id: str) -> bool:
    """Whether the (published) assignment is one the student is enrolled for."""
    return bool(await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM assessments a JOIN assignments g ON g.assessment_id = a.id"
        " JOIN enrolments e ON e.student_id = $2 AND " + AUDIENCE_SQL +
        " WHERE a.id = $1 AND g.published_at IS NOT NULL)", assessment_id, student_id))


async def may_manage(db: Database, user_id: str, role: str, assessment_id: int) -> bool:
    """Admin, or faculty who manage the assignment's course. :class:`NotFound` if there is no assignment."""
    row = await db.fetchrow("SELECT a.course_id FROM assessments a JOIN assignments g ON g.assessment_id = a.id"
                            " WHERE a.id = $1", assessment_id)
    if row is None:
        raise NotFound("No such assignment.")
    if role == "admin":
        return True
    return role == "faculty" and bool(await db.fetchval(
        "SELECT " + manages_sql("$1", "$2"), row["course_id"], user_id))


def _check(fields: AssignmentFields) -> None:
    if fields.cut_off_at is not None and fields.cut_off_at < fields.due_at:
        raise Invalid("The cut-off must be on or after the due date.", "cut_off_at")
    if fields.opens_at is not None and fields.opens_at >= fields.due_at:
        raise Invalid("The assignment must open before it is due.", "opens_at")
    if fields.rubric:
        total = sum((points for _, points in fields.rubric), Decimal(0))
        if total != fields.max_marks:
            raise Invalid(f"The rubric's points add up to {total}; the maximum marks are {fields.max_marks}.",
                          "rubric")


async def _write_details(conn: asyncpg.Connection, assessment_id: int, course_id: str,
                         fields: AssignmentFields) -> None:
    await conn.execute("DELETE FROM assignment_rubric_criteria WHERE assessment_id = $1", assessment_id)
    await conn.executemany(
        "INSERT INTO assignment_rubric_criteria (assessment_id, position, criterion, max_points) VALUES ($1, $2, $3, $4)",
        [(assessment_id, i, text, points) for i, (text, points) in enumerate(fields.rubric, start=1)])
    await conn.execute("DELETE FROM assessment_topics WHERE assessment_id = $1", assessment_id)
    if fields.topic_ids:
        await _write_topics(conn, assessment_id, course_id, fields.topic_ids)


async def create_assignment(db: Database, *, course_id: str, term_id: str, section_id: str | None,
                            fields: AssignmentFields, created_by: str) -> Assignment:
    """A draft assignment (published later by :func:`publish`)."""
    _check(fields)

    async def work(conn: asyncpg.Connection) -> int:
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM courses WHERE id = $1)", course_id):
            raise Invalid("No such course.", "course_id")
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM terms WHERE id = $1)", term_id):
            raise Invalid("No such term.", "term_id")
        if section_id is not None and not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM sections WHERE id = $1 AND course_id = $2 AND term_id = $3)",
                section_id, course_id, term_id):
            raise Invalid("The section must be one of this course's sections in the term.", "section_id")
        assessment_id: int = await conn.fetchval(
            "INSERT INTO assessments (course_id, term_id, section_id, kind, title, max_marks, weight, held_on,"
            " created_by) SELECT $1, $2, $3, 'assignment', $4, $5, $6, ($7::timestamptz AT TIME ZONE t.timezone)::date,"
            " $8 FROM terms t WHERE t.id = $2 RETURNING id",
            course_id, term_id, section_id, fields.title, fields.max_marks, fields.weight, fields.due_at, created_by)
        await conn.execute(
            "INSERT INTO assignments (assessment_id, instructions, opens_at, due_at, cut_off_at, grace_minutes,"
            " penalty_percent, penalty_period, penalty_cap_percent, pass_percent, max_attempts)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            assessment_id, fields.instructions, fields.opens_at, fields.due_at, fields.cut_off_at,
            fields.grace_minutes, fields.penalty_percent, fields.penalty_period, fields.penalty_cap_percent,
            fields.pass_percent, fields.max_attempts)
        await _write_details(conn, assessment_id, course_id, fields)
        return assessment_id

    return await get_assignment(db, await db.run(work, transaction=True))


async def update_assignment(db: Database, assessment_id: int, fields: AssignmentFields) -> Assignment:
    """Edit an assignment. Its maximum marks and rubric are fixed once any work was returned (the marks
    given were out of them)."""
    _check(fields)

    async def work(conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow("SELECT a.course_id, a.max_marks FROM assessments a JOIN assignments g"
                                  " ON g.assessment_id = a.id WHERE a.id = $1 FOR UPDATE", assessment_id)
        if row is None:
            raise NotFound("No such assignment.")
        marked = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM assessment_marks WHERE assessment_id = $1)",
                                     assessment_id)
        if marked and row["max_marks"] != fields.max_marks:
            raise Conflict("Work was already marked out of the old maximum; the maximum marks cannot change now.")
        await conn.execute(
            "UPDATE assessments SET title = $2, max_marks = $3, weight = $4, updated_at = now(),"
            " held_on = ($5::timestamptz AT TIME ZONE (SELECT timezone FROM terms WHERE id = term_id))::date"
            " WHERE id = $1", assessment_id, fields.title, fields.max_marks, fields.weight, fields.due_at)
        await conn.execute(
            "UPDATE assignments SET instructions = $2, opens_at = $3, due_at = $4, cut_off_at = $5,"
            " grace_minutes = $6, penalty_percent = $7, penalty_period = $8, penalty_cap_percent = $9,"
            " pass_percent = $10, max_attempts = $11 WHERE assessment_id = $1",
            assessment_id, fields.instructions, fields.opens_at, fields.due_at, fields.cut_off_at,
            fields.grace_minutes, fields.penalty_percent, fields.penalty_period, fields.penalty_cap_percent,
            fields.pass_percent, fields.max_attempts)
        if marked:
            old = [(r["criterion"], r["max_points"]) for r in await conn.fetch(
                "SELECT criterion, max_points FROM assignment_rubric_criteria WHERE assessment_id = $1"
                " ORDER BY position", assessment_id)]
            if old != list(fields.rubric):
                raise Conflict("Work was already marked with this rubric; the rubric cannot change now.")
            await conn.execute("DELETE FROM assessment_topics WHERE assessment_id = $1", assessment_id)
            if fields.topic_ids:
                await _write_topics(conn, assessment_id, row["course_id"], fields.topic_ids)
        else:
            await _write_details(conn, assessment_id, row["course_id"], fields)
        # A moved due date may need a new reminder: forget those not yet due under the new date.
        await conn.execute("DELETE FROM assignment_reminders WHERE assessment_id = $1 AND sent_at < $2::timestamptz"
                           " - interval '24 hours'", assessment_id, fields.due_at)
        await due_changed(conn, assessment_id)

    await db.run(work, transaction=True)
    return await get_assignment(db, assessment_id)


async def _write_topics(conn: asyncpg.Connection, assessment_id: int, course_id: str,
                                topic_ids: Sequence[int]) -> None:
    ours = {r["id"] for r in await conn.fetch("SELECT id FROM syllabus_topics WHERE course_id = $1 AND id = ANY($2)",
                                              course_id, list(topic_ids))}
    if ours != set(topic_ids):
        raise Invalid("Every topic must be one of this course's syllabus topics.", "topic_ids")
    await conn.executemany("INSERT INTO assessment_topics (assessment_id, topic_id) VALUES ($1, $2)",
                           [(assessment_id, t) for t in sorted(set(topic_ids))])


async def delete_assignment(db: Database, assessment_id: int) -> None:
    """Delete an assignment that nobody has submitted to (409 ``conflict`` otherwise)."""

    async def work(conn: asyncpg.Connection) -> None:
        if await conn.fetchval("SELECT id FROM assignments g JOIN assessments a ON a.id = g.assessment_id"
                               " WHERE a.id = $1 FOR UPDATE OF a", assessment_id) is None:
            raise NotFound("No such assignment.")
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM assignment_submissions WHERE assessment_id = $1)",
                               assessment_id):
            raise Conflict("Students have already submitted work for this assignment; it cannot be deleted.")
        await conn.execute("DELETE FROM assessments WHERE id = $1", assessment_id)

    await db.run(work, transaction=True)


async def publish(db: Database, assessment_id: int, now: datetime) -> tuple[Assignment, list[dict]]:
    """Publish a draft: students see it and each is notified (``assignment_published``). Publishing again
    changes nothing and notifies nobody. Returns the assignment and the notifications to push live."""

    async def work(conn: asyncpg.Connection) -> list[dict]:
        row = await conn.fetchrow(
            "UPDATE assignments g SET published_at = $2 FROM assessments a WHERE g.assessment_id = $1"
            " AND a.id = g.assessment_id AND g.published_at IS NULL"
            " RETURNING a.title, g.due_at, (SELECT code FROM courses WHERE id = a.course_id) AS code",
            assessment_id, now)
        if row is None:
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM assignments WHERE assessment_id = $1)",
                                       assessment_id):
                raise NotFound("No such assignment.")
            return []
        students = [r["student_id"] for r in await conn.fetch(
            "SELECT e.student_id FROM assessments a JOIN enrolments e ON " + AUDIENCE_SQL + " WHERE a.id = $1",
            assessment_id)]
        await due_changed(conn, assessment_id)
        title = f"New assignment in {row['code']}: {row['title']}"
        body = f"Due {row['due_at']:%d %b %Y, %H:%M} UTC. Open it to read the instructions and submit your work."
        return await add_notifications(conn, [
            NewNotification(s, "assignment_published", title, body, "/student/assignments",
                            {"assessment_id": assessment_id}) for s in students])

    notes = await db.run(work, transaction=True)
    return await get_assignment(db, assessment_id), notes


# --- attachments ---------------------------------------------------------------------------------

#: At most this many attachments per assignment.
MAX_ATTACHMENTS = 5


async def new_row_ids(conn: asyncpg.Connection, table: str, count: int) -> list[int]:
    """``count`` ids of ``table``'s ``bigserial`` ``id``, taken before the rows are inserted: a sealed file
    is bound to its row's id (:mod:`hub.db.sealed_secrets`), so the id must be known to seal it."""
    return [r[0] for r in await conn.fetch(
        "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2)", table, count)]


async def store_attachment(conn: asyncpg.Connection, secrets: SecretsBox, assessment_id: int, file: NewFile,
                           uploaded_by: str | None) -> Attachment:
    """Insert one attachment, its bytes sealed with the campus key, on the caller's connection (the
    caller's transaction; the demo seed uses it too)."""
    [new_id] = await new_row_ids(conn, "assignment_attachments", 1)
    digest = hashlib.sha256(file.data).digest()
    await conn.execute(
        "INSERT INTO assignment_attachments (id, assessment_id, filename, content_type, size_bytes, sha256,"
        " data_sealed, uploaded_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", new_id, assessment_id, file.filename,
        file.content_type, len(file.data), digest,
        secrets.encrypt_document(file.data, assignment_attachment_context(new_id)), uploaded_by)
    return Attachment(new_id, file.filename, file.content_type, len(file.data), digest.hex())


async def add_attachment(db: Database, assessment_id: int, file: NewFile, uploaded_by: str) -> Attachment:
    """Attach a file to the instructions (at most :data:`MAX_ATTACHMENTS`; two uploads at once are
    serialised on the assignment's row, so they cannot both take the last place)."""

    async def work(conn: asyncpg.Connection) -> Attachment:
        if await conn.fetchval("SELECT 1 FROM assignments WHERE assessment_id = $1 FOR UPDATE",
                               assessment_id) is None:
            raise NotFound("No such assignment.")
        count = await conn.fetchval("SELECT count(*) FROM assignment_attachments WHERE assessment_id = $1",
                                    assessment_id)
        if count >= MAX_ATTACHMENTS:
            raise Conflict(f"An assignment may have at most {MAX_ATTACHMENTS} attachments.")
        return await store_attachment(conn, db.secrets, assessment_id, file, uploaded_by)

    return await db.run(work, transaction=True)


async def get_attachment(db: Database, assessment_id: int, attachment_id: int) -> StoredFile | None:
    """The attachment with its bytes in the clear (stored sealed, opened here on the calling thread:
    a few ms for 5 MiB, as for leave documents)."""
    row = await db.fetchrow("SELECT filename, content_type, data_sealed FROM assignment_attachments"
                            " WHERE assessment_id = $1 AND id = $2", assessment_id, attachment_id)
    if row is None:
        return None
    data = db.secrets.decrypt_document(bytes(row["data_sealed"]), assignment_attachment_context(attachment_id))
    return StoredFile(row["filename"], row["content_type"], data)


async def delete_attachment(db: Database, assessment_id: int, attachment_id: int) -> bool:
    return (await db.execute("DELETE FROM assignment_attachments WHERE assessment_id = $1 AND id = $2",
                             assessment_id, attachment_id)) != "DELETE 0"


# --- extensions ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Extension:
    assessment_id: int
    student_id: str
    roll_number: str
    student_name: str
    due_at: datetime
    cut_off_at: datetime | None
    reason: str
    granted_by: str | None
    granted_at: datetime


async def grant_extension(db: Database, assessment_id: int, student_id: str, *, due_at: datetime,
                          cut_off_at: datetime | None, reason: str, granted_by: str) -> Extension:
    """Give one student their own due date (and cut-off); replaces an earlier extension."""
    if cut_off_at is not None and cut_off_at < due_at:
        raise Invalid("The cut-off must be on or after the due date.", "cut_off_at")

    async def work(conn: asyncpg.Connection) -> None:
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM assessments a JOIN enrolments e ON "
                                   + AUDIENCE_SQL + " WHERE a.id = $1 AND e.student_id = $2)",
                                   assessment_id, student_id):
            raise Invalid("This student is not one this assignment is for.", "student_id")
        await conn.execute(
            "INSERT INTO assignment_extensions (assessment_id, student_id, due_at, cut_off_at, reason, granted_by)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (assessment_id, student_id) DO UPDATE SET"
            " due_at = EXCLUDED.due_at, cut_off_at = EXCLUDED.cut_off_at, reason = EXCLUDED.reason,"
            " granted_by = EXCLUDED.granted_by, granted_at = now()",
            assessment_id, student_id, due_at, cut_off_at, reason, granted_by)
        # The reminder follows the new date.
        await conn.execute("DELETE FROM assignment_reminders WHERE assessment_id = $1 AND student_id = $2",
                           assessment_id, student_id)
        await due_changed(conn, assessment_id)

    await db.run(work, transaction=True)
    return next(x for x in await list_extensions(db, assessment_id) if x.student_id == student_id)


async def list_extensions(db: Database, assessment_id: int) -> list[Extension]:
    rows = await db.fetch(
        "SELECT x.assessment_id, x.student_id, st.roll_number, u.display_name AS student_name, x.due_at,"
        " x.cut_off_at, x.reason, x.granted_by, x.granted_at FROM assignment_extensions x"
        " JOIN students st ON st.id = x.student_id JOIN users u ON u.id = x.student_id"
        " WHERE x.assessment_id = $1 ORDER BY st.roll_number", assessment_id)
    return [Extension(**dict(r)) for r in rows]


async def revoke_extension(db: Database, assessment_id: int, student_id: str) -> bool:
    return (await db.execute("DELETE FROM assignment_extensions WHERE assessment_id = $1 AND student_id = $2",
                             assessment_id, student_id)) != "DELETE 0"


async def student_deadline(conn: asyncpg.Connection, assessment_id: int, student_id: str) -> Deadline:
    """The student's own due date and cut-off (their extension, if any); on a connection."""
    row = await conn.fetchrow(
        "SELECT g.due_at, g.cut_off_at, x.due_at AS x_due, x.cut_off_at AS x_cut FROM assignments g"
        " LEFT JOIN assignment_extensions x ON x.assessment_id = g.assessment_id AND x.student_id = $2"
        " WHERE g.assessment_id = $1", assessment_id, student_id)
    if row is None:
        raise NotFound("No such assignment.")
    extension = None if row["x_due"] is None else (row["x_due"], row["x_cut"])
    return deadline_for(row["due_at"], row["cut_off_at"], extension)
