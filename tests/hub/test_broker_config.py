"""The generated mosquitto.conf, enforced by a real Mosquitto (issue 12 §1, §3 broker side, §5 listener).

Each test runs an attack of the issue against a private Mosquitto started from
``render_mosquitto_conf`` output (tests/support/private_mosquitto.py) with real
MQTT clients (paho, blocking, in its own thread): anonymous access, taking over
the hub's or another device's session by client id, subscribing to what is not
yours, an oversize publish, and plaintext on the TLS port.
"""
from __future__ import annotations

import getpass
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import paho.mqtt.client as mqtt
import pytest
import trustme
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from support.private_mosquitto import (
    HOST,
    HUB_LOGIN,
    BrokerLogin,
    PrivateMosquitto,
    broker_files,
    mosquitto_available,
    start_private_mosquitto,
    write_accounts,
)

from hub.adapters.mosquitto_conf import DEFAULT_MAX_PACKET_SIZE, BrokerTls, render_mosquitto_conf
from hub.db import Database, run_with_database
from hub.db.device_registry import load_devices
from hub.db.seed import ensure_campus, seeded_broker_password
from hub.domain.credentials import mosquitto_verify
from hub.embedded import probe_mqtt
from hub.embedded._common import free_port
from schemas import MAX_MESSAGE_BYTES, Topics

pytestmark = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed")

TOPICS = Topics(f"conf-{uuid.uuid4().hex[:8]}")
DEV_A = BrokerLogin("dev-a", "password-a")
DEV_B = BrokerLogin("dev-b", "password-b")


class Client:
    """A blocking paho client: CONNACK, SUBACK, PUBACK and disconnects recorded for assertions."""

    def __init__(self, port: int, login: BrokerLogin | None, client_id: str, *,
                 protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5, clean: bool = True, session_expiry: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.received = threading.Event()
        self.connack = threading.Event()
        self.disconnected = threading.Event()
        self._settled = threading.Event()  # CONNACK or disconnect, whichever comes first
        self.reason: mqtt.ReasonCode | None = None
        self.paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                                clean_session=None if protocol == mqtt.MQTTv5 else clean)
        if login is not None:
            self.paho.username_pw_set(login.username, login.password)
        if tls is not None:
            self.paho.tls_set_context(tls)
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_message = self._on_message
        if protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry
            self.paho.connect(HOST, port, clean_start=clean, properties=props)
        else:
            self.paho.connect(HOST, port)
        self.paho.loop_start()
        assert self._settled.wait(5), "neither CONNACK nor disconnect"

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.reason = reason_code
        self.connack.set()
        self._settled.set()

    def _on_disconnect(self, *args: object) -> None:
        self.disconnected.set()
        self._settled.set()

    def _on_message(self, client, userdata, message) -> None:
        self.messages.append((message.topic, message.payload))
        self.received.set()

    @property
    def accepted(self) -> bool:
        return self.reason is not None and not self.reason.is_failure

    def subscribe(self, topic_filter: str) -> list[int]:
        """The SUBACK's reason codes (0/1/2 granted QoS, >= 0x80 refused)."""
        done = threading.Event()
        codes: list[int] = []

        def on_subscribe(client, userdata, mid, reason_codes, properties) -> None:
            codes.extend(rc.value for rc in reason_codes)
            done.set()

        self.paho.on_subscribe = on_subscribe
        self.paho.subscribe(topic_filter, qos=1)
        assert done.wait(5), "no SUBACK"
        return codes

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        info = self.paho.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
        return info

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _tls_files(ca: trustme.CA, directory: Path) -> BrokerTls:
    directory.mkdir(parents=True, exist_ok=True)
    server = ca.issue_cert("127.0.0.1", "localhost")
    cafile, certfile, keyfile = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca.cert_pem.write_to_path(str(cafile))
    server.cert_chain_pems[0].write_to_path(str(certfile))
    server.private_key_pem.write_to_path(str(keyfile))
    return BrokerTls(cafile, certfile, keyfile)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[PrivateMosquitto]:
    directory = tmp_path_factory.mktemp("broker-config")
    with start_private_mosquitto(directory, devices=[DEV_A, DEV_B], topics=TOPICS,
                                 tls=_tls_files(ca, directory / "tls")) as running:
        yield running


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


def _hub(broker: PrivateMosquitto, client_id: str = "campushub-hub-test") -> Client:
    hub = Client(broker.port, HUB_LOGIN, client_id, clean=False, session_expiry=3600)
    assert hub.accepted
    assert hub.subscribe(TOPICS.uplink_filter) == [1]
    return hub


