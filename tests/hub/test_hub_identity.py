"""The hub's identity on the broker (issue 12 §1): a per-deployment client id, the foreign-session
guard, and the startup check for an open broker. Real PostgreSQL and Mosquitto."""
from __future__ import annotations

import dataclasses
import logging
import uuid
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from support.hub_fixtures import broker_client
from support.hub_helpers import eventually
from support.private_mosquitto import mosquitto_available, start_private_mosquitto

from hub.app.broker_exposure import check_broker_exposure
from hub.app.broker_session import hub_client_id
from hub.app.supervision import run_hub
from hub.core.config import MqttUrl, Settings
from hub.db import migrate, open_database
from hub.db.deployment import HUB_CLIENT_ID_PREFIX, deployment_identity, derived_hub_client_id
from hub.mqtt import InboundMessage

METRICS_TOKEN = "identity-test-metrics-token"
DETAIL = {"Authorization": f"Bearer {METRICS_TOKEN}"}


async def _detail(hub) -> dict:
    """The detailed /healthz (the hub's pool lives on its own loop: ask it over HTTP, as an operator would)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", headers=DETAIL) as http:
        return (await http.get("/healthz")).json()


# --- the deployment identity and the default client id ------------------------------------------

async def test_identity_is_created_once_even_by_hubs_starting_together(aio_loop, fresh_database_url):
    async with open_database(fresh_database_url, max_size=4) as db:
        found = []

        async def read_or_create() -> None:
            found.append(await deployment_identity(db))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(read_or_create)
        assert len({d.id for d in found}) == 1
        assert await db.fetchval("SELECT count(*) FROM deployment") == 1
    # Stable across restarts: a new pool (a restarted hub) reads the same row.
    async with open_database(fresh_database_url, max_size=1) as db:
        assert (await deployment_identity(db)).id == found[0].id


async def test_default_client_id_differs_between_databases_and_survives_restarts(
    aio_loop, fresh_database_url, empty_database_url,
):
    settings = Settings(topic_prefix="campus")
    assert settings.hub_client_id is None
    async with open_database(empty_database_url, max_size=1) as other:
        await migrate(other)
        other_id = await hub_client_id(settings, other)
    async with open_database(fresh_database_url, max_size=1) as db:
        first = await hub_client_id(settings, db)
    async with open_database(fresh_database_url, max_size=1) as db:
        assert await hub_client_id(settings, db) == first
        # The prefix takes part: a staging copy under its own prefix gets its own session.
        assert await hub_client_id(dataclasses.replace(settings, topic_prefix="staging"), db) != first
        # CAMPUSHUB_HUB_CLIENT_ID still overrides.
        forced = Settings.from_env({"CAMPUSHUB_HUB_CLIENT_ID": "campushub-hub"})
        assert await hub_client_id(forced, db) == "campushub-hub"
    assert first != other_id
    for client_id in (first, other_id):
        assert client_id.startswith(HUB_CLIENT_ID_PREFIX) and len(client_id) == len(HUB_CLIENT_ID_PREFIX) + 12
    assert Settings.from_env({}).hub_client_id is None
    assert derived_hub_client_id(uuid.UUID(int=1), "a") == derived_hub_client_id(uuid.UUID(int=1), "a")


# --- the startup check of the broker --------------------------------------------------------------

@pytest.fixture
def open_hub_settings(hub_settings: Settings, open_mqtt_server_url: str) -> Settings:
    """The hub on an anonymous broker (the shared test broker, or an open one in secure mode)."""
    return dataclasses.replace(hub_settings, mqtt_url=open_mqtt_server_url, mqtt_cafile=None)


async def test_an_open_broker_makes_healthz_degraded_but_serving(open_hub_settings: Settings, aio_loop, caplog):
    """The broker is anonymous: a hub that does not expect it says so, loudly, and keeps serving."""
    settings = dataclasses.replace(open_hub_settings, hub_client_id=None, open_broker_expected=False,
                                   metrics_token=METRICS_TOKEN)
    caplog.set_level(logging.INFO, logger="hub.broker_check")
    assert settings.database_url is not None
    async with open_database(settings.database_url, max_size=1) as db:
        expected_id = await hub_client_id(settings, db)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            hub = await nursery.start(partial(run_hub, settings, port=0))
            assert hub.client.client_id == expected_id  # derived from the database, not the old fixed id
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}") as http:
                await eventually(lambda: _is(hub.broker_exposure is not None))
                detail = await _detail(hub)
                assert detail["status"] == "degraded" and detail["broker"]["ok"] is True
                assert detail["broker"]["anonymous_access"]["anonymous_connect"] is True
                assert detail["broker"]["anonymous_access"]["anonymous_subscribe_all"] is True
                assert len(detail["problems"]) == 1 and "anonymous" in detail["problems"][0]
                public = await http.get("/healthz")
                assert public.status_code == 200 and public.json() == {"status": "degraded"}
                metrics = (await http.get("/metrics", headers=DETAIL)).text
                assert 'campushub_broker_open{check="anonymous_subscribe_all"} 1.0' in metrics
            nursery.cancel_scope.cancel()
    critical = [r for r in caplog.records if r.name == "hub.broker_check" and r.levelno == logging.CRITICAL]
    assert len(critical) == 1 and "INSECURE BROKER" in critical[0].getMessage()


async def _is(value: bool) -> bool:
    return value


async def test_the_same_hub_expecting_the_open_broker_stays_ok_and_still_shows_it(open_hub_settings, aio_loop):
    settings = dataclasses.replace(open_hub_settings, metrics_token=METRICS_TOKEN)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            hub = await nursery.start(partial(run_hub, settings, port=0))
            await eventually(lambda: _is(hub.broker_exposure is not None))
            detail = await _detail(hub)
            assert detail["status"] == "ok" and detail["problems"] == []
            assert detail["broker"]["open_broker_expected"] is True
            assert detail["broker"]["anonymous_access"]["anonymous_connect"] is True
            nursery.cancel_scope.cancel()


@pytest.mark.skipif(not mosquitto_available(), reason="needs /usr/sbin/mosquitto for a broker with auth")
async def test_a_broker_from_the_generated_config_is_not_open(tmp_path: Path):
    with await trio.to_thread.run_sync(start_private_mosquitto, tmp_path / "broker") as broker:
        url = MqttUrl.parse(f"mqtt://127.0.0.1:{broker.port}")
        with trio.fail_after(10):
            exposure = await check_broker_exposure(url, timeout=3)
    assert exposure.anonymous_connect is False and exposure.problem() is None


# --- the foreign-session guard ---------------------------------------------------------------------

QUEUED = 20


async def _session_of(settings: Settings, client_id: str, *, topic_filter: str | None = None,
                      collect: int = 0, clean: bool = False) -> list[InboundMessage]:
    """Connect as ``client_id`` (resuming its session unless ``clean``), optionally subscribe, collect and ack."""
    client = broker_client(settings, client_id=client_id, clean_start=clean, session_expiry_s=0 if clean else 3600)
    received: list[InboundMessage] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        if topic_filter is not None:
            await client.subscribe(topic_filter, qos=1)
        with trio.move_on_after(10):
            while len(received) < collect:
                message = await client.messages.receive()
                received.append(message)
                client.ack(message)
        nursery.cancel_scope.cancel()
    return received


async def test_a_foreign_session_is_left_unacked_for_its_owner(hub_settings: Settings, publisher, test_db, caplog):
    """Deployment B (another prefix) shares the broker and, by a forced setting, the client id."""
    shared_id = hub_settings.hub_client_id
    assert shared_id is not None
    other_prefix = hub_settings.topic_prefix + "-b"
    other_filter = f"{other_prefix}/v1/dev/+/up"
    caplog.set_level(logging.CRITICAL, logger="hub.session_guard")
    settings = dataclasses.replace(hub_settings, metrics_token=METRICS_TOKEN)
    try:
        with trio.fail_after(60):
            # B's hub made the session and went away; its devices' messages wait in it.
            await _session_of(hub_settings, shared_id, topic_filter=other_filter)
            for n in range(QUEUED):
                await publisher.publish(f"{other_prefix}/v1/dev/dev-b/up", f"b-{n}".encode(), qos=1,
                                        wait_for_ack=True)
            async with trio.open_nursery() as nursery:
                hub = await nursery.start(partial(run_hub, settings, port=0))
                await eventually(lambda: _is(hub.metrics.foreign_session_trips._value.get() >= 1))
                assert hub.client.stats.acked == 0  # nothing of B's acknowledged
                detail = await _detail(hub)
                assert detail["status"] == "degraded" and "carries subscriptions" in detail["problems"][0]
                metrics = hub.metrics.render()
                assert "campushub_foreign_session_trips_total 1.0" in metrics
                assert hub.metrics.foreign_session_messages._value.get() >= 1
                assert await test_db.fetchval("SELECT count(*) FROM rejected_events") == 0
                # B takes its session back while our hub holds off, and gets every message.
                back = await _session_of(hub_settings, shared_id, collect=QUEUED)
                assert sorted(m.payload for m in back) == sorted(f"b-{n}".encode() for n in range(QUEUED))
                assert hub.client.stats.acked == 0 and not hub.client.connected  # still holding off
                nursery.cancel_scope.cancel()
        critical = [r for r in caplog.records if r.name == "hub.session_guard" and r.levelno == logging.CRITICAL]
        assert len(critical) == 1 and "foreign MQTT session" in critical[0].getMessage()
    finally:
        # Leave no hour-long session on the shared broker.
        await _session_of(hub_settings, shared_id, clean=True)


async def test_a_broker_that_never_answers_leaves_the_check_inconclusive_within_its_timeout():
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, silent, 0)
        url = MqttUrl.parse(f"mqtt://127.0.0.1:{listeners[0].socket.getsockname()[1]}")
        with trio.fail_after(3):  # bounded by its own timeout, not by the broker
            exposure = await check_broker_exposure(url, timeout=1.0)
        nursery.cancel_scope.cancel()
    assert exposure.anonymous_connect is None and "no CONNACK" in exposure.note and exposure.problem() is None
