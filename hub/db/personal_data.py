"""The personal data map: every place the hub holds data about a student, and what export and erasure do there.

One declaration (:data:`HOLDINGS`) serves both front doors, so they cannot
drift apart: :func:`export_zip` (``GET /api/v1/students/{id}/export``) writes
one JSON and one CSV file per holding that is exported, and
:mod:`hub.db.erasure` applies each holding's ``erase`` rule, in the map's
order. ``tests/db/test_personal_data.py`` checks against
``information_schema`` that every table with a ``student_id`` or ``user_id``
column is a holding here or is listed in :data:`NOT_PERSONAL` with the reason.

Rows are selected by an SQL condition on the table (alias ``t``) with named
parameters (``:student``, ``:pseudonym``, ``:now``, ``:actor``,
``:sealed_token_secret``; see :func:`bind`). A holding is exported as ``to_jsonb(t)`` minus its ``hidden``
columns (secrets, other people's data), so a column added later is exported
without a change here, and a secret column must be named to stay out.

Erasure keeps the student's id as the key of the records that must be kept
(attendance, marks, leave, corrections, flags, consent, audit): the id is
random (:func:`hub.db.users.new_user_id`) and, once the account row is
pseudonymised, names no one. What identifies the person (name, username,
email, roll number, PIN, token secret, documents, free text they or others
wrote about them, notifications) is removed or replaced by
:func:`pseudonym`, which is stable per student.

Concurrency contract: :func:`export_zip` is an async generator for one trio
task; each holding is one short query on the shared :class:`Database` (no
transaction is held across ``yield``), a leave document or submitted file is
read and opened one at a time through :func:`hub.db.leave.get_document` or
:func:`hub.db.submissions.get_file`, and memory is bounded by the largest
single file (each is at most 5 MiB). :func:`record_export` is
one short transaction ending with its audit entry.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, AsyncIterator, Literal, Mapping, Sequence

import asyncpg

from ._pool import Database
from .security_audit import record
from .zip_stream import ZIP_PIECE_BYTES, ZipSink, safe_member_name, zip_member

#: What erasure does to a holding's rows: leave them (a record that must be kept: only the id, now a
#: pseudonym's, ties it to the person), ``delete`` them, ``scrub`` (the ``scrub`` SET clause), or
#: ``audit`` (the audit log's own redaction, :func:`hub.db.audit.redact_subject`).
Erase = Literal["keep", "delete", "scrub", "audit"]

#: What an erased student's name becomes.
ERASED_NAME = "Erased student"
#: What free text written by or about an erased student becomes.
ERASED_TEXT = "[erased]"
#: Title of another user's notification that was about an erased student.
ERASED_NOTE_TITLE = "About an erased student"


@dataclass(frozen=True)
class Holding:
    """One table's rows about a student: where they are, what the export shows, what erasure does."""

    #: The table (the test matches it against information_schema).
    table: str
    #: The column that holds the student's (or their account's) id; None: reached through another table.
    key: str | None
    #: SQL condition on ``t`` selecting the rows about the student (named parameters, :func:`bind`).
    about: str
    erase: Erase
    #: Why erasure does what it does (docs/privacy.md lists these).
    why: str
    #: The file name in the export (``<file>.json`` and ``<file>.csv``); None: not exported (``why`` says).
    file: str | None = None
    #: What the README.txt says the file holds.
    describe: str = ""
    #: Columns never exported (secrets, other people's data).
    hidden: tuple[str, ...] = ()
    #: SQL order of the exported rows.
    order: str = ""
    #: For ``scrub``: the SET clause (named parameters).
    scrub: str = ""
    #: The FROM item of the export, alias ``t`` (default: the table itself), e.g. a join adding context.
    source: str = ""


#: Notifications about the student that went to someone else (alias ``n``): they name the student.
_NOTE_ABOUT_STUDENT = (
    "(n.user_id <> :student AND (n.data->>'student_id' = :student"
    " OR (n.data ? 'leave_id' AND n.data->>'leave_id' IN"
    "     (SELECT id::text FROM leave_applications WHERE student_id = :student))"
    " OR (n.data ? 'correction_id' AND n.data->>'correction_id' IN"
    "     (SELECT id::text FROM correction_requests WHERE student_id = :student))"
    " OR (n.data ? 'flag_id' AND n.data->>'flag_id' IN"
    "     (SELECT id::text FROM checkin_flags WHERE student_id = :student))"
    " OR (n.kind = 'condonation_requested' AND n.data->>'application_id' IN"
    "     (SELECT id::text FROM condonation_applications WHERE student_id = :student))))"
)

