"""Websocket fan-out: publish -> browser latency with 2,000 live-roster clients, against a plain broadcast app.

What flows (the same in both systems):

* load: the publisher fleet of bench/_common.py, one MQTT connection per
  device (``--sessions`` devices, one per room, spread over ``--publishers``
  processes), ``--rate`` events/s in total for ``--duration`` seconds; a
  fraction ``--checkin-share`` of them are QR check-ins of enrolled students
  into the sessions being watched, the rest sensor readings from every
  device. Every event's ``ts`` is the publisher's ``time.time()`` (ms).
  The default, 5 % of 5,000/s = 250 check-ins/s, is a campus-wide class
  start (2,000 classes of 40 checking in within 5 minutes is ~270/s).
* clients: ``--clients`` websocket clients in ``--client-processes``
  processes (asyncio + ``websockets``), each on ``/ws/sessions/<id>`` of one
  of the watched sessions, ``--viewers`` clients per session (default 4: a
  lecturer, a TA, a wall display, an office; 2,000 clients = 500 sessions, of
  the first ``--clients / --viewers / 5`` faculty members; each faculty
  member logs in once and all their clients reuse the token). Every
  check-in is then pushed to 4 browsers: 1,000 websocket messages/s by
  default. Why session feeds: they are what the hub serves to many browsers
  at once, and each check-in reaches only the viewers of its session, as on
  a real campus. ``/ws/devices`` would deliver every heartbeat to every ops
  client (2,000 x the event rate), which is not a realistic load; it is not
  used. ``--viewers 10 --checkin-share 0.1`` is a 5x heavier variant.
* latency publish -> websocket client: the client's ``time.time()`` when a
  message arrives minus its ``checked_in_at`` (the event's ``ts``, ms
  resolution): the same machine clock, exact over every delivered message.

Systems:

* baseline: a minimal quart-trio app (served by the same hypercorn trio
  worker set-up as the hub, ``web.app.serve``) in this process: the raw
  consumer of bench/pipeline.py (MQTT -> COPY into a scratch table -> PUBACK)
  then, for each committed QR scan, one JSON message to every websocket of
  the session of the scanning device's room (a memory channel per client,
  dropped when full). No actors, no validation beyond decoding, no
  authentication.
* hub: ``hub.app.supervision.run_hub`` with its web server: ingress, device, scheduler
  and session actors, the writer's transaction, the live bus, one
  ``ConnectionActor`` per websocket.

Figures per system: clients connected (and the time to connect them all),
events committed/s, publish -> commit (ack) percentiles, websocket messages
delivered (and per second over the traffic), publish -> websocket p50/p95/
p99/max, messages expected vs delivered, resync snapshots and closed
connections.

    .venv/bin/python bench/fanout.py [--clients 2000] [--viewers 4] [--rate 5000] [--checkin-share 0.05]
        [--duration 20] [--json] [--profile hub.pstats]
"""
from __future__ import annotations

import argparse
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
    RAW_TABLE_DDL,
    Driver,
    FleetConfig,
    GcPauses,
    Phase,
    adopt_hub_loop,
    create_databases,
    database_url_for,
    device_payloads,
    discard_broker_sessions,
    drop_databases,
    fmt,
    hub_settings,
    interruptible,
    is_interrupt,
    migrate_and_seed,
    new_run_id,
    no_nan,
    percentiles_ms,
    progress,
    raw_consume,
)

TARGET_P99_MS = 150.0
ROOMS_PER_FACULTY = 5  # hub.db.seed: faculty member f teaches courses f, f + F, f + 2F, ... (F faculty)


# =========================================================================== client worker process


