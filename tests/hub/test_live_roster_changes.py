"""Live rosters follow enrolments and accounts (real hub, PostgreSQL and Mosquitto).

A student enrolled through the enrolment import while a session of the
course is running joins its actor's roster (their scan is judged valid) and
every open faculty roster (a ``roster`` websocket message) at once; a
deactivated student leaves both, and records already written stay.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import date, timedelta
from typing import Callable

import httpx
import pytest
import trio
from support.hub_helpers import eventually, session_with_device, signed_scan, student
from test_hub_pipeline import login
from websockets.sync.client import connect

from hub.domain.session_messages import ReloadRoster, RosterChange
from hub.pipeline.session_actor import RosterStatus
from schemas import Topics, issue_checkin_token


class LiveWatcher:
    """A websocket client in a thread: collects every message of one session's live roster."""

    def __init__(self, url: str, token: str) -> None:
        self.messages: list[dict] = []
        self.snapshot_received = threading.Event()
        self.stop = threading.Event()
        self._url, self._token = url, token

    def run(self) -> None:
        with connect(self._url, additional_headers={"Authorization": f"Bearer {self._token}"}) as ws:
            while not self.stop.is_set():
                try:
                    message = json.loads(ws.recv(timeout=0.1))
                except TimeoutError:
                    continue
                self.messages.append(message)
                if message.get("type") == "snapshot":
                    self.snapshot_received.set()

    def first(self, match: Callable[[dict], bool]) -> dict | None:
        return next((m for m in self.messages if match(m)), None)


@pytest.fixture
async def watched(hub, hub_campus, test_db):
    """A running session with its device, its faculty's live roster open, and a student not enrolled yet."""
    session, device = session_with_device(hub_campus)
    outsider = await test_db.fetchval(
        "SELECT s.id FROM students s WHERE NOT EXISTS (SELECT 1 FROM enrolments e"
        " WHERE e.student_id = s.id AND e.course_id = $1) ORDER BY s.id LIMIT 1", session.course_id)
    assert outsider is not None
    today = date.today()
    await test_db.execute("INSERT INTO terms (id, name, starts_on, ends_on) VALUES ('t-live', 'Live', $1, $2)",
                          today - timedelta(days=30), today + timedelta(days=30))
    await test_db.execute("INSERT INTO sections (id, course_id, term_id, name) VALUES ('sec-live', $1, 't-live', 'L')",
                          session.course_id)
    faculty = await test_db.fetchval(
        "SELECT u.username FROM courses c JOIN users u ON u.id = c.faculty_id WHERE c.id = $1", session.course_id)
    watcher = LiveWatcher(f"ws://127.0.0.1:{hub.web_port}/ws/sessions/{session.session_id}",
                          await login(hub.web_port, faculty))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, watcher.run)
        assert await trio.to_thread.run_sync(watcher.snapshot_received.wait, 10)
        yield session, device, outsider, watcher
        watcher.stop.set()


async def _admin(hub) -> dict[str, str]:
    return {"Authorization": f"Bearer {await login(hub.web_port, 'admin')}"}


async def _within_a_second(watcher: LiveWatcher, match: Callable[[dict], bool]) -> dict:
    deadline = trio.current_time() + 1.0
    while trio.current_time() < deadline:
        found = watcher.first(match)
        if found is not None:
            return found
        await trio.sleep(0.02)
    raise AssertionError(f"no such live message within a second: {watcher.messages}")


