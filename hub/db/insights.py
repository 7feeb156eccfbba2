"""Attendance aggregates per student and course (and section), over the term, for insights and warnings.

A student's sessions in a course are the course's not-cancelled sessions of
the student's section, plus course-wide ones (``section_id`` NULL); a
student enrolled without a section sees every session of the course. A
session is *held* once it has ended (closed, or its end has passed): one
definition (``_HELD``) for every figure here, so a student's held count and
the course report's "sessions held" cannot differ. A held session counts
with the student's record, or as absent without one (auto-absent normally
writes that row at close; this holds without it too). The rest are
``remaining``, whatever records they already have: a check-in while a session
runs, or an excused leave written ahead, counts once the session is held.
The arithmetic on these counts is :mod:`hub.domain.eligibility`'s, never SQL's.

Concurrency contract: every function is one round trip on the shared
:class:`~hub.db.Database` and may be called from any trio task; nothing here
writes except :func:`record_warning_states` (for the warnings actor).
``now`` is passed in so the web app, the hub and the tests share one clock.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Iterable, Sequence

import asyncpg

from hub.domain.eligibility import Rules, Standing, Tally, standing

from ._pool import Database
from .academic import TERM_SELECT, TermRow, as_record


@functools.lru_cache(maxsize=1024)
def _course_rules(late_weight: Decimal, warning_pct: Decimal, eligible_pct: Decimal, condonable_pct: Decimal) -> Rules:
    # Shared per distinct rule set, so each Rules computes its exact Fractions once.
    return Rules(late_weight=late_weight, warning_pct=warning_pct,
                 eligible_pct=eligible_pct, condonable_pct=condonable_pct)


@dataclass(frozen=True)
class StandingRow:
    student_id: str
    student_name: str
    roll_number: str
    course_id: str
    course_code: str
    course_title: str
    section_id: str | None
    section_name: str | None
    present: int
    late: int
    absent: int
    excused: int
    remaining: int
    late_weight: Decimal
    warning_pct: Decimal
    eligible_pct: Decimal
    condonable_pct: Decimal
    #: The student's latest condonation application for the course (pending/approved first), if any.
    condonation_id: int | None
    condonation_state: str | None

    @property
    def tally(self) -> Tally:
        return Tally(self.present, self.late, self.absent, self.excused, self.remaining)

    @property
    def rules(self) -> Rules:
        return _course_rules(self.late_weight, self.warning_pct, self.eligible_pct, self.condonable_pct)

    def standing(self) -> Standing:
        """The pure rules applied to this row: the only way a figure is computed."""
        return standing(self.tally, self.rules, self.condonation_state)


@dataclass(frozen=True)
class SeriesPoint:
    """One counted session of a course: the effective statuses of its students in scope."""

    session_id: str
    starts_at: datetime
    present: int
    late: int
    absent: int
    excused: int


# The held/remaining split and the section scope, shared by every query below.
_SESSION_SCOPE = (
    "s.status <> 'cancelled'"
    " AND (s.section_id IS NULL OR e.section_id IS NULL OR s.section_id = e.section_id)"
)
def _held_at(now_param: str) -> str:
    """The one definition of a *held* session ``s``, at the instant bound to ``now_param``."""
    return f"(s.status = 'closed' OR s.ends_at <= {now_param})"


#: The one definition of a *held* session (``$1`` is now). Records of sessions not yet held are not
#: looked at: approved leave excuses future sessions ahead, and those must stay "remaining".
_HELD = _held_at("$1")

# Two scopes, one query each: the warnings actor asks for a few (student, course) pairs on every
# check-in, and a generic prepared plan of one query for both ("$5 IS NULL OR ...") scanned every
# enrolment of the campus each time (measured: ~2 ms of PostgreSQL CPU per check-in).
_SCOPE_BY_FILTERS = """
    SELECT e.student_id, e.course_id, e.section_id FROM enrolments e
    WHERE ($2::text IS NULL OR e.student_id = $2)
      AND ($3::text IS NULL OR e.course_id = $3)
      AND ($4::text IS NULL OR e.section_id = $4)"""
_SCOPE_BY_PAIRS = """
    SELECT e.student_id, e.course_id, e.section_id
    FROM unnest($2::text[], $3::text[]) AS p (student_id, course_id)
    JOIN enrolments e ON e.student_id = p.student_id AND e.course_id = p.course_id"""

_STANDINGS_SQL = f"""
WITH scope AS (%s
), counts AS (
    SELECT e.student_id, e.course_id,
           count(*) FILTER (WHERE {_HELD} AND a.status = 'present') AS present,
           count(*) FILTER (WHERE {_HELD} AND a.status = 'late') AS late,
           count(*) FILTER (WHERE {_HELD} AND (a.status = 'absent' OR a.status IS NULL)) AS absent,
           count(*) FILTER (WHERE {_HELD} AND a.status = 'excused') AS excused,
           count(*) FILTER (WHERE NOT {_HELD}) AS remaining
    FROM scope e
    JOIN class_sessions s ON s.course_id = e.course_id AND {_SESSION_SCOPE}
    LEFT JOIN attendance a ON a.session_id = s.id AND a.student_id = e.student_id
    GROUP BY e.student_id, e.course_id
)
SELECT e.student_id, u.display_name AS student_name, st.roll_number,
       c.id AS course_id, c.code AS course_code, c.title AS course_title,
       e.section_id, sec.name AS section_name,
       coalesce(n.present, 0) AS present, coalesce(n.late, 0) AS late, coalesce(n.absent, 0) AS absent,
       coalesce(n.excused, 0) AS excused, coalesce(n.remaining, 0) AS remaining,
       coalesce(r.late_weight, 0.8) AS late_weight, coalesce(r.warning_pct, 75) AS warning_pct,
       coalesce(r.eligible_pct, 75) AS eligible_pct, coalesce(r.condonable_pct, 65) AS condonable_pct,
       ca.id AS condonation_id, ca.state AS condonation_state
