"""Hub → device commands end to end: the web API, the CommandDispatcher, the real broker, a device, its ack.

The device is a plain paho-mqtt 2.x client in its own thread (as on a
classroom computer), independent of the edge agent: it sees the MQTT 5
properties of what it receives, verifies the command's signature and
answers with a signed ``command_ack`` event on its uplink.
"""
from __future__ import annotations

import base64
import json
import queue
import secrets
import threading
import time
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import paho.mqtt.client as mqtt
import pytest
import trio
from paho.mqtt.enums import CallbackAPIVersion
from support.hub_fixtures import edge_broker, paho_login
from support.hub_helpers import AgentThread, eventually

from devices.fingerprint.emulator import R30xEmulator
from edge_agent.config import AgentConfig
from edge_agent.device_config import DRIVERS, DeviceConfig
from hub.app.supervision import run_hub
from hub.core.bus import DEVICES_TOPIC, LiveCommand
from hub.core.config import MqttUrl, Settings
from hub.db import available_migrations, migrate, open_database
from hub.db.device_commands import command_json, create_command
from hub.db.provisioning import RegistryError, revoke
from hub.db.seed import DEMO_PASSWORD
from hub.domain.biometric_consent import CURRENT_NOTICE_VERSION
from schemas import (
    Command,
    CommandAck,
    CommandAckEvent,
    Frame,
    Topics,
    decode_command,
    encode_event,
    new_event_id,
    open_args,
    verify,
)


class PahoDevice:
    """A device's MQTT side: subscribed to its downlink, answering on its uplink. Blocking: call via threads."""

    def __init__(self, settings: Settings, topics: Topics, device_id: str, alg: str, signing_key: bytes) -> None:
        assert settings.mqtt_url is not None
        parsed = MqttUrl.parse(settings.mqtt_url)
        self.v5 = parsed.protocol == "5"
        self.topics, self.device_id, self.alg, self.signing_key = topics, device_id, alg, signing_key
        self.received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._subscribed = threading.Event()
        self._seq = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device_id}-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311)
        self.client.on_message = lambda client, userdata, message: self.received.put(message)
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        paho_login(self.client, settings)
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
        PahoDevice, settings, Topics(settings.topic_prefix), registered["device"]["device_id"],
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
    # Expired while no hub ran: hub B expires it unsent, and its sealed arguments go with it.
    z = await create_command(test_db, device_id=device_id, name="roster_sync", args={"pins": "1001=s-zzz"},
                             ttl_s=60, ack_timeout_s=60, issued_by="test", now=_utc_now() - timedelta(seconds=120),
                             device_offline_after_s=hub_settings.device_offline_after_s)
    # Plain arguments given by the caller (as H7's roster planner gives them): only the sealed form is stored.
    for created, secret in ((y, b"version"), (z, b"s-zzz")):
        stored = await test_db.fetchrow("SELECT args::text AS args, sealed FROM device_commands WHERE id = $1",
                                        created.command_id)
        assert stored["args"] == "{}" and stored["sealed"] is not None and secret not in stored["sealed"]
    device = await _device(hub_settings, registered)
    try:
        async with trio.open_nursery() as nursery:
            hub_b = await nursery.start(partial(run_hub, hub_settings, port=0))
            async with _admin(f"http://127.0.0.1:{hub_b.web_port}") as http:
                received = (await trio.to_thread.run_sync(device.next_command))[2]
                assert received.id == y.command_id.bytes and received.args == {} and received.sealed is not None
                assert open_args(received.sealed, device_id=device_id, command_id=received.id, name=received.name,
                                 alg="hmac-sha256", device_key=device.signing_key) == {"version": 3}
                await trio.to_thread.run_sync(device.ack, received.id, "ok")
                await eventually(lambda: _status_is(http, device_id, str(y.command_id), "acked"))
                await eventually(lambda: _status_is(http, device_id, x["command_id"], "timed_out"))
                expired = await eventually(lambda: _status_is(http, device_id, str(z.command_id), "expired"))
                assert expired["args"] == {"sealed": {"sealed": True, "size": z.sealed_size, "keys": ["pins"],
                                                      "purged": True}}
            nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(device.close)
    assert await test_db.fetchval("SELECT count(*) FROM device_commands WHERE id = ANY($1::uuid[])"
                                  " AND sealed IS NULL", [y.command_id, z.command_id]) == 2


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


# --- sealed arguments (issue 12 §4, issue 14 §4) ----------------------------------------


