"""Broker-side quarantine of a flooding device (issue 12 §5), with a real hub, real edge agents and a
private Mosquitto started from the configuration the project generates (auth, ACL, client id bound
to username), whose files the hub manages (``CAMPUSHUB_MOSQUITTO_*``).

A device flooding beyond its token bucket trips its ``rate_limited`` alarm; the hub's quarantine
keeper records the quarantine, renders the files without the device and signals the broker, which
closes the device's connection and refuses its logins. Events its agent takes meanwhile stay in
its outbox (nothing reaches the hub) while the other device's keep flowing; when the quarantine
ends (by its cool-down, or by ops through ``POST /api/v1/devices/{id}/release``) the agent
reconnects and delivers them, each once.

The flood detector (events per second of the device's own clock) trips the same quarantine after
``device_flood_events_per_s`` densely stamped events, while a full outbox drained with its capture
times passes the default limits untouched.
"""
from __future__ import annotations

import dataclasses
import re
import time
from functools import partial
from pathlib import Path
from typing import Any, AsyncIterator, cast

import httpx
import pytest
import trio
from support.hub_helpers import AgentThread, agent_config, eventually, signed_scan
from support.private_mosquitto import HUB_LOGIN, PrivateMosquitto, broker_files, mosquitto_available, start_private_mosquitto
from test_hub_pipeline import login

from edge_agent.config import AgentConfig
from hub.adapters.mosquitto_auth import HubAccount, export_mosquitto
from hub.app.supervision import Hub, run_hub
from hub.core.campus import Campus, DeviceCredentials
from hub.core.config import Settings
from hub.db import Database
from hub.db.seed import seeded_broker_password
from hub.mqtt import TrioMqttClient
from schemas import SensorReading, SensorReadingEvent, SignatureAlgorithm, Topics, encode_event, new_event_id

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed")]

RATE, BURST = 20.0, 20
FLOOD = 80
#: Events the flooding agent takes while quarantined; their values (1000 + i) pick them out.
HELD = 10


@pytest.fixture
def broker_dir(tmp_path: Path) -> Path:
    return tmp_path / "broker"


@pytest.fixture
def cooldown() -> float:
    """The quarantine's cool-down in seconds (a test parametrizes it to rely on a release)."""
    return 4.0


@pytest.fixture
def device_limit() -> tuple[float, int]:
    """The hub's per-device (rate, burst) (a test parametrizes it to run with the defaults)."""
    return RATE, BURST


@pytest.fixture
def hub_settings(hub_settings: Settings, broker_dir: Path, monkeypatch: pytest.MonkeyPatch, cooldown: float,
                 device_limit: tuple[float, int]) -> Settings:
    files = broker_files(broker_dir)
    monkeypatch.setenv("CAMPUSHUB_MOSQUITTO_PASSWORD_FILE", str(files.password_file))
    monkeypatch.setenv("CAMPUSHUB_MOSQUITTO_ACL_FILE", str(files.acl_file))
    monkeypatch.setenv("CAMPUSHUB_MOSQUITTO_PID_FILE", str(files.pid_file))
    return dataclasses.replace(hub_settings, mqtt_cafile=None, device_rate_per_s=device_limit[0],
                               device_burst=device_limit[1],
                               quarantine_cooldown_s=cooldown, quarantine_max_s=2 * cooldown)


@pytest.fixture
async def broker(hub_settings: Settings, hub_campus: Campus, broker_dir: Path, test_db: Database
                 ) -> AsyncIterator[PrivateMosquitto]:
    """The generated broker, its accounts exported from the seeded registry (as `serve` does)."""
    await export_mosquitto(test_db, Topics(hub_settings.topic_prefix), broker_files(broker_dir),
                           HubAccount.from_password(HUB_LOGIN.username, HUB_LOGIN.password))
    running = await trio.to_thread.run_sync(lambda: start_private_mosquitto(
        broker_dir, topics=Topics(hub_settings.topic_prefix), accounts_from_registry=True))
    try:
        yield running
    finally:
        await trio.to_thread.run_sync(running.stop)


@pytest.fixture
async def quarantining_hub(hub_settings: Settings, broker: PrivateMosquitto, aio_loop) -> AsyncIterator[Hub]:
    settings = dataclasses.replace(hub_settings, mqtt_url=broker.url(HUB_LOGIN.username, HUB_LOGIN.password))
    async with trio.open_nursery() as nursery:
        yield await nursery.start(partial(run_hub, settings, port=0))
        nursery.cancel_scope.cancel()