async def _post(hub, path: str, headers: dict[str, str], **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", headers=headers) as http:
        return await http.post(path, **kwargs)


async def _roster_ids(hub, session_id: str) -> list[str]:
    """The roster API's students (the same presenter as the websocket snapshot)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", headers=await _admin(hub)) as http:
        response = await http.get(f"/api/v1/sessions/{session_id}/roster")
        response.raise_for_status()
        return [s["student_id"] for s in response.json()["students"]]


async def test_a_student_enrolled_during_a_session_joins_its_live_roster_and_may_check_in(
        hub, hub_settings, hub_campus, test_db, publisher, watched):
    session, device, outsider, watcher = watched
    actor = hub.sessions.lookup(session.session_id)
    response = await _post(hub, "/api/v1/enrolments/import", await _admin(hub),
                           json={"csv": f"student_id,section_id\n{outsider},sec-live\n"})
    assert response.status_code == 200 and response.json()["created"] == 1, response.text

    update = await _within_a_second(watcher, lambda m: m["type"] == "roster")
    assert update["session_id"] == session.session_id and update["removed"] == []
    [added] = update["added"]
    assert added["student_id"] == outsider and added["status"] == "not-yet"
    assert added["roll_number"] == await test_db.fetchval("SELECT roll_number FROM students WHERE id = $1", outsider)

    # The actor judges their scan valid (not "not_enrolled").
    creds = student(hub_campus, outsider)
    await publisher.publish(Topics(hub_settings.topic_prefix).uplink(device.device_id), signed_scan(
        device, issue_checkin_token(outsider, creds.token_secret, time.time()), seq=1), wait_for_ack=True)

    async def checked_in():
        return (await actor.ask(RosterStatus())).get(outsider)

    assert await eventually(checked_in) in ("present", "late")
    attendance = await _within_a_second(
        watcher, lambda m: m["type"] == "attendance" and m["student_id"] == outsider)
    assert attendance["source"] == "qr"

    # Importing the same file again changes no roster.
    count = len(watcher.messages)
    again = await _post(hub, "/api/v1/enrolments/import", await _admin(hub),
                        json={"csv": f"student_id,section_id\n{outsider},sec-live\n"})
    assert again.json()["created"] == 0
    await trio.sleep(0.3)
    assert [m for m in watcher.messages[count:] if m["type"] == "roster"] == []


async def test_a_dry_run_enrolment_changes_no_live_roster(hub, test_db, watched):
    session, _, outsider, watcher = watched
    response = await _post(hub, "/api/v1/enrolments/import?dry_run=1", await _admin(hub),
                           json={"csv": f"student_id,section_id\n{outsider},sec-live\n"})
    assert response.status_code == 200 and response.json()["dry_run"] is True
    await trio.sleep(0.5)
    assert watcher.first(lambda m: m["type"] == "roster") is None
    assert outsider not in (await hub.sessions.lookup(session.session_id).ask(RosterStatus()))


async def test_a_deactivated_student_leaves_live_rosters_and_a_reactivated_one_returns(
        hub, hub_settings, hub_campus, test_db, publisher, watched):
    session, device, _, watcher = watched
    leaver = session.enrolled[-1]
    admin = await _admin(hub)
    response = await _post(hub, f"/api/v1/users/{leaver}/deactivate", admin, json={})
    assert response.status_code == 200, response.text
    update = await _within_a_second(watcher, lambda m: m["type"] == "roster")
    assert update == {"type": "roster", "session_id": session.session_id, "added": [], "removed": [leaver]}

    # Their scan is no longer judged valid, and nobody's record was touched.
    creds = student(hub_campus, leaver)
    await publisher.publish(Topics(hub_settings.topic_prefix).uplink(device.device_id), signed_scan(
        device, issue_checkin_token(leaver, creds.token_secret, time.time()), seq=1), wait_for_ack=True)

    async def rejected():
        return await test_db.fetchval("SELECT reason FROM rejected_events WHERE device_id = $1", device.device_id)

    assert await eventually(rejected) == "not_enrolled"
    assert await test_db.fetchval("SELECT count(*) FROM attendance WHERE student_id = $1", leaver) == 0
    assert leaver not in await _roster_ids(hub, session.session_id)

    count = len(watcher.messages)
    response = await _post(hub, f"/api/v1/users/{leaver}/reactivate", admin, json={})
    assert response.status_code == 200, response.text
    back = await _within_a_second(watcher, lambda m: m in watcher.messages[count:] and m["type"] == "roster")
    assert [s["student_id"] for s in back["added"]] == [leaver] and back["removed"] == []
    assert leaver in await _roster_ids(hub, session.session_id)


async def test_a_deactivated_student_with_a_record_keeps_it_on_the_roster(
        hub, hub_settings, hub_campus, test_db, publisher, watched):
    session, device, _, watcher = watched
    present = session.enrolled[0]
    creds = student(hub_campus, present)
    await publisher.publish(Topics(hub_settings.topic_prefix).uplink(device.device_id), signed_scan(
        device, issue_checkin_token(present, creds.token_secret, time.time()), seq=1), wait_for_ack=True)
    await _within_a_second(watcher, lambda m: m["type"] == "attendance" and m["student_id"] == present)

    response = await _post(hub, f"/api/v1/users/{present}/deactivate", await _admin(hub), json={})
    assert response.status_code == 200, response.text
    await trio.sleep(0.5)
    # Off the actor's roster (no longer judged), but their record and its row stay.
    assert watcher.first(lambda m: m["type"] == "roster") is None
    assert await test_db.fetchval("SELECT status FROM attendance WHERE session_id = $1 AND student_id = $2",
                                  session.session_id, present) in ("present", "late")
    actor = hub.sessions.lookup(session.session_id)
    assert present in await actor.ask(RosterStatus())
    assert present in await _roster_ids(hub, session.session_id)


async def test_an_unenrolled_student_leaves_the_actors_roster_and_keeps_their_record(
        hub, hub_settings, hub_campus, test_db, publisher):
    # No API unenrols yet (the enrolment import only adds or moves): the actor's side of it.
    session, device = session_with_device(hub_campus)
    kept, leaver = session.enrolled[0], session.enrolled[1]
    uplink = Topics(hub_settings.topic_prefix).uplink(device.device_id)
    await publisher.publish(uplink, signed_scan(device, issue_checkin_token(
        kept, student(hub_campus, kept).token_secret, time.time()), seq=1), wait_for_ack=True)
    actor = hub.sessions.lookup(session.session_id)

    async def recorded():
        return (await actor.ask(RosterStatus())).get(kept)

    assert await eventually(recorded) in ("present", "late")
    await test_db.execute("DELETE FROM enrolments WHERE course_id = $1 AND student_id = ANY($2::text[])",
                          session.course_id, [kept, leaver])
    change = await actor.ask(ReloadRoster())
    assert change == RosterChange(added=(), removed=tuple(sorted((kept, leaver))))
    assert await actor.ask(ReloadRoster()) == RosterChange()  # nothing more to change
    # The record stays, in the actor and in PostgreSQL; the leaver's scan is not_enrolled.
    assert (await actor.ask(RosterStatus()))[kept] in ("present", "late")
    # The actor judged the scan in memory; its commit is the writer's, a batch later: wait for it.
    assert await eventually(lambda: test_db.fetchval(
        "SELECT count(*) FROM attendance WHERE student_id = $1", kept)) == 1
    await publisher.publish(uplink, signed_scan(device, issue_checkin_token(
        leaver, student(hub_campus, leaver).token_secret, time.time()), seq=2), wait_for_ack=True)

    async def rejected():
        return await test_db.fetchval("SELECT reason FROM rejected_events WHERE device_id = $1", device.device_id)

    assert await eventually(rejected) == "not_enrolled"
