"""Drain of a backlog: the hub against the raw consumer, each emptying N events queued while it was stopped.

    .venv/bin/python bench/drain.py --events 300000 [--checkins 0.2] [--workers K] [--partitions P] [--json]
        [--profile hub.pstats]

For each system in turn (``--systems hub,raw``, in one sitting, on the same
broker and PostgreSQL server):

1. prime: the system starts once (the hub: ``run_hub`` with the benchmark
   settings; raw: a ``TrioMqttClient`` that subscribes), so that its
   persistent MQTT session(s) and subscriptions exist, and stops;
2. backlog: the publisher fleet (bench/_common.py, ``publish_backlog``)
   publishes ``--events`` signed QoS 1 events (a fraction ``--checkins`` of
   them QR check-ins of enrolled students into the live session of the
   device's room, each student once; the rest sensor readings) with no
   window: they all wait in the broker for the stopped system's session(s);
3. drain: the system starts again in child processes of its own
   (``python bench/drain.py --child``), so their CPU is their own; each
   child records every batch its writer acknowledges (PUBACKs go out only
   after the batch's COMMIT) and reports first and last commit, the gaps
   between its commits, its own CPU from "ready" to its last commit, and its
   peak RSS (VmHWM). This process reads the CPU of the PostgreSQL backends
   serving the system's database (/proc, by process title) and of the
   broker at "ready" and at "done". Then the children are stopped (SIGINT).
4. check: every published event id is looked up in what the system stored
   (the hub: ``events`` and ``rejected_events``; raw: the ids decoded from
   its scratch table): ``lost`` = published but not stored, ``duplicated`` =
   stored more than once.

The hub runs in one of two shapes:

- ``--partitions 0`` (the default with ``--workers 1``): the single-process
  hub, one MQTT session with wildcard subscriptions. Its one child knows the
  drain is done when it has acknowledged N events.
- ``--partitions P`` >= 1 (the default with ``--workers K`` > 1: 16, as
  ``campushub serve --workers``): K worker children, each ``run_hub`` with
  ``Settings.partitions`` = P and worker id ``<prefix>-w<i>``, dividing the
  partitions by their leases in PostgreSQL (hub/app/partition_sessions.py);
  each owned partition is a persistent session ``<prefix>-hub-p<n>`` on the
  exact topics of its devices. ``--workers 1 --partitions 16`` measures one
  partitioned worker: the cost of partitioning itself.

  The prime starts the K workers and waits until every partition is owned,
  the shares are even (differ by at most one), each worker's session of
  every partition it owns has had its SUBACKs on the current connection
  (the children wrap ``subscribe_many`` and report which partitions are
  subscribed) and the database's ``partition_leases`` agree; then it stops
  them together (a ``stop`` line on their stdin) and checks that they
  released their leases and heartbeats. The drain starts the K workers
  again, as ``serve --workers K`` does: all at once, each told the others'
  ids (``Settings.worker_peers``), so each claims its share at once. A
  worker cannot know when the whole drain is done: each reports its own
  acknowledged count (a ``count`` line, at most 5 a second); when the sum
  reaches N and PostgreSQL holds N more event ids than before the drain,
  this process asks each child for its figures (``report``). Merged:
  events/s = N / (earliest first commit -> latest last commit of any
  worker); CPU per event = the sum of the workers' CPU (each from its ready
  to its own last commit; one that committed nothing: to the end) / N;
  ``acked`` = the sum of the workers' acknowledgements (a message
  redelivered after a hand-over is counted by both);
  ``first_commit_s`` = the first worker's "ready" -> the first commit of
  any; ``hub_rss_max_mb`` = the largest worker's peak; ``longest_commit_gap_s``
  = the longest time in which no worker committed: each child keeps every
  gap between two of its own commits longer than ``GAP_KEPT_S`` (20 ms) as
  an interval, and the merged quiet times are the intersections of the
  workers' quiet intervals (before its first commit, its kept gaps, after
  its last), so a merged gap above 20 ms is exact and one below is reported
  as 0.02 s (an upper bound). Per worker under ``hub.workers``: acked,
  commits, CPU, RSS, first commit, the partitions owned at the end and the
  sessions it opened (more than it owns at the end: a hand-over happened).

The hub's broker sessions are discarded before raw's is primed (both subscribe
to the same topics). The broker is a private Mosquitto that queues without
limit (``start_backlog_broker``; this machine's shared broker keeps 1,000
messages per offline client and drops the rest). Databases
``campushub_bench_<run>_{hub,raw}`` are dropped at the end, also on Ctrl-C.

JSON keys (``--json``): ``hub_events_per_s``, ``raw_events_per_s``, ``ratio``
(hub/raw), ``hub_cpu_us_per_event``, ``raw_cpu_us_per_event``,
``postgres_cpu_us_per_event`` (the hub's database backends, ready -> done, /
events), ``first_commit_s`` (hub ready -> first commit), ``longest_commit_gap_s``,
``hub_rss_max_mb``, ``lost``, ``duplicated`` (the hub's), ``workers``,
``partitions``, with each system's details under ``hub`` and ``raw`` (the
workers' under ``hub.workers``, the prime's under ``hub.prime``).
Events/s = N / (first commit -> last commit).

``--profile FILE`` runs the hub's child under cProfile (each worker's to
``FILE.w<i>`` when there are several) and prints ``print_profile`` (its
stages); ``--pg-statements`` logs every statement of the hub's database
during its drain (``ALTER DATABASE ... SET log_min_duration_statement = 0``:
that database only) and prints the costliest by total time in the server.
Both slow what they watch: profiles, not figures.

The latency at a fixed offered rate (p99 publish -> commit at 5,000
events/s for 60 s) is bench/pipeline.py's::

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
import queue
import re
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

#: A worker child keeps every gap between two of its commits longer than this (for the merged timeline).
GAP_KEPT_S = 0.02
#: A worker child reports its acknowledged count at most this often (a ``count`` line).
COUNT_EVERY_S = 0.2
#: With --workers K, the partitions when --partitions is not given (as ``campushub serve --workers``).
DEFAULT_WORKER_PARTITIONS = 16


# =========================================================================== the child: one system, draining


class AckClock:
    """When each batch was acknowledged (= committed): first, last, the longest gap, and the count.

    Called synchronously from the acknowledging task, so it adds one clock
    read per batch to the measured process, nothing per message. ``n``: the
    count at which ``done`` is set and the CPU read; ``None`` (a worker of
    several, which cannot know when the whole drain is done): never done, and
    the CPU is read at every batch instead (``cpu_last``), with every gap
    longer than ``GAP_KEPT_S`` kept in ``gaps`` for the parent's merge.
    """

    def __init__(self, n: int | None) -> None:
        import trio

        self.n = n
        self.count = 0
        self.batches = 0
        self.first = math.nan
        self.last = math.nan
        self.longest_gap = 0.0
        self.cpu_at_done = math.nan
        self.cpu_last = math.nan
        #: (previous commit, next commit) of every gap longer than GAP_KEPT_S; only when n is None.
        self.gaps: list[tuple[float, float]] = []
        self.done = trio.Event()

    async def show_progress(self, label: str) -> None:
        """Every 5 s on stderr: committed so far and the rate (one line; nothing per message)."""
        import trio

        last, t_last = 0, time.time()
        of = f"/{self.n:,}" if self.n is not None else ""
        while not self.done.is_set():
            await trio.sleep(5)
            now = time.time()
            progress(f"  {label}: {self.count:>9,}{of} committed, {(self.count - last) / (now - t_last):>7,.0f}/s,"
                     f" RSS {_vm_kb('VmRSS') / 1024:.0f} MB")
            last, t_last = self.count, now

    def record(self, acked: int) -> None:
        now = time.time()
        if self.count == 0:
            self.first = now
        else:
            gap = now - self.last
            self.longest_gap = max(self.longest_gap, gap)
            if self.n is None and gap > GAP_KEPT_S:
                self.gaps.append((self.last, now))
        self.last = now
        self.count += acked
        self.batches += 1
        if self.n is None:
            self.cpu_last = time.process_time()
        elif self.count >= self.n and not self.done.is_set():
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


async def _next_order() -> str | None:
    """The parent's next line on stdin (``{"do": ...}``): its order, or None when stdin closed."""
    import trio

    line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    return json.loads(line)["do"] if line.strip() else None


