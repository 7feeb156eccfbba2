"""The performance harness: every issue-5 figure in one command, each against its baseline, as one table.

    .venv/bin/python bench/harness.py            # full: about 10 minutes
    .venv/bin/python bench/harness.py --quick    # small sizes, a smoke check in about a minute
    .venv/bin/python bench/harness.py --json     # the same figures as JSON, for scripts

It runs the benchmarks of bench/ one after the other, each in its own
process with ``--json`` (their progress goes to stderr, as this harness's):

=========  ======================  ==========================================================
name       script                  measures
=========  ======================  ==========================================================
ingest     pipeline.py             sustained end-to-end ingest (1,000 device MQTT connections
                                   from 4 processes, 10 % check-ins into live sessions, the
                                   rest sensor readings), against the raw MQTT -> PostgreSQL
                                   baseline in the same run
latency    pipeline.py --rate      publish -> commit latency at 5,000 events/s, same load
latency-   pipeline.py --rate      the same at 2,000 events/s, below the hub's saturation
low
fanout     fanout.py               publish -> websocket latency with 2,000 clients at 5,000
                                   events/s (then 1,000/s), against a plain quart-trio
                                   broadcast app
memory     actor_memory.py         bytes per idle actor at 10,000 device and 2,000 session
                                   actors, against a bare ``actors.Actor``
restart    restart.py              time back to full service after a restart with 2,000
                                   live sessions, against the raw consumer's restart
fairness   fairness.py             p99 publish -> commit of 50 devices' events and lost
                                   messages while one device floods, against the same
                                   devices' p99 before the flood (issue 12)
drain      drain.py                drain of 300,000 queued events (20 % check-ins) by a
                                   hub that was stopped: events/s, CPU per event (hub and
                                   PostgreSQL), first commit, longest gap, RSS, lost and
                                   duplicated, against the raw consumer's drain (issue 13)
drain-     drain.py --workers 2    the same drain (hub only) by two partitioned hub workers
workers                            (16 partitions, started at once as ``serve --workers 2``
                                   starts them): events/s against the one worker of
                                   ``drain`` in this run; CPU, first commit, longest gap
                                   with no worker committing, the largest worker's RSS,
                                   lost and duplicated (issue 13)
anomaly    anomaly_eval.py         precision, recall and F1 of the telemetry anomaly detector
                                   on injected anomalies per kind, against the isolation
                                   forest (issue 16; no database, no hub)
risk       risk_eval.py            ROC AUC, precision at the top 10 % and Brier score of the
                                   at-risk model on the latest seeded finished term, against
                                   the rule "attendance below 75 %" (issue 16; synthetic)
=========  ======================  ==========================================================

Before each benchmark it waits (at most ``--max-wait`` s) for the 1-minute
load average to drop below ``--max-load``: the machine is shared. The load
each figure was taken under is printed with it. Every benchmark is bounded
(its own timeouts, and a hard limit here, after which it gets SIGINT and
then SIGKILL); the databases it creates are named
``campushub_bench_<this run's id>...`` and dropped by the benchmark itself,
or by the harness if it had to kill one. Ctrl-C stops the benchmark in
progress (it cleans up) and then the harness.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402 - bench/ is not a package
    DEFAULT_SERVER_URL,
    RUN_ID_ENV,
    fmt,
    load_average,
    new_run_id,
    no_nan,
    progress,
    wait_for_quiet,
)

BENCH = os.path.dirname(os.path.abspath(__file__))

# (name, script, full-mode args, quick-mode args, hard limit in seconds (full, quick))
PLAN: list[tuple[str, str, list[str], list[str], tuple[float, float]]] = [
    ("ingest", "pipeline.py",
     ["--rooms", "1000", "--students", "2000", "--device-connections", "--processes", "4", "--checkins", "0.1",
      "--open-sessions", "--messages", "60000", "--timeout", "120"],
     ["--rooms", "100", "--students", "200", "--device-connections", "--processes", "2", "--checkins", "0.1",
      "--open-sessions", "--messages", "4000", "--timeout", "30"],
     (420, 90)),
    ("latency", "pipeline.py",
     ["--rooms", "1000", "--students", "2000", "--device-connections", "--processes", "4", "--checkins", "0.1",
      "--open-sessions", "--messages", "50000", "--rate", "5000", "--timeout", "120"],
     ["--rooms", "100", "--students", "200", "--device-connections", "--processes", "2", "--checkins", "0.1",
      "--open-sessions", "--messages", "3000", "--rate", "1500", "--timeout", "30"],
     (420, 90)),
    ("latency-low", "pipeline.py",
     ["--rooms", "1000", "--students", "2000", "--device-connections", "--processes", "4", "--checkins", "0.1",
      "--open-sessions", "--messages", "20000", "--rate", "2000", "--timeout", "60"],
     ["--rooms", "100", "--students", "200", "--device-connections", "--processes", "2", "--checkins", "0.1",
      "--open-sessions", "--messages", "1000", "--rate", "500", "--timeout", "30"],
     (300, 60)),
    ("fanout", "fanout.py",
     ["--clients", "2000", "--viewers", "4", "--sessions", "2000", "--students", "4000", "--rate", "5000",
      "--checkin-share", "0.05", "--duration", "20", "--low-rate", "1000", "--low-duration", "10"],
     ["--clients", "100", "--viewers", "4", "--sessions", "100", "--students", "200", "--rate", "1000",
      "--duration", "3", "--low-rate", "300", "--low-duration", "2", "--publishers", "2", "--client-processes", "2"],
     (600, 120)),
    ("memory", "actor_memory.py",
     ["--devices", "10000", "--sessions", "2000", "--students", "4000"],
     ["--devices", "500", "--sessions", "100", "--students", "200"],
     (600, 120)),
    ("restart", "restart.py",
     ["--sessions", "2000", "--students", "4000"],
     ["--sessions", "100", "--students", "200", "--idle", "0.5", "--settle", "1"],
     (300, 90)),
    ("fairness", "fairness.py",
     ["--devices", "50", "--quiet", "5", "--duration", "10", "--after", "5"],
     ["--devices", "20", "--quiet", "2", "--duration", "3", "--after", "2"],
     (240, 90)),
    ("drain", "drain.py",
     ["--events", "300000", "--checkins", "0.2"],
     ["--events", "20000", "--checkins", "0.2", "--rooms", "50"],
     (1800, 240)),
    ("drain-workers", "drain.py",  # issue 13: two workers against drain's one (the same events, this run)
     ["--events", "300000", "--checkins", "0.2", "--workers", "2", "--systems", "hub"],
     ["--events", "20000", "--checkins", "0.2", "--rooms", "50", "--workers", "2", "--systems", "hub"],
     (1800, 240)),
    ("anomaly", "anomaly_eval.py",  # issue 16: telemetry anomaly detectors on injected anomalies (no database)
     ["--rooms", "30"],
     ["--rooms", "6", "--weeks", "3", "--test-weeks", "1"],
     (900, 240)),
    ("risk", "risk_eval.py",  # issue 16: at-risk model vs the 75 % attendance rule on a held-out term
     ["--students", "150"],
     ["--students", "40", "--terms", "3"],
     (600, 180)),
]


# =========================================================================== running one benchmark


class Stop(Exception):
    """Ctrl-C: stop after the benchmark in progress has cleaned up."""


def run_benchmark(name: str, script: str, extra: list[str], limit: float) -> tuple[dict[str, Any] | None, str]:
    """Run one benchmark with --json; returns (report or None, error text)."""
    cmd = [sys.executable, os.path.join(BENCH, script), *extra, "--json"]
    progress(f"harness: {name}: {' '.join(os.path.relpath(c) if c.endswith('.py') else c for c in cmd[1:])}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    interrupted = False
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        progress(f"harness: {name}: over its {limit:.0f}s limit; stopping it")
        out = _stop(proc)
        return None, f"killed after {limit:.0f}s"
    except KeyboardInterrupt:
        interrupted = True
        out = _stop(proc)  # it got the SIGINT too (same process group) and is cleaning up
    if interrupted or proc.returncode == 130:  # 130: it was interrupted (SIGINT reached it, maybe not us)
        raise Stop
    if proc.returncode != 0:
        return None, f"exit code {proc.returncode}"
    try:
        return json.loads(out), ""
    except ValueError:
        return None, "no JSON on stdout"


def _stop(proc: subprocess.Popen) -> str:
    for sig, wait in ((signal.SIGINT, 45), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        try:
            out, _ = proc.communicate(timeout=wait)
            return out or ""
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:
            continue
    return ""


def drop_leftovers(server_url: str, run_id: str) -> None:
    """Drop this run's databases that a killed benchmark left behind (only ours: named by our run id)."""
    from _common import run_db

    async def work(db) -> list[str]:
        rows = await db.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1",
                              f"campushub_bench_{run_id}%")
        for r in rows:
            await db.execute(f'DROP DATABASE IF EXISTS "{r["datname"]}" WITH (FORCE)')
        return [r["datname"] for r in rows]

    try:
        dropped = run_db(server_url, work, shield_sigint=True)
        if dropped:
            progress(f"harness: dropped leftover databases {', '.join(dropped)}")
    except Exception as exc:  # noqa: BLE001
        progress(f"harness: could not check for leftover databases: {exc!r}")


