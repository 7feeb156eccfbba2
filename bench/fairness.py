"""Fairness under a flooding device, through the real hub: other devices' publish -> commit delay, and lost messages.

One seeded device floods signed sensor readings (QoS 1) as fast as its connection allows while
``--devices`` other seeded devices each publish one signed reading per second; the hub
(``run_hub(settings, port=None)`` in this process, as bench/pipeline.py starts it) consumes them
from a private Mosquitto configured as ``--broker`` names (a configuration of
bench/broker_flood.py; default ``chosen``, the one docs/reliability.md recommends), on a fresh
migrated database seeded with ``ensure_campus``. Timeline: ``--quiet`` seconds of the devices alone
(the baseline, same hub, same run), then ``--duration`` seconds of flood, then ``--after`` seconds
of the devices alone; then the hub drains until every acknowledged event is accounted for or
nothing changes for ``--idle`` seconds.

Figures:

* delay: ``events.committed_at - events.device_ts`` of the other devices' events (``committed_at``
  is the start of the writer's transaction; ``ts`` has millisecond resolution), p50/p99/max, for
  the events published during the flood (and its drain) and for the quiet baseline; ratio
  flood / quiet.
* lost: event ids the broker acknowledged (PUBACK) to the other devices that are not in
  ``events``; for the flooder, acknowledged - committed - rejected (by the hub's
  ``campushub_events_rejected`` counters, e.g. ``rate_limited`` when the hub has a per-device
  rate limit, and ``duplicate``).
* the flooder's acknowledged rate, the broker's peak RSS, the hub's rejections by reason, and
  the hub's drain: messages it acknowledged from the flood's start to its last acknowledgement
  (its MQTT client's counter, sampled every 100 ms).

``--broker quarantine`` denies the flooding device's uplink in the broker's ACL: what the broker
and the hub do once a flooding device is quarantined there.

``--broker generated`` runs the broker the project generates (hub/adapters/mosquitto_conf.py:
no anonymous access, client id bound to username, the chosen queue limits) with the password and
ACL files exported from the seeded registry and managed by the hub (``CAMPUSHUB_MOSQUITTO_*``):
every publisher logs in with its device's account, and the hub's quarantine keeper
(hub/pipeline/quarantine.py) takes the flooder off the broker once its rate limit trips. Run
``--broker chosen`` in the same sitting as the baseline.

Target (issue 12): 0 lost and p99 under 1 s.

    .venv/bin/python bench/fairness.py [--devices 50] [--quiet 5] [--duration 10] [--after 5]
        [--broker chosen|default|quarantine|generated|...] [--flooder ignores|obeys]
        [--device-burst N] [--device-flood N] [--json] [--save FILE]

Creates ``campushub_bench_<run id>_fair`` and drops it at the end (also on Ctrl-C). A benchmark:
no assertions. Progress goes to stderr; the table (or ``--json``) to stdout.
"""
from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402 - bench/ is not a package
    DEFAULT_SERVER_URL,
    create_databases,
    database_url_for,
    drop_databases,
    fmt,
    hub_settings,
    interruptible,
    is_interrupt,
    load_average,
    migrate_and_seed,
    new_run_id,
    percentile,
    progress,
)
from broker_flood import (  # noqa: E402
    ACL_FILES,
    CONFIGS,
    MOSQUITTO,
    PrivateBroker,
    accepting,
    child_process,
    emit_report,
    expect_ready,
    start_private_mosquitto,
)


def _go(p: subprocess.Popen) -> None:
    assert p.stdin is not None
    p.stdin.write("go\n")
    p.stdin.flush()


def _rejections(hub) -> dict[str, int]:
    """The hub's rejection counters by reason (exact, from /metrics' source)."""
    out: dict[str, int] = {}
    for metric in hub.metrics.events_rejected.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                reason = sample.labels.get("reason", "?")
                out[reason] = out.get(reason, 0) + int(sample.value)
    return out


#: ``--broker generated``: the hub's broker login (written to the generated password file).
HUB_USERNAME = "campushub-hub"


