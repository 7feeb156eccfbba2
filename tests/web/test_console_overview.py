"""The ops console's overview (web/routes/ops.py, hub/db/console_overview.py, web/console.py), its open-alarm
count, and "acknowledge selected" (POST /api/v1/alarms/ack) through real device actors."""
from __future__ import annotations

import re
import uuid
from datetime import timedelta

from test_devices_api import _alarm, device_actors  # noqa: F401 - the fixture, wired as the hub wires it
from web_helpers import bearer, page_login

from web.console import floor_of, worst_health


async def _reading(db, device: str, metric: str, value: float, unit: str, at) -> None:
    await db.execute("INSERT INTO sensor_readings (event_id, device_id, metric, value, unit, device_ts)"
                     " VALUES ($1, $2, $3, $4, $5, $6)", uuid.uuid4(), device, metric, value, unit, at)


async def _hour(db, device: str, metric: str, hour, avg: float, unit: str) -> None:
    await db.execute("INSERT INTO sensor_readings_hourly (device_id, metric, hour, unit, n, sum, min, max)"
                     " VALUES ($1, $2, $3, $4, 2, $5, $6, $7)", device, metric, hour, unit, avg * 2, avg - 1, avg + 1)


async def test_the_overview_counts_the_alarms_the_alarm_list_shows(client, world, db):
    """Regression (issue 15): the grid said "Alarms 0" while the alarm list showed 4 open alarms: it counted
    only active alarms, the list's default ("open") also shows cleared ones nobody acknowledged yet."""
    await _alarm(db, world.device, state="cleared_unacked", type_="co2_high")
    await _alarm(db, world.device, state="cleared_unacked", type_="noise_high")
    await page_login(client, world.username("ops"))
    html = await (await client.get("/ops")).get_data(as_text=True)
    shown = int(re.search(r'id="alarm-count" class="badge">(\d+)<', html).group(1))
    listed = await (await client.get("/api/v1/alarms?limit=1")).get_json()  # the alarm list's default filter
    assert shown == listed["total"] and shown >= 2
    assert "Open alarms" in html


async def test_the_overview_shows_a_tile_per_room_with_readings_sparklines_and_occupancy(client, world, db):
    await db.execute("UPDATE rooms SET name = $2 WHERE id = $1", world.room, f"Room 312 ({world.suffix})")
    sensor = f"sensor_{world.suffix}"
    await db.execute("INSERT INTO devices (id, room_id, kind, alg, key) VALUES ($1, $2, 'sensor', 'hmac-sha256', $3)",
                     sensor, world.room, b"k" * 32)
    now = world.now
    await db.execute("INSERT INTO device_health (device_id, online, last_seen, last_change) VALUES ($1, true, $2, $2)",
                     sensor, now)
    await _reading(db, sensor, "co2", 900, "ppm", now - timedelta(minutes=30))
    await _reading(db, sensor, "co2", 1210, "ppm", now - timedelta(minutes=1))
    await _reading(db, sensor, "temperature", 21.46, "°C", now - timedelta(minutes=2))
    await _reading(db, sensor, "temperature", 30.0, "°C", now - timedelta(hours=2))  # too old to be "latest"
    hour = now.replace(minute=0, second=0, microsecond=0)
    for back, avg in ((3, 700.0), (2, 820.0), (1, 905.0)):
        await _hour(db, sensor, "co2", hour - timedelta(hours=back), avg, "ppm")
    await _hour(db, sensor, "co2", hour - timedelta(hours=30), 5000.0, "ppm")  # outside the 24 h line
    await _alarm(db, world.device, state="active_unacked", severity="major", type_="co2_high")

    headers = await bearer(client, world.username("ops"))
    body = await (await client.get("/api/v1/console/rooms", headers=headers)).get_json()
    tile = next(r for r in body["rooms"] if r["room_id"] == world.room)
    assert tile["readings"]["co2"]["value"] == 1210 and tile["readings"]["co2"]["unit"] == "ppm"
    assert tile["readings"]["temperature"]["value"] == 21.46
    assert tile["sparks"]["co2"] == [700.0, 820.0, 905.0]
    # The world's two live sessions in this room: stu1 checked in to one of them (tests/web/conftest.py).
    assert tile["occupancy"] == await db.fetchval(
        "SELECT count(*) FROM attendance a JOIN class_sessions s ON s.id = a.session_id WHERE s.room_id = $1"
        " AND s.starts_at <= $2 AND s.ends_at > $2 AND a.status IN ('present', 'late')", world.room, now)
    assert tile["health"] == "critical"  # the worst of its devices: the camera's major alarm
    assert {d["device_id"]: d["health"] for d in tile["devices"]} == {world.device: "critical", sensor: "ok"}
    assert tile["floor"] == "3"

    await page_login(client, world.username("ops"))
    html = await (await client.get("/ops")).get_data(as_text=True)
    article = re.search(rf'<article class="tile" data-room-id="{world.room}" data-health="(\w+)"', html)
    assert article is not None and article.group(1) == "critical"
    assert f'class="device device-online" data-device-id="{world.device}" data-health="critical"' in html
    assert "1210 ppm" in html and "21.5 °C" in html
    room = await client.get(f"/ops/rooms/{world.room}")
    assert room.status_code == 200
    room_html = await room.get_data(as_text=True)
    assert f'href="/ops/devices/{sensor}"' in room_html and "floor 3" in room_html
    assert (await client.get("/ops/rooms/no-such-room")).status_code == 404