def _agent_config(device: DeviceCredentials, broker: PrivateMosquitto, settings: Settings, tmp_path: Path
                  ) -> AgentConfig:
    return agent_config(
        device, mqtt_url=broker.url(device.device_id, seeded_broker_password(device.signing_key)),
        topic_prefix=settings.topic_prefix, outbox=tmp_path / f"{device.device_id}.sqlite",
        heartbeat_interval_s=3600.0, reconnect_initial_s=0.1, reconnect_max_s=0.5, publish_timeout_s=3.0)


async def _agent(device: DeviceCredentials, broker: PrivateMosquitto, settings: Settings, tmp_path: Path
                 ) -> AgentThread:
    """A real edge agent for ``device``, connected."""
    agent = await trio.to_thread.run_sync(AgentThread(_agent_config(device, broker, settings, tmp_path)).start)
    await eventually(lambda: _true(agent.agent is not None and agent.agent.connected), timeout=10)
    return agent


async def _true(value: bool) -> bool:
    return value


async def _submit(agent: AgentThread, values: range) -> None:
    assert agent.agent is not None
    for value in values:
        await trio.to_thread.run_sync(agent.call, agent.agent.submit_sensor, "temperature", float(value), "C")


async def _readings(db: Database, device_id: str, at_least: float = 0) -> int:
    return await db.fetchval("SELECT count(*) FROM sensor_readings WHERE device_id = $1 AND value >= $2",
                             device_id, at_least)


async def _quarantined(db: Database, device_id: str) -> bool:
    return bool(await db.fetchval(
        "SELECT released_at IS NULL FROM device_quarantines WHERE device_id = $1", device_id))


def _device_client(broker: PrivateMosquitto, device: DeviceCredentials) -> TrioMqttClient:
    """An MQTT client logged in with ``device``'s own broker account (a compromised or broken device)."""
    return TrioMqttClient(host="127.0.0.1", port=broker.port, client_id=device.device_id, clean_start=True,
                          username=device.device_id, password=seeded_broker_password(device.signing_key))


def _signed_reading(device: DeviceCredentials, seq: int, at: float, value: float) -> bytes:
    """A signed temperature reading stamped ``at`` (the device's clock, s)."""
    event = SensorReadingEvent(v=1, id=new_event_id(), device=device.device_id, ts=int(at * 1000), seq=seq,
                               body=SensorReading(metric="temperature", value=value, unit="C"))
    return encode_event(event, cast(SignatureAlgorithm, device.alg), device.signing_key)


