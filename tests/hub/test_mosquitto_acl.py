"""The generated Mosquitto password and ACL files, enforced by a real, private Mosquitto.

The broker runs with ``allow_anonymous false`` and exactly the files
``hub.adapters.mosquitto_auth`` renders from the registry; real MQTT 5 clients then
prove: a device publishes its own uplink, cannot publish another device's
(PUBACK 0x87 and nothing reaches the hub), a wrong password is refused, and a
revoked device is refused after the files are re-rendered and the broker
reloaded (SIGHUP).
"""
from __future__ import annotations

import os
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Sequence

import pytest
import trio
from support.private_mosquitto import HUB_LOGIN, broker_files, mosquitto_available, start_private_mosquitto

from hub.adapters.mosquitto_auth import HubAccount, export_mosquitto, render_acl_file
from hub.db import Database, open_database
from hub.db.provisioning import EdgeAgentSetup, register, revoke
from hub.domain.credentials import DeviceCredentials
from hub.embedded import probe_mqtt
from hub.mqtt import MqttError, TrioMqttClient
from schemas import Topics

pytestmark = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed")

HUB_USER, HUB_PASSWORD = HUB_LOGIN.username, HUB_LOGIN.password


@asynccontextmanager
async def connected(port: int, username: str, password: str, *subscriptions: str) -> AsyncIterator[TrioMqttClient]:
    client = TrioMqttClient(host="127.0.0.1", port=port, client_id=f"{username}-{uuid.uuid4().hex[:6]}",
                            username=username, password=password, clean_start=True)

    async def subscribe(c: TrioMqttClient) -> None:
        for topic_filter in subscriptions:
            await c.subscribe(topic_filter, qos=1)

    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(lambda task_status: client.run(on_connect=subscribe, task_status=task_status))
        yield client
        nursery.cancel_scope.cancel()


async def _registry_unchanged(device_ids: Sequence[str]) -> None:
    """The tests export the broker's files themselves, to see each step."""


async def _register(db: Database, device_id: str, room_id: str) -> DeviceCredentials:
    issued = await register(db, device_id=device_id, room_id=room_id, kind="edge_agent", actor="test",
                            setup=EdgeAgentSetup("mqtt://127.0.0.1:1883", "campus"),
                            devices_changed=_registry_unchanged)
    return issued.credentials


def _can_connect(port: int, username: str, password: str) -> bool:
    return probe_mqtt("127.0.0.1", port, 2.0, username=username, password=password)


