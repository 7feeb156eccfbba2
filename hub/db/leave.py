"""Leave applications: apply (with an optional document), list, decide, cancel.

The rules are in :mod:`hub.domain.leave`; this module loads what they need and
writes what they decide, each action in one transaction: the attendance
records a decision changes (through :mod:`hub.db.attendance`, so each change
has its audit entry), the application's new state, and the notifications.

Who decides: an admin, or a faculty member who teaches (coordinates or is
assigned to, see :func:`hub.db.academic.manages_sql`) a course the student is
enrolled in with a non-cancelled session on a day of the leave. A leave that
covers no session can only be decided by an admin.

Concurrency contract: every function is a trio coroutine that blocks the
calling task until PostgreSQL answers; cancelling it rolls its transaction
back. Applications of one student serialise on a per-student advisory lock
(so two overlapping ones cannot both pass the overlap check); decisions and
cancellations take the attendance lock first (:func:`hub.db.attendance.lock_attendance`),
so what they read is what they change. After a decision commits the caller
must tell live session actors (``affected``) and publish ``notifications``.
:func:`excuse_on_leave` is the exception: an asyncio coroutine that runs on the
caller's connection, inside the transaction that creates sessions.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Sequence

import asyncpg

from hub.domain.leave import (
    CANCELLED_DOCUMENT_GRACE,
    LEAVE_SOURCE,
    MAX_NOTE_CHARS,
    MAX_REASON_CHARS,
    LeaveEntry,
    LeavePeriod,
    LeaveRuleError,
    RecordValue,
    SessionSlot,
    covered_sessions,
    document_quota_problem,
    excuse_plan,
    find_overlap,
    next_status,
    revert_plan,
    validate_period,
    validate_text,
)

from ._pool import Database
from .academic import manages_sql
from .attendance import AttendanceChange, apply_attendance_changes, apply_attributed_changes, lock_attendance
from .notifications import NewNotification, add_notifications
from .paging import Page
from .sealed_secrets import leave_document_context

_STUDENT_LOCK_CLASS = 0x4C454156  # 'LEAV'


@dataclass(frozen=True)
class NewDocument:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class AttachedDocument:
    """What an application tells of its document (the bytes are :func:`get_document`'s)."""

    filename: str
    content_type: str
    size_bytes: int


@dataclass(frozen=True)
class Leave:
    """A leave application, with its student's and decider's names and how many records it holds excused."""

    id: int
    student_id: str
    student_name: str
    roll_number: str
    starts_on: date
    ends_on: date
    reason: str
    status: str
    applied_at: datetime
    decided_by: str | None
    decided_by_name: str | None
    decided_at: datetime | None
    decision_note: str
    cancelled_by: str | None
    cancelled_at: datetime | None
    updated_at: datetime
    document: AttachedDocument | None
    excused_sessions: int


@dataclass(frozen=True)
class LeaveOutcome:
    """What an action did: the application after it, the records it changed (session id →
    student ids, for the live session actors) and the notifications to publish."""

    leave: Leave
    affected: dict[str, list[str]] = field(default_factory=dict)
    notifications: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Document:
    filename: str
    content_type: str
    data: bytes


class LeaveNotFound(LookupError):
    pass


# --------------------------------------------------------------------------- reading

_SELECT = (
    "SELECT l.id, l.student_id, u.display_name AS student_name, st.roll_number, l.starts_on, l.ends_on,"
    " l.reason, l.status, l.applied_at, l.decided_by, du.display_name AS decided_by_name, l.decided_at,"
    " l.decision_note, l.cancelled_by, l.cancelled_at, l.updated_at,"
    " d.filename AS doc_filename, d.content_type AS doc_type, d.size_bytes AS doc_size,"
    " (SELECT count(*) FROM leave_sessions ls WHERE ls.leave_id = l.id AND ls.reverted_at IS NULL)"
    "   AS excused_sessions"
    " FROM leave_applications l"
    " JOIN students st ON st.id = l.student_id JOIN users u ON u.id = l.student_id"
    " LEFT JOIN users du ON du.id = l.decided_by"
    " LEFT JOIN leave_documents d ON d.leave_id = l.id"
)

#: SQL: the calendar day of class session ``cs`` in its term's timezone (UTC without a term; needs
#: ``sections sec`` and ``terms t`` left-joined). The day a leave's dates are compared with.
_LOCAL_DATE = "(cs.starts_at AT TIME ZONE coalesce(t.timezone, 'UTC'))::date"

#: SQL condition: faculty ``{user}`` may decide leave ``l`` (see the module docstring).
_DECIDES = (
    "EXISTS (SELECT 1 FROM enrolments e JOIN class_sessions cs ON cs.course_id = e.course_id"
    " LEFT JOIN sections sec ON sec.id = cs.section_id LEFT JOIN terms t ON t.id = sec.term_id"
    " WHERE e.student_id = l.student_id AND cs.status <> 'cancelled'"
    " AND " + _LOCAL_DATE + " BETWEEN l.starts_on AND l.ends_on"
    " AND " + manages_sql("e.course_id", "{user}") + ")"
)


def _leave(row: asyncpg.Record) -> Leave:
    values = dict(row)
    filename, content_type, size = values.pop("doc_filename"), values.pop("doc_type"), values.pop("doc_size")
    document = None if filename is None else AttachedDocument(filename, content_type, size)
    return Leave(**values, document=document)


async def list_leaves(
    db: Database, *, limit: int, offset: int, student_id: str | None = None, decider_id: str | None = None,
    status: str | None = None,
) -> Page[Leave]:
    """A page of applications, newest first, and how many there are in all: one student's, those a
    faculty member may decide (``decider_id``), or all (admin); optionally of one status."""
    clauses, args = [], []
    if student_id is not None:
        args.append(student_id)
        clauses.append(f"l.student_id = ${len(args)}")
    if decider_id is not None:
        args.append(decider_id)
        clauses.append(_DECIDES.format(user=f"${len(args)}"))
    if status is not None:
        args.append(status)
        clauses.append(f"l.status = ${len(args)}")
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    n = len(args)

    async def work(conn: asyncpg.Connection) -> Page[Leave]:
        total = await conn.fetchval(f"SELECT count(*) FROM leave_applications l{where}", *args)
        rows = await conn.fetch(f"{_SELECT}{where} ORDER BY l.applied_at DESC, l.id DESC"
                                f" LIMIT ${n + 1} OFFSET ${n + 2}", *args, limit, offset)
        return Page([_leave(r) for r in rows], total)

    return await db.run(work)


async def get_leave(db: Database, leave_id: int) -> Leave:
    row = await db.fetchrow(f"{_SELECT} WHERE l.id = $1", leave_id)
    if row is None:
        raise LeaveNotFound(leave_id)
    return _leave(row)


async def may_decide(db: Database, user_id: str, role: str, leave_id: int) -> bool:
    """Admin: always. Faculty: see the module docstring. Others: never."""
    if role == "admin":
        return True
    if role != "faculty":
        return False
    return bool(await db.fetchval(
        f"SELECT {_DECIDES.format(user='$2')} FROM leave_applications l WHERE l.id = $1", leave_id, user_id))


async def get_document(db: Database, leave_id: int) -> Document | None:
    """A leave application's document with its bytes in the clear (stored sealed with the campus key,
    opened here: ~1-6 ms for 5 MiB on the calling thread, as its sha256 was at upload)."""
    row = await db.fetchrow(
        "SELECT filename, content_type, data, data_sealed FROM leave_documents WHERE leave_id = $1", leave_id)
    if row is None:
        return None
    if row["data_sealed"] is None:  # stored before migration 0025 and not sealed yet
        return Document(row["filename"], row["content_type"], bytes(row["data"]))
    data = db.secrets.decrypt_document(bytes(row["data_sealed"]), leave_document_context(leave_id))
    return Document(row["filename"], row["content_type"], data)


# --------------------------------------------------------------------------- applying


async def apply_for_leave(
    db: Database, *, student_id: str, starts_on: date, ends_on: date, reason: str,
    document: NewDocument | None, today: date,
) -> LeaveOutcome:
    """File an application; :class:`LeaveRuleError` (code ``conflict`` for an overlap) if refused.

    The document must already be validated (:func:`hub.domain.leave.validate_document`).
    Notifies whoever may decide it (faculty, or the admins when no faculty may).
    """
    validate_period(starts_on, ends_on, today)
    reason = validate_text(reason, field="reason", limit=MAX_REASON_CHARS, required=True)

    async def work(conn: asyncpg.Connection) -> LeaveOutcome:
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _STUDENT_LOCK_CLASS, student_id)
        existing = [LeavePeriod(r["id"], r["starts_on"], r["ends_on"], r["status"]) for r in await conn.fetch(
            "SELECT id, starts_on, ends_on, status FROM leave_applications"
            " WHERE student_id = $1 AND status IN ('applied', 'approved')", student_id)]
        clash = find_overlap(starts_on, ends_on, existing)
        if clash is not None:
            raise LeaveRuleError(
                f"It overlaps your {clash.status} leave #{clash.id} ({clash.starts_on} to {clash.ends_on}).",
                field="starts_on", code="conflict")
        if document is not None:  # under the student's lock: two uploads at once cannot both fit
            problem = document_quota_problem(await stored_document_bytes(conn, student_id), len(document.data))
            if problem is not None:
                raise LeaveRuleError(problem, field="document", code="document_quota_exceeded")
        leave_id = await conn.fetchval(
            "INSERT INTO leave_applications (student_id, starts_on, ends_on, reason) VALUES ($1, $2, $3, $4)"
            " RETURNING id", student_id, starts_on, ends_on, reason)
        if document is not None:
            await conn.execute(
                "INSERT INTO leave_documents (leave_id, filename, content_type, size_bytes, sha256, data_sealed)"
                " VALUES ($1, $2, $3, $4, $5, $6)", leave_id, document.filename, document.content_type,
                len(document.data), hashlib.sha256(document.data).digest(),
                db.secrets.encrypt_document(document.data, leave_document_context(leave_id)))
        leave = _leave(await conn.fetchrow(f"{_SELECT} WHERE l.id = $1", leave_id))
        deciders = [r["id"] for r in await conn.fetch(
            f"SELECT u.id FROM users u, leave_applications l WHERE l.id = $1 AND u.role = 'faculty'"
            f" AND {_DECIDES.format(user='u.id')}", leave_id)]
        if not deciders:
            deciders = [r["id"] for r in await conn.fetch("SELECT id FROM users WHERE role = 'admin'")]
        notes = await add_notifications(conn, [
            NewNotification(user, "leave_applied", f"Leave request from {leave.student_name}",
                            f"{_span(leave)}: {reason[:200]}", "/faculty/queues",
                            {"leave_id": leave_id, "student_id": student_id})
            for user in deciders
        ])
        return LeaveOutcome(leave, {}, notes)

    return await db.run(work, transaction=True)