#: Every place the hub holds data about a student, in erasure order (a row is scrubbed before
#: the rows that lead to it are: webhook deliveries before the notifications they copy, documents
#: before their applications are scrubbed).
HOLDINGS: tuple[Holding, ...] = (
    Holding(
        "users", "id", "t.id = :student", "scrub",
        "The account stays (records hang on it), deactivated and pseudonymised: username → the pseudonym, "
        "name → 'Erased student', no email, no password, sessions ended.",
        file="profile", describe="Your account: username, name, email, role, when it was created and deactivated.",
        hidden=("password_hash",),
        scrub=f"username = :pseudonym, display_name = '{ERASED_NAME}', email = NULL, password_hash = '',"
              " must_change_password = false, sessions_valid_from = :now, updated_at = :now"),
    Holding(
        "students", "id", "t.id = :student", "scrub",
        "Roll number and terminal PIN → pseudonym-derived values, a fresh random check-in token secret, "
        "sealed like every token secret (the old QR codes stop verifying); program and section stay "
        "(reports by section).",
        file="student", describe="Your student record: roll number, program, section, terminal PIN.",
        hidden=("token_secret", "token_secret_sealed", "token_secret_key_id"),
        scrub="roll_number = :pseudonym, terminal_pin = replace(:pseudonym, '-', ''),"
              " token_secret = NULL, token_secret_sealed = :sealed_token_secret"),
    Holding(
        "enrolments", "student_id", "t.student_id = :student", "keep",
        "Which courses the student took: the frame of the kept attendance records.",
        file="enrolments", describe="The courses (and sections) you are or were enrolled in.",
        order="t.course_id",
        source="(SELECT e.*, c.code AS course_code, c.title AS course_title FROM enrolments e"
               " JOIN courses c ON c.id = e.course_id) t"),
    Holding(
        "attendance", "student_id", "t.student_id = :student", "keep",
        "Attendance and marks are records the campus must keep (7 years by default).",
        file="attendance", describe="Your attendance record of every class session (status, check-in time, "
                                    "channel), with the course and the session's times.",
        order="t.session_starts_at, t.session_id",
        source="(SELECT a.*, cs.course_id, c.code AS course_code, cs.starts_at AS session_starts_at,"
               " cs.ends_at AS session_ends_at FROM attendance a JOIN class_sessions cs ON cs.id = a.session_id"
               " JOIN courses c ON c.id = cs.course_id) t"),
    Holding(
        "audit_log", "student_id", "t.student_id = :student", "audit",
        "The hash-chained audit log keeps its entries; their personal payload is redacted and attributed "
        "to the pseudonym (hub.db.audit.redact_subject), and the chain still verifies.",
        file="attendance_history", describe="The audit log's entries about you: every change to your attendance "
                                            "records and to your account, who made it, when and why."),
    Holding(
        "token_uses", "student_id", "t.student_id = :student", "keep",
        "The replay ledger of check-in codes: ids and windows only, pruned with the dedup ledger.",
        file="token_uses", describe="The windows of your personal QR codes that were used to check you in.",
        order="t.session_id, t.token_window"),
    Holding(
        "display_checkins", "student_id", "t.student_id = :student", "scrub",
        "Display check-in attempts stay as records; the browser's user agent and network go.",
        file="display_checkins", describe="Your check-ins by scanning a classroom display: when, outcome, "
                                          "your browser and network (a /24 or /48, never the full address).",
        hidden=("nonce", "device_hash"), order="t.scanned_at, t.id",
        scrub="user_agent = '', network = NULL"),
    Holding(
        "checkin_flags", "student_id", "t.student_id = :student", "scrub",
        "Proxy-attendance flags stay as records; their free text and evidence go.",
        file="checkin_flags", describe="Check-ins of yours that were flagged for review, and the review.",
        hidden=("evidence",),  # may name the other students of a shared phone
        order="t.raised_at, t.id",
        scrub=f"detail = '{ERASED_TEXT}', evidence = '{{}}'::jsonb,"
              f" review_note = CASE WHEN review_note = '' THEN '' ELSE '{ERASED_TEXT}' END"),
    Holding(
        "leave_documents", None,
        "t.leave_id IN (SELECT id FROM leave_applications WHERE student_id = :student)", "delete",
        "Supporting documents (medical certificates and the like) are deleted; the application stays.",
        file="leave_documents", describe="The documents attached to your leave applications (their bytes are "
                                         "the files under documents/).",
        hidden=("data", "data_sealed"), order="t.leave_id"),
    Holding(
        "leave_applications", "student_id", "t.student_id = :student", "scrub",
        "Leave applications and decisions stay (they excused attendance); the reason and the decision note go.",
        file="leave_applications", describe="Your leave applications, their status and decisions.",
        order="t.applied_at, t.id",
        scrub=f"reason = '{ERASED_TEXT}',"
              f" decision_note = CASE WHEN decision_note = '' THEN '' ELSE '{ERASED_TEXT}' END"),
    Holding(
        "leave_sessions", "student_id", "t.student_id = :student", "keep",
        "Which attendance records an approved leave excused (and what they held before): records.",
        file="leave_sessions", describe="The class sessions your approved leave excused.",
        order="t.leave_id, t.session_id"),
    Holding(
        "correction_requests", "student_id", "t.student_id = :student", "scrub",
        "Correction requests and decisions stay (they changed attendance); the reason and note go.",
        file="corrections", describe="Your requests to correct an attendance record, and the decisions.",
        order="t.requested_at, t.id",
        scrub=f"reason = '{ERASED_TEXT}',"
              f" decision_note = CASE WHEN decision_note = '' THEN '' ELSE '{ERASED_TEXT}' END"),
    Holding(
        "condonation_applications", "student_id", "t.student_id = :student", "scrub",
        "Condonation applications and decisions stay (eligibility); the reason and note go.",
        file="condonation", describe="Your condonation applications and their decisions.",
        order="t.created_at, t.id",
        scrub=f"reason = '{ERASED_TEXT}',"
              f" decision_note = CASE WHEN decision_note = '' THEN '' ELSE '{ERASED_TEXT}' END"),
    Holding(
        "assessment_marks", "student_id", "t.student_id = :student", "scrub",
        "Marks are academic records: kept 7 years like attendance; the grader's feedback (free text about the "
        "student) goes.",
        file="marks", describe="Your marks for quizzes, practicals, exams, projects and assignments, of the courses "
                               "whose grades were released (before release no marks are shown, here as anywhere).",
        order="t.course_code, t.assessment_id",
        source="(SELECT m.*, a.course_id, c.code AS course_code, a.term_id, a.kind, a.title AS assessment_title,"
               " a.max_marks, a.weight FROM assessment_marks m JOIN assessments a ON a.id = m.assessment_id"
               " JOIN courses c ON c.id = a.course_id WHERE EXISTS (SELECT 1 FROM grade_releases gr"
               " WHERE gr.course_id = a.course_id AND gr.term_id = a.term_id)) t",
        scrub=f"feedback = CASE WHEN feedback IS NULL THEN NULL ELSE '{ERASED_TEXT}' END"),
    Holding(
        "rubric_scores", "student_id", "t.student_id = :student", "keep",
        "Rubric points are the parts of an assignment's marks: academic records, kept 7 years like attendance.",
        file="rubric_scores", describe="Your points per rubric criterion of assignments, of the courses whose "
                                       "grades were released.",
        order="t.assessment_id, t.criterion_id",
        source="(SELECT r.*, k.criterion, k.max_points FROM rubric_scores r"
               " JOIN assignment_rubric_criteria k ON k.id = r.criterion_id JOIN assessments a ON a.id = r.assessment_id"
               " WHERE EXISTS (SELECT 1 FROM grade_releases gr WHERE gr.course_id = a.course_id"
               " AND gr.term_id = a.term_id)) t"),
    Holding(
        "submission_files", None,
        "t.submission_id IN (SELECT id FROM assignment_submissions WHERE student_id = :student)", "delete",
        "The files of the student's work are deleted (they may name the person); each attempt's record, time "
        "and receipt hash stay.",
        file="submission_files", describe="The files you submitted for assignments: names, types, sizes and "
                                          "SHA-256 (the files themselves are under submissions/).",
        hidden=("data_sealed",), order="t.submission_id, t.id"),
    Holding(
        "assignment_submissions", "student_id", "t.student_id = :student", "scrub",
        "Submissions are academic records (when, how late, the receipt): kept 7 years like attendance; the "
        "text the student wrote goes.",
        file="assignment_submissions", describe="Every attempt you submitted: when, how late, the text, the "
                                                "receipt SHA-256 and whether it was returned.",
        order="t.assessment_id, t.attempt", scrub=f"text = CASE WHEN text = '' THEN '' ELSE '{ERASED_TEXT}' END"),
    Holding(
        "assignment_extensions", "student_id", "t.student_id = :student", "scrub",
        "Extensions are part of the assignment's record (they changed what was late); the reason, which may "
        "say why, goes.",
        file="assignment_extensions", describe="Extensions you were given: the new due date and cut-off.",
        order="t.assessment_id", scrub=f"reason = CASE WHEN reason = '' THEN '' ELSE '{ERASED_TEXT}' END"),
    Holding(
        "assignment_reminders", "student_id", "t.student_id = :student", "delete",
        "Only remembers that a \"due in 24 h\" reminder was sent: it goes with the person.",
        file="assignment_reminders", describe="When you were reminded of an assignment due within 24 hours.",
        order="t.sent_at"),
    Holding(
        "exam_sittings", "student_id", "t.student_id = :student", "scrub",
        "A make-up or accommodation sitting is part of the exam record (kept 7 years); its note, which may "
        "say why, goes.",
        file="exam_sittings", describe="Exam sittings arranged for you alone (make-up or accommodation).",
        order="t.starts_at, t.id", scrub=f"note = CASE WHEN note = '' THEN '' ELSE '{ERASED_TEXT}' END"),
    Holding(
        "course_results", "student_id", "t.student_id = :student", "keep",
        "Final course results (grade, points, credits, outcome) are academic records: kept 7 years like attendance.",
        file="course_results", describe="The final result of each course you finished or withdrew from.",
        order="t.term_id, t.course_id"),
    Holding(
        "attendance_warnings", "student_id", "t.student_id = :student", "delete",
        "Current warning state of a course, not a record: it goes with the person.",
        file="attendance_warnings", describe="Whether you were last below each course's warning line.",
        order="t.course_id"),
    Holding(
        "risk_predictions", "student_id", "t.student_id = :student", "delete",
        "A running course's early-warning level, recomputed from the records: not a record, it goes with the person.",
        file="risk_predictions", describe="Your early-warning level in each running course, its reasons and suggestions.",
        order="t.course_id"),
    Holding(
        "risk_alerts", "student_id", "t.student_id = :student", "delete",
        "Only remembers that faculty were told about a crossing into high risk: it goes with the person.",
        file="risk_alerts", describe="When your teachers were told you might need support in a course.",
        order="t.course_id"),
    Holding(
        "webhook_deliveries", None,
        "t.payload->'notification'->>'id' IN (SELECT n.id::text FROM notifications n WHERE n.user_id = :student"
        f" OR {_NOTE_ABOUT_STUDENT})", "scrub",
        "Copies of notifications queued for integrations: their title and body go.",
        scrub="payload = jsonb_set(jsonb_set(payload, '{notification,title}',"
              f" to_jsonb('{ERASED_NOTE_TITLE}'::text)), '{{notification,body}}', to_jsonb(''::text))"),
    Holding(
        "notifications", None, _NOTE_ABOUT_STUDENT.replace("n.", "t."), "scrub",
        "Other people's notifications about the student (a leave request, a flag) stay, without the name.",
        scrub=f"title = '{ERASED_NOTE_TITLE}', body = ''"),
    Holding(
        "notifications", "user_id", "t.user_id = :student", "delete",
        "The student's own notifications are deleted.",
        file="notifications", describe="The notifications you received.", order="t.created_at, t.id"),
    Holding(
        "biometric_consents", "student_id", "t.student_id = :student", "scrub",
        "Consent records stay as the proof of what was consented to and when; an active consent is "
        "withdrawn (by the erasing admin) and the withdrawal's free-text reason goes.",
        file="biometric_consents", describe="Your biometric consent records: notice version, who recorded it, "
                                            "when, and the withdrawal.",
        order="t.given_at, t.id",
        scrub="withdrawn_at = coalesce(withdrawn_at, greatest(:now, given_at)),"
              " withdrawn_by = coalesce(withdrawn_by, :actor), withdrawal_reason = 'account erased'"),
    Holding(
        "terminal_roster", "student_id", "t.student_id = :student", "keep",
        "What each terminal was told (PIN, fingerprint page): removal from the terminals is queued "
        "through the roster planner, which deletes the rows as it plans it.",
        file="terminal_enrolments", describe="The terminals that know your PIN or fingerprint page, and the "
                                             "state of each enrolment.",
        order="t.device_id"),
    Holding(
        "topic_understanding", "student_id", "t.student_id = :student", "keep",
        "Understanding levels faculty recorded in class are academic records, kept like attendance.",
        file="topic_understanding", describe="How well you understood each class (1 to 5), of a topic or of "
                                             "the whole session, who recorded it and when.",
        order="t.at, t.id",
        source="(SELECT u.*, cs.course_id, cs.starts_at AS session_starts_at, st.title AS topic_title"
               " FROM topic_understanding u JOIN class_sessions cs ON cs.id = u.session_id"
               " LEFT JOIN syllabus_topics st ON st.id = u.topic_id) t"),
    Holding(
        "topic_progress", "student_id", "t.student_id = :student", "keep",
        "Topic progress is derived from the kept attendance and understanding records, and kept with them.",
        file="topic_progress", describe="Your progress in each syllabus topic: status, competency (0 to 5), "
                                        "time spent in class.",
        order="t.course_id, t.position",
        source="(SELECT p.*, st.course_id, st.position, st.title AS topic_title FROM topic_progress p"
               " JOIN syllabus_topics st ON st.id = p.topic_id) t"),
    Holding(
        "tickets", "reported_by", "t.reported_by = :student", "keep",
        "Problem reports are maintenance records about rooms and devices, kept for operations.",
        file="reported_problems", describe="The problems you reported (room, device, what you wrote, state).",
        order="t.created_at, t.id"),
    Holding(
        "ticket_comments", "author", "t.author = :student", "keep",
        "Comments on maintenance tickets are part of the ticket's record.",
        file="ticket_comments", describe="Comments you wrote on problem reports.", order="t.created_at, t.id"),
    Holding(
        "refresh_tokens", "user_id", "t.user_id = :student", "delete",
        "Login sessions end.", hidden=("token_hash",)),
    Holding(
        "one_time_codes", "user_id", "t.user_id = :student", "delete",
        "Activation and reset codes go.", hidden=("code_hash",)),
    Holding(
        "user_mfa", "user_id", "t.user_id = :student", "delete",
        "The TOTP seed goes.", hidden=("secret_sealed",)),
    Holding(
        "mfa_recovery_codes", "user_id", "t.user_id = :student", "delete",
        "Recovery codes go.", hidden=("code_hash",)),
)