def start_generated_broker(directory: str) -> PrivateBroker:
    """Mosquitto from the project's generated mosquitto.conf, reading ``directory``'s passwd/acl (already
    exported from the registry) and writing ``mosquitto.pid`` for the hub's reloads."""
    from pathlib import Path

    from _common import free_port

    from hub.adapters.mosquitto_conf import render_mosquitto_conf

    port = free_port()
    conf = Path(directory) / "mosquitto.conf"
    conf.write_text(render_mosquitto_conf(
        password_file=Path(directory) / "passwd", acl_file=Path(directory) / "acl", port=port,
        bind_address="127.0.0.1", run_as_user=getpass.getuser()))
    log = open(Path(directory) / "mosquitto.log", "ab")
    process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    (Path(directory) / "mosquitto.pid").write_text(f"{process.pid}\n")
    return accepting(PrivateBroker(process, port, directory), "with the generated mosquitto.conf")


async def run(args: argparse.Namespace, url: str, broker: PrivateBroker, prefix: str,
              devices: list[dict[str, str]], hub_mqtt_url: str | None = None,
              logins: dict[str, Any] | None = None) -> dict[str, Any]:
    import trio

    from hub.app.supervision import run_hub

    flooder_device, normal = devices[0], devices[1:args.devices + 1]
    signed = {"topic_prefix": prefix, "flooder": flooder_device, "devices": normal}
    total = args.quiet + args.duration + args.after
    rss: list[int] = []
    acks: list[tuple[float, int]] = []  # (time, messages the hub has acknowledged), every 100 ms
    out: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        overrides: dict[str, int] = {"device_burst": args.device_burst} if args.device_burst else {}
        if args.device_flood:
            overrides["device_flood_events_per_s"] = args.device_flood
        hub = await nursery.start(partial(run_hub, hub_settings(url, hub_mqtt_url or broker.url, prefix, **overrides),
                                          port=None))
        dev = child_process("devices", {"port": broker.port, "prefix": prefix, "duration": total,
                                        "devices": len(normal), "signed": signed, "logins": logins})
        flood = child_process("flooder", {"port": broker.port, "prefix": prefix, "duration": args.duration,
                                          "obeys": args.flooder == "obeys", "signed": signed, "logins": logins})
        try:
            await trio.to_thread.run_sync(expect_ready, dev, "devices")
            await trio.to_thread.run_sync(expect_ready, flood, "flooder")

            async def sample_rss() -> None:
                while True:
                    rss.append(broker.rss_bytes())
                    acks.append((time.time(), hub.client.stats.acked))
                    await trio.sleep(0.1)

            nursery.start_soon(sample_rss)
            t0 = time.time()
            _go(dev)
            progress(f"fairness: {len(normal)} devices at 1/s; flood starts in {args.quiet:.0f}s")
            await trio.sleep(args.quiet)
            flood_start = time.time()
            _go(flood)
            progress(f"fairness: flooding for {args.duration:.0f}s")
            flood_result = json.loads((await trio.to_thread.run_sync(
                partial(flood.communicate, timeout=args.duration + 60)))[0].strip().splitlines()[-1])
            flood_end = time.time()
            dev_result = json.loads((await trio.to_thread.run_sync(
                partial(dev.communicate, timeout=total + 60)))[0].strip().splitlines()[-1])
        finally:
            for p in (dev, flood):
                if p.poll() is None:
                    p.kill()
                    p.wait()
        acked_ids = dev_result["acked_ids"]
        flood_acked = len(flood_result["acked"])
        normal_ids = [d["id"] for d in normal]
        progress(f"fairness: publishers done ({flood_acked:,} flood and {len(acked_ids):,} device events "
                 f"acknowledged); waiting for the hub to drain")

        async def accounted() -> tuple[int, int]:
            n_dev = await hub.db.fetchval("SELECT count(*) FROM events WHERE device_id = ANY($1::text[])",
                                          normal_ids)
            n_flood = await hub.db.fetchval("SELECT count(*) FROM events WHERE device_id = $1",
                                            flooder_device["id"])
            return n_dev, n_flood

        from _common import adopt_hub_loop

        adopt_hub_loop(hub)
        last, last_change = None, time.monotonic()
        deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < deadline:
            n_dev, n_flood = await accounted()
            rejected = sum(_rejections(hub).values())
            state = (n_dev, n_flood, rejected)
            if n_dev >= len(acked_ids) and n_flood + rejected >= flood_acked:
                break
            if state != last:
                last, last_change = state, time.monotonic()
            elif time.monotonic() - last_change > args.idle:
                break
            await trio.sleep(0.5)
        drained_at = time.time()
        rows = await hub.db.fetch(
            "SELECT encode(uuid_send(event_id), 'hex') AS id, extract(epoch FROM device_ts)::float8 AS ts,"
            " extract(epoch FROM committed_at - device_ts)::float8 AS delay"
            " FROM events WHERE device_id = ANY($1::text[])", normal_ids)
        n_flood_committed = await hub.db.fetchval("SELECT count(*) FROM events WHERE device_id = $1",
                                                  flooder_device["id"])
        rejections = _rejections(hub)
        stats = hub.client.stats
        out = {
            "t0": t0, "flood_start": flood_start, "flood_end": flood_end, "drained_at": drained_at,
            "flood": flood_result | {"acked": flood_acked}, "devices": dev_result | {"acked_ids": len(acked_ids)},
            "rows": [(r["id"], r["ts"], r["delay"]) for r in rows], "acked_ids": acked_ids,
            "flood_committed": n_flood_committed, "rejections": rejections,
            "hub_mqtt": {"received": stats.received, "acked": stats.acked, "reconnects": stats.reconnects},
            "rss": rss, "acks": acks,
            "quarantines": int(hub.metrics.quarantines_started._value.get()),
        }
        nursery.cancel_scope.cancel()
    return out


