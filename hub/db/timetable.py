"""Timetable → class sessions: regeneration of a term, and every write that changes
which sessions a term should have (term dates and timezone, holidays, weekly
slots), each applied together with the regeneration in one transaction.

The pure plan comes from :mod:`hub.domain.timetable`; this module loads its
inputs and applies it. Concurrency contract: each public function is one
``db.run`` transaction holding the affected terms' advisory locks (taken in
term-id order), so two admins changing or regenerating the same term
serialise and neither creates duplicates (the unique index on
``(slot_id, coalesce(rescheduled_from, starts_at))`` backs that up). Callable
from any trio task; cancelling rolls back. After it returns, the caller tells
the scheduler about ``changed_session_ids`` (``WebContext.sessions_changed``).
Sessions a regeneration creates or restores are excused, in the same
transaction, for the students on approved leave that day
(:func:`hub.db.leave.excuse_on_leave`). A regeneration that deletes, creates or
restores sessions takes the attendance lock (after the term locks, before
deleting) and holds it until the commit, like a leave decision.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterable

import asyncpg

from hub.domain.timetable import (
    REMOVED_REASON,
    ExistingSession,
    Holiday,
    RegenerationPlan,
    Term,
    WeeklySlot,
    occurrences,
    plan_regeneration,
    zone,
)

from ._pool import Database
from .academic import (
    RULE_DEFAULTS,
    SLOT_COLUMNS,
    TERM_SELECT,
    Conflict,
    HolidayRow,
    NotFound,
    Slot,
    SlotFields,
    TermRow,
    as_record,
    check_range,
    check_slot,
    get_slot,
)
from .attendance import lock_attendance
from .leave import excuse_on_leave

#: Why a session a regeneration had cancelled is scheduled again.
RESTORED_REASON = "Back in the timetable"


@dataclass(frozen=True)
class RegenerationResult:
    term_id: str
    created: list[str]
    updated: list[str]
    deleted: list[str]
    cancelled: list[str]
    kept: int
    skipped_holidays: int
    dry_run: bool
    restored: list[str] = field(default_factory=list)

    @property
    def changed_session_ids(self) -> list[str]:
        return [*self.created, *self.updated, *self.deleted, *self.cancelled, *self.restored]


@dataclass(frozen=True)
class TimetableChange:
    """A changed row (term, holiday or slot) and the regeneration of each term it affected."""

    row: TermRow | HolidayRow | Slot
    results: list[RegenerationResult]

    @property
    def changed_session_ids(self) -> list[str]:
        return [sid for r in self.results for sid in r.changed_session_ids]


def generated_session_id(slot_id: str, starts_at: datetime) -> str:
    return f"ses-{slot_id}-{starts_at.astimezone(timezone.utc):%Y%m%dT%H%MZ}"


# --- regeneration ----------------------------------------------------------------

async def regenerate_term(db: Database, term_id: str, *, now: datetime, actor: str,
                          dry_run: bool = False) -> RegenerationResult:
    """Make the term's future generated sessions match its timetable (see ``plan_regeneration``)."""
    return await db.run(lambda conn: _regenerate(conn, term_id, now, actor, dry_run), transaction=True)


async def regenerate_in(conn: asyncpg.Connection, term_id: str, *, now: datetime, actor: str) -> RegenerationResult:
    """:func:`regenerate_term` inside the caller's transaction (the demo seed passes the start of
    today as ``now`` so that today's earlier occurrences exist too)."""
    return await _regenerate(conn, term_id, now, actor, False)


async def _lock(conn: asyncpg.Connection, term_ids: Iterable[str]) -> None:
    for term_id in sorted(set(term_ids)):  # one order for everyone: no deadlocks between terms
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('timetable:' || $1))", term_id)


async def _regenerate_all(conn: asyncpg.Connection, term_ids: Iterable[str], now: datetime, actor: str,
                          reason: str = REMOVED_REASON) -> list[RegenerationResult]:
    ordered = sorted(set(term_ids))
    await _lock(conn, ordered)
    return [await _regenerate(conn, term_id, now, actor, False, reason) for term_id in ordered]


