"""Erasure of a former student: their personal data removed or pseudonymised, the records kept.

What happens to each table is declared once, in :data:`hub.db.personal_data.HOLDINGS`
(the export reads the same map); this module applies it. Only a former
student can be erased: the account must be deactivated first (docs/people.md),
so an active or enrolled student is refused with the reason. The records the
campus must keep (attendance, marks, leave and correction decisions, flags,
consent, the audit log) stay under the student's id, which names no one once
the account row is pseudonymised (:func:`hub.db.personal_data.pseudonym`);
the audit log's personal payloads are redacted by
:func:`hub.db.audit.redact_subject`, so its hash chain still verifies.

After the commit the caller queues the removal of the student's PIN and
fingerprint pages from the terminals (the roster planner,
hub/db/terminal_roster.py ``reconcile`` + ``queue_plan``: the web calls
``web.routes.terminal_roster_api.terminal_rosters_changed``; the CLI leaves
it to the running hub's ``terminal_rosters`` keeper, as for a CLI import).
A deactivated student normally has nothing left on the terminals already.
Audit entries already archived to segment files are redacted there by
:func:`erase_from_archive`, also after the commit (the CLI does it; the
archive directory is the hub's ``Settings.audit_archive_path``).

Concurrency contract: :func:`erase_student` is one transaction (READ
COMMITTED) on one connection of the shared :class:`Database`. It locks the
account row first; redacts the audit log's entries about the student (row
locks on those entries only; done first, while the username still finds
their login entries); changes the holdings' rows in the map's order; and
appends its own audit entry last (under the audit chain's advisory lock,
held until the commit, with no row lock taken after it). All or nothing: a
failure leaves nothing half erased. Erasing an erased student changes
nothing (``already_erased``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
import trio

from ._pool import Database
from .personal_data import HOLDINGS, bind, is_erased, pseudonym
from .sealed_secrets import token_secret_context
from .security_audit import record
from .users import new_token_secret


@dataclass(frozen=True)
class ErasureReport:
    """What an erasure did: the pseudonym, and per holding (``table:erase``) how many rows it changed."""

    student_id: str
    pseudonym: str
    already_erased: bool = False
    changed: dict[str, int] = field(default_factory=dict)
    #: The username before erasure (None if already erased): for :func:`erase_from_archive`, in memory only.
    former_username: str | None = field(default=None, repr=False, compare=False)


class ErasureRefused(Exception):
    """An erasure that must not happen; ``code`` is ``not_found`` or ``active``, ``message`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def erasure_refusal(db: Database, student_id: str) -> ErasureRefused | None:
    """Why :func:`erase_student` would refuse now (None: it would not). For front doors that do
    something first (withdraw a consent); :func:`erase_student` checks again under its lock."""
    account = await db.fetchrow(
        "SELECT u.deactivated_at FROM users u JOIN students s ON s.id = u.id WHERE u.id = $1", student_id)
    if account is None:
        return ErasureRefused("not_found", "No such student.")
    if account["deactivated_at"] is None:
        return _active()
    return None


def _active() -> ErasureRefused:
    return ErasureRefused(
        "active", "This student's account is active: only a former student can be erased. "
                  "Deactivate the account first (it then leaves rosters and terminals), then erase it.")


async def erase_student(db: Database, student_id: str, *, actor: str, now: datetime,
                        reason: str = "") -> ErasureReport:
    """Erase a former student (see the module docstring). Raises :class:`ErasureRefused`.

    ``reason`` goes to the audit log: a case number, not the person's name.
    """
    from .audit import redact_subject

    name = pseudonym(student_id)

    async def work(conn: asyncpg.Connection) -> ErasureReport:
        account = await conn.fetchrow(
            "SELECT u.username, u.deactivated_at FROM users u JOIN students s ON s.id = u.id WHERE u.id = $1"
            " FOR UPDATE OF u, s", student_id)
        if account is None:
            raise ErasureRefused("not_found", "No such student.")
        if is_erased(student_id, account["username"]):
            return ErasureReport(student_id, name, already_erased=True)
        if account["deactivated_at"] is None:
            raise _active()
        fresh_secret = db.secrets.encrypt(new_token_secret(), token_secret_context(student_id))
        values = {"student": student_id, "pseudonym": name, "now": now, "actor": actor,
                  "sealed_token_secret": fresh_secret}
        changed: dict[str, int] = {}
        # First, while the account still has its username (login entries are found by it).
        changed["audit_log:redacted"] = await redact_subject(conn, student_id=student_id, pseudonym=name)
        for holding in HOLDINGS:
            if holding.erase == "keep":
                continue
            if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", holding.table):
                continue  # a table of a later migration not applied here
            if holding.erase == "audit":
                continue  # done above
            if holding.erase == "delete":
                sql, args = bind(f"DELETE FROM {holding.table} t WHERE {holding.about}", values)
            else:
                sql, args = bind(f"UPDATE {holding.table} t SET {holding.scrub} WHERE {holding.about}", values)
            status = await conn.execute(sql, *args)
            changed[f"{holding.table}:{holding.erase}"] = int(status.rsplit(" ", 1)[-1])
        # Last: the audit chain's lock is taken here and held to the commit (no row lock after it).
        await record(conn, actor=actor, action="erased", entity="personal_data", entity_id=student_id,
                     after={"pseudonym": name, "changed": changed}, reason=reason)
        return ErasureReport(student_id, name, changed=changed, former_username=account["username"])

    return await db.run(work, transaction=True)


async def erase_from_archive(db: Database, report: ErasureReport, *, archive_dir: Path) -> int:
    """After :func:`erase_student` committed: the same redaction in the audit archive's segment files
    (entries archived and pruned from the database, hub/db/audit_archive.py), so no copy of the
    person's audit payload is left there either. Returns how many archived entries it redacted
    (0 without an archive). Its own transaction and the archive's lock; may be run again."""
    from .audit_archive import redact_archived_subject

    if not await trio.Path(archive_dir).is_dir():
        return 0
    usernames = (report.former_username,) if report.former_username else ()
    return await redact_archived_subject(db, archive_dir=archive_dir, student_id=report.student_id,
                                         pseudonym=report.pseudonym, usernames=usernames)
