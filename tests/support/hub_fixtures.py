"""Fixtures that run the real hub against the run's PostgreSQL and broker (a plugin of tests/conftest.py).

Each test gets its own database (``fresh_database_url``), topic prefix and
MQTT client id, so tests never see each other's messages or rows.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import AsyncIterator

import pytest
import trio

from hub.app.supervision import Hub, run_hub
from hub.core.campus import Campus
from hub.core.config import MqttUrl, Settings
from hub.db import Database, open_database, run_with_database
from hub.db.seed import ensure_campus
from hub.mqtt import TrioMqttClient


@pytest.fixture
def hub_settings(fresh_database_url: str, mqtt_server_url: str, topic_prefix: str, tmp_path: Path) -> Settings:
    run = uuid.uuid4().hex[:10]
    return Settings(
        database_url=fresh_database_url, mqtt_url=mqtt_server_url, topic_prefix=f"{topic_prefix}/{run}",
        data_dir=tmp_path / "data", jwt_secret="test-jwt-secret-must-be-32-bytes-" + run, hub_client_id=f"hub-{run}",
        device_offline_after_s=30,
        # The seeded logins log in with a password only, as in the demo; MFA tests turn this off.
        mfa_optional_demo=True,
        # The hostile corpus and schemathesis call the API as one user far faster than a person:
        # no per-user request limit here (tests/web/test_protection.py tests the limits).
        api_rate_limits="1000000/minute",
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


@pytest.fixture
async def publisher(hub_settings: Settings) -> AsyncIterator[TrioMqttClient]:
    """A raw MQTT client for publishing hand-made (often hostile) messages."""
    url = MqttUrl.parse(hub_settings.mqtt_url)
    client = TrioMqttClient(host=url.host, port=url.port, client_id=f"pub-{uuid.uuid4().hex[:10]}",
                            clean_start=True, protocol=url.protocol)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        yield client
        nursery.cancel_scope.cancel()
