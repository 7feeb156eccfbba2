"""Terminal rosters in PostgreSQL: the registry of who each terminal was told about, and its sync.

The registry (``terminal_roster``, migration 0020) holds one row per (terminal,
student) the hub has queued: the student's campus-wide PIN (``students.terminal_pin``)
and their fingerprint page on that terminal. :func:`reconcile` brings it to
what enrolments, rooms and account status ask for (the pure plan:
:mod:`hub.domain.terminal_roster`), and :func:`queue_plan` turns the plan into
``roster_sync`` commands through the one command path,
``hub.db.device_commands.create_command`` (which seals the arguments to the
device where that applies). Many changes at once (a CSV import of 500
students) are one plan, so a few commands per terminal, not one per student.

Fingerprint pages rest on biometric consent (migration 0026,
hub/domain/biometric_consent.py): the plan removes the page of anyone
without an active consent, :func:`assign_page` refuses them, and a
withdrawal (hub/db/biometric_consent.py) moves each page to ``removed_page``
under the same advisory lock. A row records the ids of the commands that
carry its page's latest change (``page_commands``), whose acks say whether
the terminal confirmed.

Concurrency contract: coroutine functions for any trio task holding a
:class:`Database`. :func:`reconcile` is one transaction that takes a
transaction-scoped advisory lock first, so concurrent reconciles plan one
after the other and never queue the same change twice; the commands are
created after its commit. Two reconciles racing past their commits may queue
their commands in either order; the registry stays right and a resync
(:func:`resync_device`) puts the terminal back in line with it.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Sequence

import asyncpg

from hub.domain.biometric_consent import enrolment_problem, may_hold_page
from hub.domain.terminal_roster import (
    ROSTER_KINDS,
    RosterEntry,
    RosterPlan,
    TerminalChange,
    change_commands,
    full_roster,
    plan_roster,
)

from ._pool import Database
from .device_commands import CommandRow, create_command
from .provisioning import RegistryError
from .security_audit import record

log = logging.getLogger(__name__)

#: Serialises every plan of the registry (transaction-scoped advisory lock).
_ROSTER_LOCK = 0x4341_4D50_5553_0020
#: A roster command waits this long for its terminal (an agent offline over a weekend still gets it).
ROSTER_TTL_S = 86400
ROSTER_ACK_TIMEOUT_S = ROSTER_TTL_S + 60
#: Sessions that ended up to this long ago still place a student's PIN (punches buffered at the edge).
_SESSION_LOOKBACK = "1 day"

_DESIRED_SQL = (
    "SELECT DISTINCT d.id AS device_id, s.id AS student_id, s.terminal_pin"
    " FROM students s JOIN users u ON u.id = s.id AND u.deactivated_at IS NULL"
    " JOIN enrolments e ON e.student_id = s.id"
    " JOIN class_sessions cs ON cs.course_id = e.course_id AND cs.status <> 'cancelled'"
    f"  AND cs.ends_at >= $1::timestamptz - interval '{_SESSION_LOOKBACK}'"
    " JOIN devices d ON d.room_id = cs.room_id AND d.revoked_at IS NULL AND d.kind = ANY($2::text[])"
    " WHERE ($3::text[] IS NULL OR s.id = ANY($3::text[])) AND ($4::text IS NULL OR d.id = $4)"
)
_CURRENT_SQL = (
    "SELECT r.device_id, r.student_id, r.pin, r.page, r.page_source FROM terminal_roster r"
    " JOIN devices d ON d.id = r.device_id AND d.revoked_at IS NULL"
    " WHERE ($1::text[] IS NULL OR r.student_id = ANY($1::text[])) AND ($2::text IS NULL OR r.device_id = $2)"
    " AND (r.pin IS NOT NULL OR r.page IS NOT NULL)"
)
#: Students in scope, whether active and whether they have an active biometric consent (pages need both).
_HOLDERS_SQL = (
    "SELECT s.id, u.deactivated_at IS NULL AS active,"
    " EXISTS (SELECT 1 FROM biometric_consents c WHERE c.student_id = s.id AND c.withdrawn_at IS NULL) AS consented"
    " FROM students s JOIN users u ON u.id = s.id"
    " WHERE ($1::text[] IS NULL OR s.id = ANY($1::text[]))"
)


@dataclass(frozen=True)
class PlannedCommand:
    """A command decided inside a registry transaction, its id already recorded (``page_commands``).

    Created after the commit by :func:`queue_planned`; a command that could
    not be created (the terminal revoked meanwhile) leaves its id unmatched,
    which the state reads as failed.
    """

    device_id: str
    name: str
    args: dict[str, Any]
    command_id: uuid.UUID


def plan_commands(change: TerminalChange, *, template: dict[str, Any] | None = None) -> list[PlannedCommand]:
    """The commands of one terminal's page change, with fresh ids (``template``: a ``template_sync`` first)."""
    planned = [] if template is None else [PlannedCommand(change.device_id, "template_sync", template, uuid.uuid4())]
    planned += [PlannedCommand(change.device_id, name, args, uuid.uuid4()) for name, args in change_commands(change)]
    return planned


