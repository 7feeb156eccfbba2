"""Exam sittings: schedule (with the clash rules checked inside the transaction), move, delete,
and the timetables built from them (a sitting's roster, a student's exams).

A sitting (``exam_sittings``, migration 0030) is for a section (its students,
except those with a sitting of their own for the same assessment) or for one
student (a make-up or an accommodation). What already occupies the time is
loaded as :class:`hub.domain.exam_schedule.Booking` values (class sessions of
the room or the concerned students, other sittings) and judged by
:func:`hub.domain.exam_schedule.find_clashes`; any clash refuses the sitting
with :class:`SittingClash` (HTTP 409, the clashes listed). :func:`check_sitting`
answers the same question without writing (the faculty's "check first").

Scheduling or moving a sitting notifies its students (``exam_scheduled``) in the
same transaction; the caller publishes the returned notifications after the
commit (hub/db/notifications.py).

Concurrency contract: each function is one ``db.run`` and may be called from any
trio task; writes run in one transaction that first takes the term's exam lock
(``exams:<term>``: two sittings of the same students cannot both pass their
check) and then the room's lock (``room:<room>``, the lock class sessions take
when they are created or moved), so the check and the write see the same
calendar. Cancelling the caller rolls back.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence
from zoneinfo import ZoneInfo

import asyncpg

from hub.domain.exam_schedule import Booking, Clash, InvalidSitting, Proposed, find_clashes

from ._pool import Database
from .academic import Conflict, Invalid, NotFound
from .assessments import IN_SCOPE
from .notifications import NewNotification, add_notifications

#: Kinds of assessment that can have sittings (a project is marked, not sat).
SITTING_KINDS = ("quiz", "practical", "midterm", "exam")


class SittingClash(Conflict):
    """The sitting clashes with what already occupies the room or its students; ``clashes`` says what."""

    code = "exam_clash"

    def __init__(self, clashes: Sequence[Clash]) -> None:
        super().__init__(" ".join(c.reason for c in clashes[:3])
                         + (f" ({len(clashes) - 3} more)" if len(clashes) > 3 else ""), "starts_at")
        self.clashes = list(clashes)


@dataclass(frozen=True)
class Sitting:
    id: int
    assessment_id: int
    assessment_title: str
    kind: str
    course_id: str
    course_code: str
    course_title: str
    term_id: str
    section_id: str | None
    section_name: str | None
    student_id: str | None
    student_name: str | None
    room_id: str
    room_name: str
    starts_at: datetime
    ends_at: datetime
    note: str
    created_by: str | None
    #: Students who sit it.
    sitters: int


@dataclass(frozen=True)
class SittingFields:
    """Where and when (the assessment and who sits it are fixed once scheduled)."""

    room_id: str
    starts_at: datetime
    ends_at: datetime
    note: str = ""


@dataclass(frozen=True)
class NewSitting:
    assessment_id: int
    fields: SittingFields
    section_id: str | None = None
    student_id: str | None = None


#: SQL (alias ``x`` = exam_sittings): the students who sit ``x``.
_SITTERS = (
    "SELECT e.student_id FROM enrolments e WHERE x.section_id IS NOT NULL AND e.section_id = x.section_id"
    " AND NOT EXISTS (SELECT 1 FROM exam_sittings o WHERE o.assessment_id = x.assessment_id"
    "                 AND o.student_id = e.student_id)"
    " UNION ALL SELECT x.student_id WHERE x.student_id IS NOT NULL"
)

_SELECT = (
    "SELECT x.id, x.assessment_id, a.title AS assessment_title, a.kind, a.course_id, c.code AS course_code,"
    " c.title AS course_title, a.term_id, x.section_id, sec.name AS section_name, x.student_id,"
    " su.display_name AS student_name, x.room_id, r.name AS room_name, x.starts_at, x.ends_at, x.note,"
    f" x.created_by, (SELECT count(*) FROM ({_SITTERS}) q) AS sitters"
    " FROM exam_sittings x JOIN assessments a ON a.id = x.assessment_id JOIN courses c ON c.id = a.course_id"
    " JOIN rooms r ON r.id = x.room_id LEFT JOIN sections sec ON sec.id = x.section_id"
    " LEFT JOIN users su ON su.id = x.student_id"
)


def _sitting(row: asyncpg.Record) -> Sitting:
    return Sitting(**dict(row))


def sitting_label(course_code: str, title: str, section_name: str | None, student_name: str | None) -> str:
    """How a sitting is named in a clash reason or a notification."""
    who = f"section {section_name}" if section_name is not None else f"own sitting of {student_name}"
    return f"{course_code} {title} ({who})"


# --- the clash check ---------------------------------------------------------------

@dataclass(frozen=True)
class _Target:
    assessment_id: int
    course_id: str
    course_code: str
    title: str
    kind: str
    term_id: str
    timezone: str
    section_id: str | None
    student_id: str | None


async def _target(conn: asyncpg.Connection, new: NewSitting) -> _Target:
    row = await conn.fetchrow(
        "SELECT a.id, a.course_id, c.code, a.title, a.kind, a.term_id, a.section_id, t.timezone FROM assessments a"
        " JOIN courses c ON c.id = a.course_id JOIN terms t ON t.id = a.term_id WHERE a.id = $1",
        new.assessment_id)
    if row is None:
        raise NotFound("No such assessment.", "assessment_id")
    if row["kind"] not in SITTING_KINDS:
        raise Invalid(f"Only a {', '.join(SITTING_KINDS)} has sittings.", "assessment_id")
    if (new.section_id is None) == (new.student_id is None):
        raise Invalid("Give either 'section_id' (the section sits it) or 'student_id' (a sitting of their own).",
                      "section_id")
    if new.section_id is not None:
        sec = await conn.fetchrow("SELECT course_id, term_id FROM sections WHERE id = $1", new.section_id)
        if sec is None or sec["course_id"] != row["course_id"] or sec["term_id"] != row["term_id"]:
            raise Invalid("'section_id' must be a section of the course in the assessment's term.", "section_id")
        if row["section_id"] is not None and row["section_id"] != new.section_id:
            raise Invalid("This assessment is for another section.", "section_id")
    else:
        takes = await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM assessments a JOIN enrolments e ON {IN_SCOPE}"
            " WHERE a.id = $1 AND e.student_id = $2)", new.assessment_id, new.student_id)
        if not takes:
            raise Invalid("This student does not take this assessment.", "student_id")
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM rooms WHERE id = $1)", new.fields.room_id):
        raise NotFound("No such room.", "room_id")
    return _Target(row["id"], row["course_id"], row["code"], row["title"], row["kind"], row["term_id"],
                   row["timezone"], new.section_id, new.student_id)


async def _concerned(conn: asyncpg.Connection, target: _Target) -> dict[str, str]:
    """The students who would sit it, with their names."""
    if target.student_id is not None:
        rows = await conn.fetch("SELECT id AS student_id, display_name FROM users WHERE id = $1", target.student_id)
    else:
        rows = await conn.fetch(
            "SELECT e.student_id, u.display_name FROM enrolments e JOIN users u ON u.id = e.student_id"
            " WHERE e.section_id = $1 AND NOT EXISTS (SELECT 1 FROM exam_sittings o"
            "   WHERE o.assessment_id = $2 AND o.student_id = e.student_id)",
            target.section_id, target.assessment_id)
    return {r["student_id"]: r["display_name"] for r in rows}


async def _bookings(conn: asyncpg.Connection, target: _Target, fields: SittingFields,
                    students: Sequence[str]) -> list[Booking]:
    """Class sessions and sittings overlapping the time that use the room or any of ``students``.

    A student's own sitting replaces their section's sitting of the same assessment, so when
    scheduling one, that section sitting holds none of the student's time."""
    classes = await conn.fetch(
        "SELECT s.id, c.code, sec.name AS section_name, s.room_id, r.name AS room_name, s.starts_at, s.ends_at,"
        " coalesce(array(SELECT e.student_id FROM enrolments e WHERE e.course_id = s.course_id"
        "   AND (s.section_id IS NULL OR e.section_id IS NULL OR s.section_id = e.section_id)"
        "   AND e.student_id = ANY($4::text[])), '{}') AS busy"
        " FROM class_sessions s JOIN courses c ON c.id = s.course_id JOIN rooms r ON r.id = s.room_id"
        " LEFT JOIN sections sec ON sec.id = s.section_id"
        " WHERE s.status <> 'cancelled' AND s.starts_at < $3 AND s.ends_at > $2"
        " AND (s.room_id = $1 OR EXISTS (SELECT 1 FROM enrolments e WHERE e.course_id = s.course_id"
        "   AND (s.section_id IS NULL OR e.section_id IS NULL OR s.section_id = e.section_id)"
        "   AND e.student_id = ANY($4::text[])))",
        fields.room_id, fields.starts_at, fields.ends_at, list(students))
    sittings = await conn.fetch(
        "SELECT * FROM (SELECT x.id, c.code, a.title, sec.name AS section_name, su.display_name AS student_name, x.room_id,"
        " r.name AS room_name, x.starts_at, x.ends_at,"
        " CASE WHEN $6::bool AND x.assessment_id = $5 AND x.section_id IS NOT NULL THEN '{}'::text[] ELSE"
        f" coalesce(array(SELECT q.student_id FROM ({_SITTERS}) q WHERE q.student_id = ANY($4::text[])), '{{}}')"
        " END AS busy"
        " FROM exam_sittings x JOIN assessments a ON a.id = x.assessment_id JOIN courses c ON c.id = a.course_id"
        " JOIN rooms r ON r.id = x.room_id LEFT JOIN sections sec ON sec.id = x.section_id"
        " LEFT JOIN users su ON su.id = x.student_id"
        " WHERE x.starts_at < $3 AND x.ends_at > $2) q WHERE q.room_id = $1 OR cardinality(q.busy) > 0",
        fields.room_id, fields.starts_at, fields.ends_at, list(students), target.assessment_id,
        target.student_id is not None)
    found = [Booking("class", r["id"], f"{r['code']} class" + (f" (section {r['section_name']})"
                                                              if r["section_name"] else ""),
                     r["room_id"], r["room_name"], r["starts_at"], r["ends_at"], frozenset(r["busy"]))
             for r in classes]
    found += [Booking("sitting", str(r["id"]), sitting_label(r["code"], r["title"], r["section_name"],
                                                             r["student_name"]),
                      r["room_id"], r["room_name"], r["starts_at"], r["ends_at"], frozenset(r["busy"]))
              for r in sittings]
    return found


