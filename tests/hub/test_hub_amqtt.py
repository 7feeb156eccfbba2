"""The walking skeleton on the embedded amqtt broker (MQTT 3.1.1 only): what `campushub demo` runs
on a machine without Mosquitto. Edge agent → amqtt → hub → PostgreSQL, every client speaking
3.1.1 because the broker URL says ``?protocol=3.1.1``.
"""
from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Iterator

import pytest
import trio
from support.hub_helpers import AgentThread, agent_config, eventually, session_with_device, student

from hub.app.supervision import run_hub
from hub.core.campus import Campus
from hub.core.config import MqttUrl, Settings
from hub.core.secrets_box import KEY_ENV
from hub.db import open_database, run_with_database
from hub.db.seed import ensure_campus
from hub.embedded import EmbeddedBroker, start_embedded_broker
from schemas import issue_checkin_token


@pytest.fixture(scope="module")
def amqtt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with start_embedded_broker(tmp_path_factory.mktemp("amqtt"), prefer_mosquitto=False) as broker:
        yield broker


@pytest.fixture
def amqtt_settings(fresh_database_url: str, amqtt: EmbeddedBroker, topic_prefix: str, tmp_path: Path) -> Settings:
    run = uuid.uuid4().hex[:10]
    return Settings(
        database_url=fresh_database_url, mqtt_url=amqtt.url, topic_prefix=f"{topic_prefix}/{run}",
        data_dir=tmp_path / "data", jwt_secret="test-jwt-secret-must-be-32-bytes-" + run,
        hub_client_id=f"hub-{run}", master_key=os.environ[KEY_ENV],  # the key that seeds amqtt_campus
    )


@pytest.fixture
def amqtt_campus(amqtt_settings: Settings) -> Campus:
    now = datetime.now(timezone.utc)
    return run_with_database(
        amqtt_settings.database_url, lambda db: ensure_campus(db, rooms=2, students=12, now=now))


async def test_edge_agent_checkin_reaches_postgres_through_amqtt(
    amqtt_settings: Settings, amqtt_campus: Campus, aio_loop, tmp_path: Path,
):
    assert MqttUrl.parse(amqtt_settings.mqtt_url).protocol == "3.1.1"
    session, device = session_with_device(amqtt_campus)
    enrolled = student(amqtt_campus, session.enrolled[0])
    with trio.fail_after(30):
        async with open_database(amqtt_settings.database_url, max_size=2) as db, trio.open_nursery() as nursery:
            hub = await nursery.start(partial(run_hub, amqtt_settings, port=None))
            assert hub.client.connected and hub.client.protocol == "3.1.1"
            agent = AgentThread(agent_config(
                device, mqtt_url=amqtt_settings.mqtt_url, topic_prefix=amqtt_settings.topic_prefix,
                outbox=tmp_path / "outbox.sqlite")).start()
            try:
                await trio.to_thread.run_sync(
                    agent.submit_qr, issue_checkin_token(enrolled.student_id, enrolled.token_secret, time.time()))
                row = await eventually(lambda: _attendance(db, session.session_id, enrolled.student_id))
                assert row["status"] == "present" and row["source"] == "qr"
                event = await db.fetchrow("SELECT device_id, kind FROM events WHERE event_id = $1", row["event_id"])
                assert dict(event) == {"device_id": device.device_id, "kind": "qr_scan"}
                # The agent's retained online status crossed amqtt too.
                health = await eventually(lambda: db.fetchrow(
                    "SELECT online FROM device_health WHERE device_id = $1 AND online", device.device_id))
                assert health["online"] is True
                assert agent.error is None
            finally:
                await trio.to_thread.run_sync(agent.stop)
            nursery.cancel_scope.cancel()


async def test_checkin_made_while_the_hub_is_down_arrives_after_its_restart(
    amqtt_settings: Settings, amqtt_campus: Campus, aio_loop, tmp_path: Path,
):
    """The hub's persistent 3.1.1 session: amqtt queues what arrives while the hub is away."""
    session, device = session_with_device(amqtt_campus)
    enrolled = student(amqtt_campus, session.enrolled[0])
    with trio.fail_after(30):
        async with open_database(amqtt_settings.database_url, max_size=2) as db:
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(run_hub, amqtt_settings, port=None))  # subscribes
                nursery.cancel_scope.cancel()  # clean stop: DISCONNECT, the session stays
            agent = AgentThread(agent_config(
                device, mqtt_url=amqtt_settings.mqtt_url, topic_prefix=amqtt_settings.topic_prefix,
                outbox=tmp_path / "outbox.sqlite")).start()
            try:
                await trio.to_thread.run_sync(
                    agent.submit_qr, issue_checkin_token(enrolled.student_id, enrolled.token_secret, time.time()))
                # amqtt PUBACKed it: it now sits in the hub's offline session, not in the outbox.
                await eventually(lambda: _true(agent.agent.outbox_depth == 0))
                assert await _attendance(db, session.session_id, enrolled.student_id) is None
            finally:
                await trio.to_thread.run_sync(agent.stop)
            async with trio.open_nursery() as nursery:
                hub = await nursery.start(partial(run_hub, amqtt_settings, port=None))
                assert hub.client._session_present
                row = await eventually(lambda: _attendance(db, session.session_id, enrolled.student_id))
                assert row["status"] == "present"
                nursery.cancel_scope.cancel()


async def _attendance(db, session_id, student_id):
    return await db.fetchrow(
        "SELECT status, source, event_id FROM attendance WHERE session_id = $1 AND student_id = $2",
        session_id, student_id)


async def _true(value: bool) -> bool:
    return value
