"""Sustained end-to-end ingest through the real hub, against a raw MQTT -> PostgreSQL baseline.

Both systems are fed by the same publisher: a separate *process* (so it does
not compete for our GIL) running plain paho-mqtt (MQTT 5, QoS 1, max inflight
50) that signs SensorReadingEvent frames with the keys of the seeded devices
(round robin, ``ts`` = its wall clock in ms when it calls publish()) and
publishes them on each device's uplink topic, either as fast as it can or at
a fixed ``--rate``. It never runs more than ``--window`` messages ahead of
what the system under test has committed (the parent reports that count
over the publisher's stdin): Mosquitto keeps at most 1,000 queued messages
per subscriber beyond those in flight and silently drops the rest.

* raw: the same MQTT -> PostgreSQL path with no domain logic, in this
  process: a TrioMqttClient (manual ack, QoS 1, persistent session); batches
  whatever is buffered (flush when the channel is momentarily empty or 2,000
  are pending), COPYs (payload, received_at) into a scratch table in one
  transaction (``Database.run(..., transaction=True)``), then acks.
* hub: ``hub.app.run_hub(settings, port=None)`` in this process, on a fresh
  migrated database seeded with ``ensure_campus``: decode, authenticate,
  device actors, the writer's dedup + COPY transaction, ack.

Figures per system (all clocks are this machine's):

* events/s: committed messages / (first publish ts -> last ack); "steady"
  is the same over the 10 %..90 % of acks (no ramp-up or tail).
* db p50/p95/p99: exact percentiles over every row of ``committed_at -
  publish ts`` (hub: ``events.committed_at - events.device_ts``; raw: the
  scratch table's ``committed_at`` - the ts decoded afterwards from the stored
  payload). ``committed_at`` is ``DEFAULT now()``, i.e. the *start* of the
  batch's transaction, so this leaves out the transaction itself.
* ack p50/p95/p99: publish ts -> the PUBACK handed to paho, which both
  systems do only after COMMIT returned: the real "durable and acknowledged"
  latency. Recorded by wrapping the MQTT client's ack() (instrumentation
  only; no hub code is changed).
* ts has millisecond resolution (the wire format), so every latency is
  overstated by 0..1 ms (0.5 ms on average).

    .venv/bin/python bench/pipeline.py [--messages 30000] [--rate 0] [--window 900]
        [--rooms 20] [--systems raw,hub] [--json] [--profile hub.pstats]

Setup creates databases named ``campushub_bench_<random>_{raw,hub}`` and
drops them at the end (also on Ctrl-C); topic prefix and client ids are
unique per run, and the broker sessions of our clients are discarded at the
end. Progress goes to stderr; the table (or ``--json``) to stdout. A
benchmark: no assertions.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
RAW_MAX_BATCH = 2000  # same as the hub writer's MAX_BATCH


# =========================================================================== publisher process


def publisher_main(host: str, port: int, n: int, window: int, rate: float, inflight: int) -> None:
    """Runs in the child. stdin: one JSON line of setup, then committed counts, one per line."""
    import paho.mqtt.client as mqtt

    from schemas import SensorReading, SensorReadingEvent, Topics, encode_event, new_event_id

    setup = json.loads(sys.stdin.readline())
    topics = Topics(setup["prefix"])
    devices = [(d["id"], topics.uplink(d["id"]), d["alg"], bytes.fromhex(d["key"])) for d in setup["devices"]]
    bodies = [SensorReading(metric="temperature", value=19.0 + (i % 50) / 10, unit="C") for i in range(50)]
    seqs = [0] * len(devices)

    # Ctrl-C in a terminal reaches the whole process group: the parent stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    committed = 0
    parent_gone = False

    def read_progress() -> None:
        nonlocal committed, parent_gone
        for line in sys.stdin:
            committed = int(line)
        parent_gone = True  # EOF before we are done: nobody will ever report commits again

    threading.Thread(target=read_progress, daemon=True).start()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{setup['prefix']}-pub",
                    protocol=mqtt.MQTTv5)
    # External-loop paho in one thread (as in bench/mqtt_receive.py): loop_start()
    # costs about twice the CPU, taken from the system under test on a small box.
    c.max_inflight_messages_set(inflight)
    c.max_queued_messages_set(max(1000, window))
    acked = 0

    def on_publish(client, userdata, mid, rc, props) -> None:
        nonlocal acked
        acked += 1

    c.on_publish = on_publish
    c.connect(host, port, keepalive=30, clean_start=True)
    while not c.is_connected():
        c.loop(0.1)
    print("ready", flush=True)

    ndev = len(devices)
    i = 0
    window_blocked_s = 0.0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    t_all_published = None
    while acked < n and not parent_gone:
        now = time.perf_counter()
        by_window = committed + window
        limit = min(n, by_window)
        if rate:
            limit = min(limit, int((now - t0) * rate) + 1)
        while i < limit:
            d = i % ndev
            device, topic, alg, key = devices[d]
            event = SensorReadingEvent(v=1, id=new_event_id(), device=device, ts=int(time.time() * 1000),
                                       seq=seqs[d], body=bodies[i % 50])
            if c.publish(topic, encode_event(event, alg, key), qos=1).rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                break
            seqs[d] += 1
            i += 1
        if i == n and t_all_published is None:
            t_all_published = time.perf_counter()
        blocked = i < n and i >= by_window
        t_loop = time.perf_counter()
        # A 1 ms tick also in --rate mode (bursts of rate/1000 messages), not a
        # wake-up per message: fewer select() calls, less CPU taken from the
        # system under test on a small machine.
        c.loop(0.001)  # select + loop_read/loop_write + keepalive
        if blocked:
            window_blocked_s += time.perf_counter() - t_loop
    elapsed = (t_all_published or time.perf_counter()) - t0
    cpu = time.process_time() - cpu0
    c.disconnect()
    c.loop(0.1)
    print(json.dumps({"published": i, "publish_s": elapsed, "cpu_s": cpu,
                      "window_blocked_s": window_blocked_s}), flush=True)


# =========================================================================== helpers


def database_url_for(server_url: str, database: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile (exact: one of the values) of an ascending list."""
    if not sorted_values:
        return math.nan
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


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


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Phase:
    """What one system's run measured."""

    system: str
    n: int
    ack_log: list[tuple[float, Any]] = field(default_factory=list)  # (time.time() of ack, InboundMessage)
    publisher: dict[str, Any] = field(default_factory=dict)
    cpu_s: float = 0.0
    machine_busy: float = math.nan  # fraction of all CPUs busy during the run
    machine_cpu_s: float = math.nan  # CPU-seconds used by the whole machine during the run
    wall_s: float = math.nan
    timed_out: bool = False
    db_latencies: list[float] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        from schemas import decode_frame

        acks = sorted(t for t, _ in self.ack_log)
        ts = [decode_frame(m.payload)[1].ts / 1000 for _, m in self.ack_log]
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
        out.update(self.extra)
        return out


