"""Syllabus, session topics, understanding levels and topic progress (migration 0027).

On the pure rules of :mod:`hub.domain.syllabus`:

- the syllabus of a course: list, create, rename/change, reorder, delete topics
  and set their prerequisites (refusing cycles and other courses' topics),
  and the CSV import (preview with ``dry_run``, then apply);
- what a session covered (``session_topics``) and how well each student
  understood it (``topic_understanding``): one use case whether or not the
  session has a live actor, like faculty marks (hub/db/marks.py). A live
  session actor plans with :func:`plan_syllabus` on its roster and commits
  the effects through the writer, whose transaction calls
  :func:`write_syllabus_effects`; without one :func:`record_syllabus` plans and
  writes in one transaction with the same step;
- topic progress (``topic_progress``), derived: :func:`refresh_progress`
  recomputes it from coverage, attendance, understanding and released
  assessment marks, in the same transaction as every tag or level written
  here, and before every read (:func:`student_progress`), so attendance
  changed elsewhere (a late check-in, a correction, leave) shows the next
  time anyone looks;
- pace against the plan: :func:`course_pace` for a course's report and
  :func:`student_pace` per (student, course), as of any instant (the risk
  model's feature for finished terms, too).

Concurrency contract: every coroutine here is for any trio task holding a
:class:`Database`; each write is one transaction (cancelling it rolls back),
and a syllabus change takes a row lock on its course so two editors
serialise. :func:`write_syllabus_effects` and :func:`refresh_progress` run
inside the caller's transaction.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Collection, Iterable, Mapping, Sequence

import asyncpg

from hub.core.bus import LiveTopics, LiveUnderstanding, LiveUpdate, session_topic
from hub.core.records import Effect, SessionTopicsRow, UnderstandingRow
from hub.domain.enrolment_import import RowError
from hub.domain.syllabus import (
    MAX_EST_MINUTES,
    MAX_TOPICS,
    Coverage,
    CsvTopic,
    Observation,
    Progress,
    RecordUnderstanding,
    Suggestion,
    SyllabusProblem,
    TagTopics,
    TopicRef,
    check_levels,
    check_order,
    check_prerequisites,
    clean_title,
    clean_unit,
    done,
    mark_level,
    pace_ratio,
    planned_curve,
    suggest_topics,
    topic_progress,
)

from ._pool import Database
from .academic import NotFound
from .checkin import enrolled_students

__all__ = [
    "CoursePace", "PacePoint", "SessionTagging", "StudentPace", "SyllabusImport", "Topic", "TopicProgressRow",
    "course_pace", "create_topic", "delete_topic", "import_syllabus", "list_topics", "plan_syllabus",
    "record_syllabus", "refresh_progress", "reorder_topics", "session_tagging", "student_pace",
    "student_progress", "topic_course", "update_topic", "write_syllabus_effects",
]


# --- records ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Topic:
    topic_id: int
    course_id: str
    position: int
    title: str
    unit: str | None
    est_minutes: int
    prerequisites: tuple[int, ...]
    updated_at: datetime


_TOPIC_SELECT = (
    "SELECT t.id AS topic_id, t.course_id, t.position, t.title, t.unit, t.est_minutes, t.updated_at,"
    " coalesce((SELECT array_agg(p.requires_id ORDER BY p.requires_id) FROM syllabus_prerequisites p"
    "           WHERE p.topic_id = t.id), '{}') AS prerequisites"
    " FROM syllabus_topics t"
)


def _topic(row: asyncpg.Record) -> Topic:
    values = dict(row)
    values["prerequisites"] = tuple(values["prerequisites"])
    return Topic(**values)


async def list_topics(db: Database | asyncpg.Connection, course_id: str) -> list[Topic]:
    """The course's syllabus in order (empty when it has none)."""
    rows = await db.fetch(f"{_TOPIC_SELECT} WHERE t.course_id = $1 ORDER BY t.position, t.id", course_id)
    return [_topic(r) for r in rows]


async def topic_course(db: Database, topic_id: int) -> str:
    """The course of a topic; :class:`NotFound` if there is no such topic."""
    course_id = await db.fetchval("SELECT course_id FROM syllabus_topics WHERE id = $1", topic_id)
    if course_id is None:
        raise NotFound("No such topic.", "topic_id")
    return course_id


# --- editing the syllabus --------------------------------------------------------------------------

async def _lock_course(conn: asyncpg.Connection, course_id: str) -> None:
    if await conn.fetchval("SELECT id FROM courses WHERE id = $1 FOR UPDATE", course_id) is None:
        raise NotFound("No such course.", "course_id")


