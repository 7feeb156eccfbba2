"""PostgreSQL LISTEN for trio tasks: what one hub worker hears of another's commits.

Several hub workers share one database (issue 13 part 2). A row written by one
worker that another must act on (a command to publish, a quarantine to time) is
announced by a ``NOTIFY`` sent by a trigger in the writing transaction (migration
0038): PostgreSQL delivers it at the commit, to every session listening on the
channel, the writer's own process included. Channels, one place:

- :data:`DEVICE_COMMAND_CHANNEL`: a ``device_commands`` row was inserted; payload: its id.
- :data:`QUARANTINE_CHANNEL`: a ``device_quarantines`` row was written; payload: JSON
  ``{"device_id", "until", "released", "by"}``.
- :data:`DEVICE_ROOMS_CHANNEL`: devices were registered, moved, revoked or deleted
  (migration 0039, one per statement); payload: empty.

A notification is a hint, not a queue: one sent while nobody listens (the
connection was down) is lost, so whoever listens re-reads the table whenever it
(re)connects (``on_connected`` of :func:`keep_listening`).

A LISTEN needs a connection of its own, never a pooled one (a pooled connection
is reset when given back, which ends its LISTENs): :func:`own_connection`.

Concurrency contract: ``on_notify`` callbacks run on the trio side, synchronously
(``TrioToken.run_sync_soon``), in notification order; they must not block (an
actor's ``try_tell``, or noting work in a set). :func:`keep_listening` is a task
that runs until cancelled; its connection is closed in a shielded ``finally``.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Awaitable, Callable

import asyncpg
import trio
import trio_asyncio

from ._pool import Database

log = logging.getLogger("hub.db.pg_listen")

#: NOTIFY channel of new ``device_commands`` rows (migration 0038; payload: the command's id).
DEVICE_COMMAND_CHANNEL = "campushub_device_command"
#: NOTIFY channel of written ``device_quarantines`` rows (migration 0038; payload: JSON).
QUARANTINE_CHANNEL = "campushub_device_quarantine"
#: NOTIFY channel of changes to which devices exist and in which room (migration 0039; payload: empty).
DEVICE_ROOMS_CHANNEL = "campushub_device_rooms"

#: What opening or using a connection raises when PostgreSQL cannot be reached (or dropped us).
UNREACHABLE: tuple[type[BaseException], ...] = (OSError, TimeoutError, asyncpg.PostgresError,
                                                asyncpg.InterfaceError)
#: How long closing a connection of our own may take before it is terminated.
CLOSE_TIMEOUT_S = 5.0
#: How long opening one may take (asyncpg's default is 60 s).
CONNECT_TIMEOUT_S = 10.0
#: The server's TCP keepalives on our own connections (their defaults leave it to the kernel, ~2 h):
#: a worker whose machine dies or drops off the network holds its advisory locks and LISTENs until
#: PostgreSQL sees its connection is dead, here within about 25 s.
OWN_CONNECTION_SETTINGS = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5",
                           "tcp_keepalives_count": "3"}


@asynccontextmanager
async def own_connection(db: Database, *, close_timeout_s: float = CLOSE_TIMEOUT_S
                         ) -> AsyncIterator[asyncpg.Connection]:
    """A new connection to ``db.dsn`` for the block (not one of the pool's), closed however the block
    ends: in a shielded ``finally``, terminated after ``close_timeout_s``. Raises what
    ``asyncpg.connect`` raises (:data:`UNREACHABLE`)."""
    conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(
        db.dsn, timeout=CONNECT_TIMEOUT_S, server_settings=OWN_CONNECTION_SETTINGS)
    try:
        yield conn
    finally:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(close_timeout_s) as scope:
                await trio_asyncio.aio_as_trio(conn.close)()
            if scope.cancelled_caught:
                conn.terminate()


def closed_event(conn: asyncpg.Connection) -> trio.Event:
    """An event set once ``conn`` closes: dropped by the server or the network, or closed by us.
    Call it from the trio task that owns ``conn``."""
    token = trio.lowlevel.current_trio_token()
    closed = trio.Event()
    conn.add_termination_listener(lambda _conn: token.run_sync_soon(closed.set))
    return closed


async def listen_on(conn: asyncpg.Connection, channel: str, on_notify: Callable[[str], None]) -> None:
    """LISTEN on ``channel`` on ``conn`` (a connection of our own); each notification's payload is handed
    to ``on_notify`` on the trio side (see the module's concurrency contract)."""
    token = trio.lowlevel.current_trio_token()

    def heard(_conn: object, _pid: int, _channel: str, payload: str) -> None:  # asyncio side
        token.run_sync_soon(on_notify, payload)

    await trio_asyncio.aio_as_trio(conn.add_listener)(channel, heard)


async def keep_listening(
    db: Database, channel: str, on_notify: Callable[[str], None], on_connected: Callable[[], Awaitable[None]], *,
    retry_s: float, name: str, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """LISTEN on ``channel`` for as long as this task runs, on a connection of its own, reconnecting
    after ``retry_s`` when it drops or cannot be opened.

    ``on_connected`` is awaited after each (re)LISTEN, before anything is missed from then on: the
    caller re-reads what it may have missed. It reports started (``nursery.start``) after the first
    attempt, whether it connected or not. An :data:`UNREACHABLE` error of ``on_connected`` counts
    as a dropped connection; any other propagates.
    """
    reported = False
    while True:
        try:
            async with own_connection(db) as conn:
                dropped = closed_event(conn)
                await listen_on(conn, channel, on_notify)
                await on_connected()
                if not reported:
                    reported = True
                    task_status.started()
                await dropped.wait()
                log.warning("%s: the LISTEN connection dropped; listening again in %.0f s", name, retry_s)
        except UNREACHABLE as exc:
            log.warning("%s: cannot LISTEN (%s); trying again in %.0f s", name, exc, retry_s)
        if not reported:
            reported = True
            task_status.started()
        await trio.sleep(retry_s)
