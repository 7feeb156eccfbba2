"""Backups and restores through PostgreSQL's own ``pg_dump`` / ``pg_restore``, sealed on the fly.

``backup`` streams ``pg_dump --format=custom`` (one snapshot: consistent by
itself, while the hub keeps writing) through :class:`BackupSealer` into
``FILE.partial`` (0600), then renames it to ``FILE``: a failed or cancelled
backup never leaves a file under the final name. Memory stays at a few
chunks (a few MiB) whatever the size of the database.

``restore`` streams the other way, into ``pg_restore --single-transaction``
reading its standard input. Every chunk is verified before pg_restore sees a
byte of it (the newest verified chunk is held back until the next one
verifies), and the header and first chunk before pg_restore even starts. A
tampered or truncated file is therefore found while pg_restore is still
inside its one transaction: it is killed, the transaction rolls back, and
the target database stays empty. Why not decrypt to a temporary file first:
that writes the whole campus's personal data to disk in plaintext and needs
the space twice; the single transaction gives the same all-or-nothing.

The tools must fit the server: ``pg_dump`` refuses a server newer than itself
and a dump from an older tool lacks what a newer server has, so
:func:`find_pg_tools` looks for the server's major version in the configured
directory, on ``PATH``, in ``/usr/lib/postgresql/*/bin`` and in any extra
directories the caller adds (the embedded PostgreSQL's, from the pgserver wheel).

The database URL's password never appears on a command line (``ps`` shows
those): it goes to the tools in ``PGPASSWORD``.

Concurrency contract: the coroutines here run on trio; each owns its child
process and file, and cancelling one kills its child (a cancelled restore
rolls back). Sealing and opening run in worker threads, a chunk at a time.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

import trio

from hub.adapters.backup_format import CHUNK_BYTES, KEY_PURPOSE, BackupSealer, FileKeyFor, open_backup, parse_header
from hub.db import Database
from hub.db.backup import server_version, user_objects

#: The standard place of Debian/Ubuntu's versioned PostgreSQL client tools.
DEBIAN_PG_GLOB = "/usr/lib/postgresql/*/bin"
_STDERR_TAIL = 4000
_READ_BYTES = 256 * 1024


class BackupError(Exception):
    """A backup or restore that could not be made; the message says why and what to do."""


@dataclass(frozen=True)
class PgTools:
    """A ``pg_dump`` and ``pg_restore`` of one PostgreSQL major version."""

    pg_dump: Path
    pg_restore: Path
    major: int
    version: str


@dataclass(frozen=True)
class BackupResult:
    path: Path
    dump_bytes: int
    file_bytes: int
    seconds: float
    #: The campus key id that sealed it.
    key_id: int


@dataclass(frozen=True)
class RestoreResult:
    dump_bytes: int
    seconds: float
    metadata: dict


def _tool_version(program: Path) -> tuple[int, str] | None:
    try:
        out = subprocess.run([str(program), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\(PostgreSQL\)\s+((\d+)(?:\.\d+)*)", out)
    return (int(found.group(2)), found.group(1)) if found else None


def candidate_dirs(configured: Path | None, extra: Iterable[Path] = ()) -> list[Path]:
    """Where to look for the tools, in order of preference; duplicates removed."""
    dirs: list[Path] = [configured] if configured else []
    on_path = shutil.which("pg_dump")
    if on_path:
        dirs.append(Path(os.path.realpath(on_path)).parent)
    dirs += sorted(Path("/").glob(DEBIAN_PG_GLOB.lstrip("/")))
    dirs += list(extra)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def find_pg_tools(server_major: int, dirs: Iterable[Path]) -> PgTools:
    """The first ``pg_dump``/``pg_restore`` pair in ``dirs`` whose major version is ``server_major``.

    Raises :class:`BackupError` listing what was found otherwise (an older
    pg_dump cannot dump a newer server; a newer one writes SQL the old server may not
    take on restore, so only the same major version is used).
    """
    found: list[str] = []
    for directory in dirs:
        dump, restore = directory / "pg_dump", directory / "pg_restore"
        if not (os.access(dump, os.X_OK) and os.access(restore, os.X_OK)):
            continue
        version = _tool_version(dump)
        if version is None:
            continue
        if version[0] == server_major:
            return PgTools(dump, restore, version[0], version[1])
        found.append(f"{version[1]} in {directory}")
    raise BackupError(
        f"no pg_dump/pg_restore of PostgreSQL {server_major} (the server's major version) found; "
        f"found: {', '.join(found) or 'none'}. Install the PostgreSQL {server_major} client tools "
        f"(e.g. postgresql-client-{server_major}) or point CAMPUSHUB_PG_BIN_DIR at their directory.")


def libpq_target(database_url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the environment that carries the password instead."""
    parts = urlsplit(database_url)
    env = dict(os.environ)
    if parts.password is None:
        return database_url, env
    env["PGPASSWORD"] = unquote(parts.password)
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}@{host}" if user else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), env


