"""Device online/offline in the hub: retained status, the broker's Last Will, and the heartbeat timer;
and the statuses and Wills it refuses (issue 12 §3: only what the device signed, in order, changes its health)."""
from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from functools import partial

import msgspec
import trio
from mqtt.mqtt_helpers import drop_socket
from support.hub_fixtures import broker_client
from support.hub_helpers import eventually

from hub.app.supervision import run_hub
from hub.core.campus import DeviceCredentials
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
        await publisher.publish(topics.status(device.device_id),
                                _signed_status(device, "online", int(time.time() * 1000), "connected"),
                                retain=True, wait_for_ack=True)
        heartbeat = HeartbeatEvent(v=1, id=new_event_id(), device=device.device_id, ts=int(time.time() * 1000),
                                   seq=1, body=Heartbeat(uptime_s=5, firmware="fw-1", outbox_depth=3))
        # The timer starts when the actor takes the heartbeat: after this, and before its commit shows.
        sent = time.monotonic()
        await publisher.publish(topics.uplink(device.device_id),
                                encode_event(heartbeat, device.alg, device.signing_key), wait_for_ack=True)
        # The status and the heartbeat may commit in separate batches: wait for the heartbeat's.
        row = await eventually(lambda: test_db.fetchrow(
            "SELECT online, firmware, outbox_depth, last_seen FROM device_health"
            " WHERE device_id = $1 AND firmware = 'fw-1'", device.device_id))
        last_heard = time.monotonic()
        assert row["online"] and row["outbox_depth"] == 3 and row["last_seen"] is not None

        offline = await eventually(lambda: _online(test_db, device.device_id, False), timeout=OFFLINE_AFTER_S + 5)
        seen_offline = time.monotonic()
        assert offline["reason"] == "heartbeat timeout"
        # Detected by the device's own timer: not before the timeout, and within it plus 1 s of the
        # heartbeat's commit, never a sweep period later. (From the send for the lower bound, from the
        # commit seen for the upper: the actor took the heartbeat between the two.)
        assert seen_offline - sent >= OFFLINE_AFTER_S - 0.1, seen_offline - sent
        assert seen_offline - last_heard <= OFFLINE_AFTER_S + 1.0, seen_offline - last_heard
        # Clear the retained status so it cannot leak into anything else on the broker.
        await publisher.publish(topics.status(device.device_id), b"", retain=True, wait_for_ack=True)
        nursery.cancel_scope.cancel()


async def _online(db, device_id: str, online: bool):
    row = await _health(db, device_id)
    return row if row is not None and row["online"] is online else None


def _signed_status(device: DeviceCredentials, state: str, ts: int, reason: str = "", *,
                   key: bytes | None = None) -> bytes:
    """A status as ``device`` signs it (or signed with another ``key``: a forgery)."""
    status = DeviceStatus(device.device_id, state, ts, reason)  # type: ignore[arg-type]
    return encode_status(status, device.alg, device.signing_key if key is None else key)  # type: ignore[arg-type]


def _heartbeat(device: DeviceCredentials, seq: int) -> bytes:
    event = HeartbeatEvent(v=1, id=new_event_id(), device=device.device_id, ts=int(time.time() * 1000),
                           seq=seq, body=Heartbeat(uptime_s=5, firmware="fw-1", outbox_depth=0))
    return encode_event(event, device.alg, device.signing_key)  # type: ignore[arg-type]


_PROCESSED = "campushub_ingest_to_commit_seconds_count"


def _metric(hub, name: str, **labels: str) -> float:
    return hub.metrics.registry.get_sample_value(name, labels or None) or 0.0


async def _fire_will(settings, topic: str, payload: bytes) -> None:
    """Connect with ``payload`` as Last Will on ``topic`` and lose the connection: the broker publishes it."""
    client = broker_client(settings, client_id=f"will-{time.monotonic_ns()}", clean_start=True,
                           will=(topic, payload, 1, True))
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        drop_socket(client)  # no DISCONNECT: the broker publishes the Will
        with trio.fail_after(5):
            while client.generation < 2 or not client.connected:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()  # a clean DISCONNECT this time: no second Will


