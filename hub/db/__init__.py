"""The database adapter: the only package that talks to PostgreSQL."""
from ._migrate import Migration, available_migrations, migrate
from ._pool import Database, asyncio_loop, open_database, run_with_database, wait_for_database

__all__ = [
    "Database", "Migration", "asyncio_loop", "available_migrations", "migrate", "open_database",
    "run_with_database", "wait_for_database",
]
