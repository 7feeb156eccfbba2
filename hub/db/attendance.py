"""THE way to change an attendance record: upsert + one hash-chained audit entry per real change.

Every writer of the ``attendance`` table goes through :func:`apply_attendance_changes`
(or :func:`apply_attributed_changes` for a batch whose entries have different
actors, like the hub's batch writer). Nothing else writes that table.

Concurrency contract: both functions run on the asyncio side, inside the
caller's transaction (``Database.run(work, transaction=True)``), on the
caller's connection. They first take the audit chain's transaction-scoped
advisory lock (:data:`AUDIT_CHAIN_LOCK`, the same lock the ``audit_log``
insert trigger takes), so concurrent writers -- the batch writer and web
requests -- serialise from the read of the current records to their commit and
keep one chain. The lock is held until the caller's transaction ends: keep
work after the call short. A batch of any size costs three round trips (lock,
read, write). Cancellation or an exception rolls back with the caller's
transaction; nothing is written on its own.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

import asyncpg

#: Key of the transaction-scoped advisory lock that serialises audit-chain appends
#: (also hard-coded in migration 0004's ``audit_log_chain`` trigger).
AUDIT_CHAIN_LOCK = 4702111234474983745

STATUSES = ("present", "late", "absent", "excused")


@dataclass(frozen=True)
class AttendanceChange:
    """The value one record should have.

    ``status=None`` removes the record (used only to restore "no record yet",
    e.g. when a leave that created it is cancelled before the session).
    ``replaces``: the current statuses this change may overwrite; ``None``
    means any. A missing record is always created. A change whose record holds
    a status outside ``replaces`` is skipped (not an error) and not audited.
    """

    session_id: str
    student_id: str
    status: str | None  # 'present' | 'late' | 'absent' | 'excused' | None (remove)
    source: str         # 'qr' | 'biometric' | 'display' | 'manual' | 'bulk' | 'auto_absent' | 'leave' | ...
    checked_in_at: datetime | None = None
    event_id: uuid.UUID | None = None
    replaces: frozenset[str] | None = None


@dataclass(frozen=True)
class AppliedChange:
    """One record that really changed: its value before and after (``None``: no record)."""

    session_id: str
    student_id: str
    course_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    actor: str
    reason: str


class InvalidAttendanceChange(ValueError):
    """A change that can never be written (unknown status, naive time)."""


async def lock_attendance(conn: asyncpg.Connection) -> None:
    """Take the attendance/audit lock now, in the caller's transaction (held until it ends).

    For a writer that reads records (or other state) to decide what to change:
    taken before those reads, nothing can change them until it commits. The
    primitive takes it again (it is re-entrant), so calling this is optional.
    """
    await conn.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_CHAIN_LOCK)


async def apply_attendance_changes(
    conn: asyncpg.Connection, changes: Sequence[AttendanceChange], *, actor: str, reason: str,
) -> list[AppliedChange]:
    """Inside the caller's transaction: upsert each record and append one hash-chained audit
    entry (who, when, before, after, why) per record whose value changed. Returns what changed.

    Changes apply in order; several changes to one record in one call each get
    their own audit entry. Raises :class:`InvalidAttendanceChange` before
    touching the database for an invalid change, and asyncpg's
    ``ForeignKeyViolationError`` for an unknown session or student.
    """
    return await apply_attributed_changes(conn, [(change, actor, reason) for change in changes])


async def apply_attributed_changes(
    conn: asyncpg.Connection, entries: Sequence[tuple[AttendanceChange, str, str]],
) -> list[AppliedChange]:
    """:func:`apply_attendance_changes` for a batch whose entries carry their own
    ``(change, actor, reason)``. Same contract."""
    for change, _, _ in entries:
        _validate(change)
    if not entries:
        return []
    await lock_attendance(conn)
    keys = list(dict.fromkeys((c.session_id, c.student_id) for c, _, _ in entries))
    rows = await conn.fetch(
        "SELECT k.session_id, k.student_id, s.course_id, a.status, a.checked_in_at, a.source, a.event_id"
        " FROM unnest($1::text[], $2::text[]) AS k(session_id, student_id)"
        " LEFT JOIN class_sessions s ON s.id = k.session_id"
        " LEFT JOIN attendance a ON a.session_id = k.session_id AND a.student_id = k.student_id",
        [k[0] for k in keys], [k[1] for k in keys],
    )
    state: dict[tuple[str, str], dict[str, Any] | None] = {}
    courses: dict[tuple[str, str], str | None] = {}
    for r in rows:
        key = (r["session_id"], r["student_id"])
        courses[key] = r["course_id"]
        state[key] = None if r["status"] is None else _snapshot(
            r["status"], r["checked_in_at"], r["source"], r["event_id"])

    applied: list[AppliedChange] = []
    for change, who, why in entries:
        key = (change.session_id, change.student_id)
        before = state[key]
        if before is not None and change.replaces is not None and before["status"] not in change.replaces:
            continue
        after = None if change.status is None else _snapshot(
            change.status, change.checked_in_at, change.source, change.event_id)
        if after == before:
            continue
        state[key] = after
        applied.append(AppliedChange(change.session_id, change.student_id, courses[key], before, after, who, why))
    if applied:
        await _write(conn, applied, state)
    return applied


def _validate(change: AttendanceChange) -> None:
    if change.status is not None and change.status not in STATUSES:
        raise InvalidAttendanceChange(f"unknown attendance status {change.status!r}")
    if not change.source:
        raise InvalidAttendanceChange("an attendance change needs a source")
    if change.checked_in_at is not None and change.checked_in_at.utcoffset() is None:
        raise InvalidAttendanceChange("checked_in_at must be timezone-aware")


def _snapshot(status: str, checked_in_at: datetime | None, source: str, event_id: uuid.UUID | None) -> dict[str, Any]:
    """A record's value as the audit log stores it (and as changes are compared)."""
    return {
        "status": status,
        # One spelling per instant, so the same time given in another offset is no change.
        "checked_in_at": None if checked_in_at is None else checked_in_at.astimezone(timezone.utc).isoformat(),
        "source": source,
        "event_id": None if event_id is None else str(event_id),
    }