async def child_hub(config: dict[str, Any]) -> None:
    """The hub, as ``campushub serve`` runs it (no web server), its acknowledgements recorded.

    With ``config["partitions"]`` >= 1: one worker of several (``worker_id``); it reports
    ``sessions`` lines while priming and ``count`` lines while draining, and its figures
    when the parent says ``report`` (the parent alone knows when all N are committed).
    """
    import trio

    import hub.app.supervision
    from hub.app.supervision import run_hub
    from hub.mqtt import TrioMqttClient

    partitions = config.get("partitions", 0)
    clock = AckClock(None if partitions else config["n"])
    base_client_id = f"{config['prefix']}-hub"  # hub_settings' hub_client_id
    partition_id = re.compile(rf"{re.escape(base_client_id)}-p(\d+)")
    #: Every partition session client this worker made (a claim makes one), by partition, last one last.
    partition_clients: dict[int, list[TrioMqttClient]] = {}
    #: id(client) -> the connection (its generation) on which its last subscribe_many had every SUBACK.
    subscribed_on: dict[int, int] = {}

    class RecordingClient(TrioMqttClient):
        # Instrumentation only, in this process: the hub's writer acks through client.ack_many after
        # COMMIT (the single-process hub: one client; a worker: one per partition session, so there
        # the writer's acknowledge is wrapped instead, once per commit). The partition sessions'
        # subscriptions are recorded per connection: the prime waits for them.
        def __init__(self, *args: Any, **options: Any) -> None:
            super().__init__(*args, **options)
            found = partition_id.fullmatch(self.client_id)
            if found:
                partition_clients.setdefault(int(found[1]), []).append(self)

        def ack_many(self, messages) -> None:
            messages = list(messages)
            super().ack_many(messages)
            if not partitions:
                clock.record(len(messages))

        async def subscribe_many(self, topic_filters, qos: int = 1) -> None:
            generation = self.generation
            await super().subscribe_many(topic_filters, qos)
            subscribed_on[id(self)] = generation

    hub.app.supervision.TrioMqttClient = RecordingClient  # type: ignore[misc]
    overrides: dict[str, Any] = {}
    if partitions:
        from hub.pipeline.writer import PersistenceWriter

        class RecordingWriter(PersistenceWriter):
            # Instrumentation only: the writer's acknowledge runs once per COMMIT, whatever the sessions.
            def __init__(self, db, bus, metrics, acknowledge, **options: Any) -> None:
                def recorded(messages) -> None:
                    acknowledge(messages)
                    clock.record(len(messages))

                super().__init__(db, bus, metrics, recorded, **options)

        hub.app.supervision.PersistenceWriter = RecordingWriter  # type: ignore[misc]
        overrides = {"partitions": partitions, "worker_id": config["worker_id"],
                     "worker_peers": tuple(config["peers"])}
    # The backlog is stamped within seconds, a real outbox over the hours its device was cut off: at the
    # default density (1,000 events stamped within one second of a device's clock) the flood detector
    # refuses part of a fast-queued backlog (seen: 1,100 of 300,000 readings), which the raw consumer
    # would store. The drain measures ingest, not that rule (tests/hub/test_quarantine.py does).
    settings = hub_settings(config["url"], config["mqtt_url"], config["prefix"],
                            device_flood_events_per_s=1_000_000, **overrides)

    def subscribed(owned: frozenset[int]) -> list[int]:
        """The owned partitions whose current session is connected and has its SUBACKs on this connection."""
        current = {p: clients[-1] for p, clients in partition_clients.items()}
        return sorted(p for p in owned if p in current and current[p].connected
                      and subscribed_on.get(id(current[p])) == current[p].generation)

    async def report_sessions(running) -> None:
        last = None
        while True:
            owned = running.ownership.owned
            now = (sorted(owned), subscribed(owned), sorted(partition_clients))
            if now != last:
                _say(stage="sessions", owned=now[0], subscribed=now[1], opened=now[2])
                last = now
            await trio.sleep(COUNT_EVERY_S)

    async def report_counts() -> None:
        reported = -1
        while True:
            if clock.count != reported:
                reported = clock.count
                _say(stage="count", acked=reported)
            await trio.sleep(COUNT_EVERY_S)

    async with trio.open_nursery() as nursery:
        running = await nursery.start(partial(run_hub, settings, port=None))
        _say(stage="ready", t=time.time(), cpu=time.process_time())
        if config["prime"] and not partitions:
            nursery.cancel_scope.cancel()
            return
        if config["prime"]:
            nursery.start_soon(report_sessions, running)
            await _next_order()  # "stop" (or the parent went away)
            nursery.cancel_scope.cancel()  # the hub stops: its keeper releases the leases
        elif not partitions:
            nursery.start_soon(clock.show_progress, "hub")
            await clock.done.wait()
            stats = running.client.stats
            _say(stage="done", t=time.time(), first=clock.first, last=clock.last, longest_gap=clock.longest_gap,
                 acked=clock.count, batches=clock.batches, cpu=clock.cpu_at_done, rss_max_kb=_vm_kb("VmHWM"),
                 rss_kb=_vm_kb("VmRSS"), received=stats.received, reconnects=stats.reconnects)
            await trio.sleep_forever()  # until the parent's SIGINT
        else:
            nursery.start_soon(clock.show_progress, f"hub {config['worker_id']}")
            nursery.start_soon(report_counts)
            if await _next_order() is None:  # "report"
                nursery.cancel_scope.cancel()
                return
            sessions = [c for clients in partition_clients.values() for c in clients]
            _say(stage="done", t=time.time(), first=clock.first, last=clock.last, longest_gap=clock.longest_gap,
                 # CPU at the last commit; a worker that committed nothing: all it used up to now.
                 gaps=clock.gaps, acked=clock.count, batches=clock.batches,
                 cpu=clock.cpu_last if clock.count else time.process_time(),
                 rss_max_kb=_vm_kb("VmHWM"), rss_kb=_vm_kb("VmRSS"),
                 received=sum(c.stats.received for c in sessions),
                 reconnects=sum(c.stats.reconnects for c in sessions),
                 owned=sorted(running.ownership.owned),
                 opened=sorted(p for p, clients in partition_clients.items() for _ in clients))
            await trio.sleep_forever()  # until the parent's SIGINT
    if config["prime"]:
        _say(stage="stopped", t=time.time())


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
    """A child process running one system; its stdout lines are JSON stages.

    A thread reads them into ``inbox`` as ``(child, stage)`` (``(child, None)`` at the end of its
    output): its own queue, or one shared by several children (the workers), which the caller
    reads with :func:`collect`.
    """

    def __init__(self, config: dict[str, Any], timeout: float, inbox: queue.Queue | None = None) -> None:
        self.name = config.get("worker_id") or config["system"]
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.spawned = time.time()
        self.stdin.write(json.dumps(config) + "\n")
        self.stdin.flush()
        self.inbox: queue.Queue = inbox if inbox is not None else queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        # Past the timeout the child is killed, so a read below cannot wait forever.
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.start()
        self.expired = False

    def _read(self) -> None:
        for line in self.stdout:
            try:
                self.inbox.put((self, json.loads(line)))
            except ValueError:  # not ours (nothing else should print there): shown, not lost
                if line.strip():
                    progress(f"{self.name} (stdout): {line.rstrip()}")
        self.inbox.put((self, None))

    def _expire(self) -> None:
        self.expired = True
        self.proc.kill()

    def ended(self, name: str) -> SystemExit:
        why = "timed out" if self.expired else f"exited with {self.proc.wait()}"
        return SystemExit(f"the {name!r} stage never came from {self.name}: the child {why}")

    def stage(self, name: str) -> dict[str, Any]:
        """The next line of this child (its own inbox): it must be stage ``name``."""
        _, out = self.inbox.get()
        if out is None:
            raise self.ended(name)
        if out.get("stage") != name:
            raise SystemExit(f"expected stage {name!r}, got {out!r}")
        return out

    def order(self, do: str) -> None:
        """A line to the child's stdin: ``{"do": ...}`` (a worker's ``stop`` or ``report``)."""
        self.stdin.write(json.dumps({"do": do}) + "\n")
        self.stdin.flush()

    def stop(self, exiting: bool = False, signalled: bool = False) -> None:
        """Stop the child (SIGINT); ``exiting``: it is stopping by itself, give it 10 s first;
        ``signalled``: its SIGINT was sent already (a second one would interrupt its clean stop)."""
        self._timer.cancel()
        if exiting:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None and not signalled:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def stop_all(children: list[Child], exiting: bool = False) -> None:
    """SIGINT every child at once (so none takes over another's partitions as it stops), then wait for each."""
    if not exiting:
        for child in children:
            child._timer.cancel()
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGINT)
    for child in children:
        child.stop(exiting=exiting, signalled=not exiting)