async def _check_graph(conn: asyncpg.Connection, course_id: str, topic_id: int | None,
                       prerequisites: Sequence[int] | None) -> None:
    """Refuse the course's prerequisite graph with ``topic_id``'s replaced by ``prerequisites``."""
    topics = await conn.fetch("SELECT id, title FROM syllabus_topics WHERE course_id = $1", course_id)
    titles = {r["id"]: r["title"] for r in topics}
    edges: dict[int, set[int]] = defaultdict(set)
    for r in await conn.fetch(
            "SELECT p.topic_id, p.requires_id FROM syllabus_prerequisites p"
            " JOIN syllabus_topics t ON t.id = p.topic_id WHERE t.course_id = $1", course_id):
        edges[r["topic_id"]].add(r["requires_id"])
    if topic_id is not None and prerequisites is not None:
        edges[topic_id] = set(prerequisites)
    check_prerequisites(titles, edges)


async def _set_prerequisites(conn: asyncpg.Connection, topic_id: int, prerequisites: Sequence[int]) -> None:
    await conn.execute("DELETE FROM syllabus_prerequisites WHERE topic_id = $1", topic_id)
    if prerequisites:
        await conn.execute(
            "INSERT INTO syllabus_prerequisites (topic_id, requires_id) SELECT $1, unnest($2::bigint[])",
            topic_id, sorted(set(prerequisites)))


async def _title_taken(conn: asyncpg.Connection, course_id: str, title: str, except_id: int | None) -> None:
    other = await conn.fetchval(
        "SELECT id FROM syllabus_topics WHERE course_id = $1 AND lower(title) = lower($2)"
        " AND ($3::bigint IS NULL OR id <> $3)", course_id, title, except_id)
    if other is not None:
        raise SyllabusProblem(f"The syllabus already has a topic called “{title}”.", "title")


def _minutes(value: int) -> int:
    if not 1 <= value <= MAX_EST_MINUTES:
        raise SyllabusProblem(f"A topic's estimated time is between 1 and {MAX_EST_MINUTES} minutes.",
                              "est_minutes")
    return value


async def create_topic(db: Database, course_id: str, *, title: str, est_minutes: int, unit: str | None = None,
                       prerequisites: Sequence[int] = (), position: int | None = None) -> Topic:
    """Add a topic (at the end, or at ``position``, moving later ones down). Raises
    :class:`SyllabusProblem` (bad values, a taken title, a prerequisite of another course, a cycle)
    or :class:`NotFound` (course)."""
    title, unit, est_minutes = clean_title(title), clean_unit(unit), _minutes(est_minutes)

    async def work(conn: asyncpg.Connection) -> Topic:
        await _lock_course(conn, course_id)
        count = await conn.fetchval("SELECT count(*) FROM syllabus_topics WHERE course_id = $1", course_id)
        if count >= MAX_TOPICS:
            raise SyllabusProblem(f"A syllabus has at most {MAX_TOPICS} topics.", "title")
        await _title_taken(conn, course_id, title, None)
        at = count + 1 if position is None else max(1, min(position, count + 1))
        await conn.execute("UPDATE syllabus_topics SET position = position + 1 WHERE course_id = $1"
                           " AND position >= $2", course_id, at)
        topic_id = await conn.fetchval(
            "INSERT INTO syllabus_topics (course_id, position, title, unit, est_minutes)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id", course_id, at, title, unit, est_minutes)
        if prerequisites:
            await _check_graph(conn, course_id, topic_id, prerequisites)
            await _set_prerequisites(conn, topic_id, prerequisites)
        return _topic(await conn.fetchrow(f"{_TOPIC_SELECT} WHERE t.id = $1", topic_id))

    return await db.run(work, transaction=True)


async def update_topic(db: Database, topic_id: int, changes: Mapping[str, Any]) -> Topic:
    """Change a topic's ``title``, ``unit``, ``est_minutes`` and/or ``prerequisites`` (the whole list)."""

    async def work(conn: asyncpg.Connection) -> Topic:
        course_id = await conn.fetchval("SELECT course_id FROM syllabus_topics WHERE id = $1", topic_id)
        if course_id is None:
            raise NotFound("No such topic.", "topic_id")
        await _lock_course(conn, course_id)
        if "title" in changes:
            title = clean_title(changes["title"])
            await _title_taken(conn, course_id, title, topic_id)
            await conn.execute("UPDATE syllabus_topics SET title = $2 WHERE id = $1", topic_id, title)
        if "unit" in changes:
            await conn.execute("UPDATE syllabus_topics SET unit = $2 WHERE id = $1", topic_id,
                               clean_unit(changes["unit"]))
        if "est_minutes" in changes:
            await conn.execute("UPDATE syllabus_topics SET est_minutes = $2 WHERE id = $1", topic_id,
                               _minutes(changes["est_minutes"]))
        if "prerequisites" in changes:
            needs = list(changes["prerequisites"])
            await _check_graph(conn, course_id, topic_id, needs)
            await _set_prerequisites(conn, topic_id, needs)
        await conn.execute("UPDATE syllabus_topics SET updated_at = now() WHERE id = $1", topic_id)
        if "est_minutes" in changes:  # the time-spent rule compares with the estimate
            await refresh_progress(conn, course_id)
        return _topic(await conn.fetchrow(f"{_TOPIC_SELECT} WHERE t.id = $1", topic_id))

    return await db.run(work, transaction=True)