async def stored_document_bytes(conn: asyncpg.Connection, student_id: str) -> int:
    """Bytes of leave documents the student has stored now (what counts against the quota)."""
    return await conn.fetchval(
        "SELECT coalesce(sum(d.size_bytes), 0) FROM leave_documents d"
        " JOIN leave_applications l ON l.id = d.leave_id WHERE l.student_id = $1", student_id)


# --------------------------------------------------------------------------- retention


async def purge_cancelled_documents(db: Database, now: datetime) -> int:
    """Delete the documents of applications cancelled at least ``CANCELLED_DOCUMENT_GRACE`` before ``now``.

    The applications stay (with their history); only the bytes go. Returns how many were deleted.
    """
    return await db.fetchval(
        "WITH gone AS (DELETE FROM leave_documents d USING leave_applications l"
        " WHERE l.id = d.leave_id AND l.status = 'cancelled' AND l.cancelled_at <= $1 RETURNING 1)"
        " SELECT count(*) FROM gone", now - CANCELLED_DOCUMENT_GRACE)


async def next_document_purge(db: Database) -> datetime | None:
    """When the next cancelled application's document falls due for :func:`purge_cancelled_documents`; None if none waits."""
    oldest = await db.fetchval(
        "SELECT min(l.cancelled_at) FROM leave_applications l JOIN leave_documents d ON d.leave_id = l.id"
        " WHERE l.status = 'cancelled'")
    return None if oldest is None else oldest + CANCELLED_DOCUMENT_GRACE


