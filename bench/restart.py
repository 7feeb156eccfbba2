"""Time for the hub to return to full service after a restart, with 2,000 live sessions, against a raw consumer.

Setup: a database ``campushub_bench_<random>_restart`` with the demo campus
(``--sessions`` rooms = live sessions = devices, ``--students``), and
``..._raw`` with the raw baseline's scratch table; both dropped at the end
(also on Ctrl-C), and the broker sessions of our MQTT client ids discarded.

1. Warm-up: the hub (``hub.app.supervision.run_hub``, web server on a fixed free port)
   starts; one QR check-in per session (a different device per room, so every
   device goes online and every session actor is started, on demand if the
   scheduler did not open it) is published and committed. The hub idles
   ``--idle`` seconds, then is stopped by cancelling ``run_hub`` (timed).
2. Restart, measured from t0: one more check-in (a new student of the last
   session) is published at t0, before the hub starts; it waits in the
   broker for the hub's persistent session. Then ``run_hub`` is started again
   and the bench records, relative to t0:

   * the start-up phases, by wrapping (in this process only; no hub code is
     changed) what ``run_hub`` calls: database reachable, pool open,
     ``migrate`` (a check: nothing to apply), the scheduler's ``started()``
     (timetable load), the ingress's ``started()`` split into its registry
     load and the device actors it starts (one ``device_health`` query
     each), the MQTT subscription, and ``run_hub`` reporting started;
   * full service, when all four hold: every device actor up, every session
     actor up (polled every 5 ms on the hub's supervisors), the t0 check-in
     committed (its PUBACK, which the hub sends only after COMMIT; the
     ``events.committed_at`` of the row is reported too), and ``GET /healthz``
     answering 200 "ok" (polled every 20 ms).

   If some condition is not met ``--settle`` seconds after the others, it is
   reported as not reached (with how far it got). Afterwards the bench asks
   the scheduler to resolve every room whose session actor is missing, timing
   how long opening the rest takes.
3. Baseline: the raw consumer of bench/pipeline.py (TrioMqttClient, COPY into
   a scratch table, ack) restarted the same way: a warm-up run, stop, a
   message published at t0, start; figures: pool open, connect+subscribe, and
   the t0 message committed and acked.

    .venv/bin/python bench/restart.py [--sessions 2000] [--students 4000] [--json]
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from functools import partial
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402 - bench/ is not a package
    DEFAULT_MQTT_URL,
    DEFAULT_SERVER_URL,
    RAW_TABLE_DDL,
    adopt_hub_loop,
    create_databases,
    database_url_for,
    discard_broker_sessions,
    drop_databases,
    fmt,
    free_port,
    hub_settings,
    interruptible,
    is_interrupt,
    load_average,
    migrate_and_seed,
    new_run_id,
    no_nan,
    progress,
    raw_consume,
)

TARGET_S = 5.0


class Timeline:
    """Named instants, in seconds since ``t0`` (perf_counter); the first mark of a name wins."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.marks: dict[str, float] = {}

    def reset(self) -> None:
        self.t0 = time.perf_counter()
        self.marks = {}

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.perf_counter() - self.t0)

    def set(self, name: str) -> None:
        """Like mark, but the last one wins."""
        self.marks[name] = time.perf_counter() - self.t0

    def get(self, name: str) -> float:
        return self.marks.get(name, math.nan)


# =========================================================================== instrumentation (this process only)


