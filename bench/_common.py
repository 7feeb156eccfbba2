"""Pieces shared by the benchmarks in bench/: helpers, database and broker housekeeping, and the publisher fleet.

Nothing here asserts anything. Heavy imports (trio, paho, the hub) happen
inside functions, so a publisher worker process starts quickly.

The publisher fleet
-------------------
:class:`Driver` feeds a system under test from one or more publisher *worker
processes* (``python bench/_common.py --fleet-worker``), so the load does
not compete for the measured process's GIL. Two connection modes:

* shared (the original ``bench/pipeline.py`` publisher): one paho client per
  worker publishes for all of that worker's devices, round robin.
* per-device: one paho client (one MQTT connection, client id
  ``<prefix>-<device id>``) per device, each signing with its own key; a
  worker drives its few hundred clients from one ``epoll`` loop
  (external-loop paho: ``publish()`` writes at once, PUBACKs are read when
  their socket is readable).

Each worker publishes its share of the messages at its share of ``--rate``
(0 = as fast as it can) and never runs more than its share of ``--window``
ahead of what the system under test has committed (the parent reports the
global committed count over every worker's stdin): Mosquitto keeps at most
1,000 queued messages per subscriber beyond those in flight and silently drops
the rest. A message is a QR check-in (a fresh rotating token of a student on
the roster of the session in the device's room) with probability
``checkins`` (deterministic spacing), else a sensor reading. Every event's
``ts`` is the worker's ``time.time()`` in ms at ``publish()``. With a CA file
(``FleetConfig.cafile``) every connection is TLS (paho's ``tls_set_context``),
and the per-device loop also reads clients whose SSL object holds decrypted
bytes (``pending()``), which ``select()`` does not report.
"""
from __future__ import annotations

import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
PROJECT_ROOT = os.path.dirname(BENCH_DIR)
#: The benchmarks' campus key (fixed: nothing is written to a data dir). Put in the environment too,
#: so every connection that seeds (``hub.db.open_database``'s default key) seals with the key the
#: benchmark hub (``hub_settings``) and its child processes open with.
os.environ.setdefault("CAMPUSHUB_MASTER_KEY", "Y2FtcHVzaHViLWJlbmNobWFyay1zZWNyZXRzLWtleSE=")


# =========================================================================== small helpers