def collect(inbox: queue.Queue, children: list[Child], name: str) -> list[dict[str, Any]]:
    """Stage ``name`` of every child on a shared inbox, in the children's order; other stages are skipped."""
    found: dict[Child, dict[str, Any]] = {}
    while len(found) < len(children):
        child, out = inbox.get()
        if out is None:
            if child in found:
                continue  # its output ended after the stage (a primed worker exits)
            raise child.ended(name)
        if out.get("stage") == name:
            found[child] = out
    return [found[child] for child in children]


def drain(system: str, args: argparse.Namespace, url: str, database: str, prefix: str,
          devices: list[dict[str, Any]], broker, work_dir: str) -> dict[str, Any]:
    """One system's turn: prime its session, queue the backlog, drain it in a child, check every id."""
    if system == "hub" and args.partitions:
        return drain_workers(args, url, database, prefix, devices, broker, work_dir)
    base = {"system": system, "url": url, "mqtt_url": args.mqtt_url, "host": "127.0.0.1", "port": args.port,
            "prefix": prefix, "n": args.events}
    progress(f"{system}: priming its broker session")
    prime = Child({**base, "prime": True}, timeout=120)
    prime.stage("ready")
    prime.stop(exiting=True)

    publisher, ids = queue_backlog(system, args, prefix, devices, broker, work_dir)
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

    n = done["acked"]
    span = done["last"] - done["first"]
    out: dict[str, Any] = {
        "events": args.events, "published": publisher["published"], "checkins_published": publisher.get("checkins", 0),
        "acked": n, "events_per_s": n / span if span > 0 else math.nan,
        "boot_s": ready["t"] - child.spawned,
        "first_commit_s": done["first"] - ready["t"],
        "drain_s": span, "longest_commit_gap_s": done["longest_gap"], "batches": done["batches"],
        "mean_batch": n / done["batches"] if done["batches"] else math.nan,
        "cpu_us_per_event": (done["cpu"] - ready["cpu"]) / n * 1e6,
        **_server_costs(n, (pg0, broker0, jiffies0), (pg1, broker1, jiffies1)),
        "rss_max_mb": done["rss_max_kb"] / 1024, "rss_end_mb": done["rss_kb"] / 1024,
        "received": done["received"], "reconnects": done["reconnects"], "load_average": load,
        "publisher": publisher,
    }
    return _checked(system, args, url, database, out, ids, profiled=bool(profile), log_offset=log_offset)