FROM scope e
JOIN courses c ON c.id = e.course_id
JOIN students st ON st.id = e.student_id
JOIN users u ON u.id = e.student_id
LEFT JOIN sections sec ON sec.id = e.section_id
LEFT JOIN course_rules r ON r.course_id = e.course_id
LEFT JOIN counts n ON n.student_id = e.student_id AND n.course_id = e.course_id
LEFT JOIN LATERAL (
    SELECT id, state FROM condonation_applications x
    WHERE x.student_id = e.student_id AND x.course_id = e.course_id
    ORDER BY (x.state <> 'rejected') DESC, x.id DESC LIMIT 1
) ca ON true
ORDER BY c.code, st.roll_number
"""
_STANDINGS_BY_FILTERS = _STANDINGS_SQL % _SCOPE_BY_FILTERS
_STANDINGS_BY_PAIRS = _STANDINGS_SQL % _SCOPE_BY_PAIRS


async def standings(
    db: Database, now: datetime, *, student_id: str | None = None, course_id: str | None = None,
    section_id: str | None = None, pairs: Sequence[tuple[str, str]] | None = None,
) -> list[StandingRow]:
    """Counts for every enrolment matching the filters (all given filters apply), by course code then roll number.

    ``pairs`` restricts to exactly those (student_id, course_id) enrolments
    and is not combined with the other filters (ValueError).
    """
    if pairs is None:
        rows = await db.fetch(_STANDINGS_BY_FILTERS, now, student_id, course_id, section_id)
    elif student_id is None and course_id is None and section_id is None:
        rows = await db.fetch(_STANDINGS_BY_PAIRS, now, [p[0] for p in pairs], [p[1] for p in pairs])
    else:
        raise ValueError("standings: pairs are not combined with student/course/section filters")
    return [StandingRow(**dict(r)) for r in rows]


async def student_timeline(db: Database, student_id: str, course_id: str, now: datetime) -> list[tuple[str, datetime, str]]:
    """The student's held sessions in a course, oldest first: (session_id, starts_at, effective status)."""
    rows = await db.fetch(
        "SELECT s.id AS session_id, s.starts_at, coalesce(a.status, 'absent') AS status"
        " FROM enrolments e"
        f" JOIN class_sessions s ON s.course_id = e.course_id AND {_SESSION_SCOPE}"
        " LEFT JOIN attendance a ON a.session_id = s.id AND a.student_id = e.student_id"
        f" WHERE e.student_id = $2 AND e.course_id = $3 AND {_HELD}"
        " ORDER BY s.starts_at, s.id",
        now, student_id, course_id,
    )
    return [(r["session_id"], r["starts_at"], r["status"]) for r in rows]


async def course_timeline(
    db: Database, course_id: str, now: datetime, section_id: str | None = None,
) -> list[SeriesPoint]:
    """Each held session of a course (or section), oldest first, with its students' effective statuses.

    Its length is the report's "sessions held": the same ``_HELD`` as every student's held count."""
    rows = await db.fetch(
        "SELECT s.id AS session_id, s.starts_at,"
        " count(*) FILTER (WHERE a.status = 'present') AS present,"
        " count(*) FILTER (WHERE a.status = 'late') AS late,"
        " count(*) FILTER (WHERE a.status IS NULL OR a.status = 'absent') AS absent,"
        " count(*) FILTER (WHERE a.status = 'excused') AS excused"
        " FROM enrolments e"
        f" JOIN class_sessions s ON s.course_id = e.course_id AND {_SESSION_SCOPE}"
        " LEFT JOIN attendance a ON a.session_id = s.id AND a.student_id = e.student_id"
        f" WHERE e.course_id = $2 AND ($3::text IS NULL OR e.section_id = $3) AND {_HELD}"
        " GROUP BY s.id, s.starts_at ORDER BY s.starts_at, s.id",
        now, course_id, section_id,
    )
    return [SeriesPoint(**dict(r)) for r in rows]