def client_worker_main() -> None:
    """stdin: one JSON line of setup, later "stop". stdout: "ready" + JSON, then one JSON line of results."""
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    setup = json.loads(sys.stdin.readline())
    latencies: list[float] = []
    received_at: list[float] = []
    counts = {"messages": 0, "snapshots": 0, "resyncs": 0, "closed": 0, "failed": 0, "other": 0}
    resynced: set[int] = set()
    close_codes: dict[str, int] = {}
    stopping = False

    async def one(k: int, path: str, token: str, sem: asyncio.Semaphore, ready: asyncio.Event,
                  connected: list[int]) -> None:
        nonlocal stopping
        try:
            async with sem:
                ws = await connect(setup["base"] + path, additional_headers={"Authorization": f"Bearer {token}"},
                                   ping_interval=None, max_size=2**24, open_timeout=120, close_timeout=1)
                first = json.loads(await asyncio.wait_for(ws.recv(), 120))
                counts["snapshots"] += first.get("type") == "snapshot"
        except Exception as exc:  # noqa: BLE001 - counted, reported
            counts["failed"] += 1
            close_codes[f"connect: {type(exc).__name__}"] = close_codes.get(f"connect: {type(exc).__name__}", 0) + 1
            connected.append(0)
            if len(connected) == len(setup["clients"]):
                ready.set()
            return
        connected.append(1)
        if len(connected) == len(setup["clients"]):
            ready.set()
        try:
            async for text in ws:
                now = time.time()
                counts["messages"] += 1
                message = json.loads(text)
                kind = message.get("type")
                if kind == "attendance":
                    at = datetime.fromisoformat(message["checked_in_at"]).timestamp()
                    latencies.append(now - at)
                    received_at.append(now)
                elif kind == "snapshot":
                    counts["resyncs"] += 1
                    resynced.add(k)
                else:
                    counts["other"] += 1
        except ConnectionClosed as exc:
            if not stopping:
                counts["closed"] += 1
                code = str(exc.rcvd.code if exc.rcvd else "no close frame")
                close_codes[code] = close_codes.get(code, 0) + 1
        await ws.close()

    async def main() -> None:
        nonlocal stopping
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(setup.get("concurrency", 25))
        ready = asyncio.Event()
        connected: list[int] = []
        t = time.perf_counter()
        tasks = [asyncio.create_task(one(k, path, token, sem, ready, connected))
                 for k, (path, token) in enumerate(setup["clients"])]
        await ready.wait()
        print(json.dumps({"connected": sum(connected), "failed": counts["failed"],
                          "connect_s": time.perf_counter() - t}), flush=True)
        cpu0 = time.process_time()
        await loop.run_in_executor(None, sys.stdin.readline)  # "stop"
        stopping = True
        cpu = time.process_time() - cpu0
        print(json.dumps({
            "latencies": [round(x, 5) for x in latencies], "received_at": [round(x, 4) for x in received_at],
            "counts": counts, "resynced_clients": len(resynced), "close_codes": close_codes, "cpu_s": cpu,
        }), flush=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


class Clients:
    """The client worker processes, seen from the parent."""

    def __init__(self, base: str, clients: list[tuple[str, str]], processes: int, concurrency: int) -> None:
        self.procs: list[subprocess.Popen] = []
        p = max(1, min(processes, len(clients)))
        for w in range(p):
            proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--client-worker"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
            self.procs.append(proc)
            proc.stdin.write(json.dumps({"base": base, "clients": clients[w::p], "concurrency": concurrency}) + "\n")
            proc.stdin.flush()

    async def ready(self, timeout: float) -> dict[str, Any]:
        import trio

        out = {"connected": 0, "failed": 0, "connect_s": 0.0}
        with trio.fail_after(timeout):
            for proc in self.procs:
                line = await trio.to_thread.run_sync(proc.stdout.readline)
                if not line.strip():
                    raise SystemExit("a websocket client worker died while connecting")
                r = json.loads(line)
                out["connected"] += r["connected"]
                out["failed"] += r["failed"]
                out["connect_s"] = max(out["connect_s"], r["connect_s"])
        return out

    async def stop(self) -> dict[str, Any]:
        import trio

        for proc in self.procs:
            proc.stdin.write("stop\n")
            proc.stdin.flush()
        merged: dict[str, Any] = {"latencies": [], "received_at": [], "counts": {}, "resynced_clients": 0,
                                  "close_codes": {}, "cpu_s": 0.0}
        with trio.fail_after(60):
            for proc in self.procs:
                line = await trio.to_thread.run_sync(proc.stdout.readline)
                if not line.strip():
                    continue
                r = json.loads(line)
                merged["latencies"] += r["latencies"]
                merged["received_at"] += r["received_at"]
                for k, v in r["counts"].items():
                    merged["counts"][k] = merged["counts"].get(k, 0) + v
                for k, v in r["close_codes"].items():
                    merged["close_codes"][k] = merged["close_codes"].get(k, 0) + v
                merged["resynced_clients"] += r["resynced_clients"]
                merged["cpu_s"] += r["cpu_s"]
        return merged

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.stdin.close()
            except OSError:
                pass
            proc.wait()


# =========================================================================== one system's run


def split_checkins(devices: list[dict[str, Any]], k: int) -> list[list[dict[str, Any]]]:
    """The device list once per load, each student's check-in in exactly one of them (no duplicates)."""
    return [[{**d, "checkins": d["checkins"][i::k]} for d in devices] for i in range(k)]


async def drive(args: argparse.Namespace, system: str, base: str, clients: list[tuple[str, str]], prefix: str,
                devices: list[dict[str, Any]], install_ack, counters: dict[str, int] | None = None) -> dict[str, Any]:
    """Connect the clients, run each load of ``args.loads``, collect.

    ``install_ack(driver)`` hooks the system's ack to the load's Driver.
    Returns the connect figures, the clients' merged results and, per load,
    its Phase and time window (``time.time()``; a load's window runs until
    the next one starts, so late deliveries count for their own load).
    """
    import trio

    out: dict[str, Any] = {"loads": []}
    progress(f"{system}: connecting {len(clients):,} websocket clients from {args.client_processes} processes...")
    ws = Clients(base, clients, args.client_processes, args.connect_concurrency)
    try:
        ready = await ws.ready(timeout=args.connect_timeout)
        out.update(ready)
        if args.gc_freeze:  # an experiment, not the systems' behaviour: see --help
            import gc

            gc.collect()
            gc.freeze()
            out["gc_frozen"] = gc.get_freeze_count()
        progress(f"{system}: {ready['connected']:,} connected ({ready['failed']} failed) in {ready['connect_s']:.1f}s")
        for (label, rate, duration), load_devices in zip(args.loads, split_checkins(devices, len(args.loads))):
            phase = Phase(system, int(rate * duration))
            progress(f"{system}: {label} load: publishing {phase.n:,} events at {rate:,.0f}/s")
            config = FleetConfig(host=args.mqtt.host, port=args.mqtt.port, messages=phase.n, rate=rate,
                                 window=args.window, processes=args.publishers, per_device=True,
                                 checkin_fraction=args.checkin_share, timeout=duration * 3 + 30)
            driver = Driver(config, prefix, load_devices, phase)
            install_ack(driver)
            before = dict(counters or {})
            t0 = time.time()
            with GcPauses() as gc_pauses:
                await driver.run()
                await trio.sleep(args.drain)  # the last commits' messages still on their way to the clients
            out["loads"].append({"label": label, "rate": rate, "duration": duration, "phase": phase, "t0": t0,
                                 "t1": time.time(), "gc": gc_pauses.summary(),
                                 "counters": {k: v - before.get(k, 0) for k, v in (counters or {}).items()}})
        out["clients"] = await ws.stop()
    finally:
        ws.kill()
    return out


async def run_baseline(args: argparse.Namespace, url: str, prefix: str, campus, watched: list, clients,
                       devices) -> dict[str, Any]:
    import trio
    from quart import websocket
    from quart_trio import QuartTrio

    from hub.db import asyncio_loop, open_database
    from hub.mqtt import TrioMqttClient
    from schemas import QrScanEvent, Topics, decode_frame, parse_checkin_token
    from web.app import serve

    topics = Topics(prefix)
    session_of_device = {}
    room_session = {s.room_id: s.session_id for s in watched}
    for d in campus.devices:
        if d.room_id in room_session:
            session_of_device[d.device_id] = room_session[d.room_id]
    subscribers: dict[str, set] = {s.session_id: set() for s in watched}
    stats = {"broadcast": 0, "dropped": 0}

    app = QuartTrio("fanout-baseline")

    @app.websocket("/ws/sessions/<session_id>")
    async def ws(session_id: str) -> None:
        await websocket.accept()
        send, receive = trio.open_memory_channel(64)
        subscribers.setdefault(session_id, set()).add(send)
        try:
            await websocket.send(json.dumps({"type": "snapshot", "feed": "session", "reason": "initial"}))
            async for text in receive:
                await websocket.send(text)
        finally:
            subscribers[session_id].discard(send)

    def broadcast(batch) -> None:
        for m in batch:
            try:
                _, event = decode_frame(m.payload)
            except Exception:  # noqa: BLE001 - not ours to judge
                continue
            if not isinstance(event, QrScanEvent):
                continue
            sid = session_of_device.get(event.device)
            if sid is None:
                continue
            token = parse_checkin_token(event.body.text)
            text = json.dumps({
                "type": "attendance", "session_id": sid, "student_id": token.student_id if token else None,
                "status": "present", "source": "qr",
                "checked_in_at": datetime.fromtimestamp(event.ts / 1000, timezone.utc).isoformat(),
            })
            for channel in subscribers.get(sid, ()):
                try:
                    channel.send_nowait(text)
                    stats["broadcast"] += 1
                except trio.WouldBlock:
                    stats["dropped"] += 1

    out: dict[str, Any] = {}
    async with asyncio_loop(), open_database(url) as db:
        await db.execute(RAW_TABLE_DDL)
        client = TrioMqttClient(host=args.mqtt.host, port=args.mqtt.port, client_id=f"{prefix}-raw",
                                session_expiry_s=300)

        async def on_connect(c: TrioMqttClient) -> None:
            await c.subscribe(topics.uplink_filter, qos=1)

        async with trio.open_nursery() as nursery:
            port = await nursery.start(lambda task_status: serve(app, host="127.0.0.1", port=0,
                                                                  task_status=task_status))
            await nursery.start(partial(client.run, on_connect=on_connect))
            acks: dict[str, Any] = {}
            ack_installed = trio.Event()

            def install(driver: Driver) -> None:
                acks["ack"] = driver.ack_recorder(client.ack_many)
                ack_installed.set()

            cpu0 = time.process_time()

            async def consume() -> None:
                # It needs the recording ack, which exists once drive() has made its Driver
                # (before any publisher starts).
                await ack_installed.wait()
                await raw_consume(db, client, lambda ms: acks["ack"](ms), after_commit=broadcast)

            nursery.start_soon(consume)
            out.update(await drive(args, "baseline", f"ws://127.0.0.1:{port}", clients, prefix, devices, install,
                                   counters=stats))
            out["process_cpu_s"] = time.process_time() - cpu0
            nursery.cancel_scope.cancel()
    for load in out["loads"]:
        load["expected_deliveries"] = load["counters"].get("broadcast", 0) + load["counters"].get("dropped", 0)
        load["server_dropped"] = load["counters"].get("dropped", 0)
    out["mqtt"] = {"received": client.stats.received, "acked": client.stats.acked}
    return out


async def run_hub_system(args: argparse.Namespace, url: str, prefix: str, campus, watched: list, faculty_of,
                         clients_for, devices) -> dict[str, Any]:
    import httpx
    import trio

    from hub.app.supervision import run_hub

    settings = hub_settings(url, args.mqtt_url, prefix)
    out: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, settings, port=0))
        adopt_hub_loop(hub)
        # Steady state of a hub that was running when the sessions opened: every session actor
        # up (one that starts while they are live opens only 256 at boot; see bench/pipeline.py).
        from pipeline import open_all_sessions

        out["sessions_opened"] = await open_all_sessions(hub, [s.room_id for s in campus.sessions])
        base = f"http://127.0.0.1:{hub.web_port}"
        tokens: dict[str, str] = {}
        usernames = sorted({faculty_of[s.session_id] for s in watched})
        progress(f"hub: logging in {len(usernames)} faculty members...")
        t = time.perf_counter()
        limit = trio.CapacityLimiter(4)
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            async def login(username: str) -> None:
                async with limit:
                    r = await http.post("/api/v1/auth/login", json={"username": username, "password": "campushub"})
                    r.raise_for_status()
                    tokens[username] = r.json()["access_token"]

            async with trio.open_nursery() as logins:
                for u in usernames:
                    logins.start_soon(login, u)
        out["login_s"] = time.perf_counter() - t

        original_ack_many = hub.client.ack_many

        def install(driver: Driver) -> None:
            hub.client.ack_many = driver.ack_recorder(original_ack_many)

        cpu0 = time.process_time()
        out.update(await drive(args, "hub", f"ws://127.0.0.1:{hub.web_port}", clients_for(tokens), prefix, devices,
                               install))
        out["process_cpu_s"] = time.process_time() - cpu0
        out["connections_actors"] = hub.root.lookup("connections").actor_count()
        ids = [s.session_id for s in watched]
        for load in out["loads"]:
            accepted = await hub.db.fetchval(
                "SELECT count(*) FROM attendance WHERE session_id = ANY($1::text[])"
                " AND checked_in_at >= to_timestamp($2) AND checked_in_at < to_timestamp($3)",
                ids, load["t0"], load["t1"])
            load["accepted_checkins"] = accepted
            load["expected_deliveries"] = accepted * args.viewers
        out["rows"] = {t: await hub.db.fetchval(f"SELECT count(*) FROM {t}")
                       for t in ("events", "attendance", "rejected_events")}
        out["rejections"] = {r["reason"]: r["n"] for r in await hub.db.fetch(
            "SELECT reason, count(*) AS n FROM rejected_events GROUP BY reason")}
        out["mqtt"] = {"received": hub.client.stats.received, "acked": hub.client.stats.acked}
        nursery.cancel_scope.cancel()
    return out


