"""Versioned SQL migrations: ``hub/db/migrations/NNNN_name.sql``, applied in order, once each."""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from ._pool import Database

_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every hub of a deployment.
_ADVISORY_LOCK = 0x43414D50


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("hub.db").joinpath("migrations").iterdir():
        match = _NAME_RE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


async def migrate(db: Database) -> list[Migration]:
    """Apply every migration not yet applied, each in its own transaction.

    Safe to call from several hubs at once: an advisory lock serialises them.
    Returns the migrations applied by this call.
    """
    migrations = available_migrations()

    async def work(conn: asyncpg.Connection) -> list[Migration]:
        await conn.execute("SELECT pg_advisory_lock($1)", _ADVISORY_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            applied = []
            for migration in migrations:
                if migration.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version, migration.name,
                    )
                applied.append(migration)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _ADVISORY_LOCK)

    return await db.run(work)