async def reorder_topics(db: Database, course_id: str, order: Sequence[int]) -> list[Topic]:
    """Give the topics the positions of ``order`` (every topic of the syllabus, once each)."""

    async def work(conn: asyncpg.Connection) -> list[Topic]:
        await _lock_course(conn, course_id)
        current = [r["id"] for r in await conn.fetch("SELECT id FROM syllabus_topics WHERE course_id = $1",
                                                      course_id)]
        check_order(current, list(order))
        await conn.execute(
            "UPDATE syllabus_topics t SET position = o.n, updated_at = now()"
            " FROM unnest($2::bigint[]) WITH ORDINALITY AS o (id, n) WHERE t.id = o.id AND t.course_id = $1",
            course_id, list(order))
        return await list_topics(conn, course_id)

    return await db.run(work, transaction=True)


async def delete_topic(db: Database, topic_id: int) -> Topic:
    """Delete a topic with its tags, levels, progress and the prerequisites naming it; later topics move up."""

    async def work(conn: asyncpg.Connection) -> Topic:
        row = await conn.fetchrow(f"{_TOPIC_SELECT} WHERE t.id = $1", topic_id)
        if row is None:
            raise NotFound("No such topic.", "topic_id")
        topic = _topic(row)
        await _lock_course(conn, topic.course_id)
        await conn.execute("DELETE FROM syllabus_topics WHERE id = $1", topic_id)
        await conn.execute("UPDATE syllabus_topics SET position = position - 1 WHERE course_id = $1"
                           " AND position > $2", topic.course_id, topic.position)
        return topic

    return await db.run(work, transaction=True)


# --- CSV import ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SyllabusImport:
    """What an import did (or, with ``dry_run``, would do), and the syllabus it leaves."""

    dry_run: bool
    created: int
    updated: int
    unchanged: int
    kept: int
    topics: tuple[Topic, ...]


class SyllabusImportRejected(Exception):
    """Every bad line of the file (nothing applied)."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the file; nothing was imported.")
        self.errors = list(errors)


class _DryRun(Exception):
    def __init__(self, result: SyllabusImport) -> None:
        super().__init__("dry run")
        self.result = result


async def import_syllabus(db: Database, course_id: str, rows: Sequence[CsvTopic], *,
                          dry_run: bool) -> SyllabusImport:
    """Merge a syllabus file into the course's syllabus, matching topics by title (case ignored):
    the file's topics come first, in file order, created or updated; topics not in the file stay,
    after them, in their order. Prerequisites name titles of the file or of the syllabus; the
    file's list replaces a topic's. All or nothing: :class:`SyllabusImportRejected` lists every
    bad line. ``dry_run``: the same checks and the resulting syllabus, rolled back."""

    async def work(conn: asyncpg.Connection) -> SyllabusImport:
        await _lock_course(conn, course_id)
        existing = {t.title.casefold(): t for t in await list_topics(conn, course_id)}
        errors: list[RowError] = []
        in_file = {r.title.casefold() for r in rows}
        kept = [t for t in existing.values() if t.title.casefold() not in in_file]
        if len(rows) + len(kept) > MAX_TOPICS:
            errors.append(RowError(1, None, f"a syllabus has at most {MAX_TOPICS} topics"))
        known = in_file | set(existing)
        for r in rows:
            for need in r.prerequisites:
                if need.casefold() not in known:
                    errors.append(RowError(r.line, "prerequisites",
                                           f"“{need}” is not a topic of this file or of the syllabus"))
                elif need.casefold() == r.title.casefold():
                    errors.append(RowError(r.line, "prerequisites", f"“{r.title}” cannot be its own prerequisite"))
        if errors:
            raise SyllabusImportRejected(errors)
        created = updated = unchanged = 0
        ids: dict[str, int] = {}
        # Out of the way first (positions are unique per course, checked at commit).
        await conn.execute("UPDATE syllabus_topics SET position = position + $2 WHERE course_id = $1",
                           course_id, MAX_TOPICS * 2)
        for n, r in enumerate(rows, start=1):
            old = existing.get(r.title.casefold())
            if old is None:
                ids[r.title.casefold()] = await conn.fetchval(
                    "INSERT INTO syllabus_topics (course_id, position, title, unit, est_minutes)"
                    " VALUES ($1, $2, $3, $4, $5) RETURNING id", course_id, n, r.title, r.unit, r.est_minutes)
                created += 1
                continue
            ids[r.title.casefold()] = old.topic_id
            same = (old.title, old.unit, old.est_minutes, old.position) == (r.title, r.unit, r.est_minutes, n)
            await conn.execute(
                "UPDATE syllabus_topics SET position = $2, title = $3, unit = $4, est_minutes = $5,"
                " updated_at = CASE WHEN $6 THEN updated_at ELSE now() END WHERE id = $1",
                old.topic_id, n, r.title, r.unit, r.est_minutes, same)
            updated, unchanged = (updated, unchanged + 1) if same else (updated + 1, unchanged)
        for n, t in enumerate(sorted(kept, key=lambda t: t.position), start=len(rows) + 1):
            await conn.execute("UPDATE syllabus_topics SET position = $2 WHERE id = $1", t.topic_id, n)
            ids[t.title.casefold()] = t.topic_id
        titles = {tid: t for t, tid in ids.items()}
        edges: dict[int, set[int]] = {t.topic_id: set(t.prerequisites) for t in kept}
        for r in rows:
            edges[ids[r.title.casefold()]] = {ids[need.casefold()] for need in r.prerequisites}
        try:
            check_prerequisites({tid: titles[tid] for tid in titles}, edges)
        except SyllabusProblem as problem:
            raise SyllabusImportRejected([RowError(1, "prerequisites", problem.message)]) from None
        for r in rows:
            await _set_prerequisites(conn, ids[r.title.casefold()], sorted(edges[ids[r.title.casefold()]]))
        await conn.execute("SET CONSTRAINTS syllabus_topics_position IMMEDIATE")
        result = SyllabusImport(dry_run, created, updated, unchanged, len(kept),
                                tuple(await list_topics(conn, course_id)))
        if dry_run:
            raise _DryRun(result)  # rolls the transaction back
        await refresh_progress(conn, course_id)
        return result

    try:
        return await db.run(work, transaction=True)
    except _DryRun as preview:
        return preview.result


# --- tagging a session and recording understanding ------------------------------------------------

@dataclass(frozen=True)
class SyllabusPlan:
    """Judged tags or levels: what they write and what they announce once committed."""

    effects: tuple[Effect, ...]
    live: tuple[LiveUpdate, ...]


def plan_syllabus(session_id: str, roster: Collection[str], request: TagTopics | RecordUnderstanding) -> SyllabusPlan:
    """Judge ``request`` against the session's roster (pure). Raises :class:`SyllabusProblem`."""
    if isinstance(request, TagTopics):
        ids = tuple(dict.fromkeys(request.topic_ids))
        return SyllabusPlan((SessionTopicsRow(session_id, ids, request.actor, request.at),),
                            ((session_topic(session_id), LiveTopics(session_id, ids, request.actor)),))
    check_levels(roster, request.levels)
    effects = tuple(UnderstandingRow(session_id, student, request.topic_id, level, request.actor, request.at)
                    for student, level in request.levels)
    live = ((session_topic(session_id),
             LiveUnderstanding(session_id, request.topic_id, tuple(request.levels), request.actor)),)
    return SyllabusPlan(effects, live if request.levels else ())