# =========================================================================== setup, summary, output


async def extra_enrolments(db, campus, watched, roster: int) -> None:
    """Lecture-sized rosters for the watched sessions, so check-ins keep coming for the whole run."""
    students = [s.student_id for s in campus.students]
    course_ids, student_ids = [], []
    for k, session in enumerate(watched):
        for j in range(roster):
            course_ids.append(session.course_id)
            student_ids.append(students[(k * 37 + j) % len(students)])
    await db.execute(
        "INSERT INTO enrolments (course_id, student_id) SELECT * FROM unnest($1::text[], $2::text[])"
        " ON CONFLICT DO NOTHING", course_ids, student_ids)


def summarize(system: dict[str, Any]) -> dict[str, Any]:
    """Per load: the figures; the clients' deliveries are split between loads by arrival time."""
    c = system.pop("clients", {"latencies": [], "received_at": [], "counts": {}})
    pairs = sorted(zip(c["received_at"], c["latencies"]))
    loads = {}
    for load in system.pop("loads"):
        t0, t1 = load["t0"], load["t1"]
        lat = [latency for r, latency in pairs if t0 <= r < t1]
        rx = [r for r, _ in pairs if t0 <= r < t1]
        s = load["phase"].summary()
        out = {
            "rate": load["rate"], "duration": load["duration"],
            "events_committed": s["committed"], "events_per_s": s.get("events_per_s", math.nan),
            "ack_p50_ms": s["ack_p50_ms"], "ack_p99_ms": s["ack_p99_ms"], "load_average": s["load_average"],
            "timed_out": s["timed_out"], "checkins_published": s["publisher"].get("checkins"),
            "publisher": s["publisher"], "machine_busy_pct": s["machine_busy_pct"], "cpu_s": s["cpu_s"],
            "ws_delivered": len(lat), "expected_deliveries": load.get("expected_deliveries"),
            "ws_per_s": (len(rx) - 1) / (rx[-1] - rx[0]) if len(rx) > 1 else math.nan,
        }
        out.update(percentiles_ms(lat, "ws"))
        for key in ("accepted_checkins", "server_dropped", "gc"):
            if key in load:
                out[key] = load[key]
        loads[load["label"]] = out
    result = {
        "clients_connected": system.get("connected"), "clients_failed": system.get("failed"),
        "connect_s": system.get("connect_s"), "loads": loads,
        "resync_snapshots": c["counts"].get("resyncs", 0), "resynced_clients": c.get("resynced_clients", 0),
        "closed": c["counts"].get("closed", 0), "close_codes": c.get("close_codes", {}),
        "client_cpu_s": c.get("cpu_s"), "process_cpu_s": system.get("process_cpu_s"),
    }
    for k in ("login_s", "rows", "rejections", "mqtt", "connections_actors", "sessions_opened"):
        if k in system:
            result[k] = system[k]
    return result


