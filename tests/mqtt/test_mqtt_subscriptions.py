"""TrioMqttClient.subscribe_many / unsubscribe_many: many exact filters, few packets, against real Mosquittos.

A partition's session subscribes to the exact topics of its devices (hundreds of
filters), so SUBSCRIBE carries many filters per packet, in chunks bounded in count
and in bytes. Three brokers:

- the run's broker (``mqtt_server_url``: 127.0.0.1:1883, or the secure one), with a
  prefix and client ids of each test's own: 500 devices' topics subscribed in
  chunks receive their messages; once unsubscribed, they no longer do;
- a private Mosquitto from the generated configuration (its ACL and its
  ``max_packet_size``): the longest device topics stay under the packet limit,
  and a packet over it costs the connection. (Its ``acl_file`` never refuses a
  subscription: Mosquitto applies it to delivery only, so a SUBACK from it is
  always a grant.)
- a private Mosquitto with its dynamic security plugin, which does refuse
  subscriptions (SUBACK 0x87): the refused filters are named, the rest hold.
"""
from __future__ import annotations

import getpass
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from mqtt_helpers import receive
from support.private_mosquitto import (
    HOST,
    HUB_LOGIN,
    BrokerLogin,
    PrivateMosquitto,
    broker_files,
    mosquitto_available,
    start_private_mosquitto,
)

from hub.core.config import MQTT_MAX_PACKET_SIZE, MqttUrl
from hub.domain.partition_topics import partition_topics
from hub.embedded._common import free_port
from hub.mqtt import InboundMessage, MqttNotConnected, MqttSubscribeRefused, TrioMqttClient, client_tls_context
from hub.mqtt._client import _chunk_filters
from schemas import Topics

pytestmark = pytest.mark.integration


