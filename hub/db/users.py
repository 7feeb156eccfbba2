"""Web identities: users, their refresh tokens, and the admin's management of people.

Concurrency contract: every function is one round trip on the shared
:class:`~hub.db.Database` and may be called from any trio task. Refresh-token
rotation runs in one transaction with the presented row locked (``FOR
UPDATE``), so two concurrent uses of the same token cannot both succeed: the
second one sees it revoked and is treated as a reuse.

Only hashes of refresh tokens are stored; the caller hashes (see
``web.auth``), this module never sees a usable token.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import asyncpg

from hub.core.secrets_box import SecretsBox
from hub.domain.people import display_name_problem, email_problem, student_fields_problem
from hub.domain.roles import ADMIN, STUDENT, Role

from ._pool import Database
from .personal_data import is_erased
from .sealed_secrets import token_secret_context
from .security_audit import record


@dataclass(frozen=True)
class UserRecord:
    id: str
    username: str
    display_name: str
    role: str
    #: argon2id hash (``hub.core.passwords``); kept out of reprs and logs. ``''``: no password yet.
    password_hash: str = field(repr=False)
    #: When the account was deactivated (it may not log in, its tokens stop working); None: active.
    deactivated_at: datetime | None = None
    #: Access tokens issued before this instant are refused (a password reset or change ended them).
    sessions_valid_from: datetime | None = None

    @property
    def active(self) -> bool:
        return self.deactivated_at is None


@dataclass(frozen=True)
class RefreshRotation:
    """Outcome of presenting a refresh token.

    ``user`` is set only when the token was live and has been replaced by the
    new one. ``reused`` means a token that had already been rotated or revoked
    was presented: a sign it was copied, so every live refresh token of its
    user has been revoked too (the user must log in again everywhere).
    """

    user: UserRecord | None
    reused: bool = False


_USER_COLUMNS = "id, username, display_name, role, password_hash, deactivated_at, sessions_valid_from"


def _user(row: asyncpg.Record) -> UserRecord:
    return UserRecord(row["id"], row["username"], row["display_name"], row["role"], row["password_hash"],
                      row["deactivated_at"], row["sessions_valid_from"])


async def get_user_by_username(db: Database, username: str) -> UserRecord | None:
    row = await db.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE username = $1", username)
    return None if row is None else _user(row)


async def get_user(db: Database, user_id: str) -> UserRecord | None:
    row = await db.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", user_id)
    return None if row is None else _user(row)


async def store_refresh_token(
    db: Database, *, token_hash: bytes, user_id: str, expires_at: datetime
) -> None:
    await db.execute(
        "INSERT INTO refresh_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
        token_hash, user_id, expires_at,
    )


async def rotate_refresh_token(
    db: Database, *, old_hash: bytes, new_hash: bytes, now: datetime, expires_at: datetime
) -> RefreshRotation:
    """Revoke the token ``old_hash`` and store ``new_hash`` in its place, atomically.

    Unknown or expired tokens give ``RefreshRotation(None)``; a revoked one
    gives ``RefreshRotation(None, reused=True)`` after revoking all of its
    user's live tokens. ``now`` is the caller's clock, so tests can move time.
    """

    async def work(conn: asyncpg.Connection) -> RefreshRotation:
        row = await conn.fetchrow(
            "SELECT user_id, expires_at, revoked_at FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
            old_hash,
        )
        if row is None:
            return RefreshRotation(None)
        if row["revoked_at"] is not None:
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
                row["user_id"], now,
            )
            return RefreshRotation(None, reused=True)
        if row["expires_at"] <= now:
            return RefreshRotation(None)
        await conn.execute("UPDATE refresh_tokens SET revoked_at = $2 WHERE token_hash = $1", old_hash, now)
        await conn.execute(
            "INSERT INTO refresh_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
            new_hash, row["user_id"], expires_at,
        )
        user = await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", row["user_id"])
        return RefreshRotation(_user(user))

    return await db.run(work, transaction=True)


async def revoke_refresh_token(db: Database, token_hash: bytes, now: datetime) -> bool:
    """Revoke one live token (logout). False if it was unknown or already revoked."""
    status = await db.execute(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
        token_hash, now,
    )
    return status == "UPDATE 1"


# --- people: the admin's management of accounts (docs/people.md) ---------------------------------
#
# Each change is one transaction that ends with its security-audit entry
# (hub/db/security_audit.py ``record``, the last statement: it takes the audit
# chain's lock until commit). The admin guards (no self-deactivation,
# -demotion or -deletion; never the last active admin) run inside the same
# transaction, which first takes the admins' advisory lock (before any row
# lock, so two such changes never deadlock), so two admins demoting each
# other at once cannot leave the campus without one. Live effects (the bus,
# the web's account cache) are the caller's, after commit: this module
# returns records.


@dataclass(frozen=True)
class AccountRecord:
    """A person's account as the admin manages it (no password hash)."""

    id: str
    username: str
    display_name: str
    role: str
    email: str | None
    created_at: datetime
    updated_at: datetime
    deactivated_at: datetime | None
    #: Student fields; None for every other role.
    roll_number: str | None = None
    program: str | None = None
    section: str | None = None

    @property
    def active(self) -> bool:
        return self.deactivated_at is None

    def audit_state(self) -> dict[str, Any]:
        """What the security audit log keeps of the account (no secrets, no times)."""
        state: dict[str, Any] = {"username": self.username, "display_name": self.display_name,
                                 "role": self.role, "email": self.email, "active": self.active}
        if self.role == STUDENT:
            state.update(roll_number=self.roll_number, program=self.program, section=self.section)
        return state


