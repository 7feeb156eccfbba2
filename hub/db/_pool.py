"""asyncpg under trio, through trio-asyncio. The only module that touches asyncpg's pool.

Concurrency contract: a :class:`Database` is opened by :func:`open_database`
inside a trio task and may then be used from any trio task of that run.
Every method blocks the calling task (never the loop) until PostgreSQL
answers. Cancelling the caller cancels the query; the connection is always
given back to the pool in a shielded ``finally`` (otherwise the pool hangs
on close).

A :class:`Database` carries the campus key (``Database.secrets``,
hub/core/secrets_box.py): the hub/db functions that store or load a sealed
column seal and open with it, so none of their callers handles a blob.
"""
from __future__ import annotations

import asyncio
import heapq
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import asyncpg
import trio
import trio_asyncio

from hub.core.config import Settings
from hub.core.secrets_box import SecretsBox, load_campus_key

T = TypeVar("T")

#: An asyncio coroutine function run on one pooled connection, on the asyncio side.
ConnectionWork = Callable[[asyncpg.Connection], Awaitable[T]]


class Database:
    """A pool of PostgreSQL connections, usable from trio, and the campus key its sealed columns use."""

    def __init__(self, pool: asyncpg.Pool, dsn: str, secrets: SecretsBox) -> None:
        self._pool = pool
        self.dsn = dsn
        #: Seals and opens the secrets stored in this database (see the module docstring).
        self.secrets = secrets

    async def run(self, work: ConnectionWork[T], *, transaction: bool = False) -> T:
        """Run ``work(conn)`` (an asyncio coroutine function) on one connection.

        The whole of ``work`` runs on the asyncio side, so it pays the trio ↔
        asyncio hop once however many queries it makes: batch writes go here.
        With ``transaction=True`` it runs in a transaction that commits when
        ``work`` returns and rolls back if it raises or is cancelled.
        """

        async def on_asyncio() -> T:
            async with self._pool.acquire() as conn:
                if transaction:
                    async with conn.transaction():
                        return await work(conn)
                return await work(conn)

        return await trio_asyncio.aio_as_trio(on_asyncio)()

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await trio_asyncio.aio_as_trio(self._pool.fetch)(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await trio_asyncio.aio_as_trio(self._pool.fetchrow)(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await trio_asyncio.aio_as_trio(self._pool.fetchval)(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        return await trio_asyncio.aio_as_trio(self._pool.execute)(sql, *args)

    async def ping(self) -> bool:
        """True if PostgreSQL answers within 2 s. Never raises."""
        with trio.move_on_after(2):
            try:
                return await self.fetchval("SELECT 1") == 1
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return False
        return False

    @property
    def pool_size(self) -> int:
        return self._pool.get_size()


@asynccontextmanager
async def open_database(
    dsn: str, *, min_size: int = 1, max_size: int = 8, secrets: SecretsBox | None = None,
) -> AsyncIterator[Database]:
    """Open a pool for the duration of the block.

    ``secrets`` is the campus key; ``None`` loads the environment's
    (``CAMPUSHUB_MASTER_KEY`` or the key file, :meth:`Settings.from_env`).
    Must be called inside a trio-asyncio loop (see :func:`hub.db.asyncio_loop`).
    Blocks until the first connection is made; raises ``OSError`` or an
    asyncpg error if PostgreSQL cannot be reached, ``ValueError`` for an unusable campus key.
    """
    if secrets is None:
        secrets = load_campus_key(Settings.from_env())
    pool = await trio_asyncio.aio_as_trio(asyncpg.create_pool)(
        dsn, min_size=min_size, max_size=max_size, command_timeout=60
    )
    try:
        yield Database(pool, dsn, secrets)
    finally:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(10) as scope:
                await trio_asyncio.aio_as_trio(pool.close)()
            if scope.cancelled_caught:
                pool.terminate()


async def wait_for_database(
    dsn: str, *, on_retry: Callable[[BaseException, float], None] | None = None, max_delay_s: float = 5.0,
) -> None:
    """Block until PostgreSQL at ``dsn`` accepts a connection, retrying with backoff.

    Must run inside the trio-asyncio loop. ``on_retry(error, delay)`` is called
    before each wait. Never gives up; cancel it to stop waiting.
    """
    delay = 0.2
    while True:
        try:
            conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(dsn, timeout=5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            if on_retry is not None:
                on_retry(exc, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
            continue
        with trio.CancelScope(shield=True):
            await trio_asyncio.aio_as_trio(conn.close)()
        return


@asynccontextmanager
async def asyncio_loop() -> AsyncIterator[None]:
    """The trio-asyncio loop the database adapter needs; open once near the root."""
    async with trio_asyncio.open_loop() as loop:
        # asyncpg reports stray errors through the loop's exception handler when PostgreSQL drops
        # its connections (a pool "Resetting connection with an active transaction", a future whose
        # ConnectionDoesNotExistError nobody retrieved). trio-asyncio's default handler re-raises
        # them into the loop's nursery, which took the whole hub down on a PostgreSQL restart; the
        # callers already get (and retry) the real errors, so only log these, as plain asyncio does.
        loop.set_exception_handler(_log_asyncio_error)
        loop.run_trio_task(_purge_cancelled_timers, loop)  # in the loop's nursery: ends with the loop
        yield


#: How often :func:`_purge_cancelled_timers` compacts the loop's timer heap.
_TIMER_PURGE_INTERVAL_S = 10.0


async def _purge_cancelled_timers(loop: asyncio.AbstractEventLoop) -> None:
    """Drop cancelled timers from trio-asyncio's timer heap.

    trio-asyncio (0.16) keeps a cancelled ``TimerHandle`` in its heap until its
    deadline passes. asyncpg arms and cancels several per query (its 60 s
    ``command_timeout``, the pool's 300 s idle-connection timer on every release),
    so under steady load the heap, and the hub's memory, grew for five minutes
    before levelling off. A cancelled timer is skipped when it pops anyway, so
    removing it early changes nothing else. Runs on the loop's own trio thread.
    """
    while True:
        await trio.sleep(_TIMER_PURGE_INTERVAL_S)
        timers = getattr(loop, "_timers", None)
        if not isinstance(timers, list):
            return  # another trio-asyncio layout: nothing we know how to purge
        live = [timer for timer in timers if not timer.cancelled()]
        if len(live) < len(timers):
            heapq.heapify(live)
            timers[:] = live


def _log_asyncio_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    asyncio.BaseEventLoop.default_exception_handler(loop, context)  # type: ignore[arg-type]


def run_with_database(dsn: str, work: Callable[[Database], Awaitable[T]], *, secrets: SecretsBox | None = None) -> T:
    """Run ``work(db)`` in a trio run of its own, with a loop and a small pool, for synchronous callers.

    ``secrets``: the campus key, as for :func:`open_database` (default: the environment's).

    Blocks the calling thread; must not be called from inside a trio run. An
    error of ``work`` (or of opening the database) reaches the caller as
    itself, not inside the exception groups of the nurseries it crossed, so a
    CLI can catch ``OSError`` or ``asyncpg.UndefinedTableError`` by type.
    Several errors at once stay a group.
    """

    async def main() -> T:
        async with asyncio_loop(), open_database(dsn, max_size=2, secrets=secrets) as db:
            return await work(db)

    try:
        return trio.run(main)
    except BaseExceptionGroup as group:
        sole = _sole_error(group)
        if sole is None:
            raise
    raise sole  # outside the handler: the group is not its context


def _sole_error(group: BaseExceptionGroup) -> BaseException | None:
    """The one error inside ``group`` and its nested single-error groups; None if there are several."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        if len(error.exceptions) != 1:
            return None
        error = error.exceptions[0]
    return error