async def _flood_until_quarantined(db: Database, broker: PrivateMosquitto, settings: Settings,
                                   device: DeviceCredentials, frames: list[bytes] | None = None) -> None:
    """Flood as ``device`` (its own broker login, signed events: ``frames``, or ``FLOOD`` scans) until the
    hub quarantines it and the broker closes the connection."""
    flooder = _device_client(broker, device)
    uplink = Topics(settings.topic_prefix).uplink(device.device_id)
    if frames is None:
        frames = [signed_scan(device, f"flood-{seq}", seq=seq) for seq in range(1, FLOOD + 1)]
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(flooder.run)
        for frame in frames:
            await flooder.publish(uplink, frame, qos=1)
        await eventually(partial(_quarantined, db, device.device_id), timeout=15)
        # The broker closes the flooder's connection and refuses its logins from now on.
        await eventually(lambda: _true(not flooder.connected), timeout=10)
        nursery.cancel_scope.cancel()


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_flooding_device_is_quarantined_at_the_broker_and_delivers_its_outbox_after_the_cool_down(
    quarantining_hub: Hub, hub_settings: Settings, hub_campus: Campus, broker: PrivateMosquitto, test_db: Database,
    tmp_path: Path,
):
    flooding_device, calm_device = hub_campus.devices[0], hub_campus.devices[1]
    topics = Topics(hub_settings.topic_prefix)
    calm = await _agent(calm_device, broker, hub_settings, tmp_path)
    await _flood_until_quarantined(test_db, broker, hub_settings, flooding_device)
    # The device's own agent starts during the quarantine: refused by the broker, it keeps what it takes.
    flooding = await trio.to_thread.run_sync(AgentThread(_agent_config(
        flooding_device, broker, hub_settings, tmp_path)).start)
    try:
        # The files the broker reads lack the device: no login, no uplink line; the broker was signalled.
        assert f"\n{flooding_device.device_id}:" not in "\n" + broker.files.password_file.read_text()
        acl = broker.files.acl_file.read_text()
        assert f"topic write {topics.uplink(flooding_device.device_id)}" not in acl
        assert f"# {flooding_device.device_id}: quarantined until" in acl
        assert f"topic write {topics.uplink(calm_device.device_id)}" in acl
        # The broker reloaded them (Mosquitto logs no reload at notice level): the agent's new logins are refused.
        await eventually(lambda: _true("disconnected, not authorised" in broker.log_text()), timeout=10)

        # Quarantined: its agent keeps what it takes; nothing of it reaches the hub. The other device flows.
        await _submit(flooding, range(1000, 1000 + HELD))
        await _submit(calm, range(5))
        await eventually(partial(_at_least, test_db, calm_device.device_id, 5, 0), timeout=10)
        assert await _readings(test_db, flooding_device.device_id, 1000) == 0
        assert await _quarantined(test_db, flooding_device.device_id)
        assert flooding.agent is not None and flooding.agent.outbox_depth >= HELD

        alarm = await _alarm_of(test_db, flooding_device.device_id)
        assert alarm is not None and alarm["message"].find("quarantined at the broker until") > 0, alarm
        metrics = quarantining_hub.metrics.render()
        assert _metric(metrics, "campushub_device_quarantines_started_total") == 1
        assert _metric(metrics, "campushub_devices_quarantined") == 1

        # The cool-down (4 s) ends it: the files list the device again, its agent reconnects and drains.
        await eventually(partial(_at_least, test_db, flooding_device.device_id, HELD), timeout=20)
        assert not await _quarantined(test_db, flooding_device.device_id)
        assert f"topic write {topics.uplink(flooding_device.device_id)}" in broker.files.acl_file.read_text()
        await eventually(lambda: _true(flooding.agent is not None and flooding.agent.outbox_depth == 0), timeout=10)
        # Each held event once (their values are distinct), none twice.
        held = await test_db.fetch(
            "SELECT value, count(*) AS n FROM sensor_readings WHERE device_id = $1 AND value >= 1000 GROUP BY value",
            flooding_device.device_id)
        assert sorted((int(r["value"]), r["n"]) for r in held) == [(1000 + i, 1) for i in range(HELD)]
        audit = await test_db.fetch(
            "SELECT action, actor FROM audit_log WHERE entity = 'device' AND entity_id = $1"
            " AND action IN ('quarantined', 'released') ORDER BY id", flooding_device.device_id)
        assert [(a["action"], a["actor"]) for a in audit] == [("quarantined", "system"), ("released", "system")]
        metrics = quarantining_hub.metrics.render()
        assert 'campushub_device_quarantines_ended_total{how="cooldown"} 1.0' in metrics
    finally:
        await trio.to_thread.run_sync(flooding.stop)
        await trio.to_thread.run_sync(calm.stop)


