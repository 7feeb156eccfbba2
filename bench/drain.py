"""Drain of a backlog: the hub against the raw consumer, each emptying N events queued while it was stopped.

    .venv/bin/python bench/drain.py --events 300000 [--checkins 0.2] [--workers 1] [--json] [--profile hub.pstats]

For each system in turn (``--systems hub,raw``, in one sitting, on the same
broker and PostgreSQL server):

1. prime: the system starts once (the hub: ``run_hub`` with the benchmark
   settings; raw: a ``TrioMqttClient`` that subscribes), so that its
   persistent MQTT session and subscriptions exist, and stops;
2. backlog: the publisher fleet (bench/_common.py, ``publish_backlog``)
   publishes ``--events`` signed QoS 1 events (a fraction ``--checkins`` of
   them QR check-ins of enrolled students into the live session of the
   device's room, each student once; the rest sensor readings) with no
   window: they all wait in the broker for the stopped system's session;
3. drain: the system starts again in a child process of its own
   (``python bench/drain.py --child``), so its CPU is its own; the child
   records every PUBACK it sends (each is sent only after the batch's
   COMMIT) and reports, when the last of the N is acknowledged: first and
   last commit, the longest gap between two commits, its own CPU from
   "ready" (the MQTT session connected and subscribed) to the last commit,
   and its peak RSS (VmHWM). This process reads the CPU of the PostgreSQL
   backends serving the system's database (/proc, by process title) and of
   the broker at "ready" and at "done". Then the child is stopped (SIGINT).
4. check: every published event id is looked up in what the system stored
   (the hub: ``events`` and ``rejected_events``; raw: the ids decoded from
   its scratch table): ``lost`` = published but not stored, ``duplicated`` =
   stored more than once.

The hub's broker session is discarded before raw's is primed (both subscribe
to the same topics). The broker is a private Mosquitto that queues without
limit (``start_backlog_broker``; this machine's shared broker keeps 1,000
messages per offline client and drops the rest). Databases
``campushub_bench_<run>_{hub,raw}`` are dropped at the end, also on Ctrl-C.

JSON keys (``--json``): ``hub_events_per_s``, ``raw_events_per_s``, ``ratio``
(hub/raw), ``hub_cpu_us_per_event``, ``raw_cpu_us_per_event``,
``postgres_cpu_us_per_event`` (the hub's database backends, ready -> done, /
events), ``first_commit_s`` (hub ready -> first commit), ``longest_commit_gap_s``,
``hub_rss_max_mb``, ``lost``, ``duplicated`` (the hub's), with each system's
details under ``hub`` and ``raw``. Events/s = N / (first commit -> last commit).

``--profile FILE`` runs the hub's child under cProfile and prints
``print_profile`` (its stages); ``--pg-statements`` logs every statement of
the hub's database during its drain (``ALTER DATABASE ... SET
log_min_duration_statement = 0``: that database only) and prints the
costliest by total time in the server. Both slow what they watch: profiles,
not figures.

Only one worker: ``--workers`` above 1 (issue 13 part 2, several hub
processes) is refused, it is not built. The latency at a fixed offered rate
(p99 publish -> commit at 5,000 events/s for 60 s) is bench/pipeline.py's::

    .venv/bin/python bench/pipeline.py --rooms 1000 --students 2000 --device-connections --processes 4 \\
        --checkins 0.1 --open-sessions --messages 300000 --rate 5000 --timeout 120

A benchmark: no assertions. Progress on stderr, the table (or JSON) on stdout.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from functools import partial
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402 - bench/ is not a package
    DEFAULT_SERVER_URL,
    PG_LOG,
    RAW_TABLE_DDL,
    FleetConfig,
    Interrupted,
    cpu_jiffies,
    create_databases,
    database_url_for,
    device_payloads,
    discard_broker_sessions,
    drop_databases,
    fmt,
    hub_settings,
    interruptible,
    is_interrupt,
    load_average,
    machine_facts,
    migrate_and_seed,
    new_run_id,
    no_nan,
    postgres_cpu_s,
    print_profile,
    process_cpu_s,
    progress,
    publish_backlog,
    raw_consume,
    run_db,
    start_backlog_broker,
    statement_log_start,
    statement_log_summary,
)

BENCH = os.path.dirname(os.path.abspath(__file__))


# =========================================================================== the child: one system, draining


class AckClock:
    """When each batch was acknowledged (= committed): first, last, the longest gap, and the count.

    Called synchronously from the acknowledging task, so it adds one clock
    read per batch to the measured process, nothing per message.
    """

    def __init__(self, n: int) -> None:
        import trio

        self.n = n
        self.count = 0
        self.batches = 0
        self.first = math.nan
        self.last = math.nan
        self.longest_gap = 0.0
        self.cpu_at_done = math.nan
        self.done = trio.Event()

    async def show_progress(self, label: str) -> None:
        """Every 5 s on stderr: committed so far and the rate (one line; nothing per message)."""
        import trio

        last, t_last = 0, time.time()
        while not self.done.is_set():
            await trio.sleep(5)
            now = time.time()
            progress(f"  {label}: {self.count:>9,}/{self.n:,} committed, {(self.count - last) / (now - t_last):>7,.0f}/s,"
                     f" RSS {_vm_kb('VmRSS') / 1024:.0f} MB")
            last, t_last = self.count, now

    def record(self, acked: int) -> None:
        now = time.time()
        if self.count == 0:
            self.first = now
        else:
            self.longest_gap = max(self.longest_gap, now - self.last)
        self.last = now
        self.count += acked
        self.batches += 1
        if self.count >= self.n and not self.done.is_set():
            self.cpu_at_done = time.process_time()
            self.done.set()


def _vm_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def child_hub(config: dict[str, Any]) -> None:
    """The hub, as ``campushub serve`` runs it (no web server), its acknowledgements recorded."""
    import trio

    import hub.app.supervision
    from hub.app.supervision import run_hub
    from hub.mqtt import TrioMqttClient

    clock = AckClock(config["n"])

    class RecordingClient(TrioMqttClient):
        # Instrumentation only, in this process: the hub's writer acks through client.ack_many after COMMIT.
        def ack_many(self, messages) -> None:
            messages = list(messages)
            super().ack_many(messages)
            clock.record(len(messages))

    hub.app.supervision.TrioMqttClient = RecordingClient  # type: ignore[misc]
    # The backlog is stamped within seconds, a real outbox over the hours its device was cut off: at the
    # default density (1,000 events stamped within one second of a device's clock) the flood detector
    # refuses part of a fast-queued backlog (seen: 1,100 of 300,000 readings), which the raw consumer
    # would store. The drain measures ingest, not that rule (tests/hub/test_quarantine.py does).
    settings = hub_settings(config["url"], config["mqtt_url"], config["prefix"],
                            device_flood_events_per_s=1_000_000)
    async with trio.open_nursery() as nursery:
        running = await nursery.start(partial(run_hub, settings, port=None))
        _say(stage="ready", t=time.time(), cpu=time.process_time())
        if config["prime"]:
            nursery.cancel_scope.cancel()
            return
        nursery.start_soon(clock.show_progress, "hub")
        await clock.done.wait()
        stats = running.client.stats
        _say(stage="done", t=time.time(), first=clock.first, last=clock.last, longest_gap=clock.longest_gap,
             acked=clock.count, batches=clock.batches, cpu=clock.cpu_at_done, rss_max_kb=_vm_kb("VmHWM"),
             rss_kb=_vm_kb("VmRSS"), received=stats.received, reconnects=stats.reconnects)
        await trio.sleep_forever()  # until the parent's SIGINT


async def child_raw(config: dict[str, Any]) -> None:
    """The raw consumer (bench/_common.raw_consume): paho -> COPY -> PUBACK, no domain logic."""
    import trio

    from hub.db import asyncio_loop, open_database
    from hub.mqtt import TrioMqttClient
    from schemas import Topics

    clock = AckClock(config["n"])
    topics = Topics(config["prefix"])
    async with asyncio_loop(), open_database(config["url"]) as db:
        client = TrioMqttClient(host=config["host"], port=config["port"], client_id=f"{config['prefix']}-raw",
                                session_expiry_s=3600)

        def ack_many(messages) -> None:
            client.ack_many(messages)
            clock.record(len(messages))

        async def on_connect(c: TrioMqttClient) -> None:
            await c.subscribe(topics.uplink_filter, qos=1)

        async with trio.open_nursery() as nursery:
            await nursery.start(partial(client.run, on_connect=on_connect))
            _say(stage="ready", t=time.time(), cpu=time.process_time())
            if config["prime"]:
                nursery.cancel_scope.cancel()
                return
            nursery.start_soon(raw_consume, db, client, ack_many)
            nursery.start_soon(clock.show_progress, "raw")
            await clock.done.wait()
            _say(stage="done", t=time.time(), first=clock.first, last=clock.last, longest_gap=clock.longest_gap,
                 acked=clock.count, batches=clock.batches, cpu=clock.cpu_at_done, rss_max_kb=_vm_kb("VmHWM"),
                 rss_kb=_vm_kb("VmRSS"), received=client.stats.received, reconnects=client.stats.reconnects)
            await trio.sleep_forever()


def child_main() -> None:
    import trio

    config = json.loads(sys.stdin.readline())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work = child_hub if config["system"] == "hub" else child_raw
    profiler = None
    if config.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        trio.run(interruptible, work, config)
    except Interrupted:
        pass
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(config["profile"])


# =========================================================================== the parent: one system's turn


class Child:
    """A child process running one system; its stdout lines are JSON stages."""

    def __init__(self, config: dict[str, Any], timeout: float) -> None:
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.spawned = time.time()
        self.proc.stdin.write(json.dumps(config) + "\n")
        self.proc.stdin.flush()
        # Past the timeout the child is killed, so a read below cannot wait forever.
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.start()
        self.expired = False

    def _expire(self) -> None:
        self.expired = True
        self.proc.kill()

    def stage(self, name: str) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line.strip():
            why = "timed out" if self.expired else f"exited with {self.proc.wait()}"
            raise SystemExit(f"the {name!r} stage never came: the child {why}")
        out = json.loads(line)
        if out.get("stage") != name:
            raise SystemExit(f"expected stage {name!r}, got {out!r}")
        return out

    def stop(self, exiting: bool = False) -> None:
        """Stop the child (SIGINT); ``exiting``: it is stopping by itself, give it 10 s first."""
        self._timer.cancel()
        if exiting:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def drain(system: str, args: argparse.Namespace, url: str, database: str, prefix: str,
          devices: list[dict[str, Any]], broker, work_dir: str) -> dict[str, Any]:
    """One system's turn: prime its session, queue the backlog, drain it in a child, check every id."""
    base = {"system": system, "url": url, "mqtt_url": args.mqtt_url, "host": "127.0.0.1", "port": args.port,
            "prefix": prefix, "n": args.events}
    progress(f"{system}: priming its broker session")
    prime = Child({**base, "prime": True}, timeout=120)
    prime.stage("ready")
    prime.stop(exiting=True)

    progress(f"{system}: queueing {args.events:,} events in the broker")
    fleet = FleetConfig(host="127.0.0.1", port=args.port, messages=args.events, processes=args.processes,
                        checkin_fraction=args.checkins, inflight=args.inflight, timeout=args.timeout)
    t = time.perf_counter()
    publisher, ids = publish_backlog(fleet, prefix, devices, work_dir)
    progress(f"{system}: {publisher['published']:,} queued ({publisher.get('checkins', 0):,} check-ins) in "
             f"{time.perf_counter() - t:.1f}s; broker RSS {_rss_mb(broker.pid):.0f} MB; starting the drain")

    profile = args.profile if system == "hub" else None
    log_offset = None
    if args.pg_statements and system == "hub":  # the measured child's sessions only, not the prime's
        log_offset = statement_log_start(args.database_url, database, args.pg_log)
    child = Child({**base, "prime": False, "profile": profile}, timeout=args.timeout)
    load = load_average()
    try:
        ready = child.stage("ready")
        pg0, broker0, jiffies0 = postgres_cpu_s(database), process_cpu_s(broker.pid), cpu_jiffies()
        done = child.stage("done")
        pg1, broker1, jiffies1 = postgres_cpu_s(database), process_cpu_s(broker.pid), cpu_jiffies()
    finally:
        child.stop()
    if profile:
        print_profile(profile, label="hub (drain)")
    statements = statement_log_summary(database, log_offset, args.pg_log) if log_offset is not None else None

    n = done["acked"]
    pg_cpu = sum(cpu - pg0.get(pid, 0.0) for pid, cpu in pg1.items())
    span = done["last"] - done["first"]
    busy = (jiffies1[0] - jiffies0[0]) / max(1, jiffies1[1] - jiffies0[1])
    out: dict[str, Any] = {
        "events": args.events, "published": publisher["published"], "checkins_published": publisher.get("checkins", 0),
        "acked": n, "events_per_s": n / span if span > 0 else math.nan,
        "boot_s": ready["t"] - child.spawned,
        "first_commit_s": done["first"] - ready["t"],
        "drain_s": span, "longest_commit_gap_s": done["longest_gap"], "batches": done["batches"],
        "mean_batch": n / done["batches"] if done["batches"] else math.nan,
        "cpu_us_per_event": (done["cpu"] - ready["cpu"]) / n * 1e6,
        "postgres_cpu_us_per_event": pg_cpu / n * 1e6, "postgres_backends": len(pg1),
        "broker_cpu_us_per_event": (broker1 - broker0) / n * 1e6,
        "machine_busy_pct": 100 * busy, "rss_max_mb": done["rss_max_kb"] / 1024, "rss_end_mb": done["rss_kb"] / 1024,
        "received": done["received"], "reconnects": done["reconnects"], "load_average": load,
        "publisher": publisher,
    }
    if profile:
        out["profiled"] = True
    if statements is not None:
        out["profiled"] = True  # every statement logged: PostgreSQL is slower
        out["statements"] = statements
        progress("hub's PostgreSQL statements during the drain, by total wall time in the server:\n" + "\n".join(
            f"  {st['ms']:>9.0f} ms {st['share_pct']:>5.1f}% {st['calls']:>7,} calls {st['mean_ms']:>8.3f} ms  "
            f"{st['statement']}" for st in statements))
    stored, extra = run_db(url, partial(stored_ids, system=system))
    out.update(extra)
    published = set(ids)
    stored_set = set(stored)
    out["lost"] = len(published - stored_set)
    out["duplicated"] = len(stored) - len(stored_set)
    out["stored_not_published"] = len(stored_set - published)
    progress(f"{system}: {n:,} committed at {fmt(out['events_per_s'], ',.0f')}/s, "
             f"{out['cpu_us_per_event']:.0f} us CPU/event, PostgreSQL {out['postgres_cpu_us_per_event']:.0f} us/event; "
             f"lost {out['lost']}, duplicated {out['duplicated']}")
    return out


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