async def course_term(db: Database, course_id: str, section_id: str | None = None) -> TermRow | None:
    """The term a course (or one of its sections) is taught in, where its charts start; ``None`` if no
    section of it belongs to a term. Sections of several terms: the earliest."""
    row = await db.fetchrow(
        f"{TERM_SELECT} t WHERE EXISTS (SELECT 1 FROM sections sec WHERE sec.term_id = t.id"
        " AND sec.course_id = $1 AND ($2::text IS NULL OR sec.id = $2))"
        " ORDER BY t.starts_on, t.id LIMIT 1",
        course_id, section_id)
    return as_record(TermRow, row) if row is not None else None


# --- lookups for authorisation and the warnings actor ------------------------------

@dataclass(frozen=True)
class CourseInfo:
    course_id: str
    code: str
    title: str
    faculty_id: str


async def course_info(db: Database, course_id: str) -> CourseInfo | None:
    row = await db.fetchrow(
        "SELECT id AS course_id, code, title, faculty_id FROM courses WHERE id = $1", course_id)
    return CourseInfo(**dict(row)) if row is not None else None


async def section_course(db: Database, section_id: str) -> str | None:
    return await db.fetchval("SELECT course_id FROM sections WHERE id = $1", section_id)


async def teaches_course(db: Database, faculty_id: str, course_id: str) -> bool:
    """The course's coordinator or any faculty assigned to it (course-wide or one of its sections)."""
    return bool(await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM courses WHERE id = $2 AND faculty_id = $1)"
        " OR EXISTS (SELECT 1 FROM faculty_assignments WHERE course_id = $2 AND faculty_id = $1)",
        faculty_id, course_id,
    ))


async def faculty_courses(db: Database, faculty_id: str | None) -> list[CourseInfo]:
    """Courses a faculty member teaches (every course for ``None``: an admin), by code."""
    rows = await db.fetch(
        "SELECT id AS course_id, code, title, faculty_id FROM courses c"
        " WHERE $1::text IS NULL OR c.faculty_id = $1"
        "   OR EXISTS (SELECT 1 FROM faculty_assignments f WHERE f.course_id = c.id AND f.faculty_id = $1)"
        " ORDER BY code",
        faculty_id,
    )
    return [CourseInfo(**dict(r)) for r in rows]


async def course_sections(db: Database, course_id: str) -> list[tuple[str, str]]:
    rows = await db.fetch("SELECT id, name FROM sections WHERE course_id = $1 ORDER BY name, id", course_id)
    return [(r["id"], r["name"]) for r in rows]


async def course_faculty(db: Database, course_ids: Iterable[str]) -> dict[str, set[str]]:
    """Everyone teaching each course: the coordinator and every assigned faculty member."""
    rows = await db.fetch(
        "SELECT id AS course_id, faculty_id FROM courses WHERE id = ANY($1::text[])"
        " UNION SELECT course_id, faculty_id FROM faculty_assignments WHERE course_id = ANY($1::text[])",
        list(course_ids),
    )
    found: dict[str, set[str]] = {}
    for r in rows:
        found.setdefault(r["course_id"], set()).add(r["faculty_id"])
    return found


async def touched_pairs(db: Database, since: datetime, until: datetime) -> set[tuple[str, str]]:
    """(student, course) enrolments whose standing may have changed in (since, until]:
    an attendance record written then of a session held at ``until``, or a session of the course that
    ended then. (A record of a session not yet held counts as remaining: its session's end, in a
    later window, brings every enrolled student back.)"""
    rows = await db.fetch(
        "SELECT a.student_id, s.course_id FROM attendance a JOIN class_sessions s ON s.id = a.session_id"
        f" WHERE a.updated_at > $1 AND a.updated_at <= $2 AND {_held_at('$2')}"
        " UNION"
        " SELECT e.student_id, e.course_id FROM class_sessions s JOIN enrolments e ON e.course_id = s.course_id"
        " WHERE s.ends_at > $1 AND s.ends_at <= $2 AND s.status <> 'cancelled'",
        since, until,
    )
    return {(r["student_id"], r["course_id"]) for r in rows}


