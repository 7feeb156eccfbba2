"""Biometric consent and fingerprint enrolment through the API (real PostgreSQL; no dispatcher).

Commands stay ``pending`` here; the test moves them as the dispatcher and the
device's acks would (``hub.db.device_commands.transition``) and opens their
sealed arguments with each terminal's own key, as the edge agent does.
"""
from __future__ import annotations

import base64
import os
import uuid
from datetime import timedelta

import pytest
from web_helpers import bearer, page_login

from hub.db.device_commands import get_command, transition
from hub.db.terminal_roster import queue_plan, reconcile
from hub.domain.biometric_consent import CURRENT_NOTICE_VERSION
from schemas import decode_sealed, open_args


@pytest.fixture
async def terminals(db, world):
    """Two fingerprint terminals in the world's room: {device id: its key}."""
    keys = {}
    for n in (1, 2):
        device_id = f"fpc{n}_{world.suffix}"
        keys[device_id] = os.urandom(32)
        await db.execute("INSERT INTO devices (id, room_id, kind, alg, key) VALUES ($1, $2, 'fingerprint',"
                         " 'hmac-sha256', $3)", device_id, world.room, keys[device_id])
    return keys


async def _opened(db, command_id, key: bytes) -> dict:
    command = await get_command(db, command_id)
    assert command is not None and command.sealed is not None and command.args == {}
    return open_args(decode_sealed(command.sealed), device_id=command.device_id, command_id=command_id.bytes,
                     name=command.name, alg="hmac-sha256", device_key=key)


async def _ack_all(db, commands: list[dict], world) -> None:
    for c in commands:
        command_id = uuid.UUID(c["command_id"])
        await transition(db, command_id, from_statuses=("pending",), to_status="sent", at=world.now, sent=True)
        await transition(db, command_id, from_statuses=("sent",), to_status="acked", at=world.now, acked=True)


async def test_a_student_gives_and_withdraws_only_their_own_consent(client, world, db):
    stu1, stu2 = world.username("stu1"), world.username("stu2")
    me = await bearer(client, stu1)
    url = f"/api/v1/students/{stu1}/biometric-consent"

    view = await (await client.get(url, headers=me)).get_json()
    assert view["active"] is None and view["history"] == [] and view["notice"]["version"] == CURRENT_NOTICE_VERSION
    # Another student's consent: neither readable nor changeable.
    other = f"/api/v1/students/{stu2}/biometric-consent"
    assert (await client.get(other, headers=me)).status_code == 403
    assert (await client.post(other, json={"notice_version": CURRENT_NOTICE_VERSION}, headers=me)).status_code == 403
    assert (await client.post(f"{other}/withdraw", json={}, headers=me)).status_code == 403
    # Faculty have no say; ops may read (to enrol) but not consent for anyone.
    fac = await bearer(client, world.username("fac1"))
    ops = await bearer(client, world.username("ops"))
    assert (await client.get(url, headers=fac)).status_code == 403
    assert (await client.get(url, headers=ops)).status_code == 200
    assert (await client.post(url, json={"notice_version": CURRENT_NOTICE_VERSION}, headers=ops)).status_code == 403

    # A stale or unknown notice is refused; the current one is recorded with who gave it.
    stale = await client.post(url, json={"notice_version": "2001-01"}, headers=me)
    assert stale.status_code == 400 and (await stale.get_json())["error"]["field"] == "notice_version"
    given = await client.post(url, json={"notice_version": CURRENT_NOTICE_VERSION}, headers=me)
    assert given.status_code == 201, await given.get_data(as_text=True)
    consent = await given.get_json()
    assert (consent["student_id"], consent["given_by"], consent["active"]) == (stu1, stu1, True)
    again = await client.post(url, json={"notice_version": CURRENT_NOTICE_VERSION}, headers=me)
    assert again.status_code == 409

    withdrawn = await client.post(f"{url}/withdraw", json={"reason": "changed my mind"}, headers=me)
    assert withdrawn.status_code == 202, await withdrawn.get_data(as_text=True)
    body = await withdrawn.get_json()
    assert body["commands"] == []  # enrolled nowhere: nothing to delete
    assert (body["consent"]["withdrawn_by"], body["consent"]["withdrawal_reason"]) == (stu1, "changed my mind")
    assert (await client.post(f"{url}/withdraw", json={}, headers=me)).status_code == 409

    # Every change is in the audit log (the security audit's hash chain), named by the student.
    actions = [r["action"] for r in await db.fetch(
        "SELECT action FROM audit_log WHERE entity = 'biometric_consent' AND entity_id = $1 ORDER BY id", stu1)]
    assert actions == ["given", "withdrawn"]
    rows = await db.fetch("SELECT given_by, withdrawn_by FROM biometric_consents WHERE student_id = $1", stu1)
    assert [(r["given_by"], r["withdrawn_by"]) for r in rows] == [(stu1, stu1)]


