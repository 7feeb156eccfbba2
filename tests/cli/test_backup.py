"""``campushub backup`` / ``restore``: a seeded campus survives the round trip table by table, its audit
chain verifies in the restored database, and damaged files, wrong keys and non-empty targets are refused
with the target left untouched. Real PostgreSQL, real pg_dump/pg_restore."""
from __future__ import annotations

import base64
import io
import os
import shutil
import stat
import struct
import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hub.adapters.backup_format import KEY_PURPOSE, BackupFormatError, parse_header
from hub.adapters.pg_dump import BackupError, backup, find_pg_tools, libpq_target, read_metadata, restore
from hub.app.backup_cli import tool_dirs
from hub.app.cli import main
from hub.core.config import Settings
from hub.core.records import Commit, SensorRow, internal_key
from hub.db import Database, migrate, open_database, run_with_database
from hub.db.attendance import AttendanceChange, apply_attendance_changes
from hub.db.audit import verify_chain
from hub.db.backup import server_version, table_row_counts, user_objects
from hub.db.ingest import write_batch
from hub.db.seed import course_id, ensure_campus
from hub.db.seed.insights import ensure_insights_demo
from hub.db.telemetry import ensure_partitions
from hub.embedded import client_tools_dir, start_embedded_postgres

pytestmark = pytest.mark.integration

#: Every table's content as one digest: equal digests mean equal rows, not only equal counts.
_CONTENT_SQL = "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM ONLY {} t"


def _seed(url: str) -> None:
    """A campus with history: attendance (hash-chained audit entries) and sensor readings in day partitions."""
    now = datetime.now(timezone.utc)

    async def work(db: Database) -> None:
        campus = await ensure_campus(db, rooms=2, students=12, now=now)
        await ensure_insights_demo(db, course_id=course_id(1), now=now)
        session = campus.sessions[0]

        async def change(conn) -> None:
            for status in ("present", "late", "excused"):
                await apply_attendance_changes(conn, [
                    AttendanceChange(session.session_id, s, status, "manual") for s in session.enrolled[:3]],
                    actor="usr-admin", reason=f"backup test {status}")

        await db.run(change, transaction=True)
        await ensure_partitions(db, now)
        device = campus.devices[0].device_id
        rows = tuple(SensorRow(uuid.uuid4(), device, "temperature", 20.0 + i / 10, "°C", now - timedelta(minutes=i))
                     for i in range(60))
        await write_batch(db, [Commit(internal_key(), rows)])

    run_with_database(url, work)


def _content(url: str) -> dict[str, tuple[int, str]]:
    async def work(db: Database) -> dict[str, tuple[int, str]]:
        counts = await table_row_counts(db)
        return {name: (count, await db.fetchval(_CONTENT_SQL.format(name))) for name, count in counts.items()}

    return run_with_database(url, work)


