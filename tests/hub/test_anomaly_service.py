"""The anomaly actor in a running hub: fit on seeded hourly history, score the new hours, raise exactly one
``telemetry_anomaly`` alarm through the device actor for an injected spike (on its second unusual hour),
and clear it once normal again."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import httpx
import numpy as np
from support.hub_helpers import eventually

from hub.db.seed import DEMO_PASSWORD
from hub.domain.anomaly import ANOMALY_ALARM, CLEAR_AFTER_NORMAL_HOURS, hour_floor
from hub.services.anomaly import BACKFILL_HOURS, FitNow, ScoreNow

HISTORY_DAYS = 14
SPIKE_HOURS = 3
SPIKE_AGO = 7  # the spike covers the hours 7, 6 and 5 before the current one


async def _seed_history(db, device_id: str, end: datetime) -> list[datetime]:
    """Two weeks of one CO2 sensor: a daily rhythm with a little noise, and a +800 ppm spike; its hours."""
    rng = np.random.default_rng(5)
    spike = [end - timedelta(hours=SPIKE_AGO - i) for i in range(SPIKE_HOURS)]
    rows = []
    for i in range(HISTORY_DAYS * 24, 0, -1):
        hour = end - timedelta(hours=i)
        mean = 450 + 300 * max(0.0, math.sin(math.pi * (hour.hour - 8) / 10)) + rng.normal(0, 10)
        if hour in spike:
            mean += 800
        spread = 40 + rng.normal(0, 4)
        rows.append((device_id, "co2", hour, "ppm", 60, mean * 60, mean - spread / 2, mean + spread / 2))
    await db.run(lambda conn: conn.copy_records_to_table(
        "sensor_readings_hourly", records=rows,
        columns=["device_id", "metric", "hour", "unit", "n", "sum", "min", "max"]))
    return spike


async def test_a_spike_raises_one_alarm_that_clears_when_normal_again(hub, hub_campus, test_db):
    device = hub_campus.devices[0]
    end = hour_floor(datetime.now(timezone.utc))
    spike = await _seed_history(test_db, device.device_id, end)
    actor = hub.root.lookup("anomaly")

    fitted = await actor.ask(FitNow(by="test", wait=True), timeout=60)
    assert not fitted.skipped
    assert [(m.metric, m.room_type, m.detector, m.series) for m in fitted.models] == [
        ("co2", "lecture_hall", "baseline", 1)]

    await actor.ask(ScoreNow(), timeout=60)
    scored = await test_db.fetchval("SELECT count(*) FROM anomaly_scored_hours WHERE hour >= $1",
                                    end - timedelta(hours=BACKFILL_HOURS))
    assert scored == BACKFILL_HOURS  # every complete hour of the backfill window, once

    found = await test_db.fetch("SELECT hour, kind, severity, alarm_id FROM telemetry_anomalies"
                                " WHERE device_id = $1 ORDER BY hour", device.device_id)
    assert [r["hour"] for r in found] == spike
    assert {r["kind"] for r in found} == {"high"}
    alarms = await test_db.fetch("SELECT id, severity, state, cleared_by, details::text AS details FROM alarms"
                                 " WHERE device_id = $1 AND type = $2", device.device_id, ANOMALY_ALARM)
    # One alarm for the whole episode (updated, not re-raised, while it lasted), cleared by the system once
    # CLEAR_AFTER_NORMAL_HOURS hours were usual again.
    assert len(alarms) == 1, alarms
    assert alarms[0]["state"] == "cleared_unacked" and alarms[0]["cleared_by"] == "system"
    assert {r["alarm_id"] for r in found} == {alarms[0]["id"]}
    assert f'"unusual_hours": {SPIKE_HOURS}' in alarms[0]["details"]
    assert SPIKE_AGO - SPIKE_HOURS >= CLEAR_AFTER_NORMAL_HOURS  # (so the clear above is the rule's doing)

    # Scoring again finds nothing new to score: no second alarm, no second row.
    again = await actor.ask(ScoreNow(), timeout=60)
    assert again.hours == []
    assert await test_db.fetchval("SELECT count(*) FROM alarms WHERE type = $1", ANOMALY_ALARM) == 1

    # Like any alarm, ops acknowledge it through the alarm API (the device actor's lifecycle).
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", timeout=15) as http:
        login = await http.post("/api/v1/auth/login", json={"username": "ops", "password": DEMO_PASSWORD})
        http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        acked = await http.post(f"/api/v1/alarms/{alarms[0]['id']}/ack", json={})
        assert acked.status_code == 200, acked.text
        assert acked.json()["state"] == "cleared_acked"
        listed = await http.get("/api/v1/anomalies", params={"device_id": device.device_id})
        assert listed.status_code == 200
        assert [a["hour"] for a in reversed(listed.json()["items"])] == [h.isoformat() for h in spike]
        asked = await http.post("/api/v1/anomalies/fit", json={})
        assert asked.status_code == 202 and asked.json() == {"started": True}
        # The running actor takes the request and fits again: a second active model replaces the first.
        taken = await eventually(lambda: test_db.fetchval(
            "SELECT count(*) = 2 FROM anomaly_models WHERE metric = 'co2'"), timeout=30)
        assert taken
        assert await test_db.fetchval("SELECT count(*) FROM anomaly_fit_requests WHERE taken_at IS NULL") == 0


async def test_an_unusual_hour_still_going_keeps_its_alarm_active(hub, hub_campus, test_db):
    device = hub_campus.devices[1]
    end = hour_floor(datetime.now(timezone.utc))
    await _seed_history(test_db, device.device_id, end)
    # The latest two hours are unusual too (a spike that is still going): its alarm must be active.
    await test_db.execute("UPDATE sensor_readings_hourly SET sum = sum + 900 * n, min = min + 900,"
                          " max = max + 900 WHERE device_id = $1 AND hour >= $2", device.device_id,
                          end - timedelta(hours=2))
    # And one unusual hour alone, earlier, is recorded but raises no alarm.
    await test_db.execute("UPDATE sensor_readings_hourly SET sum = sum + 900 * n, min = min + 900,"
                          " max = max + 900 WHERE device_id = $1 AND hour = $2", device.device_id,
                          end - timedelta(hours=20))
    actor = hub.root.lookup("anomaly")
    await actor.ask(FitNow(by="test", wait=True), timeout=60)
    await actor.ask(ScoreNow(), timeout=60)
    states = [r["state"] for r in await test_db.fetch(
        "SELECT state FROM alarms WHERE device_id = $1 AND type = $2 ORDER BY id", device.device_id, ANOMALY_ALARM)]
    assert states == ["cleared_unacked", "active_unacked"]  # the old spike's, then the new one's
    assert await test_db.fetchval("SELECT alarm_id IS NULL FROM telemetry_anomalies WHERE device_id = $1"
                                  " AND hour = $2", device.device_id, end - timedelta(hours=20))