async def test_an_admin_records_paper_consent_and_ops_enrol_only_consenting_students(
        client, world, db, terminals):
    admin = await bearer(client, world.username("admin"))
    ops = await bearer(client, world.username("ops"))
    stu1, stu2 = world.username("stu1"), world.username("stu2")
    fp1, fp2 = sorted(terminals)
    template = os.urandom(300)
    template_b64 = base64.b64encode(template).decode()

    # Without consent: refused, nothing queued, nothing recorded; raw commands that would enrol are refused too.
    refused = await client.post(f"/api/v1/devices/{fp1}/enrolments/{stu2}", json={"page": 4}, headers=ops)
    assert refused.status_code == 409 and "consent" in (await refused.get_json())["error"]["message"]
    for name, args in (("template_sync", {"page": 4, "student": stu2, "template": template_b64}),
                       ("roster_sync", {"pins": "77=x", "pages": f"4={stu2}"})):
        raw = await client.post(f"/api/v1/devices/{fp1}/commands", json={"name": name, "args": args}, headers=ops)
        assert raw.status_code == 409 and stu2 in (await raw.get_json())["error"]["message"]
    assert await db.fetchval("SELECT count(*) FROM device_commands WHERE device_id = ANY($1::text[])",
                             list(terminals)) == 0

    paper = await client.post(f"/api/v1/students/{stu1}/biometric-consent",
                              json={"notice_version": CURRENT_NOTICE_VERSION}, headers=admin)
    assert paper.status_code == 201
    assert (await paper.get_json())["given_by"] == world.username("admin")

    # Bad bodies: a page out of range, a template that is not base64 or too big.
    url = f"/api/v1/devices/{fp1}/enrolments/{stu1}"
    assert (await client.post(url, json={"page": 70000}, headers=ops)).status_code == 400
    bad = await client.post(url, json={"page": 3, "template": "***"}, headers=ops)
    assert bad.status_code == 400 and (await bad.get_json())["error"]["field"] == "template"
    big = base64.b64encode(os.urandom(4097)).decode()
    assert (await client.post(url, json={"page": 3, "template": big}, headers=ops)).status_code == 400

    enrolled = []
    for device_id, body in ((fp1, {"page": 3, "template": template_b64}), (fp2, {"page": 5})):
        response = await client.post(f"/api/v1/devices/{device_id}/enrolments/{stu1}", json=body, headers=ops)
        assert response.status_code == 202, await response.get_data(as_text=True)
        enrolled += (await response.get_json())["commands"]
    assert [(c["device_id"], c["name"]) for c in enrolled] == [
        (fp1, "template_sync"), (fp1, "roster_sync"), (fp2, "roster_sync")]
    # What each terminal will open: the template for fp1, the page map for both.
    opened = [await _opened(db, uuid.UUID(c["command_id"]), terminals[c["device_id"]])
              for c in enrolled]
    assert opened == [{"page": 3, "student": stu1, "template": template_b64}, {"pages": f"3={stu1}"},
                      {"pages": f"5={stu1}"}]

    # Pending until the terminals answer; the device page and the API say so per terminal.
    view = await (await client.get(f"/api/v1/devices/{fp1}/enrolments", headers=ops)).get_json()
    assert [(e["student_id"], e["page"], e["state"]) for e in view["enrolments"]] == [(stu1, 3, "pending")]
    await _ack_all(db, enrolled[:2], world)
    states = {e["device_id"]: e["state"] for e in (await (await client.get(
        f"/api/v1/students/{stu1}/biometric-consent", headers=ops)).get_json())["enrolments"]}
    assert states == {fp1: "confirmed", fp2: "pending"}
    await page_login(client, world.username("ops"))
    html = await (await client.get(f"/ops/devices/{fp1}")).get_data(as_text=True)
    assert 'id="device-enrolments"' in html and f'data-device-id="{fp2}" data-state="pending"' in html
    assert f'data-student-id="{stu1}" data-state="confirmed"' in html

    # The registry rests on the consent; the enrolment is audited with it.
    consent_id = (await paper.get_json())["consent_id"]
    assert await db.fetchval("SELECT count(*) FROM terminal_roster WHERE student_id = $1 AND consent_ref = $2",
                             stu1, consent_id) == 2
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE entity = 'terminal_roster' AND action ="
                             " 'page_assigned' AND entity_id = ANY($1::text[])",
                             [f"{fp1}/{stu1}", f"{fp2}/{stu1}"]) == 2

    # Removal from one terminal: template deleted, then the page leaves its map; resent while unconfirmed.
    removed = await client.delete(f"/api/v1/devices/{fp2}/enrolments/{stu1}", headers=ops)
    assert removed.status_code == 202
    removal = (await removed.get_json())["commands"]
    assert [await _opened(db, uuid.UUID(c["command_id"]), terminals[fp2]) for c in removal] == [
        {"page": 5, "delete": True}, {"remove_pages": "5"}]
    again = await client.delete(f"/api/v1/devices/{fp2}/enrolments/{stu1}", headers=ops)
    assert again.status_code == 202 and len((await again.get_json())["commands"]) == 2
    await _ack_all(db, (await again.get_json())["commands"], world)
    view = await (await client.get(f"/api/v1/devices/{fp2}/enrolments", headers=ops)).get_json()
    assert [(e["page"], e["removal"], e["state"]) for e in view["enrolments"]] == [(5, True, "removed")]
    assert (await client.delete(f"/api/v1/devices/{fp1}/enrolments/{stu2}", headers=ops)).status_code == 404