def _span(leave: Leave) -> str:
    if leave.starts_on == leave.ends_on:
        return leave.starts_on.isoformat()
    return f"{leave.starts_on.isoformat()} to {leave.ends_on.isoformat()}"


# --------------------------------------------------------------------------- deciding


async def decide_leave(
    db: Database, leave_id: int, *, approve: bool, decided_by: str, note: str, now: datetime,
) -> LeaveOutcome:
    """Approve (excusing the absences it covers) or reject an applied leave; notifies the student.

    The caller has checked :func:`may_decide`. Raises :class:`LeaveNotFound`,
    or :class:`LeaveRuleError` (``conflict``) unless the leave is ``applied``.
    """
    note = validate_text(note, field="note", limit=MAX_NOTE_CHARS, required=False)

    async def work(conn: asyncpg.Connection) -> LeaveOutcome:
        await lock_attendance(conn)
        current = await _locked(conn, leave_id)
        new_status = next_status(current["status"], "approve" if approve else "reject")
        affected: dict[str, list[str]] = {}
        if approve:
            affected = await _excuse(conn, current, decided_by)
        await conn.execute(
            "UPDATE leave_applications SET status = $2, decided_by = $3, decided_at = $4, decision_note = $5,"
            " updated_at = $4 WHERE id = $1", leave_id, new_status, decided_by, now, note)
        leave = _leave(await conn.fetchrow(f"{_SELECT} WHERE l.id = $1", leave_id))
        verdict = "approved" if approve else "rejected"
        body = f"Your leave {_span(leave)} was {verdict}."
        if approve:
            body += f" {leave.excused_sessions} session(s) marked excused."
        if note:
            body += f" Note: {note}"
        notes = await add_notifications(conn, [NewNotification(
            leave.student_id, "leave_decided", f"Leave {verdict}", body, "/student/leave",
            {"leave_id": leave_id, "status": new_status})])
        return LeaveOutcome(leave, affected, notes)

    return await db.run(work, transaction=True)