class Instruments:
    """Wraps what run_hub calls, to timestamp the start-up phases and find the hub's supervisors.

    Installed for the whole run, undone by :meth:`remove`. Nothing in hub/ is edited.
    """

    def __init__(self, timeline: Timeline) -> None:
        import hub.app.supervision
        import hub.pipeline.ingress
        import hub.pipeline.scheduler

        self.timeline = timeline
        self.devices_sup = None
        self.sessions_sup = None
        self.watch_payload: bytes | None = None
        self.acks = 0
        self._undo: list[tuple[Any, str, Any]] = []
        tl = timeline
        inst = self

        def patch(owner: Any, name: str, value: Any) -> None:
            self._undo.append((owner, name, getattr(owner, name)))
            setattr(owner, name, value)

        orig_wait = hub.app.supervision.wait_for_database

        async def wait_for_database(*a, **k):
            await orig_wait(*a, **k)
            tl.mark("db_reachable")

        orig_open = hub.app.supervision.open_database

        @asynccontextmanager
        async def open_database(*a, **k):
            async with orig_open(*a, **k) as db:
                tl.mark("pool_open")
                yield db

        orig_migrate = hub.app.supervision.migrate

        async def migrate(db):
            tl.mark("migrate_start")
            applied = await orig_migrate(db)
            tl.mark("migrate_done")
            return applied

        orig_sched_started = hub.pipeline.scheduler.SessionScheduler.started

        async def scheduler_started(self_):
            inst.sessions_sup = self_._sessions
            tl.mark("scheduler_start")
            await orig_sched_started(self_)
            tl.mark("scheduler_done")

        orig_ingress_started = hub.pipeline.ingress.Ingress.started
        orig_reload = hub.pipeline.ingress.Ingress._reload_registry

        async def ingress_started(self_):
            inst.devices_sup = self_._device_actors.devices
            tl.mark("ingress_start")
            await orig_ingress_started(self_)
            tl.mark("ingress_done")

        async def reload_registry(self_):
            await orig_reload(self_)
            tl.mark("registry_loaded")

        class RecordingClient(hub.app.supervision.TrioMqttClient):
            async def subscribe(self_, topic_filter: str, qos: int = 1) -> None:
                await super().subscribe(topic_filter, qos)
                tl.mark("mqtt_subscribed")

            def ack_many(self_, messages) -> None:
                super().ack_many(messages)
                for message in messages:
                    inst.acks += 1
                    if inst.watch_payload is not None and message.payload == inst.watch_payload:
                        tl.mark("checkin_committed")

        patch(hub.app.supervision, "wait_for_database", wait_for_database)
        patch(hub.app.supervision, "open_database", open_database)
        patch(hub.app.supervision, "migrate", migrate)
        patch(hub.pipeline.scheduler.SessionScheduler, "started", scheduler_started)
        patch(hub.pipeline.ingress.Ingress, "started", ingress_started)
        patch(hub.pipeline.ingress.Ingress, "_reload_registry", reload_registry)
        patch(hub.app.supervision, "TrioMqttClient", RecordingClient)

    def remove(self) -> None:
        for owner, name, value in reversed(self._undo):
            setattr(owner, name, value)
        self._undo.clear()


# =========================================================================== the hub


def signed_checkin(device, student, seq: int, at: float | None = None) -> bytes:
    from schemas import QrScan, QrScanEvent, encode_event, issue_checkin_token, new_event_id

    at = time.time() if at is None else at
    event = QrScanEvent(v=1, id=new_event_id(), device=device.device_id, ts=int(at * 1000), seq=seq,
                        body=QrScan(text=issue_checkin_token(student.student_id, student.token_secret, at)))
    return encode_event(event, device.alg, device.signing_key)