async def test_withdrawal_deletes_the_fingerprint_on_every_terminal_and_the_reconcile_keeps_it_gone(
        client, world, db, terminals):
    admin = await bearer(client, world.username("admin"))
    ops = await bearer(client, world.username("ops"))
    stu1 = world.username("stu1")
    me = await bearer(client, stu1)
    url = f"/api/v1/students/{stu1}/biometric-consent"
    assert (await client.post(url, json={"notice_version": CURRENT_NOTICE_VERSION}, headers=me)).status_code == 201
    enrolment_ids = []
    for n, device_id in enumerate(sorted(terminals)):
        body = {"page": 10 + n, "template": base64.b64encode(os.urandom(64)).decode()}
        response = await client.post(f"/api/v1/devices/{device_id}/enrolments/{stu1}", json=body, headers=ops)
        assert response.status_code == 202
        enrolment_ids += [uuid.UUID(c["command_id"]) for c in (await response.get_json())["commands"]]

    # An admin withdraws for the student (a paper form): both terminals get a template delete and a map removal.
    withdrawn = await client.post(f"{url}/withdraw", json={"reason": "letter of 3 Dec"}, headers=admin)
    assert withdrawn.status_code == 202, await withdrawn.get_data(as_text=True)
    commands = (await withdrawn.get_json())["commands"]
    got = {(c["device_id"], c["name"]): await _opened(db, uuid.UUID(c["command_id"]),
                                                     terminals[c["device_id"]]) for c in commands}
    fp1, fp2 = sorted(terminals)
    assert got == {(fp1, "template_sync"): {"page": 10, "delete": True}, (fp1, "roster_sync"): {"remove_pages": "10"},
                   (fp2, "template_sync"): {"page": 11, "delete": True}, (fp2, "roster_sync"): {"remove_pages": "11"}}
    states = {e["device_id"]: e["state"] for e in (await (await client.get(url, headers=me)).get_json())["enrolments"]}
    assert states == {fp1: "removal_pending", fp2: "removal_pending"}
    # The enrolments never delivered (no terminal took them yet) are failed: their templates never leave the hub.
    undelivered = await db.fetch("SELECT status, detail, sealed FROM device_commands WHERE id = ANY($1::uuid[])",
                                 enrolment_ids)
    assert {(r["status"], r["detail"], r["sealed"]) for r in undelivered} == {
        ("failed", "consent withdrawn before delivery", None)}
    await _ack_all(db, [c for c in commands if c["device_id"] == fp1], world)
    states = {e["device_id"]: e["state"] for e in (await (await client.get(url, headers=me)).get_json())["enrolments"]}
    assert states == {fp1: "removed", fp2: "removal_pending"}

    # Enrolment is refused now, and a full reconcile neither re-adds a page nor drops the removal records.
    assert (await client.post(f"/api/v1/devices/{fp1}/enrolments/{stu1}", json={"page": 10},
                              headers=ops)).status_code == 409
    await reconcile(db, now=world.now + timedelta(seconds=1), student_ids=None)
    rows = await db.fetch("SELECT device_id, page, removed_page FROM terminal_roster WHERE student_id = $1"
                          " AND device_id = ANY($2::text[]) ORDER BY device_id", stu1, list(terminals))
    assert [(r["page"], r["removed_page"]) for r in rows] == [(None, 10), (None, 11)]
    # The student's page shows each terminal's state.
    await page_login(client, stu1)
    html = await (await client.get("/student/privacy")).get_data(as_text=True)
    assert f'data-device-id="{fp1}" data-state="removed"' in html
    assert f'data-device-id="{fp2}" data-state="removal_pending"' in html
    assert 'data-state="none"' in html  # no active consent: the give form shows


