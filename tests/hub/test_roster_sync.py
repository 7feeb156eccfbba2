"""Terminal rosters follow enrolments and accounts end to end (real hub, PostgreSQL and Mosquitto).

A terminal (an edge agent registered in the room of a running session) listens
on its downlink as a plain paho client and opens each ``roster_sync`` command's
sealed arguments with its own key, as the edge agent does. A resync gives it
the room's whole roster; an enrolment adds a PIN; a deactivation and an
unenrolment remove one, and the unenrolled student leaves the running
session's live roster at the same time.
"""
from __future__ import annotations

import uuid
from typing import Any

import httpx
import trio
from test_commands import PahoDevice, _device, _register
from test_live_roster_changes import _admin, _post, _within_a_second, watched  # noqa: F401 - a fixture

from hub.pipeline.commands import Dispatch
from hub.services.terminal_rosters import TerminalRosterKeeper
from schemas import open_args


def _opened(device: PahoDevice, timeout: float = 10.0) -> dict[str, Any]:
    """The next roster_sync the terminal receives, its sealed arguments opened (blocking: run in a thread)."""
    while True:
        _, _, command = device.next_command(timeout)
        if command.name != "roster_sync":
            continue
        if command.sealed is None:
            return dict(command.args)
        return {**command.args, **open_args(command.sealed, device_id=device.device_id, command_id=command.id,
                                            name="roster_sync", alg=device.alg, device_key=device.signing_key)}


def _entries(text: object) -> set[str]:
    return {e for e in str(text or "").split(";") if e}


async def test_enrolment_deactivation_and_unenrolment_reach_a_listening_terminal(
        hub, hub_settings, hub_campus, test_db, watched):  # noqa: F811 - the imported fixture
    session, _, outsider, watcher = watched
    admin = await _admin(hub)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", headers=admin) as http:
        registered = await _register(http, session.room_id, "hmac-sha256")
    device = await _device(hub_settings, registered)
    device_id = registered["device"]["device_id"]
    pins = {r["id"]: r["terminal_pin"] for r in await test_db.fetch("SELECT id, terminal_pin FROM students")}
    try:
        # Recovery resync: the room's whole roster, replacing the terminal's map.
        response = await _post(hub, f"/api/v1/devices/{device_id}/roster-sync", admin, json={})
        assert response.status_code == 202, response.text
        full = await trio.to_thread.run_sync(_opened, device)
        assert full["replace"] is True
        assert {f"{pins[s]}={s}" for s in session.enrolled} <= _entries(full["pins"])
        assert f"{pins[outsider]}={outsider}" not in _entries(full["pins"])

        # Enrolment adds the student's PIN.
        response = await _post(hub, "/api/v1/enrolments/import", admin,
                               json={"csv": f"student_id,section_id\n{outsider},sec-live\n"})
        assert response.status_code == 200 and response.json()["created"] == 1, response.text
        assert await trio.to_thread.run_sync(_opened, device) == {"pins": f"{pins[outsider]}={outsider}"}

        # Deactivation removes a PIN.
        leaver = session.enrolled[-1]
        response = await _post(hub, f"/api/v1/users/{leaver}/deactivate", admin, json={})
        assert response.status_code == 200, response.text
        assert await trio.to_thread.run_sync(_opened, device) == {"remove_pins": pins[leaver]}

        # Unenrolment: off the running session's live roster and off the terminal, at once.
        count = len(watcher.messages)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", headers=admin) as http:
            gone = await http.delete(f"/api/v1/sections/sec-live/enrolments/{outsider}")
        assert gone.status_code == 200 and gone.json()["terminal_commands"] >= 1, gone.text  # every terminal there
        update = await _within_a_second(
            watcher, lambda m: m in watcher.messages[count:] and m["type"] == "roster" and m["removed"])
        assert update["removed"] == [outsider] and update["session_id"] == session.session_id
        assert await trio.to_thread.run_sync(_opened, device) == {"remove_pins": pins[outsider]}
    finally:
        await trio.to_thread.run_sync(device.close)


async def test_the_keeper_fills_a_new_terminal_and_then_stays_quiet(hub, hub_settings, hub_campus, test_db):
    """No request announces a terminal registered in a room: the keeper's next pass gives it the room's roster."""
    session = hub_campus.sessions[0]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", headers=await _admin(hub)) as http:
        registered = await _register(http, session.room_id, "hmac-sha256")
    device = await _device(hub_settings, registered)
    device_id = registered["device"]["device_id"]
    dispatched: list[uuid.UUID] = []

    async def send_command(command_id: uuid.UUID) -> None:
        dispatched.append(command_id)
        await hub.root.lookup("commands").tell(Dispatch(command_id))

    keeper = TerminalRosterKeeper(test_db, send_command, device_offline_after_s=hub_settings.device_offline_after_s)
    try:
        first = await keeper.reconcile_all()
        mine = [c for c in first.commands if c.device_id == device_id]
        assert len(mine) == 1 and mine[0].command_id in dispatched
        opened = await trio.to_thread.run_sync(_opened, device)
        pins = {r["id"]: r["terminal_pin"] for r in await test_db.fetch("SELECT id, terminal_pin FROM students")}
        assert {f"{pins[s]}={s}" for s in session.enrolled} <= _entries(opened["pins"])
        again = await keeper.reconcile_all()
        assert again.plan.empty and again.commands == ()
    finally:
        await trio.to_thread.run_sync(device.close)
