"""PostgreSQL advisory locks: every key in one place, and one way to hold a session lock on a connection of its own.

Keys. A session or transaction advisory lock on one bigint key is shared by
every process on the database, so two features that pick the same number
would shut each other out. Every fixed key is declared here (tests/db/test_advisory.py
checks that they differ); the modules that use them keep their own names
(``hub.db.backup.BACKUP_LOCK`` is :data:`BACKUP_LOCK`). Locks keyed by
``hashtext(...)`` of an id (rooms, timetables, grade sheets) are 32-bit hashes
of their own prefix and stay where they are used; two-key locks
(``pg_advisory_xact_lock(int, int)``) live in a space of their own in PostgreSQL.

:func:`session_lock` is how a process holds a lock for a long block of trio
work that uses other connections meanwhile (a dump, a training, an actor's
life): on a dedicated connection, never one of the pool's, so the block does
not hold a pooled connection and a crash (the connection dropping) releases it.
Retention and telemetry passes do not use it: their lock covers DDL they run
on that very connection (with its ``lock_timeout``) inside one ``Database.run``,
and asyncpg's reset on giving a pooled connection back (``pg_advisory_unlock_all``)
releases it even on cancel.

Concurrency contract: :func:`session_lock` may be used from any trio task;
each use opens its own connection, closed in a shielded ``finally`` (after 5 s
it is terminated), which releases the lock also when the caller is cancelled.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import asyncpg
import trio
import trio_asyncio

from ._pool import Database

# --- session locks held by one hub process at a time (try-lock: a second process skips) ---------
#: Scheduled backups (hub/db/backup.py).
BACKUP_LOCK = 0x4348_4250  # "CHBP"
#: Telemetry anomaly passes (hub/db/anomalies.py).
ANOMALY_LOCK = 0x414E_4F4D  # "ANOM"
#: Assignment due-date reminders and their LISTEN (hub/db/submissions.py).
REMINDER_LOCK = 0x4153_524D  # "ASRM"
#: The risk model's trainer (hub/db/risk.py).
TRAINER_LOCK = 0x5249_534B  # "RISK"
#: Retention passes, on the pass's pooled connection (hub/db/retention.py).
RETENTION_LOCK = 0x5245_5445  # "RETE"
#: Telemetry maintenance passes, on the pass's pooled connection (hub/db/telemetry.py).
TELEMETRY_LOCK = 0x5445_4C45  # "TELE"
#: Migrations: a blocking session lock, so a second process waits for the first (hub/db/_migrate.py).
MIGRATE_LOCK = 0x4341_4D50  # "CAMP"

# --- transaction locks (pg_advisory_xact_lock), listed so that no session key takes their numbers ----
#: Demo seeding (hub/db/seed/__init__.py).
SEED_LOCK = 0x5345_4544  # "SEED"
#: Past-term seeding (hub/db/seed/past_terms.py).
PAST_TERMS_LOCK = 0x5041_5354  # "PAST"
#: Assignment submissions of one student (with a second key: hub/db/submissions.py).
SUBMIT_LOCK = 0x4153_5542  # "ASUB"
#: The last admin may not be removed (hub/db/users.py).
ADMINS_LOCK = 0x4341_4D50_5553_0001
#: The terminal roster (hub/db/terminal_roster.py).
ROSTER_LOCK = 0x4341_4D50_5553_0020
#: The audit archive (hub/db/audit_archive.py).
AUDIT_ARCHIVE_LOCK = 0x4341_4D50_4155_0024
#: The attendance audit chain (hub/db/attendance.py).
AUDIT_CHAIN_LOCK = 4702111234474983745
#: First key of one student's leave requests (the second is the student: hub/db/leave.py).
LEAVE_LOCK_CLASS = 0x4C45_4156  # "LEAV"

#: Every fixed key above by name: tests check they are distinct and that each module uses its own.
KEYS: dict[str, int] = {
    name: value for name, value in list(globals().items())
    if (name.endswith("_LOCK") or name.endswith("_LOCK_CLASS")) and isinstance(value, int)
}

#: How long closing the lock's connection may take before it is terminated (the lock goes with it).
CLOSE_TIMEOUT_S = 5.0


@asynccontextmanager
async def session_lock(db: Database, key: int) -> AsyncIterator[asyncpg.Connection | None]:
    """Try the session advisory lock ``key`` for the block, on a new connection to ``db.dsn``.

    Yields that connection while this process holds the lock (the caller may use it, e.g. to
    LISTEN, through ``trio_asyncio.aio_as_trio``), or None at once if another session holds it.
    The connection is closed when the block ends, however it ends: that releases the lock. Raises
    ``OSError`` or an asyncpg error if PostgreSQL cannot be reached.
    """
    conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(db.dsn)
    try:
        held = bool(await trio_asyncio.aio_as_trio(conn.fetchval)("SELECT pg_try_advisory_lock($1)", key))
        yield conn if held else None
    finally:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CLOSE_TIMEOUT_S) as scope:
                await trio_asyncio.aio_as_trio(conn.close)()
            if scope.cancelled_caught:
                conn.terminate()