async def _write(
    conn: asyncpg.Connection, applied: list[AppliedChange], state: dict[tuple[str, str], dict[str, Any] | None],
) -> None:
    # Only each touched record's final value is written (an upsert may touch a row once per
    # statement); every intermediate step still has its audit entry, in order.
    touched = list(dict.fromkeys((a.session_id, a.student_id) for a in applied))
    upserts = [(key, value) for key in touched if (value := state[key]) is not None]
    removals = [key for key in touched if state[key] is None]
    await conn.execute(
        "WITH upserted AS ("
        "  INSERT INTO attendance (session_id, student_id, status, checked_in_at, source, event_id)"
        "  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::uuid[])"
        "  ON CONFLICT (session_id, student_id) DO UPDATE SET status = EXCLUDED.status,"
        "   checked_in_at = EXCLUDED.checked_in_at, source = EXCLUDED.source,"
        "   event_id = EXCLUDED.event_id, updated_at = now()"
        "  RETURNING 1"
        "), removed AS ("
        "  DELETE FROM attendance a USING unnest($7::text[], $8::text[]) AS d(session_id, student_id)"
        "  WHERE a.session_id = d.session_id AND a.student_id = d.student_id RETURNING 1"
        ")"
        " INSERT INTO audit_log (actor, entity, entity_id, session_id, student_id, course_id, before, after, reason)"
        " SELECT u.actor, 'attendance', u.session_id || '/' || u.student_id, u.session_id, u.student_id,"
        "        u.course_id, u.before::jsonb, u.after::jsonb, u.reason"
        " FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[])"
        "      WITH ORDINALITY AS u(actor, session_id, student_id, course_id, before, after, reason, ord)"
        " ORDER BY u.ord",
        [k[0] for k, _ in upserts], [k[1] for k, _ in upserts],
        [v["status"] for _, v in upserts],
        [_parse_time(v["checked_in_at"]) for _, v in upserts],
        [v["source"] for _, v in upserts],
        [None if v["event_id"] is None else uuid.UUID(v["event_id"]) for _, v in upserts],
        [k[0] for k in removals], [k[1] for k in removals],
        [a.actor for a in applied], [a.session_id for a in applied], [a.student_id for a in applied],
        [a.course_id for a in applied], [_json(a.before) for a in applied], [_json(a.after) for a in applied],
        [a.reason for a in applied],
    )


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
