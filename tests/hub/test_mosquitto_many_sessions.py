"""Many MQTT sessions under the hub's one account, on a private Mosquitto from the generated configuration.

A hub of many workers opens one persistent session per partition (``{hub}-p{n}``) and a live-bus and
a calls client per worker, each with its own client id, all as the hub's account. The device listeners
rename every client to its username (``use_username_as_clientid``), so there they would take each
other over (tests/mqtt/test_partition_session_takeover.py measures it). The generated configuration's
``HubListener`` is the hub's own: only a client certificate of the hub's CA logs in (its Common Name is
the hub's account, and so its ACL block), and client ids are kept as asked. Proved here, with the
hub's own client (``TrioMqttClient``) built from what ``Settings`` gives a worker:

- four connections of the hub account with different client ids stay connected at once, each
  with its own traffic (two partitions' uplinks, the live bus, a worker's calls topic);
- a partition session's queued QoS 1 messages reach the next connection with its client id (a
  worker on another machine, with a certificate of its own);
- a device still cannot take another client id on the device listeners: not a partition
  session's, not another device's;
- a device cannot connect to the hub's listener: not with its password, not with a certificate
  of the devices' CA, not in plain text; nor publish on the hub's topics anywhere.
"""
from __future__ import annotations

import socket
import ssl
import struct
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trustme
from support.private_mosquitto import (
    HOST,
    HUB_LOGIN,
    BrokerLogin,
    PrivateMosquitto,
    mosquitto_available,
    start_private_mosquitto,
)

from hub.adapters.mosquitto_auth import hub_topics_filter, render_acl_file
from hub.adapters.mosquitto_conf import BrokerTls, HubListener, render_mosquitto_conf
from hub.core.config import MqttUrl, Settings
from hub.db.device_registry import MqttAccountRow
from hub.domain.partition_topics import partition_topics
from hub.embedded import probe_mqtt
from hub.embedded._common import free_port, tcp_accepts, wait_until
from hub.mqtt import InboundMessage, MqttError, TrioMqttClient, client_tls_context
from schemas import Topics

pytestmark = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed")

TOPICS = Topics(f"many-{uuid.uuid4().hex[:8]}")
DEV_A = BrokerLogin("dev-a", "password-a")
DEV_B = BrokerLogin("dev-b", "password-b")
#: A worker's calls topic (hub/app/worker_calls.py's shape): under ``{prefix}/v1/hub/``, like the live bus.
CALLS_W1 = f"{TOPICS.prefix}/v1/hub/workers/w1/calls"


@dataclass(frozen=True)
class Pki:
    """Two CAs: the broker's and devices' (``ca``) and the hub's own (``hub_ca``), and what they signed."""

    ca_file: Path
    hub_ca_file: Path
    server: BrokerTls  # the broker's certificate, for the device TLS listener and the hub's listener
    #: The hub's client certificate (CN = the hub's account) on two machines: one PEM each, key included.
    hub_cert_1: Path
    hub_cert_2: Path
    #: A device's client certificate from the devices' CA (CN = its username).
    device_cert: Path


@dataclass(frozen=True)
class Broker:
    running: PrivateMosquitto
    hub_port: int
    pki: Pki

    def settings(self, hub_cert: Path) -> Settings:
        """What a worker is configured with: the device listener for everything else, the hub's for its sessions."""
        return Settings.from_env({
            "CAMPUSHUB_MQTT_URL": self.running.url(HUB_LOGIN.username, HUB_LOGIN.password),
            "CAMPUSHUB_MQTT_HUB_URL": f"mqtts://{HOST}:{self.hub_port}",
            "CAMPUSHUB_MQTT_HUB_CAFILE": str(self.pki.ca_file),
            "CAMPUSHUB_MQTT_HUB_CERTFILE": str(hub_cert),
            "CAMPUSHUB_TOPIC_PREFIX": TOPICS.prefix,
        })


