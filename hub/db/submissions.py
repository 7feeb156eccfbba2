"""Submissions, grading and the "due in 24 h" reminders of assignments (migration 0029).

A student's work is stored whole in PostgreSQL (text and files, like leave documents: the files sealed
with the campus key, bound to their row's id, :func:`hub.db.sealed_secrets.submission_file_context`), one
row per attempt; the latest attempt counts. Its receipt is the SHA-256 of a canonical manifest
(:func:`receipt_hash`) the student can recompute from what they sent. Grading writes the one table of
marks, ``assessment_marks``: ``raw_marks`` as given (or the rubric's sum), ``marks`` after the late
penalty of :mod:`hub.domain.late_policy`, ``penalty_note`` in words; the latest attempt becomes
``returned`` and the student is notified (``assignment_graded``) without the marks, which they see only
once the course's grades are released for the term (``RELEASED_SQL``).

Concurrency contract: every ``Database`` function is one ``db.run`` and may be called from any trio task;
writes are one transaction (cancelling the caller rolls them back). A student's submissions to one
assignment are serialised by a transaction-scoped advisory lock, so two tabs cannot take the same
attempt number or both slip past the attempt limit. Notifications are returned for the caller to publish
after the commit (:func:`hub.db.notifications.publish_notifications`).
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import zipfile
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import AsyncIterator, Sequence

import asyncpg
import trio
import trio_asyncio

from hub.core.secrets_box import SecretsBox
from hub.domain.late_policy import (
    LatePolicy,
    describe_lateness,
    hundredths,
    late_minutes,
    late_penalty,
    submission_problem,
)

from . import advisory
from ._pool import Database
from .academic import Invalid, NotFound
from .advisory import session_lock
from .assignments import (
    AUDIENCE_SQL,
    DUE_CHANGED_CHANNEL,
    RELEASED_SQL,
    NewFile,
    Refused,
    StoredFile,
    new_row_ids,
    student_deadline,
)
from .notifications import NewNotification, add_notifications
from .sealed_secrets import submission_file_context
from .zip_stream import ZIP_PIECE_BYTES, ZipSink, safe_member_name, unique_member_name, zip_member

#: Files per attempt, and the text's length (the migration's CHECK).
MAX_FILES = 3
MAX_TEXT_CHARS = 50_000
#: Two submissions to one assignment by one student at once: this lock (with the two ids) orders them.
_SUBMIT_LOCK = advisory.SUBMIT_LOCK
#: The "due in 24 h" reminder is sent this long before the student's due date.
REMINDER_LEAD = timedelta(hours=24)


@dataclass(frozen=True)
class SubmittedFile:
    id: int
    filename: str
    content_type: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Submission:
    id: int
    assessment_id: int
    student_id: str
    attempt: int
    submitted_at: datetime
    text: str
    late_minutes: int
    sha256: str
    status: str
    files: tuple[SubmittedFile, ...] = ()


@dataclass(frozen=True)
class Mark:
    """A student's mark as the viewer may see it (``raw_marks``/``marks`` None when hidden)."""

    status: str
    raw_marks: Decimal | None
    marks: Decimal | None
    penalty_note: str | None
    feedback: str | None
    graded_at: datetime
    rubric: tuple[tuple[int, Decimal], ...] = ()


@dataclass(frozen=True)
class QueueRow:
    """One student in an assignment's grading queue."""

    student_id: str
    roll_number: str
    student_name: str
    due_at: datetime
    cut_off_at: datetime | None
    extended: bool
    submission: Submission | None
    mark: Mark | None


def receipt_hash(assessment_id: int, student_id: str, attempt: int, submitted_at: datetime, text: str,
                 files: Sequence[tuple[str, str, bytes]]) -> str:
    """SHA-256 (hex) of the attempt's manifest: one line per fact, each file by its own SHA-256."""
    lines = ["campushub-submission-v1", f"assessment:{assessment_id}", f"student:{student_id}",
             f"attempt:{attempt}", f"submitted_at:{submitted_at.isoformat()}",
             f"text-sha256:{hashlib.sha256(text.encode()).hexdigest()}"]
    lines += [f"file:{hashlib.sha256(data).hexdigest()} {len(data)} {ctype} {name}" for name, ctype, data in files]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