def print_table(report: dict[str, Any]) -> None:
    cfg = report["config"]
    loads = ", ".join(f"{label}: {rate:,.0f} events/s for {duration:.0f}s" for label, rate, duration in cfg["loads"])
    print(f"fanout: {cfg['clients']:,} websocket clients ({cfg['viewers']} per session, {cfg['watched']} sessions, "
          f"{cfg['client_processes']} processes); loads {loads}; from {cfg['devices']:,} device connections "
          f"({cfg['publishers']} processes), {cfg['checkin_share']:.0%} check-ins into the watched sessions")
    print()
    head = (f"{'system':<9} {'load':<7} {'events/s':>8} {'ack p99':>7} {'ws msgs':>8} {'ws/s':>6} {'ws p50':>7} "
            f"{'ws p95':>7} {'ws p99':>7} {'ws max':>7} {'expect':>7} {'load avg':>8}")
    print(head)
    print("-" * len(head))
    for name, r in report["results"].items():
        for label, x in r["loads"].items():
            print(f"{name:<9} {label:<7} {fmt(x['events_per_s'], ',.0f'):>8} {fmt(x['ack_p99_ms'], '.0f'):>7} "
                  f"{x['ws_delivered']:>8,} {fmt(x['ws_per_s'], ',.0f'):>6} {fmt(x['ws_p50_ms'], '.1f'):>7} "
                  f"{fmt(x['ws_p95_ms'], '.1f'):>7} {fmt(x['ws_p99_ms'], '.1f'):>7} {fmt(x['ws_max_ms'], '.0f'):>7} "
                  f"{fmt(x['expected_deliveries'], ','):>7} "
                  f"{x['load_average'][0] if x['load_average'] else '-':>8}"
                  + (" (TIMED OUT)" if x["timed_out"] else ""))
    for label, q in report.get("ratio", {}).items():
        print(f"{'hub/base':<9} {label:<7} {fmt(q['events_per_s'], '.2f') + 'x':>8} "
              f"{fmt(q['ack_p99_ms'], '.1f') + 'x':>7} {'':>8} {fmt(q['ws_per_s'], '.2f') + 'x':>6} "
              f"{fmt(q['ws_p50_ms'], '.1f') + 'x':>7} {fmt(q['ws_p95_ms'], '.1f') + 'x':>7} "
              f"{fmt(q['ws_p99_ms'], '.1f') + 'x':>7}")
    print()
    print("ws = publish -> websocket client (ms); ack = publish -> PUBACK after COMMIT (ms); expect = messages the "
          "system should deliver (baseline: check-ins broadcast x viewers; hub: accepted check-ins x viewers)")
    for name, r in report["results"].items():
        extra = {k: r[k] for k in ("login_s", "rejections", "close_codes", "sessions_opened") if r.get(k)}
        extra["gc"] = {label: x.get("gc") for label, x in r["loads"].items()}
        print(f"{name}: {r['clients_connected']:,} clients connected ({r['clients_failed']} failed) in "
              f"{fmt(r['connect_s'], '.1f')}s; {r['resynced_clients']} clients resynced, {r['closed']} closed; "
              f"process CPU {fmt(r['process_cpu_s'], '.1f')}s, client CPU {fmt(r['client_cpu_s'], '.1f')}s; {extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=2_000)
    ap.add_argument("--viewers", type=int, default=4, help="clients per watched session")
    ap.add_argument("--sessions", type=int, default=2_000, help="rooms = live sessions = device connections")
    ap.add_argument("--students", type=int, default=4_000)
    ap.add_argument("--roster", type=int, default=0,
                    help="extra enrolments per watched session (default: enough for the run's check-ins)")
    ap.add_argument("--rate", type=float, default=5_000, help="events/s, all devices together")
    ap.add_argument("--duration", type=float, default=20, help="seconds of load per system")
    ap.add_argument("--low-rate", type=float, default=1_000,
                    help="then a second load at this rate (0: none), to see latency below saturation")
    ap.add_argument("--low-duration", type=float, default=10)
    ap.add_argument("--checkin-share", type=float, default=0.05,
                    help="fraction of events that are check-ins (into the watched sessions)")
    ap.add_argument("--window", type=int, default=900)
    ap.add_argument("--publishers", type=int, default=4, help="publisher processes")
    ap.add_argument("--client-processes", type=int, default=4)
    ap.add_argument("--connect-concurrency", type=int, default=25, help="handshakes in flight per client process")
    ap.add_argument("--connect-timeout", type=float, default=180)
    ap.add_argument("--drain", type=float, default=2.0, help="seconds to wait for deliveries after the last commit")
    ap.add_argument("--systems", default="baseline,hub")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="experiment: gc.freeze() in the measured process once the clients are connected (what the"
                         " hub would gain by doing so); figures are then not the hub's as shipped")
    ap.add_argument("--database-url", default=os.environ.get("CAMPUSHUB_TEST_DATABASE_URL", DEFAULT_SERVER_URL))
    ap.add_argument("--mqtt-url", default=os.environ.get("CAMPUSHUB_TEST_MQTT_URL", DEFAULT_MQTT_URL))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the hub run (figures then not comparable)")
    ap.add_argument("--client-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client_worker:
        client_worker_main()
        return

    import trio

    from hub.core.config import MqttUrl

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    args.mqtt = MqttUrl.parse(args.mqtt_url)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not systems or set(systems) - {"baseline", "hub"}:
        ap.error("--systems takes baseline and/or hub")
    faculty_count = -(-args.sessions // ROOMS_PER_FACULTY)
    n_watched = max(1, args.clients // args.viewers)
    if n_watched > args.sessions:
        ap.error("--clients / --viewers must not exceed --sessions")
    args.loads = [("target", args.rate, args.duration)]
    if args.low_rate:
        args.loads.append(("low", args.low_rate, args.low_duration))
    args.messages = int(sum(rate * duration for _, rate, duration in args.loads))
    # Each load uses every len(loads)-th student of a roster: room for the largest one in each.
    checkins_per_session = math.ceil(max(rate * duration for _, rate, duration in args.loads) * args.checkin_share
                                     * len(args.loads) / n_watched)
    roster = args.roster or checkins_per_session + 10

    run_id = new_run_id()
    prefix = f"bench-{run_id}"
    names = {"hub": f"campushub_bench_{run_id}_fanout", "baseline": f"campushub_bench_{run_id}_fanraw"}
    created: list[str] = []
    results: dict[str, Any] = {}
    try:
        create_databases(args.database_url, [names[s] for s in systems], created)
        seed_url = database_url_for(args.database_url, names["hub"] if "hub" in systems else names["baseline"])
        # Watched sessions: all the sessions of the first faculty members (fewest logins).
        from hub.db.seed import faculty_username

        def course_number(course_id: str) -> int:
            return int(course_id.rsplit("-", 1)[1])

        box: dict[str, Any] = {}

        async def extra(db, campus) -> None:
            ordered = sorted(campus.sessions, key=lambda s: ((course_number(s.course_id) - 1) % faculty_count,
                                                             course_number(s.course_id)))
            box["watched"] = ordered[:n_watched]
            await extra_enrolments(db, campus, box["watched"], roster)

        progress(f"fanout: run {run_id}, databases {', '.join(created)}: seeding {args.sessions:,} sessions, "
                 f"{n_watched} watched with {roster} extra enrolments each...")
        campus = trio.run(interruptible, partial(migrate_and_seed, seed_url, rooms=args.sessions,
                                                 students=args.students, extra=extra))
        watched = box["watched"]
        # The campus was read before the extra enrolments: re-read the watched rosters for the check-in queue.
        from hub.core.campus import LiveSession

        async def rosters() -> dict[str, list[str]]:
            from hub.db import asyncio_loop, open_database

            async with asyncio_loop(), open_database(seed_url, max_size=1) as db:
                rows = await db.fetch(
                    "SELECT e.course_id, e.student_id FROM enrolments e WHERE e.course_id = ANY($1::text[])"
                    " ORDER BY e.course_id, e.student_id", [s.course_id for s in watched])
            out: dict[str, list[str]] = {}
            for r in rows:
                out.setdefault(r["course_id"], []).append(r["student_id"])
            return out

        enrolled = trio.run(interruptible, rosters)
        watched = [LiveSession(s.session_id, s.course_id, s.room_id, s.starts_at, s.ends_at, s.grace_minutes,
                               tuple(enrolled.get(s.course_id, ()))) for s in watched]
        watched_rooms = {s.room_id for s in watched}
        view = type(campus)(campus.devices, campus.students,
                            tuple(s for s in watched), campus.logins)
        devices = device_payloads(view, checkins=True)  # check-ins only for devices in watched rooms
        assert all(not d["checkins"] for d in devices if d["id"] not in {
            x.device_id for x in campus.devices if x.room_id in watched_rooms})
        faculty_of = {s.session_id: faculty_username((course_number(s.course_id) - 1) % faculty_count + 1)
                      for s in watched}

        def clients_for(tokens: dict[str, str]) -> list[tuple[str, str]]:
            return [(f"/ws/sessions/{watched[k % n_watched].session_id}",
                     tokens.get(faculty_of[watched[k % n_watched].session_id], "none"))
                    for k in range(args.clients)]

        for system in systems:
            url = database_url_for(args.database_url, names[system])
            if system == "baseline":
                r = trio.run(interruptible, run_baseline, args, url, prefix, campus, watched, clients_for({}),
                             devices)
            elif args.profile:
                import cProfile

                from _common import print_profile

                profiler = cProfile.Profile()
                r = profiler.runcall(trio.run, interruptible, run_hub_system, args, url, prefix, campus, watched,
                                     faculty_of, clients_for, devices)
                profiler.dump_stats(args.profile)
                print_profile(args.profile, top=25)
            else:
                r = trio.run(interruptible, run_hub_system, args, url, prefix, campus, watched, faculty_of,
                             clients_for, devices)
            results[system] = summarize(r)
    except BaseException as exc:
        if is_interrupt(exc):
            progress("interrupted")
            raise SystemExit(130) from None
        raise
    finally:
        discard_broker_sessions(args.mqtt.host, args.mqtt.port, [f"{prefix}-raw", f"{prefix}-hub"])
        drop_databases(args.database_url, created)

    report: dict[str, Any] = {
        "config": {"clients": args.clients, "viewers": args.viewers, "watched": n_watched,
                   "sessions": args.sessions, "devices": len(devices), "rate": args.rate,
                   "duration": args.duration, "loads": args.loads, "messages": args.messages,
                   "checkin_share": args.checkin_share,
                   "roster_extra": roster, "publishers": args.publishers, "client_processes": args.client_processes,
                   "profiled": bool(args.profile), "gc_freeze": args.gc_freeze},
        "results": results,
        "target_p99_ms": TARGET_P99_MS,
    }
    if "hub" in results and "baseline" in results:
        report["ratio"] = {}
        for label in results["hub"]["loads"]:
            h, b = results["hub"]["loads"][label], results["baseline"]["loads"].get(label, {})
            report["ratio"][label] = {
                k: (h[k] / b[k] if b.get(k) and h.get(k) is not None else math.nan)
                for k in ("events_per_s", "ack_p99_ms", "ws_per_s", "ws_p50_ms", "ws_p95_ms", "ws_p99_ms")}
    if args.json:
        for r in results.values():
            for x in r["loads"].values():
                x.pop("publisher", None)
        print(json.dumps(no_nan(report), indent=2, default=str))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
