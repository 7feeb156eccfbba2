"""Class sessions as faculty and the scheduler manage them: create, open, close,
cancel, reschedule, tag topics; list and look up; the scheduler's loads and
status marks.

A session's life: ``scheduled`` → ``open`` (the scheduler at its check-in
window, or a faculty member early) → ``closed`` (the scheduler after its end,
or a faculty member early) and, once its session actor has marked the
absentees, ``finalized_at`` is set. ``cancelled`` (with a reason) can happen
before it closes; records are kept. Every faculty action is appended to
``session_events`` (who, when, what, details): sessions are not attendance
records, so that history is not the hash-chained audit log.

Concurrency contract: each function is one ``db.run`` (writes in one
transaction that locks the session row, so two concurrent actions on one
session serialise and the second sees the first's result); any trio task may
call them; cancelling rolls back. Callers tell the scheduler
(``WebContext.sessions_changed``) after these return.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Sequence

import asyncpg

from ._pool import Database
from .academic import RULE_DEFAULTS, Conflict, Invalid, NotFound, manages_sql, new_id
from .attendance import lock_attendance
from .leave import excuse_on_leave
from .paging import Page

MAX_TOPICS = 50
MAX_TOPIC_LENGTH = 200

_SELECT = (
    "SELECT cs.id AS session_id, cs.course_id, c.code AS course_code, c.title AS course_title,"
    " cs.section_id, sec.name AS section_name, cs.room_id, r.name AS room_name, cs.starts_at, cs.ends_at,"
    " cs.starts_at - make_interval(mins => cs.opens_minutes_before) AS opens_at,"
    " cs.grace_minutes, cs.opens_minutes_before, cs.late_cutoff_minutes, cs.status, cs.origin, cs.slot_id,"
    " cs.topics, cs.cancel_reason, cs.rescheduled_from, cs.opened_at, cs.opened_by, cs.closed_at, cs.closed_by,"
    " cs.finalized_at,"
    " (SELECT count(*) FROM enrolments e WHERE e.course_id = cs.course_id) AS enrolled,"
    " (SELECT count(*) FROM attendance a WHERE a.session_id = cs.id AND a.status IN ('present', 'late'))"
    "   AS checked_in"
    " FROM class_sessions cs JOIN courses c ON c.id = cs.course_id JOIN rooms r ON r.id = cs.room_id"
    " LEFT JOIN sections sec ON sec.id = cs.section_id"
)


@dataclass(frozen=True)
class ClassSession:
    """A class session with its course, section and room names and its counts."""

    session_id: str
    course_id: str
    course_code: str
    course_title: str
    section_id: str | None
    section_name: str | None
    room_id: str
    room_name: str
    starts_at: datetime
    ends_at: datetime
    opens_at: datetime
    grace_minutes: int
    opens_minutes_before: int
    late_cutoff_minutes: int
    status: str
    origin: str
    slot_id: str | None
    topics: tuple[str, ...]
    cancel_reason: str | None
    rescheduled_from: datetime | None
    opened_at: datetime | None
    opened_by: str | None
    closed_at: datetime | None
    closed_by: str | None
    finalized_at: datetime | None
    enrolled: int
    checked_in: int


@dataclass(frozen=True)
class SessionEvent:
    """One action on a session (``session_events``)."""

    at: datetime
    actor: str
    action: str
    details: dict[str, Any]


@dataclass(frozen=True)
class SessionDetail:
    """A session and its latest actions, newest first."""

    session: ClassSession
    history: list[SessionEvent]


def _session(row: asyncpg.Record) -> ClassSession:
    values = dict(row)
    values["topics"] = tuple(values["topics"])
    return ClassSession(**values)


# --- reads ---------------------------------------------------------------------

async def session_course(db: Database, session_id: str) -> str:
    """The session's course id (for ownership checks); :class:`NotFound` if none."""
    course = await db.fetchval("SELECT course_id FROM class_sessions WHERE id = $1", session_id)
    if course is None:
        raise NotFound("No such session.", "session_id")
    return course