async def _files(conn: asyncpg.Connection, submission_ids: Sequence[int]) -> dict[int, list[SubmittedFile]]:
    found: dict[int, list[SubmittedFile]] = {}
    for r in await conn.fetch("SELECT id, submission_id, filename, content_type, size_bytes, sha256"
                              " FROM submission_files WHERE submission_id = ANY($1) ORDER BY id",
                              list(submission_ids)):
        found.setdefault(r["submission_id"], []).append(
            SubmittedFile(r["id"], r["filename"], r["content_type"], r["size_bytes"], bytes(r["sha256"]).hex()))
    return found


_SUB_COLUMNS = "id, assessment_id, student_id, attempt, submitted_at, text, late_minutes, sha256, status"


async def _submissions(conn: asyncpg.Connection, where: str, args: Sequence[object]) -> list[Submission]:
    rows = await conn.fetch(f"SELECT {_SUB_COLUMNS} FROM assignment_submissions s WHERE {where}"
                            " ORDER BY s.attempt DESC", *args)
    files = await _files(conn, [r["id"] for r in rows])
    return [Submission(**dict(r), files=tuple(files.get(r["id"], ()))) for r in rows]


async def store_files(conn: asyncpg.Connection, secrets: SecretsBox, submission_id: int,
                      files: Sequence[NewFile]) -> None:
    """Insert an attempt's files, each sealed with the campus key for its row (the caller's transaction;
    the demo seed uses it too). Their ``sha256`` is over the plaintext, as in the receipt's manifest."""
    ids = await new_row_ids(conn, "submission_files", len(files)) if files else []
    await conn.executemany(
        "INSERT INTO submission_files (id, submission_id, filename, content_type, size_bytes, sha256, data_sealed)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [(file_id, submission_id, f.filename, f.content_type, len(f.data), hashlib.sha256(f.data).digest(),
          secrets.encrypt_document(f.data, submission_file_context(file_id))) for file_id, f in zip(ids, files)])