#: Tables with a ``student_id``/``user_id`` column that hold nothing about the person, and why.
NOT_PERSONAL: Mapping[tuple[str, str], str] = {}


def pseudonym(student_id: str) -> str:
    """``erased-<16 hex>``: what an erased student is called from then on; the same for the same id."""
    digest = hashlib.sha256(b"campushub erased student\x00" + student_id.encode()).hexdigest()
    return f"erased-{digest[:16]}"


def is_erased(user_id: str, username: str) -> bool:
    """Whether this account was erased (its username is its pseudonym)."""
    return username == pseudonym(user_id)


#: A named parameter (not a ``::cast``).
_NAMED = re.compile(r"(?<!:):(student|pseudonym|now|actor|hidden|sealed_token_secret)\b")


def bind(sql: str, values: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """``sql`` with its named parameters (``:student`` ...) turned into ``$n``, and their values in order.

    Only the names the text uses are passed (PostgreSQL cannot type an unused parameter).
    """
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return _NAMED.sub(number, sql), [values[name] for name in order]


# --------------------------------------------------------------------------- export

README_HEAD = """\
Everything CampusHub holds about you, as of {at}.

Each table is given twice: as JSON (exact values; times in UTC, ISO 8601) and
as CSV (one row per record, the same columns; nested values as JSON text; a
cell that a spreadsheet would run as a formula starts with an apostrophe).
Ids (yours: {student_id}) link the files to each other and to the campus's
courses and class sessions. Secrets (your password hash, the secret behind
your personal QR code, one-time codes) are never exported.

Files:
"""

README_TAIL = """
documents/<leave id>-<file name>: the document attached to that leave application, as uploaded.
submissions/<submission id>-<file id>-<file name>: a file you handed in for an assignment, as uploaded.

Questions about this data or its correction: ask the campus administration.
"""


def _plain(value: Any) -> Any:
    """A value as JSON shows it (times in ISO 8601, numbers exact as text, bytes in hex)."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(value)
    # A spreadsheet would run "=..." as a formula (CSV injection through a reason someone typed).
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return text


def rows_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as CSV (header from the union of their keys, in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue()


async def holding_rows(db: Database, holding: Holding, student_id: str) -> list[dict[str, Any]]:
    """The exported rows of one holding about the student (hidden columns left out, in table order)."""
    source = holding.source or f"{holding.table} t"
    order = f" ORDER BY {holding.order}" if holding.order else ""
    sql, args = bind(f"SELECT (to_jsonb(t) - :hidden::text[])::text AS row FROM {source} WHERE {holding.about}{order}",
                     {"student": student_id, "hidden": list(holding.hidden)})
    order_of = {name: i for i, name in enumerate(await _column_order(db, holding.table))}

    async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        # to_jsonb writes times in the session's time zone: the README promises UTC.
        await conn.execute("SET LOCAL TimeZone = 'UTC'")
        return await conn.fetch(sql, *args)

    rows = await db.run(work, transaction=True)
    out: list[dict[str, Any]] = []
    for r in rows:
        values = json.loads(r["row"])
        out.append({k: values[k] for k in sorted(values, key=lambda k: (order_of.get(k, len(order_of)), k))})
    return out


async def _column_order(db: Database, table: str) -> list[str]:
    rows = await db.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = $1 ORDER BY ordinal_position", table)
    return [r["column_name"] for r in rows]


async def table_exists(db: Database, table: str) -> bool:
    return bool(await db.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


async def export_zip(db: Database, student_id: str, *, now: datetime) -> AsyncIterator[bytes]:
    """The student's data as a zip archive, yielded in pieces of about :data:`~hub.db.zip_stream.ZIP_PIECE_BYTES`
    or more (a piece ends after a file; a document or a submitted file is one file of at most 5 MiB).

    The caller has checked that the student exists and may be exported (and recorded it:
    :func:`record_export`). Memory holds at most one table's rows or one file at a time.
    """
    from .audit import entries_about_student
    from .leave import get_document
    from .submissions import get_file

    sink = ZipSink()
    described: list[str] = []
    with zipfile.ZipFile(sink, mode="w") as archive:
        for holding in HOLDINGS:
            if holding.file is None:
                continue
            if holding.erase == "audit":
                async def entries(conn: asyncpg.Connection) -> list[Any]:
                    # Redaction attributes an erased student's entries to their pseudonym.
                    found = {e["id"]: e for name in (student_id, pseudonym(student_id))
                             for e in await entries_about_student(conn, name)}
                    return [found[i] for i in sorted(found)]
                rows = [_plain(e) for e in await db.run(entries)]
            elif not await table_exists(db, holding.table):
                continue
            else:
                rows = await holding_rows(db, holding, student_id)
            archive.writestr(zip_member(f"{holding.file}.json"),
                             json.dumps(rows, ensure_ascii=False, indent=1, default=str) + "\n")
            archive.writestr(zip_member(f"{holding.file}.csv"), rows_csv(rows))
            described.append(f"{holding.file}.json, {holding.file}.csv: {holding.describe} ({len(rows)} rows)")
            if sink.size >= ZIP_PIECE_BYTES:
                yield sink.take()
            if holding.table == "leave_documents":
                for doc in rows:
                    document = await get_document(db, int(doc["leave_id"]))
                    if document is None:  # purged meanwhile
                        continue
                    name = f"documents/{doc['leave_id']}-{safe_member_name(document.filename)}"
                    archive.writestr(zip_member(name, stored=True), document.data)
                    del document
                    if sink.size >= ZIP_PIECE_BYTES:
                        yield sink.take()
            if holding.table == "submission_files":
                for entry in rows:
                    stored = await get_file(db, int(entry["submission_id"]), int(entry["id"]))
                    if stored is None:  # erased meanwhile
                        continue
                    name = f"submissions/{entry['submission_id']}-{entry['id']}-{safe_member_name(stored.filename)}"
                    archive.writestr(zip_member(name, stored=True), stored.data)
                    del stored
                    if sink.size >= ZIP_PIECE_BYTES:
                        yield sink.take()
        readme = README_HEAD.format(at=now.isoformat(), student_id=student_id) \
            + "".join(f"{line}\n" for line in described) + README_TAIL
        archive.writestr(zip_member("README.txt"), readme)
    yield sink.take()


async def record_export(db: Database, *, student_id: str, actor: str, reason: str = "") -> None:
    """Write the export to the audit log (entity ``personal_data``, action ``exported``), in its own transaction."""

    async def work(conn: asyncpg.Connection) -> None:
        await record(conn, actor=actor, action="exported", entity="personal_data", entity_id=student_id,
                     reason=reason)

    await db.run(work, transaction=True)