async def _regenerate(conn: asyncpg.Connection, term_id: str, now: datetime, actor: str,
                      dry_run: bool, reason: str = REMOVED_REASON) -> RegenerationResult:
    row = await conn.fetchrow("SELECT id, starts_on, ends_on, timezone FROM terms WHERE id = $1", term_id)
    if row is None:
        raise NotFound("No such term.", "term_id")
    await _lock(conn, [term_id])
    term = Term(row["id"], row["starts_on"], row["ends_on"], row["timezone"])
    slots = [WeeklySlot(r["id"], r["section_id"], r["course_id"], r["room_id"], r["weekday"], r["starts_time"],
                        r["ends_time"], r["valid_from"], r["valid_until"])
             for r in await conn.fetch(
                 "SELECT t.id, t.section_id, s.course_id, t.room_id, t.weekday, t.starts_time, t.ends_time,"
                 " t.valid_from, t.valid_until FROM timetable_slots t JOIN sections s ON s.id = t.section_id"
                 " WHERE s.term_id = $1", term_id)]
    holidays = [Holiday(r["starts_on"], r["ends_on"], r["name"]) for r in await conn.fetch(
        "SELECT starts_on, ends_on, name FROM holidays WHERE starts_on <= $2 AND ends_on >= $1",
        term.starts_on, term.ends_on)]
    existing = [ExistingSession(
        r["id"], r["slot_id"], r["occurrence_at"], r["starts_at"], r["ends_at"], r["room_id"], r["status"],
        r["rescheduled"], r["has_history"], r["restorable"]) for r in await conn.fetch(
        "SELECT cs.id, cs.slot_id, coalesce(cs.rescheduled_from, cs.starts_at) AS occurrence_at, cs.starts_at,"
        " cs.ends_at, cs.room_id, cs.status, cs.rescheduled_from IS NOT NULL AS rescheduled,"
        " (EXISTS (SELECT 1 FROM attendance a WHERE a.session_id = cs.id)"
        "  OR EXISTS (SELECT 1 FROM events e WHERE e.session_id = cs.id)"
        "  OR EXISTS (SELECT 1 FROM token_uses u WHERE u.session_id = cs.id)"
        "  OR EXISTS (SELECT 1 FROM session_events se WHERE se.session_id = cs.id)) AS has_history,"
        # Restorable: the last thing that happened to it is a regeneration's cancel (nobody acted since).
        " (cs.status = 'cancelled' AND coalesce((SELECT se.details->>'timetable' = 'true' FROM session_events se"
        "   WHERE se.session_id = cs.id ORDER BY se.at DESC, se.id DESC LIMIT 1), false)) AS restorable"
        " FROM class_sessions cs JOIN sections s ON s.id = cs.section_id"
        " WHERE cs.origin = 'timetable' AND s.term_id = $1", term_id)]
    today = now.astimezone(zone(term.timezone)).date()
    wanted, skipped = occurrences(term, slots, holidays, from_day=today)
    plan = plan_regeneration(wanted, existing, now=now, skipped_holidays=skipped)
    if dry_run:
        return RegenerationResult(
            term_id, [generated_session_id(o.slot_id, o.starts_at) for o in plan.create],
            [u.session_id for u in plan.update], list(plan.delete), list(plan.cancel),
            plan.kept, plan.skipped_holidays, True, [u.session_id for u in plan.restore])
    return await _apply(conn, term_id, plan, now, actor, reason)


