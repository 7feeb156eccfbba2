"""Condonation applications: a student below the eligibility line asks; the course's faculty or an admin decides.

Who may apply or decide is the web layer's check (web/routes/insights.py);
the rules on the data are here: one pending or approved application per
student and course (a unique index), and only a pending one can be decided.

Concurrency contract: every function takes a connection inside the caller's
transaction (so the notification about it commits with it) or is one round
trip on the shared :class:`~hub.db.Database`; callable from any trio task.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg

from ._pool import Database
from .paging import Page

_COLUMNS = (
    "a.id, a.student_id, u.display_name AS student_name, st.roll_number, a.course_id, c.code AS course_code,"
    " c.title AS course_title, a.reason, a.percentage, a.state, a.created_at, a.decided_at, a.decided_by,"
    " a.decision_note"
)
_FROM = (
    " FROM condonation_applications a JOIN courses c ON c.id = a.course_id"
    " JOIN students st ON st.id = a.student_id JOIN users u ON u.id = a.student_id"
)


@dataclass(frozen=True)
class Application:
    id: int
    student_id: str
    student_name: str
    roll_number: str
    course_id: str
    course_code: str
    course_title: str
    reason: str
    percentage: Decimal
    state: str  # pending | approved | rejected
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_note: str


class AlreadyOpen(Exception):
    """The student already has a pending or approved application for the course."""


async def _one(conn: asyncpg.Connection, application_id: int) -> Application | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS}{_FROM} WHERE a.id = $1", application_id)
    return Application(**dict(row)) if row is not None else None


async def create_application(
    conn: asyncpg.Connection, student_id: str, course_id: str, reason: str, percentage: Decimal, now: datetime,
) -> Application:
    """Insert a pending application; raises :class:`AlreadyOpen` (the transaction is then unusable)."""
    try:
        new_id = await conn.fetchval(
            "INSERT INTO condonation_applications (student_id, course_id, reason, percentage, created_at)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            student_id, course_id, reason, percentage, now,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyOpen() from None
    found = await _one(conn, new_id)
    assert found is not None
    return found


async def decide_application(
    conn: asyncpg.Connection, application_id: int, approve: bool, by: str, note: str, now: datetime,
) -> Application | None:
    """Decide a pending application; None if it is not pending (any more)."""
    updated = await conn.fetchval(
        "UPDATE condonation_applications SET state = $2, decided_by = $3, decision_note = $4, decided_at = $5"
        " WHERE id = $1 AND state = 'pending' RETURNING id",
        application_id, "approved" if approve else "rejected", by, note, now,
    )
    return await _one(conn, updated) if updated is not None else None


async def get_application(db: Database, application_id: int) -> Application | None:
    return await db.run(lambda conn: _one(conn, application_id))


async def list_applications(
    db: Database, *, student_id: str | None, faculty_id: str | None, course_id: str | None,
    state: str | None, limit: int, offset: int,
) -> Page[Application]:
    """Applications newest first; ``faculty_id`` limits to courses that faculty member teaches."""
    where = (
        " WHERE ($1::text IS NULL OR a.student_id = $1)"
        " AND ($2::text IS NULL OR c.faculty_id = $2 OR EXISTS (SELECT 1 FROM faculty_assignments f"
        "      WHERE f.course_id = a.course_id AND f.faculty_id = $2))"
        " AND ($3::text IS NULL OR a.course_id = $3) AND ($4::text IS NULL OR a.state = $4)"
    )

    async def work(conn: asyncpg.Connection) -> Page[Application]:
        args = (student_id, faculty_id, course_id, state)
        total = await conn.fetchval(f"SELECT count(*){_FROM}{where}", *args)
        rows = await conn.fetch(
            f"SELECT {_COLUMNS}{_FROM}{where} ORDER BY a.id DESC LIMIT $5 OFFSET $6", *args, limit, offset)
        return Page([Application(**dict(r)) for r in rows], total)

    return await db.run(work)
