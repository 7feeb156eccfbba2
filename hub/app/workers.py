"""``campushub serve --workers N``: N hub worker processes on this machine, one web port.

The parent process holds no hub state. It resolves the services (the
configured PostgreSQL and broker, or embedded ones), makes sure the campus
key and the web's JWT secret exist before any worker reads them, binds the
web port once, and starts N ``campushub serve`` workers that inherit that
socket (the kernel spreads connections over the workers' accept loops). Each
worker is a whole hub with ``CAMPUSHUB_PARTITIONS`` set and its own
``CAMPUSHUB_WORKER_ID``; the workers divide the partitions among themselves
through their leases in PostgreSQL (hub/app/partition_sessions.py), so the
parent coordinates nothing. Workers on other machines join the same
deployment by running ``campushub serve --workers K`` there with the same
database, broker and partition count (docs/scaling.md).

A worker that exits (a crash, ``kill -9``) is started again after
``RESTART_DELAY_S`` with the same worker id; meanwhile the other workers take
its partitions over when its leases run out. SIGINT or SIGTERM stops every
worker (each releases its leases as it stops) and then the parent.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.core.config import parse_bind

log = logging.getLogger("hub.app.workers")

#: Partitions of a deployment started with ``--workers`` when ``CAMPUSHUB_PARTITIONS`` is not set:
#: enough to spread over a few machines of a few workers each (every worker of a deployment must
#: use the same number; docs/scaling.md).
DEFAULT_PARTITIONS = 16
#: A worker that exited is started again after this long.
RESTART_DELAY_S = 1.0
#: On SIGINT/SIGTERM the workers get this long to stop (releasing their leases), then are killed.
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class WorkerPlan:
    """What each worker process gets: its id, and the environment and arguments they share."""

    count: int
    worker_ids: tuple[str, ...]
    environment: dict[str, str]
    arguments: tuple[str, ...]


def host_label(host: str | None = None) -> str:
    """This machine's name (or ``host``) in the characters a worker id may hold (it names MQTT sessions)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", host or socket.gethostname())[:40] or "host"


def default_worker_id() -> str:
    """A worker's id when ``CAMPUSHUB_WORKER_ID`` is not set: ``<host>-<pid>``."""
    return f"{host_label()}-{os.getpid()}"


def worker_ids(count: int, host: str | None = None) -> tuple[str, ...]:
    """``<host>-w<i>``: stable over restarts, distinct between machines (a worker id names MQTT sessions)."""
    return tuple(f"{host_label(host)}-w{i}" for i in range(count))


def listening_socket(host: str, port: int) -> socket.socket:
    """The web port, bound once here and inherited by every worker."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    sock.set_inheritable(True)
    return sock


def run_workers(plan: WorkerPlan, sock: socket.socket) -> int:
    """Start the workers and keep them running until SIGINT/SIGTERM; the exit status of the parent.

    Blocking (no trio here: the parent only waits on processes and signals).
    """
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    fd = sock.fileno()
    processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(worker_id: str) -> None:
        env = dict(plan.environment, CAMPUSHUB_WORKER_ID=worker_id)
        metrics_bind = plan.environment.get("CAMPUSHUB_METRICS_BIND")
        if metrics_bind:
            # One metrics listener per worker: the configured port for the first, the next ones after it.
            host, port = parse_bind(metrics_bind)
            index = plan.worker_ids.index(worker_id)
            env["CAMPUSHUB_METRICS_BIND"] = f"[{host}]:{port + index}" if ":" in host else f"{host}:{port + index}"
        processes[worker_id] = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve", "--worker-socket-fd", str(fd), *plan.arguments],
            env=env, pass_fds=(fd,))
        print(f"campushub: worker {worker_id} started (pid {processes[worker_id].pid})", file=sys.stderr)

    try:
        for worker_id in plan.worker_ids:
            start(worker_id)
        restart_at: dict[str, float] = {}
        while not stopping:
            time.sleep(0.2)
            now = time.monotonic()
            for worker_id, process in list(processes.items()):
                if worker_id not in restart_at and process.poll() is not None:
                    print(f"campushub: worker {worker_id} exited ({process.returncode}); "
                          f"starting it again in {RESTART_DELAY_S:g} s", file=sys.stderr)
                    restart_at[worker_id] = now + RESTART_DELAY_S
            for worker_id, when in list(restart_at.items()):
                if now >= when and not stopping:
                    del restart_at[worker_id]
                    start(worker_id)
        return _stop_all(processes.values())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_all(processes: Iterable[subprocess.Popen[bytes]]) -> int:
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return 0


def plan_workers(count: int, *, database_url: str, mqtt_url: str, partitions: int, data_dir: Path,
                 arguments: Sequence[str], environment: dict[str, str] | None = None) -> WorkerPlan:
    """The workers' shared environment: the resolved services, the partition count, the data dir."""
    if count < 1:
        raise ValueError(f"--workers must be at least 1, not {count}")
    if count > partitions:
        raise ValueError(f"--workers {count}: at most the partition count ({partitions}, CAMPUSHUB_PARTITIONS);"
                         " a worker beyond it would own nothing")
    env = dict(os.environ if environment is None else environment)
    ids = worker_ids(count)
    # The peers let workers started together split the partitions at once (Settings.worker_peers).
    env.update(CAMPUSHUB_DATABASE_URL=database_url, CAMPUSHUB_MQTT_URL=mqtt_url,
               CAMPUSHUB_PARTITIONS=str(partitions), CAMPUSHUB_DATA_DIR=str(data_dir),
               CAMPUSHUB_WORKER_PEERS=",".join(ids))
    return WorkerPlan(count, ids, env, tuple(arguments))
