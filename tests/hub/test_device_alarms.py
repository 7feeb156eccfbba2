"""Alarms through the real pipeline: MQTT (Mosquitto) → ingress → device actor → writer → PostgreSQL,
with rules set and alarms acknowledged through the web API of the same running hub."""
from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import httpx
import trio
from support.hub_helpers import eventually

from hub.db.seed import DEMO_PASSWORD
from schemas import (
    DeviceStatus,
    SensorReading,
    SensorReadingEvent,
    Topics,
    encode_event,
    encode_status,
    new_event_id,
)


@asynccontextmanager
async def _ops(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as http:
        login = await http.post("/api/v1/auth/login", json={"username": "ops", "password": DEMO_PASSWORD})
        assert login.status_code == 200, login.text
        http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        yield http


class Sensor:
    """Publishes correctly signed temperature readings of one device, at chosen device times."""

    def __init__(self, publisher, topics: Topics, device) -> None:
        self.publisher, self.topics, self.device, self.seq = publisher, topics, device, 0

    async def reading(self, value: float, device_time: float) -> None:
        self.seq += 1
        event = SensorReadingEvent(v=1, id=new_event_id(), device=self.device.device_id,
                                   ts=int(device_time * 1000), seq=self.seq,
                                   body=SensorReading("temperature", value, "°C"))
        await self.publisher.publish(self.topics.uplink(self.device.device_id),
                                     encode_event(event, self.device.alg, self.device.signing_key), wait_for_ack=True)


async def _alarms(db, device_id: str, alarm_type: str) -> list[dict[str, Any]]:
    rows = await db.fetch("SELECT id, severity, state, acked_by, cleared_by FROM alarms"
                          " WHERE device_id = $1 AND type = $2 ORDER BY id", device_id, alarm_type)
    return [dict(r) for r in rows]


async def test_threshold_alarm_raised_once_escalated_acked_and_cleared(hub, hub_settings, hub_campus, test_db,
                                                                      publisher):
    device = hub_campus.devices[0]
    sensor = Sensor(publisher, Topics(hub_settings.topic_prefix), device)
    async with _ops(f"http://127.0.0.1:{hub.web_port}") as http:
        # Rules of this room override the campus defaults for temperature_high; every running
        # device actor adopts them before the API answers.
        for rule in ({"value": 25, "clear_value": 23, "duration_s": 120, "severity": "minor"},
                     {"value": 30, "clear_value": 28, "duration_s": 0, "severity": "critical"}):
            created = await http.post("/api/v1/thresholds", json={
                "metric": "temperature", "op": "above", "room_id": device.room_id, **rule})
            assert created.status_code == 201, created.text

        start = time.time() - 100  # device time: replayed as if buffered for a while
        # Above 25 °C for 120 s of device time, every reading sent twice a few ms apart:
        # duplicate racing messages must not raise a second alarm.
        for second in range(0, 61, 30):
            await sensor.reading(26.0, start + second)
            await sensor.reading(26.5, start + second)
        assert await _alarms(test_db, device.device_id, "temperature_high") == []  # 60 s: not yet
        for second in range(90, 151, 30):
            await sensor.reading(26.0, start + second)
            await sensor.reading(26.5, start + second)
        raised = await eventually(lambda: _alarms(test_db, device.device_id, "temperature_high"))
        assert len(raised) == 1 and raised[0]["severity"] == "minor" and raised[0]["state"] == "active_unacked"
        alarm_id = raised[0]["id"]

        acked = await http.post(f"/api/v1/alarms/{alarm_id}/ack", json={})
        assert acked.status_code == 200, acked.text
        assert acked.json()["state"] == "active_acked"

        # 31 °C trips the critical rule at once: the same alarm escalates (and needs a new ack).
        await sensor.reading(31.0, start + 160)
        await sensor.reading(31.0, start + 161)

        async def escalated():
            rows = await _alarms(test_db, device.device_id, "temperature_high")
            return rows if rows[0]["severity"] == "critical" else None

        rows = await eventually(escalated)
        assert len(rows) == 1 and rows[0]["id"] == alarm_id and rows[0]["state"] == "active_unacked"

        # Back under 28: critical clears, still above 23: minor again; under 23: cleared by the system.
        await sensor.reading(27.0, start + 170)
        await sensor.reading(22.0, start + 180)

        async def cleared():
            rows = await _alarms(test_db, device.device_id, "temperature_high")
            return rows if rows[0]["state"].startswith("cleared") else None

        rows = await eventually(cleared)
        assert len(rows) == 1 and rows[0]["state"] == "cleared_unacked" and rows[0]["cleared_by"] == "system"
        listed = (await http.get("/api/v1/alarms", params={"device_id": device.device_id, "state": "all"})).json()
        assert [a["alarm_id"] for a in listed["items"] if a["alarm_type"] == "temperature_high"] == [alarm_id]
        assert (await http.post(f"/api/v1/alarms/{alarm_id}/ack", json={})).json()["state"] == "cleared_acked"
        # The readings themselves were all stored (16: none lost to the alarm work).
        assert await test_db.fetchval(
            "SELECT count(*) FROM sensor_readings WHERE device_id = $1", device.device_id) == 16


async def test_offline_raises_an_alarm_that_clears_when_the_device_is_back(hub, hub_settings, hub_campus, test_db,
                                                                           publisher):
    device = hub_campus.devices[1]
    topics = Topics(hub_settings.topic_prefix)
    now_ms = int(time.time() * 1000)

    async def status(state: str, ts: int, reason: str) -> None:
        signed = encode_status(DeviceStatus(device.device_id, state, ts, reason), device.alg, device.signing_key)
        await publisher.publish(topics.status(device.device_id), signed, retain=True, wait_for_ack=True)

    await status("online", now_ms, "connected")
    await eventually(lambda: test_db.fetchval(
        "SELECT online FROM device_health WHERE device_id = $1", device.device_id))
    await status("offline", now_ms + 1, "connection lost")  # the Last Will of that connection: its ts + 1
    offline = await eventually(lambda: _alarms(test_db, device.device_id, "device_offline"))
    assert len(offline) == 1 and offline[0]["severity"] == "major" and offline[0]["state"] == "active_unacked"
    health = await test_db.fetchrow(
        "SELECT online, last_disconnect_reason, last_connect_reason FROM device_health WHERE device_id = $1",
        device.device_id)
    assert (health["online"], health["last_disconnect_reason"], health["last_connect_reason"]) == (
        False, "connection lost", "connected")
    history = await test_db.fetch(
        "SELECT change FROM device_health_history WHERE device_id = $1 ORDER BY id", device.device_id)
    assert [r["change"] for r in history] == ["online", "offline"]

    async with _ops(f"http://127.0.0.1:{hub.web_port}") as http:
        detail = (await http.get(f"/api/v1/devices/{device.device_id}")).json()
        assert detail["device"]["online"] is False and detail["device"]["alarm_severity"] == "major"
        assert [a["alarm_type"] for a in detail["alarms"]] == ["device_offline"]

    await status("online", now_ms + 5000, "connected")

    async def cleared():
        rows = await _alarms(test_db, device.device_id, "device_offline")
        return rows if rows[0]["state"] == "cleared_unacked" else None

    rows = await eventually(cleared)
    assert len(rows) == 1 and rows[0]["cleared_by"] == "system"
    await publisher.publish(topics.status(device.device_id), b"", retain=True, wait_for_ack=True)
    await trio.lowlevel.checkpoint()
