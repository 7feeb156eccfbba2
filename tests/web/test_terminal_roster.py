"""Terminal rosters follow people and enrolments through the API (real PostgreSQL).

A fingerprint terminal in the world's room should hold the PIN of every active
student of the courses meeting there. The commands stay ``pending`` here (no
dispatcher); their sealed arguments are opened with the terminal's own key,
as the edge agent does, to check what the terminal would be told.
"""
from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
from web_helpers import bearer

from hub.db.device_commands import get_command
from hub.domain.biometric_consent import CURRENT_NOTICE_VERSION
from schemas import decode_sealed, open_args


@pytest.fixture
async def terminal(db, world):
    """A fingerprint terminal in the world's room, a term and a section of each course (enrolments in them)."""
    key = os.urandom(32)
    device_id = f"fp_{world.suffix}"
    term = f"term_{world.suffix}"
    await db.execute("INSERT INTO devices (id, room_id, kind, alg, key) VALUES ($1, $2, 'fingerprint', 'hmac-sha256', $3)",
                     device_id, world.room, key)
    await db.execute("INSERT INTO terms (id, name, starts_on, ends_on) VALUES ($1, 'T', $2, $3)",
                     term, world.now.date() - timedelta(days=30), world.now.date() + timedelta(days=30))
    for course in ("c1", "c2"):
        await db.execute("INSERT INTO sections (id, course_id, term_id, name) VALUES ($1, $2, $3, 'A')",
                         f"{course}_{world.suffix}_A", world.courses[course], term)
        await db.execute("UPDATE enrolments SET section_id = $1 WHERE course_id = $2",
                         f"{course}_{world.suffix}_A", world.courses[course])
    return device_id, key


async def _pins(db, *keys_or_ids: str) -> dict[str, str]:
    rows = await db.fetch("SELECT id, terminal_pin FROM students WHERE id = ANY($1::text[])", list(keys_or_ids))
    return {r["id"]: r["terminal_pin"] for r in rows}


async def _commands_since(db, device_id: str, mark: int, key: bytes) -> list[dict]:
    """The opened arguments of the device's roster commands created after ``mark`` (a seq), in order."""
    rows = await db.fetch("SELECT id FROM device_commands WHERE device_id = $1 AND seq > $2 AND name = 'roster_sync'"
                          " ORDER BY seq", device_id, mark)
    opened = []
    for r in rows:
        command = await get_command(db, r["id"])
        assert command is not None
        if command.sealed is None:  # arguments in clear (before the sealing of personal data)
            opened.append(command.args)
            continue
        assert command.args == {}  # nothing personal in clear in the database
        opened.append(open_args(decode_sealed(command.sealed), device_id=device_id, command_id=r["id"].bytes,
                                name="roster_sync", alg="hmac-sha256", device_key=key))
    return opened


async def _mark(db) -> int:
    return await db.fetchval("SELECT coalesce(max(seq), 0) FROM device_commands")


def _entries(text: object) -> set[str]:
    return {e for e in str(text or "").split(";") if e}


