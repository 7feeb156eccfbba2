"""What backups and restores ask of the database: its version, whether it is empty, row counts, the lock.

The dump and restore themselves run PostgreSQL's own tools (hub/adapters/pg_dump.py);
these are the queries around them.

Concurrency contract: plain coroutines over a :class:`Database` (any task);
:func:`backup_lock` holds a dedicated connection (not one of the pool's) for
as long as its block runs, and releases the lock by closing it, also on cancel.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import asyncpg

from . import advisory
from ._pool import Database
from .advisory import session_lock

#: Session advisory lock of scheduled backups: one hub process runs each one (key in hub/db/advisory.py).
BACKUP_LOCK = advisory.BACKUP_LOCK

_SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema', 'pg_toast')"

#: Anything a restore would collide with: relations, functions and types in non-system schemas,
#: schemas other than ``public``, and extensions other than the built-in plpgsql.
_USER_OBJECTS_SQL = f"""
SELECT kind || ' ' || name AS object FROM (
    SELECT 'relation' AS kind, n.nspname || '.' || c.relname AS name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname NOT IN {_SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast%'
    UNION ALL
    SELECT 'function', n.nspname || '.' || p.proname
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname NOT IN {_SYSTEM_SCHEMAS}
    UNION ALL
    SELECT 'type', n.nspname || '.' || t.typname
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname NOT IN {_SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast%'
    UNION ALL
    SELECT 'schema', nspname FROM pg_namespace
     WHERE nspname NOT IN {_SYSTEM_SCHEMAS} AND nspname <> 'public'
       AND nspname NOT LIKE 'pg_temp%' AND nspname NOT LIKE 'pg_toast%'
    UNION ALL
    SELECT 'extension', extname FROM pg_extension WHERE extname <> 'plpgsql'
) o ORDER BY 1 LIMIT $1
"""

#: Every table that holds rows: ordinary tables and the leaf partitions of partitioned ones
#: (relkind 'r'; a partitioned parent, 'p', stores nothing itself).
_TABLES_SQL = f"""
SELECT format('%I.%I', n.nspname, c.relname) AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname NOT IN {_SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg_temp%'
 ORDER BY 1
"""


async def server_version(db: Database) -> tuple[int, str]:
    """The server's major version and its full version text (e.g. ``(15, "15.20 (Debian ...)")``)."""
    number = int(await db.fetchval("SHOW server_version_num"))
    return number // 10000, str(await db.fetchval("SHOW server_version"))


async def user_objects(db: Database, *, limit: int = 5) -> list[str]:
    """Up to ``limit`` objects a restore would collide with (``[]``: the database is empty)."""
    return [row["object"] for row in await db.fetch(_USER_OBJECTS_SQL, limit)]


async def table_row_counts(db: Database) -> dict[str, int]:
    """Exact row count of every table (leaf partitions included, by their own names), from one snapshot."""

    async def work(conn: asyncpg.Connection) -> dict[str, int]:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            names = [row["name"] for row in await conn.fetch(_TABLES_SQL)]
            # Names come from format('%I.%I'): quoted identifiers, safe to splice.
            return {name: int(await conn.fetchval(f"SELECT count(*) FROM ONLY {name}")) for name in names}

    return await db.run(work)


@asynccontextmanager
async def backup_lock(db: Database) -> AsyncIterator[bool]:
    """Try the backup lock for the block: yields True if this process holds it, False if another does.

    The lock is a session advisory lock on a connection of its own (:func:`hub.db.advisory.session_lock`),
    so a long dump does not hold one of the pool's connections and a crash (the connection
    dropping) releases it.
    """
    async with session_lock(db, BACKUP_LOCK) as held:
        yield held is not None