async def record_syllabus(db: Database, session_id: str, request: TagTopics | RecordUnderstanding) -> SyllabusPlan:
    """Tags or levels of a session without a live actor: judged and written in one transaction with the
    writer's own step (:func:`write_syllabus_effects`). The caller publishes ``live`` (committed by then)."""

    async def work(conn: asyncpg.Connection) -> SyllabusPlan:
        plan = plan_syllabus(session_id, await enrolled_students(conn, session_id), request)
        by_type: dict[type, list] = defaultdict(list)
        for effect in plan.effects:
            by_type[type(effect)].append(effect)
        await write_syllabus_effects(conn, by_type)
        return plan

    return await db.run(work, transaction=True)


async def write_syllabus_effects(conn: asyncpg.Connection, by_type: Mapping[type, list]) -> None:
    """Inside the caller's transaction (the writer's batch, or :func:`record_syllabus`): session
    topics and understanding levels, then the progress of the students they concern."""
    tags: list[SessionTopicsRow] = by_type.get(SessionTopicsRow, [])
    levels: list[UnderstandingRow] = by_type.get(UnderstandingRow, [])
    if not tags and not levels:
        return
    for tag in tags:  # in commit order: the last set of a session wins
        await conn.execute("DELETE FROM session_topics WHERE session_id = $1 AND NOT topic_id = ANY($2::bigint[])",
                           tag.session_id, list(tag.topic_ids))
        await conn.execute(
            "INSERT INTO session_topics (session_id, topic_id, tagged_by, tagged_at)"
            " SELECT $1, t.id, $3, $4 FROM syllabus_topics t JOIN class_sessions s ON s.course_id = t.course_id"
            " WHERE s.id = $1 AND t.id = ANY($2::bigint[]) ON CONFLICT DO NOTHING",
            tag.session_id, list(tag.topic_ids), tag.actor, tag.at)
    if levels:
        await conn.executemany(
            "INSERT INTO topic_understanding (session_id, student_id, topic_id, level, recorded_by, at)"
            " SELECT $1, $2, $3, $4, $5, $6 WHERE $3::bigint IS NULL OR EXISTS (SELECT 1 FROM syllabus_topics t"
            "   JOIN class_sessions s ON s.course_id = t.course_id WHERE s.id = $1 AND t.id = $3)"
            " ON CONFLICT (session_id, student_id, coalesce(topic_id, 0))"
            " DO UPDATE SET level = excluded.level, recorded_by = excluded.recorded_by, at = excluded.at",
            [(u.session_id, u.student_id, u.topic_id, u.level, u.actor, u.at) for u in levels])
    sessions = sorted({t.session_id for t in tags} | {u.session_id for u in levels})
    courses = await conn.fetch("SELECT id, course_id FROM class_sessions WHERE id = ANY($1::text[])", sessions)
    course_of = {r["id"]: r["course_id"] for r in courses}
    everyone = {course_of[t.session_id] for t in tags if t.session_id in course_of}
    some: dict[str, set[str]] = defaultdict(set)
    for u in levels:
        if u.session_id in course_of and course_of[u.session_id] not in everyone:
            some[course_of[u.session_id]].add(u.student_id)
    for course_id in sorted(everyone):
        await refresh_progress(conn, course_id)
    for course_id, students in sorted(some.items()):
        await refresh_progress(conn, course_id, sorted(students))