async def cancel_leave(db: Database, leave_id: int, *, cancelled_by: str, now: datetime) -> LeaveOutcome:
    """Cancel an applied or approved leave; an approved one's excuses are reverted (see
    :func:`hub.domain.leave.revert_plan`). The caller has checked who may cancel."""

    async def work(conn: asyncpg.Connection) -> LeaveOutcome:
        await lock_attendance(conn)
        current = await _locked(conn, leave_id)
        was = current["status"]
        next_status(was, "cancel")
        affected: dict[str, list[str]] = {}
        if was == "approved":
            affected = await _revert(conn, current, cancelled_by, now)
        await conn.execute(
            "UPDATE leave_applications SET status = 'cancelled', cancelled_by = $2, cancelled_at = $3,"
            " updated_at = $3 WHERE id = $1", leave_id, cancelled_by, now)
        leave = _leave(await conn.fetchrow(f"{_SELECT} WHERE l.id = $1", leave_id))
        recipients = []
        if cancelled_by != leave.student_id:
            recipients.append((leave.student_id, "/student/leave"))
        elif was == "approved" and current["decided_by"]:
            recipients.append((current["decided_by"], "/faculty/queues"))
        notes = await add_notifications(conn, [
            NewNotification(user, "leave_cancelled", "Leave cancelled",
                            f"Leave {_span(leave)} of {leave.student_name} was cancelled"
                            + (f"; {len(affected)} session(s) restored." if affected else "."),
                            link, {"leave_id": leave_id, "status": "cancelled"})
            for user, link in recipients
        ])
        return LeaveOutcome(leave, affected, notes)

    return await db.run(work, transaction=True)


async def _locked(conn: asyncpg.Connection, leave_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT id, student_id, starts_on, ends_on, reason, status, decided_by FROM leave_applications"
        " WHERE id = $1 FOR UPDATE", leave_id)
    if row is None:
        raise LeaveNotFound(leave_id)
    return row


async def _excuse(conn: asyncpg.Connection, leave: asyncpg.Record, actor: str) -> dict[str, list[str]]:
    student_id, starts_on, ends_on = leave["student_id"], leave["starts_on"], leave["ends_on"]
    # One day of margin each side: a session's local date may differ from its UTC date.
    sessions = [SessionSlot(r["id"], r["course_id"], r["section_id"], r["local_date"], r["status"])
                for r in await conn.fetch(
        "SELECT cs.id, cs.course_id, cs.section_id, cs.status, " + _LOCAL_DATE + " AS local_date"
        " FROM class_sessions cs JOIN enrolments e ON e.course_id = cs.course_id AND e.student_id = $1"
        " LEFT JOIN sections sec ON sec.id = cs.section_id LEFT JOIN terms t ON t.id = sec.term_id"
        " WHERE cs.starts_at >= $2::date - 1 AND cs.starts_at < $3::date + 2",
        student_id, starts_on, ends_on)]
    enrolments = {r["course_id"]: r["section_id"] for r in await conn.fetch(
        "SELECT course_id, section_id FROM enrolments WHERE student_id = $1", student_id)}
    holidays = [(r["starts_on"], r["ends_on"]) for r in await conn.fetch(
        "SELECT starts_on, ends_on FROM holidays WHERE starts_on <= $2 AND ends_on >= $1", starts_on, ends_on)]
    covered = covered_sessions(starts_on, ends_on, sessions, enrolments, holidays)
    current = await _records(conn, student_id, covered)
    plan = excuse_plan(covered, current)
    return await _write_excuses(conn, [_Excuses(leave["id"], student_id, leave["reason"], plan)], actor)


