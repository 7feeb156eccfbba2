"""An embedded PostgreSQL 16 from the ``pgserver`` wheel, for the demo and for tests.

We use the wheel's *binaries* (``pgserver/pginstall/bin``: initdb, pg_ctl,
postgres) but manage the server ourselves instead of through
``pgserver.get_server``: that class listens on a Unix socket only, sleeps in
1 s steps while waiting, registers global atexit hooks, kills any ``postgres``
whose command line mentions the data dir, and merely importing the
``pgserver`` package touches platformdirs' runtime dir (a warning when
``XDG_RUNTIME_DIR`` is unset). We want a plain TCP DSN, a fast start and an
explicit ``stop()``, so we locate the binaries without importing it.

Running as root (containers, CI): ``initdb`` and ``postgres`` refuse to run as
root, so -- exactly like pgserver -- we run them as the OS user ``pgserver``,
creating it with ``useradd`` on first use (the same user pgserver creates, so
the two share it).
The data directory is chowned to that user and every ancestor directory of it
gets the ``o+x`` (traverse, not list) bit so that user can reach it; the same
is done for the pgserver install tree. Those are the only changes made to the
host. Not as root, the server runs as the current user and nothing is changed.
Caveat as root: the ancestors must *stay* traversable while the server runs.
Do not put ``data_dir`` under pytest's ``tmp_path`` when pytest sessions may
run concurrently: each session start chmods ``/tmp/pytest-of-root`` back to
0700 (``tempfile.mkdtemp()`` directly under /tmp is safe). :meth:`stop` still
works then (it falls back to signalling the postmaster).

Layout of ``data_dir``::

    pgdata/          the cluster (kept between runs: data persists)
    postgres.log     server log
    postgres.port    the port of the last run, reused when free
    postgres.lock    flock held while a process owns the server

Concurrency contract: everything here is synchronous and blocks the calling
thread (initdb ~0.7 s on first use, start ~0.1-0.3 s, stop ~0.1 s); call
it from trio with ``trio.to_thread.run_sync``. Not cancellable midway; a
half-started server is stopped before the error propagates.
"""
from __future__ import annotations

import atexit
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from ._common import DirLock, EmbeddedServiceError, choose_port, process_alive, tail, tcp_accepts, wait_until

_HOST = "127.0.0.1"
#: The OS user pgserver itself uses when run as root; we share it.
SERVICE_USER = "pgserver"


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int


class _UserKwargs(TypedDict, total=False):
    """subprocess.run's arguments that run a program as the service user."""

    user: int
    group: int
    extra_groups: list[int]