# =========================================================================== driving one system


class Driver:
    """Starts the publisher, feeds it committed counts, shows progress, waits for the last commit."""

    def __init__(self, args: argparse.Namespace, prefix: str, devices: list[dict[str, str]], phase: Phase) -> None:
        self.args = args
        self.prefix = prefix
        self.devices = devices
        self.phase = phase
        self._pub: subprocess.Popen | None = None
        self._reported = 0
        # Report commits to the publisher every `step` acks (a pipe write from
        # inside the ack: no polling task). It may then run up to `step` fewer
        # than --window ahead; window > step, so it is never starved.
        self._step = max(1, args.window // 8)
        self._all_committed = None  # trio.Event, made in run()

    def ack_recorder(self, ack):
        """Wrap a client's ack(): record when each message was acked (after its commit) and report."""
        log = self.phase.ack_log
        n = self.phase.n

        def recording_ack(message) -> None:
            ack(message)
            log.append((time.time(), message))
            count = len(log)
            if count - self._reported >= self._step or count >= n:
                self._report(count)

        return recording_ack

    def _report(self, count: int) -> None:
        self._reported = count
        if count >= self.phase.n and self._all_committed is not None:
            self._all_committed.set()
        if self._pub is not None:
            try:
                self._pub.stdin.write(f"{count}\n")
                self._pub.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass  # publisher gone (it got all its PUBACKs), or stdin closed

    async def run(self) -> None:
        import trio

        args, phase = self.args, self.phase
        self._all_committed = trio.Event()
        pub = self._pub = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--publisher", "--host", args.mqtt.host,
             "--port", str(args.mqtt.port), "--messages", str(args.messages), "--window", str(args.window),
             "--rate", str(args.rate), "--inflight", str(args.inflight)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        assert pub.stdin is not None and pub.stdout is not None
        finished = False
        try:
            pub.stdin.write(json.dumps({"prefix": self.prefix, "devices": self.devices}) + "\n")
            pub.stdin.flush()
            line = await trio.to_thread.run_sync(pub.stdout.readline)
            if line.strip() != "ready":
                raise SystemExit(f"publisher failed to start: {line!r}")
            busy0, total0 = cpu_jiffies()
            cpu0 = time.process_time()
            wall0 = time.perf_counter()
            log = phase.ack_log
            n = phase.n
            with trio.move_on_after(args.timeout) as timeout:
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
                progress(f"  {phase.system}: timed out after {args.timeout:.0f}s with {len(log):,}/{n:,} committed")
            else:
                line = await trio.to_thread.run_sync(pub.stdout.readline)
                if line.strip():
                    phase.publisher = json.loads(line)
            finished = not phase.timed_out
        finally:
            self._pub = None
            if not finished:  # Ctrl-C, an error, or a timeout: it would wait for commits forever
                pub.kill()
            try:
                pub.stdin.close()
            except BrokenPipeError:
                pass
            try:
                pub.wait(10)
            except subprocess.TimeoutExpired:
                pub.kill()
                pub.wait()

    async def _show_progress(self) -> None:
        import trio

        log, n = self.phase.ack_log, self.phase.n
        last, t_last = 0, time.perf_counter()
        while True:
            await trio.sleep(1.0)
            count, now = len(log), time.perf_counter()
            progress(f"  {self.phase.system}: {count:>9,}/{n:,} committed, {(count - last) / (now - t_last):>8,.0f}/s")
            last, t_last = count, now


async def run_raw(args: argparse.Namespace, url: str, prefix: str, devices: list[dict[str, str]]) -> Phase:
    import trio

    from hub.db import asyncio_loop, open_database
    from hub.mqtt import TrioMqttClient
    from schemas import Topics

    phase = Phase("raw", args.messages)
    driver = Driver(args, prefix, devices, phase)
    topics = Topics(prefix)
    async with asyncio_loop(), open_database(url) as db:
        await db.execute(
            "CREATE TABLE raw_ingest (payload bytea NOT NULL, received_at timestamptz NOT NULL,"
            " committed_at timestamptz NOT NULL DEFAULT now())")
        client = TrioMqttClient(host=args.mqtt.host, port=args.mqtt.port, client_id=f"{prefix}-raw",
                                session_expiry_s=300)
        ack = driver.ack_recorder(client.ack)

        async def on_connect(c: TrioMqttClient) -> None:
            await c.subscribe(topics.uplink_filter, qos=1)

        async def consume() -> None:
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
                    await conn.copy_records_to_table("raw_ingest", records=records,
                                                     columns=["payload", "received_at"])

                await db.run(work, transaction=True)
                for m in pending:
                    ack(m)

        async with trio.open_nursery() as nursery:
            await nursery.start(partial(client.run, on_connect=on_connect))
            nursery.start_soon(consume)
            await driver.run()
            nursery.cancel_scope.cancel()

        from schemas import decode_frame

        rows = await db.fetch("SELECT payload, extract(epoch FROM committed_at)::float8 AS c FROM raw_ingest")
        phase.db_latencies = [r["c"] - decode_frame(r["payload"])[1].ts / 1000 for r in rows]
        phase.rows = {"raw_ingest": len(rows)}
        phase.extra["mqtt"] = {"received": client.stats.received, "acked": client.stats.acked,
                               "reconnects": client.stats.reconnects}
    return phase


async def run_hub_phase(args: argparse.Namespace, url: str, prefix: str, devices: list[dict[str, str]],
                        data_dir: str) -> Phase:
    import trio

    from hub.app import run_hub
    from hub.config import Settings

    phase = Phase("hub", args.messages)
    driver = Driver(args, prefix, devices, phase)
    settings = Settings(database_url=url, mqtt_url=str(args.mqtt), topic_prefix=prefix,
                        hub_client_id=f"{prefix}-hub", data_dir=Path(data_dir))
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, settings, port=None))
        # The writer acks through client.ack after each commit; record when.
        hub.client.ack = driver.ack_recorder(hub.client.ack)
        await driver.run()
        m = hub.metrics
        phase.extra["hub_metrics"] = {
            "ingested": sum(s.value for metric in m.events_ingested.collect() for s in metric.samples
                            if s.name.endswith("_total")),
            "rejected": sum(s.value for metric in m.events_rejected.collect() for s in metric.samples
                            if s.name.endswith("_total")),
            "batches": next(s.value for metric in m.batch_size.collect() for s in metric.samples
                            if s.name.endswith("_count")),
            "restarts": m.actor_restarts._value.get(),
        }
        b = phase.extra["hub_metrics"] = {k: int(v) for k, v in phase.extra["hub_metrics"].items()}
        b["mean_batch"] = round(len(phase.ack_log) / b["batches"], 1) if b["batches"] else math.nan
        nursery.cancel_scope.cancel()
    return phase