@dataclass(frozen=True)
class NewAccount:
    """An account to create. ``password_hash`` None: no password yet (activation, hub/db/accounts.py)."""

    username: str
    display_name: str
    role: Role
    password_hash: str | None = field(default=None, repr=False)
    email: str | None = None
    roll_number: str | None = None
    program: str | None = None
    section: str | None = None
    #: A student's terminal PIN; None: the database assigns the next free one (migration 0020).
    terminal_pin: str | None = None


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


#: An :class:`AccountChanges` field left as it is.
UNCHANGED: Any = _Unchanged()


@dataclass(frozen=True)
class AccountChanges:
    """An edit of an account's details: each field is a new value (None clears an optional one) or UNCHANGED."""

    display_name: str = UNCHANGED
    email: str | None = UNCHANGED
    roll_number: str = UNCHANGED
    program: str | None = UNCHANGED
    section: str | None = UNCHANGED
    #: A student account keeps its role (its records hang on its student row): neither to nor from
    #: ``student``. No admin may demote themselves or the last active admin.
    role: Role = UNCHANGED

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not UNCHANGED}


@dataclass(frozen=True)
class DeleteOutcome:
    """``deleted``, or the ``refusal``: why the account's records must be kept (deactivate it instead)."""

    deleted: bool
    refusal: str | None = None


class AccountError(Exception):
    """A refused account change; ``str(error)`` is the message for the person who asked."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class AccountNotFound(AccountError):
    def __init__(self) -> None:
        super().__init__("No such user.")


class AccountConflict(AccountError):
    """A username, email or roll number another account already has."""


class AccountRefused(AccountError):
    """A change refused to keep the campus manageable (self or last-admin guards, student role changes)."""


#: Transaction-scoped advisory lock of every change that may add the first admin or remove an active
#: one: taken before any row lock, it serialises them across processes without deadlocks.
_ADMINS_LOCK = 0x4341_4D50_5553_0001


def new_user_id(role: str) -> str:
    """A fresh account id: ``stu-`` for students, ``usr-`` for everyone else, then 16 hex digits."""
    return f"{'stu' if role == STUDENT else 'usr'}-{secrets.token_hex(8)}"


def new_token_secret() -> bytes:
    """A student's check-in token secret (signs their rotating QR; schemas/ tokens): 32 random bytes."""
    return secrets.token_bytes(32)


_ACCOUNT_SELECT = (
    "SELECT u.id, u.username, u.display_name, u.role, u.email, u.created_at, u.updated_at, u.deactivated_at,"
    " s.roll_number, s.program, s.section FROM users u LEFT JOIN students s ON s.id = u.id"
)


def _account(row: asyncpg.Record) -> AccountRecord:
    return AccountRecord(
        row["id"], row["username"], row["display_name"], row["role"], row["email"], row["created_at"],
        row["updated_at"], row["deactivated_at"], row["roll_number"], row["program"], row["section"],
    )