async def _apply(conn: asyncpg.Connection, term_id: str, plan: RegenerationPlan, now: datetime,
                 actor: str, reason: str) -> RegenerationResult:
    created: list[str] = []
    if plan.create:
        course_ids = sorted({o.course_id for o in plan.create})
        rules = {r["course_id"]: r for r in await conn.fetch(
            "SELECT course_id, grace_minutes, opens_minutes_before, late_cutoff_minutes FROM course_rules"
            " WHERE course_id = ANY($1::text[])", course_ids)}

        def rule(course_id: str, name: str) -> int:
            found = rules.get(course_id)
            return found[name] if found is not None else RULE_DEFAULTS[name]

        rows = [(generated_session_id(o.slot_id, o.starts_at), o.course_id, o.section_id, o.slot_id, o.room_id,
                 o.starts_at, o.ends_at, rule(o.course_id, "grace_minutes"),
                 rule(o.course_id, "opens_minutes_before"), rule(o.course_id, "late_cutoff_minutes"))
                for o in plan.create]
        inserted = await conn.fetch(
            "INSERT INTO class_sessions (id, course_id, section_id, slot_id, room_id, starts_at, ends_at,"
            " grace_minutes, opens_minutes_before, late_cutoff_minutes, origin, status, created_by)"
            " SELECT *, 'timetable', 'scheduled', $11 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],"
            " $5::text[], $6::timestamptz[], $7::timestamptz[], $8::int[], $9::int[], $10::int[])"
            " ON CONFLICT DO NOTHING RETURNING id",
            *([r[i] for r in rows] for i in range(10)), actor)
        created = [r["id"] for r in inserted]
    if plan.update:
        await conn.execute(
            "UPDATE class_sessions cs SET room_id = u.room_id, ends_at = u.ends_at"
            " FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(id, room_id, ends_at) WHERE cs.id = u.id",
            [u.session_id for u in plan.update], [u.room_id for u in plan.update], [u.ends_at for u in plan.update])
    if plan.restore:
        await conn.execute(
            "UPDATE class_sessions cs SET status = 'scheduled', cancel_reason = NULL, room_id = u.room_id,"
            " ends_at = u.ends_at FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(id, room_id, ends_at)"
            " WHERE cs.id = u.id",
            [u.session_id for u in plan.restore], [u.room_id for u in plan.restore],
            [u.ends_at for u in plan.restore])
        await _events(conn, [u.session_id for u in plan.restore], now, actor, "restore", RESTORED_REASON)
    deleted, cancelled = list(plan.delete), list(plan.cancel)
    if deleted:
        # The attendance lock before deleting, not after (excuse_on_leave below takes it anyway): a
        # leave decision holding it may be writing a record of one of these sessions, and would
        # wait on our delete while we waited on it. Taken first, its records are there (the
        # session is cancelled instead) or it sees the session gone.
        await lock_attendance(conn)
        try:
            async with conn.transaction():  # a savepoint: another table may still refer to them
                await conn.execute("DELETE FROM class_sessions WHERE id = ANY($1::text[])", deleted)
        except asyncpg.ForeignKeyViolationError:
            cancelled, deleted = cancelled + deleted, []
    if cancelled:
        await conn.execute(
            "UPDATE class_sessions SET status = 'cancelled', cancel_reason = $2 WHERE id = ANY($1::text[])",
            cancelled, reason)
        await _events(conn, cancelled, now, actor, "cancel", reason)
    # Sessions that exist (again) now were not there when a leave covering them was approved.
    await excuse_on_leave(conn, [*created, *(u.session_id for u in plan.restore)], actor=actor)
    return RegenerationResult(term_id, created, [u.session_id for u in plan.update], deleted, cancelled,
                              plan.kept, plan.skipped_holidays, False, [u.session_id for u in plan.restore])


async def _events(conn: asyncpg.Connection, session_ids: list[str], now: datetime, actor: str, action: str,
                  reason: str) -> None:
    # ``timetable: true`` marks the regeneration's own doing (what makes a cancel restorable).
    await conn.execute(
        "INSERT INTO session_events (session_id, at, actor, action, details)"
        " SELECT id, $2, $3, $4, $5::jsonb FROM unnest($1::text[]) AS id",
        session_ids, now, actor, action, json.dumps({"reason": reason, "timetable": True}))


# --- terms -------------------------------------------------------------------------