async def hub_db_results(db, phase: Phase) -> None:
    rows = await db.fetch(
        "SELECT extract(epoch FROM committed_at - device_ts)::float8 AS l FROM events"
        " WHERE kind = 'sensor_reading'")
    phase.db_latencies = [r["l"] for r in rows]
    for table in ("events", "sensor_readings", "rejected_events", "processed_messages"):
        phase.rows[table] = await db.fetchval(f"SELECT count(*) FROM {table}")


async def setup(args: argparse.Namespace, names: dict[str, str], created: list[str]) -> tuple[str, Any]:
    """Create the databases (recording each in ``created`` at once), migrate and seed the hub's.

    Returns the server version and the seeded campus (the raw run publishes as the same devices).
    """
    from hub.db import asyncio_loop, migrate, open_database
    from hub.db.seed import ensure_campus

    async with asyncio_loop():
        async with open_database(args.database_url, max_size=1) as server:
            version = await server.fetchval("SHOW server_version")
            for name in names.values():
                await server.execute(f"CREATE DATABASE {name}")
                created.append(name)
        async with open_database(database_url_for(args.database_url, names.get("hub") or names["raw"]),
                                 max_size=2) as db:
            await migrate(db)
            campus = await ensure_campus(db, rooms=args.rooms, students=args.students,
                                         now=datetime.now(timezone.utc))
    return version, campus


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