@dataclass(frozen=True)
class SessionTagging:
    """What the live roster shows for tagging: the syllabus, what this session covers, suggestions,
    and the understanding levels recorded so far (``topic_id`` None: of the whole session)."""

    session_id: str
    course_id: str
    topics: tuple[Topic, ...]
    tagged: tuple[int, ...]
    suggestions: tuple[Suggestion, ...]
    #: topic ids covered by earlier sessions of the course (in the same section, if it has one).
    covered_before: tuple[int, ...]
    levels: tuple[tuple[str, int | None, int], ...]  # (student_id, topic_id, level)


async def session_tagging(db: Database, session_id: str) -> SessionTagging:
    """:class:`SessionTagging` of a session; :class:`NotFound` if there is none."""

    async def work(conn: asyncpg.Connection) -> SessionTagging:
        session = await conn.fetchrow("SELECT id, course_id, section_id, starts_at FROM class_sessions WHERE id = $1",
                                      session_id)
        if session is None:
            raise NotFound("No such session.", "session_id")
        topics = await list_topics(conn, session["course_id"])
        tagged = [r["topic_id"] for r in await conn.fetch(
            "SELECT st.topic_id FROM session_topics st JOIN syllabus_topics t ON t.id = st.topic_id"
            " WHERE st.session_id = $1 ORDER BY t.position", session_id)]
        earlier = await conn.fetch(
            "SELECT s.id, s.starts_at, array_agg(st.topic_id) AS topic_ids FROM class_sessions s"
            " JOIN session_topics st ON st.session_id = s.id"
            " WHERE s.course_id = $1 AND s.id <> $2 AND s.status <> 'cancelled' AND s.starts_at < $3"
            "   AND ($4::text IS NULL OR s.section_id IS NULL OR s.section_id = $4)"
            " GROUP BY s.id, s.starts_at ORDER BY s.starts_at DESC, s.id DESC",
            session["course_id"], session_id, session["starts_at"], session["section_id"])
        covered = {tid for r in earlier for tid in r["topic_ids"]}
        last = list(earlier[0]["topic_ids"]) if earlier else []
        refs = [TopicRef(t.topic_id, t.position, frozenset(t.prerequisites)) for t in topics]
        suggestions = suggest_topics(refs, covered, last)
        levels = await conn.fetch(
            "SELECT student_id, topic_id, level FROM topic_understanding WHERE session_id = $1"
            " ORDER BY student_id, topic_id NULLS FIRST", session_id)
        return SessionTagging(session_id, session["course_id"], tuple(topics), tuple(tagged), tuple(suggestions),
                              tuple(sorted(covered)), tuple((r["student_id"], r["topic_id"], r["level"]) for r in levels))

    return await db.run(work)


# --- progress ----------------------------------------------------------------------------------------

@dataclass
class _Facts:
    """A course's facts for progress and pace, as of an instant."""

    topics: dict[int, tuple[int, int]]  # topic -> (position, est_minutes)
    enrolled: dict[str, str | None]  # student -> section
    #: every non-cancelled session: (id, section, starts_at, minutes, topic ids tagged)
    sessions: list[tuple[str, str | None, datetime, float, tuple[int, ...]]]
    attended: set[tuple[str, str]] = field(default_factory=set)  # (session, student) present or late
    #: (student, session) -> {topic or None: level}
    levels: dict[tuple[str, str], dict[int | None, int]] = field(default_factory=dict)
    #: (student, topic) -> [(at, level)] from released assessment marks
    marks: dict[tuple[str, int], list[tuple[datetime, float]]] = field(default_factory=dict)

    def expected(self, student: str, section: str | None) -> bool:
        mine = self.enrolled.get(student)
        return section is None or mine is None or mine == section