async def _account_in(conn: asyncpg.Connection, user_id: str, *, lock: bool = False) -> AccountRecord:
    row = await conn.fetchrow(f"{_ACCOUNT_SELECT} WHERE u.id = $1{' FOR UPDATE OF u' if lock else ''}", user_id)
    if row is None:
        raise AccountNotFound()
    return _account(row)


async def _conflict(conn: asyncpg.Connection, *, username: str | None, email: str | None,
                    roll_number: str | None, user_id: str | None) -> AccountConflict | None:
    """The first of the given unique fields that another account already holds."""
    if username is not None and await conn.fetchval(
            "SELECT 1 FROM users WHERE lower(username) = lower($1) AND id IS DISTINCT FROM $2", username, user_id):
        return AccountConflict("That username is taken.", "username")
    if email is not None and await conn.fetchval(
            "SELECT 1 FROM users WHERE lower(email) = lower($1) AND id IS DISTINCT FROM $2", email, user_id):
        return AccountConflict("Another account has that email address.", "email")
    if roll_number is not None and await conn.fetchval(
            "SELECT 1 FROM students WHERE roll_number = $1 AND id IS DISTINCT FROM $2", roll_number, user_id):
        return AccountConflict("Another student has that roll number.", "roll_number")
    return None


async def insert_account(
    conn: asyncpg.Connection, account: NewAccount, *, secrets: SecretsBox, actor: str, reason: str = "",
    audit: bool = True,
) -> AccountRecord:
    """Inside the caller's transaction: create the account (and, for a student, its student row with a
    fresh check-in token secret, sealed with ``secrets``, the campus key ``db.secrets``) and, unless
    ``audit`` is False, append its ``created`` audit entry.

    Callers creating many accounts in one transaction (the CSV import) pass ``audit=False`` and record
    one entry themselves, last. Raises :class:`AccountConflict` for a taken username, email or roll
    number (checked first, so the message names the field; the unique indexes still decide races).
    """
    conflict = await _conflict(conn, username=account.username, email=account.email,
                               roll_number=account.roll_number if account.role == STUDENT else None, user_id=None)
    if conflict is not None:
        raise conflict
    user_id = new_user_id(account.role)
    try:
        await conn.execute(
            "INSERT INTO users (id, username, display_name, role, password_hash, email) VALUES ($1, $2, $3, $4, $5, $6)",
            user_id, account.username, account.display_name, account.role, account.password_hash or "", account.email,
        )
        if account.role == STUDENT:
            await conn.execute(
                "INSERT INTO students (id, roll_number, token_secret_sealed, program, section, terminal_pin)"
                " VALUES ($1, $2, $3, $4, $5, coalesce($6, next_student_terminal_pin()))",
                user_id, account.roll_number, secrets.encrypt(new_token_secret(), token_secret_context(user_id)),
                account.program, account.section,
                account.terminal_pin,
            )
    except asyncpg.UniqueViolationError as exc:  # a concurrent insert won the race
        raise AccountConflict("That username, email or roll number was just taken.", None) from exc
    created = await _account_in(conn, user_id)
    if audit:
        await record(conn, actor=actor, action="created", entity="user", entity_id=user_id,
                     after=created.audit_state(), reason=reason)
    return created


async def create_user(db: Database, account: NewAccount, *, actor: str, reason: str = "") -> AccountRecord:
    """Create one account (see :func:`insert_account`) in its own transaction."""

    async def work(conn: asyncpg.Connection) -> AccountRecord:
        return await insert_account(conn, account, secrets=db.secrets, actor=actor, reason=reason)

    return await db.run(work, transaction=True)