@pytest.mark.parametrize("cooldown", [600.0])  # far beyond the test: only the release ends it
async def test_ops_release_a_quarantined_device_through_the_api(
    quarantining_hub: Hub, hub_settings: Settings, hub_campus: Campus, broker: PrivateMosquitto, test_db: Database,
    tmp_path: Path,
):
    flooding_device = hub_campus.devices[0]
    await test_db.execute(  # a previous quarantine an hour and a half ago: not a repeat, base cool-down
        "INSERT INTO device_quarantines (device_id, reason, since, until, cooldown_s, released_at)"
        " VALUES ($1, 'earlier', now() - interval '90 minutes', now() - interval '85 minutes', 300,"
        " now() - interval '85 minutes')", flooding_device.device_id)
    ops = next(login for login in hub_campus.logins if login.role == "ops")
    student = next(login for login in hub_campus.logins if login.role == "student")
    port = quarantining_hub.web_port
    assert port is not None
    base = f"http://127.0.0.1:{port}"
    url = f"/api/v1/devices/{flooding_device.device_id}/release"
    flooding: AgentThread | None = None
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            ops_auth = {"Authorization": f"Bearer {await login(port, ops.username, ops.password)}"}
            student_auth = {"Authorization":
                            f"Bearer {await login(port, student.username, student.password)}"}
            not_yet = await http.post(url, json={}, headers=ops_auth)
            assert (not_yet.status_code, not_yet.json()["error"]["code"]) == (409, "not_quarantined")

            await _flood_until_quarantined(test_db, broker, hub_settings, flooding_device)
            flooding = await trio.to_thread.run_sync(AgentThread(_agent_config(
                flooding_device, broker, hub_settings, tmp_path)).start)
            await _submit(flooding, range(1000, 1000 + HELD))
            assert (await http.post(url, json={})).status_code == 401
            forbidden = await http.post(url, json={}, headers=student_auth)
            assert (forbidden.status_code, forbidden.json()["error"]["code"]) == (403, "forbidden")
            assert await _quarantined(test_db, flooding_device.device_id)

            # The ingress's bucket still applies after a release: refilled (burst / rate), it admits the held events.
            await trio.sleep(BURST / RATE)
            released = await http.post(url, json={}, headers=ops_auth)
            assert released.status_code == 200, released.text
            body = released.json()["quarantine"]
            assert body["released_by"] is not None and body["strikes"] == 1 and body["cooldown_s"] == 600.0
        # Released long before its cool-down: the agent reconnects and delivers what it held, once.
        await eventually(partial(_at_least, test_db, flooding_device.device_id, HELD), timeout=15)
        assert await _readings(test_db, flooding_device.device_id, 1000) == HELD
        audit = await test_db.fetch(
            "SELECT action, actor FROM audit_log WHERE entity = 'device' AND entity_id = $1"
            " AND action = 'released'", flooding_device.device_id)
        assert len(audit) == 1 and audit[0]["actor"] != "system"
    finally:
        if flooding is not None:
            await trio.to_thread.run_sync(flooding.stop)


async def _at_least(db: Database, device_id: str, n: int, values_from: float = 1000) -> bool:
    return await _readings(db, device_id, values_from) >= n


#: A full edge agent outbox (``max_outbox_rows``, the default burst), and the default flood threshold.
OUTBOX_ROWS = Settings.device_burst
DENSITY = Settings.device_flood_events_per_s