async def _facts(conn: asyncpg.Connection, course_id: str, student_ids: Sequence[str] | None,
                 as_of: datetime) -> _Facts:
    topics = {r["id"]: (r["position"], r["est_minutes"]) for r in await conn.fetch(
        "SELECT id, position, est_minutes FROM syllabus_topics WHERE course_id = $1", course_id)}
    enrolled = {r["student_id"]: r["section_id"] for r in await conn.fetch(
        "SELECT student_id, section_id FROM enrolments WHERE course_id = $1"
        " AND ($2::text[] IS NULL OR student_id = ANY($2::text[]))", course_id,
        None if student_ids is None else list(student_ids))}
    rows = await conn.fetch(
        "SELECT s.id, s.section_id, s.starts_at, extract(epoch FROM s.ends_at - s.starts_at) / 60 AS minutes,"
        " coalesce((SELECT array_agg(st.topic_id) FROM session_topics st WHERE st.session_id = s.id), '{}') AS tags"
        " FROM class_sessions s WHERE s.course_id = $1 AND s.status <> 'cancelled'"
        " ORDER BY s.starts_at, s.id", course_id)
    sessions = [(r["id"], r["section_id"], r["starts_at"], float(r["minutes"]),
                 tuple(r["tags"]) if r["starts_at"] < as_of else ()) for r in rows]
    facts = _Facts(topics, enrolled, sessions)
    tagged_ids = [s[0] for s in sessions if s[4]]
    students = list(enrolled)
    if tagged_ids and students:
        for r in await conn.fetch(
                "SELECT session_id, student_id FROM attendance WHERE session_id = ANY($1::text[])"
                " AND student_id = ANY($2::text[]) AND status IN ('present', 'late')", tagged_ids, students):
            facts.attended.add((r["session_id"], r["student_id"]))
        for r in await conn.fetch(
                "SELECT session_id, student_id, topic_id, level FROM topic_understanding"
                " WHERE session_id = ANY($1::text[]) AND student_id = ANY($2::text[]) AND at <= $3",
                tagged_ids, students, as_of):
            facts.levels.setdefault((r["student_id"], r["session_id"]), {})[r["topic_id"]] = r["level"]
    if students and await conn.fetchval("SELECT to_regclass('assessment_topics') IS NOT NULL"):
        # Released marks only: before release a student sees none of them, so progress must not either.
        for r in await conn.fetch(
                "SELECT at.topic_id, m.student_id, m.marks, a.max_marks,"
                "  coalesce(a.held_on::timestamptz, m.graded_at) AS at"
                " FROM assessment_topics at JOIN assessments a ON a.id = at.assessment_id"
                " JOIN assessment_marks m ON m.assessment_id = a.id"
                " JOIN grade_releases g ON g.course_id = a.course_id AND g.term_id = a.term_id"
                " WHERE a.course_id = $1 AND m.status = 'graded' AND m.student_id = ANY($2::text[])"
                "   AND g.released_at <= $3", course_id, students, as_of):
            facts.marks.setdefault((r["student_id"], r["topic_id"]), []).append(
                (r["at"], mark_level(float(r["marks"]), float(r["max_marks"]))))
    return facts


def _progress(facts: _Facts, student: str) -> dict[int, Progress]:
    coverage: dict[int, list[Coverage]] = defaultdict(list)
    observations: dict[int, list[Observation]] = defaultdict(list)
    for session_id, section, starts_at, minutes, tags in facts.sessions:
        if not tags or not facts.expected(student, section):
            continue
        attended = (session_id, student) in facts.attended
        levels = facts.levels.get((student, session_id), {})
        for topic in tags:
            if topic not in facts.topics:
                continue
            coverage[topic].append(Coverage(starts_at, minutes / len(tags), attended))
            # A topic's own level wins over the session's for that topic.
            level = levels.get(topic, levels.get(None))
            if level is not None:
                observations[topic].append(Observation(starts_at, level))
    for (who, topic), marks in facts.marks.items():
        if who == student and topic in facts.topics:
            observations[topic] += [Observation(at, level, "assessment") for at, level in marks]
    return {topic: topic_progress(est, coverage.get(topic, []), observations.get(topic, []))
            for topic, (_, est) in facts.topics.items()}


async def refresh_progress(conn: asyncpg.Connection, course_id: str, student_ids: Sequence[str] | None = None,
                           *, now: datetime | None = None) -> int:
    """Inside the caller's transaction: recompute ``topic_progress`` of the course's enrolled students
    (or those of ``student_ids``) from the facts; returns the rows written."""
    facts = await _facts(conn, course_id, student_ids, now or datetime.now(timezone.utc))
    if not facts.topics or not facts.enrolled:
        return 0
    rows = []
    for student in facts.enrolled:
        for topic, p in _progress(facts, student).items():
            rows.append((student, topic, p.status, Decimal(f"{p.competency:.2f}"), p.observations, p.last_level,
                         p.minutes_spent, p.missed))
    await conn.execute(
        "INSERT INTO topic_progress (student_id, topic_id, status, competency, observations, last_level,"
        "  minutes_spent, missed, updated_at)"
        " SELECT r.s, r.t, r.st, r.c, r.o, r.l, r.m, r.x, now() FROM unnest($1::text[], $2::bigint[], $3::text[],"
        "  $4::numeric[], $5::int[], $6::smallint[], $7::int[], $8::bool[]) AS r (s, t, st, c, o, l, m, x)"
        " ON CONFLICT (student_id, topic_id) DO UPDATE SET status = excluded.status,"
        "  competency = excluded.competency, observations = excluded.observations,"
        "  last_level = excluded.last_level, minutes_spent = excluded.minutes_spent, missed = excluded.missed,"
        "  updated_at = CASE WHEN (topic_progress.status, topic_progress.competency, topic_progress.observations,"
        "    topic_progress.minutes_spent, topic_progress.missed) IS NOT DISTINCT FROM (excluded.status,"
        "    excluded.competency, excluded.observations, excluded.minutes_spent, excluded.missed)"
        "   THEN topic_progress.updated_at ELSE now() END",
        *[list(column) for column in zip(*rows)])
    return len(rows)