def queue_backlog(system: str, args: argparse.Namespace, prefix: str, devices: list[dict[str, Any]], broker,
                  work_dir: str) -> tuple[dict[str, Any], list[bytes]]:
    """Step 2: the publisher fleet queues ``--events`` events on the stopped system's session(s)."""
    progress(f"{system}: queueing {args.events:,} events in the broker")
    fleet = FleetConfig(host="127.0.0.1", port=args.port, messages=args.events, processes=args.processes,
                        checkin_fraction=args.checkins, inflight=args.inflight, timeout=args.timeout)
    t = time.perf_counter()
    publisher, ids = publish_backlog(fleet, prefix, devices, work_dir)
    progress(f"{system}: {publisher['published']:,} queued ({publisher.get('checkins', 0):,} check-ins) in "
             f"{time.perf_counter() - t:.1f}s; broker RSS {_rss_mb(broker.pid):.0f} MB; starting the drain")
    return publisher, ids


def _server_costs(n: int, before: tuple[dict[int, float], float, tuple[int, int]],
                  after: tuple[dict[int, float], float, tuple[int, int]]) -> dict[str, Any]:
    """PostgreSQL (the system's database's backends), broker and machine, between two readings, per event."""
    (pg0, broker0, jiffies0), (pg1, broker1, jiffies1) = before, after
    pg_cpu = sum(cpu - pg0.get(pid, 0.0) for pid, cpu in pg1.items())
    busy = (jiffies1[0] - jiffies0[0]) / max(1, jiffies1[1] - jiffies0[1])
    return {"postgres_cpu_us_per_event": pg_cpu / n * 1e6, "postgres_backends": len(pg1),
            "broker_cpu_us_per_event": (broker1 - broker0) / n * 1e6, "machine_busy_pct": 100 * busy}


