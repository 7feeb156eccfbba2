"""Which columns hold secrets sealed with the campus key, what each is bound to, and the passes over them.

Every secret stored in PostgreSQL is a blob of hub/core/secrets_box.py (AES-256-GCM under the
campus key, the key id in its second byte), bound to its row by a context declared here once
(``*_context``): the functions that store and load each column (hub/db/provisioning.py,
device_registry.py, students.py, users.py, webhooks.py, leave.py, mfa.py, assignments.py,
submissions.py, the seed) use them.

Two passes, each in short transactions of ``batch`` rows (locks held for one batch only, so the
hub keeps running while they work):

- :func:`seal_pending`: seals the plaintext left by rows written before migration 0025 (SQL
  has no key, so it could not) and sets the plaintext column NULL. Idempotent; run at every
  hub start and by ``campushub migrate``.
- :func:`reseal`: re-seals every blob not under the current key (``campushub keys rotate``).
  A blob that does not open is counted and left as it is, never lost.

:func:`key_counts` says how many rows each key id (and plaintext) holds (``campushub keys status``).

Concurrency contract: the passes may run while hubs serve and while another pass runs: each batch
locks its rows (``FOR UPDATE``) before reading them, so a concurrent writer (a device key rotated
from the web) waits for one batch at most, and the pass never overwrites a newer value.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import asyncpg

from hub.core.secrets_box import SecretsBox, SecretsBoxError

from ._pool import Database

#: Rows per transaction of a pass (documents: a few MiB each, so fewer).
SECRET_BATCH = 500
DOCUMENT_BATCH = 4


def device_key_context(device_id: str) -> bytes:
    """What a device's sealed HMAC key (``devices.key_sealed``) is bound to."""
    return b"device-key:" + device_id.encode()


def token_secret_context(student_id: str) -> bytes:
    """What a student's sealed check-in token secret (``students.token_secret_sealed``) is bound to."""
    return b"token-secret:" + student_id.encode()


def webhook_secret_context(subscription_id: int) -> bytes:
    """What a webhook subscription's sealed signing secret (``webhook_subscriptions.secret_sealed``) is bound to."""
    return b"webhook-secret:" + str(subscription_id).encode()


def leave_document_context(leave_id: int) -> bytes:
    """What a leave application's sealed document (``leave_documents.data_sealed``) is bound to."""
    return b"leave-document:" + str(leave_id).encode()


def submission_file_context(file_id: int) -> bytes:
    """What a file of a student's submitted work (``submission_files.data_sealed``) is bound to."""
    return b"submission-file:" + str(file_id).encode()


def assignment_attachment_context(attachment_id: int) -> bytes:
    """What a file attached to an assignment's instructions (``assignment_attachments.data_sealed``) is bound to."""
    return b"assignment-attachment:" + str(attachment_id).encode()


def hub_signing_key_context(alg: str) -> bytes:
    """What the hub's sealed command-signing private key (``hub_signing_keys.private_key_sealed``) is bound to."""
    return b"hub-signing-key:" + alg.encode()


def totp_context(user_id: str) -> bytes:
    """What a user's sealed TOTP seed (``user_mfa.secret_sealed``) is bound to: it opens for this user only."""
    return b"totp:" + user_id.encode()


@dataclass(frozen=True)
class SealedColumn:
    """A secret column: ``sealed`` holds the blob; ``plaintext`` the secret rows written before 0025 held."""

    table: str
    key: str
    sealed: str
    context: Callable[[Any], bytes]
    #: The pre-0025 plaintext column (NULL once sealed); None if the secret was always sealed.
    plaintext: str | None = None
    #: Which rows hold a secret at all (ed25519 devices keep a public key, not a secret).
    where: str = "true"
    #: The plaintext column is text (sealed as UTF-8).
    text: bool = False
    document: bool = False

    @property
    def name(self) -> str:
        return f"{self.table}.{self.sealed}"