def _cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CAMPUSHUB_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def _backup_of(url: str, path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CAMPUSHUB_DATABASE_URL", url)
    code, err = _cli(capsys, "backup", "--output", str(path))
    assert code == 0, err


def test_round_trip_restores_every_table_and_the_audit_chain(
        fresh_database_url: str, empty_database_url: str, cli_env: Path, capsys, monkeypatch) -> None:
    _seed(fresh_database_url)
    path = cli_env / "campus.chbackup"
    monkeypatch.setenv("CAMPUSHUB_DATABASE_URL", fresh_database_url)
    code, err = _cli(capsys, "backup", "--output", str(path))
    assert code == 0, err
    assert f"wrote {path}" in err and not path.with_name(path.name + ".partial").exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"PGDMP" not in path.read_bytes()  # pg_dump's archive magic: nothing of the archive in the clear

    code, err = _cli(capsys, "restore", "--input", str(path), "--database-url", empty_database_url)
    assert code == 0, err
    assert "audit chain intact" in err

    source, restored = _content(fresh_database_url), _content(empty_database_url)
    assert restored == source  # every table (leaf partitions by name): same rows, same content
    partitions = {name: rows for name, (rows, _) in source.items() if name.startswith("public.sensor_readings_")}
    assert sum(partitions.values()) >= 60, partitions  # the readings live in day partitions, and came back
    assert source["public.audit_log"][0] > 0 and source["public.students"][0] >= 12

    chain_source = run_with_database(fresh_database_url, verify_chain)
    chain_restored = run_with_database(empty_database_url, verify_chain)
    assert chain_restored.ok and chain_restored.entries == chain_source.entries > 0
    assert (chain_restored.head_id, chain_restored.head_hash) == (chain_source.head_id, chain_source.head_hash)
    assert run_with_database(empty_database_url, migrate) == []  # the schema version came back too

    code, err = _cli(capsys, "restore", "--input", str(path), "--verify-only")
    assert code == 0 and "every chunk intact" in err


def test_restore_refuses_a_database_that_is_not_empty(
        database_url: str, fresh_database_url: str, cli_env: Path, capsys, monkeypatch) -> None:
    path = cli_env / "b.chbackup"
    _backup_of(database_url, path, capsys, monkeypatch)
    before = run_with_database(fresh_database_url, table_row_counts)
    code, err = _cli(capsys, "restore", "--input", str(path), "--database-url", fresh_database_url)
    assert code == 1
    assert "the target database is not empty" in err and "restore only into a new, empty database" in err
    assert run_with_database(fresh_database_url, table_row_counts) == before


def test_another_campus_key_is_refused_and_nothing_restored(
        database_url: str, empty_database_url: str, cli_env: Path, capsys, monkeypatch) -> None:
    path = cli_env / "b.chbackup"
    _backup_of(database_url, path, capsys, monkeypatch)
    monkeypatch.setenv("CAMPUSHUB_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    code, err = _cli(capsys, "restore", "--input", str(path), "--database-url", empty_database_url)
    assert code == 1
    assert "refused: chunk 0 does not verify" in err and "another campus key" in err
    assert run_with_database(empty_database_url, user_objects) == []


def test_tampered_and_truncated_files_are_refused_on_the_cli(
        database_url: str, empty_database_url: str, cli_env: Path, capsys, monkeypatch) -> None:
    path = cli_env / "b.chbackup"
    _backup_of(database_url, path, capsys, monkeypatch)
    data = path.read_bytes()
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 0x40
    (cli_env / "tampered").write_bytes(bytes(tampered))
    (cli_env / "truncated").write_bytes(data[: len(data) - 1000])
    for name, reason in (("tampered", "does not verify"), ("truncated", "truncated")):
        code, err = _cli(capsys, "restore", "--input", str(cli_env / name), "--database-url", empty_database_url)
        assert code == 1 and reason in err and "Nothing was restored" in err, err
        code, err = _cli(capsys, "restore", "--input", str(cli_env / name), "--verify-only")
        assert code == 1 and reason in err, err
    assert run_with_database(empty_database_url, user_objects) == []


def _records(data: bytes) -> tuple[bytes, list[bytes]]:
    stream = io.BytesIO(data)
    header = parse_header(stream.read).raw
    records = []
    while length := stream.read(4):
        records.append(length + stream.read(struct.unpack(">I", length)[0]))
    return header, records


async def test_damage_found_while_pg_restore_runs_rolls_the_whole_restore_back(
        db: Database, campus, empty_database_url: str, tmp_path: Path) -> None:
    """16 KiB chunks: pg_restore has already run part of the archive when the damaged chunk is reached;
    it is killed inside its single transaction and the target stays empty."""
    major, version = await server_version(db)
    tools = find_pg_tools(major, tool_dirs(Settings()))
    path = tmp_path / "small-chunks.chbackup"
    await backup(db.dsn, tools, path, server_version=version, chunk_bytes=16 * 1024,
                 derive=lambda salt: db.secrets.derive_key(KEY_PURPOSE, salt=salt))
    header, records = _records(path.read_bytes())
    assert len(records) >= 6, len(records)
    late = len(records) - 2
    damaged = bytearray(records[late])
    damaged[len(damaged) // 2] ^= 0x01
    (tmp_path / "damaged").write_bytes(header + b"".join(records[:late]) + bytes(damaged) + records[-1])
    (tmp_path / "cut").write_bytes(header + b"".join(records[:-1]))

    def key_for(key_id: int, salt: bytes) -> bytes:
        return db.secrets.derive_key(KEY_PURPOSE, key_id=key_id, salt=salt)[1]

    async with open_database(empty_database_url, max_size=2) as target:
        with pytest.raises(BackupFormatError, match=f"chunk {late} does not verify"):
            await restore(tmp_path / "damaged", target.dsn, tools, key_for)
        assert await user_objects(target) == []
        with pytest.raises(BackupFormatError, match="without its final chunk"):
            await restore(tmp_path / "cut", target.dsn, tools, key_for)
        assert await user_objects(target) == []
        await restore(path, target.dsn, tools, key_for)  # the intact file restores into the same database
        assert await table_row_counts(target) == await table_row_counts(db)


def test_tools_of_the_servers_major_version_are_found_or_refused_clearly(database_url: str) -> None:
    major, _ = run_with_database(database_url, server_version)
    dirs = tool_dirs(Settings())
    tools = find_pg_tools(major, dirs)
    assert tools.major == major and tools.pg_dump.name == "pg_dump" and tools.pg_restore.name == "pg_restore"
    with pytest.raises(BackupError, match="no pg_dump/pg_restore of PostgreSQL 99 .*found: .*CAMPUSHUB_PG_BIN_DIR"):
        find_pg_tools(99, dirs)
    embedded = client_tools_dir()
    if embedded is not None:  # the pgserver wheel ships PostgreSQL 16's tools
        assert find_pg_tools(16, [embedded]).major == 16


def test_the_password_goes_to_the_environment_not_the_command_line() -> None:
    url, env = libpq_target("postgresql://hub:p%40ss%2Fword@db.example:5433/campus?sslmode=require")
    assert url == "postgresql://hub@db.example:5433/campus?sslmode=require"
    assert env["PGPASSWORD"] == "p@ss/word"
    assert libpq_target("postgresql://postgres@127.0.0.1/x")[0] == "postgresql://postgres@127.0.0.1/x"


def test_embedded_postgres_16_uses_its_own_tools_and_is_not_restored_into_an_older_server(
        empty_database_url: str, cli_env: Path, capsys, monkeypatch) -> None:
    """The pgserver wheel's PostgreSQL 16 is backed up with its own pg_dump 16 (the machine's are older),
    restores into another PostgreSQL 16 database, and is refused by the test run's older server."""
    pg_dir = Path(tempfile.mkdtemp(prefix="campushub-test-pg-"))  # not tmp_path: see hub.embedded.postgres
    server = start_embedded_postgres(pg_dir)
    try:
        for name in ("source", "target"):
            run_with_database(server.dsn, lambda db, name=name: db.execute(f"CREATE DATABASE {name}"))
        source, target = server.url("source"), server.url("target")
        run_with_database(source, migrate)
        run_with_database(source, lambda db: ensure_campus(db, rooms=1, students=5, now=datetime.now(timezone.utc)))
        path = cli_env / "pg16.chbackup"
        _backup_of(source, path, capsys, monkeypatch)
        assert read_metadata(path)["pg_dump_version"].startswith("16.")

        code, err = _cli(capsys, "restore", "--input", str(path), "--database-url", target)
        assert code == 0, err
        assert run_with_database(target, table_row_counts) == run_with_database(source, table_row_counts)

        older, _ = run_with_database(empty_database_url, server_version)
        if older < 16:  # the local server (Debian's 15 here); an embedded-only run has nothing older
            code, err = _cli(capsys, "restore", "--input", str(path), "--database-url", empty_database_url)
            assert code == 1 and f"the backup is of PostgreSQL 16 and the target server is {older}" in err
            assert run_with_database(empty_database_url, user_objects) == []
    finally:
        server.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)
