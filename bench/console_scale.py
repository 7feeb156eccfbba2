"""The ops console's overview at campus scale: 1,000 rooms and 3,000 devices (issue 15, item 4).

    .venv/bin/python bench/console_scale.py [--rooms 1000] [--devices-per-room 3] [--rate 100] [--seconds 10]

Setup: one database ``campushub_bench_<random>_console`` (migrated, the demo campus seeded with
``--rooms`` rooms, each room's edge agent topped up with COPY to ``--devices-per-room`` devices: a
room sensor and a QR camera; an hour of raw CO2/temperature readings every 5 min and 24 hourly
aggregates per sensor; every device online; 2 % of the devices with an active alarm). Dropped at the
end, also on Ctrl-C. A real hub runs on it (the machine's PostgreSQL and Mosquitto).

Measured, and printed:

1. server: the overview's one query (``hub.db.console_overview.room_tiles``), wall time over
   ``--rounds``; ``GET /ops`` (the whole page) and ``GET /api/v1/console/rooms`` (what the page
   re-reads every minute): wall time and bytes, over ``--rounds``;
2. Chromium (headless, 1366×800): time from navigation to DOMContentLoaded, to the ``load`` event,
   and to the first live repaint of the tiles after the websocket's snapshot (the page is usable);
3. live updates: ``--rate`` device messages a second for ``--seconds`` seconds published on the
   hub's live bus (a random device going offline or online), as the device actors publish them. The
   browser's main-thread cost (Chrome DevTools ``Performance.getMetrics``: script, style, layout;
   task time) per second of updates and per animation frame; how many frames repainted; and the
   hub process's CPU time per message fanned out to the page's websocket.

A measurement, not a test: the figures depend on the machine and its load, which is printed with them.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402 - bench/ is not a package
    DEFAULT_MQTT_URL,
    DEFAULT_SERVER_URL,
    adopt_hub_loop,
    create_databases,
    database_url_for,
    drop_databases,
    hub_settings,
    load_average,
    migrate_and_seed,
    new_run_id,
    progress,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OPS_PASSWORD = "campushub"  # the demo seed's password (hub.db.seed.DEMO_PASSWORD)


async def _top_up(db: Any, campus: Any, *, per_room: int, now: datetime) -> dict[str, int]:
    """COPY the extra devices, their health, readings, aggregates and alarms (one round trip per table)."""
    rooms = [r["id"] for r in await db.fetch("SELECT id FROM rooms ORDER BY id")]
    have = {r["room_id"]: r["n"] for r in await db.fetch("SELECT room_id, count(*) AS n FROM devices GROUP BY room_id")}
    # Only kinds the devices table admits (its CHECK; hub.db.provisioning.DEVICE_KINDS): "display" was refused.
    kinds = ["sensor", "qr_camera", "fingerprint", "edge_agent"]
    devices, sensors = [], []
    for room in rooms:
        for k in range(per_room - have.get(room, 0)):
            device_id = f"{kinds[k % len(kinds)]}-{room}"
            devices.append((device_id, room, kinds[k % len(kinds)], "bench", "hmac-sha256", os.urandom(32)))
            if kinds[k % len(kinds)] == "sensor":
                sensors.append(device_id)
    rng = random.Random(7)
    hour = now.replace(minute=0, second=0, microsecond=0)
    readings, hourly = [], []
    for device_id in sensors:
        base_co2, base_t = rng.uniform(450, 900), rng.uniform(19, 24)
        for i in range(12):
            at = now - timedelta(minutes=5 * (11 - i))
            readings.append((uuid.uuid4(), device_id, "co2", base_co2 + rng.gauss(0, 30), "ppm", at))
            readings.append((uuid.uuid4(), device_id, "temperature", base_t + rng.gauss(0, .3), "°C", at))
        for h in range(1, 25):
            co2, t = base_co2 + 200 * rng.random(), base_t + rng.gauss(0, 1)
            hourly.append((device_id, "co2", hour - timedelta(hours=h), "ppm", 60, co2 * 60, co2 - 40, co2 + 40))
            hourly.append((device_id, "temperature", hour - timedelta(hours=h), "°C", 60, t * 60, t - .5, t + .5))

    async def work(conn: Any) -> None:
        await conn.copy_records_to_table("devices", columns=["id", "room_id", "kind", "model", "alg", "key"],
                                         records=devices)
        await conn.execute(
            "INSERT INTO device_health (device_id, online, last_seen, last_change, reason, firmware)"
            " SELECT id, true, $1, $1, 'connected', '2.4.1' FROM devices"
            " ON CONFLICT (device_id) DO UPDATE SET online = true, last_seen = $1", now)
        await conn.copy_records_to_table("sensor_readings", columns=["event_id", "device_id", "metric", "value", "unit",
                                                                     "device_ts"], records=readings)
        await conn.copy_records_to_table("sensor_readings_hourly", columns=["device_id", "metric", "hour", "unit", "n",
                                                                            "sum", "min", "max"], records=hourly)
        await conn.execute(
            "INSERT INTO alarms (device_id, room_id, type, severity, state, raised_at, value, message, details)"
            " SELECT id, room_id, 'co2_high', (ARRAY['critical','major','minor','warning'])[1 + (row_number() OVER () % 4)],"
            " 'active_unacked', $1, 1600, 'co2 1600 ppm above 1500', '{}'"
            " FROM devices WHERE kind = 'sensor' AND hashtext(id) % 50 = 0", now)
        await conn.execute("ANALYZE")

    await db.run(work)
    return {"devices": await db.fetchval("SELECT count(*) FROM devices"), "rooms": len(rooms),
            "readings": len(readings), "hourly": len(hourly),
            "alarms": await db.fetchval("SELECT count(*) FROM alarms WHERE state = 'active_unacked'")}


def _stats(values: list[float]) -> str:
    values = sorted(values)
    return f"median {values[len(values) // 2] * 1000:.0f} ms (min {values[0] * 1000:.0f}, max {values[-1] * 1000:.0f})"


async def _server_figures(hub: Any, rounds: int) -> None:
    import httpx

    from hub.db.console_overview import room_tiles

    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        tiles = await room_tiles(hub.db, datetime.now(timezone.utc))
        times.append(time.perf_counter() - started)
    print(f"overview query (room_tiles, {len(tiles)} rooms, one statement): {_stats(times)}")
    base = f"http://127.0.0.1:{hub.web_port}"
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        login = await client.post("/login", data={"username": "ops", "password": OPS_PASSWORD})
        assert login.status_code in (200, 302, 303), login.status_code
        for path in ("/ops", "/api/v1/console/rooms"):
            times, size = [], 0
            for _ in range(rounds):
                started = time.perf_counter()
                response = await client.get(path)
                times.append(time.perf_counter() - started)
                assert response.status_code == 200, (path, response.status_code)
                size = len(response.content)
            print(f"GET {path}: {_stats(times)}, {size / 1024:.0f} KiB ({size:,} bytes, uncompressed)")


def _browser(base: str, ready: threading.Event, go: threading.Event, done: threading.Event,
             out: dict[str, Any]) -> None:
    """Playwright in this thread, on a plain asyncio loop of its own (the hub's thread runs trio-asyncio)."""
    loop = asyncio.SelectorEventLoop()
    try:
        loop.run_until_complete(_browse(base, ready, go, done, out))
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread
        out["failed"] = repr(exc)
    finally:
        loop.close()
        ready.set()


async def _browse(base: str, ready: threading.Event, go: threading.Event, done: threading.Event,
                  out: dict[str, Any]) -> None:
    """Load /ops (three times), then watch the live-update phase."""
    from playwright.async_api import async_playwright

    def wait(event: threading.Event, timeout: float) -> Any:
        return asyncio.get_running_loop().run_in_executor(None, event.wait, timeout)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1366, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{base}/login")
        await page.fill("#username", "ops")
        await page.fill("#password", OPS_PASSWORD)
        await page.click("#login-submit")
        await page.wait_for_url(lambda url: "/login" not in url)
        loads = []
        for _ in range(3):
            started = time.perf_counter()
            await page.goto(f"{base}/ops", wait_until="load")
            await page.wait_for_function("() => { const o = document.getElementById('overview');"
                                         " return o && o.campusStats && o.campusStats.frames >= 1; }", timeout=60_000)
            live = time.perf_counter() - started
            nav = await page.evaluate("() => { const n = performance.getEntriesByType('navigation')[0];"
                                      " return [n.domContentLoadedEventEnd, n.loadEventEnd, n.transferSize]; }")
            loads.append((nav[0] / 1000, nav[1] / 1000, live, nav[2]))
        out["loads"] = loads
        out["nodes"] = await page.evaluate("document.getElementsByTagName('*').length")
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("Performance.enable")

        async def metrics() -> dict[str, float]:
            return {m["name"]: m["value"] for m in (await cdp.send("Performance.getMetrics"))["metrics"]}

        idle_before = await metrics()
        await asyncio.sleep(2)
        idle_after = await metrics()
        before_stats = await page.evaluate("({...document.getElementById('overview').campusStats})")
        ready.set()
        await wait(go, 120)
        before = await metrics()
        await wait(done, 600)
        await asyncio.sleep(0.5)  # the last frame
        after = await metrics()
        after_stats = await page.evaluate("({...document.getElementById('overview').campusStats})")
        out["idle"] = {k: idle_after[k] - idle_before[k] for k in ("ScriptDuration", "TaskDuration")}
        out["live"] = {k: after[k] - before[k] for k in ("ScriptDuration", "RecalcStyleDuration", "LayoutDuration",
                                                         "TaskDuration", "LayoutCount", "RecalcStyleCount")}
        out["stats"] = {k: after_stats[k] - before_stats[k] for k in after_stats}
        out["errors"] = errors
        await browser.close()


async def _run(url: str, args: argparse.Namespace) -> None:
    import trio

    from hub.app.supervision import run_hub
    from hub.core.bus import DEVICES_TOPIC, live_device
    from hub.domain.device_health import DeviceHealth

    settings = hub_settings(url, args.mqtt_url, f"bench-{new_run_id()}", device_offline_after_s=3600)
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, settings, port=0))
        progress(f"hub up on port {hub.web_port}")
        adopt_hub_loop(hub)
        await _server_figures(hub, args.rounds)
        devices = [(r["id"], r["room_id"]) for r in await hub.db.fetch("SELECT id, room_id FROM devices")]
        ready, go, done = threading.Event(), threading.Event(), threading.Event()
        out: dict[str, Any] = {}
        thread = threading.Thread(target=_browser, args=(f"http://127.0.0.1:{hub.web_port}", ready, go, done, out),
                                  daemon=True)
        thread.start()
        await trio.to_thread.run_sync(ready.wait, 300)
        if "failed" in out:
            raise SystemExit(f"browser failed: {out['failed']}")
        rng = random.Random(11)
        total = args.rate * args.seconds
        go.set()
        cpu0, started, trio_start = time.process_time(), time.perf_counter(), trio.current_time()
        now = datetime.now(timezone.utc)
        for i in range(total):
            device_id, room_id = devices[rng.randrange(len(devices))]
            online = rng.random() < 0.5
            hub.bus.publish(DEVICES_TOPIC, live_device(
                DeviceHealth(device_id, online=online, last_seen=now, last_change=now,
                             reason="connected" if online else "bench: went quiet", firmware="2.4.1"), room_id))
            await trio.sleep_until(trio_start + (i + 1) / args.rate)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        await trio.sleep(1)
        done.set()
        await trio.to_thread.run_sync(thread.join, 120)
        if "failed" in out:
            raise SystemExit(f"browser failed: {out['failed']}")
        nursery.cancel_scope.cancel()

    for n, (dcl, load, live, transfer) in enumerate(out["loads"], 1):
        print(f"Chromium load {n}: DOMContentLoaded {dcl * 1000:.0f} ms, load {load * 1000:.0f} ms, "
              f"first live repaint after the snapshot {live * 1000:.0f} ms; transfer {transfer / 1024:.0f} KiB")
    print(f"DOM: {out['nodes']:,} elements")
    live, stats = out["live"], out["stats"]
    seconds = args.seconds
    idle = out["idle"]
    print(f"idle page, 2 s: script {idle['ScriptDuration'] * 1000:.0f} ms, tasks {idle['TaskDuration'] * 1000:.0f} ms")
    print(f"live updates: {total} device messages in {elapsed:.1f} s ({total / elapsed:.0f}/s); the page got "
          f"{stats['messages']} messages, repainted {stats['tilesPainted']} tiles in {stats['frames']} frames")
    frames = max(1, stats["frames"])
    print(f"  browser main thread per second of updates: script {live['ScriptDuration'] * 1000 / seconds:.1f} ms, "
          f"style {live['RecalcStyleDuration'] * 1000 / seconds:.1f} ms, "
          f"layout {live['LayoutDuration'] * 1000 / seconds:.1f} ms, "
          f"all tasks {live['TaskDuration'] * 1000 / seconds:.1f} ms ({live['TaskDuration'] / seconds * 100:.1f} % of one core)")
    print(f"  per repainted frame: {live['TaskDuration'] * 1000 / frames:.2f} ms of tasks; "
          f"{live['LayoutCount']:.0f} layouts, {live['RecalcStyleCount']:.0f} style recalcs in all")
    print(f"  hub process CPU while publishing: {cpu * 1000:.0f} ms, {cpu / total * 1e6:.0f} µs per message "
          f"(bus fan-out to one websocket, JSON once per message; includes this benchmark's own publishing loop)")
    print(f"  JavaScript errors: {out['errors'] or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server-url", default=os.environ.get("CAMPUSHUB_BENCH_DATABASE_URL", DEFAULT_SERVER_URL))
    parser.add_argument("--mqtt-url", default=os.environ.get("CAMPUSHUB_BENCH_MQTT_URL", DEFAULT_MQTT_URL))
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--devices-per-room", type=int, default=3)
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=100, help="device messages a second in the live phase")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import trio

    name = f"campushub_bench_{new_run_id()}_console"
    created: list[str] = []
    try:
        create_databases(args.server_url, [name], created)
        url = database_url_for(args.server_url, name)
        started = time.perf_counter()
        counts: dict[str, int] = {}

        async def extra(db: Any, campus: Any) -> None:
            counts.update(await _top_up(db, campus, per_room=args.devices_per_room, now=datetime.now(timezone.utc)))

        trio.run(_seed_then_run, url, args, extra, counts, started)
    finally:
        drop_databases(args.server_url, created)


async def _seed_then_run(url: str, args: argparse.Namespace, extra: Any, counts: dict[str, int],
                         started: float) -> None:
    await migrate_and_seed(url, rooms=args.rooms, students=args.students, extra=extra)
    print(f"seeded in {time.perf_counter() - started:.1f} s: {counts['rooms']} rooms, {counts['devices']} devices, "
          f"{counts['readings']:,} raw readings, {counts['hourly']:,} hourly aggregates, {counts['alarms']} active alarms")
    print(f"machine: {os.cpu_count()} cores, load {load_average()} (shared with other work: figures are noisy)")
    await _run(url, args)


if __name__ == "__main__":
    main()