@pytest.mark.parametrize("outcome", ["acked", "expired"])
async def test_no_template_bytes_remain_in_device_commands_once_acked_or_expired(
        client, world, db, terminals, outcome):
    admin = await bearer(client, world.username("admin"))
    stu3 = world.username("stu3")
    fp1 = sorted(terminals)[0]
    template = os.urandom(512)
    template_b64 = base64.b64encode(template).decode()
    assert (await client.post(f"/api/v1/students/{stu3}/biometric-consent",
                              json={"notice_version": CURRENT_NOTICE_VERSION}, headers=admin)).status_code == 201
    response = await client.post(f"/api/v1/devices/{fp1}/enrolments/{stu3}",
                                 json={"page": 20, "template": template_b64}, headers=admin)
    assert response.status_code == 202
    [load, _] = (await response.get_json())["commands"]
    load_id = uuid.UUID(load["command_id"])

    async def dump() -> bytes:
        """Every column of the terminal's command rows, as a dump would write them."""
        rows = await db.fetch("SELECT c::text AS row, sealed FROM device_commands c WHERE device_id = $1", fp1)
        return b"".join(r["row"].encode() + bytes(r["sealed"] or b"") for r in rows)

    # While pending: only the sealed blob (ciphertext), never the template in clear, base64 or hex.
    pending = await dump()
    for needle in (template, template_b64.encode(), template.hex().encode(), template[:32]):
        assert needle not in pending
    assert (await get_command(db, load_id)).sealed is not None
    if outcome == "acked":
        await _ack_all(db, [load], world)
    else:
        await transition(db, load_id, from_statuses=("pending",), to_status="expired", at=world.now)
    assert (await get_command(db, load_id)).sealed is None
    after = await dump()
    for needle in (template, template_b64.encode(), template.hex().encode(), template[:32]):
        assert needle not in after
    row = await db.fetchrow("SELECT args::text AS args, sealed_keys FROM device_commands WHERE id = $1", load_id)
    assert (row["args"], row["sealed_keys"]) == ("{}", ["page", "student", "template"])


async def test_the_roster_keeper_removes_a_page_that_rests_on_no_consent(db, world, terminals):
    """A page recorded before consent existed, or left by a consent closed outside the withdrawal path."""
    stu2 = world.username("stu2")
    fp1 = sorted(terminals)[0]
    await db.execute("INSERT INTO terminal_roster (device_id, student_id, page, page_source) VALUES ($1, $2, 44, 'ops')",
                     fp1, stu2)
    plan = await reconcile(db, now=world.now, student_ids=[stu2])
    [change] = [c for c in plan.changes if c.device_id == fp1]
    assert change.remove_pages == (44,)
    result = await queue_plan(db, plan, issued_by="test", now=world.now, device_offline_after_s=90)
    mine = [c for c in result.commands if c.device_id == fp1]
    # The template goes, then the page; the student's PIN (no biometric: no consent needed) is placed.
    pin = await db.fetchval("SELECT terminal_pin FROM students WHERE id = $1", stu2)
    assert [(c.name, await _opened(db, c.command_id, terminals[fp1])) for c in mine] == [
        ("template_sync", {"page": 44, "delete": True}),
        ("roster_sync", {"remove_pages": "44", "pins": f"{pin}={stu2}"})]
    row = await db.fetchrow("SELECT pin, page FROM terminal_roster WHERE device_id = $1 AND student_id = $2",
                            fp1, stu2)
    assert (row["pin"], row["page"]) == (pin, None)