def _agent_config(settings: Settings, registered: dict[str, Any], tmp_path: Path, fingerprint: Path) -> AgentConfig:
    creds, device = registered["credentials"], registered["device"]
    assert settings.mqtt_url is not None
    options = {k: o.default for k, o in DRIVERS[("fingerprint", "r30x")].options.items()}
    options["poll_interval_s"] = 0.01
    return AgentConfig(
        device_id=device["device_id"], room_id=device["room_id"], alg=creds["alg"],
        signing_key=bytes.fromhex(creds["signing_key"]), **edge_broker(settings),
        topic_prefix=settings.topic_prefix, outbox_path=tmp_path / "outbox.sqlite", heartbeat_interval_s=3600,
        hub_public_key=bytes.fromhex(creds["hub_public_key"]) if creds["hub_public_key"] else None,
        devices=(DeviceConfig("door-fp", "fingerprint", "r30x", port=str(fingerprint), options=options),),
    )


async def _drain(live: Any) -> list[Any]:
    got = []
    while True:
        with trio.move_on_after(0.2) as idle:
            got.append(await live.receive())
        if idle.cancelled_caught:
            return got


@pytest.mark.parametrize("alg", ["hmac-sha256", "ed25519"])
async def test_roster_and_template_are_sealed_from_the_api_to_a_real_edge_agent(
        hub, hub_settings, hub_campus, test_db, tmp_path, alg):
    student = hub_campus.students[0].student_id
    template = secrets.token_bytes(512)
    template_b64 = base64.b64encode(template).decode()
    emulator = R30xEmulator(tmp_path / "fp0").start()
    async with _admin(f"http://127.0.0.1:{hub.web_port}") as http:
        registered = await _register(http, hub_campus.sessions[0].room_id, alg)
        device_id = registered["device"]["device_id"]
        # A fingerprint page needs biometric consent, raw commands included (recorded here as on paper).
        consent = await http.post(f"/api/v1/students/{student}/biometric-consent",
                                  json={"notice_version": CURRENT_NOTICE_VERSION})
        assert consent.status_code == 201, consent.text
        # Anyone subscribed to the device's downlink (here a second client) sees what the broker carries.
        sniffer = await _device(hub_settings, registered)
        agent = await trio.to_thread.run_sync(
            AgentThread(_agent_config(hub_settings, registered, tmp_path, emulator.path)).start)
        try:
            # Commands go out once: wait until the agent has subscribed (its online status follows its SUBSCRIBE).
            await eventually(lambda: test_db.fetchval(
                "SELECT online FROM device_health WHERE device_id = $1", device_id))
            with hub.bus.subscribe([DEVICES_TOPIC]) as live:
                sent = []
                for name, args in (("roster_sync", {"pins": f"1001={student}", "pages": f"3={student}"}),
                                   ("template_sync", {"page": 12, "student": student, "template": template_b64})):
                    response = await http.post(f"/api/v1/devices/{device_id}/commands",
                                               json={"name": name, "args": args, "ttl_s": 30})
                    assert response.status_code == 202, response.text
                    created = response.json()
                    # The API shows names and size, never content.
                    assert created["args"] == {"sealed": {"sealed": True, "size": created["args"]["sealed"]["size"],
                                                          "keys": sorted(args), "purged": False}}
                    assert created["args"]["sealed"]["size"] > 0
                    sent.append(created)
                for created in sent:
                    done = await eventually(lambda c=created: _status_is(http, device_id, c["command_id"], "acked"))
                    assert done["args"]["sealed"]["purged"] is True
                messages = await _drain(live)

            # The device did what the sealed arguments said.
            assert agent.agent is not None and agent.agent.enrolment.student_for_pin("1001") == student
            assert agent.agent.enrolment.student_for_page(3) == student
            assert emulator.templates[12] == template

            # What travelled: signed frames with no student id and no template bytes in them.
            for _ in sent:
                message, _, command = await trio.to_thread.run_sync(sniffer.next_command)
                assert command.args == {} and command.sealed is not None
                assert command.sealed.scheme == ("x25519" if alg == "ed25519" else "hkdf-sha256")
                for secret in (student.encode(), template, template_b64.encode(), template[:32]):
                    assert secret not in message.payload

            # The database never held the plaintext, and holds no sealed blob once answered.
            rows = await test_db.fetch("SELECT args::text AS args, sealed, sealed_keys FROM device_commands"
                                       " WHERE device_id = $1", device_id)
            assert len(rows) == 2
            for row in rows:
                assert row["args"] == "{}" and row["sealed"] is None and row["sealed_keys"]
            # Live messages to the console are redacted the same way.
            commands = [m for m in messages if isinstance(m, LiveCommand) and m.device_id == device_id]
            assert {m.status for m in commands} >= {"sent", "acked"}
            for m in commands:
                assert set(m.args) == {"sealed"} and student not in m.json and template_b64[:16] not in m.json
        finally:
            await trio.to_thread.run_sync(agent.stop)
            await trio.to_thread.run_sync(sniffer.close)
            emulator.close()