class _StderrTail:
    """The last few KB a child wrote on stderr, for the error message."""

    def __init__(self) -> None:
        self.data = b""

    async def drain(self, stream: trio.abc.ReceiveStream) -> None:
        while chunk := await stream.receive_some(_READ_BYTES):
            self.data = (self.data + chunk)[-_STDERR_TAIL:]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace").strip()


class _SealedFile:
    """``FILE.partial`` (0600) being written through a sealer; renamed to ``FILE`` when complete.

    Blocking (file writes, sealing): :func:`backup` calls it in a worker thread.
    """

    def __init__(self, output: Path, sealer: BackupSealer) -> None:
        self.output = output
        self.partial = output.with_name(output.name + ".partial")
        self.sealer = sealer
        self.partial.unlink(missing_ok=True)
        self._file = os.fdopen(os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        self._file.write(sealer.header)

    def write(self, plaintext: bytes) -> None:
        self._file.write(self.sealer.feed(plaintext))

    def complete(self) -> int:
        """Seal the final chunk, make the file durable and give it its final name; returns its size."""
        self._file.write(self.sealer.finish())
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.partial.replace(self.output)
        return self.output.stat().st_size

    def abandon(self) -> None:
        self._file.close()
        self.partial.unlink(missing_ok=True)


async def backup(database_url: str, tools: PgTools, output: Path, *, derive: Callable[[bytes], tuple[int, bytes]],
                 server_version: str, chunk_bytes: int = CHUNK_BYTES) -> BackupResult:
    """Dump the database at ``database_url`` into the sealed file ``output`` (see the module docstring).

    ``derive(salt)`` gives the file key: the campus key's ``derive_key(KEY_PURPOSE, salt=salt)``.
    ``chunk_bytes`` other than the default is for tests (many chunks from a small database).
    """
    started = time.monotonic()
    target, env = libpq_target(database_url)
    metadata = {"created_at": datetime.now(timezone.utc).isoformat(), "server_version": server_version,
                "pg_dump_version": tools.version, "database": urlsplit(database_url).path.lstrip("/")}
    sealed = await trio.to_thread.run_sync(_SealedFile, output, BackupSealer(derive, metadata, chunk_bytes=chunk_bytes))
    stderr = _StderrTail()
    try:
        command = [str(tools.pg_dump), "--format=custom", "--no-password", f"--dbname={target}"]
        failure: Exception | None = None  # raised after the nursery: as itself, not in an exception group
        async with trio.open_nursery() as nursery:
            process = await trio.lowlevel.open_process(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            try:
                assert process.stdout is not None and process.stderr is not None
                nursery.start_soon(stderr.drain, process.stderr)
                pending = bytearray()
                while data := await process.stdout.receive_some(_READ_BYTES):
                    pending += data
                    if len(pending) > chunk_bytes:  # seal and write about a chunk at a time
                        await trio.to_thread.run_sync(sealed.write, bytes(pending))
                        pending.clear()
                await trio.to_thread.run_sync(sealed.write, bytes(pending))
                code = await process.wait()
            except Exception as exc:  # a write failed (disk full ...)
                failure = exc
            finally:
                await _stop(process)
        if failure is not None:
            raise failure
        if code != 0:
            raise BackupError(f"pg_dump failed (exit {code}): {stderr.text() or 'no message'}")
        size = await trio.to_thread.run_sync(sealed.complete)
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(sealed.abandon)
        raise
    return BackupResult(output, sealed.sealer.plaintext_bytes, size, time.monotonic() - started, sealed.sealer.key_id)


def read_metadata(path: Path) -> dict:
    """The header's metadata of a backup file (unverified until its chunks are opened)."""
    with path.open("rb") as file:
        return parse_header(file.read).metadata


async def restore(path: Path, database_url: str, tools: PgTools, file_key_for: FileKeyFor) -> RestoreResult:
    """Restore the sealed backup ``path`` into the (empty) database at ``database_url``, all or nothing.

    Raises :class:`~hub.adapters.backup_format.BackupFormatError` for a file that does not verify (nothing is then left
    restored) and :class:`BackupError` when pg_restore itself fails.
    """
    started = time.monotonic()
    target, env = libpq_target(database_url)
    try:
        file = await trio.to_thread.run_sync(path.open, "rb")
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None
    stderr = _StderrTail()
    with file:
        opener = open_backup(file.read, file_key_for)
        first = await trio.to_thread.run_sync(opener.open_next, file.read)  # right key and intact start
        assert first is not None  # open_next returns None only after the final chunk
        command = [str(tools.pg_restore), "--single-transaction", "--exit-on-error", "--no-owner",
                   "--no-privileges", "--no-password", f"--dbname={target}"]
        failure: Exception | None = None  # raised after the nursery: as itself, not in an exception group
        async with trio.open_nursery() as nursery:
            process = await trio.lowlevel.open_process(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
            try:
                assert process.stdin is not None and process.stderr is not None
                nursery.start_soon(stderr.drain, process.stderr)
                held: bytes = first
                try:
                    # One verified chunk is always held back until the next one verifies (and the
                    # final one until the file is known to end there): pg_restore never holds a
                    # complete archive before the whole file verified, so it cannot commit early.
                    while (following := await trio.to_thread.run_sync(opener.open_next, file.read)) is not None:
                        await process.stdin.send_all(held)
                        held = following
                    await process.stdin.send_all(held)
                    await process.stdin.aclose()
                except trio.BrokenResourceError:
                    pass  # pg_restore stopped reading: its exit code and message say why
                code = await process.wait()
            except Exception as exc:  # a chunk did not verify, or the file could not be read
                failure = exc
            finally:
                # A chunk did not verify (or we were cancelled): pg_restore dies inside its
                # single transaction, so nothing of the backup stays in the database.
                await _stop(process)
    if failure is not None:
        raise failure
    if code != 0:
        raise BackupError(f"pg_restore failed (exit {code}); nothing was restored: {stderr.text() or 'no message'}")
    return RestoreResult(opener.plaintext_bytes, time.monotonic() - started, opener.header.metadata)


# --- the use cases (the CLI and the scheduled backups call these) ---------------------------------

async def backup_database(db: Database, output: Path, tool_dirs: Iterable[Path]) -> BackupResult:
    """Back up the database of ``db`` into ``output``, sealed under a key derived from its campus key
    (``db.secrets``)."""
    campus_key = db.secrets
    major, version = await server_version(db)
    tools = await trio.to_thread.run_sync(find_pg_tools, major, list(tool_dirs))
    return await backup(db.dsn, tools, output, server_version=version,
                        derive=lambda salt: campus_key.derive_key(KEY_PURPOSE, salt=salt))


def _major(version_text: object) -> int | None:
    found = re.match(r"(\d+)", str(version_text or ""))
    return int(found.group(1)) if found else None


async def restore_database(db: Database, path: Path, tool_dirs: Iterable[Path]) -> RestoreResult:
    """Restore the backup ``path`` into the EMPTY database of ``db``, opened with its campus key (``db.secrets``).

    Refuses (:class:`BackupError`) a database that holds anything a restore would collide with,
    and a backup of a newer PostgreSQL than the target's; a file that does not verify raises
    :class:`~hub.adapters.backup_format.BackupFormatError`. All or nothing.
    """
    found = await user_objects(db)
    if found:
        raise BackupError(f"the target database is not empty (it has {', '.join(found)}{', ...' if len(found) == 5 else ''}): "
                          "restore only into a new, empty database (CREATE DATABASE ...)")
    major, _ = await server_version(db)
    try:
        metadata = await trio.to_thread.run_sync(read_metadata, path)
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None
    source = _major(metadata.get("server_version"))
    if source is not None and source > major:
        raise BackupError(f"the backup is of PostgreSQL {source} and the target server is {major}: "
                          f"restore into PostgreSQL {source} or newer")
    tools = await trio.to_thread.run_sync(find_pg_tools, major, list(tool_dirs))
    campus_key = db.secrets
    return await restore(path, db.dsn, tools,
                         lambda key_id, salt: campus_key.derive_key(KEY_PURPOSE, key_id=key_id, salt=salt)[1])


async def _stop(process: trio.Process) -> None:
    """Kill ``process`` if it still runs and reap it, even while cancelled (no zombie, no open pipes)."""
    if process.returncode is None:
        process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
