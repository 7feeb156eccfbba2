"""Faculty marks (manual, bulk, a rejected flag): one use case, whether or not the session has a live actor.

:func:`plan_marks` judges the marks against the session's roster and current
records (``hub.domain.checkin.judge_marks``) and builds what they write
(attendance marks, audited with the faculty's reason) and announce (live
attendance updates). A live session actor applies a plan to its in-memory
state and commits it through the writer (hub/pipeline/session_actor.py); for
a session without one, :func:`record_marks` reads the roster and records,
plans and writes in one transaction, through the writer's own attendance
step (``hub.db.ingest.write_attendance_marks``). web/checkin_flow.py picks
the path.

Concurrency contract: :func:`plan_marks` is pure; :func:`record_marks` is a
coroutine for any trio task holding a :class:`Database`, one transaction
holding the attendance lock from its read to its write (cancelling it rolls
back).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Mapping

import asyncpg

from hub.core.bus import LiveAttendance, LiveUpdate
from hub.core.records import AttendanceMark
from hub.domain.checkin import Mark, MarkChange, judge_marks
from hub.domain.session_messages import ManualMarks

from ._pool import Database
from .attendance import lock_attendance
from .checkin import enrolled_students, session_records
from .ingest import write_attendance_marks


@dataclass(frozen=True)
class MarksPlan:
    """Judged faculty marks: the records that change, what they write, what they announce."""

    changes: tuple[MarkChange, ...]
    effects: tuple[AttendanceMark, ...]
    live: tuple[LiveUpdate, ...]


def plan_marks(session_id: str, roster: Collection[str], records: Mapping[str, Mark],
               request: ManualMarks) -> MarksPlan:
    """Judge ``request`` against the roster and ``records`` (student -> current mark).

    Raises :class:`~hub.domain.checkin.InvalidMarks` (``field`` names the
    offending mark) for an unknown status, a student not on the roster, or one
    marked twice. Marks that change nothing are left out.
    """
    changes = tuple(judge_marks(roster, records, request.marks))
    effects = tuple(
        AttendanceMark(session_id, c.student_id, c.status, None, request.source, None, request.actor,
                       request.reason or request.source)
        for c in changes
    )
    live = tuple(update for c in changes
                 for update in LiveAttendance(session_id, c.student_id, c.status, None, request.source).updates())
    return MarksPlan(changes, effects, live)


async def record_marks(db: Database, session_id: str, request: ManualMarks) -> MarksPlan:
    """Faculty marks of a session without a live actor, committed with their audit entries.

    Raises :class:`~hub.domain.checkin.InvalidMarks` with nothing written.
    The caller publishes the returned ``live`` updates (it is committed by then).
    """

    async def work(conn: asyncpg.Connection) -> MarksPlan:
        await lock_attendance(conn)  # the records judged are the records overwritten
        roster = await enrolled_students(conn, session_id)
        found = await session_records(conn, session_id, sorted(roster))
        plan = plan_marks(session_id, roster, {s: Mark(*r) for s, r in found.items() if r is not None}, request)
        if plan.effects:
            await write_attendance_marks(conn, plan.effects)
        return plan

    return await db.run(work, transaction=True)
