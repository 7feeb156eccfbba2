"""The edge agent against the real Mosquitto: signed events, Last Will, outages, heartbeats."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from edge_helpers import (
    RUNNERS,
    Collector,
    CuttableProxy,
    free_port,
    make_config,
    new_prefix,
    retained_status,
    run_native,
)

from edge_agent.agent import EdgeAgent
from schemas import HeartbeatEvent, QrScanEvent, SensorReadingEvent, WireError, verify


async def start(agent: EdgeAgent, online: bool = True) -> asyncio.Task[None]:
    task = asyncio.create_task(agent.run())
    if online:
        await asyncio.wait_for(agent.wait_online(), 5)
    return task


async def stop(agent: EdgeAgent, task: asyncio.Task[None]) -> None:
    agent.stop()
    await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("loop", sorted(RUNNERS))
def test_qr_scan_is_signed_published_and_verifiable(tmp_path: Path, loop: str) -> None:
    prefix = new_prefix()
    cfg = make_config(tmp_path, prefix)

    async def main() -> None:
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = await start(agent)
            at = time.time() - 1.5
            seq = await agent.submit_qr("CH1.s-001.1234.abcdefghijklmnop", at=at)
            await col.wait_for(lambda: len(col.of_kind("qr_scan")) == 1)
            [(frame, event)] = [(f, e) for f, e in col.events() if isinstance(e, QrScanEvent)]
            verify(frame, cfg.signing_key)  # raises if the signature is wrong
            with pytest.raises(WireError):
                verify(frame, b"x" * 32)
            assert isinstance(event, QrScanEvent)
            assert event.device == cfg.device_id and event.seq == seq == 2  # 1: startup heartbeat
            assert event.body.text == "CH1.s-001.1234.abcdefghijklmnop"
            assert event.ts == int(at * 1000) and len(event.id) == 16
            await col.wait_for(lambda: agent.outbox_depth == 0)
            assert agent.stats.published == {"qr_scan": 1, "heartbeat": 1}
            await stop(agent, task)
            await col.wait_for(lambda: [s.state for s in col.statuses(cfg.device_id)] == ["online", "offline"])
            assert col.statuses(cfg.device_id)[-1].reason == "shutdown"
            status, retained = await retained_status(prefix, cfg.device_id)
            assert (status.state, status.reason, retained) == ("offline", "shutdown", True)

    RUNNERS[loop](main())


def test_ed25519_signatures_verify_with_the_public_key(tmp_path: Path) -> None:
    prefix = new_prefix()
    seed = bytes(range(32))
    cfg = make_config(tmp_path, prefix, alg="ed25519", signing_key=seed)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    async def main() -> None:
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = await start(agent)
            await agent.submit_sensor("co2", 612.0, "ppm")
            await col.wait_for(lambda: len(col.of_kind("sensor_reading")) == 1)
            frame, event = next((f, e) for f, e in col.events() if isinstance(e, SensorReadingEvent))
            assert frame.alg == "ed25519"
            verify(frame, public)
            assert (event.body.metric, event.body.value, event.body.unit) == ("co2", 612.0, "ppm")
            await stop(agent, task)

    run_native(main())


def test_many_events_arrive_in_seq_order_with_bounded_inflight(tmp_path: Path) -> None:
    prefix = new_prefix()
    cfg = make_config(tmp_path, prefix, max_inflight=4)

    async def main() -> None:
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = await start(agent)
            for i in range(150):
                await agent.submit_qr(f"scan-{i}")
            await col.wait_for(lambda: len(col.of_kind("qr_scan")) == 150)
            seqs = [e.seq for e in col.of_kind("qr_scan")]
            assert seqs == sorted(seqs) and len(set(seqs)) == 150
            assert [e.body.text for e in col.of_kind("qr_scan")] == [f"scan-{i}" for i in range(150)]
            await stop(agent, task)
            assert agent.outbox_depth == 0 and agent.stats.published["qr_scan"] == 150

    run_native(main())


def test_events_made_while_the_broker_is_unreachable_arrive_later(tmp_path: Path) -> None:
    prefix = new_prefix()
    dead = make_config(tmp_path, prefix, mqtt_url=f"mqtt://127.0.0.1:{free_port()}")
    live = make_config(tmp_path, prefix, signing_key=dead.signing_key)

    async def offline_phase() -> None:
        async with EdgeAgent(dead) as agent:
            task = await start(agent, online=False)
            for i in range(5):
                await agent.submit_qr(f"offline-{i}")
            await agent.submit_sensor("temperature", 21.5, "°C")
            await asyncio.sleep(0.3)  # a few refused connection attempts
            assert not agent.connected and agent.stats.connects == 0
            assert agent.outbox_depth == 7  # + the startup heartbeat
            started = time.monotonic()
            await stop(agent, task)
            assert time.monotonic() - started < 1.0  # nothing to drain into: stops at once

    async def online_phase() -> None:
        async with Collector(prefix) as col, EdgeAgent(live) as agent:
            task = await start(agent)
            await agent.submit_qr("online-0")
            await col.wait_for(lambda: len(col.of_kind("qr_scan")) == 6)
            texts = [e.body.text for e in col.of_kind("qr_scan")]
            assert texts == [f"offline-{i}" for i in range(5)] + ["online-0"]  # backlog first
            seqs = [e.seq for _, e in col.events()]
            assert seqs == sorted(seqs) and seqs[0] == 1  # seq continued across the restart
            # Heartbeats report the backlog: the offline agent's first one saw an empty
            # outbox, this agent's first one the 5 scans + sensor + that heartbeat.
            assert [e.body.outbox_depth for e in col.of_kind("heartbeat")][:2] == [0, 7]
            assert len(col.of_kind("sensor_reading")) == 1
            for frame, _ in col.events():
                verify(frame, live.signing_key)
            await stop(agent, task)
            assert agent.outbox_depth == 0

    run_native(offline_phase())
    run_native(online_phase())


def test_outage_last_will_and_recovery_through_a_cut_link(tmp_path: Path) -> None:
    """Cut the network between agent and broker: the broker publishes the Last Will
    (retained), events pile up in the outbox, and all arrive after the link returns."""
    prefix = new_prefix()

    async def main() -> None:
        proxy = CuttableProxy()
        await proxy.start()
        cfg = make_config(tmp_path, prefix, mqtt_url=proxy.url, keepalive_s=5)
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = await start(agent)
            await agent.submit_qr("before")
            await col.wait_for(lambda: len(col.of_kind("qr_scan")) == 1)
            await proxy.cut()
            await col.wait_for(lambda: [s.state for s in col.statuses(cfg.device_id)] == ["online", "offline"])
            will = col.statuses(cfg.device_id)[-1]
            assert will.reason == "connection lost"
            status, retained = await retained_status(prefix, cfg.device_id)
            assert (status.state, status.reason, retained) == ("offline", "connection lost", True)
            await col.wait_for(lambda: not agent.connected)
            for i in range(4):
                await agent.submit_qr(f"during-{i}")
            assert agent.outbox_depth >= 4
            await proxy.start()  # link back: the agent reconnects by itself
            await col.wait_for(lambda: len(col.of_kind("qr_scan")) >= 5, timeout=5)
            assert [e.body.text for e in col.of_kind("qr_scan")][-4:] == [f"during-{i}" for i in range(4)]
            assert col.statuses(cfg.device_id)[-1].state == "online" and agent.stats.connects == 2
            await stop(agent, task)
        await proxy.close()

    run_native(main())


def test_drop_connection_fires_the_last_will_and_the_agent_reconnects(tmp_path: Path) -> None:
    prefix = new_prefix()
    cfg = make_config(tmp_path, prefix)

    async def main() -> None:
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = await start(agent)
            assert agent.drop_connection()
            await col.wait_for(lambda: [(s.state, s.reason) for s in col.statuses(cfg.device_id)]
                               == [("online", "connected"), ("offline", "connection lost"), ("online", "connected")])
            assert agent.stats.connects == 2
            await stop(agent, task)
            assert col.statuses(cfg.device_id)[-1].reason == "shutdown"

    run_native(main())


def test_cancelling_run_still_shuts_down_cleanly(tmp_path: Path) -> None:
    prefix = new_prefix()
    cfg = make_config(tmp_path, prefix)

    async def main() -> None:
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = await start(agent)
            await agent.submit_qr("last words")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await col.wait_for(lambda: len(col.statuses(cfg.device_id)) == 2)
            assert col.statuses(cfg.device_id)[-1].reason == "shutdown"
            assert [e.body.text for e in col.of_kind("qr_scan")] == ["last words"]  # drained first
            assert agent.outbox_depth == 0

    run_native(main())


def test_heartbeat_contents(tmp_path: Path) -> None:
    prefix = new_prefix()
    cfg = make_config(tmp_path, prefix, heartbeat_interval_s=0.25, firmware="edge-test/1.2")

    async def main() -> None:
        async with Collector(prefix) as col, EdgeAgent(cfg) as agent:
            task = await start(agent)
            await col.wait_for(lambda: any(b.body.uptime_s >= 1 for b in col.of_kind("heartbeat")), timeout=5)
            await stop(agent, task)
            beats = col.of_kind("heartbeat")
            assert all(isinstance(b, HeartbeatEvent) and b.body.firmware == "edge-test/1.2" for b in beats)
            uptimes = [b.body.uptime_s for b in beats]
            assert uptimes == sorted(uptimes) and uptimes[0] == 0 and 4 <= uptimes.index(1) <= 5
            assert all(b.body.outbox_depth >= 0 for b in beats)
            gaps = [(b.ts - a.ts) / 1000 for a, b in zip(beats, beats[1:])]
            assert all(0.2 < g < 0.5 for g in gaps)

    run_native(main())


def test_outbox_full_refuses_checkins_but_keeps_running(tmp_path: Path) -> None:
    prefix = new_prefix()
    cfg = make_config(tmp_path, prefix, mqtt_url=f"mqtt://127.0.0.1:{free_port()}", max_outbox_rows=3)

    async def main() -> None:
        from edge_agent.outbox import OutboxFull

        async with EdgeAgent(cfg) as agent:
            task = await start(agent, online=False)  # stores 1 heartbeat
            await agent.submit_sensor("co2", 500, "ppm")
            await agent.submit_qr("a")
            assert await agent.submit_qr("b") == 4  # evicted the oldest telemetry
            assert await agent.submit_qr("c") == 5
            with pytest.raises(OutboxFull):
                await agent.submit_qr("d")
            assert await agent.submit_sensor("co2", 501, "ppm") is None
            stats = agent.stats
            assert stats.dropped == {"heartbeat": 1, "sensor_reading": 2} and stats.rejected_full == 1
            with pytest.raises(ValueError):
                await agent.submit_qr("")
            with pytest.raises(ValueError):
                await agent.submit_sensor("CO2!", 1, "ppm")
            await stop(agent, task)

    run_native(main())
