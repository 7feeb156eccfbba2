"""The device health / telemetry / alarm / threshold API (web/routes/devices_api.py).

Acknowledgements and clears run against a real DeviceActor and PersistenceWriter
(under a supervisor in the test's nursery), wired as the hub wires them.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import trio
from web_helpers import bearer

from actors import ChildSpec, Supervisor
from hub.core.bus import DEVICES_TOPIC
from hub.core.metrics import HubMetrics
from hub.pipeline.device_actor import DeviceActorFactory, device_asker
from hub.pipeline.device_alarms import ThresholdBook, thresholds_changed
from hub.pipeline.writer import PersistenceWriter


@pytest.fixture
async def device_actors(ctx, db, bus):
    """``ctx.ask_device`` and ``ctx.thresholds_changed`` wired to real device actors."""
    root = Supervisor("test-root")
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        writer = await root.start_child(ChildSpec("writer", lambda: PersistenceWriter(
            db, bus, HubMetrics(), lambda message: None), mailbox_size=64))
        devices = await root.start_child(ChildSpec("devices", lambda: Supervisor("devices")))
        book = ThresholdBook()
        await book.reload(db)
        factory = DeviceActorFactory(devices=devices, db=db, writer=writer, scheduler=writer, offline_after_s=3600,
                                     thresholds=book)
        ctx.ask_device = device_asker(lambda: factory)
        ctx.thresholds_changed = lambda: thresholds_changed(db, book, devices)
        yield devices
        await root.shutdown()
        nursery.cancel_scope.cancel()


async def _alarm(db, device: str, *, state="active_unacked", severity="major", type_="co2_high", at=None) -> int:
    at = at or datetime.now(timezone.utc)
    return await db.fetchval(
        "INSERT INTO alarms (device_id, room_id, type, severity, state, raised_at, value, message, details)"
        " SELECT $1, room_id, $2, $3, $4, $5, 1600, 'co2 1600 ppm above 1500', '{\"metric\": \"co2\"}'"
        " FROM devices WHERE id = $1 RETURNING id", device, type_, severity, state, at)


async def test_device_list_and_detail_carry_every_health_field(client, world, db):
    await db.execute(
        "UPDATE device_health SET battery_pct = 64.5, signal_dbm = -71, clock_skew_ms = 420, error_count = 2,"
        " last_connect_at = $2, last_connect_reason = 'connected' WHERE device_id = $1", world.device, world.now)
    alarm_id = await _alarm(db, world.device, severity="critical")
    headers = await bearer(client, world.username("ops"))
    listed = await (await client.get("/api/v1/devices", headers=headers)).get_json()
    mine = next(d for d in listed["devices"] if d["device_id"] == world.device)
    assert (mine["battery_pct"], mine["signal_dbm"], mine["clock_skew_ms"], mine["error_count"]) == (64.5, -71, 420, 2)
    assert mine["last_connect_reason"] == "connected" and mine["active_alarms"] == 1
    assert mine["alarm_severity"] == "critical"

    response = await client.get(f"/api/v1/devices/{world.device}", headers=headers)
    assert response.status_code == 200
    detail = await response.get_json()
    assert detail["device"] == mine
    assert [a["alarm_id"] for a in detail["alarms"]] == [alarm_id]
    assert detail["alarms"][0]["details"] == {"metric": "co2"}
    missing = await client.get("/api/v1/devices/no-such-device", headers=headers)
    assert missing.status_code == 404 and (await missing.get_json())["error"]["code"] == "not_found"


async def test_health_history_is_paginated_newest_first(client, world, db):
    for i, change in enumerate(("online", "offline", "online")):
        await db.execute(
            "INSERT INTO device_health_history (device_id, at, change, online, reason, firmware)"
            " VALUES ($1, $2, $3, $4, 'r', '1.0')", world.device, world.now + timedelta(minutes=i), change,
            change == "online")
    headers = await bearer(client, world.username("admin"))
    page = await (await client.get(f"/api/v1/devices/{world.device}/health-history?limit=2",
                                   headers=headers)).get_json()
    assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 0
    assert [e["change"] for e in page["items"]] == ["online", "offline"]
    rest = await (await client.get(f"/api/v1/devices/{world.device}/health-history?limit=2&offset=2",
                                   headers=headers)).get_json()
    assert [e["change"] for e in rest["items"]] == ["online"]
    bad = await client.get(f"/api/v1/devices/{world.device}/health-history?limit=0", headers=headers)
    assert bad.status_code == 400 and (await bad.get_json())["error"]["field"] == "limit"


async def test_telemetry_buckets_recent_readings_and_lists_the_metrics(client, world, db, clock):
    now = datetime.fromtimestamp(clock.now, timezone.utc)
    base = now.replace(second=0, microsecond=0) - timedelta(minutes=10)
    rows = ([(uuid.uuid4(), world.device, "temperature", 20.0 + i, "°C", base + timedelta(seconds=20 * i))
             for i in range(3)] + [(uuid.uuid4(), world.device, "co2", 700.0, "ppm", base)])
    await db.run(lambda conn: conn.executemany(
        "INSERT INTO sensor_readings (event_id, device_id, metric, value, unit, device_ts)"
        " VALUES ($1,$2,$3,$4,$5,$6)", rows))
    headers = await bearer(client, world.username("ops"))
    body = await (await client.get(f"/api/v1/devices/{world.device}/telemetry?metric=temperature&range=1h",
                                   headers=headers)).get_json()
    assert body["metrics"] == ["co2", "temperature"] and body["unit"] == "°C" and body["bucket_s"] == 60
    assert body["source"] == "raw"
    assert [(p["avg"], p["min"], p["max"]) for p in body["points"]] == [(21.0, 20.0, 22.0)]
    assert datetime.fromisoformat(body["points"][0]["t"]) == base
    default = await (await client.get(f"/api/v1/devices/{world.device}/telemetry", headers=headers)).get_json()
    assert default["metric"] == "co2" and default["range"] == "1h"
    week = await (await client.get(f"/api/v1/devices/{world.device}/telemetry?metric=co2&range=7d",
                                   headers=headers)).get_json()
    assert week["source"] == "hourly" and week["points"] == []  # not rolled up yet
    for query, field in (("range=2y", "range"), ("metric=Temp%20C", "metric")):
        bad = await client.get(f"/api/v1/devices/{world.device}/telemetry?{query}", headers=headers)
        assert bad.status_code == 400 and (await bad.get_json())["error"]["field"] == field


async def test_alarm_listing_filters_and_paginates(client, world, db):
    other = f"{world.device}"
    ids = {
        "open": await _alarm(db, other, state="active_unacked", severity="major", type_="co2_high"),
        "acked": await _alarm(db, other, state="active_acked", severity="minor", type_="noise_high"),
        "cleared": await _alarm(db, other, state="cleared_unacked", severity="warning", type_="co2_high"),
        "done": await _alarm(db, other, state="cleared_acked", severity="critical", type_="device_offline"),
    }
    headers = await bearer(client, world.username("ops"))

    async def listed(query: str) -> list[int]:
        response = await client.get(f"/api/v1/alarms?device_id={world.device}&{query}", headers=headers)
        assert response.status_code == 200, await response.get_data(as_text=True)
        return [a["alarm_id"] for a in (await response.get_json())["items"]]

    assert set(await listed("")) == {ids["open"], ids["acked"], ids["cleared"]}  # default: open
    assert set(await listed("state=all")) == set(ids.values())
    assert set(await listed("state=active")) == {ids["open"], ids["acked"]}
    assert await listed("state=cleared_acked") == [ids["done"]]
    assert await listed("state=all&severity=minor") == [ids["acked"]]
    assert await listed("state=all&type=device_offline") == [ids["done"]]
    page = await (await client.get(f"/api/v1/alarms?device_id={world.device}&state=all&limit=1&offset=1",
                                   headers=headers)).get_json()
    assert page["total"] == 4 and len(page["items"]) == 1
    one = await (await client.get(f"/api/v1/alarms/{ids['open']}", headers=headers)).get_json()
    assert one["room_name"] == f"Room {world.suffix}" and one["alarm_type"] == "co2_high"
    for query in ("state=shouting", "severity=indeterminate"):
        assert (await client.get(f"/api/v1/alarms?{query}", headers=headers)).status_code == 400
    assert (await client.get(f"/api/v1/alarms/{2**63}", headers=headers)).status_code == 404


async def test_ack_and_clear_go_through_the_device_actor(client, world, db, bus, device_actors):
    alarm_id = await _alarm(db, world.device)
    headers = await bearer(client, world.username("ops"))
    with bus.subscribe([DEVICES_TOPIC]) as updates:
        response = await client.post(f"/api/v1/alarms/{alarm_id}/ack", json={}, headers=headers)
        assert response.status_code == 200, await response.get_data(as_text=True)
        body = await response.get_json()
        assert body["state"] == "active_acked" and body["acked_by"] == world.users["ops"]
        # Committed before the answer, and published on the live bus.
        assert await db.fetchval("SELECT state FROM alarms WHERE id = $1", alarm_id) == "active_acked"
        with trio.fail_after(2):
            live = json.loads((await updates.__anext__()).json)
        assert live["type"] == "alarm" and live["alarm_id"] == alarm_id and live["state"] == "active_acked"

    again = await client.post(f"/api/v1/alarms/{alarm_id}/ack", json={}, headers=headers)
    assert again.status_code == 409 and (await again.get_json())["error"]["code"] == "already_acked"
    cleared = await client.post(f"/api/v1/alarms/{alarm_id}/clear", json={}, headers=headers)
    assert cleared.status_code == 200
    assert (await cleared.get_json())["state"] == "cleared_acked"
    row = await db.fetchrow("SELECT state, cleared_by FROM alarms WHERE id = $1", alarm_id)
    assert (row["state"], row["cleared_by"]) == ("cleared_acked", world.users["ops"])
    twice = await client.post(f"/api/v1/alarms/{alarm_id}/clear", json={}, headers=headers)
    assert twice.status_code == 409 and (await twice.get_json())["error"]["code"] == "already_cleared"

    # A cleared alarm the actor no longer holds in memory (cleared before it started) can be acked.
    old = await _alarm(db, world.device, state="cleared_unacked", type_="noise_high")
    acked = await client.post(f"/api/v1/alarms/{old}/ack", json={}, headers=headers)
    assert acked.status_code == 200 and (await acked.get_json())["state"] == "cleared_acked"
    assert (await client.post("/api/v1/alarms/999999999999/ack", json={}, headers=headers)).status_code == 404


async def test_ack_needs_a_json_body_and_a_running_hub(client, world, db):
    alarm_id = await _alarm(db, world.device)
    headers = await bearer(client, world.username("admin"))
    no_json = await client.post(f"/api/v1/alarms/{alarm_id}/ack", headers=headers)
    assert no_json.status_code == 415
    no_hub = await client.post(f"/api/v1/alarms/{alarm_id}/ack", json={}, headers=headers)
    assert no_hub.status_code == 503 and (await no_hub.get_json())["error"]["code"] == "unavailable"


@pytest.mark.parametrize("role", ["stu1", "fac1"])
async def test_only_ops_and_admin_see_or_touch_alarms_and_thresholds(client, world, db, role):
    alarm_id = await _alarm(db, world.device)
    headers = await bearer(client, world.username(role))
    for method, path in (("get", "/api/v1/alarms"), ("post", f"/api/v1/alarms/{alarm_id}/ack"),
                         ("get", f"/api/v1/devices/{world.device}/telemetry"), ("get", "/api/v1/thresholds"),
                         ("post", "/api/v1/thresholds")):
        response = await getattr(client, method)(path, headers=headers, **({"json": {}} if method == "post" else {}))
        assert response.status_code == 403, (method, path)
    assert (await client.get("/api/v1/alarms")).status_code == 401


async def test_threshold_rules_crud_reaches_the_hub(client, world, db):
    told = []

    async def changed() -> None:
        told.append(True)

    client.app.extensions["campushub"].thresholds_changed = changed
    headers = await bearer(client, world.username("ops"))
    rule = {"metric": "temperature", "op": "above", "value": 26, "clear_value": 24.5, "duration_s": 120,
            "severity": "major", "room_id": world.room}
    created = await client.post("/api/v1/thresholds", json=rule, headers=headers)
    assert created.status_code == 201, await created.get_data(as_text=True)
    body = await created.get_json()
    assert body["scope"] == "room" and body["updated_by"] == world.users["ops"] and body["enabled"] is True
    rule_id = body["id"]
    listed = await (await client.get(f"/api/v1/thresholds?room_id={world.room}", headers=headers)).get_json()
    assert [r["id"] for r in listed["items"]] == [rule_id] and listed["total"] == 1
    replaced = await client.put(f"/api/v1/thresholds/{rule_id}", json={**rule, "value": 27, "enabled": False},
                                headers=headers)
    assert replaced.status_code == 200 and (await replaced.get_json())["value"] == 27.0
    assert (await (await client.get(f"/api/v1/thresholds/{rule_id}", headers=headers)).get_json())["enabled"] is False
    assert (await client.delete(f"/api/v1/thresholds/{rule_id}", headers=headers)).status_code == 204
    assert (await client.get(f"/api/v1/thresholds/{rule_id}", headers=headers)).status_code == 404
    assert (await client.delete(f"/api/v1/thresholds/{rule_id}", headers=headers)).status_code == 404
    assert len(told) == 3  # create, replace, delete


BAD_RULES = [
    ({"clear_value": 27}, "clear_value"),  # hysteresis the wrong way round
    ({"severity": "fatal"}, "severity"),
    ({"op": "around"}, "op"),
    ({"metric": "Temp"}, "metric"),
    ({"value": "hot"}, "value"),
    ({"value": 10**400}, "value"),
    ({"duration_s": -5}, "duration_s"),
    ({"duration_s": 1.5}, "duration_s"),
    ({"room_id": "no-such-room"}, "room_id"),
    ({"room_type": "lab"}, "room_id"),  # both scopes at once
    ({"room_type": "a\u0000b", "room_id": None}, "room_type"),
    ({"enabled": "yes"}, "enabled"),
]


async def test_bad_threshold_rules_are_refused_with_the_field(client, world):
    headers = {**await bearer(client, world.username("admin")), "Content-Type": "application/json"}
    for change, field in BAD_RULES:
        rule = {"metric": "temperature", "op": "above", "value": 26, "clear_value": 24, "severity": "major",
                "room_id": world.room, **change}
        response = await client.post("/api/v1/thresholds", data=json.dumps(rule), headers=headers)
        assert response.status_code == 400, (change, await response.get_data(as_text=True))
        assert (await response.get_json())["error"]["field"] == field, change