# --- pace ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StudentPace:
    """One student's progress in one course against the plan, as of ``as_of``."""

    student_id: str
    course_id: str
    topics_total: int
    #: Topics tagged in sessions the student was expected at, before ``as_of``.
    topics_covered: int
    #: Completed or mastered.
    topics_done: int
    #: Covered while the student was away, never attended since (needs catching up).
    topics_missed: int
    needs_review: int
    #: Mean competency over the covered topics with at least one observation; None without any.
    mean_competency: float | None
    planned_minutes: float
    covered_minutes: float
    done_minutes: float
    #: done_minutes / planned_minutes; None while nothing is planned yet.
    pace_ratio: float | None


def _plan_for(facts: _Facts, student: str | None, section: str | None, as_of: datetime) -> tuple[float, float]:
    """(planned, covered) syllabus minutes by ``as_of`` over the sessions ``student`` (or the section,
    or everyone) is expected at."""
    if student is not None:
        mine = [s for s in facts.sessions if facts.expected(student, s[1])]
    else:
        mine = [s for s in facts.sessions if section is None or s[1] is None or s[1] == section]
    total = sum(est for _, est in facts.topics.values())
    curve = planned_curve(total, [s[3] for s in mine])
    held = [i for i, s in enumerate(mine) if s[2] < as_of]
    planned = curve[held[-1]] if held else 0.0
    covered_ids = {t for s in mine for t in s[4] if t in facts.topics}
    return planned, float(sum(facts.topics[t][1] for t in covered_ids))


async def student_pace(db: Database, *, course_ids: Sequence[str] | None = None,
                       student_ids: Sequence[str] | None = None, as_of: datetime | None = None) -> list[StudentPace]:
    """Per enrolled (student, course) with a syllabus: progress against the plan as of ``as_of`` (now),
    computed from the facts (not the stored progress), so it serves finished terms too. Read-only."""
    at = as_of or datetime.now(timezone.utc)

    async def work(conn: asyncpg.Connection) -> list[StudentPace]:
        courses = [r["course_id"] for r in await conn.fetch(
            "SELECT DISTINCT e.course_id FROM enrolments e WHERE ($1::text[] IS NULL OR e.course_id = ANY($1::text[]))"
            " AND ($2::text[] IS NULL OR e.student_id = ANY($2::text[]))"
            " AND EXISTS (SELECT 1 FROM syllabus_topics t WHERE t.course_id = e.course_id) ORDER BY 1",
            None if course_ids is None else list(course_ids), None if student_ids is None else list(student_ids))]
        out: list[StudentPace] = []
        for course_id in courses:
            facts = await _facts(conn, course_id, student_ids, at)
            for student in sorted(facts.enrolled):
                out.append(_student_pace(facts, course_id, student, at))
        return out

    return await db.run(work)


def _student_pace(facts: _Facts, course_id: str, student: str, at: datetime) -> StudentPace:
    progress = _progress(facts, student)
    planned, _ = _plan_for(facts, student, None, at)
    covered = {t for s in facts.sessions if facts.expected(student, s[1]) for t in s[4] if t in facts.topics}
    observed = [p.competency for t, p in progress.items() if t in covered and p.observations]
    done_minutes = float(sum(facts.topics[t][1] for t, p in progress.items() if done(p.status)))
    return StudentPace(
        student_id=student, course_id=course_id, topics_total=len(facts.topics), topics_covered=len(covered),
        topics_done=sum(1 for p in progress.values() if done(p.status)),
        topics_missed=sum(1 for p in progress.values() if p.missed),
        needs_review=sum(1 for p in progress.values() if p.status == "needs_review"),
        mean_competency=round(sum(observed) / len(observed), 2) if observed else None,
        planned_minutes=round(planned, 1), covered_minutes=float(sum(facts.topics[t][1] for t in covered)),
        done_minutes=done_minutes, pace_ratio=pace_ratio(done_minutes, planned))


@dataclass(frozen=True)
class PacePoint:
    session_id: str
    starts_at: datetime
    held: bool
    #: Cumulative minutes: the plan's after this session, and the syllabus estimates covered by then.
    planned_minutes: float
    covered_minutes: float | None


