"""Taking a student out of a section: the unenrolment use case (enrolling is the CSV import, hub/db/academic.py).

The student's attendance records stay (records are kept); the enrolment row
goes and a ``enrolment``/``removed`` entry joins the security audit chain in
the same transaction. The caller then tells the live rosters and the terminal
rosters (web/routes/academic.py).

Concurrency contract: one transaction on the shared :class:`Database`; the
audit entry is its last statement (it takes the chain's lock).
"""
from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from ._pool import Database
from .academic import NotFound
from .security_audit import record


@dataclass(frozen=True)
class Unenrolment:
    section_id: str
    course_id: str
    student_id: str


async def unenrol(db: Database, section_id: str, student_id: str, *, actor: str, reason: str = "") -> Unenrolment:
    """Remove ``student_id``'s enrolment in ``section_id``; :class:`NotFound` when there is none."""

    async def work(conn: asyncpg.Connection) -> Unenrolment:
        row = await conn.fetchrow(
            "DELETE FROM enrolments WHERE section_id = $1 AND student_id = $2 RETURNING course_id",
            section_id, student_id)
        if row is None:
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM sections WHERE id = $1)", section_id):
                raise NotFound("No such section.", "section_id")
            raise NotFound("This student is not enrolled in this section.", "student_id")
        removed = Unenrolment(section_id, row["course_id"], student_id)
        await record(conn, actor=actor, action="removed", entity="enrolment", entity_id=f"{section_id}:{student_id}",
                     before={"section_id": section_id, "course_id": removed.course_id, "student_id": student_id},
                     after=None, reason=reason)
        return removed

    return await db.run(work, transaction=True)