@dataclass(eq=False)
class EmbeddedPostgres:
    """A running embedded PostgreSQL. Use as a context manager or call :meth:`stop`."""

    data_dir: Path
    port: int
    #: ``postgresql://postgres@127.0.0.1:PORT/postgres`` (trust auth, loopback only).
    dsn: str
    _pgdata: Path = field(repr=False)
    _run_as: _RunAs | None = field(repr=False)
    _lock: DirLock | None = field(repr=False)

    def url(self, database: str) -> str:
        """The DSN of another database on this server."""
        return f"postgresql://postgres@{_HOST}:{self.port}/{database}"

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (fast shutdown: sessions are disconnected, data is kept).

        Idempotent. Blocks until the server has exited.
        """
        if self._lock is None:
            return
        try:
            _pg_ctl(["stop", "-m", "fast", "-w", "-t", str(int(timeout))], self._pgdata, self._run_as)
        except EmbeddedServiceError:
            # E.g. the service user lost access to data_dir: signal it ourselves.
            _signal_stop(self._pgdata, timeout)
        finally:
            atexit.unregister(self.stop)
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "EmbeddedPostgres":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_embedded_postgres(
    data_dir: Path, *, port: int | None = None, timeout: float = 30.0
) -> EmbeddedPostgres:
    """Start PostgreSQL 16 on ``data_dir`` (initialising it on first use).

    Listens on 127.0.0.1 only, on ``port`` or else the port of the previous
    run if free, else a free port. Returns once the server accepts
    connections. Raises :class:`EmbeddedServiceError` (with the server log's
    tail) if it cannot start, or if another process owns ``data_dir``.
    The server is also stopped at interpreter exit if :meth:`~EmbeddedPostgres.stop`
    was not called; if the owner is killed outright, the next start on the
    same ``data_dir`` stops the orphan first.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = DirLock(data_dir / "postgres.lock", "embedded postgres")
    try:
        if port is not None:
            choose_port(_HOST, data_dir / "postgres.port", port)  # fail fast if taken, before initdb
        run_as = _service_user()
        pgdata = data_dir / "pgdata"
        log = data_dir / "postgres.log"
        log.touch()
        if run_as is not None:
            _grant_access(pgdata, run_as, log)
        if not (pgdata / "PG_VERSION").exists():
            _initdb(pgdata, run_as)
        if _server_running(pgdata, run_as):
            # We hold the lock, so its owner is gone: an orphan of a killed run.
            try:
                _pg_ctl(["stop", "-m", "fast", "-w", "-t", str(int(timeout))], pgdata, run_as)
            except EmbeddedServiceError:
                _signal_stop(pgdata, timeout)
        remembered = data_dir / "postgres.port"
        attempts = 1 if port is not None else 3
        for attempt in range(attempts):
            chosen = choose_port(_HOST, remembered, port)
            try:
                _start(pgdata, log, chosen, run_as, timeout)
                break
            except EmbeddedServiceError:
                _signal_stop(pgdata, 5.0)  # in case pg_ctl gave up on a server still starting
                # An auto-chosen port may have been taken in the meantime: retry on another.
                remembered.unlink(missing_ok=True)
                if attempt == attempts - 1:
                    raise
        remembered.write_text(f"{chosen}\n")
        server = EmbeddedPostgres(
            data_dir=data_dir,
            port=chosen,
            dsn=f"postgresql://postgres@{_HOST}:{chosen}/postgres",
            _pgdata=pgdata,
            _run_as=run_as,
            _lock=lock,
        )
    except BaseException:
        lock.release()
        raise
    atexit.register(server.stop)
    return server


def _service_user() -> _RunAs | None:
    """The user to run PostgreSQL as: ``None`` (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        # A system account with its own group and no home or login.
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True, capture_output=True,
        )
        entry = pwd.getpwnam(SERVICE_USER)
    return _RunAs(entry.pw_uid, entry.pw_gid)


def _grant_access(pgdata: Path, run_as: _RunAs, log: Path) -> None:
    """Let the service user reach its files (see the module docstring)."""
    install = _install_dir()
    _traversable(pgdata.parent)
    _traversable(install)
    # The wheel's files are normally world-readable already; fix them only if not.
    if not os.stat(install / "bin" / "postgres").st_mode & stat.S_IXOTH:
        for root, dirs, files in os.walk(install):
            for name in dirs:
                _add_mode(Path(root, name), stat.S_IROTH | stat.S_IXOTH)
            for name in files:
                _add_mode(Path(root, name), stat.S_IROTH | stat.S_IXOTH)
    os.chown(log, run_as.uid, run_as.gid)
    if pgdata.exists():
        os.chown(pgdata, run_as.uid, run_as.gid)


def _traversable(path: Path) -> None:
    """Add o+x to ``path`` and each ancestor lacking it."""
    for directory in (path, *path.parents):
        _add_mode(directory, stat.S_IXOTH)


def _add_mode(path: Path, bits: int) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & bits != bits:
        path.chmod(mode | bits)


def _install_dir() -> Path:
    """``pgserver/pginstall`` of the installed wheel, found without importing pgserver."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError("embedded postgres needs the pgserver wheel (pip install pgserver)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def client_tools_dir() -> Path | None:
    """``bin`` of the pgserver wheel (its ``pg_dump``, ``pg_restore`` ...), ``None`` without the wheel.

    For the backup commands, which need tools of the embedded server's version.
    """
    try:
        return _install_dir() / "bin"
    except EmbeddedServiceError:
        return None


