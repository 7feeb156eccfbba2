"""Students: profile, per-course attendance, check-in token secret, and who teaches them.

Concurrency contract: every function is one round trip on the shared
:class:`~hub.db.Database` (several statements go through ``db.run`` so they
share one connection and one trio ↔ asyncio hop) and may be called from any
trio task. Nothing here writes. The token secret is stored sealed with the
campus key (hub/db/sealed_secrets.py) and opened here. Results are plain frozen dataclasses, never
asyncpg records.

Clock values (``now``) are passed in rather than taken from PostgreSQL's
``now()``, so the web app and its tests share one clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hub.core.secrets_box import SecretsBox

from ._pool import Database
from .sealed_secrets import token_secret_context


@dataclass(frozen=True)
class StudentProfile:
    student_id: str
    username: str
    display_name: str
    roll_number: str


@dataclass(frozen=True)
class AttendanceRecord:
    course_id: str
    course_code: str
    course_title: str
    #: None for an enrolled course that has no session whose window has opened yet.
    session_id: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    session_status: str | None
    status: str | None  # None: no attendance record
    checked_in_at: datetime | None


#: How many students a page's picker lists at most (a select of a few thousand options stays quick).
STUDENT_CHOICES_MAX = 2000


async def student_choices(db: Database, *, limit: int = STUDENT_CHOICES_MAX) -> list[tuple[str, str]]:
    """``(id, "roll number · name")`` of the students, by roll number, for a page's searchable picker
    (web/static/app.js ``CampusHub.picker``): people pick a name, the form sends the id."""
    rows = await db.fetch("SELECT s.id, s.roll_number, u.display_name FROM students s JOIN users u ON u.id = s.id"
                          " ORDER BY s.roll_number LIMIT $1", limit)
    return [(r["id"], f"{r['roll_number']} · {r['display_name']}") for r in rows]


async def teaches_student(db: Database, faculty_id: str, student_id: str) -> bool:
    """True if the student is enrolled in at least one course taught by ``faculty_id``."""
    return await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM enrolments e JOIN courses c ON c.id = e.course_id"
        " WHERE e.student_id = $1 AND c.faculty_id = $2)",
        student_id, faculty_id,
    )


async def student_profile(db: Database, student_id: str) -> StudentProfile | None:
    row = await db.fetchrow(
        "SELECT s.id AS student_id, u.username, u.display_name, s.roll_number"
        " FROM students s JOIN users u ON u.id = s.id WHERE s.id = $1",
        student_id,
    )
    return None if row is None else StudentProfile(**dict(row))


async def student_attendance(
    db: Database, student_id: str, now: datetime, faculty_id: str | None = None
) -> list[AttendanceRecord]:
    """Every enrolled course with its sessions whose check-in window has opened by ``now``.

    ``faculty_id`` limits the result to courses that faculty member teaches.
    Ordered by course code, newest session first.
    """
    rows = await db.fetch(
        "SELECT c.id AS course_id, c.code AS course_code, c.title AS course_title,"
        " cs.id AS session_id, cs.starts_at, cs.ends_at, cs.status AS session_status,"
        " a.status, a.checked_in_at"
        " FROM enrolments e"
        " JOIN courses c ON c.id = e.course_id"
        " LEFT JOIN class_sessions cs ON cs.course_id = c.id AND cs.status <> 'cancelled'"
        "   AND cs.starts_at - make_interval(mins => cs.opens_minutes_before) <= $2"
        " LEFT JOIN attendance a ON a.session_id = cs.id AND a.student_id = e.student_id"
        " WHERE e.student_id = $1 AND ($3::text IS NULL OR c.faculty_id = $3)"
        " ORDER BY c.code, cs.starts_at DESC NULLS LAST",
        student_id, now, faculty_id,
    )
    return [AttendanceRecord(**dict(r)) for r in rows]


def opened_token_secret(
    secrets: SecretsBox, student_id: str, token_secret: bytes | None, token_secret_sealed: bytes | None,
) -> bytes | None:
    """A student's check-in token secret from its two columns: sealed with the campus key
    (``token_secret_sealed``), or plaintext from before migration 0025 not sealed yet; None if it has
    none (erased). Raises :class:`~hub.core.secrets_box.SecretsBoxError` if the sealed one does not open."""
    if token_secret_sealed is not None:
        return secrets.decrypt(bytes(token_secret_sealed), token_secret_context(student_id))
    return None if token_secret is None else bytes(token_secret)


async def student_token_secret(db: Database, student_id: str) -> bytes | None:
    """The HMAC secret of the student's rotating check-in token (None: no such student, or none)."""
    row = await db.fetchrow("SELECT token_secret, token_secret_sealed FROM students WHERE id = $1", student_id)
    return None if row is None else opened_token_secret(
        db.secrets, student_id, row["token_secret"], row["token_secret_sealed"])