def test_the_rendered_config_is_what_the_broker_runs(broker: PrivateMosquitto) -> None:
    text = broker.config.read_text()
    for line in ("per_listener_settings false", "allow_anonymous false", "use_username_as_clientid true",
                 f"max_packet_size {DEFAULT_MAX_PACKET_SIZE}", f"listener {broker.tls_port} 127.0.0.1"):
        assert line in text.splitlines()
    assert text.count("use_username_as_clientid true") == 2  # a listener option: on both listeners


def test_anonymous_clients_are_refused_on_both_listeners(broker: PrivateMosquitto, ca: trustme.CA) -> None:
    assert not probe_mqtt(HOST, broker.port, 2.0)
    anonymous = Client(broker.port, None, "anon-" + uuid.uuid4().hex[:6])
    anonymous.close()
    assert not anonymous.accepted
    assert anonymous.reason is not None and anonymous.reason.value == 0x87  # Not authorized
    over_tls = Client(broker.tls_port or 0, None, "anon-tls", tls=_client_context(ca))
    over_tls.close()
    assert not over_tls.accepted


def test_a_device_cannot_take_over_the_hubs_session(broker: PrivateMosquitto) -> None:
    hub = _hub(broker)
    try:
        # The device asks for the hub's client id; the broker gives it its username instead.
        intruder = Client(broker.port, DEV_A, "campushub-hub-test", clean=True)
        try:
            assert intruder.accepted
            assert not hub.disconnected.wait(1.0), "the hub was kicked off by a device"
            intruder.publish(TOPICS.uplink("dev-a"), b"still the hub's")
            assert hub.received.wait(5)
            assert hub.messages == [(TOPICS.uplink("dev-a"), b"still the hub's")]
        finally:
            intruder.close()
    finally:
        hub.close()


def test_the_hubs_session_belongs_to_its_account_whatever_client_id_it_asks_for(
        broker: PrivateMosquitto) -> None:
    # Offline, the hub's persistent session queues the device's events ...
    _hub(broker, "first-id").close()
    device = Client(broker.port, DEV_B, "dev-b")
    device.publish(TOPICS.uplink("dev-b"), b"queued for the hub")
    device.close()
    # ... and the hub gets them back under any client id: the session is keyed by the username.
    back = Client(broker.port, HUB_LOGIN, "another-id", clean=False, session_expiry=3600)
    try:
        assert back.accepted
        assert back.received.wait(5)
        assert back.messages == [(TOPICS.uplink("dev-b"), b"queued for the hub")]
    finally:
        back.close()
    Client(broker.port, HUB_LOGIN, "cleanup", clean=True).close()  # drop the session


def test_a_second_login_with_the_hubs_account_takes_its_session(broker: PrivateMosquitto) -> None:
    """The cost of the binding: one session per account, so tools must not log in as the hub."""
    hub = _hub(broker, "hub-process-1")
    try:
        second = Client(broker.port, HUB_LOGIN, "hub-process-2", clean=True)
        second.close()
        assert second.accepted
        assert hub.disconnected.wait(5), "expected the first hub connection to be taken over"
    finally:
        hub.close()


def test_a_device_cannot_take_over_another_devices_session(broker: PrivateMosquitto) -> None:
    victim = Client(broker.port, DEV_B, "dev-b")
    try:
        intruder = Client(broker.port, DEV_A, "dev-b")
        try:
            assert intruder.accepted
            assert not victim.disconnected.wait(1.0), "dev-b was kicked off by dev-a"
        finally:
            intruder.close()
    finally:
        victim.close()


def test_without_the_binding_a_device_takes_over_the_hubs_session(tmp_path: Path) -> None:
    """What ``use_username_as_clientid`` protects against, measured: remove it and the attack works."""
    with start_private_mosquitto(tmp_path, devices=[DEV_A], topics=TOPICS,
                                 edit_conf=lambda t: t.replace("use_username_as_clientid true\n", "")) as bare:
        hub = _hub(bare)
        try:
            intruder = Client(bare.port, DEV_A, "campushub-hub-test")
            intruder.close()
            assert hub.disconnected.wait(5), "expected Mosquitto to close the hub's connection"
        finally:
            hub.close()