async def excuse_on_leave(conn: asyncpg.Connection, session_ids: Sequence[str], *, actor: str) -> dict[str, list[str]]:
    """Excuse, in ``session_ids`` (sessions just created, or scheduled again), every student whose
    approved leave covers one of them, exactly as approving that leave excused the sessions that
    existed then: same coverage (:func:`hub.domain.leave.covered_sessions`), same plan
    (:func:`hub.domain.leave.excuse_plan`), one audit entry per record (by ``actor``, the one
    creating the sessions, with the leave's reason) and a ``leave_sessions`` row, so cancelling
    the leave reverts these records too. Returns session id -> the student ids excused in it.

    Every path that puts class sessions on a day calls it in the transaction that does, after
    writing them: :func:`hub.db.class_sessions.create_session` and
    :func:`~hub.db.class_sessions.reschedule_session`, and the timetable's regeneration
    (:mod:`hub.db.timetable`: generated and restored sessions).

    Concurrency contract: it takes the attendance lock (:func:`hub.db.attendance.lock_attendance`)
    before reading, as :func:`decide_leave` and :func:`cancel_leave` do, so a concurrent decision
    either is seen here or sees these sessions; the lock is held until the caller commits. A
    caller that locks or deletes existing session rows must take that lock first, before them: a
    decision holding it may be writing a record of such a session, whose foreign-key check would
    wait on the caller's row lock (a deadlock). One query when nobody is on leave, whatever the
    number of sessions.
    """
    if not session_ids:
        return {}
    await lock_attendance(conn)
    rows = await conn.fetch(
        "SELECT cs.id, cs.course_id, cs.section_id, cs.status, " + _LOCAL_DATE + " AS local_date,"
        " e.section_id AS enrolled_section, l.id AS leave_id, l.student_id, l.starts_on, l.ends_on, l.reason"
        " FROM class_sessions cs"
        " LEFT JOIN sections sec ON sec.id = cs.section_id LEFT JOIN terms t ON t.id = sec.term_id"
        " JOIN enrolments e ON e.course_id = cs.course_id"
        " JOIN leave_applications l ON l.student_id = e.student_id AND l.status = 'approved'"
        "  AND " + _LOCAL_DATE + " BETWEEN l.starts_on AND l.ends_on"
        " WHERE cs.id = ANY($1::text[])", list(session_ids))
    if not rows:
        return {}
    days = [r["local_date"] for r in rows]
    holidays = [(r["starts_on"], r["ends_on"]) for r in await conn.fetch(
        "SELECT starts_on, ends_on FROM holidays WHERE starts_on <= $2 AND ends_on >= $1", min(days), max(days))]
    by_leave: dict[int, list[asyncpg.Record]] = {}
    for r in rows:
        by_leave.setdefault(r["leave_id"], []).append(r)
    students = sorted({r["student_id"] for r in rows})
    current = {(r["session_id"], r["student_id"]): RecordValue(r["status"], r["checked_in_at"], r["source"])
               for r in await conn.fetch(
        "SELECT session_id, student_id, status, checked_in_at, source FROM attendance"
        " WHERE session_id = ANY($1::text[]) AND student_id = ANY($2::text[])", list(session_ids), students)}
    plans = []
    for leave_rows in by_leave.values():
        leave = leave_rows[0]
        covered = covered_sessions(
            leave["starts_on"], leave["ends_on"],
            [SessionSlot(r["id"], r["course_id"], r["section_id"], r["local_date"], r["status"]) for r in leave_rows],
            {r["course_id"]: r["enrolled_section"] for r in leave_rows}, holidays)
        student_id = leave["student_id"]
        records = {s: current[(s, student_id)] for s in covered if (s, student_id) in current}
        plans.append(_Excuses(leave["leave_id"], student_id, leave["reason"], excuse_plan(covered, records)))
    return await _write_excuses(conn, plans, actor)