async def submit(db: Database, assessment_id: int, student_id: str, *, text: str, files: Sequence[NewFile],
                 now: datetime) -> Submission:
    """Store one attempt. Refuses (409, codes of :mod:`hub.domain.late_policy`) before it opens, after the
    student's cut-off, beyond the attempts, and a resubmission after the due date; 400 for empty work."""
    if not text.strip() and not files:
        raise Invalid("Add a file or some text before you submit.", "text")
    if len(files) > MAX_FILES:
        raise Invalid(f"At most {MAX_FILES} files per submission.", "files")

    async def work(conn: asyncpg.Connection) -> int:
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2 || ':' || $3::bigint::text))",
                           _SUBMIT_LOCK, student_id, assessment_id)
        row = await conn.fetchrow("SELECT g.opens_at, g.published_at, g.max_attempts FROM assignments g"
                                  " WHERE g.assessment_id = $1", assessment_id)
        if row is None:
            raise NotFound("No such assignment.")
        deadline = await student_deadline(conn, assessment_id, student_id)
        attempts = await conn.fetchval("SELECT count(*) FROM assignment_submissions WHERE assessment_id = $1"
                                       " AND student_id = $2", assessment_id, student_id)
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM assessment_marks WHERE assessment_id = $1"
                               " AND student_id = $2)", assessment_id, student_id):
            raise Refused(409, "already_returned", "This work was already marked; ask your teacher if you need"
                          " to hand in something new.")
        problem = submission_problem(now, deadline, opens_at=row["opens_at"],
                                     published=row["published_at"] is not None, attempts_so_far=attempts,
                                     max_attempts=row["max_attempts"])
        if problem is not None:
            raise Refused(409, problem, _PROBLEM_WORDS[problem].format(max=row["max_attempts"]))
        attempt = attempts + 1
        digest = receipt_hash(assessment_id, student_id, attempt, now, text,
                              [(f.filename, f.content_type, f.data) for f in files])
        submission_id: int = await conn.fetchval(
            "INSERT INTO assignment_submissions (assessment_id, student_id, attempt, submitted_at, text,"
            " late_minutes, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            assessment_id, student_id, attempt, now, text, late_minutes(now, deadline.due_at), digest)
        await store_files(conn, db.secrets, submission_id, files)
        return submission_id

    submission_id = await db.run(work, transaction=True)
    found = await db.run(lambda conn: _submissions(conn, "s.id = $1", [submission_id]))
    return found[0]


_PROBLEM_WORDS = {
    "assignment_not_open": "This assignment is not open for submissions yet.",
    "assignment_closed": "The cut-off for this assignment has passed; ask your teacher about an extension.",
    "attempts_used": "You have used all {max} attempts for this assignment.",
    "resubmission_after_due": "The due date has passed: your last submission is the one that counts.",
}


async def student_submissions(db: Database, assessment_id: int, student_id: str) -> list[Submission]:
    """Every attempt of the student, latest first."""
    return await db.run(lambda conn: _submissions(
        conn, "s.assessment_id = $1 AND s.student_id = $2", [assessment_id, student_id]))


async def get_submission(db: Database, submission_id: int) -> Submission | None:
    found = await db.run(lambda conn: _submissions(conn, "s.id = $1", [submission_id]))
    return found[0] if found else None


async def get_file(db: Database, submission_id: int, file_id: int) -> StoredFile | None:
    """A submitted file with its bytes in the clear (stored sealed, opened here on the calling thread)."""
    row = await db.fetchrow("SELECT filename, content_type, data_sealed FROM submission_files"
                            " WHERE submission_id = $1 AND id = $2", submission_id, file_id)
    if row is None:
        return None
    data = db.secrets.decrypt_document(bytes(row["data_sealed"]), submission_file_context(file_id))
    return StoredFile(row["filename"], row["content_type"], data)


async def _marks(conn: asyncpg.Connection, assessment_id: int, student_ids: Sequence[str], *,
                 show_marks: bool) -> dict[str, Mark]:
    rubric: dict[str, list[tuple[int, Decimal]]] = {}
    if show_marks:
        for r in await conn.fetch("SELECT student_id, criterion_id, points FROM rubric_scores WHERE assessment_id = $1"
                                  " AND student_id = ANY($2) ORDER BY criterion_id", assessment_id, list(student_ids)):
            rubric.setdefault(r["student_id"], []).append((r["criterion_id"], r["points"]))
    found = {}
    for r in await conn.fetch("SELECT student_id, status, raw_marks, marks, penalty_note, feedback, graded_at"
                              " FROM assessment_marks WHERE assessment_id = $1 AND student_id = ANY($2)",
                              assessment_id, list(student_ids)):
        found[r["student_id"]] = Mark(
            r["status"], r["raw_marks"] if show_marks else None, r["marks"] if show_marks else None,
            r["penalty_note"] if show_marks else None, r["feedback"], r["graded_at"],
            tuple(rubric.get(r["student_id"], ())))
    return found


async def student_mark(db: Database, assessment_id: int, student_id: str) -> Mark | None:
    """The student's own mark as they may see it: feedback once returned; marks and penalty only after
    the course's grades are released for the term."""

    async def work(conn: asyncpg.Connection) -> Mark | None:
        released = await conn.fetchval("SELECT " + RELEASED_SQL + " FROM assessments a WHERE a.id = $1",
                                       assessment_id)
        return (await _marks(conn, assessment_id, [student_id], show_marks=bool(released))).get(student_id)

    return await db.run(work)


async def grading_queue(db: Database, assessment_id: int) -> list[QueueRow]:
    """Every student the assignment is for, with their latest attempt and mark: those waiting to be
    graded first (oldest submission first), then the returned, then those who have not submitted."""

    async def work(conn: asyncpg.Connection) -> list[QueueRow]:
        people = await conn.fetch(
            "SELECT e.student_id, st.roll_number, u.display_name, g.due_at, g.cut_off_at,"
            " x.due_at AS x_due, x.cut_off_at AS x_cut"
            " FROM assessments a JOIN assignments g ON g.assessment_id = a.id"
            " JOIN enrolments e ON " + AUDIENCE_SQL +
            " JOIN students st ON st.id = e.student_id JOIN users u ON u.id = e.student_id"
            " LEFT JOIN assignment_extensions x ON x.assessment_id = a.id AND x.student_id = e.student_id"
            " WHERE a.id = $1", assessment_id)
        latest = {s.student_id: s for s in await _submissions(
            conn, "s.assessment_id = $1 AND s.attempt = (SELECT max(attempt) FROM assignment_submissions l"
            " WHERE l.assessment_id = s.assessment_id AND l.student_id = s.student_id)", [assessment_id])}
        marks = await _marks(conn, assessment_id, [p["student_id"] for p in people], show_marks=True)
        rows = []
        for p in people:
            due, cut = (p["x_due"], p["x_cut"]) if p["x_due"] is not None else (p["due_at"], p["cut_off_at"])
            if p["x_due"] is not None and p["x_cut"] is None and p["cut_off_at"] is not None:
                cut = max(p["cut_off_at"], p["x_due"])
            rows.append(QueueRow(p["student_id"], p["roll_number"], p["display_name"], due, cut,
                                 p["x_due"] is not None, latest.get(p["student_id"]), marks.get(p["student_id"])))

        def order(row: QueueRow) -> tuple[int, str, str]:
            sub = row.submission
            if sub is None:
                return (2, "", row.roll_number)
            # Waiting work oldest first; returned work after it.
            return (0 if sub.status == "submitted" else 1, sub.submitted_at.isoformat(), row.roll_number)

        return sorted(rows, key=order)

    return await db.run(work)


# --- grading -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grade:
    student_id: str
    raw_marks: Decimal | None
    rubric: dict[int, Decimal] = field(default_factory=dict)
    feedback: str = ""


@dataclass(frozen=True)
class Graded:
    student_id: str
    raw_marks: Decimal
    marks: Decimal
    penalty_note: str | None


async def _grade_one(conn: asyncpg.Connection, assessment: asyncpg.Record, criteria: dict[int, Decimal],
                     grade: Grade, graded_by: str, now: datetime) -> Graded:
    sub = await conn.fetchrow(
        "SELECT id, late_minutes FROM assignment_submissions WHERE assessment_id = $1 AND student_id = $2"
        " ORDER BY attempt DESC LIMIT 1", assessment["id"], grade.student_id)
    if sub is None:
        raise Invalid("This student has not submitted anything to grade.", "student_id")
    raw = grade.raw_marks
    if grade.rubric:
        if set(grade.rubric) != set(criteria):
            raise Invalid("Give points for every rubric criterion.", "rubric")
        for cid, points in grade.rubric.items():
            if not Decimal(0) <= points <= criteria[cid]:
                raise Invalid(f"Points must be between 0 and {criteria[cid]} for each criterion.", "rubric")
        total = sum(grade.rubric.values(), Decimal(0))
        if raw is not None and raw != total:
            raise Invalid(f"The marks ({raw}) do not match the rubric's sum ({total}).", "raw_marks")
        raw = total
    if raw is None:
        raise Invalid("Give the marks, or points for every rubric criterion.", "raw_marks")
    max_marks = assessment["max_marks"]
    if not Decimal(0) <= raw <= max_marks:
        raise Invalid(f"Marks must be between 0 and {max_marks}.", "raw_marks")
    policy = LatePolicy(assessment["grace_minutes"], assessment["penalty_percent"], assessment["penalty_period"],
                        assessment["penalty_cap_percent"], assessment["pass_percent"])
    penalty = late_penalty(policy, raw, max_marks, sub["late_minutes"])
    marks, note = hundredths(penalty.marks), penalty.note(max_marks, policy)
    await conn.execute(
        "INSERT INTO assessment_marks (assessment_id, student_id, status, raw_marks, marks, penalty_note, feedback,"
        " graded_by, graded_at) VALUES ($1, $2, 'graded', $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (assessment_id, student_id) DO UPDATE SET status = 'graded', raw_marks = EXCLUDED.raw_marks,"
        " marks = EXCLUDED.marks, penalty_note = EXCLUDED.penalty_note, feedback = EXCLUDED.feedback,"
        " graded_by = EXCLUDED.graded_by, graded_at = EXCLUDED.graded_at",
        assessment["id"], grade.student_id, raw, marks, note, grade.feedback or None, graded_by, now)
    await conn.execute("DELETE FROM rubric_scores WHERE assessment_id = $1 AND student_id = $2",
                       assessment["id"], grade.student_id)
    if grade.rubric:
        await conn.executemany(
            "INSERT INTO rubric_scores (assessment_id, student_id, criterion_id, points) VALUES ($1, $2, $3, $4)",
            [(assessment["id"], grade.student_id, cid, p) for cid, p in sorted(grade.rubric.items())])
    await conn.execute("UPDATE assignment_submissions SET status = 'returned' WHERE id = $1", sub["id"])
    return Graded(grade.student_id, raw, marks, note)


async def _assessment(conn: asyncpg.Connection, assessment_id: int) -> tuple[asyncpg.Record, dict[int, Decimal]]:
    row = await conn.fetchrow(
        "SELECT a.id, a.title, a.max_marks, c.code, g.grace_minutes, g.penalty_percent, g.penalty_period,"
        " g.penalty_cap_percent, g.pass_percent FROM assessments a JOIN assignments g ON g.assessment_id = a.id"
        " JOIN courses c ON c.id = a.course_id WHERE a.id = $1 FOR UPDATE OF g", assessment_id)
    if row is None:
        raise NotFound("No such assignment.")
    criteria = {r["id"]: r["max_points"] for r in await conn.fetch(
        "SELECT id, max_points FROM assignment_rubric_criteria WHERE assessment_id = $1", assessment_id)}
    return row, criteria


def _graded_note(row: asyncpg.Record, student_id: str) -> NewNotification:
    return NewNotification(
        student_id, "assignment_graded", f"Your work was returned: {row['code']} {row['title']}",
        "Your teacher has marked your work and left feedback. Marks show once the course's grades are released.",
        "/student/assignments", {"assessment_id": row["id"]})


async def grade(db: Database, assessment_id: int, given: Grade, *, graded_by: str,
                now: datetime) -> tuple[Graded, list[dict]]:
    """Grade the student's latest attempt and return it to them; the notification to push live."""

    async def work(conn: asyncpg.Connection) -> tuple[Graded, list[dict]]:
        row, criteria = await _assessment(conn, assessment_id)
        graded = await _grade_one(conn, row, criteria, given, graded_by, now)
        return graded, await add_notifications(conn, [_graded_note(row, given.student_id)])

    return await db.run(work, transaction=True)


# --- CSV import ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CsvMark:
    line: int
    roll_number: str
    raw_marks: Decimal
    feedback: str


@dataclass(frozen=True)
class LineError:
    line: int
    message: str


def parse_marks_csv(text: str) -> tuple[list[CsvMark], list[LineError]]:
    """Rows of ``roll_number,marks[,feedback]`` (a header row naming ``roll_number`` is skipped); every bad
    line is reported with its number. Pure: no bounds against an assessment here."""
    rows, errors = [], []
    seen: dict[str, int] = {}
    for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields or all(not f.strip() for f in fields):
            continue
        if number == 1 and fields[0].strip().lower().replace(" ", "_") in ("roll_number", "roll", "roll_no"):
            continue
        if len(fields) < 2 or len(fields) > 3:
            errors.append(LineError(number, "Expected: roll number, marks, and optional feedback."))
            continue
        roll = fields[0].strip()
        try:
            marks = Decimal(fields[1].strip())
            if not marks.is_finite():
                raise InvalidOperation
        except InvalidOperation:
            errors.append(LineError(number, f"'{fields[1].strip()}' is not a number of marks."))
            continue
        if roll in seen:
            errors.append(LineError(number, f"Roll number {roll} is already on line {seen[roll]}."))
            continue
        seen[roll] = number
        rows.append(CsvMark(number, roll, marks, fields[2].strip() if len(fields) == 3 else ""))
    return rows, errors


@dataclass(frozen=True)
class ImportPreview:
    rows: list[Graded]
    errors: list[LineError]
    applied: bool
    notifications: list[dict]


async def import_marks(db: Database, assessment_id: int, text: str, *, apply: bool, graded_by: str,
                       now: datetime) -> ImportPreview:
    """Preview (``apply=False``) or apply a marks CSV, all or nothing: with any line in error nothing is
    written. The preview computes the same penalties in a transaction that is rolled back."""
    parsed, errors = parse_marks_csv(text)

    class _Preview(Exception):
        pass

    result: list[ImportPreview] = []

    async def work(conn: asyncpg.Connection) -> None:
        row, criteria = await _assessment(conn, assessment_id)
        rolls = {r["roll_number"]: r["student_id"] for r in await conn.fetch(
            "SELECT st.roll_number, e.student_id FROM assessments a JOIN enrolments e ON " + AUDIENCE_SQL +
            " JOIN students st ON st.id = e.student_id WHERE a.id = $1", assessment_id)}
        graded, problems = [], list(errors)
        for mark in parsed:
            student_id = rolls.get(mark.roll_number)
            if student_id is None:
                problems.append(LineError(mark.line, f"Roll number {mark.roll_number} is not a student of this "
                                                     "assignment."))
                continue
            try:
                async with conn.transaction():  # a savepoint: one bad line does not spoil the others' preview
                    graded.append(await _grade_one(conn, row, {}, Grade(student_id, mark.raw_marks,
                                                                         feedback=mark.feedback), graded_by, now))
            except Invalid as refused:
                problems.append(LineError(mark.line, refused.message))
        problems.sort(key=lambda e: e.line)
        if apply and not problems and graded:
            notes = await add_notifications(conn, [_graded_note(row, g.student_id) for g in graded])
            result.append(ImportPreview(graded, problems, True, notes))
            return
        result.append(ImportPreview(graded, problems, False, []))
        raise _Preview

    try:
        await db.run(work, transaction=True)
    except _Preview:
        pass
    return result[0]


# --- bulk download -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ZipEntry:
    """One latest attempt for the zip: the student's roll number names its folder."""

    submission_id: int
    roll_number: str
    attempt: int
    submitted_at: datetime
    late_minutes: int
    sha256: str
    text: str
    file_ids: tuple[int, ...]


async def zip_entries(db: Database, assessment_id: int) -> list[ZipEntry]:
    rows = await db.fetch(
        "SELECT s.id, st.roll_number, s.attempt, s.submitted_at, s.late_minutes, s.sha256, s.text,"
        " coalesce(array_agg(f.id ORDER BY f.id) FILTER (WHERE f.id IS NOT NULL), '{}') AS file_ids"
        " FROM assignment_submissions s JOIN students st ON st.id = s.student_id"
        " LEFT JOIN submission_files f ON f.submission_id = s.id"
        " WHERE s.assessment_id = $1 AND s.attempt = (SELECT max(attempt) FROM assignment_submissions l"
        " WHERE l.assessment_id = s.assessment_id AND l.student_id = s.student_id)"
        " GROUP BY s.id, st.roll_number ORDER BY st.roll_number", assessment_id)
    return [ZipEntry(r["id"], r["roll_number"], r["attempt"], r["submitted_at"], r["late_minutes"], r["sha256"],
                     r["text"], tuple(r["file_ids"])) for r in rows]


async def submissions_zip(db: Database, assessment_id: int) -> AsyncIterator[bytes]:
    """Every student's latest attempt as a zip, streamed: a folder per roll number with the receipt, the
    text and the files. Files are read from PostgreSQL one at a time (one query each), so memory is
    bounded by the largest file (5 MiB) and a big class never sits in memory at once."""
    entries = await zip_entries(db, assessment_id)
    sink = ZipSink()
    used: set[str] = set()
    with zipfile.ZipFile(sink, mode="w") as archive:
        for entry in entries:
            # A roll number may hold '/' (2024/CS/001): one folder per student, never a path.
            folder = unique_member_name(safe_member_name(entry.roll_number.replace("/", "-"), fallback="student"),
                                        used)
            late = f", {describe_lateness(entry.late_minutes)} late" if entry.late_minutes else ", on time"
            archive.writestr(zip_member(f"{folder}/receipt.txt"), f"Attempt {entry.attempt}, submitted "
                             f"{entry.submitted_at.isoformat()}{late}\nReceipt SHA-256: {entry.sha256}\n")
            if entry.text:
                archive.writestr(zip_member(f"{folder}/text.txt"), entry.text)
            for file_id in entry.file_ids:
                found = await get_file(db, entry.submission_id, file_id)
                if found is not None:  # deleted meanwhile (an erasure): nothing to add
                    name = unique_member_name(f"{folder}/{safe_member_name(found.filename)}", used)
                    archive.writestr(zip_member(name, stored=True), found.data)
                    del found
                if sink.size >= ZIP_PIECE_BYTES:
                    yield sink.take()
            if sink.size >= ZIP_PIECE_BYTES:
                yield sink.take()
    yield sink.take()


# --- "due in 24 h" reminders ---------------------------------------------------------------------

#: Students to remind: published, not yet submitted, not reminded, their own due date still ahead.
_REMINDER_FROM = (
    " FROM assessments a JOIN assignments g ON g.assessment_id = a.id JOIN enrolments e ON " + AUDIENCE_SQL +
    " LEFT JOIN assignment_extensions x ON x.assessment_id = a.id AND x.student_id = e.student_id"
    " WHERE g.published_at IS NOT NULL AND coalesce(x.due_at, g.due_at) > $1"
    " AND NOT EXISTS (SELECT 1 FROM assignment_reminders r WHERE r.assessment_id = a.id"
    " AND r.student_id = e.student_id)"
    " AND NOT EXISTS (SELECT 1 FROM assignment_submissions s WHERE s.assessment_id = a.id"
    " AND s.student_id = e.student_id)")


async def next_reminder_at(db: Database, now: datetime) -> datetime | None:
    """When the next "due in 24 h" reminder falls due (possibly already), or None if none waits."""
    due = await db.fetchval("SELECT min(coalesce(x.due_at, g.due_at))" + _REMINDER_FROM, now)
    return None if due is None else due - REMINDER_LEAD


async def send_due_reminders(db: Database, now: datetime) -> list[dict]:
    """Notify (``assignment_due``) every student whose own due date is within 24 h, once per
    (assignment, student): the reminder row and the notification commit together, and the row's primary
    key makes a second hub's pass insert nothing. Returns the notifications to publish."""

    async def work(conn: asyncpg.Connection) -> list[dict]:
        due = await conn.fetch(
            "INSERT INTO assignment_reminders (assessment_id, student_id, sent_at)"
            " SELECT a.id, e.student_id, $1" + _REMINDER_FROM + " AND coalesce(x.due_at, g.due_at) <= $2"
            " ON CONFLICT DO NOTHING RETURNING assessment_id, student_id", now, now + REMINDER_LEAD)
        if not due:
            return []
        about = {r["id"]: r for r in await conn.fetch(
            "SELECT a.id, a.title, c.code FROM assessments a JOIN courses c ON c.id = a.course_id"
            " WHERE a.id = ANY($1)", list({r["assessment_id"] for r in due}))}
        return await add_notifications(conn, [NewNotification(
            r["student_id"], "assignment_due", f"Due within 24 hours: {about[r['assessment_id']]['code']} "
            f"{about[r['assessment_id']]['title']}", "You have not submitted this assignment yet. There is still "
            "time: open it to hand in your work.", "/student/assignments",
            {"assessment_id": r["assessment_id"]}) for r in due])

    return await db.run(work, transaction=True)


#: Key of the session advisory lock held by the one reminder actor that sends reminders (hub/db/advisory.py).
REMINDER_LOCK = advisory.REMINDER_LOCK


@asynccontextmanager
async def reminder_watch(db: Database) -> AsyncIterator[trio.MemoryReceiveChannel[None] | None]:
    """Hold the reminder lock and listen for due-date changes, on a connection of our own.

    Yields None when another hub process holds the lock. Otherwise a channel that receives one item
    per NOTIFY on :data:`hub.db.assignments.DUE_CHANGED_CHANNEL` (sent at the commit of a publish, an
    edit or an extension) and ends (``trio.EndOfChannel``) if the connection drops, which also releases
    the lock. The connection is :func:`hub.db.advisory.session_lock`'s, closed in a shielded ``finally``,
    so a cancelled caller never leaks it.
    """
    send, receive = trio.open_memory_channel[None](math.inf)
    token = trio.lowlevel.current_trio_token()

    def notified(*_: object) -> None:  # called on the asyncio side: hand over to trio
        token.run_sync_soon(_send_quietly, send)

    def dropped(*_: object) -> None:
        token.run_sync_soon(send.close)

    async with session_lock(db, REMINDER_LOCK) as conn:
        if conn is not None:
            await trio_asyncio.aio_as_trio(conn.add_listener)(DUE_CHANGED_CHANNEL, notified)
            conn.add_termination_listener(dropped)
        yield receive if conn is not None else None


def _send_quietly(send: trio.MemorySendChannel[None]) -> None:
    try:
        send.send_nowait(None)
    except (trio.ClosedResourceError, trio.BrokenResourceError):
        pass  # the watch ended meanwhile