async def test_a_pending_command_whose_sealed_arguments_are_gone_fails_instead_of_going_out_empty(
        hub_settings, hub_campus, aio_loop, test_db):
    """A row from before sealing (migration 0019 kept only the argument names) is never sent without them."""
    device_id = hub_campus.devices[0].device_id
    legacy = await create_command(test_db, device_id=device_id, name="roster_sync", args={"pins": "1=s-1"},
                                  ttl_s=60, ack_timeout_s=60, issued_by="test", now=_utc_now(),
                                  device_offline_after_s=hub_settings.device_offline_after_s)
    await test_db.execute("UPDATE device_commands SET sealed = NULL WHERE id = $1", legacy.command_id)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_hub, hub_settings, port=0))
        row = await eventually(lambda: test_db.fetchrow(
            "SELECT status, detail FROM device_commands WHERE id = $1 AND status <> 'pending'", legacy.command_id))
        nursery.cancel_scope.cancel()
    assert (row["status"], row["detail"]) == ("failed", "sealed arguments are no longer stored: issue the command again")


async def test_a_reserved_argument_name_and_a_revocation_purge(hub_settings, hub_campus, aio_loop, test_db):
    device_id = hub_campus.devices[1].device_id
    common = dict(ttl_s=60, ack_timeout_s=60, issued_by="test", now=_utc_now(),
                  device_offline_after_s=hub_settings.device_offline_after_s)
    with pytest.raises(RegistryError, match="reserved"):
        await create_command(test_db, device_id=device_id, name="config_push",
                             args={"sealed": 1, "door.password": 7}, **common)
    push = await create_command(test_db, device_id=device_id, name="config_push",
                                args={"heartbeat_interval_s": 10, "door.password": 4321}, **common)
    assert command_json(push)["args"] == {"heartbeat_interval_s": 10, "sealed": {
        "sealed": True, "size": push.sealed_size, "keys": ["door.password"], "purged": False}}
    # Any move out of pending drops the blob, whichever code makes it (here: a revocation).
    await revoke(test_db, device_id, actor="test", reason="lost", devices_changed=_nothing_changed)
    assert await test_db.fetchval("SELECT sealed IS NULL FROM device_commands WHERE id = $1", push.command_id)


async def _nothing_changed(device_ids: list[str]) -> None:
    """No running hub to tell: the test reads the database itself."""


async def test_migration_0019_keeps_only_the_names_of_arguments_stored_in_clear(aio_loop, empty_database_url):
    """Rows written before sealing held roster maps, templates and pushed secrets in clear."""
    async with open_database(empty_database_url, max_size=2) as db:
        before = [m for m in available_migrations() if m.version < 19]
        await db.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                         " applied_at timestamptz NOT NULL DEFAULT now())")
        for migration in before:
            await db.execute(migration.sql)
            await db.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                             migration.version, migration.name)
        await db.execute("INSERT INTO rooms (id, name, building) VALUES ('r1', 'Room 1', 'Main')")
        await db.execute("INSERT INTO devices (id, room_id, kind, alg, key) VALUES ('d1', 'r1', 'edge_agent',"
                         " 'hmac-sha256', '\\x00')")
        legacy = {
            "template_sync": {"page": 3, "student": "s-legacy", "template": "VEVNUExBVEU="},
            "config_push": {"heartbeat_interval_s": 20, "door.password": 4321},
            "reboot": {},
        }
        for name, args in legacy.items():
            await db.execute("INSERT INTO device_commands (id, device_id, name, args, ttl_s, ack_timeout_s, issued_by,"
                             " expires_at, status) VALUES ($1, 'd1', $2, $3::jsonb, 60, 60, 'ops',"
                             " now() + interval '1 minute', 'acked')", uuid.uuid4(), name, json.dumps(args))
        await migrate(db)
        rows = {r["name"]: r for r in await db.fetch(
            "SELECT name, args::text AS args, sealed, sealed_keys, sealed_size FROM device_commands")}
    assert (rows["template_sync"]["args"], rows["template_sync"]["sealed_keys"]) == ("{}", ["page", "student", "template"])
    assert rows["config_push"]["args"] == '{"heartbeat_interval_s": 20}'
    assert rows["config_push"]["sealed_keys"] == ["door.password"] and rows["config_push"]["sealed_size"] > 0
    assert (rows["reboot"]["args"], rows["reboot"]["sealed_keys"]) == ("{}", [])
    assert all(r["sealed"] is None for r in rows.values())