@dataclass(frozen=True)
class _Excuses:
    """The sessions an approved leave marks excused (``hub.domain.leave.excuse_plan``)."""

    leave_id: int
    student_id: str
    leave_reason: str
    session_ids: Sequence[str]


async def _write_excuses(conn: asyncpg.Connection, plans: Sequence[_Excuses], actor: str) -> dict[str, list[str]]:
    """Mark each plan's sessions excused for its student through the attendance primitive (one
    audit entry each) and keep each changed record's prior value in ``leave_sessions``."""
    leave_of: dict[tuple[str, str], int] = {}
    entries = []
    for plan in plans:
        reason = f"leave #{plan.leave_id} approved: {plan.leave_reason[:200]}"
        for session_id in plan.session_ids:
            leave_of[(session_id, plan.student_id)] = plan.leave_id
            entries.append((AttendanceChange(session_id, plan.student_id, "excused", LEAVE_SOURCE,
                                             replaces=frozenset({"absent"})), actor, reason))
    applied = await apply_attributed_changes(conn, entries)
    if applied:
        # A record this leave had excused before can come back here (a session cancelled and then
        # scheduled again, its record corrected meanwhile): its latest prior value is the one to restore.
        await conn.execute(
            "INSERT INTO leave_sessions (leave_id, session_id, student_id, prior_status, prior_checked_in_at,"
            " prior_source) SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],"
            " $5::timestamptz[], $6::text[])"
            " ON CONFLICT (leave_id, session_id) DO UPDATE SET prior_status = EXCLUDED.prior_status,"
            " prior_checked_in_at = EXCLUDED.prior_checked_in_at, prior_source = EXCLUDED.prior_source,"
            " reverted_at = NULL",
            [leave_of[(a.session_id, a.student_id)] for a in applied], [a.session_id for a in applied],
            [a.student_id for a in applied],
            [None if a.before is None else a.before["status"] for a in applied],
            [_time(a.before) for a in applied],
            [None if a.before is None else a.before["source"] for a in applied])
    affected: dict[str, list[str]] = {}
    for a in applied:
        affected.setdefault(a.session_id, []).append(a.student_id)
    return affected


async def _revert(conn: asyncpg.Connection, leave: asyncpg.Record, actor: str, now: datetime) -> dict[str, list[str]]:
    student_id = leave["student_id"]
    rows = await conn.fetch(
        "SELECT ls.session_id, ls.prior_status, ls.prior_checked_in_at, ls.prior_source,"
        " (cs.status = 'closed' OR cs.ends_at <= $2) AS ended"
        " FROM leave_sessions ls JOIN class_sessions cs ON cs.id = ls.session_id"
        " WHERE ls.leave_id = $1 AND ls.reverted_at IS NULL", leave["id"], now)
    entries = [LeaveEntry(r["session_id"], None if r["prior_status"] is None else RecordValue(
        r["prior_status"], r["prior_checked_in_at"], r["prior_source"])) for r in rows]
    current = await _records(conn, student_id, [e.session_id for e in entries])
    plan = revert_plan(entries, current, {r["session_id"]: r["ended"] for r in rows})
    applied = await apply_attendance_changes(
        conn, [AttendanceChange(r.session_id, student_id, r.status, r.source, r.checked_in_at,
                                replaces=frozenset({"excused"})) for r in plan],
        actor=actor, reason=f"leave #{leave['id']} cancelled")
    await conn.execute("UPDATE leave_sessions SET reverted_at = $2 WHERE leave_id = $1 AND reverted_at IS NULL",
                       leave["id"], now)
    return {a.session_id: [student_id] for a in applied}


async def _records(conn: asyncpg.Connection, student_id: str, session_ids: Sequence[str]) -> dict[str, RecordValue]:
    rows = await conn.fetch(
        "SELECT session_id, status, checked_in_at, source FROM attendance"
        " WHERE student_id = $1 AND session_id = ANY($2::text[])", student_id, list(session_ids))
    return {r["session_id"]: RecordValue(r["status"], r["checked_in_at"], r["source"]) for r in rows}


def _time(snapshot: dict[str, Any] | None) -> datetime | None:
    if snapshot is None or snapshot["checked_in_at"] is None:
        return None
    return datetime.fromisoformat(snapshot["checked_in_at"])
