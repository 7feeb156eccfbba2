"""Database size under sustained ingest with retention on, and what a retention pass gives back.

Runs the real hub (``run_hub(settings, port=None)``, its retention actor
included, ``CAMPUSHUB_RETENTION_EVENTS_DAYS=1``: the smallest window) on a
fresh seeded database, fed by the publisher fleet of bench/_common.py
(signed sensor readings at ``--rate`` for ``--duration`` seconds), and
prints the database's size every ``--sample-every`` seconds: the whole
database and the three tables that grow with every message (``events``,
the dedup ledger ``processed_messages``, ``sensor_readings``, each the sum
over its partitions).

Retention works by the day (daily partitions, docs/data-lifecycle.md), so
within a run of minutes nothing is old enough to go: the size grows at the
rate of the load. The run therefore ends with the passes that will run when
that day ages out, on the same database, as of the instant they are due
(``now`` moved forward; the hub stopped): the retention pass of the day after
tomorrow (``events`` of today dropped), the telemetry pass 15 days on (raw
readings rolled up and dropped), the retention pass 10 days on (the ledger's
day dropped). It prints each pass's duration and the sizes after it. The
steady state follows: one day's growth times the days kept.

    .venv/bin/python bench/retention.py [--duration 600] [--rate 2000] [--rooms 20]
        [--processes 2] [--sample-every 15] [--json]

Nothing here asserts anything. Figures depend on the machine (and on what
else it runs: say so next to them).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402 - after the path set-up
    DEFAULT_MQTT_URL,
    DEFAULT_SERVER_URL,
    Driver,
    FleetConfig,
    Phase,
    adopt_hub_loop,
    create_databases,
    database_url_for,
    device_payloads,
    drop_databases,
    hub_settings,
    load_average,
    migrate_and_seed,
    new_run_id,
    progress,
)

GROWING = ("events", "processed_messages", "sensor_readings")


async def sizes(db) -> dict[str, int]:
    """Bytes: the whole database, and each growing table summed over its partitions (indexes and TOAST included)."""
    out = {"database": int(await db.fetchval("SELECT pg_database_size(current_database())"))}
    for table in GROWING:
        out[table] = int(await db.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree($1)", table))
    return out


async def rows(db) -> dict[str, int]:
    return {table: int(await db.fetchval(f"SELECT count(*) FROM {table}")) for table in GROWING}


async def sampler(db, phase: Phase, every: float, samples: list[dict[str, Any]]) -> None:
    import trio

    t0 = time.monotonic()
    while True:
        sample = {"t_s": round(time.monotonic() - t0, 1), "committed": len(phase.ack_log), **await sizes(db)}
        samples.append(sample)
        progress(f"  t={sample['t_s']:>6.0f}s committed {sample['committed']:>9,}  database {mb(sample['database'])}"
                 f"  events {mb(sample['events'])}  ledger {mb(sample['processed_messages'])}"
                 f"  readings {mb(sample['sensor_readings'])}")
        await trio.sleep(every)


def mb(n: int) -> str:
    return f"{n / 2**20:8.1f} MB"


async def load_phase(args: argparse.Namespace, url: str, prefix: str, devices: list[dict[str, Any]],
                     data_dir: str) -> tuple[Phase, list[dict[str, Any]], dict[str, Any]]:
    import trio

    from hub.app.supervision import run_hub
    from hub.db import open_database

    settings = hub_settings(url, str(args.mqtt_url), prefix, data_dir=Path(data_dir), retention_events_days=1)
    phase = Phase("hub", args.messages)
    fleet = FleetConfig(host=args.mqtt.host, port=args.mqtt.port, messages=args.messages, rate=args.rate,
                        window=args.window, processes=args.processes, timeout=args.duration * 3 + 120)
    driver = Driver(fleet, prefix, devices, phase)
    samples: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, settings, port=None))
        hub.client.ack_many = driver.ack_recorder(hub.client.ack_many)
        adopt_hub_loop(hub)  # the sampler's pool runs on the hub's trio-asyncio loop
        async with open_database(url, max_size=1) as db:
            nursery.start_soon(sampler, db, phase, args.sample_every, samples)
            await driver.run()
            samples.append({"t_s": round(phase.wall_s, 1), "committed": len(phase.ack_log), **await sizes(db)})
        metrics = hub.metrics.render()
        nursery.cancel_scope.cancel()
    retention_lines = [line for line in metrics.splitlines()
                       if line.startswith(("campushub_retention_", "campushub_events_rejected_total"))
                       and "_created" not in line and " 0.0" not in line]
    return phase, samples, {"retention_metrics": retention_lines}


async def age_out(url: str) -> list[dict[str, Any]]:
    """The passes due when today's rows age out, as of those instants, with their durations and the sizes after."""
    from hub.db import open_database
    from hub.db.retention import RetentionPeriods, run_pass
    from hub.db.telemetry import maintain

    now = datetime.now(timezone.utc)
    steps: list[dict[str, Any]] = []
    async with open_database(url, max_size=2) as db:
        await db.execute("ANALYZE")  # the pass reports dropped partitions' rows from the planner's estimate
        steps.append({"step": "after the load", "seconds": 0.0, **await sizes(db), "rows": await rows(db)})
        periods = RetentionPeriods(events_days=1)
        for label, run in (
            ("retention pass, 2 days on (events of today dropped)",
             lambda: run_pass(db, now + timedelta(days=2), periods)),
            ("telemetry pass, 15 days on (readings rolled up, dropped)",
             lambda: maintain(db, now + timedelta(days=15))),
            ("retention pass, 10 days on (ledger day dropped)",
             lambda: run_pass(db, now + timedelta(days=10), periods)),
        ):
            t = time.perf_counter()
            report = await run()
            seconds = time.perf_counter() - t
            step = {"step": label, "seconds": round(seconds, 3), **await sizes(db), "rows": await rows(db)}
            tables = getattr(report, "tables", None)
            if tables is not None:
                step["removed"] = {name: t.removed for name, t in tables.items() if t.removed}
            steps.append(step)
            progress(f"  {label}: {seconds:.2f}s, database {mb(step['database'])}")
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--rate", type=float, default=2000, help="events per second (default 2000)")
    parser.add_argument("--rooms", type=int, default=60,
                        help="seeded rooms, one device each (default 60: 2,000/s is then ~33/s a device, under"
                             " the hub's per-device limit of 50/s)")
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--processes", type=int, default=2, help="publisher processes (default 2)")
    parser.add_argument("--window", type=int, default=900)
    parser.add_argument("--sample-every", type=float, default=15.0)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER_URL))
    parser.add_argument("--mqtt-url", default=os.environ.get("BENCH_MQTT_URL", DEFAULT_MQTT_URL))
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()

    import trio

    from hub.core.config import MqttUrl

    args.mqtt = MqttUrl.parse(args.mqtt_url)
    args.messages = int(args.rate * args.duration)
    run_id = new_run_id()
    name = f"bench_retention_{run_id}"
    created: list[str] = []
    try:
        version = create_databases(args.database_url, [name], created)
        url = database_url_for(args.database_url, name)
        progress(f"seeding {args.rooms} rooms, {args.students} students ...")
        campus = trio.run(partial(migrate_and_seed, url, rooms=args.rooms, students=args.students))
        devices = device_payloads(campus, checkins=False)
        load_before = load_average()
        with tempfile.TemporaryDirectory() as data_dir:
            progress(f"load: {args.rate:,.0f} events/s for {args.duration:.0f}s ({args.messages:,} events)")
            phase, samples, extra = trio.run(load_phase, args, url, f"bench{run_id}", devices, data_dir)
        progress("aging out ...")
        steps = trio.run(partial(_in_loop, age_out, url))
        summary = phase.summary()
        report = {
            "postgres": version, "load_average_before": load_before, "rate": args.rate, "duration_s": args.duration,
            "committed": summary["committed"], "events_per_s": summary.get("events_per_s"),
            "steady_events_per_s": summary.get("steady_events_per_s"), "timed_out": phase.timed_out,
            "wall_s": phase.wall_s, "samples": samples, "age_out": steps, **extra,
        }
        if args.json:
            print(json.dumps(report, indent=2, default=str))
        else:
            print_report(report)
    finally:
        if not args.keep:
            drop_databases(args.database_url, created)