async def test_only_statuses_the_device_signed_change_its_health_and_in_order(
    hub, hub_settings, hub_campus, test_db, publisher,
):
    """Each attack of issue 12 §3 through the real broker, against a real hub: forged offline, forged online
    for a dead device, a forged Will fired by the broker, an unsigned (old-format) Will, a status 110 s ahead,
    a replayed online status after its Will, the Will of an older connection, an empty retained publish."""
    device = hub_campus.devices[0]
    topic = Topics(hub_settings.topic_prefix).status(device.device_id)
    forger_key = b"k" * 32

    async def send(payload: bytes) -> None:
        before = _metric(hub, _PROCESSED)
        await publisher.publish(topic, payload, qos=1, wait_for_ack=True)
        await eventually(lambda: _processed_beyond(before))

    async def _processed_beyond(before: float) -> bool:
        return _metric(hub, _PROCESSED) > before

    async def health():
        return await test_db.fetchrow("SELECT online, reason FROM device_health WHERE device_id = $1",
                                      device.device_id)

    async def health_is(online: bool, reason: str):
        row = await health()
        return row if row is not None and (row["online"], row["reason"]) == (online, reason) else None

    rejected = {r: _metric(hub, "campushub_events_rejected_total", reason=r)
                for r in ("bad_signature", "unsigned_status", "clock_skew", "stale_status", "empty_status")}
    t1 = int(time.time() * 1000) - 5_000
    online_1 = _signed_status(device, "online", t1, "connected")
    await send(online_1)
    await eventually(lambda: health_is(True, "connected"))

    # An outsider cannot take it offline: forged, fired by the broker as a Will, unsigned, or pinned ahead.
    await send(_signed_status(device, "offline", t1 + 1, "connection lost", key=forger_key))
    await _fire_will(hub_settings, topic, _signed_status(device, "offline", t1 + 2, "connection lost", key=forger_key))
    await send(msgspec.msgpack.encode({"state": "offline", "ts": t1 + 3, "reason": "connection lost"}))
    await send(_signed_status(device, "offline", int(time.time() * 1000) + 110_000, "shutdown"))
    async def all_refused():  # the Will reaches the hub through the broker: wait for its rejection
        return _metric(hub, "campushub_events_rejected_total", reason="bad_signature") - rejected["bad_signature"] == 2
    await eventually(all_refused)
    assert await health_is(True, "connected")

    # The device's own Will of this connection (ts + 1) does.
    will_1 = _signed_status(device, "offline", t1 + 1, "connection lost")
    await send(will_1)
    await eventually(lambda: health_is(False, "connection lost"))

    # A dead device cannot be shown online: a forged online status, its own online status replayed
    # (the same bytes: a redelivery, nothing changes) or re-sent with another reason (older: refused).
    await send(_signed_status(device, "online", int(time.time() * 1000), "connected", key=forger_key))
    await send(online_1)
    await send(_signed_status(device, "online", t1, "replayed"))
    assert await health_is(False, "connection lost")

    # A new connection, then the Will of the first one again: older, refused.
    await send(_signed_status(device, "online", t1 + 3_000, "connected"))
    await eventually(lambda: health_is(True, "connected"))
    await send(_signed_status(device, "offline", t1 + 1, "late will"))
    # An empty retained publish erases the broker's copy but not the hub's health.
    await send(b"")
    assert await health_is(True, "connected")

    counted = {r: _metric(hub, "campushub_events_rejected_total", reason=r) - n for r, n in rejected.items()}
    assert counted == {"bad_signature": 3, "unsigned_status": 1, "clock_skew": 1, "stale_status": 2,
                       "empty_status": 1}
    kept = {r["reason"] for r in await test_db.fetch("SELECT DISTINCT reason FROM rejected_events WHERE topic = $1",
                                                      topic)}
    assert kept == set(counted)
    history = await test_db.fetch("SELECT change FROM device_health_history WHERE device_id = $1 ORDER BY id",
                                  device.device_id)
    assert [r["change"] for r in history] == ["online", "offline", "online"]
    await publisher.publish(topic, b"", retain=True, wait_for_ack=True)  # leave no retained status behind


async def test_the_devices_own_events_win_over_a_status_stamped_at_the_margin(
    hub, hub_settings, hub_campus, test_db, publisher,
):
    """A fast device clock, within the 10 s margin: its offline status is applied and holds against
    its own next (correctly stamped) status, but its next signed event brings it back at once."""
    device = hub_campus.devices[1]
    topics = Topics(hub_settings.topic_prefix)
    now = int(time.time() * 1000)
    await publisher.publish(topics.status(device.device_id), _signed_status(device, "offline", now + 9_000, "shutdown"),
                            qos=1, wait_for_ack=True)
    await eventually(lambda: test_db.fetchval(
        "SELECT reason = 'shutdown' FROM device_health WHERE device_id = $1", device.device_id))
    await publisher.publish(topics.uplink(device.device_id), _heartbeat(device, 1), qos=1, wait_for_ack=True)
    row = await eventually(lambda: test_db.fetchrow(
        "SELECT online, reason FROM device_health WHERE device_id = $1 AND online", device.device_id))
    assert row["reason"] == "traffic"
