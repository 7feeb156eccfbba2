"""Provisioning API: register, rotate, revoke, commands; who may call them and what they refuse."""
from __future__ import annotations

import tomllib
import uuid

import pytest
from web_helpers import bearer, page_login

from hub.db.device_registry import load_devices
from hub.domain.credentials import ed25519_public_key, mosquitto_verify
from web.routes.provisioning import MAX_ARGS


class Calls:
    """Records what the web told the hub (WebContext.devices_changed / send_command)."""

    def __init__(self) -> None:
        self.changed: list[list[str]] = []
        self.sent: list[uuid.UUID] = []

    async def devices_changed(self, device_ids) -> None:
        self.changed.append(list(device_ids))

    async def send_command(self, command_id) -> None:
        self.sent.append(command_id)


@pytest.fixture
def calls(ctx) -> Calls:
    recorder = Calls()
    ctx.devices_changed = recorder.devices_changed
    ctx.send_command = recorder.send_command
    ctx.device_mqtt_url = "mqtt://broker.campus:1883"
    ctx.topic_prefix = "campus-test"
    return recorder


def _new_id() -> str:
    return f"dev-{uuid.uuid4().hex[:10]}"


async def _register(client, headers, world, **fields):
    body = {"device_id": _new_id(), "room_id": world.room, "kind": "qr_camera", **fields}
    return await client.post("/api/v1/devices", json=body, headers=headers)


@pytest.mark.parametrize("role", ["admin", "ops"])
async def test_admin_and_ops_register_rotate_revoke_and_command(client, world, db, calls, role):
    headers = await bearer(client, world.username(role))
    response = await _register(client, headers, world, model="ZK-100")
    assert response.status_code == 201, await response.get_data(as_text=True)
    body = await response.get_json()
    device, creds = body["device"], body["credentials"]
    device_id = device["device_id"]
    assert device["registered_by"] == world.username(role) and device["credential_version"] == 1
    assert (device["model"], device["alg"], device["revoked"]) == ("ZK-100", "hmac-sha256", False)
    assert calls.changed == [[device_id]]
    # Stored: the HMAC secret (to verify), sealed with the campus key, and only the Mosquitto hash of the password.
    row = await db.fetchrow("SELECT key, key_sealed, mqtt_username, mqtt_password_hash FROM devices WHERE id = $1",
                            device_id)
    assert row["key"] is None and bytes.fromhex(creds["signing_key"]) not in bytes(row["key_sealed"])
    assert (await load_devices(db, [device_id]))[0].key.hex() == creds["signing_key"]
    assert row["mqtt_username"] == creds["mqtt_username"]
    assert creds["mqtt_password"] not in row["mqtt_password_hash"]
    assert mosquitto_verify(creds["mqtt_password"], row["mqtt_password_hash"])
    config = tomllib.loads(body["edge_agent_toml"])
    assert config["device_id"] == device_id and config["password"] == creds["mqtt_password"]
    assert (config["mqtt_url"], config["topic_prefix"]) == ("mqtt://broker.campus:1883", "campus-test")

    rotated = await client.post(f"/api/v1/devices/{device_id}/credentials/rotate", json={}, headers=headers)
    assert rotated.status_code == 200
    new = await rotated.get_json()
    assert new["device"]["credential_version"] == 2 and new["device"]["rotated_by"] == world.username(role)
    assert new["credentials"]["signing_key"] != creds["signing_key"]
    assert new["credentials"]["mqtt_password"] != creds["mqtt_password"]
    row = await db.fetchrow("SELECT key, mqtt_password_hash FROM devices WHERE id = $1", device_id)
    assert row["key"] is None and (await load_devices(db, [device_id]))[0].key.hex() == new["credentials"]["signing_key"]
    assert not mosquitto_verify(creds["mqtt_password"], row["mqtt_password_hash"])

    command = await client.post(f"/api/v1/devices/{device_id}/commands",
                                json={"name": "time_sync", "ttl_s": 120}, headers=headers)
    assert command.status_code == 202
    sent = await command.get_json()
    assert (sent["status"], sent["ttl_s"], sent["ack_timeout_s"]) == ("pending", 120, 150)
    assert sent["issued_by"] == world.username(role) and sent["sent_at"] is None
    assert calls.sent == [uuid.UUID(sent["command_id"])]

    revoked = await client.post(f"/api/v1/devices/{device_id}/revoke", json={"reason": "stolen"}, headers=headers)
    assert revoked.status_code == 200
    dev = (await revoked.get_json())["device"]
    assert dev["revoked"] and dev["revoked_by"] == world.username(role) and dev["revoked_reason"] == "stolen"
    assert calls.changed[-1] == [device_id] and len(calls.changed) == 3
    # The outstanding command failed with the revocation.
    page = await (await client.get(f"/api/v1/devices/{device_id}/commands", headers=headers)).get_json()
    assert [(c["status"], c["detail"]) for c in page["items"]] == [("failed", "device revoked")]