@dataclass(frozen=True)
class CoursePace:
    """A course's (or one section's) syllabus coverage against the plan, for its report."""

    course_id: str
    section_id: str | None
    topics_total: int
    topics_covered: int
    planned_total_minutes: int
    planned_minutes: float  # by now
    covered_minutes: float
    pace_ratio: float | None
    points: tuple[PacePoint, ...]
    #: Per topic: (topic_id, sessions that covered it, students done, students needing review, enrolled).
    topics: tuple[tuple[int, int, int, int, int], ...]


async def course_pace(db: Database, course_id: str, *, section_id: str | None = None,
                      as_of: datetime | None = None) -> CoursePace:
    """Coverage and pace of a course (or one section) as of ``as_of`` (now); refreshes progress first."""
    at = as_of or datetime.now(timezone.utc)

    async def work(conn: asyncpg.Connection) -> CoursePace:
        await refresh_progress(conn, course_id, now=at)
        facts = await _facts(conn, course_id, None, at)
        if section_id is not None:
            facts.enrolled = {s: sec for s, sec in facts.enrolled.items() if sec == section_id}
        mine = [s for s in facts.sessions if section_id is None or s[1] is None or s[1] == section_id]
        total = sum(est for _, est in facts.topics.values())
        curve = planned_curve(total, [s[3] for s in mine])
        points, seen = [], set()
        covered_count: dict[int, int] = defaultdict(int)
        for (sid, _, starts_at, _, tags), planned in zip(mine, curve):
            held = starts_at < at
            for t in tags:
                if t in facts.topics:
                    seen.add(t)
                    covered_count[t] += 1
            covered = float(sum(facts.topics[t][1] for t in seen)) if held else None
            points.append(PacePoint(sid, starts_at, held, round(planned, 1), covered))
        held_points = [p for p in points if p.held]
        planned_now = held_points[-1].planned_minutes if held_points else 0.0
        covered_now = float(sum(facts.topics[t][1] for t in seen))
        stats = await conn.fetch(
            "SELECT p.topic_id, count(*) FILTER (WHERE p.status IN ('completed', 'mastered')) AS done,"
            " count(*) FILTER (WHERE p.status = 'needs_review') AS review"
            " FROM topic_progress p JOIN syllabus_topics t ON t.id = p.topic_id"
            " WHERE t.course_id = $1 AND p.student_id = ANY($2::text[]) GROUP BY p.topic_id",
            course_id, list(facts.enrolled))
        by_topic = {r["topic_id"]: (r["done"], r["review"]) for r in stats}
        ordered = sorted(facts.topics, key=lambda t: facts.topics[t][0])
        return CoursePace(
            course_id, section_id, len(facts.topics), len(seen), total, planned_now, covered_now,
            pace_ratio(covered_now, planned_now), tuple(points),
            tuple((t, covered_count.get(t, 0), *by_topic.get(t, (0, 0)), len(facts.enrolled)) for t in ordered))

    return await db.run(work, transaction=True)


# --- a student's progress --------------------------------------------------------------------------

@dataclass(frozen=True)
class TopicProgressRow:
    topic_id: int
    position: int
    title: str
    unit: str | None
    est_minutes: int
    status: str
    competency: float
    observations: int
    last_level: int | None
    minutes_spent: int
    missed: bool


@dataclass(frozen=True)
class CourseProgress:
    course_id: str
    code: str
    title: str
    topics: tuple[TopicProgressRow, ...]
    pace: StudentPace


async def student_progress(db: Database, student_id: str, *, course_ids: Iterable[str] | None = None,
                           now: datetime | None = None) -> list[CourseProgress]:
    """The student's progress in each enrolled course with a syllabus (or those of ``course_ids``),
    refreshed from the facts first (one transaction)."""
    at = now or datetime.now(timezone.utc)
    only = None if course_ids is None else list(course_ids)

    async def work(conn: asyncpg.Connection) -> list[CourseProgress]:
        courses = await conn.fetch(
            "SELECT c.id, c.code, c.title FROM enrolments e JOIN courses c ON c.id = e.course_id"
            " WHERE e.student_id = $1 AND ($2::text[] IS NULL OR c.id = ANY($2::text[]))"
            " AND EXISTS (SELECT 1 FROM syllabus_topics t WHERE t.course_id = c.id) ORDER BY c.code",
            student_id, only)
        out = []
        for course in courses:
            await refresh_progress(conn, course["id"], [student_id], now=at)
            rows = await conn.fetch(
                "SELECT t.id AS topic_id, t.position, t.title, t.unit, t.est_minutes, p.status,"
                " p.competency::float AS competency, p.observations, p.last_level, p.minutes_spent, p.missed"
                " FROM syllabus_topics t JOIN topic_progress p ON p.topic_id = t.id AND p.student_id = $2"
                " WHERE t.course_id = $1 ORDER BY t.position", course["id"], student_id)
            facts = await _facts(conn, course["id"], [student_id], at)
            out.append(CourseProgress(course["id"], course["code"], course["title"],
                                      tuple(TopicProgressRow(**dict(r)) for r in rows),
                                      _student_pace(facts, course["id"], student_id, at)))
        return out

    return await db.run(work, transaction=True)