async def enrolment_pairs(db: Database) -> list[tuple[str, str]]:
    """Every (student, course) enrolment, in that order: the scope of a full pass over the standings."""
    rows = await db.fetch("SELECT student_id, course_id FROM enrolments ORDER BY student_id, course_id")
    return [(r["student_id"], r["course_id"]) for r in rows]


async def session_pairs(db: Database, session_ids: Sequence[str], student_ids: Sequence[str] | None) -> set[tuple[str, str]]:
    """(student, course) enrolments behind some sessions: the given students, or everyone enrolled."""
    rows = await db.fetch(
        "SELECT DISTINCT e.student_id, e.course_id FROM class_sessions s"
        " JOIN enrolments e ON e.course_id = s.course_id"
        " WHERE s.id = ANY($1::text[]) AND ($2::text[] IS NULL OR e.student_id = ANY($2::text[]))",
        list(session_ids), list(student_ids) if student_ids is not None else None,
    )
    return {(r["student_id"], r["course_id"]) for r in rows}


async def held_sessions(db: Database, session_ids: Sequence[str], now: datetime) -> dict[str, str]:
    """{session_id: course_id} of those of ``session_ids`` that are *held* at ``now`` (``_HELD``).

    A record of a session not yet held counts as "remaining" whatever it
    says, so it cannot move a standing: the warnings actor re-checks only the
    records of held sessions (one primary-key lookup per batch of check-ins).
    """
    rows = await db.fetch(
        f"SELECT s.id, s.course_id FROM class_sessions s WHERE s.id = ANY($2::text[]) AND {_HELD}",
        now, list(session_ids),
    )
    return {r["id"]: r["course_id"] for r in rows}


async def warning_states(db: Database, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], bool]:
    """Whether each (student, course) of ``pairs`` was last seen below its warning line (absent: not below)."""
    rows = await db.fetch(
        "SELECT student_id, course_id, below FROM attendance_warnings"
        " WHERE (student_id, course_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        [p[0] for p in pairs], [p[1] for p in pairs],
    )
    return {(r["student_id"], r["course_id"]): r["below"] for r in rows}


async def record_warning_states(
    conn: asyncpg.Connection, states: Sequence[tuple[str, str, bool, Decimal | None, bool]], now: datetime,
) -> None:
    """Upsert (student, course, below, percentage, warned) rows, in the caller's transaction."""
    if not states:
        return
    await conn.execute(
        "INSERT INTO attendance_warnings (student_id, course_id, below, percentage, changed_at, warned_at)"
        " SELECT s, c, b, p, $6::timestamptz, CASE WHEN w THEN $6::timestamptz END"
        " FROM unnest($1::text[], $2::text[], $3::bool[], $4::numeric[], $5::bool[]) AS x(s, c, b, p, w)"
        " ON CONFLICT (student_id, course_id) DO UPDATE SET below = EXCLUDED.below,"
        " percentage = EXCLUDED.percentage, changed_at = EXCLUDED.changed_at,"
        " warned_at = coalesce(EXCLUDED.warned_at, attendance_warnings.warned_at)",
        [s[0] for s in states], [s[1] for s in states], [s[2] for s in states],
        [s[3] for s in states], [s[4] for s in states], now,
    )


async def course_rules(db: Database, course_id: str) -> Rules:
    """The course's rules (the defaults when it has no course_rules row)."""
    row = await db.fetchrow(
        "SELECT late_weight, warning_pct, eligible_pct, condonable_pct FROM course_rules WHERE course_id = $1",
        course_id)
    return Rules(**dict(row)) if row is not None else Rules()


@dataclass(frozen=True)
class DaySession:
    session_id: str
    course_code: str
    course_title: str
    room_name: str
    starts_at: datetime
    ends_at: datetime
    session_status: str
    status: str | None  # the student's record, if any


async def student_sessions_between(db: Database, student_id: str, start: datetime, end: datetime) -> list[DaySession]:
    """The student's not-cancelled sessions starting in [start, end), in time order (their "today")."""
    rows = await db.fetch(
        "SELECT s.id AS session_id, c.code AS course_code, c.title AS course_title, r.name AS room_name,"
        " s.starts_at, s.ends_at, s.status AS session_status, a.status"
        " FROM enrolments e JOIN courses c ON c.id = e.course_id"
        f" JOIN class_sessions s ON s.course_id = e.course_id AND {_SESSION_SCOPE}"
        " JOIN rooms r ON r.id = s.room_id"
        " LEFT JOIN attendance a ON a.session_id = s.id AND a.student_id = e.student_id"
        " WHERE e.student_id = $1 AND s.starts_at >= $2 AND s.starts_at < $3"
        " ORDER BY s.starts_at, c.code",
        student_id, start, end,
    )
    return [DaySession(**dict(r)) for r in rows]