async def stored_ids(db, system: str) -> tuple[list[bytes], dict[str, Any]]:
    """Every event id the system stored (with repeats), and what else the database says about the drain."""
    if system == "raw":
        from schemas import decode_frame

        rows = await db.fetch("SELECT payload FROM raw_ingest")
        return [decode_frame(r["payload"])[1].id for r in rows], {}
    ids = [r["event_id"].bytes for r in await db.fetch("SELECT event_id FROM events")]
    rejected = await db.fetch("SELECT event_id, reason FROM rejected_events WHERE event_id IS NOT NULL")
    ids.extend(r["event_id"].bytes for r in rejected)
    reasons: dict[str, int] = {}
    for r in rejected:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    extra = {"rejected": reasons,
             "checkins_recorded": await db.fetchval("SELECT count(*) FROM attendance WHERE event_id IS NOT NULL"),
             "sensor_rows": await db.fetchval("SELECT count(*) FROM sensor_readings")}
    return ids, extra


# =========================================================================== setup and output


async def setup(args: argparse.Namespace, hub_url: str | None, raw_url: str | None):
    from hub.db import asyncio_loop, open_database

    campus = None
    if hub_url is not None:
        from hub.db.telemetry import maintain

        campus = await migrate_and_seed(hub_url, rooms=args.rooms, students=args.students)
        async with asyncio_loop(), open_database(hub_url, max_size=1) as db:
            # Today's sensor_readings partitions now, not in the hub's first maintenance pass during the drain.
            await maintain(db, datetime.now(timezone.utc))
    else:
        campus = await migrate_and_seed(raw_url, rooms=args.rooms, students=args.students)
    if raw_url is not None:
        async with asyncio_loop(), open_database(raw_url, max_size=1) as db:
            await db.execute(RAW_TABLE_DDL)
    return campus


def summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    hub, raw = results.get("hub", {}), results.get("raw", {})
    nan = math.nan
    out = {
        "hub_events_per_s": hub.get("events_per_s", nan), "raw_events_per_s": raw.get("events_per_s", nan),
        "ratio": (hub["events_per_s"] / raw["events_per_s"]) if hub and raw else nan,
        "hub_cpu_us_per_event": hub.get("cpu_us_per_event", nan),
        "raw_cpu_us_per_event": raw.get("cpu_us_per_event", nan),
        "postgres_cpu_us_per_event": hub.get("postgres_cpu_us_per_event", nan),
        "raw_postgres_cpu_us_per_event": raw.get("postgres_cpu_us_per_event", nan),
        "first_commit_s": hub.get("first_commit_s", nan),
        "longest_commit_gap_s": hub.get("longest_commit_gap_s", nan),
        "hub_rss_max_mb": hub.get("rss_max_mb", nan),
        "lost": hub.get("lost"), "duplicated": hub.get("duplicated"),
        "raw_lost": raw.get("lost"), "raw_duplicated": raw.get("duplicated"),
    }
    if hub.get("checkins_published"):
        # An upper bound: all of the hub's PostgreSQL CPU charged to its check-ins.
        out["postgres_cpu_us_per_checkin_all_charged"] = (
            hub["postgres_cpu_us_per_event"] * hub["acked"] / hub["checkins_published"])
    return out