async def test_the_broker_enforces_the_generated_files(fresh_database_url: str, aio_loop, tmp_path: Path):
    topics = Topics(f"acl-{uuid.uuid4().hex[:8]}")
    files = broker_files(tmp_path)
    hub = HubAccount.from_password(HUB_USER, HUB_PASSWORD)
    async with open_database(fresh_database_url, max_size=2) as db:
        await db.execute("INSERT INTO rooms (id, name, building) VALUES ('r1', 'Room 1', 'Main')")
        a = await _register(db, "dev-a", "r1")
        await _register(db, "dev-b", "r1")
        c = await _register(db, "dev-c", "r1")
        result = await export_mosquitto(db, topics, files, hub)
        assert result.devices == 3 and not result.reloaded  # no broker yet: the pid file is absent
        assert oct(files.password_file.stat().st_mode & 0o777) == "0o640"
        broker = await trio.to_thread.run_sync(
            lambda: start_private_mosquitto(tmp_path, topics=topics, accounts_from_registry=True))
        try:
            port = broker.port
            async with connected(port, HUB_USER, HUB_PASSWORD, topics.uplink_filter) as hub_client, \
                    connected(port, "dev-a", a.mqtt.password) as dev_a:
                # Its own uplink: accepted (PUBACK success) and delivered to the hub.
                await dev_a.publish(topics.uplink("dev-a"), b"mine", qos=1, wait_for_ack=True)
                with trio.fail_after(5):
                    got = await hub_client.messages.receive()
                assert (got.topic, got.payload) == (topics.uplink("dev-a"), b"mine")
                hub_client.ack(got)
                # Another device's uplink: refused with 0x87 Not authorized, and never delivered.
                with pytest.raises(MqttError, match="Not authorized"):
                    await dev_a.publish(topics.uplink("dev-b"), b"forged", qos=1, wait_for_ack=True)
                with trio.move_on_after(0.5):
                    stray = await hub_client.messages.receive()
                    pytest.fail(f"a forged uplink reached the hub: {stray}")
                # Devices cannot write their own downlink (only the hub sends commands).
                with pytest.raises(MqttError, match="Not authorized"):
                    await dev_a.publish(topics.downlink("dev-a"), b"fake command", qos=1, wait_for_ack=True)

            # Wrong password, unknown user, and no credentials at all: refused.
            assert await trio.to_thread.run_sync(_can_connect, port, "dev-a", a.mqtt.password)
            assert not await trio.to_thread.run_sync(_can_connect, port, "dev-a", a.mqtt.password + "x")
            assert not await trio.to_thread.run_sync(_can_connect, port, "dev-b", a.mqtt.password)
            assert not await trio.to_thread.run_sync(
                lambda: probe_mqtt("127.0.0.1", port, 2.0))

            # Revocation: re-render, SIGHUP through the pid file; the device can no longer log in,
            # and Mosquitto drops its open connection too.
            async with connected(port, "dev-c", c.mqtt.password) as dev_c:
                await dev_c.publish(topics.uplink("dev-c"), b"before", qos=1, wait_for_ack=True)
                await revoke(db, "dev-c", actor="test", reason="stolen", devices_changed=_registry_unchanged)
                result = await export_mosquitto(db, topics, files, hub)
                assert result.devices == 2 and result.reloaded
                assert "dev-c" not in files.password_file.read_text()
                assert "dev-c" not in files.acl_file.read_text()
                with trio.fail_after(5):
                    while dev_c.connected:
                        await trio.sleep(0.05)
            assert not await trio.to_thread.run_sync(_can_connect, port, "dev-c", c.mqtt.password)
            # ...while the others are unaffected by the reload.
            assert await trio.to_thread.run_sync(_can_connect, port, "dev-a", a.mqtt.password)
        finally:
            await trio.to_thread.run_sync(broker.stop)


def test_the_acl_gives_each_device_its_own_three_topics_and_the_hub_the_wildcards():
    from hub.db.device_registry import MqttAccountRow

    topics = Topics("campus")
    acl = render_acl_file([MqttAccountRow("dev-1", "dev-1", "$7$1$AA==$AA==")], topics, "hub")
    blocks = [block.strip().splitlines() for block in acl.split("\n\n") if block.strip().startswith("user")]
    assert blocks == [
        ["user hub", "topic read campus/v1/dev/+/up", "topic read campus/v1/dev/+/status",
         "topic write campus/v1/dev/+/down", "topic readwrite campus/v1/hub/live",
         "topic readwrite campus/v1/hub/#"],
        ["user dev-1", "topic write campus/v1/dev/dev-1/up", "topic write campus/v1/dev/dev-1/status",
         "topic read campus/v1/dev/dev-1/down"],
    ]
    # Nothing before the first user line: anonymous clients get no topic.
    assert all(line.startswith("#") or not line.strip()
               for line in acl[:acl.index("user ")].splitlines())
    with pytest.raises(ValueError, match="topic prefix"):
        render_acl_file([], Topics("bad/+/prefix"), "hub")
    with pytest.raises(ValueError, match="hub username"):
        render_acl_file([], topics, "hub user")


def test_files_are_replaced_atomically(tmp_path: Path):
    from hub.adapters.mosquitto_auth import write_atomically

    target = tmp_path / "acl"
    target.write_text("old")
    write_atomically(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["acl"]  # no temporary file left behind
    assert os.stat(target).st_mode & 0o777 == 0o640