def test_a_device_cannot_read_uplinks_statuses_or_another_devices_downlink(broker: PrivateMosquitto) -> None:
    spy = Client(broker.port, DEV_A, "dev-a")
    hub = _hub(broker)
    try:
        # Mosquitto 2.0 grants the SUBACK (it checks read access per message), so delivery is the test.
        spy.subscribe(TOPICS.uplink_filter)
        spy.subscribe(TOPICS.status_filter)
        spy.subscribe(TOPICS.downlink("dev-b"))
        spy.subscribe(TOPICS.downlink("dev-a"))
        victim = Client(broker.port, DEV_B, "dev-b")
        try:
            victim.publish(TOPICS.uplink("dev-b"), b"check-in of dev-b")
            victim.publish(TOPICS.status("dev-b"), b"status of dev-b")
        finally:
            victim.close()
        hub.publish(TOPICS.downlink("dev-b"), b"template for dev-b")
        hub.publish(TOPICS.downlink("dev-a"), b"command for dev-a")
        assert spy.received.wait(5)
        time.sleep(0.5)  # anything else would have arrived by now
        assert spy.messages == [(TOPICS.downlink("dev-a"), b"command for dev-a")]
        assert hub.messages == [(TOPICS.uplink("dev-b"), b"check-in of dev-b")]
    finally:
        spy.close()
        hub.close()
        Client(broker.port, HUB_LOGIN, "cleanup", clean=True).close()


