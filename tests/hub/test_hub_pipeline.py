"""The walking skeleton end to end: edge agent → MQTT → actors → PostgreSQL → websocket."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import trio
from support.hub_fixtures import edge_broker
from support.hub_helpers import AgentThread, agent_config, eventually, session_with_device, student
from websockets.sync.client import connect

from hub.pipeline.session_actor import RosterStatus
from schemas import issue_checkin_token


async def login(port: int, username: str, password: str = "campushub") -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        response = await http.post("/api/v1/auth/login", json={"username": username, "password": password})
        response.raise_for_status()
        return response.json()["access_token"]


class RosterWatcher:
    """A websocket client in a thread, collecting what the hub pushes for one session."""

    def __init__(self, url: str, token: str) -> None:
        self.messages: list[dict] = []
        self.snapshot_received = threading.Event()
        self._stop = threading.Event()
        self._url, self._token = url, token

    def run(self, until_student: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        with connect(self._url, additional_headers={"Authorization": f"Bearer {self._token}"}) as ws:
            while time.monotonic() < deadline:
                try:
                    message = json.loads(ws.recv(timeout=0.2))
                except TimeoutError:
                    continue
                self.messages.append(message)
                if message.get("type") == "snapshot":
                    self.snapshot_received.set()
                if message.get("type") == "attendance" and message.get("student_id") == until_student:
                    return message
        return None


async def test_edge_agent_checkin_is_committed_and_pushed_to_websocket(
    hub, hub_settings, hub_campus, test_db, tmp_path: Path,
):
    session, device = session_with_device(hub_campus)
    enrolled = student(hub_campus, session.enrolled[0])
    faculty = await test_db.fetchval(
        "SELECT u.username FROM courses c JOIN users u ON u.id = c.faculty_id WHERE c.id = $1", session.course_id)
    token = await login(hub.web_port, faculty)
    watcher = RosterWatcher(f"ws://127.0.0.1:{hub.web_port}/ws/sessions/{session.session_id}", token)
    agent = AgentThread(agent_config(
        device, **edge_broker(hub_settings), topic_prefix=hub_settings.topic_prefix,
        outbox=tmp_path / "outbox.sqlite")).start()
    try:
        async with trio.open_nursery() as nursery:
            pushed: list = []

            async def watch() -> None:
                pushed.append(await trio.to_thread.run_sync(watcher.run, enrolled.student_id, 15))

            nursery.start_soon(watch)
            assert await trio.to_thread.run_sync(watcher.snapshot_received.wait, 10)
            published_at = time.time()
            await trio.to_thread.run_sync(
                agent.submit_qr, issue_checkin_token(enrolled.student_id, enrolled.token_secret, published_at))
        update = pushed[0]
        assert update is not None, watcher.messages
        assert update["status"] == "present" and update["session_id"] == session.session_id

        row = await test_db.fetchrow(
            "SELECT status, source, event_id FROM attendance WHERE session_id = $1 AND student_id = $2",
            session.session_id, enrolled.student_id)
        assert row["status"] == "present" and row["source"] == "qr"
        event = await test_db.fetchrow("SELECT device_id, kind, session_id FROM events WHERE event_id = $1",
                                       row["event_id"])
        assert dict(event) == {"device_id": device.device_id, "kind": "qr_scan", "session_id": session.session_id}
        audit = await test_db.fetchrow(
            "SELECT actor, before, after FROM audit_log WHERE entity = 'attendance' AND entity_id = $1",
            f"{session.session_id}/{enrolled.student_id}")
        assert audit["actor"] == f"device:{device.device_id}" and audit["before"] is None
        assert json.loads(audit["after"])["status"] == "present"
        assert 'campushub_events_ingested_total{kind="qr_scan"} 1.0' in hub.metrics.render()
        # The agent's outbox empties once the broker has the event.
        assert await eventually(lambda: _zero(agent.agent.outbox_depth))
    finally:
        await trio.to_thread.run_sync(agent.stop)


async def _zero(value: int) -> bool:
    return value == 0


async def test_crashed_session_actor_restarts_and_rebuilds_from_postgres(hub, hub_settings, hub_campus, test_db, publisher):
    from support.hub_helpers import signed_scan

    from schemas import Topics

    session, device = session_with_device(hub_campus)
    first, second = (student(hub_campus, s) for s in session.enrolled[:2])
    uplink = Topics(hub_settings.topic_prefix).uplink(device.device_id)
    await publisher.publish(uplink, signed_scan(
        device, issue_checkin_token(first.student_id, first.token_secret, time.time()), seq=1), wait_for_ack=True)
    await eventually(lambda: test_db.fetchval(
        "SELECT count(*) FROM attendance WHERE student_id = $1", first.student_id))

    ref = hub.sessions.lookup(session.session_id)
    restarts_before = hub.sessions.restarts
    await ref.tell("not a message any session actor understands")  # crashes it
    await eventually(lambda: _true(hub.sessions.restarts > restarts_before and ref.alive))
    # The new instance rebuilt its roster state from PostgreSQL ...
    assert await ref.ask(RosterStatus()) == {first.student_id: "present"}
    # ... so a second check-in by the same student is still a duplicate, and others still work.
    await publisher.publish(uplink, signed_scan(
        device, issue_checkin_token(first.student_id, first.token_secret, time.time() + 15), seq=2,
        at=time.time() + 15), wait_for_ack=True)
    await publisher.publish(uplink, signed_scan(
        device, issue_checkin_token(second.student_id, second.token_secret, time.time()), seq=3), wait_for_ack=True)
    await eventually(lambda: test_db.fetchval(
        "SELECT count(*) FROM attendance WHERE student_id = $1", second.student_id))
    assert await eventually(lambda: test_db.fetchval(
        "SELECT count(*) FROM rejected_events WHERE reason = 'duplicate_checkin'"))
    assert 'campushub_actor_restarts_total 1.0' in hub.metrics.render()


async def _true(value: bool) -> bool:
    return value
