"""The agent with real drivers (pty fingerprint module, pty sensor, ADMS terminal) through the real broker."""
from __future__ import annotations

import asyncio
import base64
from datetime import datetime, timezone
from pathlib import Path

from edge_helpers import Collector, acks, command, free_port, make_config, new_prefix, publish, run_native
from edge_helpers import start_agent as start
from edge_helpers import stop_agent as stop

from devices.fingerprint.emulator import R30xEmulator
from devices.pty_port import VirtualSerialPort
from edge_agent.adms import AdmsEndpoint
from edge_agent.agent import EdgeAgent
from edge_agent.device_config import DRIVERS, DeviceConfig
from schemas import BiometricMatchEvent, HeartbeatEvent, SensorReadingEvent

SN = "ZK0001"


def device(name: str, kind: str, driver: str, port: str | None = None, **options: object) -> DeviceConfig:
    opts = {k: o.default for k, o in DRIVERS[(kind, driver)].options.items()}
    opts.update(options)
    return DeviceConfig(name, kind, driver, port=port, options=opts)


async def http(port: int, method: str, target: str, body: str = "") -> str:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    data = body.encode()
    w.write(f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
            .encode() + data)
    reply = await r.read()
    w.close()
    return reply.decode().split("\r\n\r\n", 1)[1]


def test_drivers_feed_signed_events_and_obey_commands(tmp_path: Path) -> None:
    prefix = new_prefix()
    emu = R30xEmulator(tmp_path / "fp0", templates={3: b"three"}).start()
    sensor_port = VirtualSerialPort(tmp_path / "ttySENSOR")
    sensor_port.replug()
    adms_port = free_port()
    cfg = make_config(tmp_path, prefix, heartbeat_interval_s=3600, devices=(
        device("door-fp", "fingerprint", "r30x", str(emu.path), poll_interval_s=0.01),
        device("room-sensor", "sensor", "serial_line", str(sensor_port.path)),
        device("gate", "terminal", "zkteco_adms", listen="127.0.0.1", listen_port=adms_port,
               timezone=5.5, serial_numbers=[SN]),
    ))

    async def main() -> None:
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = await start(agent)
            roster = command(cfg, "roster_sync", {"pins": "1001=s-001", "pages": "3=s-003"})
            await publish(prefix, roster, cfg.signing_key)
            await col.wait_for(lambda: roster.id in acks(col))

            # Fingerprint: page 3 is s-003; page 4 is enrolled on the module but not mapped.
            emu.templates[4] = b"four"
            emu.place_finger(4, score=100)
            emu.place_finger(3, score=150)
            await col.wait_for(lambda: len(col.of_kind("biometric_match")) == 1)
            [match] = col.of_kind("biometric_match")
            assert isinstance(match, BiometricMatchEvent)
            assert (match.body.subject, match.body.score) == ("s-003", 0.75)
            assert agent.stats.unmapped_matches == 1

            # Sensor lines, with garbage in between.
            # pyserial flushes input when it opens a port: write only once it is open.
            await col.wait_for(lambda: agent.drivers["room-sensor"].link.is_open)
            sensor_port.write(b"T:22.5,H:41\n\x00\xffnoise\nbat=80 rssi=-67\n")
            await col.wait_for(lambda: len(col.of_kind("sensor_reading")) == 2)
            readings = {e.body.metric: e.body.value for e in col.of_kind("sensor_reading")
                        if isinstance(e, SensorReadingEvent)}
            assert readings == {"temperature": 22.5, "humidity": 41.0}

            # A ZKTeco punch: PIN 1001 at 09:05:33 terminal time (UTC+5:30).
            assert "TimeZone=5.5" in await http(adms_port, "GET", f"/iclock/cdata?SN={SN}&options=all")
            assert await http(adms_port, "POST", f"/iclock/cdata?SN={SN}&table=ATTLOG&Stamp=1",
                              "1001\t2024-09-02 09:05:33\t0\t1\t0\t0\t0\n"
                              "2002\t2024-09-02 09:06:00\t0\t1\t0\t0\t0\n") == "OK"
            await col.wait_for(lambda: len(col.of_kind("biometric_match")) == 2)
            punch = col.of_kind("biometric_match")[1]
            assert punch.body.subject == "s-001"
            assert punch.ts == int(datetime(2024, 9, 2, 3, 35, 33, tzinfo=timezone.utc).timestamp() * 1000)

            # PIN 2002 was parked; a roster naming it releases the punch, and the terminal
            # is told about the new user on its next poll.
            late = command(cfg, "roster_sync", {"pins": "2002=s-002"})
            await publish(prefix, late, cfg.signing_key)
            await col.wait_for(lambda: len(col.of_kind("biometric_match")) == 3 and late.id in acks(col))
            assert col.of_kind("biometric_match")[2].body.subject == "s-002"
            assert "replayed=1" in acks(col)[late.id].body.detail
            assert (await http(adms_port, "GET", f"/iclock/getrequest?SN={SN}")).startswith(
                "C:1:DATA UPDATE USERINFO PIN=2002\t")

            # A template goes to the module; a pushed option restarts only that driver.
            tpl = command(cfg, "template_sync", {"page": 12, "student": "s-012",
                                                 "template": base64.b64encode(b"T" * 512).decode()})
            push = command(cfg, "config_push", {"door-fp.min_score": 0.9})
            await publish(prefix, tpl, cfg.signing_key)
            await publish(prefix, push, cfg.signing_key)
            # Two publishers: the broker may deliver them in either order.
            await col.wait_for(lambda: push.id in acks(col) and tpl.id in acks(col))
            assert acks(col)[tpl.id].body.status == "ok" and "door-fp: stored" in acks(col)[tpl.id].body.detail
            assert emu.templates[12] == b"T" * 512
            assert acks(col)[push.id].body.detail == "applied door-fp.min_score; restarted door-fp"
            assert agent.drivers["door-fp"].min_score == 0.9
            emu.place_finger(12, score=100)                     # 0.5 < 0.9: not a match any more
            await col.wait_for(lambda: agent.drivers["door-fp"].rejected == 1)
            assert isinstance(agent.drivers["gate"], AdmsEndpoint)

            # The heartbeat carries what the drivers know.
            await agent.submit_heartbeat()
            await col.wait_for(lambda: len(col.of_kind("heartbeat")) == 2)
            beat = col.of_kind("heartbeat")[-1]
            assert isinstance(beat, HeartbeatEvent)
            assert (beat.body.battery_pct, beat.body.signal_dbm) == (80.0, -67)
            assert beat.body.error_count >= 1  # the garbage sensor line
            await stop(agent, task)

    try:
        run_native(main())
    finally:
        emu.close()
        sensor_port.close()