async def session_detail(db: Database, session_id: str, *, history: int = 50) -> SessionDetail:
    """The session with its counts and its latest ``history`` actions, newest first."""

    async def work(conn: asyncpg.Connection) -> SessionDetail:
        row = await conn.fetchrow(_SELECT + " WHERE cs.id = $1", session_id)
        if row is None:
            raise NotFound("No such session.", "session_id")
        events = await conn.fetch(
            "SELECT at, actor, action, details FROM session_events WHERE session_id = $1"
            " ORDER BY at DESC, id DESC LIMIT $2", session_id, history)
        return SessionDetail(_session(row), [
            SessionEvent(e["at"], e["actor"], e["action"], json.loads(e["details"])) for e in events])

    return await db.run(work)


async def list_sessions(
    db: Database, limit: int, offset: int, *, start: datetime | None = None, end: datetime | None = None,
    course_id: str | None = None, section_id: str | None = None, status: str | None = None,
    faculty_id: str | None = None, term_id: str | None = None,
) -> Page[ClassSession]:
    """A page of the sessions overlapping ``[start, end)``, oldest first, and how many there are in all;
    ``faculty_id`` limits to courses they manage, ``term_id`` to sessions of the term's sections."""
    where = (" WHERE ($1::timestamptz IS NULL OR cs.ends_at > $1) AND ($2::timestamptz IS NULL OR cs.starts_at < $2)"
             " AND ($3::text IS NULL OR cs.course_id = $3) AND ($4::text IS NULL OR cs.section_id = $4)"
             " AND ($5::text IS NULL OR cs.status = $5) AND ($6::text IS NULL OR "
             + manages_sql("cs.course_id", "$6") + ")"
             " AND ($7::text IS NULL OR cs.section_id IN (SELECT ts.id FROM sections ts WHERE ts.term_id = $7))")
    args = [start, end, course_id, section_id, status, faculty_id, term_id]

    async def work(conn: asyncpg.Connection) -> Page[ClassSession]:
        total = await conn.fetchval("SELECT count(*) FROM class_sessions cs" + where, *args)
        rows = await conn.fetch(_SELECT + where + " ORDER BY cs.starts_at, c.code, cs.id LIMIT $8 OFFSET $9",
                                *args, limit, offset)
        return Page([_session(r) for r in rows], total)

    return await db.run(work)


# --- faculty actions -----------------------------------------------------------

@dataclass(frozen=True)
class NewSession:
    course_id: str
    room_id: str
    starts_at: datetime
    ends_at: datetime
    section_id: str | None = None
    grace_minutes: int | None = None
    opens_minutes_before: int | None = None
    late_cutoff_minutes: int | None = None
    topics: tuple[str, ...] = ()


async def _room_clash(conn: asyncpg.Connection, room_id: str, starts: datetime, ends: datetime,
                      exclude: str | None) -> None:
    clash = await conn.fetchval(
        "SELECT id FROM class_sessions WHERE room_id = $1 AND status <> 'cancelled' AND starts_at < $3"
        " AND ends_at > $2 AND ($4::text IS NULL OR id <> $4) LIMIT 1", room_id, starts, ends, exclude)
    if clash is not None:
        raise Conflict(f"The room is taken by session {clash} at that time.", "room_id")


async def _event(conn: asyncpg.Connection, session_id: str, now: datetime, actor: str, action: str,
                 details: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO session_events (session_id, at, actor, action, details) VALUES ($1, $2, $3, $4, $5::jsonb)",
        session_id, now, actor, action, json.dumps(details, default=str))


