"""POST /api/v1/thresholds/preview: a candidate rule replayed over the last 24 h of real readings.

Each test seeds readings of a metric of its own (so other tests' rules and readings never count), in
the world's room, then asks what the candidate would have fired.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from web_helpers import bearer

from hub.db import Database


def metric_of(world) -> str:
    return f"co2_{world.suffix}"


async def seed(db: Database, device: str, metric: str, start: datetime, values: list[float]) -> list[datetime]:
    """One reading a minute from ``start``; returns their times."""
    times = [start + timedelta(minutes=i) for i in range(len(values))]
    await db.run(lambda conn: conn.executemany(
        "INSERT INTO sensor_readings (event_id, device_id, metric, value, unit, device_ts) VALUES ($1,$2,$3,$4,$5,$6)",
        [(uuid.uuid4(), device, metric, v, "ppm", t) for v, t in zip(values, times)]))
    return times


def rule(world, **changes) -> dict:
    return {"metric": metric_of(world), "op": "above", "value": 1000, "clear_value": 950, "duration_s": 300,
            "severity": "major", "room_id": world.room, **changes}


def now_of(clock) -> datetime:
    return datetime.fromtimestamp(clock.now, timezone.utc)


async def test_a_history_crossing_the_level_is_listed_per_room(client, world, db, clock):
    start = now_of(clock) - timedelta(hours=3)
    # 10 min normal, 15 min past 1000 (peak 1300), then back under the clear level.
    values = [800.0] * 10 + [1200.0] * 7 + [1300.0] + [1200.0] * 7 + [900.0] * 10
    times = await seed(db, world.device, metric_of(world), start, values)
    # A breach 30 h ago is outside the 24 h the preview looks at.
    await seed(db, world.device, metric_of(world), now_of(clock) - timedelta(hours=30), [2000.0] * 20)
    headers = await bearer(client, world.username("ops"))
    response = await client.post("/api/v1/thresholds/preview", json=rule(world), headers=headers)
    assert response.status_code == 200
    body = await response.get_json()
    assert (body["rooms_governed"], body["devices_checked"], body["readings_checked"]) == (1, 1, len(values))
    assert body["trips"] == 1 and body["truncated"] is False and body["rule"]["scope"] == "room" and body["unit"] == "ppm"
    [room] = body["rooms"]
    assert room["room_id"] == world.room and room["room_name"] == f"Room {world.suffix}"
    [trip] = room["trips"]
    assert trip["device_id"] == world.device and trip["peak"] == 1300 and trip["unit"] == "ppm"
    assert datetime.fromisoformat(trip["since"]) == times[10]
    assert datetime.fromisoformat(trip["tripped_at"]) == times[15]  # 5 min of breach: the duration
    assert datetime.fromisoformat(trip["cleared_at"]) == times[25]
    assert trip["message"] == f"{metric_of(world)} 1300 ppm above 1000 for 5 min"


async def test_a_rule_that_would_not_fire_answers_empty(client, world, db, clock):
    await seed(db, world.device, metric_of(world), now_of(clock) - timedelta(hours=2), [800.0, 1200.0, 1200.0, 800.0])
    headers = await bearer(client, world.username("admin"))
    # Past the level for only 2 min of a 5-min duration; and a higher level is never reached.
    for candidate in (rule(world), rule(world, value=1500, clear_value=1400, duration_s=0)):
        body = await (await client.post("/api/v1/thresholds/preview", json=candidate, headers=headers)).get_json()
        assert (body["trips"], body["rooms"], body["readings_checked"]) == (0, [], 4)


async def test_an_active_breach_at_the_end_is_reported_uncleared(client, world, db, clock):
    await seed(db, world.device, metric_of(world), now_of(clock) - timedelta(minutes=20), [1100.0] * 10)
    headers = await bearer(client, world.username("ops"))
    body = await (await client.post("/api/v1/thresholds/preview", json=rule(world, duration_s=0),
                                    headers=headers)).get_json()
    [trip] = body["rooms"][0]["trips"]
    assert trip["cleared_at"] is None and trip["since"] == trip["tripped_at"]


async def test_scope_overrides_follow_the_rule_book(client, world, db, clock):
    await seed(db, world.device, metric_of(world), now_of(clock) - timedelta(hours=1), [1200.0] * 10 + [900.0])
    headers = await bearer(client, world.username("admin"))
    client.app.extensions["campushub"].thresholds_changed = _nothing
    # A stored rule for the room, of the same kind (metric_high) but never reached.
    stored = await (await client.post("/api/v1/thresholds", json=rule(world, value=5000, clear_value=4000),
                                      headers=headers)).get_json()
    campus_wide = rule(world, room_id=None, duration_s=0)
    body = await (await client.post("/api/v1/thresholds/preview", json=campus_wide, headers=headers)).get_json()
    # The room's own rule overrides a campus-wide one there: the candidate would not fire in it.
    assert world.room not in [r["room_id"] for r in body["rooms"]]
    # Editing that very rule into a campus-wide one: it no longer overrides, so the room's readings count.
    body = await (await client.post("/api/v1/thresholds/preview", json={**campus_wide, "rule_id": stored["id"]},
                                    headers=headers)).get_json()
    assert [r["room_id"] for r in body["rooms"]] == [world.room] and body["rule"]["id"] == stored["id"]
    # Nothing was stored by previewing.
    assert (await (await client.get(f"/api/v1/thresholds/{stored['id']}", headers=headers)).get_json())["value"] == 5000
    await client.delete(f"/api/v1/thresholds/{stored['id']}", headers=headers)


async def _nothing() -> None:
    return None


async def test_bad_candidates_are_refused_with_the_field(client, world):
    headers = await bearer(client, world.username("ops"))
    for candidate, field in ((rule(world, clear_value=1100), "clear_value"),
                             (rule(world, room_id=f"nowhere_{world.suffix}"), "room_id"),
                             (rule(world, metric="CO2 level"), "metric"),
                             ({**rule(world), "rule_id": 0}, "rule_id")):
        response = await client.post("/api/v1/thresholds/preview", json=candidate, headers=headers)
        assert response.status_code == 400, candidate
        assert (await response.get_json())["error"]["field"] == field
    faculty = await bearer(client, world.username("fac1"))
    assert (await client.post("/api/v1/thresholds/preview", json=rule(world), headers=faculty)).status_code == 403
