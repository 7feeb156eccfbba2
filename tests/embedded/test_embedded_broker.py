"""hub.embedded.broker: Mosquitto as a child process, and the amqtt fallback, really started and used."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from hub.embedded import (
    EmbeddedBroker,
    EmbeddedServiceError,
    mosquitto_path,
    probe_mqtt,
    start_embedded_broker,
)
from hub.embedded._common import process_alive

pytestmark = pytest.mark.integration

needs_mosquitto = pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")
BOTH = [pytest.param(True, id="mosquitto", marks=needs_mosquitto), pytest.param(False, id="amqtt")]


class Client:
    """A blocking paho client for tests (MQTT 3.1.1: the one protocol both brokers speak)."""

    def __init__(self, broker: EmbeddedBroker, client_id: str, *, clean: bool = True) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.received = threading.Event()
        self._connected = threading.Event()
        self._paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                 clean_session=clean, protocol=mqtt.MQTTv311)
        self._paho.on_connect = lambda *args: self._connected.set()
        self._paho.on_message = self._on_message
        self._paho.connect(broker.host, broker.port)
        self._paho.loop_start()
        assert self._connected.wait(5), "no CONNACK"

    def _on_message(self, client, userdata, message) -> None:
        self.messages.append((message.topic, message.payload))
        self.received.set()

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self._paho.on_subscribe = lambda *args: done.set()
        self._paho.subscribe(topic, qos=1)
        assert done.wait(5), "no SUBACK"

    def publish(self, topic: str, payload: bytes) -> None:
        self._paho.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self._paho.disconnect()
        self._paho.loop_stop()


@pytest.mark.parametrize("prefer_mosquitto", BOTH)
def test_start_publish_subscribe_stop(tmp_path: Path, prefer_mosquitto: bool) -> None:
    with start_embedded_broker(tmp_path, prefer_mosquitto=prefer_mosquitto) as broker:
        assert broker.kind == ("mosquitto" if prefer_mosquitto else "amqtt")
        # amqtt only speaks MQTT 3.1.1; the URL tells our clients so.
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}" + ("" if prefer_mosquitto else "?protocol=3.1.1")
        assert probe_mqtt(broker.host, broker.port, timeout=2.0)
        topic = f"test-{uuid.uuid4().hex}/ping"
        sub = Client(broker, f"sub-{uuid.uuid4().hex[:8]}")
        pub = Client(broker, f"pub-{uuid.uuid4().hex[:8]}")
        try:
            sub.subscribe(topic)
            pub.publish(topic, b"hello")
            assert sub.received.wait(5)
            assert sub.messages == [(topic, b"hello")]
        finally:
            sub.close()
            pub.close()
    assert not probe_mqtt(broker.host, broker.port, timeout=1.0)
    broker.stop()  # idempotent


@needs_mosquitto
def test_mosquitto_persistent_session_survives_restart(tmp_path: Path) -> None:
    topic = f"test-{uuid.uuid4().hex}/queued"
    client_id = f"persistent-{uuid.uuid4().hex[:8]}"
    with start_embedded_broker(tmp_path) as broker:
        port = broker.port
        offline = Client(broker, client_id, clean=False)
        offline.subscribe(topic)
        offline.close()  # session kept by the broker
        pub = Client(broker, "pub")
        pub.publish(topic, b"while you were away")  # queued for the offline session
        pub.close()
    # SIGTERM made Mosquitto write mosquitto.db; a new broker on the same dir loads it.
    with start_embedded_broker(tmp_path) as broker:
        assert broker.port == port
        back = Client(broker, client_id, clean=False)
        try:
            assert back.received.wait(5), "queued message lost across the restart"
            assert back.messages == [(topic, b"while you were away")]
        finally:
            back.close()


@pytest.mark.parametrize("prefer_mosquitto", BOTH)
def test_one_owner_per_data_dir(tmp_path: Path, prefer_mosquitto: bool) -> None:
    with start_embedded_broker(tmp_path, prefer_mosquitto=prefer_mosquitto):
        with pytest.raises(EmbeddedServiceError, match="in use"):
            start_embedded_broker(tmp_path, prefer_mosquitto=prefer_mosquitto)


def test_explicit_port_that_is_taken_fails_clearly(tmp_path: Path) -> None:
    with start_embedded_broker(tmp_path / "a") as first:
        with pytest.raises(EmbeddedServiceError, match="in use"):
            start_embedded_broker(tmp_path / "b", port=first.port, timeout=5)


@pytest.mark.parametrize("prefer_mosquitto", BOTH)
def test_orphan_of_a_killed_owner_is_stopped(tmp_path: Path, prefer_mosquitto: bool) -> None:
    script = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from hub.embedded import start_embedded_broker
        broker = start_embedded_broker(Path({str(tmp_path)!r}), prefer_mosquitto={prefer_mosquitto})
        print(broker.pid, flush=True)
        os._exit(0)
    """)
    orphan = int(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                                text=True, timeout=60).stdout)
    assert process_alive(orphan)
    with start_embedded_broker(tmp_path, prefer_mosquitto=prefer_mosquitto) as broker:
        assert broker.pid != orphan
        assert not process_alive(orphan)


def _secure_conf(directory: Path):
    """The project's generated config (hub + one device account), as hub/app/environment.py passes it."""
    import getpass

    from support.private_mosquitto import HUB_LOGIN, BrokerLogin, broker_files, write_accounts

    from hub.adapters.mosquitto_conf import render_mosquitto_conf
    from schemas import Topics

    files = broker_files(directory)
    write_accounts(files, Topics("embedded"), HUB_LOGIN, [BrokerLogin("dev-1", "dev-password")])
    return lambda port: render_mosquitto_conf(
        password_file=files.password_file, acl_file=files.acl_file, port=port, bind_address="127.0.0.1",
        persistence_dir=directory, run_as_user=getpass.getuser())


@needs_mosquitto
def test_with_the_generated_config_mosquitto_enforces_auth(tmp_path: Path) -> None:
    from support.private_mosquitto import HUB_LOGIN

    with start_embedded_broker(tmp_path, mosquitto_conf=_secure_conf(tmp_path)) as broker:
        assert broker.kind == "mosquitto" and broker.enforces_auth
        assert not probe_mqtt(broker.host, broker.port, timeout=2.0)  # anonymous: refused
        assert probe_mqtt(broker.host, broker.port, timeout=2.0, username=HUB_LOGIN.username,
                          password=HUB_LOGIN.password)
        assert "allow_anonymous false" in (tmp_path / "mosquitto.conf").read_text()


@pytest.mark.parametrize("prefer_mosquitto", BOTH)
def test_an_open_broker_says_it_does_not_enforce_auth(tmp_path: Path, prefer_mosquitto: bool) -> None:
    # amqtt cannot enforce the generated config at all, so it reports False even when given one.
    with start_embedded_broker(tmp_path, prefer_mosquitto=prefer_mosquitto,
                               mosquitto_conf=None if prefer_mosquitto else _secure_conf(tmp_path)) as broker:
        assert not broker.enforces_auth
        assert probe_mqtt(broker.host, broker.port, timeout=2.0)  # an anonymous client gets in