async def get_account(db: Database, user_id: str) -> AccountRecord | None:
    row = await db.fetchrow(f"{_ACCOUNT_SELECT} WHERE u.id = $1", user_id)
    return None if row is None else _account(row)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_accounts(
    db: Database, *, q: str | None = None, role: str | None = None, active: bool | None = None,
    limit: int, offset: int,
) -> tuple[list[AccountRecord], int]:
    """One page of accounts by username, and how many match.

    ``q`` matches, case-insensitively, anywhere in the username, name, email or roll number.
    """
    where, args = [], []
    if q:
        args.append(f"%{_like(q.lower())}%")
        n = len(args)
        where.append(f"(lower(u.username) LIKE ${n} OR lower(u.display_name) LIKE ${n}"
                     f" OR lower(u.email) LIKE ${n} OR lower(s.roll_number) LIKE ${n})")
    if role is not None:
        args.append(role)
        where.append(f"u.role = ${len(args)}")
    if active is not None:
        where.append("u.deactivated_at IS NULL" if active else "u.deactivated_at IS NOT NULL")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    total = await db.fetchval(f"SELECT count(*) FROM users u LEFT JOIN students s ON s.id = u.id{clause}", *args)
    rows = await db.fetch(
        f"{_ACCOUNT_SELECT}{clause} ORDER BY lower(u.username), u.id LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
        *args, limit, offset,
    )
    return [_account(r) for r in rows], total


async def count_active_admins(db: Database) -> int:
    return await db.fetchval("SELECT count(*) FROM users WHERE role = $1 AND deactivated_at IS NULL", ADMIN)


async def _guard_admin_loss(conn: asyncpg.Connection, target: AccountRecord, *, actor: str, doing: str) -> None:
    """Refuse ``doing`` (deactivate, demote, delete) to oneself, or to the last active admin.

    The caller's transaction holds :data:`_ADMINS_LOCK` (taken first), so concurrent guards see
    each other's committed outcome.
    """
    if target.id == actor:
        raise AccountRefused(f"You cannot {doing} your own account; ask another admin.")
    if target.role != ADMIN or not target.active:
        return
    admins = await conn.fetchval("SELECT count(*) FROM users WHERE role = $1 AND deactivated_at IS NULL", ADMIN)
    if admins <= 1:
        raise AccountRefused(f"You cannot {doing} the last active admin; make another admin first.")


async def _change(
    db: Database, user_id: str, *, actor: str, reason: str, action: str | Callable[[], str],
    apply: Callable[[asyncpg.Connection, AccountRecord], Awaitable[bool]], admins_lock: bool = False,
) -> AccountRecord:
    """Lock the account, ``apply`` the change (False: nothing changed), audit and return the result.

    ``action`` names the audit entry; a callable is asked after ``apply`` (when the change decides it).
    ``admins_lock``: the change may cost the campus an admin (see :func:`_guard_admin_loss`).
    """

    async def work(conn: asyncpg.Connection) -> AccountRecord:
        if admins_lock:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADMINS_LOCK)
        before = await _account_in(conn, user_id, lock=True)
        if not await apply(conn, before):
            return before
        await conn.execute("UPDATE users SET updated_at = now() WHERE id = $1", user_id)
        after = await _account_in(conn, user_id)
        await record(conn, actor=actor, action=action if isinstance(action, str) else action(), entity="user",
                     entity_id=user_id, before=before.audit_state(), after=after.audit_state(), reason=reason)
        return after

    return await db.run(work, transaction=True)


async def update_user(
    db: Database, user_id: str, changes: AccountChanges, *, actor: str, reason: str = ""
) -> AccountRecord:
    """Change an account's details and role (not its state), all or nothing. Only a student has the
    student fields. The audit action is ``role_changed`` when the role changed, else ``updated``.

    Raises :class:`AccountNotFound`, :class:`AccountConflict`, :class:`AccountRefused` (role), or
    :class:`AccountError` naming the field.
    """
    given = changes.given()
    role = given.pop("role", None)
    action = ["updated"]

    async def apply(conn: asyncpg.Connection, before: AccountRecord) -> bool:
        changed = False
        if role is not None and role != before.role:
            if STUDENT in (before.role, role):
                raise AccountRefused("A student account cannot change role, nor another account become a student:"
                                     " create a separate account instead.", "role")
            if before.role == ADMIN:
                await _guard_admin_loss(conn, before, actor=actor, doing="remove the admin role from")
            await conn.execute("UPDATE users SET role = $2 WHERE id = $1", user_id, role)
            action[0] = "role_changed"
            changed = True
        student_fields = {k: given[k] for k in ("roll_number", "program", "section") if k in given}
        if student_fields and before.role != STUDENT:
            field_name = next(iter(student_fields))
            raise AccountError(f"Only a student has a {field_name.replace('_', ' ')}.", field_name)
        problem = (display_name_problem(given["display_name"]) if "display_name" in given else None) \
            or (email_problem(given["email"]) if "email" in given else None) \
            or (student_fields_problem(STUDENT, given.get("roll_number", before.roll_number),
                                       given.get("program"), given.get("section")) if student_fields else None)
        if problem is not None:
            raise AccountError(problem[1], problem[0])
        conflict = await _conflict(conn, username=None, email=given.get("email"),
                                   roll_number=given.get("roll_number"), user_id=user_id)
        if conflict is not None:
            raise conflict
        for column in ("display_name", "email"):
            if column in given and given[column] != getattr(before, column):
                await conn.execute(f"UPDATE users SET {column} = $2 WHERE id = $1", user_id, given[column])
                changed = True
        for column, value in student_fields.items():
            if value != getattr(before, column):
                await conn.execute(f"UPDATE students SET {column} = $2 WHERE id = $1", user_id, value)
                changed = True
        return changed

    try:
        return await _change(db, user_id, actor=actor, reason=reason, action=lambda: action[0], apply=apply,
                             admins_lock=role is not None)
    except asyncpg.UniqueViolationError as exc:
        raise AccountConflict("That email or roll number was just taken.") from exc