# =========================================================================== the figures


def _ratio(a: Any, b: Any) -> float:
    try:
        return a / b if a is not None and b else math.nan
    except TypeError:
        return math.nan


def figures(reports: dict[str, Any], errors: dict[str, str], loads: dict[str, list[float]],
            quick: bool) -> list[dict[str, Any]]:
    """One row per figure: figure, target, measured, baseline, ratio, met, note."""
    rows: list[dict[str, Any]] = []

    def row(bench: str, figure: str, target: str, measured: Any, baseline: Any, unit: str, met: bool | None,
            note: str = "", ratio: float | None = None) -> None:
        rows.append({"bench": bench, "figure": figure, "target": target, "measured": measured,
                     "baseline": baseline, "unit": unit,
                     "ratio": _ratio(measured, baseline) if ratio is None else ratio,
                     "met": met, "note": note, "load": loads.get(bench, [math.nan])[0]})

    def missing(bench: str, figure: str, target: str) -> None:
        row(bench, figure, target, None, None, "", None, f"no result: {errors.get(bench, 'not run')}")

    r = reports.get("ingest")
    if r and "hub" in r["results"] and "raw" in r["results"]:
        hub, raw = r["results"]["hub"], r["results"]["raw"]
        c = r["config"]
        eps, base = hub.get("events_per_s"), raw.get("events_per_s")
        ratio = _ratio(eps, base)
        met = (eps or 0) >= 20_000 and ratio >= 0.6
        row("ingest", f"sustained ingest, {c['devices']:,} device connections, {c['checkins']:.0%} check-ins",
            ">= 20,000/s and >= 0.6x raw", eps, base, "events/s", met,
            ("" if met else f"gap: {20_000 / eps:.1f}x short of 20,000/s" if eps else "")
            + (" (TIMED OUT)" if hub.get("timed_out") else ""))
        row("ingest", "  CPU per event in the measured process", "-", 1e6 / hub["events_per_cpu_s"]
            if hub.get("events_per_cpu_s") else None, 1e6 / raw["events_per_cpu_s"]
            if raw.get("events_per_cpu_s") else None, "us/event", None)
    else:
        missing("ingest", "sustained ingest", ">= 20,000/s and >= 0.6x raw")

    for bench in ("latency", "latency-low"):
        r = reports.get(bench)
        if not (r and "hub" in r["results"] and "raw" in r["results"]):
            missing(bench, "p99 publish -> commit", "<= 50 ms at 5,000/s")
            continue
        hub, raw = r["results"]["hub"], r["results"]["raw"]
        rate = r["config"]["rate"]
        achieved = hub.get("events_per_s")
        note = "" if (achieved or 0) >= 0.95 * rate else f"hub only sustained {achieved or 0:,.0f}/s of {rate:,.0f}/s"
        p99 = hub.get("ack_p99_ms")
        if bench == "latency":
            row(bench, f"p99 publish -> commit+ack at {rate:,.0f}/s", "<= 50 ms", p99, raw.get("ack_p99_ms"), "ms",
                p99 is not None and p99 <= 50 and not note,
                note or (f"gap: {p99 / 50:.1f}x" if p99 and p99 > 50 else ""))
        else:
            row(bench, f"p99 publish -> commit+ack at {rate:,.0f}/s (below saturation)", "-", p99,
                raw.get("ack_p99_ms"), "ms", None, note)
        g = hub.get("gc") or {}
        row(bench, "  p50 publish -> commit+ack", "-", hub.get("ack_p50_ms"), raw.get("ack_p50_ms"), "ms", None,
            f"hub GC: {g.get('full', '?')} full collections, longest {g.get('full_max_ms', '?')} ms" if g else "")
        row(bench, "  p99 publish -> committed_at (txn start)", "-", hub.get("db_p99_ms"), raw.get("db_p99_ms"),
            "ms", None)
        if bench == "latency":
            row(bench, "  rate sustained", f"{rate:,.0f}/s", achieved, raw.get("events_per_s"), "events/s", None)

    r = reports.get("fanout")
    if r and "hub" in r["results"] and "baseline" in r["results"]:
        hub, base = r["results"]["hub"], r["results"]["baseline"]
        c = r["config"]
        for label, x in hub["loads"].items():
            b = base["loads"].get(label, {})
            p99 = x.get("ws_p99_ms")
            rate_ok = (x.get("events_per_s") or 0) >= 0.95 * x["rate"]
            note = "" if rate_ok else f"hub only sustained {x.get('events_per_s') or 0:,.0f}/s of {x['rate']:,.0f}/s"
            if label == "target":
                row("fanout", f"p99 publish -> websocket, {x['rate']:,.0f}/s, {hub['clients_connected']:,} clients",
                    "<= 150 ms", p99, b.get("ws_p99_ms"), "ms", p99 is not None and p99 <= 150 and rate_ok,
                    note or (f"gap: {p99 / 150:.1f}x" if p99 and p99 > 150 else ""))
                row("fanout", "  p50 publish -> websocket", "-", x.get("ws_p50_ms"), b.get("ws_p50_ms"), "ms", None)
                row("fanout", "  websocket messages delivered", "-", x.get("ws_per_s"), b.get("ws_per_s"), "msg/s",
                    None, f"{x['ws_delivered']:,} of {x['expected_deliveries'] or 0:,} expected; "
                          f"{c['checkin_share']:.0%} check-ins x {c['viewers']} viewers")
            else:
                row("fanout", f"  p99 publish -> websocket at {x['rate']:,.0f}/s (below saturation)", "-", p99,
                    b.get("ws_p99_ms"), "ms", None, note)
        row("fanout", "  clients resynced / closed", "0", hub["resynced_clients"] + hub["closed"],
            base["resynced_clients"] + base["closed"], "clients",
            hub["resynced_clients"] + hub["closed"] == 0,
            f"{hub['resynced_clients']} resynced, {hub['closed']} closed")
        row("fanout", f"  time to connect {hub['clients_connected']:,} websockets", "-", hub.get("connect_s"),
            base.get("connect_s"), "s", None)
    else:
        missing("fanout", "p99 publish -> websocket", "<= 150 ms")

    r = reports.get("memory")
    if r and "summary" in r:
        s = r["summary"]
        bare = s["bare_bytes_per_actor"]["tracemalloc"]
        dev = s["device_bytes_per_actor"]["tracemalloc"]
        row("memory", f"memory per idle device actor ({s['devices']:,}, heartbeat timer armed)", "<= 20 KB",
            dev / 1024, bare / 1024, "KiB", dev <= 20 * 1024,
            f"RSS {s['device_bytes_per_actor']['rss'] / 1024:.1f} KiB")
        for size in ("small", "large"):
            v = s[f"session_{size}_bytes_per_actor"]["tracemalloc"]
            roster = s[f"session_{size}_roster"]
            row("memory", f"memory per session actor ({s['sessions'] // 2:,}, roster {roster:.0f})",
                "<= 20 KB", v / 1024, bare / 1024, "KiB", v <= 20 * 1024,
                f"RSS {s[f'session_{size}_bytes_per_actor']['rss'] / 1024:.1f} KiB")
        row("memory", "  per roster entry in a session actor", "-", s["session_bytes_per_roster_entry"], None, "B",
            None)
        row("memory", f"  start {s['devices']:,} device actors (ingress boot path)", "-", s["device_start_s"],
            s["bare_start_s"], "s", None, "baseline: as many bare actors")
    else:
        missing("memory", "memory per idle actor", "<= 20 KB")

    r = reports.get("restart")
    if r and "summary" in r:
        s, h = r["summary"], r["hub"]
        full = s["full_service_s"]
        base = s["baseline_s"]
        if full is not None:
            row("restart", f"restart to full service, {h['sessions']:,} live sessions", "<= 5 s", full, base, "s",
                full <= 5, "" if full <= 5 else f"gap: {full / 5:.1f}x")
        else:
            row("restart", f"restart to full service, {h['sessions']:,} live sessions", "<= 5 s", None, base, "s",
                False, f"NOT reached: {h['sessions_reached']:,}/{h['sessions']:,} session actors up")
            row("restart", "  all else (devices, check-in, /healthz)", "<= 5 s", s["service_without_all_sessions_s"],
                base, "s", (s["service_without_all_sessions_s"] or math.inf) <= 5,
                f"+{h['sessions_open_rest_s']:.2f}s to open the {h['sessions_opened_after']:,} missing sessions")
        tl = h["timeline"]
        if "ingress_done" in tl and "registry_loaded" in tl:
            row("restart", f"  of which: start {h['devices']:,} device actors", "-",
                tl["ingress_done"] - tl["registry_loaded"], None, "s", None)
    else:
        missing("restart", "restart to full service", "<= 5 s")

    r = reports.get("fairness")
    if r and "summary" in r:
        s, c = r["summary"], r["config"]
        p99 = s["flood_and_after"]["p99_ms"]
        row("fairness", f"p99 publish -> commit of {c['devices']} devices while one floods", "< 1,000 ms", p99,
            s["quiet"]["p99_ms"], "ms", p99 is not None and p99 < 1000,
            f"flooder {s['flooder_acked_per_s']:,.0f}/s acked; broker '{c['broker']}'; hub rate limit "
            f"{c['hub_rate_limit']}")
        row("fairness", "  messages lost (acknowledged, never committed)", "0", s["devices_lost"], None, "messages",
            s["devices_lost"] == 0 and s["flooder_unaccounted"] <= 0,
            f"{s['devices_acked']:,} device events acknowledged; flooder unaccounted {s['flooder_unaccounted']:,}")
    else:
        missing("fairness", "p99 publish -> commit while one device floods", "< 1,000 ms")

    r = reports.get("drain")
    if r and "summary" in r and r["summary"].get("ratio") is not None:
        s, c = r["summary"], r["config"]
        ratio = s["ratio"]
        target = 0.5 if c["checkins"] else 0.8
        row("drain", f"drain of {c['events']:,} queued events, {c['checkins']:.0%} check-ins", f">= {target}x raw",
            s["hub_events_per_s"], s["raw_events_per_s"], "events/s", ratio >= target)
        row("drain", "  CPU per event (hub / raw consumer)", "<= 1.5x raw" if not c["checkins"] else "-",
            s["hub_cpu_us_per_event"], s["raw_cpu_us_per_event"], "us/event",
            s["hub_cpu_us_per_event"] <= 1.5 * s["raw_cpu_us_per_event"] if not c["checkins"] else None)
        if s.get("postgres_cpu_us_per_checkin_all_charged") is not None:
            row("drain", "  PostgreSQL CPU per check-in (all of it charged to them)", "<= 80 us",
                s["postgres_cpu_us_per_checkin_all_charged"], None, "us", s["postgres_cpu_us_per_checkin_all_charged"]
                <= 80)
        row("drain", "  first commit after the hub is connected", "<= 1 s", s["first_commit_s"], None, "s",
            s["first_commit_s"] <= 1)
        row("drain", "  longest gap between commits", "<= 0.5 s", s["longest_commit_gap_s"], None, "s",
            s["longest_commit_gap_s"] <= 0.5)
        row("drain", "  hub peak RSS", "<= 200 MB", s["hub_rss_max_mb"], None, "MB", s["hub_rss_max_mb"] <= 200)
        row("drain", "  lost / duplicated event ids", "0", s["lost"] + s["duplicated"], None, "events",
            s["lost"] + s["duplicated"] == 0, f"lost {s['lost']}, duplicated {s['duplicated']}")
    else:
        missing("drain", "drain of a backlog", ">= 0.5x raw")

    r = reports.get("drain-workers")
    if r and "summary" in r and r["summary"].get("hub_events_per_s") is not None:
        s, c = r["summary"], r["config"]
        one = (reports.get("drain") or {}).get("summary", {})
        eps, base = s["hub_events_per_s"], one.get("hub_events_per_s")
        hub = r["results"]["hub"]
        row("drain-workers", f"drain of {c['events']:,} by {c['workers']} workers ({c['partitions']} partitions), "
            f"{c['checkins']:.0%} check-ins", "> one worker's", eps, base, "events/s",
            eps > base if base else None,
            ("" if base else "no one-worker figure in this run: run drain too; ")
            + f"{hub.get('partitions_moved', 0)} partition(s) moved during the drain")
        row("drain-workers", "  CPU per event, all workers (one worker)", "-", s["hub_cpu_us_per_event"],
            one.get("hub_cpu_us_per_event"), "us/event", None)
        row("drain-workers", "  first commit after the first worker is connected", "<= 1 s", s["first_commit_s"],
            None, "s", s["first_commit_s"] <= 1)
        row("drain-workers", "  longest time with no worker committing", "<= 0.5 s", s["longest_commit_gap_s"],
            None, "s", s["longest_commit_gap_s"] <= 0.5)
        row("drain-workers", "  largest worker's peak RSS", "<= 200 MB", s["hub_rss_max_mb"], None, "MB",
            s["hub_rss_max_mb"] <= 200)
        row("drain-workers", "  lost / duplicated event ids", "0", s["lost"] + s["duplicated"], None, "events",
            s["lost"] + s["duplicated"] == 0, f"lost {s['lost']}, duplicated {s['duplicated']}")
    else:
        missing("drain-workers", "drain of a backlog by 2 workers", "> one worker's")

    r = reports.get("anomaly")
    if r and "results" in r:
        for kind, per in r["results"].items():
            hub, forest = per["baseline"], per["isolation_forest"]
            if kind == "none":  # nothing injected: every unusual hour is a false alarm
                row("anomaly", "false telemetry_anomaly alarms, nothing injected", "-", hub["alarms_per_room_week"],
                    forest["alarms_per_room_week"], "/room/wk", None, f"{hub['false_alarm_hours']} false hours")
                continue
            row("anomaly", f"F1 of unusual hours, injected {kind} (precision {hub['hour_precision']:.2f},"
                f" recall {hub['hour_recall']:.2f})", "> isolation forest", hub["f1"], forest["f1"], "F1",
                hub["f1"] > forest["f1"], f"episodes found {hub['episode_recall']:.0%} of {hub['episodes']}")
    else:
        missing("anomaly", "F1 of the telemetry anomaly detector", "> isolation forest")

    r = reports.get("risk")
    if r and "model" in r["results"]:
        model, rule, c = r["results"]["model"], r["results"]["rule"], r["config"]
        row("risk", f"ROC AUC of the at-risk model on {c['tested_on']} ({c['rows_tested']:,} rows, synthetic)",
            "> the 75 % rule", model["auc"], rule["auc"], "AUC", model["auc"] > rule["auc"],
            r["results"]["ship_reason"][:60])
        row("risk", "  precision at the top 10 %", "> the 75 % rule", model["precision_at_10"],
            rule["precision_at_10"], "share", model["precision_at_10"] > rule["precision_at_10"])
        row("risk", "  Brier score (lower is better)", "-", model["brier"], rule["brier"], "", None)
    else:
        missing("risk", "ROC AUC of the at-risk model", "> the 75 % rule")
    return rows


