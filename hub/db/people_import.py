"""Apply a parsed people CSV (hub/domain/people_import.py): all rows in one transaction, or none.

Each row is matched to an existing account by username (case ignored):

- no such account, and its roll number and email are free: a new account
  (``hub.db.users.insert_account``: a student also gets a check-in token
  secret) with no password and a one-time activation code
  (``hub.db.accounts``), returned once in :attr:`PeopleImportResult.created`;
- an account with the same role, name, email and student fields: unchanged,
  so re-importing a file changes nothing;
- an account whose details differ, or a roll number or email another account
  holds: a :class:`RowError` naming the field. The import does not edit
  people (edits go through the people page/API, one change at a time, each
  audited with its before and after).

Concurrency contract: one transaction on the shared
:class:`~hub.db.Database`; a dry run reads only. Rows are checked with three
queries whatever their number; the inserts take one round trip each. One
security-audit entry (``user``/``imported``) is appended last, listing the
new accounts (their ``created`` entries are folded into it). A concurrent
insert of the same username makes the whole import fail with a conflict
rather than half-apply.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

import asyncpg

from hub.domain.enrolment_import import RowError
from hub.domain.people_import import PersonRow
from hub.domain.roles import STUDENT, is_role

from ._pool import Database
from .accounts import IssuedCode, issue_code_in
from .security_audit import record
from .users import NewAccount, insert_account

#: Accounts listed by name in the one audit entry of an import (the rest are counted).
_AUDIT_LISTED = 100


@dataclass(frozen=True)
class CreatedAccount:
    """A new account and its activation code, shown once."""

    line: int
    user_id: str
    username: str
    display_name: str
    role: str
    email: str | None
    roll_number: str | None
    activation: IssuedCode | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PeopleImportResult:
    created: tuple[CreatedAccount, ...]
    unchanged: int
    dry_run: bool


class PeopleImportRejected(Exception):
    """Rows the database refuses; nothing was written."""

    def __init__(self, errors: Sequence[RowError]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the file")
        self.errors = list(errors)


_EXISTING = (
    "SELECT u.id, lower(u.username) AS key, u.username, u.display_name, u.role, u.email,"
    " s.roll_number, s.program, s.section, s.terminal_pin FROM users u LEFT JOIN students s ON s.id = u.id"
)


def _differences(row: PersonRow, existing: asyncpg.Record) -> list[str]:
    wanted = {"role": row.role, "name": row.display_name, "email": row.email, "roll_number": row.roll_number,
              "program": row.program, "section": row.section}
    have = {"role": existing["role"], "name": existing["display_name"], "email": existing["email"],
            "roll_number": existing["roll_number"], "program": existing["program"], "section": existing["section"]}
    differing = [name for name in wanted if (wanted[name] or None) != (have[name] or None)]
    if row.pin is not None and row.pin != existing["terminal_pin"]:  # an empty cell keeps the assigned PIN
        differing.append("pin")
    return differing


async def import_people(db: Database, rows: Sequence[PersonRow], *, actor: str, dry_run: bool,
                        now: datetime | None = None) -> PeopleImportResult:
    """Create the new accounts of ``rows`` (with activation codes), or raise :class:`PeopleImportRejected`."""
    at = now if now is not None else datetime.now(timezone.utc)

    async def work(conn: asyncpg.Connection) -> PeopleImportResult:
        by_username = {r["key"]: r for r in await conn.fetch(
            f"{_EXISTING} WHERE lower(u.username) = ANY($1::text[])", [r.username.lower() for r in rows])}
        roll_owner = {r["roll_number"]: r["key"] for r in await conn.fetch(
            "SELECT s.roll_number, lower(u.username) AS key FROM students s JOIN users u ON u.id = s.id"
            " WHERE s.roll_number = ANY($1::text[])", [r.roll_number for r in rows if r.roll_number])}
        pin_owner = {r["terminal_pin"]: r["key"] for r in await conn.fetch(
            "SELECT s.terminal_pin, lower(u.username) AS key FROM students s JOIN users u ON u.id = s.id"
            " WHERE s.terminal_pin = ANY($1::text[])", [r.pin for r in rows if r.pin])}
        email_owner = {r["email"]: r["key"] for r in await conn.fetch(
            "SELECT lower(email) AS email, lower(username) AS key FROM users WHERE lower(email) = ANY($1::text[])",
            [r.email.lower() for r in rows if r.email])}
        errors: list[RowError] = []
        new_rows: list[PersonRow] = []
        unchanged = 0
        for row in rows:
            key = row.username.lower()
            existing = by_username.get(key)
            if existing is not None:
                differing = _differences(row, existing)
                if not differing:
                    unchanged += 1
                    continue
                errors.append(RowError(row.line, differing[0],
                                       f"'{existing['username']}' already exists with a different "
                                       f"{', '.join(d.replace('_', ' ') for d in differing)}; the import only adds "
                                       "people: change existing ones on the people page"))
                continue
            owner = roll_owner.get(row.roll_number) if row.roll_number else None
            if owner is not None:
                errors.append(RowError(row.line, "roll_number",
                                       f"roll number {row.roll_number!r} belongs to another account"))
                continue
            owner = email_owner.get(row.email.lower()) if row.email else None
            if owner is not None:
                errors.append(RowError(row.line, "email", "another account has this email address"))
                continue
            if row.pin is not None and pin_owner.get(row.pin) is not None:
                errors.append(RowError(row.line, "pin", f"PIN {row.pin!r} belongs to another student"))
                continue
            new_rows.append(row)
        if errors:
            raise PeopleImportRejected(errors)
        if dry_run:
            return PeopleImportResult(tuple(
                CreatedAccount(r.line, "", r.username, r.display_name, r.role, r.email, r.roll_number)
                for r in new_rows), unchanged, True)
        created: list[CreatedAccount] = []
        for row in new_rows:
            assert is_role(row.role)  # the parser checked it
            account = await insert_account(conn, NewAccount(
                username=row.username, display_name=row.display_name, role=row.role, email=row.email,
                roll_number=row.roll_number if row.role == STUDENT else None,
                program=row.program, section=row.section, terminal_pin=row.pin),
                secrets=db.secrets, actor=actor, audit=False)
            code = await issue_code_in(conn, user_id=account.id, purpose="activation", actor=actor, now=at,
                                       audit=False)
            created.append(CreatedAccount(row.line, account.id, account.username, account.display_name,
                                          account.role, account.email, account.roll_number, code))
        if created:
            await record(conn, actor=actor, action="imported", entity="user", entity_id=f"import:{at.isoformat()}",
                         after={"created": len(created), "unchanged": unchanged,
                                "accounts": [{"id": c.user_id, "username": c.username, "role": c.role}
                                             for c in created[:_AUDIT_LISTED]]},
                         reason=f"CSV import of {len(rows)} row(s)")
        return PeopleImportResult(tuple(created), unchanged, False)

    return await db.run(work, transaction=True)