def _make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca, hub_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert(HOST, "localhost")
    paths = {name: directory / name for name in
             ("ca.pem", "hub-ca.pem", "server.crt", "server.key", "hub-1.pem", "hub-2.pem", "dev-a.pem")}
    ca.cert_pem.write_to_path(str(paths["ca.pem"]))
    hub_ca.cert_pem.write_to_path(str(paths["hub-ca.pem"]))
    server.cert_chain_pems[0].write_to_path(str(paths["server.crt"]))
    server.private_key_pem.write_to_path(str(paths["server.key"]))
    for name in ("hub-1.pem", "hub-2.pem"):
        hub_ca.issue_cert(HUB_LOGIN.username, common_name=HUB_LOGIN.username) \
            .private_key_and_cert_chain_pem.write_to_path(str(paths[name]))
    ca.issue_cert(DEV_A.username, common_name=DEV_A.username) \
        .private_key_and_cert_chain_pem.write_to_path(str(paths["dev-a.pem"]))
    return Pki(paths["ca.pem"], paths["hub-ca.pem"], BrokerTls(paths["ca.pem"], paths["server.crt"],
               paths["server.key"]), paths["hub-1.pem"], paths["hub-2.pem"], paths["dev-a.pem"])


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    directory = tmp_path_factory.mktemp("many-sessions")
    pki = _make_pki(directory / "pki")
    hub_port = free_port(HOST)
    hub_listener = HubListener(hub_port, pki.hub_ca_file, pki.server.certfile, pki.server.keyfile)
    with start_private_mosquitto(directory / "broker", devices=[DEV_A, DEV_B], topics=TOPICS, tls=pki.server,
                                 hub_listener=hub_listener) as running:
        wait_until(lambda: tcp_accepts(HOST, hub_port, 0.5), timeout=10, what="the hub's listener",
                   failed=lambda: None if running.process.poll() is None else running.log_text())
        yield Broker(running, hub_port, pki)


# ---------------------------------------------------------------------------- clients


def hub_client(broker: Broker, client_id: str, *, hub_cert: Path | None = None,
               clean_start: bool = False) -> TrioMqttClient:
    """One of a worker's connections: the hub's listener and TLS context from its ``Settings``."""
    settings = broker.settings(hub_cert or broker.pki.hub_cert_1)
    assert settings.mqtt_hub_url is not None
    url = MqttUrl.parse(settings.mqtt_hub_url)
    return TrioMqttClient(host=url.host, port=url.port, client_id=client_id, tls=settings.mqtt_hub_tls_context(),
                          clean_start=clean_start, session_expiry_s=0 if clean_start else 3600)


def device_client(broker: Broker, login: BrokerLogin, client_id: str, *, tls: bool = False) -> TrioMqttClient:
    """A device on a device listener (plain or TLS), asking for ``client_id``."""
    port = broker.running.tls_port if tls else broker.running.port
    assert port is not None
    return TrioMqttClient(host=HOST, port=port, client_id=client_id, username=login.username,
                          password=login.password, clean_start=True, session_expiry_s=0,
                          tls=client_tls_context(broker.pki.ca_file) if tls else None)


@asynccontextmanager
async def running(*clients: tuple[TrioMqttClient, Sequence[str]]) -> AsyncIterator[None]:
    """Each client's ``run()`` in a task, started (CONNACK, then its subscriptions) before the next one."""
    async with trio.open_nursery() as nursery:
        for client, filters in clients:
            async def subscribe(c: TrioMqttClient, filters: Sequence[str] = filters) -> None:
                if filters:
                    await c.subscribe_many(list(filters))

            await nursery.start(lambda task_status, c=client, s=subscribe: c.run(on_connect=s,
                                                                                  task_status=task_status))
        yield
        nursery.cancel_scope.cancel()


async def receive(client: TrioMqttClient) -> InboundMessage:
    with trio.fail_after(10):
        message = await client.messages.receive()
    client.ack(message)
    return message


def still_first_connection(*clients: TrioMqttClient) -> bool:
    """Connected, on the connection each made first: none was taken over (and came back) meanwhile."""
    return all(c.connected and c.generation == 1 for c in clients)


# ---------------------------------------------------------------------------- tests