#: Every sealed column of the schema. A new secret column is declared here, so the passes, the
#: status and the dump scan test (tests/db/test_sealed_secrets.py) cover it.
SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    SealedColumn("devices", "id", "key_sealed", device_key_context, "key", where="alg = 'hmac-sha256'"),
    SealedColumn("students", "id", "token_secret_sealed", token_secret_context, "token_secret"),
    SealedColumn("webhook_subscriptions", "id", "secret_sealed", webhook_secret_context, "secret", text=True),
    SealedColumn("user_mfa", "user_id", "secret_sealed", totp_context),
    SealedColumn("leave_documents", "leave_id", "data_sealed", leave_document_context, "data", document=True),
    SealedColumn("submission_files", "id", "data_sealed", submission_file_context, document=True),
    SealedColumn("assignment_attachments", "id", "data_sealed", assignment_attachment_context, document=True),
    SealedColumn("hub_signing_keys", "alg", "private_key_sealed", hub_signing_key_context, "private_key"),
)


def _key_id_sql(column: SealedColumn) -> str:
    """The key id of a blob (its second byte), read from its first two bytes only: PostgreSQL then
    fetches a slice of a large out-of-line value (a document) instead of all of it."""
    return f"get_byte(substring({column.sealed} from 1 for 2), 1)"


def _seal(box: SecretsBox, column: SealedColumn, row_key: Any, plaintext: bytes) -> bytes:
    context = column.context(row_key)
    return box.encrypt_document(plaintext, context) if column.document else box.encrypt(plaintext, context)


async def seal_pending(db: Database, *, batch: int = SECRET_BATCH) -> dict[str, int]:
    """Seal every plaintext secret left from before migration 0025; returns rows sealed per column.

    Idempotent: a second run (or a second hub starting at the same time) finds nothing left.
    """
    sealed: dict[str, int] = {}
    for column in SEALED_COLUMNS:
        if column.plaintext is None:
            continue
        size = DOCUMENT_BATCH if column.document else batch
        select = (f"SELECT {column.key} AS k, {column.plaintext} AS p FROM {column.table}"
                  f" WHERE {column.plaintext} IS NOT NULL AND ({column.where})"
                  f" ORDER BY {column.key} LIMIT {size} FOR UPDATE SKIP LOCKED")
        update = f"UPDATE {column.table} SET {column.sealed} = $2, {column.plaintext} = NULL WHERE {column.key} = $1"

        async def one_batch(conn: asyncpg.Connection, column: SealedColumn = column, select: str = select,
                            update: str = update) -> int:
            rows = await conn.fetch(select)
            await conn.executemany(update, [
                (r["k"], _seal(db.secrets, column, r["k"], r["p"].encode() if column.text else bytes(r["p"])))
                for r in rows])
            return len(rows)

        total = 0
        while done := await db.run(one_batch, transaction=True):
            total += done
        sealed[column.name] = total
    return sealed


@dataclass(frozen=True)
class ResealReport:
    """One column's re-seal: rows moved to the current key, and rows whose blob did not open (left as they are)."""

    column: str
    resealed: int
    unopenable: int