async def queue_planned(db: Database, planned: Sequence[PlannedCommand], *, issued_by: str, now: datetime,
                        device_offline_after_s: float) -> tuple[CommandRow, ...]:
    """Create the planned commands, in order, under their recorded ids; a refused one is logged and skipped."""
    created: list[CommandRow] = []
    for command in planned:
        try:
            created.append(await create_command(
                db, device_id=command.device_id, name=command.name, args=dict(command.args), ttl_s=ROSTER_TTL_S,
                ack_timeout_s=ROSTER_ACK_TIMEOUT_S, issued_by=issued_by, now=now,
                device_offline_after_s=device_offline_after_s, command_id=command.command_id))
        except RegistryError as refused:
            log.warning("%s for %s not queued: %s", command.name, command.device_id, refused)
    return tuple(created)


@dataclass(frozen=True)
class RosterSyncResult:
    """What a reconcile or resync queued: the plan and the commands created for it."""

    plan: RosterPlan
    commands: tuple[CommandRow, ...]


def _entry(r: asyncpg.Record) -> RosterEntry:
    return RosterEntry(r["device_id"], r["student_id"], r["pin"], r["page"], r["page_source"])


async def lock_registry(conn: asyncpg.Connection) -> None:
    """Inside a transaction: wait for the registry's advisory lock (every plan, enrolment and withdrawal takes it)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _ROSTER_LOCK)


async def _plan_in(conn: asyncpg.Connection, now: datetime, student_ids: list[str] | None,
                   device_id: str | None) -> RosterPlan:
    await lock_registry(conn)
    desired = {(r["device_id"], r["student_id"]): r["terminal_pin"]
               for r in await conn.fetch(_DESIRED_SQL, now, list(ROSTER_KINDS), student_ids, device_id)}
    current = [_entry(r) for r in await conn.fetch(_CURRENT_SQL, student_ids, device_id)]
    holders = [r["id"] for r in await conn.fetch(_HOLDERS_SQL, student_ids)
               if may_hold_page(active=r["active"], consented=r["consented"])]
    plan = plan_roster(desired, current, holders)
    if plan.upserts:
        await conn.executemany(
            "INSERT INTO terminal_roster (device_id, student_id, pin, page, page_source, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, student_id) DO UPDATE"
            " SET pin = EXCLUDED.pin, page = EXCLUDED.page, page_source = EXCLUDED.page_source,"
            " updated_at = EXCLUDED.updated_at",
            [(e.device_id, e.student_id, e.pin, e.page, e.page_source, now) for e in plan.upserts])
    if plan.deletes:
        gone = ([d for d, _ in plan.deletes], [s for _, s in plan.deletes])
        # A row that records a page removal (migration 0026) stays as that record, holding nothing else.
        await conn.execute(
            "UPDATE terminal_roster r SET pin = NULL, page = NULL, page_source = NULL, updated_at = $3"
            " FROM unnest($1::text[], $2::text[]) AS gone (device_id, student_id)"
            " WHERE r.device_id = gone.device_id AND r.student_id = gone.student_id AND r.removed_page IS NOT NULL",
            *gone, now)
        await conn.execute(
            "DELETE FROM terminal_roster r USING unnest($1::text[], $2::text[]) AS gone (device_id, student_id)"
            " WHERE r.device_id = gone.device_id AND r.student_id = gone.student_id AND r.removed_page IS NULL",
            *gone)
    return plan


async def reconcile(db: Database, *, now: datetime, student_ids: Sequence[str] | None = None,
                    roll_numbers: Sequence[str] = ()) -> RosterPlan:
    """Plan and record the terminal changes for these students (by id or roll number; ``None``: everyone).

    Returns the plan; queue it with :func:`queue_plan` (after this commit).
    """

    async def work(conn: asyncpg.Connection) -> RosterPlan:
        ids: list[str] | None = None
        if student_ids is not None or roll_numbers:
            ids = list(student_ids or ())
            if roll_numbers:
                ids += [r["id"] for r in await conn.fetch(
                    "SELECT id FROM students WHERE roll_number = ANY($1::text[])", list(roll_numbers))]
            if not ids:
                return RosterPlan(())
        return await _plan_in(conn, now, ids, None)

    return await db.run(work, transaction=True)


async def queue_changes(db: Database, changes: Sequence[TerminalChange], *, replace: bool = False,
                        issued_by: str, now: datetime, device_offline_after_s: float) -> tuple[CommandRow, ...]:
    """Create the commands of ``changes`` (a few ``roster_sync`` per terminal, and a ``template_sync``
    delete per removed page: ``hub.domain.terminal_roster.change_commands``), in order.

    A terminal revoked or removed meanwhile is skipped (logged): it will never
    read a command again. The caller hands each command to the dispatcher.
    """
    created: list[CommandRow] = []
    for change in changes:
        for name, args in change_commands(change, replace=replace):
            try:
                created.append(await create_command(
                    db, device_id=change.device_id, name=name, args=dict(args), ttl_s=ROSTER_TTL_S,
                    ack_timeout_s=ROSTER_ACK_TIMEOUT_S, issued_by=issued_by, now=now,
                    device_offline_after_s=device_offline_after_s))
            except RegistryError as refused:
                log.warning("roster change for %s not queued: %s", change.device_id, refused)
                break
    return tuple(created)


async def queue_plan(db: Database, plan: RosterPlan, *, issued_by: str, now: datetime,
                     device_offline_after_s: float) -> RosterSyncResult:
    """The incremental ``roster_sync`` commands of ``plan`` (see :func:`queue_changes`)."""
    commands = await queue_changes(db, plan.changes, issued_by=issued_by, now=now,
                                   device_offline_after_s=device_offline_after_s)
    return RosterSyncResult(plan, commands)


async def check_terminal(conn: asyncpg.Connection, device_id: str) -> None:
    """Refuse (:class:`RegistryError`) an unknown or revoked device, or one that holds no roster."""
    device = await conn.fetchrow("SELECT kind, revoked_at FROM devices WHERE id = $1", device_id)
    if device is None:
        raise RegistryError("not_found", f"No device {device_id!r}.")
    if device["revoked_at"] is not None:
        raise RegistryError("conflict", f"Device {device_id!r} is revoked.")
    if device["kind"] not in ROSTER_KINDS:
        raise RegistryError("invalid_request",
                            f"A {device['kind']} device holds no roster (only {', '.join(ROSTER_KINDS)}).",
                            "device_id")


async def resync_device(db: Database, device_id: str, *, issued_by: str, now: datetime,
                        device_offline_after_s: float) -> RosterSyncResult:
    """Recovery: reconcile one terminal, then send it its whole roster with ``replace=true``.

    Raises :class:`RegistryError` ``not_found`` for an unknown device,
    ``conflict`` for a revoked one and ``invalid_request`` for a device kind
    that holds no roster.
    """

    async def work(conn: asyncpg.Connection) -> tuple[RosterPlan, list[RosterEntry]]:
        await check_terminal(conn, device_id)
        plan = await _plan_in(conn, now, None, device_id)
        rows = await conn.fetch(_CURRENT_SQL, None, device_id)
        return plan, [_entry(r) for r in rows]

    plan, entries = await db.run(work, transaction=True)
    commands = await queue_changes(db, [full_roster(device_id, entries)], replace=True, issued_by=issued_by,
                                   now=now, device_offline_after_s=device_offline_after_s)
    return RosterSyncResult(plan, commands)


async def terminal_entries(db: Database, device_id: str) -> list[RosterEntry]:
    """Every registry row of one terminal, by PIN then page."""
    rows = await db.fetch(
        "SELECT device_id, student_id, pin, page, page_source FROM terminal_roster WHERE device_id = $1"
        " AND (pin IS NOT NULL OR page IS NOT NULL) ORDER BY pin NULLS LAST, page", device_id)
    return [_entry(r) for r in rows]


async def student_pin(db: Database, student_id: str) -> str | None:
    """A student's campus-wide terminal PIN."""
    pin: str | None = await db.fetchval("SELECT terminal_pin FROM students WHERE id = $1", student_id)
    return pin


