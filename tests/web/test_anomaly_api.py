"""The predictive-maintenance API: who may read unusual hours and detector figures, filters, and the fit
request without a running hub (the fit itself, through a real hub: tests/hub/test_anomaly_service.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from web_helpers import bearer, page_login

from hub.db.anomalies import NewAnomaly, NewModel, record_hour, save_models


async def _seed(db, world) -> int:
    # An hour of its own (the scored-hours table is campus-wide; the shared test database has other tests' hours).
    hour = datetime(2021, 1, 1, tzinfo=timezone.utc) + timedelta(hours=int(world.suffix, 16) % 200_000)
    [model] = await save_models(db, [NewModel(f"co2_{world.suffix}", "lecture_hall", "baseline", 1, 336, {},
                                              {"flagged_share": 0.004})],
                                fitted_at=hour, trained_from=hour - timedelta(days=14), trained_to=hour)
    await record_hour(db, hour, [NewAnomaly(world.device, world.room, f"co2_{world.suffix}", "ppm", "high", 1500.0,
                                            640.0, 60, 14.2, "minor", model.id)], series=1)
    return model.id


async def test_ops_and_admin_read_unusual_hours_and_models(client, world, db):
    model_id = await _seed(db, world)
    for role in ("ops", "admin"):
        headers = await bearer(client, world.username(role))
        listed = await client.get(f"/api/v1/anomalies?device_id={world.device}", headers=headers)
        assert listed.status_code == 200
        body = await listed.get_json()
        assert body["total"] == 1 and body["limit"] == 50
        [item] = body["items"]
        assert item["metric"] == f"co2_{world.suffix}" and item["kind"] == "high" and item["severity"] == "minor"
        assert item["room_id"] == world.room and item["room_name"] == f"Room {world.suffix}"
        assert item["value"] == 1500.0 and item["expected"] == 640.0 and item["unit"] == "ppm"
        assert item["alarm_id"] is None and item["model_id"] == model_id
        models = await (await client.get("/api/v1/anomalies/models", headers=headers)).get_json()
        mine = [m for m in models["items"] if m["id"] == model_id]
        assert mine and mine[0]["active"] and mine[0]["detector"] == "baseline"
        assert models["threshold"] > 0 and set(models["severities"]) == {"warning", "minor", "major"}


async def test_filters_narrow_the_listing(client, world, db):
    await _seed(db, world)
    ops = await bearer(client, world.username("ops"))
    by_room = await (await client.get(f"/api/v1/anomalies?room_id={world.room}", headers=ops)).get_json()
    assert by_room["total"] == 1
    other_metric = await (await client.get(
        f"/api/v1/anomalies?device_id={world.device}&metric=humidity", headers=ops)).get_json()
    assert other_metric["total"] == 0
    later = await (await client.get(
        f"/api/v1/anomalies?device_id={world.device}&since=2099-01-01T00:00:00Z", headers=ops)).get_json()
    assert later["total"] == 0
    bad = await client.get("/api/v1/anomalies?since=yesterday", headers=ops)
    assert bad.status_code == 400 and (await bad.get_json())["error"]["field"] == "since"


async def test_faculty_and_students_may_not_see_them(client, world, db):
    await _seed(db, world)
    for role in ("fac1", "stu1"):
        headers = await bearer(client, world.username(role))
        for path in ("/api/v1/anomalies", "/api/v1/anomalies/models"):
            assert (await client.get(path, headers=headers)).status_code == 403
        assert (await client.post("/api/v1/anomalies/fit", json={}, headers=headers)).status_code == 403


async def test_fit_now_is_recorded_once_even_without_a_running_hub(client, world, db):
    await db.execute("UPDATE anomaly_fit_requests SET taken_at = now() WHERE taken_at IS NULL")  # other tests' asks
    ops = await bearer(client, world.username("ops"))
    # The test app has no hub: the request waits for any hub's anomaly actor to take it up.
    asked = await client.post("/api/v1/anomalies/fit", json={}, headers=ops)
    assert (asked.status_code, await asked.get_json()) == (202, {"started": False})
    again = await client.post("/api/v1/anomalies/fit", json={}, headers=await bearer(client, world.username("admin")))
    assert (again.status_code, (await again.get_json())["error"]["code"]) == (409, "fit_already_queued")
    assert await db.fetchval("SELECT requested_by FROM anomaly_fit_requests WHERE taken_at IS NULL") == \
        world.users["ops"]


async def test_the_ops_room_and_device_pages_show_unusual_hours(client, world, db):
    ops = world.username("ops")
    await page_login(client, ops)
    page = await (await client.get(f"/ops/devices/{world.device}")).get_data(as_text=True)
    assert "Unusual readings" in page and "Nothing unusual in the last 7 days" in page
    # Recent hours only: the seeded one is years old, so record one of this hour.
    hour = world.now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    await db.execute(
        "INSERT INTO telemetry_anomalies (device_id, room_id, metric, unit, hour, kind, value, expected, readings,"
        " score, severity) VALUES ($1, $2, 'temperature', '°C', $3, 'stuck', 21.5, 21.0, 60, 30, 'major')",
        world.device, world.room, hour)
    for path in (f"/ops/devices/{world.device}", f"/ops/rooms/{world.room}"):
        page = await (await client.get(path)).get_data(as_text=True)
        assert "The sensor repeated one value all hour" in page and "21.5 °C" in page, path
        assert "Nothing unusual" not in page
