"""Correction requests: a student disputes one of their records; the course's faculty decides.

Rules in :mod:`hub.domain.corrections`. Who decides: an admin, or a faculty
member who manages the session's course (:func:`hub.db.academic.manages_sql`).

Concurrency contract: every function is a trio coroutine that blocks the
calling task until PostgreSQL answers; cancelling it rolls its transaction
back. One pending request per record (a unique index; a second is a
``conflict``). A decision takes the attendance lock first, locks the request
row, and writes the record through :mod:`hub.db.attendance` in the same
transaction. After it commits the caller tells the live session actor
(``affected``) and publishes ``notifications``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from hub.domain.corrections import (
    CORRECTION_SOURCE,
    CorrectionRuleError,
    next_status,
    validate_note,
    validate_request,
)

from ._pool import Database
from .academic import manages_sql
from .attendance import AttendanceChange, apply_attendance_changes, lock_attendance
from .notifications import NewNotification, add_notifications
from .paging import Page


class CorrectionNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Correction:
    """A correction request with its student, course, session and the record it disputes."""

    id: int
    session_id: str
    student_id: str
    student_name: str
    roll_number: str
    course_id: str
    course_code: str
    course_title: str
    session_starts_at: datetime
    current_status: str | None  # the record when the request was filed (None: no record)
    requested_status: str
    record_status: str | None  # the record now
    reason: str
    status: str  # pending | approved | rejected | withdrawn
    requested_at: datetime
    decided_by: str | None
    decided_by_name: str | None
    decided_at: datetime | None
    decision_note: str
    updated_at: datetime


@dataclass(frozen=True)
class CorrectionOutcome:
    correction: Correction
    affected: dict[str, list[str]] = field(default_factory=dict)
    notifications: list[dict] = field(default_factory=list)


_SELECT = (
    "SELECT r.id, r.session_id, r.student_id, u.display_name AS student_name, st.roll_number,"
    " cs.course_id, c.code AS course_code, c.title AS course_title, cs.starts_at AS session_starts_at,"
    " r.current_status, r.requested_status, a.status AS record_status, r.reason, r.status, r.requested_at,"
    " r.decided_by, du.display_name AS decided_by_name, r.decided_at, r.decision_note, r.updated_at"
    " FROM correction_requests r"
    " JOIN class_sessions cs ON cs.id = r.session_id JOIN courses c ON c.id = cs.course_id"
    " JOIN students st ON st.id = r.student_id JOIN users u ON u.id = r.student_id"
    " LEFT JOIN users du ON du.id = r.decided_by"
    " LEFT JOIN attendance a ON a.session_id = r.session_id AND a.student_id = r.student_id"
)


async def _fetch(conn: asyncpg.Connection, correction_id: int) -> Correction | None:
    row = await conn.fetchrow(f"{_SELECT} WHERE r.id = $1", correction_id)
    return None if row is None else Correction(**dict(row))


async def list_corrections(
    db: Database, *, limit: int, offset: int, student_id: str | None = None, faculty_id: str | None = None,
    status: str | None = None,
) -> Page[Correction]:
    """A page of requests, newest first, and how many there are in all: one student's, those of the
    courses a faculty member manages, or all (admin); optionally of one status."""
    clauses, args = [], []
    if student_id is not None:
        args.append(student_id)
        clauses.append(f"r.student_id = ${len(args)}")
    if faculty_id is not None:
        args.append(faculty_id)
        clauses.append(manages_sql("cs.course_id", f"${len(args)}"))
    if status is not None:
        args.append(status)
        clauses.append(f"r.status = ${len(args)}")
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    n = len(args)

    async def work(conn: asyncpg.Connection) -> Page[Correction]:
        total = await conn.fetchval(
            f"SELECT count(*) FROM correction_requests r JOIN class_sessions cs ON cs.id = r.session_id{where}",
            *args)
        rows = await conn.fetch(f"{_SELECT}{where} ORDER BY r.requested_at DESC, r.id DESC"
                                f" LIMIT ${n + 1} OFFSET ${n + 2}", *args, limit, offset)
        return Page([Correction(**dict(r)) for r in rows], total)

    return await db.run(work)


async def get_correction(db: Database, correction_id: int) -> Correction:
    correction = await db.run(lambda conn: _fetch(conn, correction_id))
    if correction is None:
        raise CorrectionNotFound(correction_id)
    return correction


async def may_decide(db: Database, user_id: str, role: str, course_id: str) -> bool:
    if role == "admin":
        return True
    return role == "faculty" and bool(await db.fetchval("SELECT " + manages_sql("$1", "$2"), course_id, user_id))


async def request_correction(
    db: Database, *, student_id: str, session_id: str, requested_status: object, reason: object, now: datetime,
) -> CorrectionOutcome:
    """File a request for the student's own record of ``session_id``; notifies the course's faculty.

    Raises :class:`CorrectionNotFound` when the session does not exist or the
    student is not enrolled in its course (no record to correct), and
    :class:`CorrectionRuleError` when the rules refuse it.
    """

    async def work(conn: asyncpg.Connection) -> CorrectionOutcome:
        session = await conn.fetchrow(
            "SELECT cs.id, cs.course_id, cs.status, cs.starts_at, a.status AS record_status,"
            " EXISTS (SELECT 1 FROM enrolments e WHERE e.course_id = cs.course_id AND e.student_id = $2) AS enrolled"
            " FROM class_sessions cs LEFT JOIN attendance a ON a.session_id = cs.id AND a.student_id = $2"
            " WHERE cs.id = $1", session_id, student_id)
        if session is None or not (session["enrolled"] or session["record_status"] is not None):
            raise CorrectionNotFound(session_id)
        status, text = validate_request(
            requested_status=requested_status, reason=reason, current_status=session["record_status"],
            session_status=session["status"], session_starts_at=session["starts_at"], now=now)
        try:
            async with conn.transaction():  # a savepoint: the duplicate is reported, not a 500
                request_id = await conn.fetchval(
                    "INSERT INTO correction_requests (session_id, student_id, current_status, requested_status,"
                    " reason, requested_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
                    session_id, student_id, session["record_status"], status, text, now)
        except asyncpg.UniqueViolationError:
            raise CorrectionRuleError("You already have a pending request for this record.",
                                      field="session_id", code="conflict") from None
        correction = await _fetch(conn, request_id)
        assert correction is not None  # inserted just above, in this transaction
        faculty = [r["id"] for r in await conn.fetch(
            "SELECT u.id FROM users u WHERE u.role = 'faculty' AND " + manages_sql("$1", "u.id"),
            session["course_id"])]
        notes = await add_notifications(conn, [
            NewNotification(user, "correction_requested",
                            f"Correction request from {correction.student_name}",
                            f"{correction.course_code} {correction.session_starts_at:%Y-%m-%d %H:%M}: "
                            f"{correction.current_status or 'no record'} → {status}. {text[:200]}",
                            "/faculty/queues", {"correction_id": request_id, "session_id": session_id})
            for user in faculty
        ])
        return CorrectionOutcome(correction, {}, notes)

    return await db.run(work, transaction=True)


async def decide_correction(
    db: Database, correction_id: int, *, approve: bool, decided_by: str, note: object, now: datetime,
) -> CorrectionOutcome:
    """Approve (the record gets the requested status) or reject a pending request; notifies the
    student. The caller has checked :func:`may_decide` for the request's course."""
    text = validate_note(note)

    async def work(conn: asyncpg.Connection) -> CorrectionOutcome:
        await lock_attendance(conn)
        request = await _locked(conn, correction_id)
        new_status = next_status(request["status"], "approve" if approve else "reject")
        affected: dict[str, list[str]] = {}
        if approve:
            existing = await conn.fetchrow(
                "SELECT checked_in_at FROM attendance WHERE session_id = $1 AND student_id = $2",
                request["session_id"], request["student_id"])
            attended = request["requested_status"] in ("present", "late")
            # A check-in time stays with an attended record; it means nothing for absent/excused.
            at = existing["checked_in_at"] if attended and existing is not None else None
            why = f"correction #{correction_id}: {request['reason'][:200]}" + (f" ({text})" if text else "")
            applied = await apply_attendance_changes(conn, [AttendanceChange(
                request["session_id"], request["student_id"], request["requested_status"], CORRECTION_SOURCE, at)],
                actor=decided_by, reason=why)
            if applied:
                affected = {request["session_id"]: [request["student_id"]]}
        await conn.execute(
            "UPDATE correction_requests SET status = $2, decided_by = $3, decided_at = $4, decision_note = $5,"
            " updated_at = $4 WHERE id = $1", correction_id, new_status, decided_by, now, text)
        correction = await _fetch(conn, correction_id)
        assert correction is not None  # locked above, in this transaction
        verdict = "approved" if approve else "rejected"
        body = (f"{correction.course_code} {correction.session_starts_at:%Y-%m-%d %H:%M}: your request for "
                f"{correction.requested_status} was {verdict}." + (f" Note: {text}" if text else ""))
        notes = await add_notifications(conn, [NewNotification(
            request["student_id"], "correction_decided", f"Correction {verdict}", body, "/student/corrections",
            {"correction_id": correction_id, "status": new_status, "session_id": request["session_id"]})])
        return CorrectionOutcome(correction, affected, notes)

    return await db.run(work, transaction=True)


async def withdraw_correction(db: Database, correction_id: int, *, now: datetime) -> CorrectionOutcome:
    """The student takes back a pending request (the caller has checked it is theirs)."""

    async def work(conn: asyncpg.Connection) -> CorrectionOutcome:
        request = await _locked(conn, correction_id)
        next_status(request["status"], "withdraw")
        await conn.execute("UPDATE correction_requests SET status = 'withdrawn', updated_at = $2 WHERE id = $1",
                           correction_id, now)
        correction = await _fetch(conn, correction_id)
        assert correction is not None  # locked above, in this transaction
        return CorrectionOutcome(correction)

    return await db.run(work, transaction=True)


async def _locked(conn: asyncpg.Connection, correction_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT id, session_id, student_id, requested_status, reason, status FROM correction_requests"
        " WHERE id = $1 FOR UPDATE", correction_id)
    if row is None:
        raise CorrectionNotFound(correction_id)
    return row