def _raw_publish(port: int, login: BrokerLogin, payload_size: int) -> bytes:
    """CONNECT (3.1.1) then one QoS 0 PUBLISH of ``payload_size`` bytes; what the broker sent back after it."""
    def string(text: str) -> bytes:
        return struct.pack("!H", len(text)) + text.encode()

    def packet(kind: int, body: bytes) -> bytes:
        length, n = bytearray(), len(body)
        while True:
            byte, n = n % 128, n // 128
            length.append(byte | (0x80 if n else 0))
            if not n:
                return bytes([kind]) + bytes(length) + body

    with socket.create_connection((HOST, port), timeout=5) as sock:
        connect = string("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 30) + string("raw") \
            + string(login.username) + string(login.password)
        sock.sendall(packet(0x10, connect))
        assert sock.recv(4) == b"\x20\x02\x00\x00", "CONNACK refused"
        try:
            sock.sendall(packet(0x30, string(TOPICS.uplink(login.username)) + b"x" * payload_size))
            sock.sendall(b"\xc0\x00")  # PINGREQ: a live connection answers PINGRESP
            return sock.recv(16)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def test_a_publish_bigger_than_max_packet_size_is_dropped_with_the_connection(
        broker: PrivateMosquitto) -> None:
    hub = _hub(broker)
    try:
        # The hub's largest message fits, with its topic and headers ...
        assert _raw_publish(broker.port, DEV_A, MAX_MESSAGE_BYTES) == b"\xd0\x00"  # PINGRESP
        assert hub.received.wait(5)
        hub.received.clear()
        # ... one byte over the limit, or 1 MiB, ends the connection, and nobody gets the payload.
        # (Measured: Mosquitto 2.0.11 counts the packet as 1 + remaining length, leaving out the
        # 1-4 bytes that encode the length, so the last packet it takes has remaining length max - 1.)
        at_limit = DEFAULT_MAX_PACKET_SIZE - 1 - 2 - len(TOPICS.uplink("dev-a"))
        assert _raw_publish(broker.port, DEV_A, at_limit) == b"\xd0\x00"
        assert hub.received.wait(5)
        hub.received.clear()
        assert _raw_publish(broker.port, DEV_A, at_limit + 1) == b""
        assert _raw_publish(broker.port, DEV_A, 1 << 20) == b""
        assert not hub.received.wait(0.5)
        assert [len(payload) for _, payload in hub.messages] == [MAX_MESSAGE_BYTES, at_limit]
    finally:
        hub.close()
        Client(broker.port, HUB_LOGIN, "cleanup", clean=True).close()


def test_the_tls_listener_serves_clients_with_the_ca_and_refuses_plaintext(
        broker: PrivateMosquitto, ca: trustme.CA) -> None:
    assert broker.tls_port is not None
    hub = _hub(broker)
    try:
        device = Client(broker.tls_port, DEV_A, "dev-a", tls=_client_context(ca))
        try:
            assert device.accepted
            device.publish(TOPICS.uplink("dev-a"), b"over tls")
            assert hub.received.wait(5)
            assert hub.messages == [(TOPICS.uplink("dev-a"), b"over tls")]
        finally:
            device.close()
        # Plaintext MQTT on the TLS port gets no CONNACK; a client without our CA fails the handshake.
        assert not probe_mqtt(HOST, broker.tls_port, 2.0, username=DEV_A.username, password=DEV_A.password)
        with pytest.raises(ssl.SSLCertVerificationError):
            Client(broker.tls_port, DEV_A, "dev-a", tls=ssl.create_default_context())
    finally:
        hub.close()
        Client(broker.port, HUB_LOGIN, "cleanup", clean=True).close()


def test_a_listener_requiring_certificates_takes_the_username_from_the_certificate(
        tmp_path: Path, ca: trustme.CA) -> None:
    files = _tls_files(ca, tmp_path / "tls")
    tls = BrokerTls(files.cafile, files.certfile, files.keyfile, require_certificate=True)
    device_cert = ca.issue_cert("dev-a", common_name="dev-a")
    with start_private_mosquitto(tmp_path / "broker", devices=[DEV_A], topics=TOPICS, tls=tls) as running:
        assert running.tls_port is not None
        hub = _hub(running)
        with_cert = _client_context(ca)
        device_cert.configure_cert(with_cert)
        device = Client(running.tls_port, None, "whatever", tls=with_cert)  # no password: the CN is the login
        try:
            assert device.accepted
            device.publish(TOPICS.uplink("dev-a"), b"signed in by certificate")  # dev-a's own topic: allowed
            assert hub.received.wait(5)
            assert hub.messages == [(TOPICS.uplink("dev-a"), b"signed in by certificate")]
        finally:
            device.close()
            hub.close()
        # Without a certificate: with TLS 1.3 the refusal comes after the client's side of the
        # handshake, as a closed connection instead of a CONNACK; with 1.2, as a handshake error.
        try:
            no_cert = Client(running.tls_port, DEV_A, "dev-a", tls=_client_context(ca))
        except (ssl.SSLError, OSError):
            pass
        else:
            no_cert.close()
            assert not no_cert.accepted and no_cert.disconnected.is_set()


def test_reload_applies_new_accounts_to_a_running_broker(tmp_path: Path) -> None:
    newcomer = BrokerLogin("dev-new", "new-password")
    with start_private_mosquitto(tmp_path, topics=TOPICS) as running:
        assert not probe_mqtt(HOST, running.port, 2.0, username=newcomer.username, password=newcomer.password)
        write_accounts(running.files, TOPICS, HUB_LOGIN, [newcomer])
        running.reload()
        deadline = time.monotonic() + 5
        while not probe_mqtt(HOST, running.port, 2.0, username=newcomer.username, password=newcomer.password):
            assert time.monotonic() < deadline, running.log_text()
            time.sleep(0.05)
        assert "as dev-new" in running.log_text()  # the connection, in the broker's own log


def test_render_refuses_values_that_cannot_go_into_the_file() -> None:
    passwd, acl = Path("/x/passwd"), Path("/x/acl")
    with pytest.raises(ValueError, match="max_packet_size"):
        render_mosquitto_conf(password_file=passwd, acl_file=acl, max_packet_size=10)
    with pytest.raises(ValueError, match="absolute"):
        render_mosquitto_conf(password_file=Path("relative"), acl_file=acl)
    with pytest.raises(ValueError, match="bind address"):
        render_mosquitto_conf(password_file=passwd, acl_file=acl, bind_address="0.0.0.0\nallow_anonymous true")
    with pytest.raises(ValueError, match="port of its own"):
        render_mosquitto_conf(password_file=passwd, acl_file=acl, port=1883, tls_port=1883,
                              tls=BrokerTls(Path("/c"), Path("/s"), Path("/k")))


def test_export_mosquitto_writes_a_conf_the_broker_runs(fresh_database_url: str, tmp_path: Path) -> None:
    """``campushub devices export-mosquitto --conf`` (a real subprocess): the files and conf start Mosquitto."""
    run_with_database(fresh_database_url, lambda db: db.execute(
        "INSERT INTO rooms (id, name, building) VALUES ('r1', 'Room 1', 'Main')"))
    env = dict(os.environ, CAMPUSHUB_DATABASE_URL=fresh_database_url, CAMPUSHUB_TOPIC_PREFIX=TOPICS.prefix,
               CAMPUSHUB_MQTT_URL=f"mqtt://{HUB_LOGIN.username}:{HUB_LOGIN.password}@127.0.0.1:1883",
               CAMPUSHUB_DATA_DIR=str(tmp_path / "data"))

    def campushub(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hub", "devices", *args], capture_output=True, text=True,
                              env=env, timeout=60)

    registered = campushub("register", "cli-dev", "--room", "r1", "--kind", "sensor", "--json")
    assert registered.returncode == 0, registered.stderr
    password = json.loads(registered.stdout)["credentials"]["mqtt_password"]
    files, port = broker_files(tmp_path), free_port()
    conf = tmp_path / "mosquitto.conf"
    half_tls = campushub("export-mosquitto", "--passwd", str(files.password_file), "--acl", str(files.acl_file),
                         "--conf", str(conf), "--cafile", "/x/ca.pem")
    assert half_tls.returncode == 1 and "--certfile" in half_tls.stderr
    exported = campushub("export-mosquitto", "--passwd", str(files.password_file), "--acl", str(files.acl_file),
                         "--conf", str(conf), "--port", str(port), "--bind", "127.0.0.1",
                         "--run-as-user", getpass.getuser(), "--max-queued-messages", "5000")
    assert exported.returncode == 0, exported.stderr
    assert "max_queued_messages 5000" in conf.read_text().splitlines()
    with PrivateMosquitto(tmp_path, files, conf, port, None) as running:
        assert not probe_mqtt(HOST, running.port, 2.0)
        assert probe_mqtt(HOST, running.port, 2.0, username="cli-dev", password=password)
        assert not probe_mqtt(HOST, running.port, 2.0, username="cli-dev", password=password + "x")


def test_simulate_logs_its_devices_in_with_their_own_accounts(fresh_database_url: str, tmp_path: Path) -> None:
    """The compose path: ``campushub simulate`` against a broker with no anonymous access.

    It seeds devices with broker accounts, re-renders the broker's files through
    ``CAMPUSHUB_MOSQUITTO_*`` and reloads the broker, then each simulated device logs in
    as itself: its events are PUBACKed (nothing left in the outboxes) and reach the hub's account.
    """
    with start_private_mosquitto(tmp_path / "broker", topics=TOPICS) as running:
        hub = _hub(running)
        try:
            env = dict(os.environ, CAMPUSHUB_DATABASE_URL=fresh_database_url, CAMPUSHUB_TOPIC_PREFIX=TOPICS.prefix,
                       CAMPUSHUB_MQTT_URL=running.url(HUB_LOGIN.username, HUB_LOGIN.password),
                       CAMPUSHUB_DATA_DIR=str(tmp_path / "data"),
                       CAMPUSHUB_MOSQUITTO_PASSWORD_FILE=str(running.files.password_file),
                       CAMPUSHUB_MOSQUITTO_ACL_FILE=str(running.files.acl_file),
                       CAMPUSHUB_MOSQUITTO_PID_FILE=str(running.files.pid_file))
            result = subprocess.run(
                [sys.executable, "-m", "hub", "simulate", "--rooms", "2", "--students", "6", "--duration", "3",
                 "--json"], capture_output=True, text=True, env=env, timeout=120)
            assert result.returncode == 0, result.stderr
            counts = json.loads(result.stdout)
            assert counts["heartbeat"] >= 2 and counts["outbox_pending"] == 0, counts
            assert "dev-room-001" in running.files.password_file.read_text()
            assert {topic for topic, _ in hub.messages} == {TOPICS.uplink("dev-room-001"),
                                                             TOPICS.uplink("dev-room-002")}
        finally:
            hub.close()
            Client(running.port, HUB_LOGIN, "cleanup", clean=True).close()


def test_seeded_devices_get_broker_accounts_derived_from_their_keys(fresh_database_url: str) -> None:
    async def seed(db: Database) -> list:
        await ensure_campus(db, rooms=2, students=2, now=datetime.now(timezone.utc))
        # A campus seeded before seeds had broker accounts gets them on the next seeding.
        await db.execute("UPDATE devices SET mqtt_username = NULL, mqtt_password_hash = NULL WHERE id = 'dev-room-002'")
        await ensure_campus(db, rooms=2, students=2, now=datetime.now(timezone.utc))
        keys = {d.device_id: d.key for d in await load_devices(db)}  # sealed at rest: opened the hub's way
        rows = await db.fetch("SELECT id, mqtt_username, mqtt_password_hash FROM devices ORDER BY id")
        return [(r, keys[r["id"]]) for r in rows]

    rows = run_with_database(fresh_database_url, seed)
    assert [(r["id"], r["mqtt_username"]) for r, _ in rows] == [("dev-room-001", "dev-room-001"),
                                                                 ("dev-room-002", "dev-room-002")]
    for row, key in rows:
        assert mosquitto_verify(seeded_broker_password(key), row["mqtt_password_hash"])