async def _clashes(conn: asyncpg.Connection, new: NewSitting, exclude: int | None) -> tuple[_Target, dict[str, str],
                                                                                           list[Clash]]:
    target = await _target(conn, new)
    try:
        proposed_students = await _concerned(conn, target)
        proposed = Proposed(new.fields.room_id, new.fields.starts_at, new.fields.ends_at,
                            frozenset(proposed_students), None if exclude is None else str(exclude))
    except InvalidSitting as exc:
        raise Invalid(f"The sitting must end after it starts ({exc}).", "ends_at") from None
    bookings = await _bookings(conn, target, new.fields, sorted(proposed_students))
    clashes = find_clashes(proposed, bookings, zone=ZoneInfo(target.timezone), names=proposed_students)
    return target, proposed_students, clashes


async def clashes_in(conn: asyncpg.Connection, new: NewSitting, *, exclude: int | None = None) -> list[Clash]:
    """In the caller's connection (the demo seed's transaction): what ``new`` would clash with."""
    return (await _clashes(conn, new, exclude))[2]


def _check_fields(fields: SittingFields) -> None:
    if fields.ends_at <= fields.starts_at:
        raise Invalid("The sitting must end after it starts.", "ends_at")
    if len(fields.note) > 500:
        raise Invalid("'note' is at most 500 characters.", "note")