def print_table(report: dict[str, Any]) -> None:
    cfg, m, s = report["config"], report["machine"], report["summary"]
    print(f"drain: {cfg['events']:,} queued QoS 1 events ({cfg['checkins']:.0%} QR check-ins, the rest sensor "
          f"readings) from {cfg['devices']:,} devices; {m['cpus']} CPUs, PostgreSQL {m['postgresql']}, "
          f"paho-mqtt {m['paho_mqtt']}, Python {m['python']}")
    head = (f"{'system':<6} {'events/s':>9} {'CPU us/ev':>9} {'PG us/ev':>8} {'broker':>7} {'first s':>7} "
            f"{'gap s':>6} {'RSS MB':>7} {'boot s':>6} {'batch':>6} {'busy':>5} {'lost':>5} {'dup':>5}")
    print(head)
    print("-" * len(head))
    for name, r in report["results"].items():
        print(f"{name:<6} {fmt(r['events_per_s'], ',.0f'):>9} {r['cpu_us_per_event']:>9.1f} "
              f"{r['postgres_cpu_us_per_event']:>8.1f} {r['broker_cpu_us_per_event']:>7.1f} "
              f"{r['first_commit_s']:>7.2f} {r['longest_commit_gap_s']:>6.2f} {r['rss_max_mb']:>7.0f} "
              f"{r['boot_s']:>6.1f} {fmt(r['mean_batch'], '.0f'):>6} {r['machine_busy_pct']:>4.0f}% "
              f"{r['lost']:>5} {r['duplicated']:>5}" + ("  (profiled: not comparable)" if r.get("profiled") else ""))
    if s.get("ratio") is not None and not math.isnan(s["ratio"]):
        print(f"hub/raw: {s['ratio']:.2f}x events/s, "
              f"{s['hub_cpu_us_per_event'] / s['raw_cpu_us_per_event']:.2f}x CPU per event")
    if "postgres_cpu_us_per_checkin_all_charged" in s:
        print(f"hub PostgreSQL CPU with all of it charged to the check-ins: "
              f"{s['postgres_cpu_us_per_checkin_all_charged']:.0f} us per check-in")
    hub = report["results"].get("hub")
    if hub:
        print(f"hub: {hub.get('checkins_recorded', 0):,} check-ins recorded, {hub.get('sensor_rows', 0):,} sensor rows, "
              f"rejections {hub.get('rejected') or 'none'}")
    print("events/s = events / (first -> last commit); CPU from the child's 'ready' (connected, subscribed) to its last "
          "commit;\nPG = the PostgreSQL backends of its database; first s = ready -> first commit; gap = the longest "
          "time between two commits;\nRSS = the child's peak (VmHWM).")


