"""The facts behind early-warning features, loaded in batches (hub/domain/risk_features.py turns them
into vectors; docs/analytics.md).

A *case* is one student in one course of one term, as of a cutoff instant: for training, the
cutoff lies inside a finished term (``TRAINING_CUTOFFS`` of its length) and the label is the
student's outcome in ``course_results`` (failed or withdrawn = 1); for live scoring, the term
runs and the cutoff is now. The same queries serve both, so training and scoring see one
definition of every fact.

A student's classes are the course's not-cancelled sessions of their section (or course-wide)
that start inside the term; one is *held* at the cutoff once it has ended (or was closed after
it started), and counts as absent without a record, like hub/db/insights.py. Assignments
(0029), syllabus topics (0027) and the results table (0031) belong to other features and are
read only when their tables exist.

Concurrency contract: each loader runs a handful of round trips on one pooled connection
(``Database.run``); safe from any trio task; nothing here writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Sequence
from zoneinfo import ZoneInfo

import asyncpg

from hub.domain.risk_features import TRAINING_CUTOFFS, CaseFacts, MarkFact, SessionMark, WorkFact

from ._pool import Database


@dataclass(frozen=True)
class Case:
    student_id: str
    course_id: str
    term_id: str
    section_id: str | None
    term_start: datetime
    term_end: datetime
    cutoff: datetime
    #: Training only: 1 if the student failed or withdrew, 0 if they passed.
    label: int | None = None


def term_bounds(starts_on: date, ends_on: date, timezone: str) -> tuple[datetime, datetime]:
    """A term's first instant and the instant after its last day, in its timezone."""
    zone = ZoneInfo(timezone)
    return (datetime.combine(starts_on, time(), zone),
            datetime.combine(ends_on + timedelta(days=1), time(), zone))


