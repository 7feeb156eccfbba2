"""Memory per actor of the running hub: 10,000 device actors and 2,000 session actors, against a bare actor.

Setup (one database ``campushub_bench_<random>_mem``, dropped at the end, also
on Ctrl-C): the demo campus with ``--sessions`` rooms, so as many live
sessions (``ensure_campus``), plus devices added with SQL up to ``--devices``
(``dev-x-NNNNN``, spread over the rooms), each with a ``device_health`` row
saying it is online, as on a live campus: every device actor then holds one
armed heartbeat-deadline timer, its idle state. Half the courses get extra
enrolments, so session actors come in two roster sizes (``--roster-small``,
``--roster-large``) and the cost of one roster entry falls out of the
difference.

Each measurement runs in a fresh child process that runs the real hub
(``hub.app.supervision.run_hub``, no web server) and moves it from 0 to N actors of one
kind at a time, through the hub's own code paths:

* devices: the hub starts with the device table empty (the rows are put
  back right after it is up), then the bench runs what ``Ingress.started()``
  runs at boot: ``_reload_registry()``, one ``load_device_snapshots()`` for
  all, then ``_device_ref(record, snapshot)`` for every device (a
  ``DeviceActor`` child of the ``devices`` supervisor, built from its
  snapshot). "registry" is the ingress's
  ``DeviceRecord`` per device, measured separately.
* sessions: the session actors the scheduler opened at boot are stopped, then
  one ``ResolveSession`` ask per room to the hub's scheduler starts each
  room's ``SessionActor`` (its ``started()`` loads the roster); small
  rosters first, then large.
* baseline: ``--devices`` bare ``actors.Actor`` children (a ``handle`` that
  does nothing, no state, no ``started()``) of a fresh supervisor under the
  hub's root, same runtime, same mailbox bound as a device actor. Plus a bare
  actor holding one armed ``send_after`` timer, to show what the heartbeat
  timer costs.

Figures: bytes per actor = (memory after - memory before) / N, with memory =
``tracemalloc`` traced bytes (started after the hub is up, so it counts
exactly the Python allocations the new actors keep; after ``gc.collect()``)
in one child, and ``VmRSS`` from /proc/self/status in another (tracemalloc
itself costs RSS, so the two never share a process). RSS moves in pymalloc
arenas and malloc pages, so it is coarse for small N. Start times come from
the RSS child (tracemalloc slows allocation).

    .venv/bin/python bench/actor_memory.py [--devices 10000] [--sessions 2000] [--json]
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from functools import partial
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402 - bench/ is not a package
    DEFAULT_MQTT_URL,
    DEFAULT_SERVER_URL,
    adopt_hub_loop,
    create_databases,
    database_url_for,
    discard_broker_sessions,
    drop_databases,
    fmt,
    hub_settings,
    interruptible,
    is_interrupt,
    load_average,
    migrate_and_seed,
    new_run_id,
    no_nan,
    progress,
    rss_bytes,
    run_db,
)

TARGET_BYTES = 20 * 1024


# =========================================================================== setup (parent)


async def extra_seed(db, campus, *, devices: int, roster_large: int) -> dict[str, Any]:
    """Extra devices up to ``devices``, online health rows for all, and larger rosters for half the courses.

    Then moves devices and their health rows aside (``*_stash`` tables): each
    child starts its hub with none and puts them back when it is measuring.
    """
    rooms = [s.room_id for s in campus.sessions]
    large = campus.sessions[1::2]  # every second session (room order) gets a lecture-sized roster
    have = len(campus.devices)
    rows = [(f"dev-x-{i:05d}", rooms[i % len(rooms)], "sensor", "bench-sensor", "hmac-sha256", os.urandom(32))
            for i in range(max(0, devices - have))]

    async def work(conn) -> None:
        if rows:
            await conn.copy_records_to_table("devices", records=rows,
                                             columns=["id", "room_id", "kind", "model", "alg", "key"])
        now = datetime.now(timezone.utc)
        await conn.execute(
            "INSERT INTO device_health (device_id, online, last_seen, last_change, reason, firmware)"
            " SELECT id, true, $1, $1, '', 'bench-1.0' FROM devices", now)
        students = [s.student_id for s in campus.students]
        course_ids, student_ids = [], []
        for k, session in enumerate(large):
            for j in range(roster_large):
                course_ids.append(session.course_id)
                student_ids.append(students[(k * 7 + j) % len(students)])
        await conn.execute(
            "INSERT INTO enrolments (course_id, student_id) SELECT * FROM unnest($1::text[], $2::text[])"
            " ON CONFLICT DO NOTHING", course_ids, student_ids)
        await conn.execute("CREATE TABLE devices_stash AS SELECT * FROM devices")
        await conn.execute("CREATE TABLE device_health_stash AS SELECT * FROM device_health")
        await conn.execute("DELETE FROM device_health")
        # The demo seed's command history and tickets name devices too; the benchmark needs neither.
        await conn.execute("DELETE FROM device_commands")
        await conn.execute("UPDATE tickets SET device_id = NULL WHERE device_id IS NOT NULL")
        await conn.execute("DELETE FROM devices")

    await db.run(work, transaction=True)
    return {"devices": have + len(rows), "large_sessions": [s.session_id for s in large]}


# =========================================================================== the measuring child


def _bare_classes():
    from actors import Actor

    class BareActor(Actor):
        """Holds nothing."""

        async def handle(self, message: Any) -> None:
            return None

    class TimerActor(Actor):
        """Holds one armed timer, as an online device actor does."""

        async def started(self) -> None:
            self.send_after(3600, "tick")

        async def handle(self, message: Any) -> None:
            return None

    return BareActor, TimerActor


#: Allocations in these files are the database driver's buffers (a pool of <= 8 connections), not actor state.
DRIVER_FILES = ("asyncio/", "asyncpg/", "trio_asyncio/")


class Meter:
    """Memory growth over one phase: tracemalloc (traced only during the phase) or RSS.

    tracemalloc mode traces only from :meth:`begin` to :meth:`end`, so it
    counts exactly the blocks allocated in the phase and still alive at its
    end (after ``gc.collect()``); it ignores frees of older blocks, which can
    only overstate the growth by the old size of a table that was resized
    (e.g. a supervisor's child dict: tens of bytes per child). The rest of
    the run is not slowed by tracing. Blocks allocated by the database
    driver (read buffers of the pooled connections, which keep the largest
    result they have read) are reported apart: they are not per-actor state.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._rss0 = 0

    def begin(self) -> None:
        gc.collect()
        gc.collect()
        if self.mode == "tracemalloc":
            import tracemalloc

            tracemalloc.stop()
            tracemalloc.start(1)
        else:
            self._rss0 = rss_bytes()

    def end(self) -> dict[str, Any]:
        """``{"bytes": growth, "driver_bytes": part of it in DRIVER_FILES, "top": [(file:line, bytes)]}``."""
        gc.collect()
        gc.collect()
        if self.mode != "tracemalloc":
            return {"bytes": rss_bytes() - self._rss0, "driver_bytes": math.nan, "top": []}
        import tracemalloc

        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        total = driver = 0
        for stat in snapshot.statistics("filename"):
            name = stat.traceback[0].filename
            if name == tracemalloc.__file__:
                continue
            total += stat.size
            if any(part in name for part in DRIVER_FILES):
                driver += stat.size
        top = []
        for stat in snapshot.statistics("lineno")[:8]:
            frame = stat.traceback[0]
            where = frame.filename
            if "site-packages/" in where:
                where = where.split("site-packages/")[-1]
            elif "/lib/python3" in where:
                where = "(stdlib) " + where.split("/lib/python3", 1)[1].split("/", 1)[-1]
            else:
                where = os.path.relpath(where, root)
            top.append((f"{where}:{frame.lineno}", stat.size))
        return {"bytes": total - driver, "driver_bytes": driver, "top": top}


async def child_run(args: argparse.Namespace) -> dict[str, Any]:
    import trio

    from actors import ChildSpec, Supervisor
    from hub.app.supervision import run_hub
    from hub.db.device_health import DeviceSnapshot, load_device_snapshots
    from hub.pipeline.device_actor import DEVICE_MAILBOX
    from hub.pipeline.scheduler import ResolveSession

    meter = Meter(args.child)
    out: dict[str, Any] = {"mode": args.child}
    large = set(json.loads(args.large_sessions))
    settings = hub_settings(args.url, args.mqtt_url, args.prefix, hub_client_id=f"{args.prefix}-hub-{args.child}")
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, settings, port=None))
        adopt_hub_loop(hub)
        root = hub.root
        ingress = root._children["ingress"].instance  # instrumentation: the hub's own ingress
        sessions_sup = hub.sessions
        # The scheduler opens sessions at boot (told to itself, handled after the hub
        # reports started): let it finish, then stop them, so we count from zero.
        scheduler = root.lookup("scheduler")
        stable_since, last = trio.current_time(), -1
        while trio.current_time() - stable_since < 1.0:
            count = sessions_sup.actor_count()
            if count != last or scheduler.depth:
                stable_since, last = trio.current_time(), count
            await trio.sleep(0.05)
        out["sessions_opened_at_boot"] = last
        for sid in sessions_sup.child_ids():
            await sessions_sup.stop_child(sid)
        await hub.db.execute("INSERT INTO devices SELECT * FROM devices_stash")
        await hub.db.execute("INSERT INTO device_health SELECT * FROM device_health_stash")
        await trio.sleep(0.5)
        out["hub_rss_before_mb"] = rss_bytes() / 2**20

        # ---- device actors, through the ingress's boot path
        meter.begin()
        await ingress._reload_registry()
        n_dev = len(ingress._registry)
        registry = meter.end()
        meter.begin()
        t = time.perf_counter()
        # As Ingress.started() does: one query set for every device's stored state.
        snapshots = await load_device_snapshots(hub.db)
        for record in ingress._registry.values():
            await ingress._device_actors.ensure(record, snapshots.get(record.device_id, DeviceSnapshot()))
        out["device_start_s"] = time.perf_counter() - t
        del snapshots
        devices = meter.end()
        out["devices"] = hub.devices.actor_count()
        out["device_timers_armed"] = sum(
            1 for c in hub.devices._children.values()
            if c.instance is not None and getattr(c.instance, "_timer", None) is not None)
        out["registry_bytes_per_device"] = registry["bytes"] / n_dev
        out["device_bytes_per_actor"] = devices["bytes"] / n_dev
        out["device_driver_bytes_per_actor"] = devices["driver_bytes"] / n_dev
        out["device_top"] = devices["top"]

        # ---- session actors, through the scheduler, small rosters then large
        now = datetime.now(timezone.utc)
        rooms = {}
        for sid, record in scheduler_known(root).items():
            # The scheduler also knows today's later (timetable) sessions; measure the live ones.
            if record.opens_at <= now <= record.ends_at and record.status != "cancelled":
                rooms[sid] = record.room_id
        small_ids = [sid for sid in rooms if sid not in large]
        large_ids = [sid for sid in rooms if sid in large]
        for label, ids in (("small", small_ids), ("large", large_ids)):
            meter.begin()
            t = time.perf_counter()
            for sid in ids:
                route = await scheduler.ask(ResolveSession(rooms[sid], now), timeout=30)
                if route is None or route.session_id != sid:
                    raise RuntimeError(f"room {rooms[sid]}: scheduler resolved {route!r}, not {sid}")
            out[f"session_{label}_start_s"] = time.perf_counter() - t
            grown = meter.end()
            states = [sessions_sup._children[sid].instance._state for sid in ids]
            out[f"session_{label}_n"] = len(ids)
            out[f"session_{label}_roster"] = sum(len(s.roster) for s in states) / max(1, len(states))
            out[f"session_{label}_bytes_per_actor"] = grown["bytes"] / max(1, len(ids))
            out[f"session_{label}_driver_bytes_per_actor"] = grown["driver_bytes"] / max(1, len(ids))
            out[f"session_{label}_top"] = grown["top"]
        out["sessions"] = sessions_sup.actor_count()

        # ---- baseline: bare actors (and bare actors with one timer) under a fresh supervisor
        bare_cls, timer_cls = _bare_classes()
        bare_sup = await root.start_child(ChildSpec("bench-bare", lambda: Supervisor("bench-bare", max_restarts=0)))
        for label, cls, n in (("bare", bare_cls, args.devices), ("timer", timer_cls, max(1, args.devices // 10))):
            meter.begin()
            t = time.perf_counter()
            for i in range(n):
                await bare_sup.start_child(ChildSpec(f"{label}-{i:05d}", cls, mailbox_size=DEVICE_MAILBOX))
            out[f"{label}_start_s"] = time.perf_counter() - t
            grown = meter.end()
            out[f"{label}_n"] = n
            out[f"{label}_bytes_per_actor"] = grown["bytes"] / n
            out[f"{label}_top"] = grown["top"]
        out["hub_rss_after_mb"] = rss_bytes() / 2**20
        out["actors_total"] = root.actor_count()
        nursery.cancel_scope.cancel()
    return out


def scheduler_known(root) -> dict[str, Any]:
    """The scheduler's timetable (instrumentation: read from the hub's scheduler instance)."""
    return dict(root._children["scheduler"].instance._known)


def child_main(args: argparse.Namespace) -> None:
    import trio

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    async def empty_device_table(db) -> None:  # an earlier child put them back
        await db.execute("DELETE FROM device_health")
        await db.execute("DELETE FROM devices")

    run_db(args.url, empty_device_table)
    result = trio.run(interruptible, child_run, args)
    print(json.dumps(no_nan(result)), flush=True)


# =========================================================================== parent: orchestration and output


def run_child(args: argparse.Namespace, mode: str, url: str, prefix: str, large: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--url", url, "--prefix", prefix,
           "--mqtt-url", args.mqtt_url, "--large-sessions", json.dumps(large), "--devices", str(args.devices)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=args.timeout)
    except BaseException:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    if proc.returncode != 0 or not out.strip():
        raise SystemExit(f"actor_memory child ({mode}) failed with exit code {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def summarize(tm: dict[str, Any], rss: dict[str, Any]) -> dict[str, Any]:
    def both(key: str) -> dict[str, float]:
        return {"tracemalloc": tm.get(key, math.nan), "rss": rss.get(key, math.nan)}

    small_r, large_r = tm["session_small_roster"], tm["session_large_roster"]
    per_entry = ((tm["session_large_bytes_per_actor"] - tm["session_small_bytes_per_actor"]) / (large_r - small_r)
                 if large_r != small_r else math.nan)
    n_sessions = tm["session_small_n"] + tm["session_large_n"]
    session_mean = ((tm["session_small_bytes_per_actor"] * tm["session_small_n"]
                     + tm["session_large_bytes_per_actor"] * tm["session_large_n"]) / max(1, n_sessions))
    bare = tm["bare_bytes_per_actor"]
    return {
        "devices": tm["devices"], "sessions": tm["sessions"], "device_timers_armed": tm["device_timers_armed"],
        "device_bytes_per_actor": both("device_bytes_per_actor"),
        "registry_bytes_per_device": both("registry_bytes_per_device"),
        "session_small_bytes_per_actor": both("session_small_bytes_per_actor"),
        "session_large_bytes_per_actor": both("session_large_bytes_per_actor"),
        "session_bytes_per_actor": session_mean,
        "session_small_roster": small_r, "session_large_roster": large_r,
        "session_bytes_per_roster_entry": per_entry,
        "bare_bytes_per_actor": both("bare_bytes_per_actor"),
        "timer_bytes_per_actor": both("timer_bytes_per_actor"),
        "device_vs_bare": tm["device_bytes_per_actor"] / bare if bare else math.nan,
        "session_vs_bare": session_mean / bare if bare else math.nan,
        "device_start_s": rss["device_start_s"], "devices_started_per_s": rss["devices"] / rss["device_start_s"],
        "session_start_s": rss["session_small_start_s"] + rss["session_large_start_s"],
        "bare_start_s": rss["bare_start_s"], "bare_started_per_s": rss["bare_n"] / rss["bare_start_s"],
        "driver_bytes_per_actor": {k: tm.get(f"{k}_driver_bytes_per_actor", math.nan)
                                   for k in ("device", "session_small", "session_large")},
        "top": {k: tm[k] for k in ("device_top", "session_small_top", "session_large_top", "bare_top", "timer_top")},
        "hub_rss_mb": {"before": rss["hub_rss_before_mb"], "after": rss["hub_rss_after_mb"]},
        "target_bytes": TARGET_BYTES,
    }


def print_table(report: dict[str, Any]) -> None:
    s, cfg = report["summary"], report["config"]
    print(f"actor memory: {s['devices']:,} device actors (online: {s['device_timers_armed']:,} with an armed "
          f"heartbeat timer), {s['sessions']:,} session actors, baseline {cfg['devices']:,} bare actors; "
          f"load average {' '.join(map(str, report['load_average']))} at start")
    print()
    head = f"{'actor':<34} {'tracemalloc B':>13} {'RSS B':>9} {'x bare':>7} {'<= 20 KB?':>9}"
    print(head)
    print("-" * len(head))
    bare = s["bare_bytes_per_actor"]["tracemalloc"]

    def row(label: str, v: dict[str, float] | float) -> None:
        tm = v["tracemalloc"] if isinstance(v, dict) else v
        rss = v["rss"] if isinstance(v, dict) else math.nan
        ok = "yes" if tm <= TARGET_BYTES else "NO"
        print(f"{label:<34} {fmt(tm, ',.0f'):>13} {fmt(rss, ',.0f'):>9} {fmt(tm / bare, '.1f') + 'x':>7} {ok:>9}")

    row("device actor (idle, timer armed)", s["device_bytes_per_actor"])
    row("  + registry entry (ingress)", s["registry_bytes_per_device"])
    row(f"session actor, roster {s['session_small_roster']:.0f}", s["session_small_bytes_per_actor"])
    row(f"session actor, roster {s['session_large_roster']:.0f}", s["session_large_bytes_per_actor"])
    row("baseline: bare actors.Actor", s["bare_bytes_per_actor"])
    row("bare actor + one send_after timer", s["timer_bytes_per_actor"])
    print()
    print(f"per roster entry (student id + 32-byte token secret in the session state): "
          f"{fmt(s['session_bytes_per_roster_entry'], ',.0f')} B")
    print(f"start: {s['devices']:,} device actors in {s['device_start_s']:.2f}s "
          f"({s['devices_started_per_s']:,.0f}/s, one device_health query each); {s['sessions']:,} session actors "
          f"in {s['session_start_s']:.2f}s (scheduler asks, one snapshot load each); bare actors "
          f"{s['bare_started_per_s']:,.0f}/s")
    print(f"hub RSS {s['hub_rss_mb']['before']:.0f} MB with no device/session actors, "
          f"{s['hub_rss_mb']['after']:.0f} MB with all of them and the baseline actors")
    d = s["driver_bytes_per_actor"]
    print(f"not counted above: database driver buffers that grew during the phase (pooled connections keep the "
          f"largest result read): {fmt(d['device'], ',.0f')} B per device actor, {fmt(d['session_small'], ',.0f')} / "
          f"{fmt(d['session_large'], ',.0f')} B per session actor; RSS includes them")
    print("largest allocations per kind (tracemalloc, file:line, bytes for all actors of the kind):")
    for kind, top in s["top"].items():
        print(f"  {kind}: " + ", ".join(f"{where} {size / 1024:,.0f} KiB" for where, size in top[:5]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--sessions", type=int, default=2_000, help="rooms = live sessions (and seeded devices)")
    ap.add_argument("--students", type=int, default=4_000, help="small rosters are about students * 4 / sessions")
    ap.add_argument("--roster-large", type=int, default=32, help="extra enrolments for half the sessions")
    ap.add_argument("--timeout", type=float, default=300, help="per child process, seconds")
    ap.add_argument("--database-url", default=os.environ.get("CAMPUSHUB_TEST_DATABASE_URL", DEFAULT_SERVER_URL))
    ap.add_argument("--mqtt-url", default=os.environ.get("CAMPUSHUB_TEST_MQTT_URL", DEFAULT_MQTT_URL))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", choices=["rss", "tracemalloc"], help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    ap.add_argument("--large-sessions", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args)
        return
    if args.sessions > args.devices:
        ap.error("--devices must be at least --sessions (one device per room is seeded)")

    import trio

    run_id = new_run_id()
    prefix = f"bench-{run_id}"
    name = f"campushub_bench_{run_id}_mem"
    created: list[str] = []
    report: dict[str, Any] = {}
    try:
        create_databases(args.database_url, [name], created)
        url = database_url_for(args.database_url, name)
        progress(f"actor_memory: run {run_id}, database {name}: seeding {args.sessions:,} sessions, "
                 f"{args.devices:,} devices...")
        info: dict[str, Any] = {}

        async def extra(db, campus) -> None:
            info.update(await extra_seed(db, campus, devices=args.devices, roster_large=args.roster_large))

        trio.run(interruptible, partial(migrate_and_seed, url, rooms=args.sessions, students=args.students,
                                        extra=extra))
        report["load_average"] = load_average()
        results = {}
        for mode in ("rss", "tracemalloc"):
            progress(f"actor_memory: measuring ({mode}) in a child process...")
            t = time.perf_counter()
            results[mode] = run_child(args, mode, url, prefix, info["large_sessions"])
            progress(f"actor_memory: {mode} done in {time.perf_counter() - t:.1f}s")
        report["config"] = {"devices": args.devices, "sessions": args.sessions, "students": args.students,
                            "roster_large_extra": args.roster_large}
        report["children"] = results
        report["summary"] = summarize(results["tracemalloc"], results["rss"])
    except BaseException as exc:
        if is_interrupt(exc):
            progress("interrupted")
            raise SystemExit(130) from None
        raise
    finally:
        discard_broker_sessions(*_host_port(args.mqtt_url), [f"{prefix}-hub-rss", f"{prefix}-hub-tracemalloc"])
        drop_databases(args.database_url, created)
    if args.json:
        print(json.dumps(no_nan(report), indent=2, default=str))
    else:
        print_table(report)


def _host_port(mqtt_url: str) -> tuple[str, int]:
    from hub.core.config import MqttUrl

    u = MqttUrl.parse(mqtt_url)
    return u.host, u.port


if __name__ == "__main__":
    main()
