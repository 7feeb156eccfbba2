"""hub.embedded.probe: answers quickly, never raises."""
from __future__ import annotations

import socket
import time

import pytest

from hub.embedded import probe_mqtt, probe_postgres
from hub.embedded._common import free_port

pytestmark = pytest.mark.integration


def test_closed_ports_answer_false_quickly() -> None:
    port = free_port()
    started = time.monotonic()
    assert not probe_mqtt("127.0.0.1", port, timeout=1.0)
    assert not probe_postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=1.0)
    assert time.monotonic() - started < 1.0


def test_a_silent_service_is_not_a_broker() -> None:
    with socket.socket() as server:  # accepts, never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert not probe_mqtt("127.0.0.1", server.getsockname()[1], timeout=0.3)


def test_real_services(database_server_url: str, open_mqtt_server_url: str) -> None:
    from hub.core.config import MqttUrl

    assert probe_postgres(database_server_url)
    # probe_mqtt speaks plain MQTT without credentials (it finds the local services): an open broker.
    url = MqttUrl.parse(open_mqtt_server_url)
    assert probe_mqtt(url.host, url.port)
    assert not probe_postgres(database_server_url.rsplit("/", 1)[0] + "/no_such_database")