async def check_sitting(db: Database, new: NewSitting, *, exclude: int | None = None) -> list[Clash]:
    """What scheduling ``new`` (or moving sitting ``exclude`` to it) would clash with; writes nothing."""
    _check_fields(new.fields)

    async def work(conn: asyncpg.Connection) -> list[Clash]:
        return (await _clashes(conn, new, exclude))[2]

    return await db.run(work)


async def _lock(conn: asyncpg.Connection, term_id: str, room_ids: Sequence[str]) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('exams:' || $1))", term_id)
    for room_id in sorted(set(room_ids)):  # one order for everyone: no deadlocks between rooms
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('room:' || $1))", room_id)


def _when_words(starts: datetime, ends: datetime, timezone: str) -> str:
    zone = ZoneInfo(timezone)
    s, e = starts.astimezone(zone), ends.astimezone(zone)
    return f"{s:%a %d %b %Y}, {s:%H:%M}–{e:%H:%M}" if s.date() == e.date() else f"{s:%a %d %b %Y %H:%M} to {e:%a %d %b %Y %H:%M}"


def _notes(target: _Target, sitting: Sitting, students: Sequence[str], *, moved: bool) -> list[NewNotification]:
    when = _when_words(sitting.starts_at, sitting.ends_at, target.timezone)
    verb = "moved" if moved else "scheduled"
    return [NewNotification(
        user_id=s, kind="exam_scheduled",
        title=f"{target.course_code}: {target.title} {verb}",
        body=f"{target.title} is on {when} in {sitting.room_name}." + (f" {sitting.note}" if sitting.note else ""),
        link="/student/exams",
        data={"sitting_id": sitting.id, "assessment_id": target.assessment_id, "course_id": target.course_id,
              "starts_at": sitting.starts_at.isoformat(), "ends_at": sitting.ends_at.isoformat(),
              "room_id": sitting.room_id},
    ) for s in sorted(students)]


