"""Hub → device commands end to end: the web API, the CommandDispatcher, the real broker, a device, its ack.

The device is a plain paho-mqtt 2.x client in its own thread (as on a
classroom computer), independent of the edge agent: it sees the MQTT 5
properties of what it receives, verifies the command's signature and
answers with a signed ``command_ack`` event on its uplink.
"""
from __future__ import annotations

import queue
import threading
import time
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from functools import partial
from typing import Any, AsyncIterator

import httpx
import paho.mqtt.client as mqtt
import pytest
import trio
from paho.mqtt.enums import CallbackAPIVersion
from support.hub_helpers import eventually

from hub.app.supervision import run_hub
from hub.core.config import MqttUrl, Settings
from hub.db.device_commands import create_command
from hub.db.seed import DEMO_PASSWORD
from schemas import (
    Command,
    CommandAck,
    CommandAckEvent,
    Frame,
    Topics,
    decode_command,
    encode_event,
    new_event_id,
    verify,
)


class PahoDevice:
    """A device's MQTT side: subscribed to its downlink, answering on its uplink. Blocking: call via threads."""

    def __init__(self, url: str, topics: Topics, device_id: str, alg: str, signing_key: bytes) -> None:
        parsed = MqttUrl.parse(url)
        self.v5 = parsed.protocol == "5"
        self.topics, self.device_id, self.alg, self.signing_key = topics, device_id, alg, signing_key
        self.received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._subscribed = threading.Event()
        self._seq = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device_id}-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311)
        self.client.on_message = lambda client, userdata, message: self.received.put(message)
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(parsed.host, parsed.port)
        self.client.loop_start()
        self.client.subscribe(topics.downlink(device_id), qos=1)
        assert self._subscribed.wait(10), "no SUBACK"

    def next_command(self, timeout: float = 10.0) -> tuple[mqtt.MQTTMessage, Frame, Command]:
        message = self.received.get(timeout=timeout)
        frame, command = decode_command(message.payload)
        return message, frame, command

    def nothing_received(self, wait: float) -> bool:
        try:
            self.received.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    def ack(self, command_id: bytes, status: str, detail: str = "") -> None:
        self._seq += 1
        event = CommandAckEvent(v=1, id=new_event_id(), device=self.device_id, ts=int(time.time() * 1000),
                                seq=self._seq, body=CommandAck(command_id=command_id, status=status, detail=detail))
        self.client.publish(self.topics.uplink(self.device_id), encode_event(event, self.alg, self.signing_key),
                            qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@asynccontextmanager
async def _admin(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        login = await http.post("/api/v1/auth/login", json={"username": "admin", "password": DEMO_PASSWORD})
        assert login.status_code == 200, login.text
        http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        yield http


async def _register(http: httpx.AsyncClient, room_id: str, alg: str) -> dict[str, Any]:
    response = await http.post("/api/v1/devices", json={
        "device_id": f"cmd-{uuid.uuid4().hex[:8]}", "room_id": room_id, "kind": "edge_agent", "alg": alg})
    assert response.status_code == 201, response.text
    return response.json()


async def _command(http: httpx.AsyncClient, device_id: str, command_id: str) -> dict[str, Any]:
    page = (await http.get(f"/api/v1/devices/{device_id}/commands")).json()
    return next(c for c in page["items"] if c["command_id"] == command_id)


async def _device(settings: Settings, registered: dict[str, Any]) -> PahoDevice:
    creds = registered["credentials"]
    return await trio.to_thread.run_sync(partial(
        PahoDevice, settings.mqtt_url, Topics(settings.topic_prefix), registered["device"]["device_id"],
        creds["alg"], bytes.fromhex(creds["signing_key"])))


@pytest.mark.parametrize("alg", ["hmac-sha256", "ed25519"])
async def test_a_command_is_delivered_with_expiry_signed_and_acked(hub, hub_settings, hub_campus, test_db, alg):
    async with _admin(f"http://127.0.0.1:{hub.web_port}") as http:
        registered = await _register(http, hub_campus.sessions[0].room_id, alg)
        device_id = registered["device"]["device_id"]
        device = await _device(hub_settings, registered)
        try:
            sent = await http.post(f"/api/v1/devices/{device_id}/commands",
                                   json={"name": "config_push", "args": {"heartbeat_interval_s": 10}, "ttl_s": 30})
            assert sent.status_code == 202, sent.text
            command = sent.json()
            assert command["status"] == "pending" and command["ack_timeout_s"] == 60

            message, frame, received = await trio.to_thread.run_sync(device.next_command)
            assert received.id == uuid.UUID(command["command_id"]).bytes and received.device == device_id
            assert received.name == "config_push" and received.args == {"heartbeat_interval_s": 10}
            assert received.expires_ts - received.hub_ts == pytest.approx(30_000, abs=2_000)
            assert message.qos == 1
            if device.v5:
                assert 25 <= message.properties.MessageExpiryInterval <= 30
            # hmac devices verify with their own secret; ed25519 ones with the hub's public key.
            creds = registered["credentials"]
            key = bytes.fromhex(creds["hub_public_key"] if alg == "ed25519" else creds["signing_key"])
            assert frame.alg == alg
            verify(frame, key)

            await eventually(lambda: _status_is(http, device_id, command["command_id"], "sent"))
            await trio.to_thread.run_sync(device.ack, received.id, "ok", "applied")
            done = await eventually(lambda: _status_is(http, device_id, command["command_id"], "acked"))
            assert done["detail"] == "applied" and done["sent_at"] and done["acked_at"]
            assert done["ack_deadline"] is not None

            # An ack for a command the hub never sent is kept as a rejection.
            bogus = uuid.uuid4()
            await trio.to_thread.run_sync(device.ack, bogus.bytes, "ok")
            await eventually(lambda: test_db.fetchval(
                "SELECT count(*) FROM rejected_events WHERE reason = 'unknown_command' AND detail = $1", str(bogus)))
            # The accepted ack is in the event ledger.
            assert await test_db.fetchval(
                "SELECT count(*) FROM events WHERE device_id = $1 AND kind = 'command_ack'", device_id) == 1
        finally:
            await trio.to_thread.run_sync(device.close)


async def _status_is(http: httpx.AsyncClient, device_id: str, command_id: str, status: str) -> dict | None:
    command = await _command(http, device_id, command_id)
    return command if command["status"] == status else None


async def test_no_ack_times_out_and_a_device_can_answer_expired(hub, hub_settings, hub_campus):
    async with _admin(f"http://127.0.0.1:{hub.web_port}") as http:
        registered = await _register(http, hub_campus.sessions[0].room_id, "hmac-sha256")
        device_id = registered["device"]["device_id"]
        device = await _device(hub_settings, registered)
        try:
            silent = (await http.post(f"/api/v1/devices/{device_id}/commands",
                                      json={"name": "reboot", "ttl_s": 1, "ack_timeout_s": 1})).json()
            late = (await http.post(f"/api/v1/devices/{device_id}/commands",
                                    json={"name": "time_sync", "ttl_s": 5})).json()
            # The device gets both; it ignores the reboot and finds the time sync stale.
            first = (await trio.to_thread.run_sync(device.next_command))[2]
            second = (await trio.to_thread.run_sync(device.next_command))[2]
            assert {first.name, second.name} == {"reboot", "time_sync"}
            timed_out = await eventually(lambda: _status_is(http, device_id, silent["command_id"], "timed_out"))
            assert "no acknowledgement within 1 s" in timed_out["detail"] and timed_out["acked_at"] is None
            await trio.to_thread.run_sync(device.ack, uuid.UUID(late["command_id"]).bytes, "expired")
            await eventually(lambda: _status_is(http, device_id, late["command_id"], "expired"))
            # A late answer to the timed-out command still records what the device did.
            await trio.to_thread.run_sync(device.ack, uuid.UUID(silent["command_id"]).bytes, "unsupported")
            await eventually(lambda: _status_is(http, device_id, silent["command_id"], "unsupported"))
        finally:
            await trio.to_thread.run_sync(device.close)


async def test_outstanding_commands_survive_a_hub_restart(hub_settings, hub_campus, aio_loop, test_db):
    """Hub A sends X and stops before the ack; Y was recorded but never published (a crash).

    Hub B reloads both: it publishes Y, and X's re-armed deadline times it out.
    """
    async with trio.open_nursery() as nursery:
        hub_a = await nursery.start(partial(run_hub, hub_settings, port=0))
        async with _admin(f"http://127.0.0.1:{hub_a.web_port}") as http:
            registered = await _register(http, hub_campus.sessions[0].room_id, "hmac-sha256")
            device_id = registered["device"]["device_id"]
            x = (await http.post(f"/api/v1/devices/{device_id}/commands",
                                 json={"name": "roster_sync", "ttl_s": 2, "ack_timeout_s": 3})).json()
            await eventually(lambda: _status_is(http, device_id, x["command_id"], "sent"))
        nursery.cancel_scope.cancel()

    y = await create_command(test_db, device_id=device_id, name="template_sync", args={"version": 3}, ttl_s=60,
                             ack_timeout_s=60, issued_by="test", now=_utc_now(),
                             device_offline_after_s=hub_settings.device_offline_after_s)
    device = await _device(hub_settings, registered)
    try:
        async with trio.open_nursery() as nursery:
            hub_b = await nursery.start(partial(run_hub, hub_settings, port=0))
            async with _admin(f"http://127.0.0.1:{hub_b.web_port}") as http:
                received = (await trio.to_thread.run_sync(device.next_command))[2]
                assert received.id == y.command_id.bytes and received.args == {"version": 3}
                await trio.to_thread.run_sync(device.ack, received.id, "ok")
                await eventually(lambda: _status_is(http, device_id, str(y.command_id), "acked"))
                await eventually(lambda: _status_is(http, device_id, x["command_id"], "timed_out"))
            nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(device.close)


async def test_commands_to_a_revoked_device_are_refused_and_outstanding_ones_fail(hub, hub_campus):
    async with _admin(f"http://127.0.0.1:{hub.web_port}") as http:
        registered = await _register(http, hub_campus.sessions[0].room_id, "hmac-sha256")
        device_id = registered["device"]["device_id"]
        # Nobody listens, and the broker keeps it: sent, waiting for an ack.
        pending = (await http.post(f"/api/v1/devices/{device_id}/commands", json={"name": "reboot"})).json()
        await eventually(lambda: _status_is(http, device_id, pending["command_id"], "sent"))
        assert (await http.post(f"/api/v1/devices/{device_id}/revoke", json={"reason": "lost"})).status_code == 200
        failed = await _command(http, device_id, pending["command_id"])
        assert (failed["status"], failed["detail"]) == ("failed", "device revoked")
        refused = await http.post(f"/api/v1/devices/{device_id}/commands", json={"name": "reboot"})
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)