async def create_session(db: Database, new: NewSession, *, actor: str, now: datetime) -> ClassSession:
    """A manual (``origin='manual'``) session, e.g. a make-up class; unset rule fields come from the
    course's rules. Students on approved leave that day are excused at once (:func:`excuse_on_leave`)."""
    if new.ends_at <= new.starts_at:
        raise Invalid("'ends_at' must be after 'starts_at'.", "ends_at")
    if new.ends_at <= now:
        raise Invalid("The session would be over already.", "ends_at")

    async def work(conn: asyncpg.Connection) -> ClassSession:
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM courses WHERE id = $1)", new.course_id):
            raise NotFound("No such course.", "course_id")
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1)", new.room_id):
            raise NotFound("No such room.", "room_id")
        if new.section_id is not None and await conn.fetchval(
                "SELECT course_id FROM sections WHERE id = $1", new.section_id) != new.course_id:
            raise Invalid("'section_id' must be a section of the course.", "section_id")
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('room:' || $1))", new.room_id)
        await _room_clash(conn, new.room_id, new.starts_at, new.ends_at, None)
        rules = await conn.fetchrow(
            "SELECT grace_minutes, opens_minutes_before, late_cutoff_minutes FROM course_rules WHERE course_id = $1",
            new.course_id)

        def pick(name: str) -> int:
            given = getattr(new, name)
            if given is not None:
                return given
            return rules[name] if rules is not None else RULE_DEFAULTS[name]

        session_id = new_id("ses")
        await conn.execute(
            "INSERT INTO class_sessions (id, course_id, section_id, room_id, starts_at, ends_at, grace_minutes,"
            " opens_minutes_before, late_cutoff_minutes, topics, origin, status, created_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'manual', 'scheduled', $11)",
            session_id, new.course_id, new.section_id, new.room_id, new.starts_at, new.ends_at,
            pick("grace_minutes"), pick("opens_minutes_before"), pick("late_cutoff_minutes"),
            list(new.topics), actor)
        await _event(conn, session_id, now, actor, "create", {})
        await excuse_on_leave(conn, [session_id], actor=actor)
        return _session(await conn.fetchrow(_SELECT + " WHERE cs.id = $1", session_id))

    return await db.run(work, transaction=True)


async def _locked(conn: asyncpg.Connection, session_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT id, status, starts_at, ends_at, room_id, opens_minutes_before, rescheduled_from"
        " FROM class_sessions WHERE id = $1 FOR UPDATE", session_id)
    if row is None:
        raise NotFound("No such session.", "session_id")
    return row


async def open_session(db: Database, session_id: str, *, actor: str, now: datetime) -> ClassSession:
    """Open check-in now. Before the usual window, the window is widened to start now."""

    async def work(conn: asyncpg.Connection) -> ClassSession:
        row = await _locked(conn, session_id)
        if row["status"] in ("closed", "cancelled"):
            raise Conflict(f"The session is {row['status']}.", "status")
        if now >= row["ends_at"]:
            raise Conflict("The session is over.", "status")
        if row["status"] == "scheduled":
            opens = row["opens_minutes_before"]
            early = row["starts_at"] - timedelta(minutes=opens) > now
            if early:
                opens = max(opens, math.ceil((row["starts_at"] - now).total_seconds() / 60))
            await conn.execute(
                "UPDATE class_sessions SET status = 'open', opened_at = $2, opened_by = $3,"
                " opens_minutes_before = $4 WHERE id = $1", session_id, now, actor, opens)
            await _event(conn, session_id, now, actor, "open", {"early": early, "opens_minutes_before": opens})
        return _session(await conn.fetchrow(_SELECT + " WHERE cs.id = $1", session_id))

    return await db.run(work, transaction=True)