async def _roster(client, headers, device_id: str) -> dict[str, str | None]:
    response = await client.get(f"/api/v1/devices/{device_id}/roster", headers=headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return {e["student_id"]: e["pin"] for e in (await response.get_json())["entries"]}


async def test_resync_deactivation_unenrolment_and_enrolment_reach_the_terminal(client, world, db, terminal):
    device_id, key = terminal
    admin = await bearer(client, world.username("admin"))
    stu1, stu2, stu3 = (world.username(k) for k in ("stu1", "stu2", "stu3"))
    pins = await _pins(db, stu1, stu2, stu3)

    # Recovery resync: the registry is filled and the terminal gets its whole roster, replacing its map.
    mark = await _mark(db)
    resync = await client.post(f"/api/v1/devices/{device_id}/roster-sync", json={}, headers=admin)
    assert resync.status_code == 202, await resync.get_data(as_text=True)
    [args] = await _commands_since(db, device_id, mark, key)
    assert args["replace"] is True and _entries(args["pins"]) == {f"{pins[s]}={s}" for s in (stu1, stu2, stu3)}
    assert await _roster(client, admin, device_id) == pins

    # Deactivation removes the PIN; reactivation brings it back.
    mark = await _mark(db)
    assert (await client.post(f"/api/v1/users/{stu2}/deactivate", json={}, headers=admin)).status_code == 200
    assert await _commands_since(db, device_id, mark, key) == [{"remove_pins": pins[stu2]}]
    assert stu2 not in await _roster(client, admin, device_id)
    mark = await _mark(db)
    assert (await client.post(f"/api/v1/users/{stu2}/reactivate", json={}, headers=admin)).status_code == 200
    assert await _commands_since(db, device_id, mark, key) == [{"pins": f"{pins[stu2]}={stu2}"}]

    # Unenrolment: stu3 has no other course here and leaves the terminal; stu1 still has c1 in this room.
    mark = await _mark(db)
    gone = await client.delete(f"/api/v1/sections/c2_{world.suffix}_A/enrolments/{stu3}", headers=admin)
    assert gone.status_code == 200, await gone.get_data(as_text=True)
    assert (await gone.get_json()) == {"section_id": f"c2_{world.suffix}_A", "course_id": world.courses["c2"],
                                       "student_id": stu3, "terminal_commands": 1}
    assert await _commands_since(db, device_id, mark, key) == [{"remove_pins": pins[stu3]}]
    kept = await client.delete(f"/api/v1/sections/c2_{world.suffix}_A/enrolments/{stu1}", headers=admin)
    assert (await kept.get_json())["terminal_commands"] == 0
    assert await _roster(client, admin, device_id) == {stu1: pins[stu1], stu2: pins[stu2]}
    audit = await db.fetchrow("SELECT actor, before FROM audit_log WHERE entity = 'enrolment' AND action = 'removed'"
                              " AND entity_id = $1", f"c2_{world.suffix}_A:{stu3}")
    assert audit is not None and audit["actor"] == world.username("admin")
    again = await client.delete(f"/api/v1/sections/c2_{world.suffix}_A/enrolments/{stu3}", headers=admin)
    assert again.status_code == 404
    assert (await client.delete(f"/api/v1/sections/nope_{world.suffix}/enrolments/{stu3}",
                                headers=admin)).status_code == 404

    # Enrolling again (the CSV import) puts the PIN back.
    mark = await _mark(db)
    imported = await client.post("/api/v1/enrolments/import", headers=admin,
                                 json={"csv": f"student_id,section_id\n{stu3},c2_{world.suffix}_A\n"})
    assert imported.status_code == 200, await imported.get_data(as_text=True)
    assert await _commands_since(db, device_id, mark, key) == [{"pins": f"{pins[stu3]}={stu3}"}]


async def test_a_csv_import_of_200_students_is_two_commands_per_terminal(client, world, db, terminal):
    device_id, key = terminal
    admin = await bearer(client, world.username("admin"))
    sfx = uuid.uuid4().hex[:6]
    people = "role,name,roll_number\n" + "".join(f"student,Student {i},B{sfx}{i:03d}\n" for i in range(200))
    made = await client.post("/api/v1/users/import", data=people.encode(),
                             headers={**admin, "Content-Type": "text/csv"})
    assert made.status_code == 200 and len((await made.get_json())["created"]) == 200
    mark = await _mark(db)
    enrol = "roll_number,section_id\n" + "".join(f"B{sfx}{i:03d},c1_{world.suffix}_A\n" for i in range(200))
    imported = await client.post("/api/v1/enrolments/import", headers=admin, json={"csv": enrol})
    assert imported.status_code == 200 and (await imported.get_json())["created"] == 200
    commands = await _commands_since(db, device_id, mark, key)
    assert len(commands) == 2
    received = set().union(*(_entries(c["pins"]) for c in commands))
    expected = await db.fetch("SELECT id, terminal_pin FROM students WHERE roll_number LIKE $1", f"B{sfx}%")
    assert received == {f"{r['terminal_pin']}={r['id']}" for r in expected} and len(received) == 200


async def test_resync_refusals(client, world, db, terminal):
    admin = await bearer(client, world.username("admin"))
    qr = await client.post(f"/api/v1/devices/{world.device}/roster-sync", json={}, headers=admin)
    assert qr.status_code == 400 and (await qr.get_json())["error"]["field"] == "device_id"
    unknown = await client.post(f"/api/v1/devices/none_{world.suffix}/roster-sync", json={}, headers=admin)
    assert unknown.status_code == 404
    faculty = await bearer(client, world.username("fac1"))
    refused = await client.post(f"/api/v1/devices/{terminal[0]}/roster-sync", json={}, headers=faculty)
    assert refused.status_code == 403
    await db.execute("UPDATE devices SET revoked_at = now() WHERE id = $1", terminal[0])
    revoked = await client.post(f"/api/v1/devices/{terminal[0]}/roster-sync", json={}, headers=admin)
    assert revoked.status_code == 409


async def test_people_csv_pins_are_kept_checked_and_otherwise_assigned(client, world, db):
    admin = await bearer(client, world.username("admin"))
    sfx = uuid.uuid4().hex[:6]
    pin = str(int(sfx, 16) % 10**8 + 7 * 10**8)
    text = f"role,name,roll_number,pin\nstudent,Given {sfx},P{sfx}1,{pin}\nstudent,Assigned {sfx},P{sfx}2,\n"
    made = await client.post("/api/v1/users/import", data=text.encode(), headers={**admin, "Content-Type": "text/csv"})
    assert made.status_code == 200, await made.get_data(as_text=True)
    got = {r["roll_number"]: r["terminal_pin"] for r in await db.fetch(
        "SELECT roll_number, terminal_pin FROM students WHERE roll_number LIKE $1", f"P{sfx}%")}
    assert got[f"P{sfx}1"] == pin and got[f"P{sfx}2"].isdigit() and got[f"P{sfx}2"] != pin
    # Re-importing the same file changes nothing; another student cannot take the PIN; staff have none.
    again = await client.post("/api/v1/users/import", data=text.encode(), headers={**admin, "Content-Type": "text/csv"})
    assert (await again.get_json())["unchanged"] == 2
    bad = (f"role,name,username,roll_number,pin\nstudent,Taker {sfx},,Q{sfx}1,{pin}\n"
           f"student,Bad {sfx},,Q{sfx}2,12 34\nfaculty,Staff {sfx},staff{sfx},,555\n")
    refused = await client.post("/api/v1/users/import", data=bad.encode(), headers={**admin, "Content-Type": "text/csv"})
    assert refused.status_code == 422
    errors = {(e["line"], e["field"]) for e in (await refused.get_json())["errors"]}
    assert errors == {(2, "pin"), (3, "pin"), (4, "pin")}


async def test_fingerprint_pages_assigned_by_ops_reach_the_terminal_and_leave_with_deactivation(
        client, world, db, terminal):
    device_id, key = terminal
    ops = await bearer(client, world.username("ops"))
    admin = await bearer(client, world.username("admin"))
    stu1, stu2 = world.username("stu1"), world.username("stu2")
    base = f"/api/v1/devices/{device_id}/roster/pages"
    # A page needs biometric consent (hub/domain/biometric_consent.py): refused without, then recorded on paper.
    refused = await client.put(f"{base}/7", json={"student_id": stu1}, headers=ops)
    assert refused.status_code == 409 and (await refused.get_json())["error"]["field"] == "student_id"
    for student in (stu1, stu2):
        given = await client.post(f"/api/v1/students/{student}/biometric-consent",
                                  json={"notice_version": CURRENT_NOTICE_VERSION}, headers=admin)
        assert given.status_code == 201, await given.get_data(as_text=True)

    mark = await _mark(db)
    assigned = await client.put(f"{base}/7", json={"student_id": stu1}, headers=ops)
    assert assigned.status_code == 202, await assigned.get_data(as_text=True)
    assert await _commands_since(db, device_id, mark, key) == [{"pages": f"7={stu1}"}]
    # The page goes to someone else: one row per page; stu1 keeps no page here.
    mark = await _mark(db)
    assert (await client.put(f"{base}/7", json={"student_id": stu2}, headers=ops)).status_code == 202
    assert await _commands_since(db, device_id, mark, key) == [{"pages": f"7={stu2}"}]
    pages = {r["student_id"]: r["page"] for r in await db.fetch(
        "SELECT student_id, page FROM terminal_roster WHERE device_id = $1", device_id)}
    assert pages == {stu2: 7}

    # Deactivation removes the page.
    mark = await _mark(db)
    assert (await client.post(f"/api/v1/users/{stu2}/deactivate", json={}, headers=admin)).status_code == 200
    [removal] = await _commands_since(db, device_id, mark, key)
    assert removal["remove_pages"] == "7"
    assert await db.fetchval("SELECT count(*) FROM terminal_roster WHERE device_id = $1", device_id) == 0

    # Refusals: a deactivated student, a page out of range, clearing a page no one holds.
    refused = await client.put(f"{base}/8", json={"student_id": stu2}, headers=ops)
    assert refused.status_code == 409
    assert (await client.put(f"{base}/70000", json={"student_id": stu1}, headers=ops)).status_code == 400
    assert (await client.delete(f"{base}/9", headers=ops)).status_code == 404
    assert (await client.put(f"{base}/9", json={"student_id": stu1}, headers=ops)).status_code == 202
    mark = await _mark(db)
    assert (await client.delete(f"{base}/9", headers=ops)).status_code == 202
    assert await _commands_since(db, device_id, mark, key) == [{"remove_pages": "9"}]