@pytest.mark.parametrize("role", ["faculty", "student"])
async def test_faculty_and_students_may_not_provision(client, world, role):
    key = "fac1" if role == "faculty" else "stu1"
    headers = await bearer(client, world.username(key))
    requests = [
        ("POST", "/api/v1/devices", {"device_id": _new_id(), "room_id": world.room, "kind": "sensor"}),
        ("POST", f"/api/v1/devices/{world.device}/credentials/rotate", {}),
        ("POST", f"/api/v1/devices/{world.device}/revoke", {}),
        ("POST", f"/api/v1/devices/{world.device}/commands", {"name": "reboot"}),
        ("GET", f"/api/v1/devices/{world.device}/commands", None),
    ]
    for method, path, body in requests:
        response = await client.open(path, method=method, json=body, headers=headers)
        assert response.status_code == 403, (method, path)
        assert (await response.get_json())["error"]["code"] == "forbidden"
        anonymous = await client.open(path, method=method, json=body)
        assert anonymous.status_code == 401, (method, path)
    page = await client.get("/devices/register", headers=headers)
    assert page.status_code == 403


async def test_ed25519_registration_returns_the_private_seed_once_and_stores_the_public_key(client, world, db, calls):
    headers = await bearer(client, world.username("admin"))
    body = await (await _register(client, headers, world, alg="ed25519")).get_json()
    creds = body["credentials"]
    seed = bytes.fromhex(creds["signing_key"])
    stored = await db.fetchval("SELECT key FROM devices WHERE id = $1", body["device"]["device_id"])
    assert bytes(stored) == ed25519_public_key(seed) != seed
    hub_key = await db.fetchval("SELECT public_key FROM hub_signing_keys WHERE alg = 'ed25519'")
    assert creds["hub_public_key"] == bytes(hub_key).hex()
    assert creds["hub_public_key"] in body["edge_agent_toml"]


BAD_REGISTRATIONS = [
    ({"device_id": "bad id", "kind": "sensor"}, "device_id"),
    ({"device_id": "x" * 65, "kind": "sensor"}, "device_id"),
    ({"device_id": "ok\n", "kind": "sensor"}, "device_id"),
    # Its MQTT username and client id would be one of the hub's own sessions' (a partition's, say).
    ({"device_id": "campushub-hub-0123456789ab-p3", "kind": "sensor"}, "device_id"),
    ({"kind": "toaster"}, "kind"),
    ({"kind": "sensor", "alg": "rsa"}, "alg"),
    ({"kind": "sensor", "model": 5}, "model"),
    ({"kind": "sensor", "room_id": "no-such-room"}, "room_id"),
]


async def test_registration_refuses_bad_input(client, world, calls):
    headers = await bearer(client, world.username("admin"))
    for body, field in BAD_REGISTRATIONS:
        payload = {"device_id": _new_id(), "room_id": world.room, **body}
        response = await client.post("/api/v1/devices", json=payload, headers=headers)
        assert response.status_code == 400, body
        assert (await response.get_json())["error"]["field"] == field, body
    assert calls.changed == []


async def test_ids_are_never_reused_and_unknown_or_revoked_devices_are_refused(client, world, calls):
    headers = await bearer(client, world.username("ops"))
    taken = await client.post("/api/v1/devices", json={"device_id": world.device, "room_id": world.room,
                                                       "kind": "sensor"}, headers=headers)
    assert taken.status_code == 409 and (await taken.get_json())["error"]["code"] == "conflict"
    missing = f"missing-{uuid.uuid4().hex[:6]}"
    for path, body in ((f"/api/v1/devices/{missing}/credentials/rotate", {}),
                       (f"/api/v1/devices/{missing}/revoke", {}),
                       (f"/api/v1/devices/{missing}/commands", {"name": "reboot"})):
        response = await client.post(path, json=body, headers=headers)
        assert response.status_code == 404, path
    assert (await client.get(f"/api/v1/devices/{missing}/commands", headers=headers)).status_code == 404

    device_id = (await (await _register(client, headers, world)).get_json())["device"]["device_id"]
    first = await client.post(f"/api/v1/devices/{device_id}/revoke", json={}, headers=headers)
    again = await client.post(f"/api/v1/devices/{device_id}/revoke", json={"reason": "twice"}, headers=headers)
    assert again.status_code == 200  # idempotent: the first revocation stands
    assert (await again.get_json())["device"]["revoked_at"] == (await first.get_json())["device"]["revoked_at"]
    rotate = await client.post(f"/api/v1/devices/{device_id}/credentials/rotate", json={}, headers=headers)
    assert rotate.status_code == 409
    command = await client.post(f"/api/v1/devices/{device_id}/commands", json={"name": "reboot"}, headers=headers)
    assert command.status_code == 409
    # POST bodies must be JSON (the CSRF defence).
    form = await client.post(f"/api/v1/devices/{device_id}/revoke", form={"reason": "x"}, headers=headers)
    assert form.status_code == 415