def summarize(raw: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    present = {r[0]: r for r in raw["rows"]}
    acked = raw["acked_ids"]
    lost = [i for i in acked if i not in present]
    quiet = sorted(d for _, ts, d in raw["rows"] if ts < raw["flood_start"])
    flood = sorted(d for _, ts, d in raw["rows"] if ts >= raw["flood_start"])
    during = sorted(d for _, ts, d in raw["rows"] if raw["flood_start"] <= ts < raw["flood_end"])

    def pct(values: list[float]) -> dict[str, float]:
        return {"p50_ms": percentile(values, 50) * 1000, "p99_ms": percentile(values, 99) * 1000,
                "max_ms": values[-1] * 1000 if values else float("nan"), "n": len(values)}

    flood_acked = raw["flood"]["acked"]
    flood_rejected = sum(raw["rejections"].values())
    # The hub's drain: messages it acknowledged from the flood's start until its last acknowledgement.
    acks = raw["acks"]
    final = acks[-1][1] if acks else 0
    last_ack_at = next((t for t, n in acks if n >= final), float("nan"))
    at_start = max((n for t, n in acks if t <= raw["flood_start"]), default=0)
    drain_s = last_ack_at - raw["flood_start"]
    q, f = pct(quiet), pct(flood)
    return {
        "devices_acked": len(acked), "devices_committed": len(acked) - len(lost), "devices_lost": len(lost),
        "devices_published": raw["devices"]["published"], "devices_disconnects": raw["devices"]["disconnects"],
        "quiet": q, "flood_and_after": f, "during_flood": pct(during),
        "p99_ratio_flood_vs_quiet": f["p99_ms"] / q["p99_ms"] if q["p99_ms"] else float("nan"),
        "flooder_published": raw["flood"]["published"], "flooder_acked": flood_acked,
        "flooder_acked_per_s": flood_acked / raw["flood"]["elapsed_s"],
        "flooder_committed": raw["flood_committed"], "rejected": raw["rejections"],
        "flooder_unaccounted": flood_acked - raw["flood_committed"] - flood_rejected,
        "flooder_disconnects": raw["flood"]["disconnects"],
        "broker_receive_maximum": raw["flood"]["server_receive_maximum"],
        "hub_last_ack_after_flood_s": last_ack_at - raw["flood_end"],
        "hub_acked_per_s_from_flood_start": (final - at_start) / drain_s if drain_s > 0 else float("nan"),
        "broker_rss_peak_mib": max(raw["rss"] or [0]) / 2**20, "hub_mqtt": raw["hub_mqtt"],
        "quarantines_started": raw.get("quarantines", 0),
        "met": len(lost) == 0 and f["p99_ms"] < 1000,
    }


def print_table(report: dict[str, Any]) -> None:
    c, s = report["config"], report["summary"]
    print(f"fairness: {c['devices']} devices at 1/s + 1 flooding device ({c['flooder']} Receive Maximum), "
          f"quiet {c['quiet']:.0f}s / flood {c['duration']:.0f}s / after {c['after']:.0f}s; broker "
          f"'{c['broker']}' ({' / '.join(c['broker_settings']) or 'Mosquitto defaults'}); hub per-device rate "
          f"limit: {c['hub_rate_limit']}; load average {' '.join(map(str, report['load_average']))} at start")
    print()
    head = f"{'other devices publish -> commit':<38} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    print(head)
    print("-" * len(head))
    for label, key in (("quiet (baseline, same run)", "quiet"), ("published during the flood", "during_flood"),
                       ("published during flood and after", "flood_and_after")):
        x = s[key]
        print(f"{label:<38} {x['n']:>6,} {fmt(x['p50_ms'], ',.0f'):>8} {fmt(x['p99_ms'], ',.0f'):>8} "
              f"{fmt(x['max_ms'], ',.0f'):>8}")
    print(f"{'p99 ratio flood / quiet':<38} {'':>6} {'':>8} {fmt(s['p99_ratio_flood_vs_quiet'], '.1f') + 'x':>8}")
    print()
    print(f"other devices: {s['devices_published']:,} published, {s['devices_acked']:,} acknowledged by the broker, "
          f"{s['devices_committed']:,} committed, LOST {s['devices_lost']:,}; "
          f"{s['devices_disconnects']} disconnects")
    print(f"flooder: {s['flooder_acked']:,} acknowledged ({s['flooder_acked_per_s']:,.0f}/s), "
          f"{s['flooder_committed']:,} committed, rejected {s['rejected'] or '{}'}, "
          f"unaccounted {s['flooder_unaccounted']:,}; {len(s['flooder_disconnects'])} disconnects; the broker's "
          f"CONNACK Receive Maximum {s['broker_receive_maximum'][-1] if s['broker_receive_maximum'] else '-'}")
    print(f"hub: last acknowledgement {s['hub_last_ack_after_flood_s']:.1f}s after the flood ended, "
          f"{s['hub_acked_per_s_from_flood_start']:,.0f} messages/s acknowledged from the flood's start to then; "
          f"broker RSS peak "
          f"{s['broker_rss_peak_mib']:.1f} MiB; hub MQTT {s['hub_mqtt']}; quarantines started "
          f"{s.get('quarantines_started', 0)}")
    print(f"target (0 lost, p99 < 1 s during flood and after): {'met' if s['met'] else 'NOT met'}")


#: What ``--broker generated`` runs, for the table: the generated mosquitto.conf's queue limits and guards.
_GENERATED_SETTINGS = ["generated mosquitto.conf (auth, ACL, use_username_as_clientid, QueueLimits defaults)",
                       "password/ACL managed by the hub (quarantine on)"]


def _exporter(broker_dir: str | None, prefix: str, hub_password: str) -> Any:
    """``migrate_and_seed``'s ``extra``: export the seeded registry's broker files (``--broker generated``)."""
    if broker_dir is None:
        return None

    async def export(db: Any, campus: Any) -> None:
        from pathlib import Path

        from hub.adapters.mosquitto_auth import HubAccount, MosquittoFiles, export_mosquitto
        from schemas import Topics

        files = MosquittoFiles(Path(broker_dir) / "passwd", Path(broker_dir) / "acl")
        await export_mosquitto(db, Topics(prefix), files, HubAccount.from_password(HUB_USERNAME, hub_password))

    return export


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=50, help="well-behaved devices, one event/s each")
    ap.add_argument("--quiet", type=float, default=5.0, help="seconds of devices alone before the flood")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of flood")
    ap.add_argument("--after", type=float, default=5.0, help="seconds of devices alone after the flood")
    ap.add_argument("--broker", default="chosen", choices=[*sorted(CONFIGS), "generated"],
                    help="the private broker's configuration (bench/broker_flood.py), or the project's "
                         "generated one with the hub managing its files (quarantine in effect)")
    ap.add_argument("--flooder", choices=["ignores", "obeys"], default="ignores",
                    help="whether the flooder caps its inflight at the broker's Receive Maximum")
    ap.add_argument("--device-burst", type=int, default=0,
                    help="the hub's per-device burst (CAMPUSHUB_DEVICE_BURST; 0: the default)")
    ap.add_argument("--device-flood", type=int, default=0,
                    help="the hub's flood threshold, events per second of a device's clock "
                         "(CAMPUSHUB_DEVICE_FLOOD_EVENTS_PER_S; 0: the default)")
    ap.add_argument("--idle", type=float, default=5.0, help="drain ends when nothing changed for this long")
    ap.add_argument("--drain-timeout", type=float, default=120.0)
    ap.add_argument("--database-url", default=os.environ.get("CAMPUSHUB_TEST_DATABASE_URL", DEFAULT_SERVER_URL))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", metavar="FILE", help="also write the JSON report to FILE")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("hub.pipeline.quarantine").setLevel(logging.INFO)  # the keeper's reaction time
    import trio

    from hub.core.config import Settings

    run_id = new_run_id()
    prefix = f"bench-{run_id}"
    name = f"campushub_bench_{run_id}_fair"
    created: list[str] = []
    broker: PrivateBroker | None = None
    load = load_average()
    generated = args.broker == "generated"
    broker_dir = tempfile.mkdtemp(prefix="campushub-fair-") if generated else None
    hub_password = secrets.token_urlsafe(16)
    try:
        create_databases(args.database_url, [name], created)
        url = database_url_for(args.database_url, name)
        campus = trio.run(interruptible, partial(migrate_and_seed, url, rooms=args.devices + 1, students=20,
                                                 extra=_exporter(broker_dir, prefix, hub_password)))
        devices = [{"id": d.device_id, "alg": d.alg, "key": d.signing_key.hex()} for d in campus.devices]
        if len(devices) < args.devices + 1:
            raise SystemExit(f"the seeded campus has {len(devices)} devices, {args.devices + 1} needed")
        hub_mqtt_url, logins = None, None
        if broker_dir is not None:
            from hub.db.seed import seeded_broker_password

            broker = start_generated_broker(broker_dir)
            os.environ.update(CAMPUSHUB_MOSQUITTO_PASSWORD_FILE=os.path.join(broker_dir, "passwd"),
                              CAMPUSHUB_MOSQUITTO_ACL_FILE=os.path.join(broker_dir, "acl"),
                              CAMPUSHUB_MOSQUITTO_PID_FILE=os.path.join(broker_dir, "mosquitto.pid"))
            hub_mqtt_url = f"mqtt://{HUB_USERNAME}:{hub_password}@127.0.0.1:{broker.port}"
            accounts = [(d.device_id, seeded_broker_password(d.signing_key)) for d in campus.devices]
            logins = {"flooder": accounts[0], "devices": accounts[1:args.devices + 1]}
        else:
            broker = start_private_mosquitto(CONFIGS[args.broker][0], ACL_FILES.get(args.broker))
        progress(f"fairness: run {run_id}, database {name}, broker '{args.broker}' on port {broker.port}")
        raw = trio.run(interruptible, run, args, url, broker, prefix, devices, hub_mqtt_url, logins)
    except BaseException as exc:
        if is_interrupt(exc):
            progress("interrupted")
            raise SystemExit(130) from None
        raise
    finally:
        if broker is not None:
            broker.stop()
        if broker_dir is not None:
            shutil.rmtree(broker_dir, ignore_errors=True)
        drop_databases(args.database_url, created)
    rate_limit = (f"{Settings.device_rate_per_s:g}/s, burst {args.device_burst or Settings.device_burst:,}, "
                  f"flood {args.device_flood or Settings.device_flood_events_per_s:,} per device-clock second"
                  if hasattr(Settings, "device_rate_per_s") else "none")
    report = {
        "config": {"devices": args.devices, "quiet": args.quiet, "duration": args.duration, "after": args.after,
                   "broker": args.broker, "flooder": args.flooder,
                   "broker_settings": _GENERATED_SETTINGS if generated else CONFIGS[args.broker][0],
                   "hub_rate_limit": rate_limit},
        "load_average": load, "cpus": os.cpu_count(),
        "summary": summarize(raw, args),
    }
    emit_report(report, args, print_table)


if __name__ == "__main__":
    main()
