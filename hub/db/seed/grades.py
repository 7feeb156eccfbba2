"""Grades demo data: course credits that differ, so the GPA's credit weighting shows.

Runs inside the campus seed's transaction (``ensure_campus``), after the assessments demo marked part
of the running term (hub/db/seed/assessments.py). The running term's grades stay unreleased: students
see their courses' assessments but no marks until faculty release them (/faculty/grades). Past terms,
their released grades and final results (``course_results``) come from hub/db/seed/past_terms.py
(the early-warning feature's history); transcripts and GPAs are computed from them, so nothing here
writes a result. Idempotent: only courses still at the default 3 credits are changed.
"""
from __future__ import annotations

from decimal import Decimal

import asyncpg

#: Credits by the demo course's position (course-001 first), repeating: 4, 3, 2, 4, 3, 2, ...
_CREDITS = (Decimal(4), Decimal(3), Decimal(2))


async def ensure_grades_demo(conn: asyncpg.Connection, course_ids: list[str]) -> None:
    """In the caller's transaction: give the demo courses 4, 3 or 2 credits (those still at the default)."""
    await conn.executemany(
        "UPDATE courses SET credits = $2 WHERE id = $1 AND credits = 3",
        [(course, _CREDITS[i % len(_CREDITS)]) for i, course in enumerate(sorted(course_ids))
         if _CREDITS[i % len(_CREDITS)] != 3])
