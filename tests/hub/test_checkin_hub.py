"""Check-in end to end (real Mosquitto + PostgreSQL + the whole hub): wrong-room scans, early scans,
skewed device clocks, and the roster's live flags panel in a real browser.

Two spare rooms are added before the hub boots: ``lab-a`` (a device, no sessions: its scans
belong elsewhere) and ``lab-b`` (a device and a session of the first live session's course that
opens a few seconds after the hub starts: early scans).
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import trio
from support.browser_helpers import chromium, run_in_browser_thread
from support.hub_helpers import eventually, session_with_device, signed_scan, student
from test_hub_pipeline import login

from hub.core.campus import Campus, DeviceCredentials
from hub.core.config import Settings
from hub.db import run_with_database
from hub.pipeline.session_actor import RosterStatus
from schemas import Heartbeat, HeartbeatEvent, Topics, encode_event, issue_checkin_token, new_event_id

#: How long after the fixture runs the lab-b session opens: enough for the hub to boot first.
EARLY_OPENS_IN = timedelta(seconds=7)


@dataclass(frozen=True)
class Labs:
    lab_a: DeviceCredentials  # a room with no session at all
    lab_b: DeviceCredentials  # a room whose session opens soon
    early_session: str
    early_opens_at: datetime


@pytest.fixture
def labs(hub_settings: Settings, hub_campus: Campus) -> Labs:
    """Rooms, devices and the early session, written before the hub boots (the scheduler loads it then)."""
    course = hub_campus.sessions[0].course_id
    opens = datetime.now(timezone.utc) + EARLY_OPENS_IN
    devices = [DeviceCredentials(f"dev-lab-{x}", f"room-lab-{x}", "edge_agent", "hmac-sha256", os.urandom(32))
               for x in "ab"]
    early = "ses-lab-b-early"

    async def work(conn) -> None:
        await conn.executemany("INSERT INTO rooms (id, name, building) VALUES ($1, $2, 'Labs')",
                               [(d.room_id, d.room_id.replace("room-", "").title()) for d in devices])
        await conn.executemany("INSERT INTO devices (id, room_id, kind, alg, key) VALUES ($1, $2, $3, $4, $5)",
                               [(d.device_id, d.room_id, d.kind, d.alg, d.signing_key) for d in devices])
        await conn.execute(
            "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status, opens_minutes_before)"
            " VALUES ($1, $2, $3, $4, $5, 'scheduled', 15)",
            early, course, devices[1].room_id, opens + timedelta(minutes=15), opens + timedelta(minutes=75))

    run_with_database(hub_settings.database_url, lambda db: db.run(work, transaction=True))
    return Labs(devices[0], devices[1], early, opens)


async def _faculty(test_db, course_id: str) -> tuple[str, str]:
    row = await test_db.fetchrow(
        "SELECT u.id, u.username FROM courses c JOIN users u ON u.id = c.faculty_id WHERE c.id = $1", course_id)
    return row["id"], row["username"]


async def _get(port: int, token: str, path: str) -> dict:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        response = await http.get(path)
        response.raise_for_status()
        return response.json()


async def _scan(publisher, settings: Settings, device: DeviceCredentials, campus: Campus, student_id: str,
                *, seq: int, at: float) -> None:
    s = student(campus, student_id)
    await publisher.publish(Topics(settings.topic_prefix).uplink(device.device_id), signed_scan(
        device, issue_checkin_token(s.student_id, s.token_secret, at), seq=seq, at=at), wait_for_ack=True)


async def _flags(test_db, session_id: str) -> list:
    return await test_db.fetch("SELECT id, student_id, kind, state, evidence FROM checkin_flags WHERE session_id = $1",
                               session_id)


async def test_a_scan_in_another_room_counts_for_the_students_session_and_is_flagged_wrong_room(
        labs, hub, hub_settings, hub_campus, test_db, publisher):
    session = hub_campus.sessions[0]
    scanned = session.enrolled[0]
    await _scan(publisher, hub_settings, labs.lab_a, hub_campus, scanned, seq=1, at=time.time())

    [flag] = await eventually(lambda: _flags(test_db, session.session_id))
    assert (flag["student_id"], flag["kind"], flag["state"]) == (scanned, "wrong_room", "open")
    record = await test_db.fetchrow("SELECT status, source FROM attendance WHERE session_id = $1 AND student_id = $2",
                                    session.session_id, scanned)
    assert dict(record) == {"status": "present", "source": "qr"}  # counted, for faculty to review

    faculty_id, username = await _faculty(test_db, session.course_id)
    token = await login(hub.web_port, username)
    page = await _get(hub.web_port, token, f"/api/v1/sessions/{session.session_id}/flags")
    assert page["total"] == 1
    item = page["items"][0]
    assert (item["id"], item["kind"], item["status"]) == (flag["id"], "wrong_room", "present")
    assert item["evidence"] == {"device_id": labs.lab_a.device_id, "room_id": labs.lab_a.room_id}
    # The managing faculty is told once, with a link to the roster where the flag is reviewed.
    notes = await _get(hub.web_port, token, "/api/v1/notifications")
    flagged = [n for n in notes["items"]
               if n["kind"] == "checkin_flagged" and n["data"]["session_id"] == session.session_id]
    assert len(flagged) == 1 and flagged[0]["user_id"] == faculty_id
    assert flagged[0]["data"]["flag_id"] == flag["id"]
    assert flagged[0]["link"] == f"/faculty/sessions/{session.session_id}"


async def test_an_early_scan_is_counted_present_for_the_session_that_opens_next(
        labs, hub, hub_settings, hub_campus, test_db, publisher):
    early_student = hub_campus.sessions[0].enrolled[1]
    at = time.time()
    assert at < labs.early_opens_at.timestamp(), "the hub took too long to boot for an early scan"
    await _scan(publisher, hub_settings, labs.lab_b, hub_campus, early_student, seq=1, at=at)

    row = await eventually(lambda: test_db.fetchrow(
        "SELECT status, source, checked_in_at FROM attendance WHERE session_id = $1 AND student_id = $2",
        labs.early_session, early_student))
    assert (row["status"], row["source"]) == ("present", "qr")
    assert row["checked_in_at"] < labs.early_opens_at  # judged at the scan, before the session opened
    # The scheduler opens the session on time; its actor holds the early check-in.

    async def opened() -> bool:
        return await test_db.fetchval("SELECT status FROM class_sessions WHERE id = $1", labs.early_session) == "open"

    await eventually(opened, timeout=20)
    assert await hub.sessions.lookup(labs.early_session).ask(RosterStatus()) == {early_student: "present"}
    assert await _flags(test_db, labs.early_session) == []


async def test_a_late_scan_from_a_device_whose_heartbeats_show_a_clock_behind_is_flagged_clock_skew(
        labs, hub, hub_settings, hub_campus, test_db, publisher):
    session, device = session_with_device(hub_campus)
    behind = 90.0  # seconds the device's clock runs behind the hub's
    uplink = Topics(hub_settings.topic_prefix).uplink(device.device_id)
    heartbeat = HeartbeatEvent(v=1, id=new_event_id(), device=device.device_id, ts=int((time.time() - behind) * 1000),
                               seq=1, body=Heartbeat(uptime_s=600, firmware="1.0.0", outbox_depth=0))
    await publisher.publish(uplink, encode_event(heartbeat, device.alg, device.signing_key), wait_for_ack=True)
    await eventually(lambda: test_db.fetchval(
        "SELECT count(*) FROM events WHERE device_id = $1 AND kind = 'heartbeat'", device.device_id))

    skewed = session.enrolled[2]
    await _scan(publisher, hub_settings, device, hub_campus, skewed, seq=2, at=time.time() - behind)
    [flag] = await eventually(lambda: _flags(test_db, session.session_id))
    assert (flag["student_id"], flag["kind"], flag["state"]) == (skewed, "clock_skew", "open")
    # The check-in still counts (faculty decide).
    assert await test_db.fetchval("SELECT status FROM attendance WHERE session_id = $1 AND student_id = $2",
                                  session.session_id, skewed) == "present"
    # An ordinary check-in from a device with a good clock is neither flagged nor notified.
    _, good = session_with_device(hub_campus, 1)
    other = hub_campus.sessions[1]
    await _scan(publisher, hub_settings, good, hub_campus, other.enrolled[0], seq=1, at=time.time())
    await eventually(lambda: test_db.fetchval("SELECT count(*) FROM attendance WHERE session_id = $1 AND source = 'qr'",
                                              other.session_id))
    assert await test_db.fetchval("SELECT count(*) FROM checkin_flags WHERE session_id = ANY($1::text[])",
                                  [session.session_id, other.session_id]) == 1
    faculty_id, _ = await _faculty(test_db, session.course_id)
    notified = await test_db.fetch(
        "SELECT user_id, data FROM notifications WHERE kind = 'checkin_flagged' AND data->>'session_id' = ANY($1::text[])",
        [session.session_id, other.session_id])
    assert [(n["user_id"], json.loads(n["data"])["flag_id"]) for n in notified] == [(faculty_id, flag["id"])]


async def test_heartbeats_stored_before_the_device_actor_started_still_tell_its_clock(
        labs, hub, hub_settings, hub_campus, test_db, publisher):
    # The device actor keeps its device's heartbeat samples in memory; those stored before it
    # started (a hub restart) are read once, at its first late scan.
    session, device = session_with_device(hub_campus)
    behind = timedelta(seconds=90)
    received = datetime.now(timezone.utc) - timedelta(minutes=2)
    await test_db.execute(
        "INSERT INTO events (event_id, device_id, seq, kind, device_ts, received_at, body)"
        " VALUES ($1, $2, 1, 'heartbeat', $3, $4, $5)",
        uuid.UUID(bytes=new_event_id()), device.device_id, received - behind, received,
        json.dumps({"uptime_s": 600, "firmware": "1.0.0", "outbox_depth": 0}))

    skewed = session.enrolled[3]
    await _scan(publisher, hub_settings, device, hub_campus, skewed, seq=2, at=time.time() - behind.total_seconds())
    [flag] = await eventually(lambda: _flags(test_db, session.session_id))
    assert (flag["student_id"], flag["kind"]) == (skewed, "clock_skew")
    assert json.loads(flag["evidence"])["offset_s"] == behind.total_seconds()


async def test_the_roster_shows_a_new_flag_live_and_drops_it_once_reviewed(labs, hub, hub_campus, test_db, publisher,
                                                                          hub_settings):
    session = hub_campus.sessions[0]
    scanned = session.enrolled[0]
    _, username = await _faculty(test_db, session.course_id)
    base = f"http://127.0.0.1:{hub.web_port}"
    roster_ready = trio.Event()
    trio_token = trio.lowlevel.current_trio_token()

    async def script() -> tuple[str, bool]:
        async with chromium(phone=True) as phone:
            page = await phone.new_page()
            await page.goto(f"{base}/login")
            await page.fill("#username", username)
            await page.fill("#password", "campushub")
            await page.click("#login-submit")
            await page.wait_for_url(f"{base}/faculty**")
            await page.goto(f"{base}/faculty/sessions/{session.session_id}")
            await page.locator('#live-status[data-state="live"]').wait_for(timeout=10_000)
            assert await page.locator("#flags").is_hidden()
            trio.from_thread.run_sync(roster_ready.set, trio_token=trio_token)
            # The scan happens now (see below); no reload: the websocket brings the flag.
            item = page.locator(f'#flag-list li.flag[data-student-id="{scanned}"]')
            await item.wait_for(timeout=10_000)
            text = await item.inner_text()
            await item.locator('button[data-decision="accept"]').click()
            await item.wait_for(state="detached", timeout=5_000)
            # A fresh page (the snapshot) has nothing left to review.
            await page.reload()
            await page.locator('#live-status[data-state="live"]').wait_for(timeout=10_000)
            return text, await page.locator("#flags").is_hidden()

    async with trio.open_nursery() as nursery:
        result: list = []

        async def browse() -> None:
            result.append(await run_in_browser_thread(script))

        nursery.start_soon(browse)
        await roster_ready.wait()
        await _scan(publisher, hub_settings, labs.lab_a, hub_campus, scanned, seq=1, at=time.time())
    text, hidden = result[0]
    # The roster says it in words; the device and room ids stay in the flag's detail (API, audit).
    assert "wrong room" in text and "now present" in text and labs.lab_a.device_id not in text
    assert hidden
    assert labs.lab_a.device_id in await test_db.fetchval(
        "SELECT detail FROM checkin_flags WHERE session_id = $1", session.session_id)
    assert await test_db.fetchval("SELECT state FROM checkin_flags WHERE session_id = $1", session.session_id) == "accepted"