async def set_role(db: Database, user_id: str, role: Role, *, actor: str, reason: str = "") -> AccountRecord:
    """Give an account another role (:func:`update_user` with only ``role``; see :class:`AccountChanges`)."""
    return await update_user(db, user_id, AccountChanges(role=role), actor=actor, reason=reason)


async def deactivate_user(
    db: Database, user_id: str, *, actor: str, reason: str = "", now: datetime | None = None
) -> AccountRecord:
    """Deactivate an account (it keeps its records) and revoke its refresh tokens. Idempotent."""

    async def apply(conn: asyncpg.Connection, before: AccountRecord) -> bool:
        if not before.active:
            return False
        await _guard_admin_loss(conn, before, actor=actor, doing="deactivate")
        at = now or datetime.now(timezone.utc)
        await conn.execute("UPDATE users SET deactivated_at = $2 WHERE id = $1", user_id, at)
        await conn.execute(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL", user_id, at)
        return True

    return await _change(db, user_id, actor=actor, reason=reason, action="deactivated", apply=apply,
                         admins_lock=True)


async def reactivate_user(db: Database, user_id: str, *, actor: str, reason: str = "") -> AccountRecord:
    """Let a deactivated account log in again. Idempotent."""

    async def apply(conn: asyncpg.Connection, before: AccountRecord) -> bool:
        if before.active:
            return False
        if is_erased(before.id, before.username):  # hub/db/erasure.py: nothing of the person is left
            raise AccountRefused("This student was erased; the account cannot be reactivated. Create a new one.")
        await conn.execute("UPDATE users SET deactivated_at = NULL WHERE id = $1", user_id)
        return True

    return await _change(db, user_id, actor=actor, reason=reason, action="reactivated", apply=apply)


#: Records that must outlive their person: (query given the user id, what it means). Checked in order;
#: the first that finds a row is the refusal. Columns without a foreign key (who registered a device,
#: who acted in the audit log) are only found here.
_KEPT_RECORDS: tuple[tuple[str, str], ...] = (
    ("SELECT 1 FROM attendance WHERE student_id = $1 LIMIT 1", "has attendance records"),
    ("SELECT 1 FROM display_checkins WHERE student_id = $1 LIMIT 1", "has check-in records"),
    ("SELECT 1 FROM checkin_flags WHERE student_id = $1 OR reviewed_by = $1 LIMIT 1", "has check-in flags"),
    ("SELECT 1 FROM leave_applications WHERE student_id = $1 OR decided_by = $1 OR cancelled_by = $1 LIMIT 1",
     "has leave applications or decisions"),
    ("SELECT 1 FROM correction_requests WHERE student_id = $1 OR decided_by = $1 LIMIT 1",
     "has correction requests or decisions"),
    ("SELECT 1 FROM condonation_applications WHERE student_id = $1 OR decided_by = $1 LIMIT 1",
     "has condonation applications or decisions"),
    ("SELECT 1 FROM courses WHERE faculty_id = $1 UNION ALL SELECT 1 FROM faculty_assignments WHERE faculty_id = $1"
     " LIMIT 1", "teaches courses"),
    ("SELECT 1 FROM class_sessions WHERE created_by = $1 OR opened_by = $1 OR closed_by = $1"
     " UNION ALL SELECT 1 FROM session_events WHERE actor = $1 LIMIT 1", "created, opened or closed class sessions"),
    ("SELECT 1 FROM devices WHERE registered_by = $1 OR rotated_by = $1 OR revoked_by = $1"
     " UNION ALL SELECT 1 FROM device_commands WHERE issued_by = $1 LIMIT 1", "registered or managed devices"),
    ("SELECT 1 FROM tickets WHERE assignee = $1 OR reported_by = $1"
     " UNION ALL SELECT 1 FROM ticket_comments WHERE author = $1"
     " UNION ALL SELECT 1 FROM ticket_events WHERE actor = $1 LIMIT 1", "has maintenance tickets"),
    ("SELECT 1 FROM webhook_subscriptions WHERE created_by = $1 LIMIT 1", "created webhooks"),
    ("SELECT 1 FROM audit_log WHERE actor = $1 OR student_id = $1 LIMIT 1", "has entries in the audit log"),
)
#: Per-user state that goes with the account: current, not a record of what happened.
_DISPOSABLE = ("refresh_tokens", "notifications")
_DISPOSABLE_STUDENT = ("enrolments", "attendance_warnings", "leave_sessions")


async def delete_user(db: Database, user_id: str, *, actor: str, reason: str = "") -> DeleteOutcome:
    """Delete an account made by mistake, or refuse when records must be kept about it.

    A refusal says why ("has attendance records; deactivate the account instead") and changes
    nothing. Raises :class:`AccountNotFound`, or :class:`AccountRefused` for oneself and the last
    active admin. Tables added later that reference users without ``ON DELETE CASCADE`` refuse too,
    naming the table.
    """

    async def work(conn: asyncpg.Connection) -> DeleteOutcome:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADMINS_LOCK)
        before = await _account_in(conn, user_id, lock=True)
        await _guard_admin_loss(conn, before, actor=actor, doing="delete")
        for sql, why in _KEPT_RECORDS:
            if await conn.fetchval(sql, user_id):
                return DeleteOutcome(False, f"The account {why}; deactivate it instead.")
        try:
            async with conn.transaction():  # a savepoint: a refused delete leaves nothing half done
                if before.role == STUDENT:
                    for table in _DISPOSABLE_STUDENT:
                        await conn.execute(f"DELETE FROM {table} WHERE student_id = $1", user_id)
                    await conn.execute("DELETE FROM students WHERE id = $1", user_id)
                for table in _DISPOSABLE:
                    await conn.execute(f"DELETE FROM {table} WHERE user_id = $1", user_id)
                await conn.execute("DELETE FROM users WHERE id = $1", user_id)
        except asyncpg.ForeignKeyViolationError as exc:
            return DeleteOutcome(False, f"The account has records in {exc.table_name or 'another table'};"
                                        " deactivate it instead.")
        await record(conn, actor=actor, action="deleted", entity="user", entity_id=user_id,
                     before=before.audit_state(), reason=reason)
        return DeleteOutcome(True)

    return await db.run(work, transaction=True)




async def create_admin(db: Database, account: NewAccount, *, actor: str, force: bool = False) -> AccountRecord:
    """Create an admin account; unless ``force``, only while no active admin exists (the first one).

    Two concurrent calls cannot both create a first admin: the check and the insert run under one
    transaction-scoped advisory lock. Raises :class:`AccountRefused` when an admin exists,
    :class:`AccountConflict` for a taken username or email.
    """
    if account.role != ADMIN:
        raise ValueError("create_admin creates admins")

    async def work(conn: asyncpg.Connection) -> AccountRecord:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADMINS_LOCK)
        existing = await conn.fetchval(
            "SELECT count(*) FROM users WHERE role = $1 AND deactivated_at IS NULL", ADMIN)
        if existing and not force:
            raise AccountRefused(f"{existing} active admin account(s) exist already; give --force to add another.")
        return await insert_account(conn, account, secrets=db.secrets, actor=actor,
                                    reason="first admin" if not existing else "admin added with --force")

    return await db.run(work, transaction=True)