def _initdb(pgdata: Path, run_as: _RunAs | None) -> None:
    # No PG_VERSION means no cluster, only an interrupted initdb: start over.
    if pgdata.exists():
        shutil.rmtree(pgdata)
    pgdata.mkdir(mode=0o700)
    if run_as is not None:
        os.chown(pgdata, run_as.uid, run_as.gid)
    _run(
        "initdb",
        [
            "-D", str(pgdata), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C",  # C: same sort order everywhere
            "--no-instructions",
        ],
        run_as,
        timeout=120,
    )


def _start(pgdata: Path, log: Path, port: int, run_as: _RunAs | None, timeout: float) -> None:
    # Options go through pg_ctl's /bin/sh command line, hence the shell quoting of ''.
    options = (
        f"-c listen_addresses={_HOST} -c port={port}"
        " -c unix_socket_directories=''"  # TCP only: no socket path to share or clean up
        " -c max_connections=200"  # tests open many pools against one server
    )
    try:
        _pg_ctl(
            ["start", "-w", "-t", str(int(timeout)), "-l", str(log), "-o", options],
            pgdata,
            run_as,
        )
    except EmbeddedServiceError as exc:
        raise EmbeddedServiceError(f"{exc}\n--- {log} ---\n{tail(log)}") from None
    if not tcp_accepts(_HOST, port, timeout=2.0):
        _pg_ctl(["stop", "-m", "immediate", "-w"], pgdata, run_as)
        raise EmbeddedServiceError(f"embedded postgres started but 127.0.0.1:{port} refuses connections")


def _server_running(pgdata: Path, run_as: _RunAs | None) -> bool:
    if not (pgdata / "postmaster.pid").exists():
        return False
    # pg_ctl status: 0 running, 3 not running, 4 no data dir.
    result = subprocess.run(
        [str(_install_dir() / "bin" / "pg_ctl"), "status", "-D", str(pgdata)],
        capture_output=True, cwd="/", timeout=30, **_user_kwargs(run_as),
    )
    return result.returncode == 0


def _signal_stop(pgdata: Path, timeout: float) -> None:
    """What ``pg_ctl stop -m fast`` does (SIGINT to the postmaster), then SIGQUIT (immediate) if it lingers."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        # A stale pid file's pid may belong to someone else by now.
        if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return
    except (OSError, ValueError, IndexError):
        return  # no pid file or no such process: not running
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        try:
            wait_until(lambda: not process_alive(pid), timeout=wait, what="embedded postgres stop")
            return
        except EmbeddedServiceError:
            continue
    raise EmbeddedServiceError(f"embedded postgres (pid {pid}) did not stop")


def _pg_ctl(args: list[str], pgdata: Path, run_as: _RunAs | None) -> None:
    _run("pg_ctl", [*args, "-D", str(pgdata)], run_as, timeout=120)


def _run(program: str, args: list[str], run_as: _RunAs | None, *, timeout: float) -> None:
    # Never pipes: pg_ctl start leaves the postmaster holding inherited pipes,
    # so reading them to EOF would hang (pgserver hit the same). The server's
    # output goes to the -l log file; ours is discarded except stderr, kept in
    # a temporary file for the error message.
    with tempfile.TemporaryFile() as err:
        try:
            result = subprocess.run(
                [str(_install_dir() / "bin" / program), *args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                cwd="/",  # the service user may not be allowed into our cwd
                timeout=timeout, **_user_kwargs(run_as),
            )
        except subprocess.TimeoutExpired:
            raise EmbeddedServiceError(f"{program} {' '.join(args)}: timed out after {timeout} s") from None
        if result.returncode != 0:
            err.seek(0)
            message = err.read().decode(errors="replace").strip()
            raise EmbeddedServiceError(f"{program} {args[0]} failed ({result.returncode}): {message}")


def _user_kwargs(run_as: _RunAs | None) -> _UserKwargs:
    if run_as is None:
        return {}
    # extra_groups=[] drops root's supplementary groups too.
    return {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}