async def close_session(db: Database, session_id: str, *, actor: str, now: datetime) -> ClassSession:
    """Close check-in now; a session closed before its end ends now. The scheduler then marks absentees."""

    async def work(conn: asyncpg.Connection) -> ClassSession:
        row = await _locked(conn, session_id)
        if row["status"] == "cancelled":
            raise Conflict("The session is cancelled.", "status")
        if row["status"] != "closed":
            if now <= row["starts_at"]:
                raise Conflict("The session has not started; cancel or reschedule it instead.", "status")
            ends = min(row["ends_at"], now)
            await conn.execute(
                "UPDATE class_sessions SET status = 'closed', closed_at = $2, closed_by = $3, ends_at = $4"
                " WHERE id = $1", session_id, now, actor, ends)
            await _event(conn, session_id, now, actor, "close",
                         {"early": ends < row["ends_at"], "planned_end": row["ends_at"].isoformat()})
        return _session(await conn.fetchrow(_SELECT + " WHERE cs.id = $1", session_id))

    return await db.run(work, transaction=True)


async def cancel_session(db: Database, session_id: str, reason: str, *, actor: str,
                         now: datetime) -> ClassSession:
    """Cancel a session that has not closed; its attendance records (if any) are kept."""

    async def work(conn: asyncpg.Connection) -> ClassSession:
        row = await _locked(conn, session_id)
        if row["status"] in ("closed", "cancelled"):
            raise Conflict(f"The session is already {row['status']}.", "status")
        await conn.execute(
            "UPDATE class_sessions SET status = 'cancelled', cancel_reason = $2 WHERE id = $1", session_id, reason)
        await _event(conn, session_id, now, actor, "cancel", {"reason": reason})
        return _session(await conn.fetchrow(_SELECT + " WHERE cs.id = $1", session_id))

    return await db.run(work, transaction=True)