async def _in_loop(fn, *args, **kwargs):
    from hub.db import asyncio_loop

    async with asyncio_loop():
        return await fn(*args, **kwargs)


def print_report(report: dict[str, Any]) -> None:
    print(f"PostgreSQL {report['postgres']}; load average before {report['load_average_before']}")
    print(f"offered {report['rate']:,.0f} events/s for {report['duration_s']:.0f}s: committed {report['committed']:,}"
          f" in {report['wall_s']:.0f}s ({report['events_per_s']:,.0f}/s, steady {report['steady_events_per_s']:,.0f}/s)"
          f"{' TIMED OUT' if report['timed_out'] else ''}")
    print(f"{'t (s)':>8} {'committed':>11} {'database':>11} {'events':>11} {'ledger':>11} {'readings':>11}")
    for s in report["samples"]:
        print(f"{s['t_s']:>8.0f} {s['committed']:>11,} {mb(s['database'])} {mb(s['events'])}"
              f" {mb(s['processed_messages'])} {mb(s['sensor_readings'])}")
    first, last = report["samples"][0], report["samples"][-1]
    grown = last["committed"] - first["committed"]
    if grown:
        print(f"growth per committed event: database {(last['database'] - first['database']) / grown:.0f} B,"
              f" events {(last['events'] - first['events']) / grown:.0f} B,"
              f" ledger {(last['processed_messages'] - first['processed_messages']) / grown:.0f} B,"
              f" readings {(last['sensor_readings'] - first['sensor_readings']) / grown:.0f} B")
    print("retention as the day ages out:")
    for step in report["age_out"]:
        print(f"  {step['step']:<58} {step['seconds']:>7.2f}s  database {mb(step['database'])}  rows {step['rows']}")
    for line in report.get("retention_metrics", []):
        print(f"  {line}")


if __name__ == "__main__":
    main()