async def reseal(db: Database, *, batch: int = SECRET_BATCH) -> list[ResealReport]:
    """Re-seal every blob not under the campus key's current key id, column by column, batch by batch.

    Each row is visited once (in primary-key order), so a blob that does not open (sealed by a key
    this hub lacks, or corrupt) is reported in ``unopenable`` and the pass goes on.
    """
    reports = []
    for column in SEALED_COLUMNS:
        size = DOCUMENT_BATCH if column.document else batch
        # Keyset pagination on the primary key (its index): the first batch, then the rows after the last one.
        select = (f"SELECT {column.key} AS k, {column.sealed} AS s FROM {column.table}"
                  f" WHERE {column.sealed} IS NOT NULL AND {_key_id_sql(column)} <> $1 {{after}}"
                  f" ORDER BY {column.key} LIMIT {size} FOR UPDATE")
        update = f"UPDATE {column.table} SET {column.sealed} = $2 WHERE {column.key} = $1"

        async def one_batch(conn: asyncpg.Connection, *, after: Any, column: SealedColumn = column,
                            select: str = select, update: str = update) -> tuple[int, int, Any]:
            if after is None:
                rows = await conn.fetch(select.format(after=""), db.secrets.current_key_id)
            else:
                rows = await conn.fetch(select.format(after=f"AND {column.key} > $2"), db.secrets.current_key_id, after)
            changed, unopenable = [], 0
            for r in rows:
                try:
                    plaintext = db.secrets.decrypt(bytes(r["s"]), column.context(r["k"]))
                except SecretsBoxError:
                    unopenable += 1
                    continue
                changed.append((r["k"], _seal(db.secrets, column, r["k"], plaintext)))
            await conn.executemany(update, changed)
            return len(changed), unopenable, (rows[-1]["k"] if rows else None)

        resealed = unopenable = 0
        after: Any = None
        while True:
            done, failed, last = await db.run(partial(one_batch, after=after), transaction=True)
            if last is None:
                break
            resealed, unopenable, after = resealed + done, unopenable + failed, last
        reports.append(ResealReport(column.name, resealed, unopenable))
    return reports


@dataclass(frozen=True)
class KeyCount:
    """How many rows of a sealed column are under ``key_id`` (``None``: still plaintext, not sealed yet)."""

    column: str
    key_id: int | None
    rows: int


async def key_counts(db: Database) -> list[KeyCount]:
    """Rows per key id (and plaintext rows waiting for :func:`seal_pending`) of every sealed column."""
    counts = []
    for column in SEALED_COLUMNS:
        for r in await db.fetch(f"SELECT {_key_id_sql(column)} AS key_id, count(*) AS n FROM {column.table}"
                                f" WHERE {column.sealed} IS NOT NULL GROUP BY 1 ORDER BY 1"):
            counts.append(KeyCount(column.name, r["key_id"], r["n"]))
        if column.plaintext is not None:
            pending = await db.fetchval(f"SELECT count(*) FROM {column.table}"
                                        f" WHERE {column.plaintext} IS NOT NULL AND ({column.where})")
            if pending:
                counts.append(KeyCount(column.name, None, pending))
    return counts


async def campus_key_problems(db: Database) -> list[str]:
    """Why the campus key cannot open this database's secrets (empty: it can), for a clear stop at start.

    Opens one blob per column and key id in use: a key id the campus key lacks, or a key under the
    right id that does not open (another deployment's key file, a regenerated one), is named here.
    """
    problems = []
    for count in await key_counts(db):
        if count.key_id is None:
            continue
        column = next(c for c in SEALED_COLUMNS if c.name == count.column)
        if count.key_id not in db.secrets.key_ids:
            problems.append(f"{count.rows} row(s) of {column.name} are sealed with key {count.key_id}, "
                            f"which the campus key lacks (it has {', '.join(map(str, db.secrets.key_ids))})")
            continue
        row = await db.fetchrow(f"SELECT {column.key} AS k, {column.sealed} AS s FROM {column.table}"
                                f" WHERE {_key_id_sql(column)} = $1 LIMIT 1", count.key_id)
        if row is None:  # deleted meanwhile
            continue
        try:
            db.secrets.decrypt(bytes(row["s"]), column.context(row["k"]))
        except SecretsBoxError:
            problems.append(f"{column.name}: key {count.key_id} of the campus key does not open what key "
                            f"{count.key_id} sealed (another deployment's or a regenerated key?)")
    return problems


async def ensure_campus_key_fits(db: Database) -> None:
    """``ValueError`` naming :func:`campus_key_problems` if there are any: the hub's start and ``campushub
    migrate`` call it before :func:`seal_pending`, so two different keys never seal under one key id."""
    problems = await campus_key_problems(db)
    if problems:
        raise ValueError("the campus key (CAMPUSHUB_MASTER_KEY or its key file) does not fit this database: "
                         + "; ".join(problems))