async def test_connections_of_the_hub_account_with_different_client_ids_stay_connected_at_once(
        broker: Broker) -> None:
    hub_id = f"campushub-hub-{uuid.uuid4().hex[:12]}"
    p0, p1 = hub_client(broker, f"{hub_id}-p0"), hub_client(broker, f"{hub_id}-p1")
    bus = hub_client(broker, f"{hub_id}-bus-w1", clean_start=True)
    calls = hub_client(broker, f"{hub_id}-calls-w1", clean_start=True)
    dev_a, dev_b = device_client(broker, DEV_A, "dev-a"), device_client(broker, DEV_B, "dev-b")
    with trio.fail_after(30):
        async with running((p0, sorted(partition_topics(TOPICS, ["dev-a"]))),
                           (p1, sorted(partition_topics(TOPICS, ["dev-b"]))),
                           (bus, [TOPICS.live_bus]), (calls, [CALLS_W1]), (dev_a, ()), (dev_b, ())):
            # All four are connected now; each gets its own traffic through the hub account's ACL.
            await dev_a.publish(TOPICS.uplink("dev-a"), b"check-in in partition 0", wait_for_ack=True)
            await dev_b.publish(TOPICS.uplink("dev-b"), b"check-in in partition 1", wait_for_ack=True)
            await p0.publish(TOPICS.live_bus, b"roster changed", wait_for_ack=True)
            await bus.publish(CALLS_W1, b"an ask of worker w1", wait_for_ack=True)
            got = [await receive(p0), await receive(p1), await receive(bus), await receive(calls)]
            assert [(m.topic, m.payload) for m in got] == [
                (TOPICS.uplink("dev-a"), b"check-in in partition 0"),
                (TOPICS.uplink("dev-b"), b"check-in in partition 1"),
                (TOPICS.live_bus, b"roster changed"),
                (CALLS_W1, b"an ask of worker w1"),
            ]
            # Mosquitto ends a taken-over connection while it handles the newcomer's CONNECT: had
            # any of these ids been renamed to the account's username, an earlier connection would
            # be gone (or back on a second connection) and would not have received the above.
            assert still_first_connection(p0, p1, bus, calls)
            assert not p0.session_present and not p1.session_present  # a session of each one's own


async def test_a_partition_sessions_queued_messages_reach_the_next_connection_with_its_client_id(
        broker: Broker) -> None:
    session_id = f"campushub-hub-{uuid.uuid4().hex[:12]}-p3"
    first = hub_client(broker, session_id, hub_cert=broker.pki.hub_cert_1)
    dev_a = device_client(broker, DEV_A, "dev-a")
    with trio.fail_after(30):
        async with running((dev_a, ())):
            async with running((first, sorted(partition_topics(TOPICS, ["dev-a"])))):
                assert not first.session_present
            # The first owner is gone (it disconnected; its session stays for session_expiry_s):
            # the broker queues the partition's messages for it.
            queued = [f"queued {n}".encode() for n in range(3)]
            for payload in queued:
                await dev_a.publish(TOPICS.uplink("dev-a"), payload, wait_for_ack=True)
            # The next owner, a worker on another machine with a certificate of its own, resumes the
            # session by its client id alone: no subscription of its own.
            second = hub_client(broker, session_id, hub_cert=broker.pki.hub_cert_2)
            async with running((second, ())):
                assert second.session_present
                got = [await receive(second) for _ in queued]
                assert [(m.topic, m.payload) for m in got] == [(TOPICS.uplink("dev-a"), p) for p in queued]
                await dev_a.publish(TOPICS.uplink("dev-a"), b"after the move", wait_for_ack=True)
                assert (await receive(second)).payload == b"after the move"
                assert still_first_connection(second)


async def test_a_device_cannot_take_a_partition_sessions_nor_another_devices_client_id(broker: Broker) -> None:
    hub_id = f"campushub-hub-{uuid.uuid4().hex[:12]}"
    partition = hub_client(broker, f"{hub_id}-p0")
    victim = device_client(broker, DEV_B, "dev-b")
    # dev-a asks for the partition's client id on the plain listener and for dev-b's over TLS.
    intruders = [device_client(broker, DEV_A, f"{hub_id}-p0"), device_client(broker, DEV_A, "dev-b", tls=True)]
    with trio.fail_after(30):
        async with running((partition, sorted(partition_topics(TOPICS, ["dev-a", "dev-b"]))), (victim, ())):
            for intruder in intruders:
                async with running((intruder, ())):  # accepted: as "dev-a", the broker's name for it
                    await intruder.publish(TOPICS.uplink("dev-a"), b"from the intruder", wait_for_ack=True)
                    await victim.publish(TOPICS.uplink("dev-b"), b"from the victim", wait_for_ack=True)
                    got = [await receive(partition), await receive(partition)]
                    assert [m.payload for m in got] == [b"from the intruder", b"from the victim"]
                    assert still_first_connection(partition, victim)