def database_url_for(server_url: str, database: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile (exact: one of the values) of an ascending list."""
    if not sorted_values:
        return math.nan
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def percentiles_ms(values_s: list[float], prefix: str, ps: tuple[float, ...] = (50, 95, 99)) -> dict[str, float]:
    """``{prefix_p50_ms: ..., prefix_max_ms: ..., prefix_n: ...}`` of latencies given in seconds."""
    values = sorted(values_s)
    out = {f"{prefix}_p{p:g}_ms": percentile(values, p) * 1000 for p in ps}
    out[f"{prefix}_max_ms"] = values[-1] * 1000 if values else math.nan
    out[f"{prefix}_n"] = len(values)
    return out


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


def rss_bytes() -> int:
    """This process's resident set size (VmRSS), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``, from /proc/<pid>/stat; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name (field 2) may hold spaces: split after its closing parenthesis.
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def postgres_cpu_s(database: str) -> dict[int, float]:
    """{pid: CPU seconds} of this machine's PostgreSQL processes serving ``database``.

    A backend's process title (/proc/<pid>/cmdline) names its database
    (``postgres: 15/main: user database host(port) state``), and so does an
    autovacuum worker's; the server's shared processes (WAL writer,
    checkpointer, ...) name none and are left out: other tenants use them too.
    A process that exits between two readings takes its CPU with it.
    """
    found: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read().decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres: ") and f" {database} " in title.replace("\0", " ") + " ":
            found[int(entry)] = process_cpu_s(int(entry))
    return found


#: Where this machine's PostgreSQL (Debian's cluster) writes its log; bench/drain.py --pg-statements reads it.
PG_LOG = "/var/log/postgresql/postgresql-15-main.log"


def statement_log_start(server_url: str, database: str, log_path: str = PG_LOG) -> int:
    """Make PostgreSQL log every statement of ``database`` with its duration; returns the log's size now.

    Per database (``ALTER DATABASE ... SET``): only the benchmark's own
    sessions opened from now on are logged, no other tenant's. Parameters are
    left out (``log_parameter_max_length = 0``). Logging every statement costs
    PostgreSQL time: a run with it is a profile, not a figure.
    """
    async def work(db) -> None:
        await db.execute(f"ALTER DATABASE {database} SET log_min_duration_statement = 0")
        await db.execute(f"ALTER DATABASE {database} SET log_parameter_max_length = 0")

    run_db(server_url, work)
    return os.path.getsize(log_path)


def statement_log_summary(database: str, offset: int, log_path: str = PG_LOG,
                          top: int = 20) -> list[dict[str, Any]]:
    """The statements of ``database`` logged since ``offset``: total and mean duration (wall, ms), by text.

    asyncpg runs each prepared statement as bind + execute (parse once),
    each logged with its duration: they are summed under the statement's
    text (its first 160 characters, whitespace folded), and ``calls`` counts
    executions (execute messages and simple-protocol statements). Planning a
    custom plan happens at bind. Durations are wall time inside the server
    (CPU, plus waits: locks, WAL flush at COMMIT).
    """
    import re

    head = re.compile(r"@" + re.escape(database)
                      + r" LOG:  duration: ([0-9.]+) ms  (?:(parse|bind|execute) [^:]*: |(statement): )?(.*)")
    totals: dict[str, list[float]] = {}
    current: list[Any] | None = None  # [ms, text parts, counts as a call]

    def close() -> None:
        if current is not None:
            text = " ".join(" ".join(current[1]).split())[:160]
            entry = totals.setdefault(text, [0.0, 0])
            entry[0] += current[0]
            entry[1] += current[2]

    with open(log_path, "rb") as f:
        f.seek(offset)
        for raw in f:
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("\t") and current is not None:
                current[1].append(line.strip())
                continue
            close()
            current = None
            m = head.search(line)
            if m:
                current = [float(m.group(1)), [m.group(4)], int(m.group(2) in (None, "execute"))]
        close()
    total = sum(v[0] for v in totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda kv: -kv[1][0])[:top]
    return [{"ms": round(ms, 1), "share_pct": round(100 * ms / total, 1), "calls": calls,
             "mean_ms": round(ms / calls, 3) if calls else math.nan, "statement": text}
            for text, (ms, calls) in ranked]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def wait_for_quiet(max_load: float, max_wait_s: float, label: str = "") -> list[float]:
    """Wait (at most ``max_wait_s``) until the 1-minute load average is below ``max_load``; return it.

    The machine is shared: a figure taken while another session compiles is
    not this project's. We do not wait forever, we report the load instead.
    """
    deadline = time.monotonic() + max_wait_s
    announced = False
    while os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        if not announced:
            progress(f"{label}waiting for the load average to drop below {max_load} "
                     f"(now {os.getloadavg()[0]:.2f}, at most {max_wait_s:.0f}s)...")
            announced = True
        time.sleep(2)
    return load_average()


#: Set by bench/harness.py: every database a benchmark creates then starts with
#: ``campushub_bench_<this>``, so the harness can drop leftovers of a benchmark it had to kill.
RUN_ID_ENV = "CAMPUSHUB_BENCH_RUN_ID"


def new_run_id() -> str:
    """A random id for database names (``campushub_bench_<id>_...``), topic prefixes and client ids."""
    import uuid

    prefix = os.environ.get(RUN_ID_ENV, "")
    return (prefix + uuid.uuid4().hex)[:max(10, len(prefix) + 4)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fmt(value: Any, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def no_nan(value: Any) -> Any:
    """NaN (a figure that does not exist) as null: strict JSON has no NaN."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [no_nan(v) for v in value]
    return value


def machine_facts(pg_version: str) -> dict[str, Any]:
    import paho.mqtt

    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": load_average(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "postgresql": pg_version,
        "paho_mqtt": paho.mqtt.__version__,
    }


def print_profile(path: str, top: int = 15, label: str = "hub") -> None:
    """The profiled run's hottest functions (own time), and CPU by package, on stderr."""
    import collections
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    by_package: collections.Counter[str] = collections.Counter()
    for (filename, _, func), (_, _, tottime, _, _) in stats.stats.items():
        if "site-packages/" in filename:
            key = filename.split("site-packages/")[1].split("/")[0]
        elif filename == "~":
            key = f"(builtin) {func}"
        elif "/lib/python3" in filename:
            key = "(stdlib) " + filename.split("/lib/python3", 1)[1].split("/", 1)[-1]
        else:
            key = os.path.relpath(filename, PROJECT_ROOT)
        by_package[key] += tottime
    total = sum(by_package.values()) or 1.0
    out.write("own time by package / project file:\n")
    for key, seconds in by_package.most_common(top):
        out.write(f"  {seconds:7.2f}s {100 * seconds / total:5.1f}%  {key}\n")
    out.write(profile_stages(stats))
    progress(f"{label}: profile saved to {path}\n{out.getvalue()}")


#: (stage, (file suffix, function)) whose cumulative time is that stage's; checked in this order.
PROFILE_STAGES = [
    ("MQTT reader (paho decode, channel)", ("hub/mqtt/_client.py", "_reader")),
    ("ingress (decode, verify, route)", ("hub/pipeline/ingress.py", "serve")),
    ("device actors", ("hub/pipeline/device_actor.py", "handle")),
    ("scheduler (ResolveSession)", ("hub/pipeline/scheduler.py", "handle")),
    ("session actors (judge check-ins)", ("hub/pipeline/session_actor.py", "handle")),
    ("writer actor (batch, after-commit)", ("hub/pipeline/writer.py", "handle")),
    ("  of which PUBACKs (client.ack_many)", ("hub/mqtt/_client.py", "ack_many")),
    ("  of which live bus publish", ("hub/core/bus.py", "publish")),
    ("asyncio side (asyncpg, transactions)", ("trio_asyncio/_base.py", "_main_loop_one")),
    ("websocket connection actors (send)", ("web/connection.py", "handle")),
    ("websocket handshakes (auth, routes)", ("web/routes/live.py", "session_ws")),
    ("actor start-up (hub actors' started())", ("hub/", "started")),
]


def profile_stages(stats) -> str:
    """CPU by stage of the hub, from a cProfile of its run: cumulative time of each stage's entry point.

    cProfile times a coroutine only while it runs (each resumption is a
    "call"), so a stage's cumulative time is the CPU its frames and callees
    used. Shares are of the profiled process's CPU (own time of everything,
    minus the time blocked in epoll). cProfile inflates small functions
    (trio's scheduling, paho's many small calls) relative to C code: read the
    shares, not the seconds.
    """
    found: dict[str, float] = {}
    idle = 0.0
    total = 0.0
    for (filename, _, func), (_, _, tottime, cumtime, _) in stats.stats.items():
        total += tottime
        if func == "<method 'poll' of 'select.epoll' objects>":
            idle += tottime
        for stage, (suffix, name) in PROFILE_STAGES:
            if func != name:
                continue
            if suffix.endswith("/"):  # every function of that name in the package: summed
                if f"/{suffix}" in filename and ".venv" not in filename:
                    found[stage] = found.get(stage, 0.0) + cumtime
            elif filename.endswith(suffix):
                found[stage] = max(found.get(stage, 0.0), cumtime)
    busy = total - idle or 1.0
    lines = [f"hub CPU by stage (cumulative; {busy:.1f}s of CPU, {idle:.1f}s blocked in epoll):"]
    for stage, _ in PROFILE_STAGES:
        if stage in found:
            lines.append(f"  {found[stage]:7.2f}s {100 * found[stage] / busy:5.1f}%  {stage}")
    trio_own = sum(v[2] for (f, _, _), v in stats.stats.items() if "/trio/" in f and "trio_asyncio" not in f)
    lines.append(f"  {trio_own:7.2f}s {100 * trio_own / busy:5.1f}%  (trio's own code, all stages: scheduling, "
                 f"cancel scopes, socket wrappers)")
    return "\n".join(lines) + "\n"


class GcPauses:
    """Garbage-collector pauses in this process while active (``gc.callbacks``): a single-threaded hub stalls."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._t = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._t))

    def __enter__(self) -> "GcPauses":
        import gc

        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: Any) -> None:
        import gc

        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        import gc

        full = sorted(d for g, d in self.pauses if g == 2)
        middle = sorted(d for g, d in self.pauses if g == 1)
        young = sorted(d for g, d in self.pauses if g == 0)
        return {"collections": len(self.pauses), "total_ms": round(sum(d for _, d in self.pauses) * 1000, 1),
                "full": len(full), "full_max_ms": round(full[-1] * 1000, 1) if full else 0.0,
                "gen1": len(middle), "gen1_max_ms": round(middle[-1] * 1000, 1) if middle else 0.0,
                "gen0_max_ms": round(young[-1] * 1000, 1) if young else 0.0,
                "tracked_objects": len(gc.get_objects())}


# =========================================================================== trio: clean Ctrl-C


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived while a system was running; it has been shut down."""


async def interruptible(fn, *args):
    """Run ``fn(*args)``; on SIGINT/SIGTERM cancel it cleanly and raise :class:`Interrupted`.

    trio's default Ctrl-C handling raises KeyboardInterrupt wherever the main
    thread happens to be, which may be inside an asyncio callback of
    trio-asyncio / asyncpg: the interrupt can then be lost or leave a
    shielded cleanup waiting forever. A cancellation unwinds everything the
    ordinary way (publisher killed, hub shut down, pool closed).
    """
    import trio

    result = None
    interrupted = False
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            async def body() -> None:
                nonlocal result
                result = await fn(*args)
                nursery.cancel_scope.cancel()

            nursery.start_soon(body)
            async for signum in signals:
                interrupted = True
                progress(f"{signal.Signals(signum).name}: stopping...")
                nursery.cancel_scope.cancel()
                break
    if interrupted:
        raise Interrupted
    return result


def is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C/SIGTERM during a run (Interrupted) or setup (KeyboardInterrupt, maybe in a group)."""
    return isinstance(exc, (Interrupted, KeyboardInterrupt)) or (
        isinstance(exc, BaseExceptionGroup) and exc.subgroup((KeyboardInterrupt, Interrupted)) is not None)


# =========================================================================== databases and broker


def run_db(url: str, work: Callable, *, shield_sigint: bool = False) -> Any:
    """``work(db)`` in a trio run of its own with a small pool, for synchronous code (like run_with_database).

    Ctrl-C cancels it cleanly (:func:`interruptible`; a KeyboardInterrupt
    raised inside trio-asyncio could leave the pool's shielded close waiting
    forever). With ``shield_sigint`` Ctrl-C is ignored until it returns: for
    short clean-ups that must happen even when the user is impatient.
    """
    import trio

    from hub.db import asyncio_loop, open_database

    async def main() -> Any:
        async with asyncio_loop(), open_database(url, max_size=2) as db:
            return await work(db)

    if not shield_sigint:
        return trio.run(interruptible, main)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return trio.run(main)
    finally:
        signal.signal(signal.SIGINT, previous)


def create_databases(server_url: str, names: list[str], created: list[str]) -> str:
    """CREATE DATABASE each name (recording it in ``created`` at once); returns the server version."""

    async def work(db) -> str:
        for name in names:
            await db.execute(f"CREATE DATABASE {name}")
            created.append(name)
        return await db.fetchval("SHOW server_version")

    return run_db(server_url, work)


def drop_databases(server_url: str, names: list[str]) -> None:
    """DROP ... WITH (FORCE) each; reports failures and carries on. Safe to call after Ctrl-C (ignores another)."""
    for name in names:
        try:
            run_db(server_url, lambda db, name=name: db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                   shield_sigint=True)
        except BaseException as exc:  # noqa: BLE001 - report and carry on dropping the others
            progress(f"could not drop database {name}: {exc!r}")
    if names:
        progress(f"dropped {', '.join(names)}")


def discard_broker_sessions(host: str, port: int, client_ids: list[str]) -> None:
    """Connect once with each id, clean start and expiry 0: the broker forgets its session."""
    import paho.mqtt.client as mqtt

    for cid in client_ids:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        try:
            c.connect(host, port, keepalive=10, clean_start=True)
            deadline = time.monotonic() + 3
            while not c.is_connected() and time.monotonic() < deadline:
                c.loop(0.05)
            c.disconnect()
            c.loop(0.05)
        except OSError:
            pass


def start_tls_broker(directory: str) -> tuple[subprocess.Popen, int, int, str]:
    """A private anonymous Mosquitto with a plain and a TLS listener; (process, plain port, TLS port, CA file).

    Certificates from trustme (a throwaway CA, the server's for 127.0.0.1), written
    into ``directory`` with the config. In-memory sessions only (``persistence
    false``): stopping the process discards every session, nothing to clean up.
    Used by bench/mqtt_receive.py and bench/pipeline.py (``--tls``, ``--private-broker``).
    The caller terminates the process.
    """
    import trustme

    sys.path.insert(0, PROJECT_ROOT)
    from hub.embedded.broker import mosquitto_path

    binary = mosquitto_path()
    if binary is None:
        raise SystemExit("--tls needs mosquitto installed")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    paths = {name: os.path.join(directory, name) for name in ("ca.pem", "server.crt", "server.key")}
    ca.cert_pem.write_to_path(paths["ca.pem"])
    server.cert_chain_pems[0].write_to_path(paths["server.crt"])
    server.private_key_pem.write_to_path(paths["server.key"])
    ports = [free_port(), free_port()]
    config = os.path.join(directory, "mosquitto.conf")
    with open(config, "w") as f:
        f.write(f"allow_anonymous true\npersistence false\nuser {os.environ.get('USER') or 'root'}\n"
                f"listener {ports[0]} 127.0.0.1\n"
                f"listener {ports[1]} 127.0.0.1\ncafile {paths['ca.pem']}\n"
                f"certfile {paths['server.crt']}\nkeyfile {paths['server.key']}\n")
    process = _start_mosquitto(binary, config, ports)
    return process, ports[0], ports[1], paths["ca.pem"]


def _start_mosquitto(binary: str, config: str, ports: list[int]) -> subprocess.Popen:
    """Start ``binary -c config`` and wait (at most 10 s) until every port of ``ports`` accepts connections."""
    process = subprocess.Popen([binary, "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            for port in ports:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise SystemExit("private mosquitto did not start") from None
            time.sleep(0.05)


def start_backlog_broker(directory: str) -> tuple[subprocess.Popen, int]:
    """A private anonymous Mosquitto that queues without limit for offline sessions; (process, port).

    ``max_queued_messages 0`` and ``max_queued_bytes 0``: no limit, so a
    backlog of hundreds of thousands of QoS 1 messages waits whole for a
    persistent session (the shared broker keeps 1,000 per client and drops
    the rest silently). In-memory sessions (``persistence false``): stopping
    the process discards them. Used by bench/drain.py. The caller terminates it.
    """
    sys.path.insert(0, PROJECT_ROOT)
    from hub.embedded.broker import mosquitto_path

    binary = mosquitto_path()
    if binary is None:
        raise SystemExit("this benchmark needs mosquitto installed")
    port = free_port()
    config = os.path.join(directory, "mosquitto.conf")
    with open(config, "w") as f:
        f.write(f"allow_anonymous true\npersistence false\nuser {os.environ.get('USER') or 'root'}\n"
                f"max_queued_messages 0\nmax_queued_bytes 0\nlistener {port} 127.0.0.1\n")
    return _start_mosquitto(binary, config, [port]), port


async def migrate_and_seed(url: str, *, rooms: int, students: int, extra: Callable | None = None):
    """Migrate a fresh database and seed the demo campus; ``extra(db, campus)`` may add rows. Returns the campus."""
    from datetime import datetime, timezone

    from hub.db import asyncio_loop, migrate, open_database
    from hub.db.seed import ensure_campus

    async with asyncio_loop():
        async with open_database(url, max_size=2) as db:
            await migrate(db)
            campus = await ensure_campus(db, rooms=rooms, students=students, now=datetime.now(timezone.utc))
            if extra is not None:
                await extra(db, campus)
    return campus


def hub_settings(url: str, mqtt_url: str, prefix: str, **overrides: Any):
    """Settings of a benchmark hub. A fixed JWT secret: the hub then writes nothing to its data_dir."""
    from pathlib import Path

    from hub.core.config import Settings

    values: dict[str, Any] = {"database_url": url, "mqtt_url": mqtt_url, "topic_prefix": prefix,
                              "hub_client_id": f"{prefix}-hub", "jwt_secret": "campushub-benchmark-" + "x" * 32,
                              "data_dir": Path("/nonexistent/campushub-bench"),
                              # The benchmarks' campus key (above) and the demo's password-only
                              # logins: the benchmarks log seeded users in.
                              "master_key": os.environ["CAMPUSHUB_MASTER_KEY"],
                              "mfa_optional_demo": True,
                              # The benchmarks' broker is this machine's anonymous one: expected, so
                              # /healthz says "ok" (bench/restart.py times it) rather than "degraded".
                              "open_broker_expected": True}
    values.update(overrides)
    return Settings(**values)


def adopt_hub_loop(hub) -> None:
    """Make the calling trio task (and the tasks it spawns) use the running hub's trio-asyncio loop.

    ``run_hub`` opens its own loop; ``hub.db`` (asyncpg) and every actor whose
    ``started()`` queries PostgreSQL need it in the context of the task that
    calls them or spawns them (trio copies the spawner's context), and a
    benchmark that drives the hub's own code paths from its task is such a
    caller. Instrumentation only: the hub is not changed.
    """
    import trio_asyncio

    trio_asyncio.current_loop.set(hub.db._pool._loop)


RAW_MAX_BATCH = 2000  # same as the hub writer's MAX_BATCH
RAW_TABLE_DDL = ("CREATE TABLE IF NOT EXISTS raw_ingest (payload bytea NOT NULL, received_at timestamptz NOT NULL,"
                 " committed_at timestamptz NOT NULL DEFAULT now())")


async def raw_consume(db, client, ack_many: Callable[[list[Any]], None],
                      after_commit: Callable[[list[Any]], None] | None = None) -> None:
    """The raw baseline's consumer: the MQTT -> PostgreSQL path with no domain logic. Runs until cancelled.

    Batches whatever the client has buffered (flush when its channel is
    momentarily empty or RAW_MAX_BATCH are pending), COPYs (payload,
    received_at) into ``raw_ingest`` in one transaction, then acks the batch
    (one ``ack_many``, as the hub's writer does); ``after_commit(batch)`` then sees the batch (e.g. to broadcast it).
    """
    from datetime import datetime, timezone

    import trio

    rx = client.messages
    utc = timezone.utc
    while True:
        pending = [await rx.receive()]
        while len(pending) < RAW_MAX_BATCH:
            try:
                pending.append(rx.receive_nowait())
            except trio.WouldBlock:
                break
        records = [(m.payload, datetime.fromtimestamp(m.received_at, utc)) for m in pending]

        async def work(conn, records=records) -> None:
            await conn.copy_records_to_table("raw_ingest", records=records, columns=["payload", "received_at"])

        await db.run(work, transaction=True)
        ack_many(pending)
        if after_commit is not None:
            after_commit(pending)


def device_payloads(campus, checkins: bool) -> list[dict[str, Any]]:
    """The fleet's view of the seeded devices; with ``checkins``, each carries the roster of its room's session.

    A device's check-in list is every enrolled student of the session live in
    its room, so each is accepted once (later ones are duplicates).
    """
    secrets = {s.student_id: s.token_secret.hex() for s in campus.students}
    roster: dict[str, list[list[str]]] = {}
    if checkins:
        for session in campus.sessions:
            roster[session.room_id] = [[sid, secrets[sid]] for sid in session.enrolled if sid in secrets]
    return [{"id": d.device_id, "alg": d.alg, "key": d.signing_key.hex(), "checkins": roster.get(d.room_id, [])}
            for d in campus.devices]


# =========================================================================== the publisher fleet: worker


def _checkin_queue(devices: list[dict[str, Any]]) -> list[tuple[int, str, bytes]]:
    """(device index, student id, token secret), interleaved across devices so sessions fill evenly."""
    lists = [[(d, sid, bytes.fromhex(secret)) for sid, secret in dev.get("checkins", ())]
             for d, dev in enumerate(devices)]
    queue = []
    for k in range(max((len(x) for x in lists), default=0)):
        queue.extend(x[k] for x in lists if k < len(x))
    return queue


def fleet_worker_main() -> None:
    """Runs in the child. stdin: one JSON line of setup, then global committed counts, one per line.

    The first count line ("0") is also the start signal, sent once every worker is connected.
    stdout: "ready", then one JSON line of results.
    """
    import selectors

    import paho.mqtt.client as mqtt

    from schemas import (
        QrScan,
        QrScanEvent,
        SensorReading,
        SensorReadingEvent,
        Topics,
        encode_event,
        issue_checkin_token,
        new_event_id,
    )

    setup = json.loads(sys.stdin.readline())
    host, port = setup["host"], setup["port"]
    n, window, rate, inflight = setup["n"], setup["window"], setup["rate"], setup["inflight"]
    share = setup["share"]  # of the global message count: scales the committed count we are told
    per_device = setup["mode"] == "per-device"
    fraction = setup.get("checkin_fraction", 0.0)
    tick = setup.get("tick_s", 0.001)
    v311 = setup.get("mqtt", "5") == "3.1.1"
    protocol = mqtt.MQTTv311 if v311 else mqtt.MQTTv5
    clean = {} if v311 else {"clean_start": True}  # 3.1.1: clean_session=True, given to the Client
    topics = Topics(setup["prefix"])
    tls_context = None
    if setup.get("cafile"):  # TLS to the broker (bench/pipeline.py --tls): verify it with this CA
        import ssl

        tls_context = ssl.create_default_context(cafile=setup["cafile"])
    devices = [(d["id"], topics.uplink(d["id"]), d["alg"], bytes.fromhex(d["key"])) for d in setup["devices"]]
    checkin_queue = _checkin_queue(setup["devices"]) if fraction > 0 else []
    bodies = [SensorReading(metric="temperature", value=19.0 + (i % 50) / 10, unit="C") for i in range(50)]
    seqs = [0] * len(devices)
    # Every published event's id, written to this file at the end (bench/drain.py checks each is stored once).
    ids_file = setup.get("ids_file")
    published_ids: list[bytes] = []

    # Ctrl-C in a terminal reaches the whole process group: the parent stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    committed = -1
    parent_gone = False
    go = threading.Event()

    def read_progress() -> None:
        nonlocal committed, parent_gone
        for line in sys.stdin:
            committed = int(line)
            go.set()
        parent_gone = True  # EOF before we are done: nobody will ever report commits again
        go.set()

    threading.Thread(target=read_progress, daemon=True).start()

    acked = 0

    def on_publish(client, userdata, mid, rc, props) -> None:
        nonlocal acked
        acked += 1

    def new_client(client_id: str, max_inflight: int, max_queued: int):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                        **({"clean_session": True} if v311 else {}))
        c.max_inflight_messages_set(max_inflight)
        c.max_queued_messages_set(max_queued)
        c.on_publish = on_publish
        if tls_context is not None:
            c.tls_set_context(tls_context)  # paho's handshake in connect() blocks: fine, before the timed part
        return c

    t_connect = time.perf_counter()
    sel = None
    if per_device:
        clients = [new_client(f"{setup['prefix']}-{d[0]}", inflight, 1000) for d in devices]
        sel = selectors.DefaultSelector()
        for c in clients:
            c.connect(host, port, keepalive=60, **clean)
            sel.register(c.socket(), selectors.EVENT_READ, c)
        pending = set(range(len(clients)))
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(0.05):
                key.data.loop_read(10)
            pending = {i for i in pending if not clients[i].is_connected()}
        if pending:
            print(json.dumps({"error": f"{len(pending)} of {len(clients)} connections got no CONNACK"}), flush=True)
            return
        client_of = clients
    else:
        # External-loop paho in one thread (as in bench/mqtt_receive.py): loop_start()
        # costs about twice the CPU, taken from the system under test on a small box.
        c = new_client(f"{setup['prefix']}-pub{setup['worker']}", inflight, max(1000, window))
        c.connect(host, port, keepalive=30, **clean)
        while not c.is_connected():
            c.loop(0.1)
        clients = [c]
        client_of = [c] * len(devices)
    connect_s = time.perf_counter() - t_connect
    print("ready", flush=True)
    go.wait()

    ndev = len(devices)
    i = 0  # messages published
    k_sensor = 0  # round robin over devices for sensor readings
    k_checkin = 0  # next entry of checkin_queue
    window_blocked_s = 0.0
    dirty: set = set()  # per-device clients that may have bytes left to write
    last_misc = time.perf_counter()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    t_all_published = None
    while acked < n and not parent_gone:
        now = time.perf_counter()
        by_window = int(max(committed, 0) * share) + window
        limit = min(n, by_window)
        if rate:
            limit = min(limit, int((now - t0) * rate) + 1)
        while i < limit:
            if fraction and k_checkin < len(checkin_queue) and int((i + 1) * fraction) > int(i * fraction):
                d, student_id, secret = checkin_queue[k_checkin]
                device, topic, alg, key = devices[d]
                at = time.time()
                event = QrScanEvent(v=1, id=new_event_id(), device=device, ts=int(at * 1000), seq=seqs[d],
                                    body=QrScan(text=issue_checkin_token(student_id, secret, at)))
                is_checkin = True
            else:
                d = k_sensor % ndev
                device, topic, alg, key = devices[d]
                event = SensorReadingEvent(v=1, id=new_event_id(), device=device, ts=int(time.time() * 1000),
                                           seq=seqs[d], body=bodies[i % 50])
                is_checkin = False
            if client_of[d].publish(topic, encode_event(event, alg, key), qos=1).rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                break
            if per_device:
                dirty.add(client_of[d])
            if ids_file:
                published_ids.append(event.id)
            seqs[d] += 1
            i += 1
            if is_checkin:
                k_checkin += 1
            else:
                k_sensor += 1
        if i == n and t_all_published is None:
            t_all_published = time.perf_counter()
        blocked = i < n and i >= by_window
        t_loop = time.perf_counter()
        # A 1 ms tick (tick_s) also in --rate mode (bursts of rate/1000 messages),
        # not a wake-up per message: fewer select() calls, less CPU taken from
        # the system under test on a small machine. Each tick costs ~0.1-0.2 ms
        # of CPU, so several worker processes use a longer tick.
        if per_device:
            for key, _ in sel.select(tick):
                key.data.loop_read(10)  # PUBACKs; may release queued publishes
                dirty.add(key.data)
            if tls_context is not None:
                # Decrypted PUBACKs can sit in the SSL object with nothing left on the socket
                # (loop_read stops after as many packets as are outstanding): select() would
                # never report them, and the last ones would never be counted.
                for c in clients:
                    if c.socket() is not None and c.socket().pending():
                        c.loop_read(10)
                        dirty.add(c)
            # What publish() could not write at once (rare): only clients touched since the last tick,
            # not all of them (a few hundred want_write() calls per 1 ms tick cost more than the publishing).
            still = set()
            for c in dirty:
                if c.want_write():
                    c.loop_write()
                    if c.want_write():
                        still.add(c)
            dirty = still
            if t_loop - last_misc >= 1.0:  # keepalive, retries
                last_misc = t_loop
                for c in clients:
                    c.loop_misc()
        else:
            clients[0].loop(tick)  # select + loop_read/loop_write + keepalive
        if blocked:
            window_blocked_s += time.perf_counter() - t_loop
    elapsed = (t_all_published or time.perf_counter()) - t0
    cpu = time.process_time() - cpu0
    for c in clients:
        c.disconnect()
    if per_device:
        for key, _ in sel.select(0.1):
            key.data.loop_read(10)
    else:
        clients[0].loop(0.1)
    if ids_file:
        with open(ids_file, "wb") as f:
            f.write(b"".join(published_ids))  # 16 bytes each
    print(json.dumps({"published": i, "publish_s": elapsed, "cpu_s": cpu, "window_blocked_s": window_blocked_s,
                      "checkins": k_checkin, "connections": len(clients), "connect_s": connect_s}), flush=True)


# =========================================================================== the publisher fleet: parent side


@dataclass
class FleetConfig:
    """How the load is generated (see the module docstring)."""

    host: str
    port: int
    messages: int
    rate: float = 0.0  # total, per second; 0 = as fast as possible
    window: int = 900  # total
    inflight: int = 50  # per connection
    processes: int = 1
    per_device: bool = False
    checkin_fraction: float = 0.0
    timeout: float = 90.0
    cafile: str | None = None  # set: the publishers connect with TLS, verifying the broker with this CA


@dataclass
class Phase:
    """What one system's run measured."""

    system: str
    n: int
    # (time.time() of the ack, payload): bytes, not the InboundMessage, so that the log (up to 10^5
    # entries) adds nothing for the measured process's garbage collector to traverse.
    ack_log: list[tuple[float, bytes]] = field(default_factory=list)
    publisher: dict[str, Any] = field(default_factory=dict)
    cpu_s: float = 0.0
    machine_busy: float = math.nan  # fraction of all CPUs busy during the run
    machine_cpu_s: float = math.nan  # CPU-seconds used by the whole machine during the run
    wall_s: float = math.nan
    timed_out: bool = False
    db_latencies: list[float] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    load_average: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        from schemas import decode_frame

        acks = sorted(t for t, _ in self.ack_log)
        ts = [decode_frame(payload)[1].ts / 1000 for _, payload in self.ack_log]
        ack_lat = sorted(t - s for (t, _), s in zip(self.ack_log, ts))
        db_lat = sorted(self.db_latencies)
        committed = len(acks)
        out: dict[str, Any] = {"committed": committed, "messages": self.n, "timed_out": self.timed_out}
        if committed:
            first_pub = min(ts)
            out["events_per_s"] = committed / (acks[-1] - first_pub)
            lo, hi = int(committed * 0.1), int(committed * 0.9) - 1
            out["steady_events_per_s"] = (hi - lo) / (acks[hi] - acks[lo]) if hi > lo else math.nan
        for name, values in (("db", db_lat), ("ack", ack_lat)):
            for p in (50, 95, 99):
                out[f"{name}_p{p}_ms"] = percentile(values, p) * 1000
            out[f"{name}_max_ms"] = (values[-1] * 1000) if values else math.nan
        out["cpu_s"] = self.cpu_s
        out["events_per_cpu_s"] = committed / self.cpu_s if self.cpu_s else math.nan
        out["machine_busy_pct"] = self.machine_busy * 100
        out["wall_s"] = self.wall_s
        # Everything else on the machine: broker, PostgreSQL, other tenants.
        out["rest_of_machine_cpu_s"] = self.machine_cpu_s - self.cpu_s - self.publisher.get("cpu_s", math.nan)
        out["publisher"] = self.publisher
        out["rows"] = self.rows
        out["load_average"] = self.load_average
        out.update(self.extra)
        return out


class Driver:
    """Starts the publisher workers, feeds them committed counts, shows progress, waits for the last commit."""

    def __init__(self, config: FleetConfig, prefix: str, devices: list[dict[str, Any]], phase: Phase) -> None:
        self.config = config
        self.prefix = prefix
        self.devices = devices
        self.phase = phase
        self._workers: list[subprocess.Popen] = []
        self._reported = 0
        # Report commits to the publishers every `step` acks (a pipe write from
        # inside the ack: no polling task). They may then run up to `step` fewer
        # than --window ahead; window > step, so they are never starved.
        self._step = max(1, config.window // 8)
        self._all_committed = None  # trio.Event, made in run()
        #: Called (synchronously) once all publishers are connected, right before they start.
        self.on_start: Callable[[], None] | None = None

    def ack_recorder(self, ack_many):
        """Wrap a client's ack_many(): record when each message was acked (after its commit) and report."""
        log = self.phase.ack_log
        n = self.phase.n

        def recording_ack_many(messages) -> None:
            ack_many(messages)
            now = time.time()
            log.extend((now, message.payload) for message in messages)
            count = len(log)
            if count - self._reported >= self._step or count >= n:
                self._report(count)

        return recording_ack_many

    def _report(self, count: int) -> None:
        self._reported = count
        if count >= self.phase.n and self._all_committed is not None:
            self._all_committed.set()
        for w in self._workers:
            try:
                w.stdin.write(f"{count}\n")
                w.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass  # publisher gone (it got all its PUBACKs), or stdin closed

    def _split(self) -> list[dict[str, Any]]:
        cfg = self.config
        p = max(1, min(cfg.processes, len(self.devices)))
        setups = []
        for w in range(p):
            n_w = cfg.messages // p + (1 if w < cfg.messages % p else 0)
            setups.append({
                "host": cfg.host, "port": cfg.port, "prefix": self.prefix, "worker": w,
                "devices": self.devices[w::p], "n": n_w, "share": n_w / cfg.messages,
                "window": max(1, round(cfg.window * n_w / cfg.messages)), "rate": cfg.rate * n_w / cfg.messages,
                "inflight": cfg.inflight, "mode": "per-device" if cfg.per_device else "shared",
                "checkin_fraction": cfg.checkin_fraction, "cafile": cfg.cafile,
                # About 1,000 wake-ups per second in all (a 1 ms tick for one worker, as before).
                "tick_s": 0.001 * p,
            })
        return setups

    async def run(self) -> None:
        import trio

        cfg, phase = self.config, self.phase
        self._all_committed = trio.Event()
        setups = self._split()
        workers = self._workers = [
            # Popen only forks and execs (it does not wait): harmless before the measured phase starts.
            subprocess.Popen([sys.executable, os.path.join(BENCH_DIR, "_common.py"), "--fleet-worker"],  # noqa: ASYNC220
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
            for _ in setups
        ]
        finished = False
        try:
            for w, setup in zip(workers, setups):
                w.stdin.write(json.dumps(setup) + "\n")
                w.stdin.flush()
            for w in workers:
                line = await trio.to_thread.run_sync(w.stdout.readline)
                if line.strip() != "ready":
                    raise SystemExit(f"publisher failed to start: {line!r}")
            if self.on_start is not None:
                self.on_start()
            phase.load_average = load_average()
            busy0, total0 = cpu_jiffies()
            cpu0 = time.process_time()
            wall0 = time.perf_counter()
            self._report(0)  # the start signal
            log = phase.ack_log
            n = phase.n
            with trio.move_on_after(cfg.timeout) as timeout:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._show_progress)
                    await self._all_committed.wait()
                    nursery.cancel_scope.cancel()
            phase.cpu_s = time.process_time() - cpu0
            phase.wall_s = time.perf_counter() - wall0
            busy1, total1 = cpu_jiffies()
            if total1 > total0:
                phase.machine_busy = (busy1 - busy0) / (total1 - total0)
                phase.machine_cpu_s = (busy1 - busy0) / os.sysconf("SC_CLK_TCK")
            phase.timed_out = timeout.cancelled_caught
            if phase.timed_out:
                progress(f"  {phase.system}: timed out after {cfg.timeout:.0f}s with {len(log):,}/{n:,} committed")
            else:
                results = []
                for w in workers:
                    line = await trio.to_thread.run_sync(w.stdout.readline)
                    if line.strip():
                        results.append(json.loads(line))
                phase.publisher = _merge_publishers(results)
            finished = not phase.timed_out
        finally:
            self._workers = []
            for w in workers:
                if not finished:  # Ctrl-C, an error, or a timeout: it would wait for commits forever
                    w.kill()
                try:
                    w.stdin.close()
                except (BrokenPipeError, OSError):
                    pass
            for w in workers:
                try:
                    w.wait(10)
                except subprocess.TimeoutExpired:
                    w.kill()
                    w.wait()

    async def _show_progress(self) -> None:
        import trio

        log, n = self.phase.ack_log, self.phase.n
        last, t_last = 0, time.perf_counter()
        while True:
            await trio.sleep(1.0)
            count, now = len(log), time.perf_counter()
            progress(f"  {self.phase.system}: {count:>9,}/{n:,} committed, {(count - last) / (now - t_last):>8,.0f}/s")
            last, t_last = count, now


def publish_backlog(config: FleetConfig, prefix: str, devices: list[dict[str, Any]],
                    ids_dir: str) -> tuple[dict[str, Any], list[bytes]]:
    """Publish ``config.messages`` events as fast as the broker takes them, with no window; (publisher, ids).

    For a backlog: nobody consumes them yet, so each waits in the broker for
    the offline persistent sessions subscribed to it (a broker that queues
    without limit: :func:`start_backlog_broker`). Returns the publishers'
    merged figures and the 16-byte id of every event published, in order.
    Synchronous: call it between trio runs. The publishers are killed after
    ``config.timeout`` seconds.
    """
    from dataclasses import replace

    driver = Driver(replace(config, window=config.messages), prefix, devices, Phase("backlog", config.messages))
    setups = driver._split()
    for setup in setups:
        setup["ids_file"] = os.path.join(ids_dir, f"published-{setup['worker']}.ids")
    workers = [subprocess.Popen([sys.executable, os.path.join(BENCH_DIR, "_common.py"), "--fleet-worker"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
               for _ in setups]
    timer = threading.Timer(config.timeout, lambda: [w.kill() for w in workers])
    timer.start()
    try:
        for w, setup in zip(workers, setups):
            w.stdin.write(json.dumps(setup) + "\n")
            w.stdin.flush()
        for w in workers:
            if w.stdout.readline().strip() != "ready":
                raise SystemExit("a publisher failed to start")
        for w in workers:
            w.stdin.write("0\n")  # the start signal (and a committed count of 0: the window is everything)
            w.stdin.flush()
        results = []
        for w in workers:
            line = w.stdout.readline()
            if not line.strip():
                raise SystemExit(f"a publisher stopped without its results (killed after {config.timeout:.0f}s?)")
            results.append(json.loads(line))
    finally:
        timer.cancel()
        for w in workers:
            try:
                w.stdin.close()
            except OSError:
                pass
            try:
                w.wait(10)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait()
    ids: list[bytes] = []
    for setup in setups:
        with open(setup["ids_file"], "rb") as f:
            data = f.read()
        os.unlink(setup["ids_file"])
        ids.extend(data[k:k + 16] for k in range(0, len(data), 16))
    return _merge_publishers(results), ids


def _merge_publishers(results: list[dict[str, Any]]) -> dict[str, Any]:
    if not results:
        return {}
    if len(results) == 1:
        return {**results[0], "processes": 1}
    return {
        "published": sum(r["published"] for r in results),
        "publish_s": max(r["publish_s"] for r in results),
        "cpu_s": sum(r["cpu_s"] for r in results),
        "window_blocked_s": max(r["window_blocked_s"] for r in results),
        "checkins": sum(r.get("checkins", 0) for r in results),
        "connections": sum(r.get("connections", 1) for r in results),
        "connect_s": max(r.get("connect_s", 0) for r in results),
        "processes": len(results),
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--fleet-worker"]:
        fleet_worker_main()
    else:
        raise SystemExit("usage: (internal) python bench/_common.py --fleet-worker")