async def update_term(db: Database, term_id: str, changes: dict[str, Any], *, now: datetime,
                      actor: str) -> TimetableChange:
    """Change a term's ``name``, ``starts_on``, ``ends_on`` and/or ``timezone`` (the keys present);
    new dates or a new timezone regenerate its sessions in the same transaction."""

    async def work(conn: asyncpg.Connection) -> TimetableChange:
        await _lock(conn, [term_id])
        row = await conn.fetchrow(TERM_SELECT + " WHERE id = $1 FOR UPDATE", term_id)
        if row is None:
            raise NotFound("No such term.", "term_id")
        merged = {**dict(row), **changes}
        check_range(merged["starts_on"], merged["ends_on"])
        updated = await conn.fetchrow(
            "UPDATE terms SET name = $2, starts_on = $3, ends_on = $4, timezone = $5 WHERE id = $1"
            " RETURNING id, name, starts_on, ends_on, timezone",
            term_id, merged["name"], merged["starts_on"], merged["ends_on"], merged["timezone"])
        moved = any(updated[k] != row[k] for k in ("starts_on", "ends_on", "timezone"))
        results = await _regenerate_all(conn, [term_id], now, actor) if moved else []
        return TimetableChange(as_record(TermRow, updated), results)

    return await db.run(work, transaction=True)


# --- holidays ----------------------------------------------------------------------

_HOLIDAY_COLUMNS = "id, name, starts_on, ends_on"


async def _terms_touching(conn: asyncpg.Connection, *ranges: tuple[date, date]) -> list[str]:
    """Ids of the terms overlapping any of ``ranges`` (whose sessions a holiday change affects)."""
    rows = await conn.fetch(
        "SELECT DISTINCT t.id FROM terms t, unnest($1::date[], $2::date[]) AS r(s, e)"
        " WHERE t.starts_on <= r.e AND t.ends_on >= r.s ORDER BY t.id",
        [r[0] for r in ranges], [r[1] for r in ranges])
    return [r["id"] for r in rows]


def _holiday_reason(name: str) -> str:
    return f"Holiday: {name}"


async def add_holiday(db: Database, name: str, starts_on: date, ends_on: date, *, now: datetime,
                      actor: str) -> TimetableChange:
    """Add a holiday and regenerate every term it touches: its future generated sessions on those
    days are deleted, or cancelled (reason ``Holiday: <name>``) when they have history."""
    check_range(starts_on, ends_on)

    async def work(conn: asyncpg.Connection) -> TimetableChange:
        terms = await _terms_touching(conn, (starts_on, ends_on))
        await _lock(conn, terms)
        row = await conn.fetchrow(
            f"INSERT INTO holidays (name, starts_on, ends_on) VALUES ($1, $2, $3) RETURNING {_HOLIDAY_COLUMNS}",
            name, starts_on, ends_on)
        return TimetableChange(as_record(HolidayRow, row), await _regenerate_all(conn, terms, now, actor, _holiday_reason(name)))

    return await db.run(work, transaction=True)


async def update_holiday(db: Database, holiday_id: int, changes: dict[str, Any], *, now: datetime,
                         actor: str) -> TimetableChange:
    """Change a holiday's ``name`` and/or dates; the terms touching its old or new days are regenerated."""

    async def work(conn: asyncpg.Connection) -> TimetableChange:
        old = await conn.fetchrow(f"SELECT {_HOLIDAY_COLUMNS} FROM holidays WHERE id = $1", holiday_id)
        if old is None:
            raise NotFound("No such holiday.", "holiday_id")
        merged = {**dict(old), **changes}
        check_range(merged["starts_on"], merged["ends_on"])
        spans = [(old["starts_on"], old["ends_on"]), (merged["starts_on"], merged["ends_on"])]
        terms = await _terms_touching(conn, *spans)
        await _lock(conn, terms)
        row = await conn.fetchrow(
            f"UPDATE holidays SET name = $2, starts_on = $3, ends_on = $4 WHERE id = $1 RETURNING {_HOLIDAY_COLUMNS}",
            holiday_id, merged["name"], merged["starts_on"], merged["ends_on"])
        moved = spans[0] != spans[1]
        results = await _regenerate_all(conn, terms, now, actor, _holiday_reason(merged["name"])) if moved else []
        return TimetableChange(as_record(HolidayRow, row), results)

    return await db.run(work, transaction=True)