def main() -> None:
    if sys.argv[1:] == ["--child"]:
        child_main()
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", "-n", type=int, default=300_000, help="events queued before each system starts")
    ap.add_argument("--checkins", type=float, default=0.0,
                    help="fraction of the events that are QR check-ins (each of a different enrolled student)")
    ap.add_argument("--workers", type=int, default=1, help="hub worker processes (only 1: several are not built)")
    ap.add_argument("--rooms", type=int, default=500, help="rooms = devices = live sessions seeded")
    ap.add_argument("--students", type=int, default=0,
                    help="students seeded (default: one per check-in, at least two per room)")
    ap.add_argument("--processes", type=int, default=2, help="publisher processes")
    ap.add_argument("--inflight", type=int, default=100, help="each publisher's max inflight QoS 1 messages")
    ap.add_argument("--systems", default="hub,raw", help="comma-separated, in this order: hub, raw")
    ap.add_argument("--timeout", type=float, default=900, help="seconds, per step")
    ap.add_argument("--database-url", default=os.environ.get("CAMPUSHUB_TEST_DATABASE_URL", DEFAULT_SERVER_URL))
    ap.add_argument("--profile", metavar="FILE",
                    help="cProfile the hub's child (slows it: figures are then not comparable); pstats to FILE")
    ap.add_argument("--pg-statements", action="store_true",
                    help="log every statement of the hub's database during its drain (PostgreSQL is then slower:"
                         " a profile, not a figure) and print the costliest")
    ap.add_argument("--pg-log", default=PG_LOG, help="the PostgreSQL server's log file (this machine's)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.workers != 1:
        ap.error("only --workers 1: the hub does not run as several worker processes yet (issue 13, part 2)")
    if not 0 <= args.checkins <= 1:
        ap.error("--checkins is a fraction, 0..1")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not systems or set(systems) - {"hub", "raw"}:
        ap.error("--systems takes hub and/or raw")
    if not args.students:
        args.students = max(2 * args.rooms, math.ceil(args.events * args.checkins))

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import trio

    run_id = new_run_id()
    prefix = f"bench-{run_id}"
    names = {s: f"campushub_bench_{run_id}_{s}" for s in systems}
    created: list[str] = []
    work_dir = tempfile.mkdtemp(prefix="campushub-drain-")
    broker = None
    results: dict[str, Any] = {}
    try:
        broker, args.port = start_backlog_broker(work_dir)
        args.mqtt_url = f"mqtt://127.0.0.1:{args.port}"
        pg_version = create_databases(args.database_url, list(names.values()), created)
        urls = {s: database_url_for(args.database_url, names[s]) for s in systems}
        progress(f"drain: run {run_id}, private mosquitto pid {broker.pid} on port {args.port}; seeding "
                 f"{args.rooms:,} rooms, {args.students:,} students")
        campus = trio.run(interruptible, setup, args, urls.get("hub"), urls.get("raw"))
        devices = device_payloads(campus, checkins=args.checkins > 0)
        machine = machine_facts(pg_version)
        for s in systems:
            results[s] = drain(s, args, urls[s], names[s], prefix, devices, broker, work_dir)
            # The next system subscribes to the same topics: this one's session must not queue its backlog.
            discard_broker_sessions("127.0.0.1", args.port, [f"{prefix}-{s}"])
    except BaseException as exc:
        if is_interrupt(exc):
            progress("interrupted")
            raise SystemExit(130) from None
        raise
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)
        drop_databases(args.database_url, created)
        import shutil

        shutil.rmtree(work_dir, ignore_errors=True)
    report = {
        "config": {"events": args.events, "checkins": args.checkins, "workers": args.workers, "rooms": args.rooms,
                   "students": args.students, "devices": len(devices), "publisher_processes": args.processes,
                   "systems": systems, "profiled": bool(args.profile)},
        "machine": machine,
        "summary": summary(results),
        "results": results,
    }
    if args.json:
        print(json.dumps(no_nan({**report["summary"], **report}), indent=2, default=str))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
