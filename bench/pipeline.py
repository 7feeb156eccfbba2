"""Sustained end-to-end ingest through the real hub, against a raw MQTT -> PostgreSQL baseline.

Both systems are fed by the same publisher (``bench/_common.py``, the
publisher fleet): by default a separate *process* (so it does not compete for
our GIL) running plain paho-mqtt (MQTT 5, QoS 1, max inflight 50) that signs
SensorReadingEvent frames with the keys of the seeded devices (round robin,
``ts`` = its wall clock in ms when it calls publish()) and publishes them on
each device's uplink topic, either as fast as it can or at a fixed
``--rate``. It never runs more than ``--window`` messages ahead of what the
system under test has committed (the parent reports that count over the
publisher's stdin): Mosquitto keeps at most 1,000 queued messages per
subscriber beyond those in flight and silently drops the rest.

With ``--device-connections`` every device publishes over its own MQTT
connection (``--rooms`` devices = connections), spread over ``--processes``
publisher processes; ``--checkins F`` makes a fraction F of the messages QR
check-ins of enrolled students (fresh rotating tokens) into the live session
of the device's room, the rest sensor readings. E.g. the harness's load:
1,000 connections from 4 processes, 10 % check-ins::

    .venv/bin/python bench/pipeline.py --rooms 1000 --students 2000 --device-connections \\
        --processes 4 --checkins 0.1 --messages 60000

* raw: the same MQTT -> PostgreSQL path with no domain logic, in this
  process: a TrioMqttClient (manual ack, QoS 1, persistent session); batches
  whatever is buffered (flush when the channel is momentarily empty or 2,000
  are pending), COPYs (payload, received_at) into a scratch table in one
  transaction (``Database.run(..., transaction=True)``), then acks.
* hub: ``hub.app.supervision.run_hub(settings, port=None)`` in this process, on a fresh
  migrated database seeded with ``ensure_campus``: decode, authenticate,
  device actors, the writer's dedup + COPY transaction, ack.

Figures per system (all clocks are this machine's):

* events/s: committed messages / (first publish ts -> last ack); "steady"
  is the same over the 10 %..90 % of acks (no ramp-up or tail).
* db p50/p95/p99: exact percentiles over every row of ``committed_at -
  publish ts`` (hub: ``events.committed_at - events.device_ts``, accepted
  events of every kind; raw: the
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
        [--rooms 20] [--students 40] [--device-connections] [--processes 1] [--checkins 0]
        [--systems raw,hub] [--tls | --private-broker] [--json] [--profile hub.pstats]

With ``--tls`` the run gets a private Mosquitto (anonymous, in-memory
sessions, a plain and a TLS listener, certificates from a throwaway trustme
CA: ``start_tls_broker`` in bench/_common.py) and the publishers, the raw
consumer and the hub all connect to its TLS listener (``mqtts://``, verifying
the broker with that CA). ``--private-broker`` uses the same private broker's
*plain* listener: the baseline to compare a ``--tls`` run with (same broker
binary and configuration, only the transport differs; this machine's shared
broker also carries other tenants' traffic). E.g. the TLS cost, in one
sitting::

    .venv/bin/python bench/pipeline.py --rooms 200 --students 400 --device-connections \\
        --processes 2 --messages 40000 --private-broker
    .venv/bin/python bench/pipeline.py --rooms 200 --students 400 --device-connections \\
        --processes 2 --messages 40000 --tls

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
import sys
import tempfile
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402 - bench/ is not a package
    DEFAULT_MQTT_URL,
    DEFAULT_SERVER_URL,
    RAW_TABLE_DDL,
    Driver,
    FleetConfig,
    GcPauses,
    Phase,
    database_url_for,
    device_payloads,
    discard_broker_sessions,
    drop_databases,
    fmt,
    interruptible,
    is_interrupt,
    machine_facts,
    new_run_id,
    no_nan,
    percentile,
    print_profile,
    progress,
    raw_consume,
    run_db,
)


def fleet_config(args: argparse.Namespace) -> FleetConfig:
    return FleetConfig(host=args.mqtt.host, port=args.mqtt.port, messages=args.messages, rate=args.rate,
                       window=args.window, inflight=args.inflight, processes=args.processes,
                       per_device=args.device_connections, checkin_fraction=args.checkins, timeout=args.timeout,
                       cafile=args.cafile)


# =========================================================================== the two systems


async def run_raw(args: argparse.Namespace, url: str, prefix: str, devices: list[dict[str, str]]) -> Phase:
    import trio

    from hub.db import asyncio_loop, open_database
    from hub.mqtt import TrioMqttClient, client_tls_context
    from schemas import Topics

    phase = Phase("raw", args.messages)
    driver = Driver(fleet_config(args), prefix, devices, phase)
    topics = Topics(prefix)
    async with asyncio_loop(), open_database(url) as db:
        await db.execute(RAW_TABLE_DDL)
        client = TrioMqttClient(host=args.mqtt.host, port=args.mqtt.port, client_id=f"{prefix}-raw",
                                session_expiry_s=300,
                                tls=client_tls_context(args.cafile) if args.mqtt.tls else None)
        ack = driver.ack_recorder(client.ack_many)

        async def on_connect(c: TrioMqttClient) -> None:
            await c.subscribe(topics.uplink_filter, qos=1)

        async with trio.open_nursery() as nursery:
            await nursery.start(partial(client.run, on_connect=on_connect))
            nursery.start_soon(raw_consume, db, client, ack)
            with GcPauses() as gc_pauses:
                await driver.run()
            phase.extra["gc"] = gc_pauses.summary()
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
    from hub.core.config import Settings

    phase = Phase("hub", args.messages)
    driver = Driver(fleet_config(args), prefix, devices, phase)
    settings = Settings(database_url=url, mqtt_url=str(args.mqtt), topic_prefix=prefix,
                        hub_client_id=f"{prefix}-hub", data_dir=Path(data_dir),
                        # The campus key the databases were seeded with (bench/_common.py); without it the
                        # hub would make a key file of its own in data_dir and refuse the seeded secrets.
                        master_key=os.environ["CAMPUSHUB_MASTER_KEY"],
                        mqtt_cafile=Path(args.cafile) if args.cafile else None,
                        # The private broker is anonymous by choice (the benchmark's, not a deployment's).
                        open_broker_expected=args.tls or args.private_broker)
    # Instrumentation (this process only, nothing in hub/ is edited): time the writer's transactions.
    import hub.pipeline.writer

    original_write_batch = hub.pipeline.writer.write_batch
    transactions: list[tuple[float, int]] = []

    async def timed_write_batch(db, commits, **options):
        t = time.perf_counter()
        try:
            return await original_write_batch(db, commits, **options)
        finally:
            transactions.append((time.perf_counter() - t, len(commits)))

    hub.pipeline.writer.write_batch = timed_write_batch
    try:
        return await _run_hub_phase(args, settings, driver, phase, transactions)
    finally:
        hub.pipeline.writer.write_batch = original_write_batch


async def _run_hub_phase(args, settings, driver, phase, transactions) -> Phase:
    import trio

    from hub.app.supervision import run_hub

    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, settings, port=None))
        if args.open_sessions:
            phase.extra["sessions_opened"] = await open_all_sessions(hub, args.session_rooms)
        if args.gc_freeze:  # an experiment, not the hub's behaviour: see --help
            import gc

            gc.collect()
            gc.freeze()
            phase.extra["gc_frozen"] = gc.get_freeze_count()
        # The writer acks through client.ack_many after each commit; record when.
        hub.client.ack_many = driver.ack_recorder(hub.client.ack_many)
        transactions.clear()
        with GcPauses() as gc_pauses:
            await driver.run()
        phase.extra["gc"] = gc_pauses.summary()
        durations = sorted(d for d, _ in transactions)
        phase.extra["transactions"] = {
            "n": len(durations), "mean_batch": round(sum(n for _, n in transactions) / max(1, len(transactions)), 1),
            "p50_ms": round(percentile(durations, 50) * 1000, 1), "p99_ms": round(percentile(durations, 99) * 1000, 1),
            "busy_pct": round(100 * sum(durations) / phase.wall_s, 1) if phase.wall_s else None}
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
        s = hub.client.stats
        phase.extra["mqtt"] = {"received": s.received, "acked": s.acked, "reconnects": s.reconnects}
        nursery.cancel_scope.cancel()
    return phase


async def open_all_sessions(hub, rooms: list[str]) -> dict[str, Any]:
    """Have the scheduler start every live session's actor (one ResolveSession ask per room), timed.

    A hub that has been running when its sessions opened has them all
    (opened by the scheduler's timers); one that starts while they are
    already live opens at most SCHEDULER_MAILBOX (256) of them at boot and
    the rest on their first scan (docs/performance.md). This gives the
    benchmark the steady state of the former.
    """
    from _common import adopt_hub_loop

    from hub.pipeline.scheduler import ResolveSession

    adopt_hub_loop(hub)
    scheduler = hub.root.lookup("scheduler")
    at_boot = hub.sessions.actor_count()
    now = datetime.now(timezone.utc)
    t = time.perf_counter()
    for room in rooms:
        await scheduler.ask(ResolveSession(room, now), timeout=30)
    return {"at_boot": at_boot, "after": hub.sessions.actor_count(), "seconds": round(time.perf_counter() - t, 3)}


async def hub_db_results(db, phase: Phase) -> None:
    rows = await db.fetch(
        "SELECT extract(epoch FROM committed_at - device_ts)::float8 AS l FROM events")
    phase.db_latencies = [r["l"] for r in rows]
    for table in ("events", "sensor_readings", "attendance", "rejected_events", "processed_messages"):
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
            # Today's sensor_readings partitions exist in any hub older than its first maintenance
            # pass. Without them that pass (FIRST_RUN_S after boot) lands in the measured phase:
            # on a fresh database it races the writer's first COPYs (a batch fails on
            # sensor_readings_default's partition constraint and is retried commit by commit,
            # adding ~1 s to the p99 of some runs and not others).
            if "hub" in names:
                from hub.db.telemetry import maintain

                await maintain(db, datetime.now(timezone.utc))
    return version, campus


# =========================================================================== output


def print_table(report: dict[str, Any]) -> None:
    cfg, machine, results = report["config"], report["machine"], report["results"]
    rate = "as fast as possible" if not cfg["rate"] else f"{cfg['rate']:,.0f}/s"
    kinds = (f"signed events ({cfg['checkins']:.0%} QR check-ins, the rest sensor readings)"
             if cfg.get("checkins") else "signed sensor readings")
    conns = (f"{cfg['devices']:,} device connections from {cfg['processes']} processes"
             if cfg.get("device_connections") else f"one connection per publisher process ({cfg['processes']})")
    print(f"pipeline: {cfg['messages']:,} {kinds} from {cfg['devices']:,} devices, {conns}, "
          f"publisher rate {rate}, window {cfg['window']}, QoS 1, publisher inflight {cfg['inflight']}, "
          f"broker {cfg.get('broker', 'shared')}{' over TLS' if cfg.get('tls') else ''}"
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
            if "sessions_opened" in r:
                o = r["sessions_opened"]
                print(f"{' ' * len(name)}  session actors: {o['at_boot']:,} opened at boot, {o['after']:,} after "
                      f"opening the rest before publishing ({o['seconds']:.2f}s)")
            print(f"{' ' * len(name)}  rows {r['rows']}"
                  + (f"; hub metrics {r['hub_metrics']}" if "hub_metrics" in r else "")
                  + (f"; mqtt {r['mqtt']}" if "mqtt" in r else ""))
            if "transactions" in r:
                t = r["transactions"]
                print(f"{' ' * len(name)}  writer transactions: {t['n']:,}, mean batch {t['mean_batch']}, "
                      f"p50 {t['p50_ms']} ms, p99 {t['p99_ms']} ms; in a transaction {t['busy_pct']}% of the run")
            if "gc" in r:
                g = r["gc"]
                print(f"{' ' * len(name)}  garbage collector during the run: {g['collections']} collections, "
                      f"{g['total_ms']:.0f} ms in all; {g['full']} full, the longest {g['full_max_ms']:.0f} ms; "
                      f"{g.get('gen1', 0)} of generation 1, the longest {g.get('gen1_max_ms', 0):.0f} ms; "
                      f"longest young {g.get('gen0_max_ms', 0):.0f} ms; {g['tracked_objects']:,} objects tracked")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", "-n", type=int, default=30_000)
    ap.add_argument("--rate", type=float, default=0, help="publish rate per second; 0 = as fast as possible")
    ap.add_argument("--window", type=int, default=900,
                    help="max messages the publisher may run ahead of what is committed")
    ap.add_argument("--inflight", type=int, default=50, help="publisher's max inflight QoS 1 messages")
    ap.add_argument("--rooms", type=int, default=20, help="rooms = devices seeded (and published as)")
    ap.add_argument("--students", type=int, default=40)
    ap.add_argument("--device-connections", action="store_true",
                    help="one MQTT connection per device (else one per publisher process)")
    ap.add_argument("--processes", type=int, default=1, help="publisher processes")
    ap.add_argument("--checkins", type=float, default=0.0,
                    help="fraction of messages that are QR check-ins (of enrolled students, into live sessions)")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="experiment: gc.freeze() in the hub's process once it is up (what the hub would gain by"
                         " doing so after boot); figures are then not the hub's as shipped")
    ap.add_argument("--open-sessions", action="store_true",
                    help="hub: start every live session's actor (via the scheduler) before publishing, as in a hub"
                         " that was already running when the sessions opened")
    ap.add_argument("--systems", default="raw,hub", help="comma-separated, run in this order: raw, hub")
    ap.add_argument("--timeout", type=float, default=90, help="per system, seconds")
    ap.add_argument("--database-url", default=os.environ.get("CAMPUSHUB_TEST_DATABASE_URL", DEFAULT_SERVER_URL),
                    help="a server to create the benchmark databases on")
    ap.add_argument("--mqtt-url", default=os.environ.get("CAMPUSHUB_TEST_MQTT_URL", DEFAULT_MQTT_URL))
    ap.add_argument("--tls", action="store_true",
                    help="start a private Mosquitto with a TLS listener (trustme CA); publishers, raw consumer and"
                         " hub all connect with TLS (--mqtt-url is then ignored)")
    ap.add_argument("--private-broker", action="store_true",
                    help="the same private Mosquitto, plain listener: the baseline for a --tls run")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--profile", metavar="FILE",
                    help="cProfile the hub run (slows it: figures are then not comparable); save pstats to FILE")
    args = ap.parse_args()

    import faulthandler
    import signal

    import trio

    from hub.core.config import MqttUrl

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1 <pid>: where is it stuck?

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.mqtt = MqttUrl.parse(args.mqtt_url)
    args.cafile = None
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not systems or set(systems) - {"raw", "hub"}:
        ap.error("--systems takes raw and/or hub")

    run_id = new_run_id()
    prefix = f"bench-{run_id}"
    names = {s: f"campushub_bench_{run_id}_{s}" for s in systems}
    created: list[str] = []
    data_dir = tempfile.mkdtemp(prefix="campushub-bench-")
    results: dict[str, Any] = {}
    broker = None
    try:
        if args.tls or args.private_broker:
            from _common import start_tls_broker

            broker_dir = os.path.join(data_dir, "broker")  # apart from the hub's own files
            os.mkdir(broker_dir)
            broker, plain_port, tls_port, args.cafile = start_tls_broker(broker_dir)
            args.mqtt = MqttUrl.parse(f"mqtts://127.0.0.1:{tls_port}" if args.tls
                                      else f"mqtt://127.0.0.1:{plain_port}")
            if not args.tls:
                args.cafile = None
            progress(f"private mosquitto (pid {broker.pid}): {args.mqtt}")
        pg_version, campus = trio.run(interruptible, setup, args, names, created)
        machine = machine_facts(pg_version)
        devices = device_payloads(campus, checkins=args.checkins > 0)
        args.session_rooms = [session.room_id for session in campus.sessions]
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
                run_db(url, partial(hub_db_results, phase=phase))
            results[s] = phase.summary()
    except BaseException as exc:
        # Interrupted: Ctrl-C/SIGTERM during a run. KeyboardInterrupt: during
        # setup; trio may deliver it inside an exception group.
        if is_interrupt(exc):
            progress("interrupted")
            raise SystemExit(130) from None
        raise
    finally:
        if broker is not None:  # in-memory sessions: they go with it
            broker.terminate()
            broker.wait(10)
        else:
            # The publishers connect with clean start and no session expiry: nothing to discard for them.
            discard_broker_sessions(args.mqtt.host, args.mqtt.port, [f"{prefix}-raw", f"{prefix}-hub"])
        drop_databases(args.database_url, created)
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)

    report: dict[str, Any] = {
        "config": {"messages": args.messages, "rate": args.rate, "window": args.window, "inflight": args.inflight,
                   "rooms": args.rooms, "devices": len(devices), "profiled": bool(args.profile),
                   "device_connections": args.device_connections, "processes": args.processes,
                   "checkins": args.checkins, "students": args.students, "open_sessions": args.open_sessions,
                   "gc_freeze": args.gc_freeze, "tls": args.tls,
                   "broker": "private" if (args.tls or args.private_broker) else "shared"},
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
        print(json.dumps(no_nan(report), indent=2, default=str))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