def _checked(system: str, args: argparse.Namespace, url: str, database: str, out: dict[str, Any],
             ids: list[bytes], *, profiled: bool, log_offset: int | None) -> dict[str, Any]:
    """Step 4, and the statement log: every published id looked up in what the system stored."""
    statements = statement_log_summary(database, log_offset, args.pg_log) if log_offset is not None else None
    if profiled:
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
    progress(f"{system}: {out['acked']:,} committed at {fmt(out['events_per_s'], ',.0f')}/s, "
             f"{out['cpu_us_per_event']:.0f} us CPU/event, PostgreSQL {out['postgres_cpu_us_per_event']:.0f} us/event; "
             f"lost {out['lost']}, duplicated {out['duplicated']}")
    return out


# --------------------------------------------------------------------------- the hub as K partitioned workers


def worker_ids(prefix: str, workers: int) -> list[str]:
    """The workers' ids as ``serve --workers`` names them (``<prefix>-w<i>``), the same in the prime and the drain."""
    from hub.app.workers import worker_ids as serve_worker_ids

    return list(serve_worker_ids(workers, host=prefix))


def partition_session_ids(prefix: str, partitions: int) -> list[str]:
    """The client ids of the partitions' persistent sessions (``hub_settings``' hub client id is ``<prefix>-hub``)."""
    from hub.app.partition_sessions import partition_client_id

    return [partition_client_id(f"{prefix}-hub", n) for n in range(partitions)]