async def _has_table(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


_RUNNING = """
SELECT e.student_id, e.course_id, e.section_id, t.id AS term_id, t.starts_on, t.ends_on, t.timezone
FROM enrolments e
JOIN users u ON u.id = e.student_id AND u.deactivated_at IS NULL
JOIN LATERAL (
    SELECT t.* FROM sections sec JOIN terms t ON t.id = sec.term_id
    WHERE sec.course_id = e.course_id AND (e.section_id IS NULL OR sec.id = e.section_id)
      AND t.starts_on <= $1::date AND t.ends_on >= $1::date
    ORDER BY t.starts_on DESC, t.id LIMIT 1
) t ON true
WHERE ($2::text[] IS NULL OR (e.student_id, e.course_id) IN (SELECT * FROM unnest($2::text[], $3::text[])))
  AND ($4::text IS NULL OR e.course_id = $4)
"""


async def running_cases(
    db: Database, now: datetime, *, pairs: Sequence[tuple[str, str]] | None = None, course_id: str | None = None,
) -> list[Case]:
    """Active students in courses whose term runs at ``now`` (optionally only ``pairs`` or one course),
    as of ``now``. One round trip."""
    rows = await db.fetch(
        _RUNNING, now.date(), [p[0] for p in pairs] if pairs is not None else None,
        [p[1] for p in pairs] if pairs is not None else None, course_id)
    cases = []
    for r in rows:
        start, end = term_bounds(r["starts_on"], r["ends_on"], r["timezone"])
        cases.append(Case(r["student_id"], r["course_id"], r["term_id"], r["section_id"], start, end, now))
    return cases


async def training_cases(db: Database, today: date, *, term_ids: Sequence[str] | None = None) -> list[Case]:
    """One case per outcome in ``course_results`` of a term finished before ``today``, at each of
    ``TRAINING_CUTOFFS``; empty when the results table does not exist yet."""

    async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        if not await _has_table(conn, "course_results"):
            return []
        return await conn.fetch(
            "SELECT r.student_id, r.course_id, r.term_id, (r.outcome <> 'passed')::int AS label,"
            "       t.starts_on, t.ends_on, t.timezone,"
            "       (SELECT e.section_id FROM enrolments e WHERE e.student_id = r.student_id"
            "         AND e.course_id = r.course_id) AS section_id"
            " FROM course_results r JOIN terms t ON t.id = r.term_id"
            " WHERE t.ends_on < $1 AND ($2::text[] IS NULL OR r.term_id = ANY($2::text[]))"
            " ORDER BY t.starts_on, r.course_id, r.student_id",
            today, list(term_ids) if term_ids is not None else None)

    cases = []
    for r in await db.run(work):
        start, end = term_bounds(r["starts_on"], r["ends_on"], r["timezone"])
        for share in TRAINING_CUTOFFS:
            cases.append(Case(r["student_id"], r["course_id"], r["term_id"], r["section_id"], start, end,
                              start + (end - start) * share, r["label"]))
    return cases


async def finished_terms(db: Database, today: date) -> list[tuple[str, date]]:
    """Terms with outcomes that ended before ``today``: (id, ends_on), oldest first."""

    async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        if not await _has_table(conn, "course_results"):
            return []
        return await conn.fetch(
            "SELECT t.id, t.ends_on FROM terms t WHERE t.ends_on < $1"
            " AND EXISTS (SELECT 1 FROM course_results r WHERE r.term_id = t.id) ORDER BY t.ends_on, t.id", today)

    return [(r["id"], r["ends_on"]) for r in await db.run(work)]


# The cases as parallel arrays; ``k`` is the case's index. Section scope as in hub/db/insights.py.
_CASES = """
WITH c AS (
    SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
                         $7::timestamptz[], $8::text[])
        AS c (k, student_id, course_id, section_id, term_start, term_end, cutoff, term_id)
)"""
_SESSION_OF_CASE = (
    "s.course_id = c.course_id AND s.status <> 'cancelled'"
    " AND (s.section_id IS NULL OR c.section_id IS NULL OR s.section_id = c.section_id)"
    " AND s.starts_at >= c.term_start AND s.starts_at < c.term_end"
)
_HELD_AT_CUTOFF = "(s.ends_at <= c.cutoff OR (s.status = 'closed' AND s.starts_at <= c.cutoff))"

# Sessions per distinct enrolment and term (training asks for each at several cutoffs): the held
# split at each cutoff is made in Python. The LATERAL probe uses attendance's primary key.
_SESSIONS_SQL = """
WITH c AS (
    SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[])
        AS c (g, student_id, course_id, section_id, term_start, term_end)
)
SELECT c.g, s.starts_at, s.ends_at, s.status = 'closed' AS closed, coalesce(a.status, 'absent') AS status
FROM c JOIN class_sessions s ON s.course_id = c.course_id AND s.status <> 'cancelled'
    AND (s.section_id IS NULL OR c.section_id IS NULL OR s.section_id = c.section_id)
    AND s.starts_at >= c.term_start AND s.starts_at < c.term_end
LEFT JOIN LATERAL (
    SELECT x.status FROM attendance x WHERE x.session_id = s.id AND x.student_id = c.student_id
) a ON true
ORDER BY c.g, s.starts_at, s.id"""

_FLAGS_SQL = _CASES + f"""
SELECT c.k, count(*) AS n
FROM c JOIN class_sessions s ON {_SESSION_OF_CASE}
JOIN checkin_flags f ON f.session_id = s.id AND f.student_id = c.student_id
WHERE f.raised_at <= c.cutoff AND f.state <> 'rejected'
GROUP BY c.k"""

_MARKS_SQL = _CASES + """
SELECT c.k, m.status, (m.marks / a.max_marks)::float8 AS fraction, a.weight::float8 AS weight
FROM c JOIN assessments a ON a.course_id = c.course_id AND a.term_id = c.term_id
  AND (a.section_id IS NULL OR c.section_id IS NULL OR a.section_id = c.section_id)
JOIN assessment_marks m ON m.assessment_id = a.id AND m.student_id = c.student_id
WHERE m.graded_at <= c.cutoff AND m.status <> 'exempt'
ORDER BY c.k, a.id"""

_WORK_SQL = _CASES + """
SELECT c.k, sub.late_minutes
FROM c JOIN assessments a ON a.course_id = c.course_id AND a.term_id = c.term_id
  AND (a.section_id IS NULL OR c.section_id IS NULL OR a.section_id = c.section_id)
JOIN assignments asg ON asg.assessment_id = a.id
LEFT JOIN LATERAL (
    SELECT x.late_minutes FROM assignment_submissions x
    WHERE x.assessment_id = a.id AND x.student_id = c.student_id AND x.submitted_at <= c.cutoff
    ORDER BY x.attempt DESC LIMIT 1
) sub ON true
WHERE asg.published_at IS NOT NULL AND asg.due_at <= c.cutoff
ORDER BY c.k, a.id"""

_TOPICS_SQL = _CASES + f"""
SELECT c.k, count(DISTINCT st.topic_id) AS taught,
       count(DISTINCT st.topic_id) FILTER (WHERE coalesce(att.status, 'absent') = 'absent') AS missed
FROM c JOIN class_sessions s ON {_SESSION_OF_CASE} AND {_HELD_AT_CUTOFF}
JOIN session_topics st ON st.session_id = s.id
LEFT JOIN LATERAL (
    SELECT x.status FROM attendance x WHERE x.session_id = s.id AND x.student_id = c.student_id
) att ON true
GROUP BY c.k"""

_UNDERSTANDING_SQL = _CASES + f"""
SELECT c.k, avg(u.level)::float8 AS level
FROM c JOIN class_sessions s ON {_SESSION_OF_CASE}
JOIN topic_understanding u ON u.session_id = s.id AND u.student_id = c.student_id
WHERE u.at <= c.cutoff
GROUP BY c.k"""


async def load_facts(db: Database, cases: Sequence[Case]) -> list[CaseFacts]:
    """The facts of every case, in order: six batched queries on one connection whatever the count."""
    if not cases:
        return []
    args = (
        list(range(len(cases))), [c.student_id for c in cases], [c.course_id for c in cases],
        [c.section_id for c in cases], [c.term_start for c in cases], [c.term_end for c in cases],
        [c.cutoff for c in cases], [c.term_id for c in cases],
    )

    groups: dict[tuple, int] = {}
    group_of = [groups.setdefault((c.student_id, c.course_id, c.section_id, c.term_start, c.term_end), len(groups))
                for c in cases]
    keys = list(groups)
    group_args = (list(range(len(keys))), [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
                  [k[3] for k in keys], [k[4] for k in keys])

    async def work(conn: asyncpg.Connection) -> dict[str, list[asyncpg.Record]]:
        found = {
            "sessions": await conn.fetch(_SESSIONS_SQL, *group_args),
            "flags": await conn.fetch(_FLAGS_SQL, *args),
            "marks": await conn.fetch(_MARKS_SQL, *args),
        }
        if await _has_table(conn, "assignments") and await _has_table(conn, "assignment_submissions"):
            found["work"] = await conn.fetch(_WORK_SQL, *args)
        # Only when the syllabus feature holds rows: its join costs a second on a big history even when empty.
        if await _has_table(conn, "session_topics") and await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM session_topics)"):
            found["topics"] = await conn.fetch(_TOPICS_SQL, *args)
        if await _has_table(conn, "topic_understanding") and await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM topic_understanding)"):
            found["understanding"] = await conn.fetch(_UNDERSTANDING_SQL, *args)
        return found

    found = await db.run(work)
    by_group: list[list[asyncpg.Record]] = [[] for _ in keys]
    for r in found["sessions"]:
        by_group[r["g"]].append(r)
    sessions: list[list[SessionMark]] = [[] for _ in cases]
    remaining = [0] * len(cases)
    for k, case in enumerate(cases):
        for r in by_group[group_of[k]]:
            # Held at the cutoff: ended by then, or closed early after it started (as _HELD_AT_CUTOFF).
            if r["ends_at"] <= case.cutoff or (r["closed"] and r["starts_at"] <= case.cutoff):
                sessions[k].append(SessionMark(r["starts_at"], r["status"]))
            else:
                remaining[k] += 1
    flags = {r["k"]: r["n"] for r in found["flags"]}
    marks: list[list[MarkFact]] = [[] for _ in cases]
    for r in found["marks"]:
        absent = r["status"] == "absent"
        marks[r["k"]].append(MarkFact(None if absent else min(1.0, r["fraction"]), r["weight"], absent))
    work_done: list[list[WorkFact]] = [[] for _ in cases]
    for r in found.get("work", []):
        late = r["late_minutes"]
        work_done[r["k"]].append(WorkFact(late is not None, int(late or 0)))
    topics = {r["k"]: (r["taught"], r["missed"]) for r in found.get("topics", [])}
    understanding = {r["k"]: r["level"] for r in found.get("understanding", [])}
    return [
        CaseFacts(
            cutoff=case.cutoff, term_start=case.term_start, term_end=case.term_end,
            sessions=tuple(sessions[k]), remaining=remaining[k], flags=flags.get(k, 0),
            marks=tuple(marks[k]), work=tuple(work_done[k]),
            topics_taught=topics.get(k, (0, 0))[0], topics_missed=topics.get(k, (0, 0))[1],
            understanding=understanding.get(k),
        )
        for k, case in enumerate(cases)
    ]
