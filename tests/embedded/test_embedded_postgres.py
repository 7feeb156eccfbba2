"""hub.embedded.postgres: a real PostgreSQL 16 from the pgserver wheel, started, used, stopped, restarted."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Iterator

import asyncpg
import pytest
import trio

from hub.db import asyncio_loop, migrate, open_database
from hub.embedded import EmbeddedServiceError, probe_postgres, start_embedded_postgres

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """A data dir outside pytest's tmp_path.

    As root the server runs as `pgserver`, which must traverse to the dir, and
    any concurrent pytest session chmods /tmp/pytest-of-root back to 0700.
    """
    path = Path(tempfile.mkdtemp(prefix="campushub-test-pg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def query(dsn: str, sql: str):
    """One value from ``sql``, or the status of a multi-statement script."""

    async def run():
        conn = await asyncpg.connect(dsn)
        try:
            return await (conn.execute(sql) if ";" in sql else conn.fetchval(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def test_start_query_stop_restart_keeps_data(pg_dir: Path) -> None:
    server = start_embedded_postgres(pg_dir)
    try:
        assert server.dsn == f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        assert query(server.dsn, "SELECT version()").startswith("PostgreSQL 16.")
        query(server.dsn, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
        assert probe_postgres(server.dsn, timeout=2.0)
    finally:
        server.stop()
    assert not probe_postgres(server.dsn, timeout=1.0)
    server.stop()  # idempotent

    with start_embedded_postgres(pg_dir) as again:
        assert again.port == server.port  # the previous port is reused when free
        assert query(again.dsn, "SELECT v FROM kept") == "still here"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
def test_as_root_runs_as_the_pgserver_user(pg_dir: Path) -> None:
    import pwd

    with start_embedded_postgres(pg_dir) as server:
        assert pwd.getpwuid((pg_dir / "pgdata").stat().st_uid).pw_name == "pgserver"
        assert query(server.dsn, "SELECT current_setting('data_directory')") == str(pg_dir / "pgdata")


def test_one_owner_per_data_dir(pg_dir: Path) -> None:
    with start_embedded_postgres(pg_dir) as server:
        with pytest.raises(EmbeddedServiceError, match="in use"):
            start_embedded_postgres(pg_dir)
        with pytest.raises(EmbeddedServiceError, match="in use"):
            start_embedded_postgres(pg_dir / "other", port=server.port)


def test_orphan_of_a_killed_owner_is_replaced(pg_dir: Path) -> None:
    # A process that starts the server and dies without stopping it (no atexit).
    script = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from hub.embedded import start_embedded_postgres
        server = start_embedded_postgres(Path({str(pg_dir)!r}))
        print(server.dsn, flush=True)
        os._exit(0)
    """)
    dsn = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                         text=True, timeout=60).stdout.strip()
    assert query(dsn, "SELECT 1") == 1  # still running after its owner died
    orphan_pid = int((pg_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    with start_embedded_postgres(pg_dir) as server:
        assert query(server.dsn, "SELECT 1") == 1
        assert int((pg_dir / "pgdata" / "postmaster.pid").read_text().split()[0]) != orphan_pid


async def test_the_hub_database_adapter_works_on_it(pg_dir: Path) -> None:
    server = await trio.to_thread.run_sync(start_embedded_postgres, pg_dir)
    try:
        async with asyncio_loop():
            async with open_database(server.dsn) as db:
                assert await migrate(db)
                assert await db.fetchval("SELECT count(*) FROM users") == 0
    finally:
        await trio.to_thread.run_sync(server.stop)