@dataclass(frozen=True)
class PageChange:
    """What :func:`assign_page` recorded: the terminal's change, and its commands (ids recorded) to queue."""

    change: TerminalChange
    commands: tuple[PlannedCommand, ...]


async def assign_page(db: Database, device_id: str, page: int, student_id: str | None, *, actor: str,
                      source: str, now: datetime, template: dict[str, Any] | None = None) -> PageChange:
    """Record that ``page`` on ``device_id`` holds ``student_id``'s finger (``None``: the page was cleared).

    ``source``: ``ops`` (assigned on the web) or ``terminal`` (reported by it).
    A student needs an active biometric consent
    (``hub.domain.biometric_consent.enrolment_problem``); the row records it
    (``consent_ref``) and the ids of the commands that carry the change
    (``page_commands``), so their acks say whether the terminal confirmed.
    ``template``: the ``template_sync`` arguments that load the finger (sent
    first, sealed to the device by ``create_command``; never stored in clear).
    A page given to someone else leaves its previous holder; a student's
    previous page on this terminal is freed (and its template deleted).
    Raises :class:`RegistryError` ``not_found`` (device, student, or a page
    to clear that no one holds), ``conflict`` (device revoked, student
    deactivated or without consent) or ``invalid_request`` (a device that
    holds no roster). Audited (``terminal_roster``/``page_assigned`` or
    ``page_cleared``, with the consent id). Queue the commands with
    :func:`queue_planned` after this returns.
    """

    async def work(conn: asyncpg.Connection) -> PageChange:
        await lock_registry(conn)
        await check_terminal(conn, device_id)
        holder = await conn.fetchrow(
            "SELECT student_id, pin FROM terminal_roster WHERE device_id = $1 AND page = $2 FOR UPDATE",
            device_id, page)
        removed: list[int] = []
        consent_id: int | None = None
        if student_id is None:
            if holder is None:
                raise RegistryError("not_found", f"No one holds page {page} on {device_id!r}.")
        else:
            who = await conn.fetchrow(
                "SELECT u.deactivated_at IS NULL AS active, (SELECT c.id FROM biometric_consents c"
                "  WHERE c.student_id = s.id AND c.withdrawn_at IS NULL) AS consent_id"
                " FROM students s JOIN users u ON u.id = s.id WHERE s.id = $1", student_id)
            consent_id = None if who is None else who["consent_id"]
            problem = enrolment_problem(active=None if who is None else who["active"],
                                        consented=consent_id is not None)
            if problem is not None:
                raise RegistryError("not_found" if who is None else "conflict", f"{problem[0].upper()}{problem[1:]}.",
                                    "student_id")
        if holder is not None and holder["student_id"] != student_id:
            await _clear_page(conn, device_id, holder["student_id"], now)
        if student_id is not None:
            previous = await conn.fetchval(
                "SELECT page FROM terminal_roster WHERE device_id = $1 AND student_id = $2 FOR UPDATE",
                device_id, student_id)
            if previous is not None and previous != page:
                removed.append(previous)
            change = TerminalChange(device_id, pages=((page, student_id),), remove_pages=tuple(removed))
            planned = plan_commands(change, template=template)
            await conn.execute(
                "INSERT INTO terminal_roster (device_id, student_id, page, page_source, consent_ref, page_commands,"
                " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (device_id, student_id) DO UPDATE"
                " SET page = EXCLUDED.page, page_source = EXCLUDED.page_source, consent_ref = EXCLUDED.consent_ref,"
                " page_commands = EXCLUDED.page_commands, removed_page = NULL, removed_at = NULL,"
                " updated_at = EXCLUDED.updated_at",
                device_id, student_id, page, source, consent_id, [c.command_id for c in planned], now)
        else:
            change = TerminalChange(device_id, remove_pages=(page,))
            planned = plan_commands(change)
        # entity_id names the student (``<device>/<student>``), so an erasure finds the entry (hub/db/audit.py).
        subject = student_id if student_id is not None else holder["student_id"]
        await record(conn, actor=actor, action="page_assigned" if student_id else "page_cleared",
                     entity="terminal_roster", entity_id=f"{device_id}/{subject}",
                     before=None if holder is None else {"student_id": holder["student_id"], "page": page},
                     after=None if student_id is None else {"student_id": student_id, "page": page, "source": source,
                                                            "consent_id": consent_id,
                                                            "template": template is not None})
        return PageChange(change, tuple(planned))

    return await db.run(work, transaction=True)


async def _clear_page(conn: asyncpg.Connection, device_id: str, student_id: str, now: datetime) -> None:
    """A student's page on this terminal is gone: drop it, and the row too when no PIN is left."""
    await conn.execute(
        "DELETE FROM terminal_roster WHERE device_id = $1 AND student_id = $2 AND pin IS NULL"
        " AND removed_page IS NULL", device_id, student_id)
    await conn.execute(
        "UPDATE terminal_roster SET page = NULL, page_source = NULL, updated_at = $3"
        " WHERE device_id = $1 AND student_id = $2", device_id, student_id, now)
