"""Biometric consent in PostgreSQL: consents, their withdrawal, and who is enrolled on which terminal.

Consents are ``biometric_consents`` rows (migration 0026): at most one active
per student (a partial unique index), never deleted by the hub. The
enrolment registry is ``terminal_roster`` (hub/db/terminal_roster.py): a
row's ``page`` is the student's fingerprint page on that terminal,
``consent_ref`` the consent it rests on, ``page_commands`` the commands that
carry its latest change, and ``removed_page`` / ``removed_at`` a removal (kept
as its record). Enrolling is ``hub.db.terminal_roster.assign_page`` (which
refuses a student without consent); this module gives and withdraws consent
and removes enrolments.

A withdrawal is one transaction: the consent is closed and every page of the
student, on every terminal, becomes a removal whose commands
(``template_sync`` ``delete``, then ``roster_sync`` ``remove_pages``: the pure
``hub.domain.terminal_roster.change_commands``) are decided with their ids
recorded; the caller creates them after the commit
(``hub.db.terminal_roster.queue_planned``). Each terminal's acks then move its
row from ``removal_pending`` to ``removed`` (read by
``hub.domain.biometric_consent.terminal_state``). Every change is audited
(``biometric_consent``/``given``, ``withdrawn``, entity id the student's;
``terminal_roster``/``page_removed``, entity ``<device>/<student>``), so an
erasure finds every entry about the student.

Concurrency contract: coroutine functions for any trio task holding a
:class:`Database`. Withdrawal and removal take the terminal registry's
advisory lock (``hub.db.terminal_roster.lock_registry``), as every
enrolment and roster plan does, so a page cannot be enrolled from a consent
being withdrawn; the one-active index settles two concurrent consents
(the second is refused ``conflict``).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import asyncpg

from hub.domain.biometric_consent import (
    CommandOutcome,
    TerminalState,
    notice_problem,
    reason_problem,
    terminal_state,
)
from hub.domain.terminal_roster import TerminalChange

from ._pool import Database
from .device_commands import transition
from .provisioning import RegistryError
from .security_audit import record
from .terminal_roster import PlannedCommand, check_terminal, lock_registry, plan_commands


@dataclass(frozen=True)
class ConsentRecord:
    """One consent: given (by whom, to which notice version), and perhaps withdrawn."""

    consent_id: int
    student_id: str
    notice_version: str
    given_by: str
    given_at: datetime
    withdrawn_at: datetime | None
    withdrawn_by: str | None
    withdrawal_reason: str | None

    @property
    def active(self) -> bool:
        return self.withdrawn_at is None


@dataclass(frozen=True)
class CommandAck:
    """One command of a page change and what the terminal answered."""

    command_id: uuid.UUID
    name: str
    status: str | None
    acked_at: datetime | None
    detail: str


@dataclass(frozen=True)
class TerminalEnrolment:
    """One student on one terminal: the page (or the removed page), its state, and the commands behind it."""

    device_id: str
    device_kind: str
    student_id: str
    page: int
    removal: bool
    state: TerminalState
    consent_id: int | None
    page_source: str | None
    changed_at: datetime
    commands: tuple[CommandAck, ...]


@dataclass(frozen=True)
class Withdrawal:
    """A closed consent and the removal commands to create (ids already recorded on the registry rows)."""

    consent: ConsentRecord
    commands: tuple[PlannedCommand, ...]


_CONSENT_COLUMNS = ("id, student_id, notice_version, given_by, given_at, withdrawn_at, withdrawn_by,"
                    " withdrawal_reason")


def _consent(r: asyncpg.Record) -> ConsentRecord:
    return ConsentRecord(r["id"], r["student_id"], r["notice_version"], r["given_by"], r["given_at"],
                         r["withdrawn_at"], r["withdrawn_by"], r["withdrawal_reason"])


def _consent_json(c: ConsentRecord) -> dict[str, object]:
    """What the audit entry keeps of a consent (ids, version, times: no free text but the reason's length)."""
    return {"consent_id": c.consent_id, "student_id": c.student_id, "notice_version": c.notice_version,
            "given_by": c.given_by, "withdrawn": not c.active}


async def without_consent(db: Database, student_ids: Sequence[str]) -> list[str]:
    """Those of ``student_ids`` with no active consent (sorted)."""
    rows = await db.fetch(
        "SELECT s FROM unnest($1::text[]) AS s WHERE NOT EXISTS (SELECT 1 FROM biometric_consents c"
        " WHERE c.student_id = s AND c.withdrawn_at IS NULL) ORDER BY s", list(student_ids))
    return [r["s"] for r in rows]


async def consent_history(db: Database, student_id: str) -> list[ConsentRecord]:
    """Every consent of a student, newest first."""
    rows = await db.fetch(f"SELECT {_CONSENT_COLUMNS} FROM biometric_consents WHERE student_id = $1"
                          " ORDER BY given_at DESC, id DESC", student_id)
    return [_consent(r) for r in rows]


async def _student_exists(conn: asyncpg.Connection, student_id: str) -> None:
    if await conn.fetchval("SELECT 1 FROM students WHERE id = $1", student_id) is None:
        raise RegistryError("not_found", f"No student {student_id!r}.", "student_id")


async def give_consent(db: Database, student_id: str, *, given_by: str, notice_version: str,
                       now: datetime) -> ConsentRecord:
    """Record a consent to ``notice_version`` (the current one), given by the student or recorded by an admin.

    Raises :class:`RegistryError` ``invalid_request`` (an unknown or superseded
    notice version; field ``notice_version``), ``not_found`` (no such
    student) or ``conflict`` (the student already has an active consent).
    Audited (``biometric_consent``/``given``).
    """
    problem = notice_problem(notice_version)
    if problem is not None:
        raise RegistryError("invalid_request", f"{problem[0].upper()}{problem[1:]}.", "notice_version")

    async def work(conn: asyncpg.Connection) -> ConsentRecord:
        await _student_exists(conn, student_id)
        try:
            row = await conn.fetchrow(
                "INSERT INTO biometric_consents (student_id, notice_version, given_by, given_at)"
                f" VALUES ($1, $2, $3, $4) RETURNING {_CONSENT_COLUMNS}", student_id, notice_version, given_by, now)
        except asyncpg.UniqueViolationError:
            raise RegistryError("conflict", "This student already has an active biometric consent.") from None
        consent = _consent(row)
        await record(conn, actor=given_by, action="given", entity="biometric_consent",
                     entity_id=student_id, before=None, after=_consent_json(consent))
        return consent

    return await db.run(work, transaction=True)


async def _remove_rows(conn: asyncpg.Connection, rows: Sequence[asyncpg.Record], now: datetime,
                       superseded: list[uuid.UUID]) -> list[PlannedCommand]:
    """Turn each row's page (or a removal not yet confirmed) into a removal with fresh commands.

    The commands of the change it replaces go to ``superseded`` (see :func:`_fail_undelivered`).
    """
    planned: list[PlannedCommand] = []
    for row in rows:
        superseded += row["page_commands"]
        page = row["page"] if row["page"] is not None else row["removed_page"]
        commands = plan_commands(TerminalChange(row["device_id"], remove_pages=(page,)))
        await conn.execute(
            "UPDATE terminal_roster SET page = NULL, page_source = NULL, removed_page = $3, removed_at = $4,"
            " page_commands = $5, updated_at = $4 WHERE device_id = $1 AND student_id = $2",
            row["device_id"], row["student_id"], page, now, [c.command_id for c in commands])
        planned += commands
    return planned


async def _fail_undelivered(db: Database, command_ids: Sequence[uuid.UUID], now: datetime, detail: str) -> None:
    """Fail the superseded commands still ``pending`` (not yet accepted by the broker): an enrolment's
    template then never leaves the hub, and its sealed blob is dropped at once (migration 0019's trigger).
    A command already sent is left to its ack; the removal that follows it deletes what it loaded."""
    for command_id in command_ids:
        await transition(db, command_id, from_statuses=("pending",), to_status="failed", at=now, detail=detail)


async def withdraw_consent(db: Database, student_id: str, *, withdrawn_by: str, reason: str,
                           now: datetime) -> Withdrawal:
    """Withdraw the student's active consent and plan the deletion of their fingerprint on every terminal.

    Every registry row of the student holding a page becomes a removal, on
    every terminal (revoked ones too: their command cannot be created, and
    the state says ``removal_failed``). Create the returned commands with
    ``hub.db.terminal_roster.queue_planned`` after this returns. Raises
    :class:`RegistryError` ``invalid_request`` (reason too long; field
    ``reason``), ``not_found`` (no such student) or ``conflict`` (no active
    consent). Audited (``biometric_consent``/``withdrawn``, with the terminals
    and pages removed).
    """
    problem = reason_problem(reason)
    if problem is not None:
        raise RegistryError("invalid_request", f"{problem[0].upper()}{problem[1:]}.", "reason")

    async def work(conn: asyncpg.Connection) -> Withdrawal:
        await lock_registry(conn)
        await _student_exists(conn, student_id)
        before = await conn.fetchrow(
            f"SELECT {_CONSENT_COLUMNS} FROM biometric_consents WHERE student_id = $1 AND withdrawn_at IS NULL"
            " FOR UPDATE", student_id)
        if before is None:
            raise RegistryError("conflict", "This student has no active biometric consent.")
        row = await conn.fetchrow(
            "UPDATE biometric_consents SET withdrawn_at = $2, withdrawn_by = $3, withdrawal_reason = $4"
            f" WHERE id = $1 RETURNING {_CONSENT_COLUMNS}", before["id"], now, withdrawn_by, reason or None)
        consent = _consent(row)
        pages = await conn.fetch(
            "SELECT device_id, student_id, page, removed_page, page_commands FROM terminal_roster"
            " WHERE student_id = $1 AND page IS NOT NULL ORDER BY device_id FOR UPDATE", student_id)
        planned = await _remove_rows(conn, pages, now, superseded)
        await record(conn, actor=withdrawn_by, action="withdrawn", entity="biometric_consent",
                     entity_id=student_id, before=_consent_json(_consent(before)),
                     after={**_consent_json(consent),
                            "removals": [{"device_id": r["device_id"], "page": r["page"]} for r in pages]},
                     reason=reason)
        return Withdrawal(consent, tuple(planned))

    superseded: list[uuid.UUID] = []
    withdrawal = await db.run(work, transaction=True)
    await _fail_undelivered(db, superseded, now, "consent withdrawn before delivery")
    return withdrawal


async def remove_enrolment(db: Database, device_id: str, student_id: str, *, actor: str,
                           now: datetime) -> tuple[PlannedCommand, ...]:
    """Delete a student's fingerprint from one terminal (or send again a removal it has not confirmed).

    Raises :class:`RegistryError` ``not_found`` (no such device, or the
    student holds no page there and has no removal to resend), ``conflict``
    (device revoked) or ``invalid_request`` (a device kind that holds no
    roster). Create the returned commands with ``queue_planned``. Audited
    (``terminal_roster``/``page_removed``).
    """

    async def work(conn: asyncpg.Connection) -> tuple[PlannedCommand, ...]:
        await lock_registry(conn)
        await check_terminal(conn, device_id)
        row = await conn.fetchrow(
            "SELECT device_id, student_id, page, removed_page, page_commands FROM terminal_roster"
            " WHERE device_id = $1 AND student_id = $2 AND (page IS NOT NULL OR removed_page IS NOT NULL)"
            " FOR UPDATE", device_id, student_id)
        if row is None:
            raise RegistryError("not_found", f"{student_id!r} is not enrolled on {device_id!r}.", "student_id")
        planned = await _remove_rows(conn, [row], now, superseded)
        page = row["page"] if row["page"] is not None else row["removed_page"]
        await record(conn, actor=actor, action="page_removed", entity="terminal_roster",
                     entity_id=f"{device_id}/{student_id}",
                     before={"student_id": student_id, "page": page, "resend": row["page"] is None}, after=None)
        return tuple(planned)

    superseded: list[uuid.UUID] = []
    planned = await db.run(work, transaction=True)
    await _fail_undelivered(db, superseded, now, "enrolment removed before delivery")
    return planned


_ENROLMENT_SQL = (
    "SELECT r.device_id, d.kind, r.student_id, r.page, r.removed_page, r.page_source, r.consent_ref,"
    " r.page_commands, r.updated_at, r.removed_at"
    " FROM terminal_roster r JOIN devices d ON d.id = r.device_id"
    " WHERE (r.page IS NOT NULL OR r.removed_page IS NOT NULL)"
    " AND ($1::text[] IS NULL OR r.student_id = ANY($1::text[])) AND ($2::text IS NULL OR r.device_id = $2)"
    " ORDER BY r.device_id, r.student_id"
)


async def _enrolments(db: Database, student_ids: Sequence[str] | None, device_id: str | None
                      ) -> list[TerminalEnrolment]:
    async def work(conn: asyncpg.Connection) -> list[TerminalEnrolment]:
        rows = await conn.fetch(_ENROLMENT_SQL, None if student_ids is None else list(student_ids), device_id)
        ids = [c for r in rows for c in r["page_commands"]]
        commands = {c["id"]: c for c in await conn.fetch(
            "SELECT id, name, status, acked_at, detail FROM device_commands WHERE id = ANY($1::uuid[])", ids)}
        result = []
        for r in rows:
            removal = r["page"] is None
            acks = tuple(
                CommandAck(c, commands[c]["name"], commands[c]["status"], commands[c]["acked_at"],
                           commands[c]["detail"]) if c in commands else CommandAck(c, "", None, None, "not created")
                for c in r["page_commands"])
            state = terminal_state(removal=removal, commands=[CommandOutcome(a.name, a.status) for a in acks],
                                   page_source=r["page_source"])
            result.append(TerminalEnrolment(
                r["device_id"], r["kind"], r["student_id"], r["removed_page"] if removal else r["page"], removal,
                state, r["consent_ref"], r["page_source"], r["removed_at"] if removal else r["updated_at"], acks))
        return result

    return await db.run(work)


async def student_enrolments(db: Database, student_id: str) -> list[TerminalEnrolment]:
    """Every terminal where the student is (or was, removal recorded) enrolled, with each terminal's state."""
    return await _enrolments(db, [student_id], None)


async def device_enrolments(db: Database, device_id: str) -> list[TerminalEnrolment]:
    """Every student enrolled on (or removed from) one terminal, with the state of each."""
    return await _enrolments(db, None, device_id)


async def enrolments_of(db: Database, student_ids: Sequence[str]) -> list[TerminalEnrolment]:
    """Every terminal of these students (the device page: which terminals confirmed each student)."""
    return await _enrolments(db, student_ids, None)