async def reschedule_session(db: Database, session_id: str, starts_at: datetime, ends_at: datetime,
                             room_id: str | None, *, actor: str, now: datetime) -> ClassSession:
    """Move a scheduled session (same id); ``rescheduled_from`` keeps its first planned start.
    Moved onto a day of a student's approved leave, it is excused for them (:func:`excuse_on_leave`)."""
    if ends_at <= starts_at:
        raise Invalid("'ends_at' must be after 'starts_at'.", "ends_at")
    if starts_at <= now:
        raise Invalid("A session can only be moved to the future.", "starts_at")

    async def work(conn: asyncpg.Connection) -> ClassSession:
        # The attendance lock before the row lock, never after: a leave decision holding it may be
        # writing a record of this session (its foreign-key check waits on our row lock). Taken
        # first, it also keeps the "no records" check below true until the commit.
        await lock_attendance(conn)
        row = await _locked(conn, session_id)
        if row["status"] != "scheduled":
            raise Conflict(f"Only a scheduled session can be rescheduled; this one is {row['status']}.", "status")
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM attendance WHERE session_id = $1)", session_id):
            raise Conflict("The session already has attendance records.", "status")
        room = room_id or row["room_id"]
        if room_id is not None and not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1)", room_id):
            raise NotFound("No such room.", "room_id")
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('room:' || $1))", room)
        await _room_clash(conn, room, starts_at, ends_at, session_id)
        await conn.execute(
            "UPDATE class_sessions SET starts_at = $2, ends_at = $3, room_id = $4,"
            " rescheduled_from = coalesce(rescheduled_from, starts_at) WHERE id = $1",
            session_id, starts_at, ends_at, room)
        await _event(conn, session_id, now, actor, "reschedule", {
            "from": {"starts_at": row["starts_at"].isoformat(), "ends_at": row["ends_at"].isoformat(),
                     "room_id": row["room_id"]},
            "to": {"starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat(), "room_id": room}})
        await excuse_on_leave(conn, [session_id], actor=actor)
        return _session(await conn.fetchrow(_SELECT + " WHERE cs.id = $1", session_id))

    return await db.run(work, transaction=True)


def clean_topics(topics: Sequence[str]) -> list[str]:
    """Trimmed, non-empty, de-duplicated (first wins, case-insensitively), in order."""
    seen, out = set(), []
    for topic in topics:
        text = " ".join(topic.split())
        if text and text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
    return out


async def set_topics(db: Database, session_id: str, topics: Sequence[str], *, actor: str,
                     now: datetime) -> ClassSession:
    """Replace the topics the session covered (any status but cancelled)."""
    cleaned = clean_topics(topics)
    if len(cleaned) > MAX_TOPICS:
        raise Invalid(f"At most {MAX_TOPICS} topics.", "topics")
    if any(len(t) > MAX_TOPIC_LENGTH for t in cleaned):
        raise Invalid(f"A topic is at most {MAX_TOPIC_LENGTH} characters.", "topics")

    async def work(conn: asyncpg.Connection) -> ClassSession:
        row = await _locked(conn, session_id)
        if row["status"] == "cancelled":
            raise Conflict("The session is cancelled.", "status")
        await conn.execute("UPDATE class_sessions SET topics = $2 WHERE id = $1", session_id, cleaned)
        await _event(conn, session_id, now, actor, "topics", {"topics": cleaned})
        return _session(await conn.fetchrow(_SELECT + " WHERE cs.id = $1", session_id))

    return await db.run(work, transaction=True)


# --- the scheduler's view ------------------------------------------------------

@dataclass(frozen=True)
class ScheduledSession:
    """What the scheduler needs of a session to arm its timers."""

    session_id: str
    room_id: str
    starts_at: datetime
    ends_at: datetime
    opens_at: datetime
    status: str  # scheduled | open | closed | cancelled
    finalized: bool


_SCHEDULE = (
    "SELECT id, room_id, starts_at, ends_at, starts_at - make_interval(mins => opens_minutes_before) AS opens_at,"
    " status, finalized_at IS NOT NULL AS finalized FROM class_sessions"
)


def _scheduled(r: asyncpg.Record) -> ScheduledSession:
    return ScheduledSession(r["id"], r["room_id"], r["starts_at"], r["ends_at"], r["opens_at"], r["status"],
                            r["finalized"])


async def schedule_window(db: Database, start: datetime, end: datetime) -> list[ScheduledSession]:
    """One query: sessions whose check-in window overlaps ``[start, end]``, plus any not finalized that
    ended before ``start`` within a week (a hub that was down at their close still closes them)."""
    rows = await db.fetch(
        _SCHEDULE + " WHERE (status <> 'cancelled' AND ends_at >= $1"
        " AND starts_at - make_interval(mins => opens_minutes_before) <= $2)"
        " OR (status IN ('scheduled', 'open', 'closed') AND finalized_at IS NULL"
        "     AND ends_at < $1 AND ends_at >= $1 - interval '7 days')",
        start, end)
    return [_scheduled(r) for r in rows]


async def scheduled_sessions(db: Database, session_ids: Sequence[str]) -> list[ScheduledSession]:
    rows = await db.fetch(_SCHEDULE + " WHERE id = ANY($1::text[])", list(session_ids))
    return [_scheduled(r) for r in rows]


async def mark_opened(db: Database, session_ids: Sequence[str], now: datetime) -> None:
    """The scheduler opened these (``scheduled`` → ``open``; others untouched)."""
    await db.execute(
        "UPDATE class_sessions SET status = 'open', opened_at = $2, opened_by = 'scheduler'"
        " WHERE id = ANY($1::text[]) AND status = 'scheduled'", list(session_ids), now)


async def mark_finalized(db: Database, session_id: str, now: datetime) -> None:
    """Absentees were marked: the session is closed for good (a cancelled one stays cancelled)."""
    await db.execute(
        "UPDATE class_sessions SET status = CASE WHEN status = 'cancelled' THEN status ELSE 'closed' END,"
        " closed_at = coalesce(closed_at, $2), closed_by = coalesce(closed_by, 'scheduler'), finalized_at = $2"
        " WHERE id = $1", session_id, now)