async def schedule_sitting(db: Database, new: NewSitting, *, actor: str, now: datetime) -> tuple[Sitting, list[dict]]:
    """Schedule a sitting; :class:`SittingClash` (nothing written) if anything is in the way.
    Returns the sitting and its students' notifications (publish them after this returns)."""
    _check_fields(new.fields)
    if new.fields.ends_at <= now:
        raise Invalid("The sitting would be over already.", "ends_at")

    async def work(conn: asyncpg.Connection) -> tuple[Sitting, list[dict]]:
        term_id = await conn.fetchval("SELECT term_id FROM assessments WHERE id = $1", new.assessment_id)
        if term_id is None:
            raise NotFound("No such assessment.", "assessment_id")
        await _lock(conn, term_id, [new.fields.room_id])
        target, students, clashes = await _clashes(conn, new, None)
        if clashes:
            raise SittingClash(clashes)
        exists = await conn.fetchval(
            "SELECT id FROM exam_sittings WHERE assessment_id = $1 AND (section_id = $2 OR student_id = $3)",
            new.assessment_id, new.section_id, new.student_id)
        if exists is not None:
            raise Conflict(f"This {'section' if new.section_id else 'student'} already has a sitting of it"
                           f" (sitting {exists}): move that one instead.", "section_id" if new.section_id
                           else "student_id")
        sitting_id = await conn.fetchval(
            "INSERT INTO exam_sittings (assessment_id, section_id, student_id, room_id, starts_at, ends_at, note,"
            " created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            new.assessment_id, new.section_id, new.student_id, new.fields.room_id, new.fields.starts_at,
            new.fields.ends_at, new.fields.note, actor)
        sitting = _sitting(await conn.fetchrow(_SELECT + " WHERE x.id = $1", sitting_id))
        return sitting, await add_notifications(conn, _notes(target, sitting, list(students), moved=False))

    return await db.run(work, transaction=True)