def _primed(reports: dict[str, dict[str, Any]], partitions: int) -> bool:
    """Every partition owned by exactly one worker, the shares even, every owned session subscribed."""
    owned = [set(r["owned"]) for r in reports.values()]
    shares = sorted(len(o) for o in owned)
    return (sum(shares) == partitions and set().union(*owned) == set(range(partitions))
            and shares[-1] - shares[0] <= 1 and all(set(r["subscribed"]) >= set(r["owned"]) for r in reports.values()))


async def _leases(db) -> dict[str, Any]:
    """The bench database's leases and heartbeats now (by the database's clock)."""
    held = await db.fetch("SELECT partition, owner FROM partition_leases WHERE owner IS NOT NULL AND expires_at > now()"
                          " ORDER BY partition")
    workers = await db.fetch("SELECT worker_id FROM hub_workers ORDER BY worker_id")
    return {"held": {r["partition"]: r["owner"] for r in held}, "workers": [r["worker_id"] for r in workers]}


async def _stored_count(db) -> int:
    """Event ids stored so far: accepted events, and rejections that carry an id."""
    return await db.fetchval("SELECT (SELECT count(*) FROM events)"
                             " + (SELECT count(*) FROM rejected_events WHERE event_id IS NOT NULL)")


def prime_workers(args: argparse.Namespace, base: dict[str, Any], ids: list[str], url: str) -> dict[str, Any]:
    """Start the K workers once, wait until every partition's session is owned and subscribed, stop them."""
    partitions = args.partitions
    progress(f"hub: priming {partitions} partition sessions with {len(ids)} worker(s)")
    inbox: queue.Queue = queue.Queue()
    t0 = time.time()
    children = [Child({**base, "prime": True, "worker_id": w}, timeout=180, inbox=inbox) for w in ids]
    stopping = False
    try:
        reports: dict[str, dict[str, Any]] = {}
        ready = 0
        while True:
            try:
                child, out = inbox.get(timeout=1)
                if out is None:
                    raise child.ended("sessions")
                if out["stage"] == "ready":
                    ready += 1
                elif out["stage"] == "sessions":
                    reports[child.name] = out
            except queue.Empty:
                pass  # no change reported: the database may agree now
            if ready == len(ids) and len(reports) == len(ids) and _primed(reports, partitions):
                leases = run_db(url, _leases)
                owners = {p: w for w, r in reports.items() for p in r["owned"]}
                if leases["held"] == owners:
                    break
                progress(f"hub: the workers' reports and partition_leases differ; waiting ({leases['held']})")
                time.sleep(1)  # a lease read once a second at most (a benchmark's poll, not a test's wait)
        primed_s = time.time() - t0
        stopping = True
        for child in children:  # all at once: none takes over another's partitions as it stops
            child.order("stop")
        collect(inbox, children, "stopped")
    finally:
        stop_all(children, exiting=stopping)
    left = run_db(url, _leases)
    prime = {"primed_s": primed_s, "owned": {w: r["owned"] for w, r in reports.items()},
             # More sessions opened than owned at the end: a partition moved between workers while priming.
             "sessions_opened": {w: r["opened"] for w, r in reports.items()},
             "leases_left": left["held"], "heartbeats_left": left["workers"]}
    moved = sum(len(r["opened"]) for r in reports.values()) - partitions
    progress(f"hub: primed in {primed_s:.1f}s ({moved} partition(s) moved while priming); after the stop "
             f"{len(left['held'])} lease(s) and {len(left['workers'])} heartbeat(s) left")
    return prime


def merged_quiet_gap(workers: list[dict[str, Any]]) -> float:
    """The longest time between the first and the last commit in which no worker committed.

    Each worker is quiet before its first commit, in each of its kept gaps (every one longer
    than ``GAP_KEPT_S``: the worker's shorter gaps count as busy) and after its last commit; the
    whole hub is quiet where all of them are, the intersection. Exact above ``GAP_KEPT_S``; at
    most that, it is reported as ``GAP_KEPT_S`` (an upper bound).
    """
    committed = [w for w in workers if w["acked"]]
    if len(committed) == 1 and len(workers) == 1:
        return committed[0]["longest_gap"]
    start, end = min(w["first"] for w in committed), max(w["last"] for w in committed)
    quiet: list[tuple[float, float]] = [(start, end)]
    for w in committed:
        own = [(-math.inf, w["first"]), *map(tuple, w["gaps"]), (w["last"], math.inf)]
        quiet = _intersect(quiet, own)
    return max([GAP_KEPT_S, *(b - a for a, b in quiet)])