def test_worst_health_and_floors() -> None:
    """The offline tile outranks a critical one (HEALTH_ORDER), the campus's rule for the device colour."""
    assert worst_health(["ok", "critical", "offline"]) == "offline"
    assert worst_health(["ok", "revoked"]) == "ok"
    assert worst_health([]) == "empty"
    assert [floor_of(n) for n in ("Room 101", "Room 1100", "Lab 12", "Atrium", "B-0214")] == ["1", "11", "G", "", "2"]


async def test_acknowledge_selected_acks_each_through_its_actor(client, world, db, device_actors):  # noqa: F811
    first = await _alarm(db, world.device, state="active_unacked", type_="co2_high")
    second = await _alarm(db, world.device, state="cleared_unacked", type_="noise_high")
    done = await _alarm(db, world.device, state="active_acked", type_="temperature_high")
    headers = await bearer(client, world.username("ops"))
    response = await client.post("/api/v1/alarms/ack", json={"alarm_ids": [first, second, done, 987654321]},
                                 headers=headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["acked"] == 2
    assert [(r["alarm_id"], r["acked"], r.get("error")) for r in body["results"]] == [
        (first, True, None), (second, True, None), (done, False, "already_acked"), (987654321, False, "not_found")]
    assert body["results"][0]["alarm"]["state"] == "active_acked"
    states = dict(await db.fetch("SELECT id, state FROM alarms WHERE id = ANY($1::bigint[])", [first, second]))
    assert states == {first: "active_acked", second: "cleared_acked"}


async def test_acknowledge_selected_refuses_bad_lists(client, world, db):
    alarm_id = await _alarm(db, world.device)
    headers = await bearer(client, world.username("ops"))
    for body in ({"alarm_ids": []}, {"alarm_ids": [alarm_id, alarm_id]}, {"alarm_ids": ["1"]}, {},
                 {"alarm_ids": list(range(1, 502))}, {"alarm_ids": [0]}):
        response = await client.post("/api/v1/alarms/ack", json=body, headers=headers)
        assert response.status_code == 400, body
        assert (await response.get_json())["error"]["field"] in ("alarm_ids", "alarm_ids[0]", "$")
    student = await bearer(client, world.username("stu1"))
    assert (await client.post("/api/v1/alarms/ack", json={"alarm_ids": [alarm_id]}, headers=student)).status_code == 403