@pytest.mark.parametrize("device_limit", [(Settings.device_rate_per_s, Settings.device_burst)])
async def test_a_full_outbox_drain_passes_the_default_limits_while_a_dense_flood_trips_at_its_threshold(
    quarantining_hub: Hub, hub_settings: Settings, hub_campus: Campus, broker: PrivateMosquitto, test_db: Database,
):
    flooding_device, draining_device = hub_campus.devices[0], hub_campus.devices[1]
    # A device back from a long outage drains its full outbox as fast as the broker takes it: 10,000 readings
    # stamped when they were captured (one every 2 s over the last 5.5 hours).
    captured_from = time.time() - 2 * OUTBOX_ROWS
    drain = _device_client(broker, draining_device)
    uplink = Topics(hub_settings.topic_prefix).uplink(draining_device.device_id)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(drain.run)
        for seq in range(1, OUTBOX_ROWS + 1):
            await drain.publish(uplink, _signed_reading(draining_device, seq, captured_from + 2 * seq, seq), qos=1)
        await eventually(partial(_at_least, test_db, draining_device.device_id, OUTBOX_ROWS, 0), timeout=60,
                         interval=0.2)
        nursery.cancel_scope.cancel()
    metrics = quarantining_hub.metrics.render()
    assert _metric(metrics, 'campushub_events_rejected_total{reason="rate_limited"}') == 0
    assert not await _quarantined(test_db, draining_device.device_id)

    # A firmware loop stamps 1.2x the threshold within one millisecond of its clock: the events beyond the
    # threshold are refused at once (long before the bucket's 10,000) and the device is quarantined.
    now = time.time()
    await _flood_until_quarantined(test_db, broker, hub_settings, flooding_device,
                                   [_signed_reading(flooding_device, seq, now, seq) for seq in range(DENSITY * 6 // 5)])
    await eventually(lambda: _alarm_of(test_db, flooding_device.device_id), timeout=10)
    alarm = await _alarm_of(test_db, flooding_device.device_id)
    assert alarm is not None and "within one second of its clock" in alarm["message"], alarm
    assert await _readings(test_db, flooding_device.device_id) == DENSITY
    refused = await test_db.fetchval(
        "SELECT count(*) FROM rejected_events WHERE reason = 'rate_limited' AND device_id = $1",
        flooding_device.device_id)
    assert refused >= 1
    # Every refusal is counted (the rows are capped per source a minute); none of the drained device's.
    assert 1 <= _metric(quarantining_hub.metrics.render(),
                        'campushub_events_rejected_total{reason="rate_limited"}') <= DENSITY // 5
    assert await _readings(test_db, draining_device.device_id) == OUTBOX_ROWS


async def _alarm_of(db: Database, device_id: str) -> Any:
    """The device's ``rate_limited`` alarm row (state, message), or None."""
    return await db.fetchrow("SELECT state, message FROM alarms WHERE type = 'rate_limited' AND device_id = $1",
                             device_id)


def test_a_quarantined_account_is_left_out_of_both_files():
    from datetime import datetime, timezone

    from hub.adapters.mosquitto_auth import render_acl_file, render_password_file
    from hub.db.device_registry import MqttAccountRow

    until = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
    accounts = [MqttAccountRow("dev-1", "dev-1", "$7$1$AA==$AA=="),
                MqttAccountRow("dev-2", "dev-2", "$7$1$BB==$BB==", quarantined_until=until)]
    topics = Topics("campus")
    assert render_password_file(accounts, None) == "dev-1:$7$1$AA==$AA==\n"
    acl = render_acl_file(accounts, topics, "hub")
    assert "user dev-2" not in acl and "dev/dev-2/" not in acl
    assert "# dev-2: quarantined until 2026-12-07T09:00:00+00:00 (no login, no topic)" in acl
    assert "topic write campus/v1/dev/dev-1/up" in acl


def test_the_cool_down_doubles_on_a_repeat_within_the_window_up_to_the_cap():
    from datetime import datetime, timedelta, timezone

    from hub.db.quarantine import Quarantine, QuarantinePolicy

    policy = QuarantinePolicy(base_s=300, max_s=1000, repeat_window_s=3600)
    now = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)

    def last(cooldown_s: float, strikes: int, minutes_ago: float) -> Quarantine:
        since = now - timedelta(minutes=minutes_ago)
        return Quarantine("d", "r", since, since + timedelta(seconds=cooldown_s), cooldown_s, strikes, since)

    assert policy.cooldown_after(None, now) == (300, 1)
    assert policy.cooldown_after(last(300, 1, 30), now) == (600, 2)
    assert policy.cooldown_after(last(600, 2, 59), now) == (1000, 3)  # capped
    assert policy.cooldown_after(last(1000, 3, 61), now) == (300, 1)  # outside the window: a fresh start
    with pytest.raises(ValueError):
        QuarantinePolicy(base_s=0)


async def test_mosquitto_acknowledges_a_publish_its_acl_denies_so_a_quarantine_refuses_the_login_instead(
    tmp_path: Path,
):
    """Why a quarantine takes the device's login away rather than its uplink line: Mosquitto 2.0
    acknowledges a QoS 1 publish its ACL denies (MQTT 3.1.1: a plain PUBACK) before it closes the
    connection, so an agent would delete from its outbox an event that never reached the hub, once per
    reconnect. (MQTT 5 answers PUBACK 0x87, which aiomqtt does not report either.)"""
    from support.private_mosquitto import BrokerLogin

    topics = Topics("acl-ack")
    device = BrokerLogin("dev-a", "dev-a-password")
    broker = await trio.to_thread.run_sync(lambda: start_private_mosquitto(
        tmp_path, topics=topics, devices=[device]))
    try:
        client = TrioMqttClient(host="127.0.0.1", port=broker.port, client_id="dev-a", clean_start=True,
                                username=device.username, password=device.password, protocol="3.1.1")
        async with trio.open_nursery() as nursery:
            with trio.fail_after(10):
                await nursery.start(client.run)
            with trio.fail_after(5):  # another device's uplink: denied and dropped, yet acknowledged as a success
                await client.publish(topics.uplink("dev-b"), b"dropped by the broker", qos=1, wait_for_ack=True)
            nursery.cancel_scope.cancel()
        # ...and then the generated broker closes the connection (measured on Mosquitto 2.0.11).
        await eventually(lambda: _true("Bad socket read/write on client dev-a" in broker.log_text()), timeout=5)
    finally:
        await trio.to_thread.run_sync(broker.stop)
