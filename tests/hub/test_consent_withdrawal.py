"""Consent withdrawal end to end: real hub, PostgreSQL, Mosquitto, two edge agents with R30x modules (emulated).

A student consents; ops enrol their finger (template included) on both
terminals; both confirm. The student withdraws: every terminal gets the
template deleted and the page removed, each acknowledges, the hub records
the acks, and the device page and the student's page show every terminal as
``removed``. Nothing of the template is left in the hub's command rows.
"""
from __future__ import annotations

import base64
import secrets
from typing import Any

import httpx
import trio
from support.hub_helpers import AgentThread, eventually
from test_commands import _admin, _agent_config, _register

from devices.fingerprint.emulator import R30xEmulator
from hub.db.seed import DEMO_PASSWORD
from hub.domain.biometric_consent import CURRENT_NOTICE_VERSION


async def _login(base_url: str, username: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        login = await http.post("/api/v1/auth/login", json={"username": username, "password": DEMO_PASSWORD})
        assert login.status_code == 200, login.text
        return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _states(http: httpx.AsyncClient, student_id: str, headers: dict[str, str]) -> dict[str, str]:
    view = (await http.get(f"/api/v1/students/{student_id}/biometric-consent", headers=headers)).json()
    return {e["device_id"]: e["state"] for e in view["enrolments"]}


async def test_withdrawal_deletes_the_template_on_every_terminal_and_records_each_ack(
        hub, hub_settings, hub_campus, test_db, tmp_path):
    base_url = f"http://127.0.0.1:{hub.web_port}"
    student = hub_campus.students[0]
    template = secrets.token_bytes(384)
    template_b64 = base64.b64encode(template).decode()
    emulators = [R30xEmulator(tmp_path / f"fp{n}").start() for n in range(2)]
    agents: list[AgentThread] = []
    try:
        async with _admin(base_url) as admin:
            terminals: list[str] = []
            for n, emulator in enumerate(emulators):
                registered = await _register(admin, hub_campus.sessions[0].room_id, "hmac-sha256")
                terminals.append(registered["device"]["device_id"])
                workdir = tmp_path / f"agent{n}"
                workdir.mkdir()
                agents.append(await trio.to_thread.run_sync(
                    AgentThread(_agent_config(hub_settings, registered, workdir, emulator.path)).start))
            for device_id in terminals:  # commands go out once the agent has subscribed
                await eventually(lambda d=device_id: test_db.fetchval(
                    "SELECT online FROM device_health WHERE device_id = $1", d))

            me = await _login(base_url, student.username)
            consent = f"/api/v1/students/{student.student_id}/biometric-consent"
            given = await admin.post(consent, json={"notice_version": CURRENT_NOTICE_VERSION}, headers=me)
            assert given.status_code == 201, given.text

            for device_id, page in zip(terminals, (12, 7)):
                enrolled = await admin.post(f"/api/v1/devices/{device_id}/enrolments/{student.student_id}",
                                            json={"page": page, "template": template_b64})
                assert enrolled.status_code == 202, enrolled.text
            await eventually(lambda: _all(admin, student.student_id, me, "confirmed", terminals), timeout=30)
            assert [e.templates for e in emulators] == [{12: template}, {7: template}]
            agent_maps = [a.agent.enrolment.pages if a.agent else None for a in agents]
            assert agent_maps == [{12: student.student_id}, {7: student.student_id}]

            # The student withdraws: both terminals are told, both answer, the hub records each ack.
            withdrawn = await admin.post(f"{consent}/withdraw", json={"reason": ""}, headers=me)
            assert withdrawn.status_code == 202, withdrawn.text
            commands = withdrawn.json()["commands"]
            assert sorted((c["device_id"], c["name"]) for c in commands) == sorted(
                (d, n) for d in terminals for n in ("template_sync", "roster_sync"))
            await eventually(lambda: _all(admin, student.student_id, me, "removed", terminals), timeout=30)

            # On the terminals: the module's page is empty, the agent's map and sealed template record are gone.
            assert [e.templates for e in emulators] == [{}, {}]
            for agent, page in zip(agents, (12, 7)):
                assert agent.agent is not None
                assert agent.agent.enrolment.student_for_page(page) is None
                assert agent.agent.enrolment.template(page) is None
            # In the hub: every removal command acked, with the device's detail kept.
            rows = await test_db.fetch("SELECT device_id, name, status, detail, acked_at FROM device_commands"
                                       " WHERE id = ANY($1::uuid[])", [c["command_id"] for c in commands])
            assert {(r["device_id"], r["name"], r["status"]) for r in rows} == {
                (d, n, "acked") for d in terminals for n in ("template_sync", "roster_sync")}
            assert all(r["acked_at"] is not None for r in rows)
            assert {(r["device_id"], r["detail"]) for r in rows if r["name"] == "template_sync"} == {
                (d, f"page {p} sealed; door-fp: deleted") for d, p in zip(terminals, (12, 7))}

            # The device page shows it per terminal, and so does the student's page.
            for device_id in terminals:
                page = (await admin.get(f"/ops/devices/{device_id}")).text
                assert f'data-student-id="{student.student_id}" data-state="removed"' in page
                for other in terminals:
                    assert f'data-device-id="{other}" data-state="removed"' in page
            mine = (await admin.get("/student/privacy", headers=me)).text
            for device_id in terminals:
                assert f'data-device-id="{device_id}" data-state="removed"' in mine

            # Audited, and no template byte left in any command row (args, sealed blob, detail).
            assert await test_db.fetchval(
                "SELECT count(*) FROM audit_log WHERE entity = 'biometric_consent' AND action = 'withdrawn'"
                " AND entity_id = $1", student.student_id) == 1
            dump = "".join(r["row"] for r in await test_db.fetch(
                "SELECT c::text AS row FROM device_commands c WHERE device_id = ANY($1::text[])", terminals))
            assert template_b64[:24] not in dump and template.hex()[:48] not in dump
            assert await test_db.fetchval("SELECT count(*) FROM device_commands WHERE device_id = ANY($1::text[])"
                                          " AND sealed IS NOT NULL", terminals) == 0
    finally:
        for agent in agents:
            await trio.to_thread.run_sync(agent.stop)
        for emulator in emulators:
            emulator.close()


async def _all(http: httpx.AsyncClient, student_id: str, headers: dict[str, str], state: str,
               terminals: list[str]) -> Any:
    states = await _states(http, student_id, headers)
    return states if states == {d: state for d in terminals} else None
