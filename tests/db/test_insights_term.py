"""Regression (issue 15, wrong numbers): the demo course's term chart started before its term did.

The insights demo's history went back 34 days while the demo term started 30 days ago, so the
chart's first session came before the term. Every held session of the demo course is now inside
the term the course is taught in, which is where its charts start (``course_term``).
"""
from __future__ import annotations

from datetime import datetime, time, timezone
from typing import AsyncIterator

import pytest

from hub.db import Database, open_database
from hub.db.insights import course_term, course_timeline, standings, student_timeline
from hub.db.seed import course_id, ensure_campus
from hub.db.seed.insights import ensure_insights_demo
from hub.domain.timetable import local_instant, zone


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=2) as database:
        yield database


async def test_the_demo_courses_sessions_are_all_inside_its_term(fresh_db: Database) -> None:
    now = datetime.now(timezone.utc)
    await ensure_campus(fresh_db, rooms=3, students=12, now=now)
    assert await ensure_insights_demo(fresh_db, course_id=course_id(1), now=now)
    term = await course_term(fresh_db, course_id(1))
    assert term is not None
    term_starts = local_instant(term.starts_on, time(0), zone(term.timezone))
    held = await course_timeline(fresh_db, course_id(1), now)
    assert len(held) >= 12  # the twelve history sessions, at least
    assert min(p.starts_at for p in held) >= term_starts
    first_student = (await standings(fresh_db, now, course_id=course_id(1)))[0]
    own = await student_timeline(fresh_db, first_student.student_id, course_id(1), now)
    assert own and min(starts_at for _, starts_at, _ in own) >= term_starts
    # Each student's held count is the report's "sessions held" (one section, course-wide history).
    assert first_student.tally.held == len(held)