# =========================================================================== setup, teardown, output


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


def machine_facts(pg_version: str) -> dict[str, Any]:
    import paho.mqtt

    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "postgresql": pg_version,
        "paho_mqtt": paho.mqtt.__version__,
    }


def print_profile(path: str, top: int = 15) -> None:
    """The hub run's hottest functions (own time), and CPU by package, on stderr."""
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
            key = os.path.relpath(filename, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        by_package[key] += tottime
    total = sum(by_package.values()) or 1.0
    out.write("own time by package / project file:\n")
    for key, seconds in by_package.most_common(top):
        out.write(f"  {seconds:7.2f}s {100 * seconds / total:5.1f}%  {key}\n")
    progress(f"hub: profile saved to {path}\n{out.getvalue()}")


def fmt(value: float, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_table(report: dict[str, Any]) -> None:
    cfg, machine, results = report["config"], report["machine"], report["results"]
    rate = "as fast as possible" if not cfg["rate"] else f"{cfg['rate']:,.0f}/s"
    print(f"pipeline: {cfg['messages']:,} signed sensor readings from {cfg['rooms']} devices, "
          f"publisher rate {rate}, window {cfg['window']}, QoS 1, publisher inflight {cfg['inflight']}"
          + (" -- hub run under cProfile: NOT comparable" if cfg["profiled"] else ""))
    print(f"machine: {machine['cpus']} CPUs ({machine['cpus_usable']} usable), load average "
          f"{' '.join(map(str, machine['load_average']))} at start, {machine['implementation']} "
          f"{machine['python']}, PostgreSQL {machine['postgresql']}, paho-mqtt {machine['paho_mqtt']}")
    print()
    head = (f"{'system':<8} {'committed':>9} {'events/s':>9} {'steady/s':>9} "
            f"{'db p50':>7} {'db p95':>7} {'db p99':>7} {'ack p50':>7} {'ack p95':>7} {'ack p99':>7} "
            f"{'CPU s':>6} {'ev/CPU-s':>9} {'busy':>5}")
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        flag = " (TIMED OUT)" if r["timed_out"] else ""
        print(f"{name:<8} {r['committed']:>9,} {fmt(r.get('events_per_s'), ',.0f'):>9} "
              f"{fmt(r.get('steady_events_per_s'), ',.0f'):>9} "
              f"{fmt(r['db_p50_ms'], '.1f'):>7} {fmt(r['db_p95_ms'], '.1f'):>7} {fmt(r['db_p99_ms'], '.1f'):>7} "
              f"{fmt(r['ack_p50_ms'], '.1f'):>7} {fmt(r['ack_p95_ms'], '.1f'):>7} {fmt(r['ack_p99_ms'], '.1f'):>7} "
              f"{fmt(r['cpu_s'], '.2f'):>6} {fmt(r['events_per_cpu_s'], ',.0f'):>9} "
              f"{fmt(r['machine_busy_pct'], '.0f'):>4}%{flag}")
    if "hub/raw" in report:
        q = report["hub/raw"]
        print(f"{'hub/raw':<8} {'':>9} {fmt(q['events_per_s'], '.2f') + 'x':>9} "
              f"{fmt(q['steady_events_per_s'], '.2f') + 'x':>9} "
              f"{fmt(q['db_p50_ms'], '.1f') + 'x':>7} {fmt(q['db_p95_ms'], '.1f') + 'x':>7} "
              f"{fmt(q['db_p99_ms'], '.1f') + 'x':>7} {fmt(q['ack_p50_ms'], '.1f') + 'x':>7} "
              f"{fmt(q['ack_p95_ms'], '.1f') + 'x':>7} {fmt(q['ack_p99_ms'], '.1f') + 'x':>7} "
              f"{fmt(q['cpu_s'], '.2f') + 'x':>6} {fmt(q['events_per_cpu_s'], '.2f') + 'x':>9}")
    print()
    print("latencies in ms, from the publisher's publish() call (ms clock); db = to committed_at (transaction"
          " start),\nack = to the PUBACK after COMMIT; CPU s = this process (system under test) during the run;"
          " busy = all CPUs.")
    for name, r in results.items():
        p = r["publisher"]
        if p:
            print(f"{name}: publisher sent {p['published']:,} in {p['publish_s']:.2f}s "
                  f"({p['published'] / p['publish_s'] if p['publish_s'] else math.nan:,.0f}/s), "
                  f"CPU {p['cpu_s']:.2f}s, {p['window_blocked_s']:.2f}s waiting on the window; "
                  f"rest of machine (broker, PostgreSQL, others) {fmt(r['rest_of_machine_cpu_s'], '.2f')} CPU s "
                  f"in {r['wall_s']:.2f}s")
            print(f"{' ' * len(name)}  rows {r['rows']}"
                  + (f"; hub metrics {r['hub_metrics']}" if "hub_metrics" in r else ""))


def _no_nan(value: Any) -> Any:
    """NaN (a figure that does not exist) as null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", "-n", type=int, default=30_000)
    ap.add_argument("--rate", type=float, default=0, help="publish rate per second; 0 = as fast as possible")
    ap.add_argument("--window", type=int, default=900,
                    help="max messages the publisher may run ahead of what is committed")
    ap.add_argument("--inflight", type=int, default=50, help="publisher's max inflight QoS 1 messages")
    ap.add_argument("--rooms", type=int, default=20, help="rooms = devices seeded (and published as)")
    ap.add_argument("--students", type=int, default=40)
    ap.add_argument("--systems", default="raw,hub", help="comma-separated, run in this order: raw, hub")
    ap.add_argument("--timeout", type=float, default=90, help="per system, seconds")
    ap.add_argument("--database-url", default=os.environ.get("CAMPUSHUB_TEST_DATABASE_URL", DEFAULT_SERVER_URL),
                    help="a server to create the benchmark databases on")
    ap.add_argument("--mqtt-url", default=os.environ.get("CAMPUSHUB_TEST_MQTT_URL", DEFAULT_MQTT_URL))
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--profile", metavar="FILE",
                    help="cProfile the hub run (slows it: figures are then not comparable); save pstats to FILE")
    ap.add_argument("--publisher", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--host", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.publisher:
        publisher_main(args.host, args.port, args.messages, args.window, args.rate, args.inflight)
        return

    import faulthandler
    import signal

    import trio

    from hub.config import MqttUrl

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1 <pid>: where is it stuck?
    from hub.db import run_with_database

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.mqtt = MqttUrl.parse(args.mqtt_url)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not systems or set(systems) - {"raw", "hub"}:
        ap.error("--systems takes raw and/or hub")

    run_id = uuid.uuid4().hex[:10]
    prefix = f"bench-{run_id}"
    names = {s: f"campushub_bench_{run_id}_{s}" for s in systems}
    created: list[str] = []
    data_dir = tempfile.mkdtemp(prefix="campushub-bench-")
    results: dict[str, Any] = {}
    try:
        pg_version, campus = trio.run(interruptible, setup, args, names, created)
        machine = machine_facts(pg_version)
        devices = [{"id": d.device_id, "alg": d.alg, "key": d.signing_key.hex()} for d in campus.devices]
        progress(f"pipeline: run {run_id}, databases {', '.join(created)}, topic prefix {prefix}, "
                 f"{len(devices)} devices")
        for s in systems:
            url = database_url_for(args.database_url, names[s])
            progress(f"{s}: publishing {args.messages:,} messages"
                     f" ({'max rate' if not args.rate else f'{args.rate:,.0f}/s'}, window {args.window})")
            if s == "raw":
                phase = trio.run(interruptible, run_raw, args, url, prefix, devices)
            else:
                if args.profile:
                    import cProfile

                    profiler = cProfile.Profile()
                    phase = profiler.runcall(trio.run, interruptible, run_hub_phase, args, url, prefix, devices,
                                             data_dir)
                    profiler.dump_stats(args.profile)
                    print_profile(args.profile)
                else:
                    phase = trio.run(interruptible, run_hub_phase, args, url, prefix, devices, data_dir)
                run_with_database(url, partial(hub_db_results, phase=phase))
            results[s] = phase.summary()
    except BaseException as exc:
        # Interrupted: Ctrl-C/SIGTERM during a run. KeyboardInterrupt: during
        # setup; trio may deliver it inside an exception group.
        if isinstance(exc, (Interrupted, KeyboardInterrupt)) or (
                isinstance(exc, BaseExceptionGroup) and exc.subgroup(KeyboardInterrupt) is not None):
            progress("interrupted")
            raise SystemExit(130) from None
        raise
    finally:
        discard_broker_sessions(args.mqtt.host, args.mqtt.port, [f"{prefix}-raw", f"{prefix}-hub"])
        for name in created:
            try:
                run_with_database(args.database_url,
                                  lambda db, name=name: db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            except Exception as exc:  # noqa: BLE001 - report and carry on dropping the others
                progress(f"could not drop database {name}: {exc!r}")
        progress(f"dropped {', '.join(created) or 'no databases'}")
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)

    report: dict[str, Any] = {
        "config": {"messages": args.messages, "rate": args.rate, "window": args.window, "inflight": args.inflight,
                   "rooms": args.rooms, "devices": len(devices), "profiled": bool(args.profile)},
        "machine": machine,
        "results": results,
    }
    if "raw" in results and "hub" in results:
        raw, hub = results["raw"], results["hub"]
        report["hub/raw"] = {
            k: (hub[k] / raw[k] if raw.get(k) and hub.get(k) is not None else math.nan)
            for k in ("events_per_s", "steady_events_per_s", "db_p50_ms", "db_p95_ms", "db_p99_ms",
                      "ack_p50_ms", "ack_p95_ms", "ack_p99_ms", "cpu_s", "events_per_cpu_s")
        }
    if args.json:
        print(json.dumps(_no_nan(report), indent=2, default=str))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