async def delete_holiday(db: Database, holiday_id: int, *, now: datetime, actor: str) -> TimetableChange:
    """Delete a holiday; the terms it touched get their sessions on those days back (created, or
    restored if a regeneration had cancelled them)."""

    async def work(conn: asyncpg.Connection) -> TimetableChange:
        row = await conn.fetchrow(f"DELETE FROM holidays WHERE id = $1 RETURNING {_HOLIDAY_COLUMNS}", holiday_id)
        if row is None:
            raise NotFound("No such holiday.", "holiday_id")
        terms = await _terms_touching(conn, (row["starts_on"], row["ends_on"]))
        return TimetableChange(as_record(HolidayRow, row), await _regenerate_all(conn, terms, now, actor))

    return await db.run(work, transaction=True)


# --- weekly slots ----------------------------------------------------------------

async def _slot_term(conn: asyncpg.Connection, slot_id: str) -> str:
    term_id = await conn.fetchval(
        "SELECT s.term_id FROM timetable_slots t JOIN sections s ON s.id = t.section_id WHERE t.id = $1", slot_id)
    if term_id is None:
        raise NotFound("No such timetable slot.", "slot_id")
    return term_id


async def create_slot(db: Database, slot_id: str, section_id: str, slot: SlotFields, *, now: datetime,
                      actor: str) -> TimetableChange:
    """Add a weekly slot (409 if it overlaps another of the room or the section) and create its
    sessions from now to the term's end, in one transaction."""
    slot.check()

    async def work(conn: asyncpg.Connection) -> TimetableChange:
        term_id = await conn.fetchval("SELECT term_id FROM sections WHERE id = $1", section_id)
        if term_id is None:
            raise NotFound("No such section.", "section_id")
        await _lock(conn, [term_id])
        await check_slot(conn, term_id, section_id, slot)
        try:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO timetable_slots (id, section_id, room_id, weekday, starts_time, ends_time,"
                    " valid_from, valid_until, kind) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    slot_id, section_id, slot.room_id, slot.weekday, slot.starts_time, slot.ends_time,
                    slot.valid_from, slot.valid_until, slot.kind)
        except asyncpg.UniqueViolationError:
            raise Conflict(f"A slot with id {slot_id!r} exists.", "id") from None
        results = await _regenerate_all(conn, [term_id], now, actor)
        return TimetableChange(await get_slot(conn, slot_id), results)

    return await db.run(work, transaction=True)


async def update_slot(db: Database, slot_id: str, changes: dict[str, Any], *, now: datetime,
                      actor: str) -> TimetableChange:
    """Change a slot's room, day, times, validity or kind (the keys of ``changes``; ``None`` clears
    a validity limit) and regenerate its term: untouched future sessions follow a new room or end
    time; a new day or start time replaces them (those with history are cancelled)."""

    async def work(conn: asyncpg.Connection) -> TimetableChange:
        term_id = await _slot_term(conn, slot_id)
        await _lock(conn, [term_id])
        row = await conn.fetchrow(
            f"SELECT section_id, {', '.join(SLOT_COLUMNS)} FROM timetable_slots WHERE id = $1 FOR UPDATE", slot_id)
        merged = SlotFields(**{c: changes.get(c, row[c]) for c in SLOT_COLUMNS})
        await check_slot(conn, term_id, row["section_id"], merged, exclude=slot_id)
        await conn.execute(
            f"UPDATE timetable_slots SET ({', '.join(SLOT_COLUMNS)}) = ($2, $3, $4, $5, $6, $7, $8) WHERE id = $1",
            slot_id, *(getattr(merged, c) for c in SLOT_COLUMNS))
        results = await _regenerate_all(conn, [term_id], now, actor)
        return TimetableChange(await get_slot(conn, slot_id), results)

    return await db.run(work, transaction=True)


async def delete_slot(db: Database, slot_id: str, *, now: datetime, actor: str) -> RegenerationResult:
    """Delete a weekly slot and, in the same transaction, regenerate its term (its future sessions go)."""

    async def work(conn: asyncpg.Connection) -> RegenerationResult:
        term_id = await _slot_term(conn, slot_id)
        await _lock(conn, [term_id])
        await conn.execute("DELETE FROM timetable_slots WHERE id = $1", slot_id)
        return await _regenerate(conn, term_id, now, actor, False)

    return await db.run(work, transaction=True)