async def get_sitting(db: Database, sitting_id: int) -> Sitting:
    row = await db.fetchrow(_SELECT + " WHERE x.id = $1", sitting_id)
    if row is None:
        raise NotFound("No such sitting.", "sitting_id")
    return _sitting(row)


async def move_sitting(db: Database, sitting_id: int, fields: SittingFields, *, now: datetime,
                       ) -> tuple[Sitting, list[dict]]:
    """Change a sitting's room, time or note (same clash rules; it never clashes with itself);
    its students are told when the room or time changed."""
    _check_fields(fields)
    if fields.ends_at <= now:
        raise Invalid("The sitting would be over already.", "ends_at")

    async def work(conn: asyncpg.Connection) -> tuple[Sitting, list[dict]]:
        old = await conn.fetchrow(
            "SELECT x.assessment_id, x.section_id, x.student_id, x.room_id, x.starts_at, x.ends_at, a.term_id"
            " FROM exam_sittings x JOIN assessments a ON a.id = x.assessment_id WHERE x.id = $1", sitting_id)
        if old is None:
            raise NotFound("No such sitting.", "sitting_id")
        await _lock(conn, old["term_id"], [old["room_id"], fields.room_id])
        new = NewSitting(old["assessment_id"], fields, old["section_id"], old["student_id"])
        target, students, clashes = await _clashes(conn, new, sitting_id)
        if clashes:
            raise SittingClash(clashes)
        await conn.execute(
            "UPDATE exam_sittings SET room_id = $2, starts_at = $3, ends_at = $4, note = $5, updated_at = now()"
            " WHERE id = $1", sitting_id, fields.room_id, fields.starts_at, fields.ends_at, fields.note)
        sitting = _sitting(await conn.fetchrow(_SELECT + " WHERE x.id = $1", sitting_id))
        moved = (old["room_id"], old["starts_at"], old["ends_at"]) != (fields.room_id, fields.starts_at,
                                                                         fields.ends_at)
        notes = _notes(target, sitting, list(students), moved=True) if moved else []
        return sitting, await add_notifications(conn, notes)

    return await db.run(work, transaction=True)


async def delete_sitting(db: Database, sitting_id: int) -> Sitting:
    async def work(conn: asyncpg.Connection) -> Sitting:
        row = await conn.fetchrow(_SELECT + " WHERE x.id = $1", sitting_id)
        if row is None:
            raise NotFound("No such sitting.", "sitting_id")
        await conn.execute("DELETE FROM exam_sittings WHERE id = $1", sitting_id)
        return _sitting(row)

    return await db.run(work, transaction=True)


async def list_sittings(db: Database, *, assessment_id: int | None = None, course_id: str | None = None,
                        term_id: str | None = None) -> list[Sitting]:
    rows = await db.fetch(
        _SELECT + " WHERE ($1::bigint IS NULL OR x.assessment_id = $1) AND ($2::text IS NULL OR a.course_id = $2)"
        " AND ($3::text IS NULL OR a.term_id = $3) ORDER BY x.starts_at, x.id", assessment_id, course_id, term_id)
    return [_sitting(r) for r in rows]


async def sitting_students(db: Database, sitting_id: int) -> list[str]:
    """The ids of the students who sit it."""
    rows = await db.fetch(f"SELECT q.student_id FROM exam_sittings x, LATERAL ({_SITTERS}) q WHERE x.id = $1"
                          " ORDER BY q.student_id", sitting_id)
    return [r["student_id"] for r in rows]


async def student_sittings(db: Database, student_id: str) -> list[Sitting]:
    """The sittings a student sits (their section's, unless they have their own), in time order."""
    rows = await db.fetch(
        _SELECT + f" WHERE EXISTS (SELECT 1 FROM ({_SITTERS}) q WHERE q.student_id = $1)"
        " ORDER BY x.starts_at, x.id", student_id)
    return [_sitting(r) for r in rows]