class Publisher:
    """A plain paho client in this process (external loop), for the few messages this benchmark sends."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        import paho.mqtt.client as mqtt

        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.max_inflight_messages_set(100)
        self.c.max_queued_messages_set(0)
        self.c.connect(host, port, keepalive=60, clean_start=True)
        deadline = time.monotonic() + 10
        while not self.c.is_connected():
            self.c.loop(0.05)
            if time.monotonic() > deadline:
                raise SystemExit("benchmark publisher could not connect to the broker")

    def publish(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1)  # external loop: written at once

    def pump(self) -> None:
        self.c.loop(0)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop(0.05)


async def poll_healthz(port: int, timeline: Timeline, stop) -> None:
    import httpx
    import trio

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=1.0) as http:
        while not stop.is_set():
            try:
                response = await http.get("/healthz")
                timeline.mark("web_answering")
                if response.status_code == 200 and response.json().get("status") == "ok":
                    timeline.mark("healthz_ok")
                    return
            except httpx.HTTPError:
                pass
            await trio.sleep(0.02)


async def hub_restart(args: argparse.Namespace, url: str, prefix: str, campus) -> dict[str, Any]:
    import trio

    from hub.app.supervision import run_hub
    from hub.pipeline.scheduler import ResolveSession
    from schemas import Topics

    topics = Topics(prefix)
    port = free_port()
    settings = hub_settings(url, args.mqtt_url, prefix)
    timeline = Timeline()
    inst = Instruments(timeline)
    n_dev, n_ses = len(campus.devices), len(campus.sessions)
    device_of = {d.room_id: d for d in campus.devices}
    students = {s.student_id: s for s in campus.students}
    pub = Publisher(args.mqtt.host, args.mqtt.port, f"{prefix}-restart-pub")
    out: dict[str, Any] = {"devices": n_dev, "sessions": n_ses}
    try:
        # ---------------------------------------------------------------- 1. warm-up
        progress(f"restart: warm-up: starting the hub ({n_dev:,} devices, {n_ses:,} live sessions)...")
        async with trio.open_nursery() as nursery:
            t = time.perf_counter()
            hub = await nursery.start(partial(run_hub, settings, port=port))
            out["cold_start_s"] = time.perf_counter() - t
            out["cold_sessions_opened"] = hub.sessions.actor_count()
            sent = 0
            for session in campus.sessions:
                device = device_of[session.room_id]
                pub.publish(topics.uplink(device.device_id), signed_checkin(device, students[session.enrolled[0]], 1))
                sent += 1
                pub.pump()
                while sent - inst.acks > 500:  # stay far below the broker's queue limit
                    await trio.sleep(0.01)
                    pub.pump()
            with trio.move_on_after(60):
                while inst.acks < sent or hub.sessions.actor_count() < n_ses:
                    await trio.sleep(0.05)
                    pub.pump()
            out["warm_sessions"] = hub.sessions.actor_count()
            out["warm_devices"] = hub.devices.actor_count()
            out["warm_checkins_committed"] = inst.acks
            progress(f"restart: warm: {out['warm_devices']:,} device actors, {out['warm_sessions']:,} session "
                     f"actors, {inst.acks:,}/{sent:,} check-ins committed; idling {args.idle:.0f}s")
            await trio.sleep(args.idle)
            t = time.perf_counter()
            nursery.cancel_scope.cancel()
        out["stop_s"] = time.perf_counter() - t
        progress(f"restart: hub stopped in {out['stop_s']:.2f}s; restarting")

        # ---------------------------------------------------------------- 2. restart, measured
        last = campus.sessions[-1]
        device = device_of[last.room_id]
        inst.devices_sup = inst.sessions_sup = None
        inst.acks = 0
        await trio.sleep(0.2)
        out["load_average"] = load_average()
        stop = trio.Event()
        hub_box: dict[str, Any] = {}
        sessions_max = 0
        async with trio.open_nursery() as nursery:
            timeline.reset()
            payload = inst.watch_payload = signed_checkin(device, students[last.enrolled[1]], 2)
            pub.publish(topics.uplink(device.device_id), payload)
            pub.pump()

            async def start_hub() -> None:
                hub_box["hub"] = await nursery.start(partial(run_hub, settings, port=port))
                timeline.mark("hub_started")

            nursery.start_soon(start_hub)
            nursery.start_soon(poll_healthz, port, timeline, stop)
            conditions = ("devices_all", "sessions_all", "checkin_committed", "healthz_ok")
            deadline = time.perf_counter() + args.timeout
            settle_deadline = None
            while time.perf_counter() < deadline:
                if inst.devices_sup is not None and inst.devices_sup.actor_count() >= n_dev:
                    timeline.mark("devices_all")
                if inst.sessions_sup is not None:
                    count = inst.sessions_sup.actor_count()
                    if count > sessions_max:
                        sessions_max = count
                        timeline.set("sessions_last_change")
                    if count >= n_ses:
                        timeline.mark("sessions_all")
                met = [c for c in conditions if c in timeline.marks]
                if len(met) == len(conditions):
                    break
                if len(met) == len(conditions) - 1 and settle_deadline is None:
                    settle_deadline = time.perf_counter() + args.settle
                if settle_deadline is not None and time.perf_counter() > settle_deadline:
                    break
                pub.pump()
                await trio.sleep(0.005)
            stop.set()
            out["timeline"] = dict(sorted(timeline.marks.items(), key=lambda kv: kv[1]))
            out["sessions_reached"] = sessions_max
            out["devices_reached"] = inst.devices_sup.actor_count() if inst.devices_sup is not None else 0
            missing = [c for c in conditions if c not in timeline.marks]
            out["not_reached"] = missing
            out["full_service_s"] = max(timeline.get(c) for c in conditions) if not missing else math.nan
            out["service_without_all_sessions_s"] = (
                max(timeline.get(c) for c in conditions if c != "sessions_all")
                if not set(missing) - {"sessions_all"} else math.nan)
            hub = hub_box.get("hub")
            if hub is not None:
                adopt_hub_loop(hub)
                row = await hub.db.fetchrow(
                    "SELECT extract(epoch FROM committed_at)::float8 AS c, extract(epoch FROM device_ts)::float8 AS d"
                    " FROM events WHERE device_id = $1 AND seq = 2", device.device_id)
                out["checkin_db_committed_after_publish_s"] = (row["c"] - row["d"]) if row else math.nan
                # What opening every session at start would add: resolve the rooms still without an actor.
                scheduler = hub.root.lookup("scheduler")
                now = datetime.now(timezone.utc)
                t = time.perf_counter()
                opened = 0
                for session in campus.sessions:
                    if hub.sessions.lookup(session.session_id) is None:
                        await scheduler.ask(ResolveSession(session.room_id, now), timeout=30)
                        opened += 1
                out["sessions_opened_after"] = opened
                out["sessions_open_rest_s"] = time.perf_counter() - t
            nursery.cancel_scope.cancel()
    finally:
        inst.remove()
        pub.close()
    return out


# =========================================================================== the raw baseline


async def raw_restart(args: argparse.Namespace, url: str, prefix: str, campus) -> dict[str, Any]:
    import trio

    from hub.db import asyncio_loop, open_database
    from hub.mqtt import TrioMqttClient
    from schemas import Topics

    topics = Topics(prefix + "-raw")  # its own topics: the hub's persistent session must not see these
    device = campus.devices[0]
    student = campus.students[0]
    pub = Publisher(args.mqtt.host, args.mqtt.port, f"{prefix}-raw-pub")
    marks: dict[str, float] = {}
    try:
        for run in ("warm", "measured"):
            payload = signed_checkin(device, student, 10 + len(marks))
            acked = trio.Event()

            def ack_of(client, run: str, payload: bytes, acked: trio.Event, t0: float):
                def ack_many(messages) -> None:
                    client.ack_many(messages)
                    if any(message.payload == payload for message in messages):
                        marks.setdefault(f"{run}_committed", time.perf_counter() - t0)
                        acked.set()
                return ack_many

            t0 = time.perf_counter()
            if run == "measured":
                pub.publish(topics.uplink(device.device_id), payload)
                pub.pump()
            async with asyncio_loop(), open_database(url) as db:
                marks.setdefault(f"{run}_pool_open", time.perf_counter() - t0)
                client = TrioMqttClient(host=args.mqtt.host, port=args.mqtt.port, client_id=f"{prefix}-raw",
                                        session_expiry_s=300)

                async def on_connect(c: TrioMqttClient, run: str = run, t0: float = t0) -> None:
                    await c.subscribe(topics.uplink_filter, qos=1)
                    marks.setdefault(f"{run}_subscribed", time.perf_counter() - t0)

                async with trio.open_nursery() as nursery:
                    await nursery.start(partial(client.run, on_connect=on_connect))
                    nursery.start_soon(raw_consume, db, client, ack_of(client, run, payload, acked, t0))
                    if run == "warm":
                        pub.publish(topics.uplink(device.device_id), payload)
                        pub.pump()
                    with trio.move_on_after(args.timeout):
                        while not acked.is_set():
                            pub.pump()
                            await trio.sleep(0.005)
                    nursery.cancel_scope.cancel()
    finally:
        pub.close()
    return {"pool_open_s": marks.get("measured_pool_open", math.nan),
            "subscribed_s": marks.get("measured_subscribed", math.nan),
            "committed_s": marks.get("measured_committed", math.nan)}


# =========================================================================== output


PHASES = [
    ("database reachable (wait_for_database)", "db_reachable"),
    ("pool open", "pool_open"),
    ("migrate check done", "migrate_done"),
    ("scheduler started (timetable loaded)", "scheduler_done"),
    ("ingress: registry loaded", "registry_loaded"),
    ("ingress: all device actors started", "ingress_done"),
    ("MQTT subscribed", "mqtt_subscribed"),
    ("run_hub reported started", "hub_started"),
    ("web answering (any status)", "web_answering"),
    ("GET /healthz 200 ok", "healthz_ok"),
    ("t0 check-in committed + acked", "checkin_committed"),
    ("all device actors up", "devices_all"),
    ("last new session actor seen", "sessions_last_change"),
    ("all session actors up", "sessions_all"),
]


def print_table(report: dict[str, Any]) -> None:
    h, raw = report["hub"], report["raw"]
    print(f"restart: {h['devices']:,} devices, {h['sessions']:,} live sessions (all session actors running and "
          f"every device online before the stop); load average {' '.join(map(str, h['load_average']))}")
    print(f"warm-up: cold start {h['cold_start_s']:.2f}s with {h['cold_sessions_opened']:,} session actors opened "
          f"by the scheduler at boot; stop (cancel run_hub) took {h['stop_s']:.2f}s")
    print()
    tl = h["timeline"]
    prev = 0.0
    print(f"{'restart phase, in order (t0 = check-in published, run_hub called)':<62} {'at s':>7} {'step s':>7}")
    print("-" * 78)
    for label, key in sorted(PHASES, key=lambda p: tl.get(p[1], math.inf)):
        if key in tl:
            print(f"{label:<62} {tl[key]:>7.3f} {tl[key] - prev:>+7.3f}")
            prev = tl[key]
        else:
            print(f"{label:<62} {'never':>7}")
    print()
    full = h["full_service_s"]
    if math.isnan(full):
        print(f"full service: NOT reached ({', '.join(h['not_reached'])}): session actors {h['sessions_reached']:,}/"
              f"{h['sessions']:,}, device actors {h['devices_reached']:,}/{h['devices']:,}")
        print(f"  every other condition met at {fmt(h['service_without_all_sessions_s'], '.3f')}s; opening the "
              f"{h['sessions_opened_after']:,} missing session actors afterwards (scheduler asks) took "
              f"{h['sessions_open_rest_s']:.2f}s")
    else:
        print(f"full service after {full:.3f}s (target <= {TARGET_S:.0f}s)")
    print(f"check-in: events.committed_at - publish ts = {fmt(h.get('checkin_db_committed_after_publish_s'), '.3f')}s")
    print(f"baseline (raw consumer restart): pool open {raw['pool_open_s']:.3f}s, connect+subscribe "
          f"{raw['subscribed_s']:.3f}s, t0 message committed+acked {raw['committed_s']:.3f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=2_000, help="rooms = live sessions = devices")
    ap.add_argument("--students", type=int, default=4_000)
    ap.add_argument("--idle", type=float, default=2.0, help="seconds of steady state before the stop")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for full service")
    ap.add_argument("--settle", type=float, default=5.0,
                    help="once all but one condition hold, seconds to wait for the last")
    ap.add_argument("--database-url", default=os.environ.get("CAMPUSHUB_TEST_DATABASE_URL", DEFAULT_SERVER_URL))
    ap.add_argument("--mqtt-url", default=os.environ.get("CAMPUSHUB_TEST_MQTT_URL", DEFAULT_MQTT_URL))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import trio

    from hub.core.config import MqttUrl

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    args.mqtt = MqttUrl.parse(args.mqtt_url)
    run_id = new_run_id()
    prefix = f"bench-{run_id}"
    names = {s: f"campushub_bench_{run_id}_{s}" for s in ("restart", "raw")}
    created: list[str] = []
    report: dict[str, Any] = {}
    try:
        create_databases(args.database_url, list(names.values()), created)
        url = database_url_for(args.database_url, names["restart"])
        raw_url = database_url_for(args.database_url, names["raw"])
        progress(f"restart: run {run_id}, databases {', '.join(created)}: seeding {args.sessions:,} sessions...")
        campus = trio.run(interruptible, partial(migrate_and_seed, url, rooms=args.sessions, students=args.students))
        if any(len(s.enrolled) < 2 for s in campus.sessions):
            raise SystemExit("every session needs two enrolled students: raise --students")

        async def raw_table() -> None:
            from hub.db import asyncio_loop, open_database

            async with asyncio_loop(), open_database(raw_url, max_size=1) as db:
                await db.execute(RAW_TABLE_DDL)

        trio.run(interruptible, raw_table)
        report["raw"] = trio.run(interruptible, raw_restart, args, raw_url, prefix, campus)
        report["hub"] = trio.run(interruptible, hub_restart, args, url, prefix, campus)
        h, raw = report["hub"], report["raw"]
        report["summary"] = {
            "full_service_s": h["full_service_s"],
            "service_without_all_sessions_s": h["service_without_all_sessions_s"],
            "baseline_s": raw["committed_s"],
            "ratio": h["full_service_s"] / raw["committed_s"] if raw["committed_s"] else math.nan,
            "ratio_without_all_sessions": h["service_without_all_sessions_s"] / raw["committed_s"]
            if raw["committed_s"] else math.nan,
            "target_s": TARGET_S,
        }
    except BaseException as exc:
        if is_interrupt(exc):
            progress("interrupted")
            raise SystemExit(130) from None
        raise
    finally:
        discard_broker_sessions(args.mqtt.host, args.mqtt.port, [f"{prefix}-hub", f"{prefix}-raw"])
        drop_databases(args.database_url, created)
    if args.json:
        print(json.dumps(no_nan(report), indent=2, default=str))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
