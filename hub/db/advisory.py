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

:func:`hold_session_lock` makes a service *the one owner among the hub's workers*
(issue 13 part 2: every worker runs the whole supervision tree): a background task
of the actor keeps trying the lock, holds it for as long as its connection lives,
and tells the actor each change (:class:`Holding`). A worker that dies closes the
connection, which releases the lock: a standby takes it at its next try. One task
per lock and actor; ``on_change`` is awaited in that task, one call at a time.
"""
from __future__ import annotations

import enum
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable

import asyncpg
import trio
import trio_asyncio

from ._pool import Database
from .pg_listen import CLOSE_TIMEOUT_S, UNREACHABLE, closed_event, own_connection

log = logging.getLogger("hub.db.advisory")

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
#: The hub's one command dispatcher among its workers: publishes and times out every command
#: (hub/pipeline/commands.py, held with :func:`hold_session_lock`).
COMMANDS_LOCK = 0x434D_4453  # "CMDS"
#: The one attendance-warnings actor among the hub's workers (hub/services/warnings.py).
WARNINGS_LOCK = 0x5741_524E  # "WARN"

# --- transaction locks (pg_advisory_xact_lock), listed so that no session key takes their numbers ----
#: Demo seeding (hub/db/seed/__init__.py).
SEED_LOCK = 0x5345_4544  # "SEED"
#: Past-term seeding (hub/db/seed/past_terms.py).
PAST_TERMS_LOCK = 0x5041_5354  # "PAST"
#: Assignment submissions of one student (with a second key: hub/db/submissions.py).
SUBMIT_LOCK = 0x4153_5542  # "ASUB"
#: The last admin may not be removed (hub/db/users.py).
ADMINS_LOCK = 0x4341_4D50_5553_0001
#: The broker's password and ACL files, rendered and written by one hub process at a time
#: (hub/adapters/mosquitto_auth.py), so an older render never overwrites a newer one.
MOSQUITTO_FILES_LOCK = 0x4D51_4649  # "MQFI"
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

@asynccontextmanager
async def session_lock(db: Database, key: int) -> AsyncIterator[asyncpg.Connection | None]:
    """Try the session advisory lock ``key`` for the block, on a new connection to ``db.dsn``.

    Yields that connection while this process holds the lock (the caller may use it, e.g. to
    LISTEN, through ``trio_asyncio.aio_as_trio``), or None at once if another session holds it.
    The connection is closed when the block ends, however it ends: that releases the lock. Raises
    ``OSError`` or an asyncpg error if PostgreSQL cannot be reached.
    """
    async with own_connection(db, close_timeout_s=CLOSE_TIMEOUT_S) as conn:
        held = bool(await trio_asyncio.aio_as_trio(conn.fetchval)("SELECT pg_try_advisory_lock($1)", key))
        try:
            yield conn if held else None
        finally:
            if held and not conn.is_closed():
                # Released before the block ends, not when the server notices the closed connection:
                # a successor started right after (a restarted actor) finds the lock free.
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
                    try:
                        await trio_asyncio.aio_as_trio(conn.execute)("SELECT pg_advisory_unlock($1)", key)
                    except UNREACHABLE:
                        pass  # the connection is going: so is the lock


class Holding(enum.Enum):
    """Where a :func:`hold_session_lock` task stands."""

    #: This process holds the lock (on the connection given with it).
    HELD = "held"
    #: Another session holds it: this process is a standby.
    TAKEN = "taken"
    #: The lock's connection dropped or could not be opened (PostgreSQL unreachable). Nobody is
    #: known to hold it; the task tries again soon (:data:`LOST_RETRY_FIRST_S`, doubling).
    LOST = "lost"


#: ``on_change(state, connection)``: the connection holding the lock with :attr:`Holding.HELD`, else None.
OnHolding = Callable[[Holding, "asyncpg.Connection | None"], Awaitable[None]]
#: After the lock's connection was lost, the first try comes this soon (doubling up to ``retry_s``),
#: so a hub alone on its database gets its lock back within seconds of PostgreSQL's return.
LOST_RETRY_FIRST_S = 1.0


async def hold_session_lock(
    db: Database, key: int, on_change: OnHolding, *, retry_s: float, name: str,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep trying the session advisory lock ``key``; hold it for as long as its connection lives.

    Runs until cancelled (start it in an actor's nursery with ``nursery.start``: it reports started
    after the first attempt and its ``on_change``, so an actor that can hold the lock holds it before
    its first message). ``on_change`` is awaited at every change of :class:`Holding` (``HELD`` once
    per taking: the actor reloads then), in this task, one call at a time; an error it raises that
    means PostgreSQL is unreachable counts as the connection lost, any other crashes the caller.
    While another session holds the lock it looks again every ``retry_s``. The connection is
    :func:`session_lock`'s own (never a pooled one): the caller may LISTEN on it; closing it, on
    cancel too, releases the lock.
    """
    state: Holding | None = None
    reported = False
    lost_delay = LOST_RETRY_FIRST_S

    async def become(new: Holding, conn: asyncpg.Connection | None) -> None:
        nonlocal state
        if new is not state or new is Holding.HELD:
            state = new
            await on_change(new, conn)

    while True:
        delay = retry_s
        try:
            async with session_lock(db, key) as conn:
                if conn is None:
                    await become(Holding.TAKEN, None)
                else:
                    dropped = closed_event(conn)
                    await become(Holding.HELD, conn)
                    if not reported:
                        reported = True
                        task_status.started()
                    lost_delay = LOST_RETRY_FIRST_S
                    await dropped.wait()
                    log.warning("%s: the connection holding its lock dropped; trying again", name)
                    raise ConnectionResetError("the lock's connection dropped")
        except UNREACHABLE as exc:
            if state is not Holding.LOST:
                log.warning("%s: lock unavailable (%s); trying again", name, exc)
            await become(Holding.LOST, None)
            delay, lost_delay = min(lost_delay, retry_s), min(lost_delay * 2, retry_s)
        if not reported:
            reported = True
            task_status.started()
        await trio.sleep(delay)