def _mqtt_string(text: str) -> bytes:
    return struct.pack("!H", len(text)) + text.encode()


def _connack(port: int, context: ssl.SSLContext, login: BrokerLogin | None) -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session) over TLS: the CONNACK, or b"" when the broker refused the
    TLS handshake or closed the connection instead of answering."""
    flags = 0x02 | (0xC0 if login else 0)
    body = _mqtt_string("MQTT") + bytes([4, flags]) + struct.pack("!H", 30) + _mqtt_string("raw-" + uuid.uuid4().hex[:6])
    if login:
        body += _mqtt_string(login.username) + _mqtt_string(login.password)
    packet = bytes([0x10, len(body)]) + body  # under 128 bytes: a one-byte remaining length
    try:
        with socket.create_connection((HOST, port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=HOST) as sock:
            sock.sendall(packet)
            return sock.recv(4)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return b""


ACCEPTED = b"\x20\x02\x00\x00"


def test_a_device_cannot_connect_to_the_hubs_listener(broker: Broker) -> None:
    port, pki = broker.hub_port, broker.pki
    # The hub's certificate gets in (with no password): the probe below can tell acceptance from refusal.
    assert _connack(port, client_tls_context(pki.ca_file, pki.hub_cert_1), None) == ACCEPTED
    # A device trusting the broker, with its valid password but no certificate: refused.
    assert _connack(port, client_tls_context(pki.ca_file), DEV_A) == b""
    # A device certificate from the devices' CA: refused (only the hub's CA signs logins here).
    assert _connack(port, client_tls_context(pki.ca_file, pki.device_cert), DEV_A) == b""
    # Control: the same password, trusting the same CA, logs in on the device TLS listener.
    assert _connack(broker.running.tls_port or 0, client_tls_context(pki.ca_file), DEV_A) == ACCEPTED
    # Plain MQTT on the hub's port gets no CONNACK.
    assert not probe_mqtt(HOST, port, 2.0, username=DEV_A.username, password=DEV_A.password)


async def test_only_the_hub_account_uses_the_hub_topics(broker: Broker) -> None:
    hub_id = f"campushub-hub-{uuid.uuid4().hex[:12]}"
    bus = hub_client(broker, f"{hub_id}-bus-w2", clean_start=True)
    dev_a = device_client(broker, DEV_A, "dev-a")
    with trio.fail_after(30):
        async with running((bus, [hub_topics_filter(TOPICS)]), (dev_a, [hub_topics_filter(TOPICS)])):
            for topic in (TOPICS.live_bus, CALLS_W1):
                with pytest.raises(MqttError, match="Not authorized"):
                    await dev_a.publish(topic, b"forged", wait_for_ack=True)
            # The broker handled (and dropped) the forged publishes before their PUBACKs; the hub's own
            # message comes after them, so it is the first the bus sees, and the device reads nothing.
            await bus.publish(CALLS_W1, b"the hub's own", wait_for_ack=True)
            assert (await receive(bus)).payload == b"the hub's own"
            await dev_a.publish(TOPICS.uplink("dev-a"), b"the device's own", wait_for_ack=True)
            assert dev_a.messages.statistics().current_buffer_used == 0


def test_the_hub_listener_in_the_rendered_config() -> None:
    tls = BrokerTls(Path("/etc/m/ca.pem"), Path("/etc/m/broker.crt"), Path("/etc/m/broker.key"))
    hub = HubListener(8884, Path("/etc/m/hub-ca.pem"), tls.certfile, tls.keyfile)
    text = render_mosquitto_conf(password_file=Path("/etc/m/passwd"), acl_file=Path("/etc/m/acl"), port=1883,
                                 bind_address="10.0.0.5", tls=tls, tls_port=8883, hub_listener=hub)
    listeners = [block.strip().splitlines() for block in text.split("\n\n")[1:]]
    assert listeners[0] == ["listener 1883 10.0.0.5", "use_username_as_clientid true"]
    assert listeners[1][:2] == ["listener 8883 10.0.0.5", "use_username_as_clientid true"]
    assert [line for line in listeners[2] if not line.startswith("#")] == [
        "listener 8884 10.0.0.5", "cafile /etc/m/hub-ca.pem", "certfile /etc/m/broker.crt",
        "keyfile /etc/m/broker.key", "tls_version tlsv1.2", "require_certificate true",
        "use_identity_as_username true"]
    assert "per_listener_settings false" in text.splitlines()  # one password file and ACL for all three
    private = render_mosquitto_conf(password_file=Path("/p"), acl_file=Path("/a"), bind_address="0.0.0.0",
                                    hub_listener=HubListener(8884, Path("/h"), Path("/c"), Path("/k"), "10.1.1.1"))
    assert "listener 8884 10.1.1.1" in private.splitlines()

    def render(hub_listener: HubListener) -> str:
        return render_mosquitto_conf(password_file=Path("/p"), acl_file=Path("/a"), tls=tls, tls_port=8883,
                                     hub_listener=hub_listener)

    with pytest.raises(ValueError, match="port of its own"):
        render(HubListener(8883, Path("/h"), Path("/c"), Path("/k")))
    with pytest.raises(ValueError, match="port of its own"):
        render(HubListener(1883, Path("/h"), Path("/c"), Path("/k")))
    with pytest.raises(ValueError, match="CA of its own"):
        render(HubListener(8884, tls.cafile, Path("/c"), Path("/k")))
    with pytest.raises(ValueError, match="bind address"):
        render(HubListener(8884, Path("/h"), Path("/c"), Path("/k"), "0.0.0.0\nuse_username_as_clientid false"))
    with pytest.raises(ValueError, match="absolute"):
        render(HubListener(8884, Path("hub-ca.pem"), Path("/c"), Path("/k")))


def test_the_hub_account_has_every_hub_topic_and_no_device_any() -> None:
    topics = Topics("campus")
    acl = render_acl_file([MqttAccountRow("dev-1", "dev-1", "$7$1$AA==$AA==")], topics, "hub")
    blocks = {block.strip().splitlines()[0]: block.strip().splitlines()
              for block in acl.split("\n\n") if block.strip().startswith("user")}
    assert hub_topics_filter(topics) == "campus/v1/hub/#"
    assert any(line.startswith("topic readwrite campus/v1/hub/#") for line in blocks["user hub"])
    assert topics.live_bus.startswith("campus/v1/hub/")  # covered by the filter
    assert not [line for line in blocks["user dev-1"] if "/v1/hub/" in line]


def test_a_worker_reads_the_hub_listener_from_its_environment(broker: Broker) -> None:
    settings = broker.settings(broker.pki.hub_cert_1)
    assert settings.mqtt_hub_url == f"mqtts://{HOST}:{broker.hub_port}"
    assert settings.mqtt_hub_tls_context() is not None
    assert Settings().mqtt_hub_tls_context() is None  # no hub listener: one session, on CAMPUSHUB_MQTT_URL
    base = {"CAMPUSHUB_MQTT_URL": "mqtt://hub:pw@broker:1883"}
    with pytest.raises(ValueError, match="must be mqtts://"):
        Settings.from_env({**base, "CAMPUSHUB_MQTT_HUB_URL": "mqtt://broker:8884",
                           "CAMPUSHUB_MQTT_HUB_CERTFILE": "/etc/campushub/hub.pem"})
    with pytest.raises(ValueError, match="CAMPUSHUB_MQTT_HUB_CERTFILE"):
        Settings.from_env({**base, "CAMPUSHUB_MQTT_HUB_URL": "mqtts://broker:8884"})
    with pytest.raises(ValueError, match="CAMPUSHUB_MQTT_HUB_URL is not"):
        Settings.from_env({**base, "CAMPUSHUB_MQTT_HUB_CERTFILE": "/etc/campushub/hub.pem"})