BAD_COMMANDS = [
    ({"name": "self_destruct"}, "name"),
    ({"name": "reboot", "ttl_s": 0}, "ttl_s"),
    ({"name": "reboot", "ttl_s": 86401}, "ttl_s"),
    ({"name": "reboot", "ttl_s": True}, "ttl_s"),
    ({"name": "reboot", "ack_timeout_s": "soon"}, "ack_timeout_s"),
    ({"name": "config_push", "args": []}, "args"),
    ({"name": "config_push", "args": {"nested": {"a": 1}}}, "args"),
    ({"name": "config_push", "args": {"nul": "a\u0000b"}}, "args"),
    ({"name": "config_push", "args": {"big": 2**64}}, "args"),
    ({"name": "config_push", "args": {f"k{i}": i for i in range(MAX_ARGS + 1)}}, "args"),
    ({"name": "config_push", "args": {f"k{i}": "x" * 1000 for i in range(10)}}, "args"),
]


async def test_commands_refuse_bad_input(client, world, calls):
    headers = await bearer(client, world.username("admin"))
    for body, field in BAD_COMMANDS:
        response = await client.post(f"/api/v1/devices/{world.device}/commands", json=body, headers=headers)
        assert response.status_code == 400, body
        assert (await response.get_json())["error"]["field"] == field, body
    headers = {**headers, "Content-Type": "application/json"}
    response = await client.post(f"/api/v1/devices/{world.device}/commands",
                                 data='{"name": "config_push", "args": {"x": 1e999}}', headers=headers)
    assert response.status_code == 400 and (await response.get_json())["error"]["field"] == "args"
    assert calls.sent == []



async def test_a_config_push_must_fit_the_hubs_offline_timeout(client, world, ctx, calls):
    ctx.device_offline_after_s = 90.0
    headers = await bearer(client, world.username("ops"))
    url = f"/api/v1/devices/{world.device}/commands"
    too_slow = await client.post(url, json={"name": "config_push", "args": {"heartbeat_interval_s": 120}},
                                 headers=headers)
    assert too_slow.status_code == 400
    error = (await too_slow.get_json())["error"]
    assert error["field"] == "args" and "offline timeout of 90 s" in error["message"], error
    assert calls.sent == []
    fits = await client.post(url, json={"name": "config_push", "args": {"heartbeat_interval_s": 45}}, headers=headers)
    assert fits.status_code == 202
    # Only config_push carries the agent's heartbeat: other commands' args are the device's business.
    other = await client.post(url, json={"name": "time_sync", "args": {"heartbeat_interval_s": 120}}, headers=headers)
    assert other.status_code == 202 and len(calls.sent) == 2

async def test_command_history_is_paginated_newest_first_and_filterable(client, world, calls):
    headers = await bearer(client, world.username("ops"))
    device_id = (await (await _register(client, headers, world)).get_json())["device"]["device_id"]
    names = ["config_push", "time_sync", "reboot"]
    for name in names:
        response = await client.post(f"/api/v1/devices/{device_id}/commands",
                                     json={"name": name, "args": {"n": 1, "on": True, "label": "x", "none": None}},
                                     headers=headers)
        assert response.status_code == 202
    page = await (await client.get(f"/api/v1/devices/{device_id}/commands?limit=2", headers=headers)).get_json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
    assert [c["name"] for c in page["items"]] == ["reboot", "time_sync"]
    rest = await (await client.get(f"/api/v1/devices/{device_id}/commands?limit=2&offset=2",
                                   headers=headers)).get_json()
    assert [c["name"] for c in rest["items"]] == ["config_push"]
    assert rest["items"][0]["args"] == {"n": 1, "on": True, "label": "x", "none": None}
    acked = await (await client.get(f"/api/v1/devices/{device_id}/commands?status=acked",
                                    headers=headers)).get_json()
    assert acked["total"] == 0 and acked["items"] == []
    bad = await client.get(f"/api/v1/devices/{device_id}/commands?status=lost", headers=headers)
    assert bad.status_code == 400 and (await bad.get_json())["error"]["field"] == "status"


async def test_the_registration_page_renders_for_ops_with_the_rooms(client, world):
    await page_login(client, world.username("ops"))
    response = await client.get("/devices/register")
    assert response.status_code == 200
    html = await response.get_data(as_text=True)
    assert 'id="register-device"' in html and f'value="{world.room}"' in html
    assert "/static/provisioning.js" in html and "<script>" not in html  # CSP: no inline scripts
    assert 'href="/devices/register"' in html  # the nav link