def _intersect(xs: list[tuple[float, float]], ys: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The intersection of two sorted lists of disjoint open intervals."""
    out, i, j = [], 0, 0
    while i < len(xs) and j < len(ys):
        a, b = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        if a < b:
            out.append((a, b))
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return out


def drain_workers(args: argparse.Namespace, url: str, database: str, prefix: str, devices: list[dict[str, Any]],
                  broker, work_dir: str) -> dict[str, Any]:
    """The hub's turn as K partitioned workers: prime, queue, drain in K children, merge, check."""
    k, n = args.workers, args.events
    ids = worker_ids(prefix, k)
    base = {"system": "hub", "url": url, "mqtt_url": args.mqtt_url, "host": "127.0.0.1", "port": args.port,
            "prefix": prefix, "n": n, "partitions": args.partitions, "peers": ids}
    prime = prime_workers(args, base, ids, url)
    publisher, published_ids = queue_backlog("hub", args, prefix, devices, broker, work_dir)

    log_offset = None
    if args.pg_statements:
        log_offset = statement_log_start(args.database_url, database, args.pg_log)
    stored_before = run_db(url, _stored_count)
    profiles = [(f"{args.profile}.w{i}" if k > 1 else args.profile) if args.profile else None for i in range(k)]
    inbox: queue.Queue = queue.Queue()
    load = load_average()
    children = [Child({**base, "prime": False, "worker_id": w, "profile": p}, timeout=args.timeout, inbox=inbox)
                for w, p in zip(ids, profiles)]
    try:
        ready: dict[Child, dict[str, Any]] = {}
        counts = {child: 0 for child in children}
        before: tuple[dict[int, float], float, tuple[int, int]] | None = None
        settled_at = None  # when the counts last changed once their sum reached N
        while True:
            try:
                child, line = inbox.get(timeout=1)
                if line is None:
                    raise child.ended("done")
                if line["stage"] == "ready":
                    ready[child] = line
                    if before is None:  # at the first worker's ready: nothing is committed before it
                        before = postgres_cpu_s(database), process_cpu_s(broker.pid), cpu_jiffies()
                elif line["stage"] == "count":
                    counts[child] = line["acked"]
                    settled_at = time.monotonic()
            except queue.Empty:
                pass  # no news for a second: look at the database again below
            if before is None or len(ready) < k or sum(counts.values()) < n:
                continue
            # Acks count a redelivered message twice (a hand-over): the stored ids decide, unless the
            # counts stopped moving (some never stored: `lost` reports them).
            if run_db(url, _stored_count) - stored_before >= n or time.monotonic() - (settled_at or 0) > 5:
                break
        after = postgres_cpu_s(database), process_cpu_s(broker.pid), cpu_jiffies()
        for child in children:
            child.order("report")
        done = collect(inbox, children, "done")
    finally:
        stop_all(children)
    for p in profiles:
        if p:
            print_profile(p, label="hub (drain)")

    per_worker = []
    for child, d in zip(children, done):
        r = ready[child]
        per_worker.append({
            "worker": child.name, "acked": d["acked"], "batches": d["batches"],
            "boot_s": r["t"] - child.spawned,
            "first_commit_s": d["first"] - r["t"] if d["acked"] else math.nan,
            "first": d["first"], "last": d["last"], "longest_gap_s": d["longest_gap"],
            "cpu_s": d["cpu"] - r["cpu"],
            "cpu_us_per_event": (d["cpu"] - r["cpu"]) / d["acked"] * 1e6 if d["acked"] else math.nan,
            "rss_max_mb": d["rss_max_kb"] / 1024, "rss_end_mb": d["rss_kb"] / 1024,
            "received": d["received"], "reconnects": d["reconnects"],
            "owned": d["owned"], "sessions_opened": d["opened"],
        })
    committed = [(d, w) for d, w in zip(done, per_worker) if d["acked"]]
    first, last = min(d["first"] for d, _ in committed), max(d["last"] for d, _ in committed)
    span = last - first
    acked = sum(d["acked"] for d in done)
    batches = sum(d["batches"] for d in done)
    first_ready = min(r["t"] for r in ready.values())
    out: dict[str, Any] = {
        "events": n, "published": publisher["published"], "checkins_published": publisher.get("checkins", 0),
        "partitions": args.partitions,
        "acked": acked, "events_per_s": n / span if span > 0 else math.nan,
        "boot_s": max(w["boot_s"] for w in per_worker),
        "first_commit_s": first - first_ready,
        "drain_s": span, "longest_commit_gap_s": merged_quiet_gap(done), "batches": batches,
        "mean_batch": acked / batches if batches else math.nan,
        "cpu_us_per_event": sum(w["cpu_s"] for w in per_worker) / n * 1e6,
        **_server_costs(n, before, after),
        "rss_max_mb": max(w["rss_max_mb"] for w in per_worker), "rss_end_mb": max(w["rss_end_mb"] for w in per_worker),
        "received": sum(w["received"] for w in per_worker), "reconnects": sum(w["reconnects"] for w in per_worker),
        "load_average": load, "publisher": publisher,
        # More sessions opened than partitions: some moved between workers during the drain (a hand-over).
        "partitions_moved": sum(len(w["sessions_opened"]) for w in per_worker) - args.partitions,
        "workers": per_worker, "prime": prime,
    }
    for w in per_worker:
        progress(f"hub {w['worker']}: {w['acked']:,} acked, {fmt(w['cpu_us_per_event'], '.0f')} us CPU/event, "
                 f"first commit {fmt(w['first_commit_s'], '.2f')}s after its ready, peak RSS {w['rss_max_mb']:.0f} MB,"
                 f" owns {len(w['owned'])} partitions, opened {len(w['sessions_opened'])} sessions")
    return _checked("hub", args, url, database, out, published_ids, profiled=bool(args.profile),
                    log_offset=log_offset)


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
        assert raw_url is not None
        campus = await migrate_and_seed(raw_url, rooms=args.rooms, students=args.students)
    if raw_url is not None:
        async with asyncio_loop(), open_database(raw_url, max_size=1) as db:
            await db.execute(RAW_TABLE_DDL)
    return campus


def summary(results: dict[str, dict[str, Any]], workers: int, partitions: int) -> dict[str, Any]:
    hub, raw = results.get("hub", {}), results.get("raw", {})
    nan = math.nan
    out = {
        "workers": workers, "partitions": partitions,
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
    for w in (hub or {}).get("workers", []):
        print(f"  {w['worker']:<22} {w['acked']:>9,} acked {fmt(w['cpu_us_per_event'], '.1f'):>7} us/ev "
              f"first {fmt(w['first_commit_s'], '.2f'):>5}s gap {w['longest_gap_s']:>5.2f}s RSS {w['rss_max_mb']:>4.0f} MB "
              f"owns {len(w['owned']):>3} partitions, opened {len(w['sessions_opened'])} sessions")
    if hub and "prime" in hub:
        p = hub["prime"]
        print(f"hub: {cfg['workers']} worker(s), {cfg['partitions']} partitions; primed in {p['primed_s']:.1f}s; "
              f"{hub['partitions_moved']} partition(s) moved during the drain; leases left after the prime: "
              f"{len(p['leases_left'])}")
    if hub:
        print(f"hub: {hub.get('checkins_recorded', 0):,} check-ins recorded, {hub.get('sensor_rows', 0):,} sensor rows, "
              f"rejections {hub.get('rejected') or 'none'}")
    print("events/s = events / (first -> last commit); CPU from the child's 'ready' (connected, subscribed) to its last "
          "commit;\nPG = the PostgreSQL backends of its database; first s = ready -> first commit; gap = the longest "
          "time between two commits;\nRSS = the child's peak (VmHWM). Several workers: events/s over the earliest "
          "first -> the latest last commit of any, CPU summed,\nRSS the largest worker's, gap = no worker committing.")


def main() -> None:
    if sys.argv[1:] == ["--child"]:
        child_main()
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", "-n", type=int, default=300_000, help="events queued before each system starts")
    ap.add_argument("--checkins", type=float, default=0.0,
                    help="fraction of the events that are QR check-ins (each of a different enrolled student)")
    ap.add_argument("--workers", type=int, default=1, help="hub worker processes")
    ap.add_argument("--partitions", type=int, default=None,
                    help="the hub's partitions (Settings.partitions); default: 0 (the single-process hub) with "
                         f"--workers 1, {DEFAULT_WORKER_PARTITIONS} with more")
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
    if args.workers < 1:
        ap.error("--workers is at least 1")
    if args.partitions is None:
        args.partitions = 0 if args.workers == 1 else DEFAULT_WORKER_PARTITIONS
    if args.workers > 1 and args.partitions < args.workers:
        ap.error("several workers share partitions: --partitions must be at least --workers")
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
            discard_broker_sessions("127.0.0.1", args.port, [f"{prefix}-{s}"] + (
                partition_session_ids(prefix, args.partitions) if s == "hub" else []))
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
        "config": {"events": args.events, "checkins": args.checkins, "workers": args.workers,
                   "partitions": args.partitions, "rooms": args.rooms,
                   "students": args.students, "devices": len(devices), "publisher_processes": args.processes,
                   "systems": systems, "profiled": bool(args.profile)},
        "machine": machine,
        "summary": summary(results, args.workers, args.partitions),
        "results": results,
    }
    if args.json:
        print(json.dumps(no_nan({**report["summary"], **report}), indent=2, default=str))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