class CountingClient(TrioMqttClient):
    """Counts the SUBSCRIBE / UNSUBSCRIBE packets handed to paho (one paho call is one packet)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.packets = {"subscribe": 0, "unsubscribe": 0}
        for what in self.packets:
            original = getattr(self._paho, what)

            def counted(*args: Any, _what: str = what, _original: Any = original, **kwargs: Any) -> Any:
                self.packets[_what] += 1
                return _original(*args, **kwargs)

            setattr(self._paho, what, counted)


Client = TypeVar("Client", bound=TrioMqttClient)


@asynccontextmanager
async def running(client: Client) -> AsyncIterator[Client]:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            await nursery.start(client.run)
        yield client
        nursery.cancel_scope.cancel()


def run_broker_client(url: str, cafile: Path | None, client_id: str, **kw: Any) -> CountingClient:
    broker = MqttUrl.parse(url)
    return CountingClient(host=broker.host, port=broker.port, username=broker.username, password=broker.password,
                          tls=client_tls_context(cafile) if broker.tls else None, protocol=broker.protocol,
                          client_id=client_id, clean_start=True, session_expiry_s=30, **kw)


async def receive_until_end(client: TrioMqttClient) -> list[InboundMessage]:
    """Everything up to the first message ``b"end"``, which is left out (each acked)."""
    got: list[InboundMessage] = []
    while True:
        message = await receive(client, timeout=5)
        client.ack(message)
        got.append(message)
        if message.payload == b"end":
            return got[:-1]


# ---------------------------------------------------------------- the run's broker


async def test_500_device_topics_subscribed_in_chunks_receive_and_unsubscribed_ones_stop(
        mqtt_server_url: str, mqtt_cafile: Path | None) -> None:
    prefix = f"subs-{uuid.uuid4().hex[:8]}"
    topics = Topics(prefix)
    devices = [f"dev-{i:03d}" for i in range(500)]
    uplinks = [topics.uplink(d) for d in devices]
    kept, dropped = uplinks[:250], uplinks[250:]
    rx = run_broker_client(mqtt_server_url, mqtt_cafile, f"{prefix}-rx")
    tx = run_broker_client(mqtt_server_url, mqtt_cafile, f"{prefix}-tx")
    with trio.fail_after(30):
        async with running(rx), running(tx):
            await rx.subscribe_many(uplinks)
            assert rx.packets["subscribe"] == 3  # 200 + 200 + 100: MAX_FILTERS_PER_PACKET

            for topic in uplinks:
                await tx.publish(topic, topic.encode())
            await tx.publish(uplinks[-1], b"end", wait_for_ack=True)
            got = await receive_until_end(rx)
            assert sorted(m.topic for m in got) == sorted(uplinks)
            assert all(m.payload == m.topic.encode() for m in got)

            await rx.unsubscribe_many(dropped)
            assert rx.packets["unsubscribe"] == 2  # 200 + 50
            for topic in uplinks:
                await tx.publish(topic, b"after")
            # The marker goes last on a kept topic: the broker forwards in order, so once it is
            # here nothing from an unsubscribed topic is still on its way.
            await tx.publish(kept[0], b"end", wait_for_ack=True)
            after = await receive_until_end(rx)
            assert sorted(m.topic for m in after) == sorted(kept)


async def test_nothing_to_send_is_no_packet_and_unknown_filters_unsubscribe_fine(
        mqtt_server_url: str, mqtt_cafile: Path | None) -> None:
    prefix = f"subs-{uuid.uuid4().hex[:8]}"
    client = run_broker_client(mqtt_server_url, mqtt_cafile, f"{prefix}-c")
    with pytest.raises(MqttNotConnected):
        await client.subscribe_many([f"{prefix}/a"])
    with trio.fail_after(10):
        async with running(client):
            await client.subscribe_many([])
            await client.unsubscribe_many(())
            assert client.packets == {"subscribe": 0, "unsubscribe": 0}
            # Never subscribed: MQTT 5 answers 0x11 "No subscription existed", which is no failure.
            await client.unsubscribe_many([f"{prefix}/never"])
            assert client.connected and client.generation == 1


def test_chunks_are_bounded_by_count_and_by_bytes_and_keep_the_order() -> None:
    short = [f"t/{i}" for i in range(450)]
    assert [len(c) for c in _chunk_filters(short, 3, 200, 8192)] == [200, 200, 50]
    long = ["x" * 97 for _ in range(200)]  # 100 bytes each in a SUBSCRIBE
    chunks = _chunk_filters(long, 3, 200, 8192)
    assert [len(c) for c in chunks] == [81, 81, 38]  # 8 + 81 * 100 <= 8192
    assert [f for c in chunks for f in c] == long
    # One filter over the budget still goes, alone: the broker judges it.
    assert _chunk_filters(["y" * 9000, "z"], 3, 200, 8192) == [["y" * 9000], ["z"]]


# ------------------------------------------------- a broker from the generated configuration

DEVICE_ID = "d" * 64  # the longest id there is
DEVICE = BrokerLogin("dev-pub", "device-password", device_id=DEVICE_ID)


@pytest.fixture
def generated_broker(tmp_path: Path) -> Iterator[tuple[PrivateMosquitto, Topics]]:
    if not mosquitto_available():
        pytest.skip("mosquitto is not installed")
    topics = Topics(f"subs-{uuid.uuid4().hex[:8]}")
    with start_private_mosquitto(tmp_path / "broker", devices=[DEVICE], topics=topics) as broker:
        yield broker, topics


def hub_client(broker: PrivateMosquitto, **kw: Any) -> CountingClient:
    return CountingClient(host="127.0.0.1", port=broker.port, client_id="hub", username=HUB_LOGIN.username,
                          password=HUB_LOGIN.password, clean_start=True, session_expiry_s=30, **kw)


def device_client(broker: PrivateMosquitto) -> TrioMqttClient:
    return TrioMqttClient(host="127.0.0.1", port=broker.port, client_id=DEVICE.username,
                          username=DEVICE.username, password=DEVICE.password, clean_start=True, session_expiry_s=30)


async def test_the_longest_device_topics_stay_under_the_generated_packet_limit(
        generated_broker: tuple[PrivateMosquitto, Topics]) -> None:
    broker, topics = generated_broker
    # 500 devices with the longest ids there are: 1000 filters of about 100 bytes, 100 KB of SUBSCRIBE.
    devices = [f"{i:03d}".ljust(64, "d") for i in range(499)] + [DEVICE_ID]
    wanted = sorted(partition_topics(topics, devices))
    assert sum(len(f) for f in wanted) > 4 * MQTT_MAX_PACKET_SIZE
    with trio.fail_after(20):
        async with running(hub_client(broker)) as hub, running(device_client(broker)) as device:
            await hub.subscribe_many(wanted)
            assert hub.packets["subscribe"] == 12  # bytes, not the count of 200, decide here
            assert hub.connected and hub.generation == 1
            await device.publish(topics.uplink(DEVICE_ID), b"event", wait_for_ack=True)
            message = await receive(hub)
            assert (message.topic, message.payload) == (topics.uplink(DEVICE_ID), b"event")
            hub.ack(message)


async def test_a_packet_over_the_brokers_limit_costs_the_connection(
        generated_broker: tuple[PrivateMosquitto, Topics]) -> None:
    """Why the chunks are bounded in bytes: 200 such filters in one packet are over 18 KiB."""
    broker, topics = generated_broker
    wanted = sorted(partition_topics(topics, [f"{i:03d}".ljust(64, "d") for i in range(100)]))
    hub = hub_client(broker)
    hub.MAX_SUBSCRIBE_PACKET_BYTES = 10 * MQTT_MAX_PACKET_SIZE
    with trio.fail_after(20):
        async with running(hub):
            with pytest.raises(MqttNotConnected):
                await hub.subscribe_many(wanted)
            assert hub.packets["subscribe"] == 1


async def test_mqtt_311_subscribes_and_unsubscribes_many_too(
        generated_broker: tuple[PrivateMosquitto, Topics]) -> None:
    """3.1.1: the same packets; its UNSUBACK carries no reason codes."""
    broker, topics = generated_broker
    with trio.fail_after(20):
        async with running(hub_client(broker, protocol="3.1.1")) as hub, running(device_client(broker)) as device:
            await hub.subscribe_many([topics.uplink(DEVICE_ID), topics.status(DEVICE_ID)])
            await hub.unsubscribe_many([topics.uplink(DEVICE_ID)])
            await device.publish(topics.uplink(DEVICE_ID), b"unsubscribed")
            await device.publish(topics.status(DEVICE_ID), b"status", wait_for_ack=True)
            message = await receive(hub)
            assert (message.topic, message.payload) == (topics.status(DEVICE_ID), b"status")
            hub.ack(message)


# ------------------------------------------------- a broker that refuses subscriptions

DYNAMIC_SECURITY = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


@pytest.fixture
def refusing_broker(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    """Anonymous clients may subscribe under ``allowed/`` only (Mosquitto's dynamic security plugin)."""
    if not mosquitto_available() or not DYNAMIC_SECURITY.exists():
        pytest.skip("mosquitto or its dynamic security plugin is not installed")
    directory = tmp_path / "refusing"
    directory.mkdir()
    (directory / "dynsec.json").write_text(json.dumps({
        "defaultACLAccess": {"publishClientSend": True, "publishClientReceive": True,
                             "subscribe": False, "unsubscribe": True},
        "clients": [],
        "groups": [{"groupname": "anonymous", "roles": [{"rolename": "subscriber"}]}],
        "roles": [{"rolename": "subscriber", "acls": [
            {"acltype": "subscribePattern", "topic": "allowed/#", "priority": 0, "allow": True}]}],
        "anonymousGroup": "anonymous",
    }))
    port = free_port(HOST)
    config = directory / "mosquitto.conf"
    config.write_text("\n".join([
        "per_listener_settings false", "allow_anonymous true", f"plugin {DYNAMIC_SECURITY}",
        f"plugin_opt_config_file {directory / 'dynsec.json'}", "persistence false", "log_dest stderr",
        f"user {getpass.getuser()}",  # as root Mosquitto would become "mosquitto", who cannot read our files
        f"listener {port} {HOST}", ""]))
    with PrivateMosquitto(directory, broker_files(directory), config, port, None) as broker:
        yield broker


@pytest.mark.parametrize("protocol, code", [("5", 0x87), ("3.1.1", 0x80)])  # Not authorized; 3.1.1's Failure
async def test_refused_filters_are_named_and_the_others_hold(
        refusing_broker: PrivateMosquitto, protocol: str, code: int) -> None:
    anyone: dict[str, Any] = dict(host=HOST, port=refusing_broker.port, clean_start=True, session_expiry_s=30,
                                  protocol=protocol)
    wanted = [f"allowed/{i}" for i in range(300)]
    refused = ["denied/a", "denied/b"]
    with trio.fail_after(20):
        async with running(CountingClient(client_id="rx", **anyone)) as rx, \
                running(TrioMqttClient(client_id="tx", **anyone)) as tx:
            with pytest.raises(MqttSubscribeRefused) as error:
                await rx.subscribe_many([*wanted[:150], *refused, *wanted[150:]])
            assert error.value.refused == {f: code for f in refused}
            assert rx.packets["subscribe"] == 2 and rx.connected
            await tx.publish("denied/a", b"not for rx")
            for topic in wanted:
                await tx.publish(topic, topic.encode())
            await tx.publish(wanted[0], b"end", wait_for_ack=True)
            got = await receive_until_end(rx)
            assert sorted(m.topic for m in got) == sorted(wanted)