def _spec(value: Any, unit: str) -> str:
    if unit in ("clients",) or (isinstance(value, (int, float)) and abs(value) >= 100):
        return ",.0f"
    return ".2f"


def print_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    print(f"CampusHub performance harness ({'quick' if meta['quick'] else 'full'}), run {meta['run_id']}, "
          f"{meta['started']}, {meta['cpus']} CPUs, load average {' '.join(map(str, meta['load_start']))} at start; "
          f"took {meta['elapsed_s'] / 60:.1f} min")
    if meta["quick"]:
        print("QUICK MODE: small sizes, a smoke check; the figures are not the targets' figures.")
    print()
    head = (f"{'figure':<64} {'target':<28} {'measured':>10} {'baseline':>10} {'unit':<9} {'ratio':>6} "
            f"{'met?':<4} {'load':>5}  note")
    print(head)
    print("-" * (len(head) + 20))
    for r in rows:
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        spec, bspec = _spec(r["measured"], r["unit"]), _spec(r["baseline"], r["unit"])
        print(f"{r['figure']:<64} {r['target']:<28} {fmt(r['measured'], spec):>10} {fmt(r['baseline'], bspec):>10} "
              f"{r['unit']:<9} {fmt(r['ratio'], '.2f') + ('x' if not math.isnan(r['ratio'] or math.nan) else ''):>6} "
              f"{met:<4} {fmt(r['load'], '.1f'):>5}  {r['note']}")
    print()
    print("ratio = measured / baseline. Baselines: ingest and latency = raw MQTT -> PostgreSQL consumer (COPY + ack, "
          "no domain logic) fed by the same publishers; fanout = the raw consumer + a plain quart-trio broadcast app "
          "with the same clients; memory = a bare actors.Actor; restart = the raw consumer's restart to its first "
          "committed message; fairness = the same devices' p99 before the flood, same run. "
          "load = 1-minute load average when the benchmark started (2 CPUs, shared machine).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke check in about a minute")
    ap.add_argument("--json", action="store_true", help="print JSON (figures and every benchmark's report)")
    ap.add_argument("--save", metavar="FILE", help="also write that JSON to FILE")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(p[0] for p in PLAN))
    ap.add_argument("--max-load", type=float, default=2.0, help="wait for the 1-min load average to drop below this")
    ap.add_argument("--max-wait", type=float, default=60.0, help="... but at most this many seconds per benchmark")
    ap.add_argument("--database-url", default=os.environ.get("CAMPUSHUB_TEST_DATABASE_URL", DEFAULT_SERVER_URL))
    args = ap.parse_args()
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - {p[0] for p in PLAN}
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    # Ctrl-C must reach us even if we were started with SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    run_id = new_run_id()[:6]
    os.environ[RUN_ID_ENV] = run_id
    meta = {"run_id": run_id, "quick": args.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "cpus": os.cpu_count(), "load_start": load_average()}
    reports: dict[str, Any] = {}
    errors: dict[str, str] = {}
    loads: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    try:
        for name, script, full, quick, limits in PLAN:
            if only and name not in only:
                continue
            loads[name] = wait_for_quiet(args.max_load, 0 if args.quick else args.max_wait, f"harness: {name}: ")
            t = time.perf_counter()
            report, error = run_benchmark(name, script, quick if args.quick else full,
                                          limits[1] if args.quick else limits[0])
            progress(f"harness: {name}: {'done' if report else 'FAILED (' + error + ')'} "
                     f"in {time.perf_counter() - t:.0f}s")
            if report is None:
                errors[name] = error
                drop_leftovers(args.database_url, run_id)
            else:
                reports[name] = report
    except Stop:
        progress("harness: interrupted")
        drop_leftovers(args.database_url, run_id)
        raise SystemExit(130) from None
    meta["elapsed_s"] = time.perf_counter() - t0
    rows = figures(reports, errors, loads, args.quick)
    everything = json.dumps(no_nan({"meta": meta, "figures": rows, "errors": errors, "reports": reports}), indent=2,
                            default=str)
    if args.save:
        with open(args.save, "w") as f:
            f.write(everything + "\n")
    if args.json:
        print(everything)
    else:
        print_table(rows, meta)


if __name__ == "__main__":
    main()
