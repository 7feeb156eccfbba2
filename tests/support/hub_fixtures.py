"""Fixtures that run the real hub against the run's PostgreSQL and broker (a plugin of tests/conftest.py).

Each test gets its own database (``fresh_database_url``), topic prefix and
MQTT client id, so tests never see each other's messages or rows.
"""
from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import paho.mqtt.client as paho
import pytest
import trio

from hub.app.supervision import Hub, run_hub
from hub.core.campus import Campus
from hub.core.config import MQTT_MAX_PACKET_SIZE, MqttUrl, Settings
from hub.core.secrets_box import KEY_ENV
from hub.db import Database, open_database, run_with_database
from hub.db.seed import ensure_campus
from hub.mqtt import TrioMqttClient, client_tls_context


@pytest.fixture
def hub_settings(fresh_database_url: str, mqtt_server_url: str, mqtt_cafile: Path | None, topic_prefix: str,
                 tmp_path: Path) -> Settings:
    run = uuid.uuid4().hex[:10]
    return Settings(
        database_url=fresh_database_url, mqtt_url=mqtt_server_url, mqtt_cafile=mqtt_cafile,
        topic_prefix=f"{topic_prefix}/{run}",
        data_dir=tmp_path / "data", jwt_secret="test-jwt-secret-must-be-32-bytes-" + run, hub_client_id=f"hub-{run}",
        master_key=os.environ[KEY_ENV],  # the run's campus key (tests/conftest.py), which seeded the campus
        device_offline_after_s=30,
        # The seeded logins log in with a password only, as in the demo; MFA tests turn this off.
        mfa_optional_demo=True,
        # The hostile corpus and schemathesis call the API as one user far faster than a person:
        # no per-user request limit here (tests/web/test_protection.py tests the limits).
        api_rate_limits="1000000/minute",
        # The run's broker may be this machine's anonymous Mosquitto: the startup check still runs and
        # reports it in the detailed /healthz, but "ok" then means database and broker answer and
        # nothing unexpected was found (tests/hub/test_hub_identity.py checks the open-broker case).
        open_broker_expected=True,
    )


@pytest.fixture
def hub_campus(hub_settings: Settings) -> Campus:
    now = datetime.now(timezone.utc)
    return run_with_database(
        hub_settings.database_url, lambda db: ensure_campus(db, rooms=2, students=12, now=now))


@pytest.fixture
async def hub(hub_settings: Settings, hub_campus: Campus, aio_loop) -> AsyncIterator[Hub]:
    async with trio.open_nursery() as nursery:
        running = await nursery.start(partial(run_hub, hub_settings, port=0))
        yield running
        nursery.cancel_scope.cancel()


@pytest.fixture
async def test_db(hub_settings: Settings, aio_loop) -> AsyncIterator[Database]:
    """The test's own connection pool to the hub's database, for assertions."""
    async with open_database(hub_settings.database_url, max_size=2) as database:
        yield database


def broker_client(settings: Settings, *, client_id: str, **options: Any) -> TrioMqttClient:
    """A client of the hub's broker with the hub's URL, credentials, protocol and TLS (``CAMPUSHUB_TEST_BROKER=secure``
    gives all three); ``options`` go to ``TrioMqttClient``. Tests that talk to the hub's broker build clients here."""
    assert settings.mqtt_url is not None
    url = MqttUrl.parse(settings.mqtt_url)
    return TrioMqttClient(host=url.host, port=url.port, client_id=client_id, protocol=url.protocol,
                          username=url.username, password=url.password, tls=settings.mqtt_tls_context(), **options)


def link_client(url: MqttUrl, client_id: str) -> TrioMqttClient:
    """A client shaped like a worker's live-bus or calls client (hub/app/supervision.py) on ``url``: a clean
    session that ends with its connection, the hub's packet limit, TLS when ``url`` says so."""
    return TrioMqttClient(host=url.host, port=url.port, client_id=client_id, username=url.username,
                          password=url.password, protocol=url.protocol,
                          tls=client_tls_context() if url.tls else None, clean_start=True,
                          session_expiry_s=0, max_packet_size=MQTT_MAX_PACKET_SIZE)


def paho_login(client: paho.Client, settings: Settings) -> None:
    """Give a raw paho ``client`` the hub's broker credentials and TLS (as ``broker_client`` does); call before
    ``connect(url.host, url.port)``. Tests that drive paho themselves (a device's MQTT side) log in here."""
    assert settings.mqtt_url is not None
    url = MqttUrl.parse(settings.mqtt_url)
    if url.username is not None:
        client.username_pw_set(url.username, url.password)
    context = settings.mqtt_tls_context()
    if context is not None:
        client.tls_set_context(context)


def edge_broker(settings: Settings, *, port: int | None = None) -> dict[str, Any]:
    """``mqtt_url`` and ``mqtt_cafile`` for an edge agent's ``AgentConfig`` on the hub's broker (credentials, TLS
    and protocol kept); ``port``: the same broker through another port of 127.0.0.1 (a test's TCP proxy)."""
    assert settings.mqtt_url is not None
    mqtt_url = settings.mqtt_url
    if port is not None:
        parts = urlsplit(mqtt_url)
        login = parts.netloc.rpartition("@")[0]
        mqtt_url = urlunsplit(parts._replace(netloc=f"{login}@127.0.0.1:{port}" if login else f"127.0.0.1:{port}"))
    return {"mqtt_url": mqtt_url, "mqtt_cafile": settings.mqtt_cafile if MqttUrl.parse(mqtt_url).tls else None}


@pytest.fixture
async def publisher(hub_settings: Settings) -> AsyncIterator[TrioMqttClient]:
    """A raw MQTT client for publishing hand-made (often hostile) messages."""
    client = broker_client(hub_settings, client_id=f"pub-{uuid.uuid4().hex[:10]}", clean_start=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        yield client
        nursery.cancel_scope.cancel()
