"""Device online/offline in the hub: retained status, the broker's Last Will, and the heartbeat timer."""
from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from functools import partial

import trio
from support.hub_helpers import eventually

from hub.app.supervision import run_hub
from schemas import (
    DeviceStatus,
    Heartbeat,
    HeartbeatEvent,
    Topics,
    encode_event,
    encode_status,
    new_event_id,
)

OFFLINE_AFTER_S = 1.5


async def _health(db, device_id: str):
    return await db.fetchrow("SELECT online, reason FROM device_health WHERE device_id = $1", device_id)


async def test_killed_edge_agent_goes_offline_through_its_last_will(hub, hub_settings, hub_campus, test_db, tmp_path):
    device = hub_campus.devices[0]
    config = tmp_path / "agent.toml"
    config.write_text(
        f'device_id = "{device.device_id}"\nroom_id = "{device.room_id}"\nalg = "{device.alg}"\n'
        f'signing_key = "{device.signing_key.hex()}"\nmqtt_url = "{hub_settings.mqtt_url}"\n'
        f'topic_prefix = "{hub_settings.topic_prefix}"\noutbox = "{tmp_path / "outbox.sqlite"}"\n')
    agent = await trio.lowlevel.open_process(
        [sys.executable, "-m", "hub", "edge-agent", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        online = await eventually(lambda: _online(test_db, device.device_id, True), timeout=20)
        assert online["online"] is True
    finally:
        agent.send_signal(signal.SIGKILL)
        await agent.wait()
    killed_at = time.monotonic()
    offline = await eventually(lambda: _online(test_db, device.device_id, False), timeout=20)
    assert offline["reason"] == "connection lost"
    # The broker notices the dead TCP connection at once on loopback; the hub adds only its commit.
    assert time.monotonic() - killed_at < 5


async def test_silent_device_goes_offline_on_its_heartbeat_timer(hub_settings, hub_campus, test_db, publisher):
    settings = dataclasses.replace(hub_settings, device_offline_after_s=OFFLINE_AFTER_S)
    device = hub_campus.devices[1]
    topics = Topics(settings.topic_prefix)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_hub, settings, port=None))
        await publisher.publish(
            topics.status(device.device_id),
            encode_status(DeviceStatus(state="online", ts=int(time.time() * 1000), reason="connected")),
            retain=True, wait_for_ack=True)
        heartbeat = HeartbeatEvent(v=1, id=new_event_id(), device=device.device_id, ts=int(time.time() * 1000),
                                   seq=1, body=Heartbeat(uptime_s=5, firmware="fw-1", outbox_depth=3))
        await publisher.publish(topics.uplink(device.device_id),
                                encode_event(heartbeat, device.alg, device.signing_key), wait_for_ack=True)
        # The status and the heartbeat may commit in separate batches: wait for the heartbeat's.
        row = await eventually(lambda: test_db.fetchrow(
            "SELECT online, firmware, outbox_depth, last_seen FROM device_health"
            " WHERE device_id = $1 AND firmware = 'fw-1'", device.device_id))
        last_heard = time.monotonic()
        assert row["online"] and row["outbox_depth"] == 3 and row["last_seen"] is not None

        offline = await eventually(lambda: _online(test_db, device.device_id, False), timeout=OFFLINE_AFTER_S + 5)
        silent_for = time.monotonic() - last_heard
        assert offline["reason"] == "heartbeat timeout"
        # Detected by the device's own timer: within the timeout plus 1 s, never a sweep period later.
        assert OFFLINE_AFTER_S - 0.1 <= silent_for <= OFFLINE_AFTER_S + 1.0, silent_for
        # Clear the retained status so it cannot leak into anything else on the broker.
        await publisher.publish(topics.status(device.device_id), b"", retain=True, wait_for_ack=True)
        nursery.cancel_scope.cancel()


async def _online(db, device_id: str, online: bool):
    row = await _health(db, device_id)
    return row if row is not None and row["online"] is online else None
