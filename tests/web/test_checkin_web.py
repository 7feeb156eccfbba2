"""Display-mode check-in from a phone, faculty marks and flag review, through the web app.

The display check-ins run against a real SessionActor and PersistenceWriter
(under a supervisor in the test's nursery), exactly as the hub wires them.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from datetime import datetime

import pytest
import trio
from test_live import recv
from web_helpers import bearer, page_login

from actors import ChildSpec, Supervisor
from hub.core.bus import session_topic, user_topic
from hub.core.metrics import HubMetrics
from hub.core.secrets_box import KEY_ENV, SecretsBox, parse_key_env
from hub.db import open_database
from hub.db.checkin import display_session
from hub.pipeline.session_actor import SESSION_MAILBOX, SessionActor, session_caller
from hub.pipeline.writer import PersistenceWriter
from web import create_app


@pytest.fixture
async def live(ctx, world, db, bus):
    """live1's session actor running; ``ctx.session_call`` reaches it."""
    root = Supervisor("test-root")
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        writer = await root.start_child(ChildSpec("writer", lambda: PersistenceWriter(
            db, bus, HubMetrics(), lambda message: None), mailbox_size=64))
        sessions = await root.start_child(ChildSpec("sessions", lambda: Supervisor("sessions")))
        await sessions.start_child(ChildSpec(
            world.sessions["live1"], lambda: SessionActor(world.sessions["live1"], db=db, writer=writer),
            mailbox_size=SESSION_MAILBOX))
        ctx.session_call = session_caller(lambda: sessions)
        yield sessions
        await root.shutdown()
        nursery.cancel_scope.cancel()


async def _display_url(client, world, faculty="fac1") -> str:
    response = await client.get(f"/api/v1/sessions/{world.sessions['live1']}/display-code",
                                headers=await bearer(client, world.username(faculty)))
    assert response.status_code == 200
    code = await response.get_json()
    assert code["live"] and code["refresh_in_ms"] > 0
    return code["url"].split("localhost", 1)[-1]


async def test_logged_out_student_scans_logs_in_and_is_checked_in_as_of_the_scan(app, ctx, world, db, clock, live):
    faculty = app.test_client()
    path = await _display_url(faculty, world)
    scanned_at = clock.now
    phone = app.test_client()
    scan = await phone.get(path)
    assert scan.status_code == 303
    checkin_page = scan.headers["Location"]
    assert checkin_page.startswith("/checkin/")
    # Not logged in: the protected page sends the student to log in, and back.
    bounced = await phone.get(checkin_page)
    assert bounced.status_code == 302 and "/login?next=" in bounced.headers["Location"]
    clock.advance(90)  # logging in takes a while: the display's code is long gone
    login = await page_login(phone, world.username("stu2"))
    assert login.status_code == 303
    page = await phone.get(checkin_page)
    assert page.status_code == 200
    pending = checkin_page.rsplit("/", 1)[1]
    done = await phone.post("/api/v1/checkin/display", json={"pending": pending})
    assert done.status_code == 200, await done.get_data(as_text=True)
    body = await done.get_json()
    assert body["status"] == "present" and body["flagged"] is False
    assert abs(datetime.fromisoformat(body["checked_in_at"]).timestamp() - scanned_at) < 0.01
    row = await db.fetchrow("SELECT status, source, checked_in_at FROM attendance WHERE session_id = $1"
                            " AND student_id = $2", world.sessions["live1"], world.users["stu2"])
    assert row["status"] == "present" and row["source"] == "display"
    assert await db.fetchval("SELECT count(*) FROM display_checkins WHERE session_id = $1 AND outcome = 'accepted'",
                             world.sessions["live1"]) == 1
    again = await phone.post("/api/v1/checkin/display", json={"pending": pending})
    assert again.status_code == 409 and (await again.get_json())["error"]["code"] == "duplicate_checkin"


async def test_one_phone_checking_in_a_second_student_is_flagged_for_review(app, world, db, live):
    path = await _display_url(app.test_client(), world)
    phone = app.test_client()
    for key in ("stu2", "stu1"):
        await phone.post("/logout")
        pending = (await phone.get(path)).headers["Location"].rsplit("/", 1)[1]
        await page_login(phone, world.username(key))
        response = await phone.post("/api/v1/checkin/display", json={"pending": pending})
        results = await response.get_json()
        if key == "stu2":
            assert response.status_code == 200 and not results["flagged"]
    # stu1 was already present in live1 (world): refused, but the shared phone is still flagged.
    assert response.status_code == 409
    flags = await db.fetch("SELECT student_id, kind, source FROM checkin_flags WHERE session_id = $1",
                           world.sessions["live1"])
    assert [(f["student_id"], f["kind"], f["source"]) for f in flags] == [(world.users["stu1"], "shared_device", "display")]


async def test_bad_codes_and_other_phones_are_refused(app, world, clock, live):
    path = await _display_url(app.test_client(), world)
    phone = app.test_client()
    forged = re.sub(r"/[a-z2-7]{16}$", "/aaaaaaaaaaaaaaaa", path)
    assert (await phone.get(forged)).status_code == 400
    # Each session has its own secret (the campus key's HKDF salted with the session id): live1's
    # current code is no code of live2, which takes check-ins in the same room at the same time.
    other_session = await phone.get(path.replace(world.sessions["live1"], world.sessions["live2"]))
    assert other_session.status_code == 400 and _INVALID_CODE in await other_session.get_data(as_text=True)
    clock.advance(25)  # two windows later
    expired = await phone.get(path, headers={"Accept": "text/html"})
    assert expired.status_code == 400 and "expired" in await expired.get_data(as_text=True)
    clock.advance(-25)
    pending = (await phone.get(path)).headers["Location"].rsplit("/", 1)[1]
    other_phone = app.test_client()
    await page_login(other_phone, world.username("stu2"))
    refused = await other_phone.post("/api/v1/checkin/display", json={"pending": pending})
    assert refused.status_code == 403 and (await refused.get_json())["error"]["code"] == "other_device"
    garbage = await other_phone.post("/api/v1/checkin/display", json={"pending": "x.y"})
    assert garbage.status_code == 400


#: What the page of a scanned ``invalid_code`` says (an ``expired_code`` page says "expired").
_INVALID_CODE = "This is not a valid check-in code for this session."


async def _scan_on(ctx, secrets: SecretsBox, database_url: str, path: str) -> str:
    """Scan ``path`` on another hub process's web app (its own pool and campus key box):
    ``"accepted"`` (on to the check-in page), ``"invalid_code"``, or the status and page."""
    async with open_database(database_url, max_size=1, secrets=secrets) as other_db:
        response = await create_app(replace(ctx, db=other_db)).test_client().get(path)
        page = await response.get_data(as_text=True)
    if response.status_code == 303 and response.headers["Location"].startswith("/checkin/"):
        return "accepted"
    if response.status_code == 400 and _INVALID_CODE in page:
        return "invalid_code"
    return f"{response.status_code}: {page}"


async def test_the_display_secret_is_derived_from_the_campus_key_and_stored_nowhere(app, ctx, db, world,
                                                                                      database_url):
    path = await _display_url(app.test_client(), world)
    campus_key = parse_key_env(os.environ[KEY_ENV])
    # A restart, or a second worker: another Database and another box read from the same key make
    # and accept the same code (nothing per session or per process to share but the key).
    assert await _scan_on(ctx, SecretsBox(dict(campus_key)), database_url, path) == "accepted"
    again = await display_session(db, world.sessions["live1"])
    async with open_database(database_url, max_size=1, secrets=SecretsBox(dict(campus_key))) as other_db:
        elsewhere = await display_session(other_db, world.sessions["live1"])
    assert again is not None and elsewhere is not None
    window = int(path.split("/")[-2])
    assert elsewhere.code(window) == again.code(window) == path.rsplit("/", 1)[1]
    # Another campus key: other codes, and this one is refused.
    assert await _scan_on(ctx, SecretsBox.ephemeral(), database_url, path) == "invalid_code"
    assert await db.fetchval(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = 'class_sessions' AND column_name = 'display_secret'") == 0  # migration 0037


async def test_a_campus_key_rotation_keeps_the_code_on_screen_valid(app, ctx, world, database_url):
    """After ``keys rotate`` the display shows codes of the new key; the previous key's still pass."""
    old_path = await _display_url(app.test_client(), world)  # the campus key before the rotation
    keys = parse_key_env(os.environ[KEY_ENV])
    new_id = max(keys) + 1
    rotated = {**keys, new_id: os.urandom(32)}
    async with open_database(database_url, max_size=1, secrets=SecretsBox(rotated)) as rotated_db:
        new_path = await _display_url(create_app(replace(ctx, db=rotated_db)).test_client(), world)
    assert new_path != old_path and new_path.rsplit("/", 2)[1] == old_path.rsplit("/", 2)[1]  # same window
    # The rotated hub accepts the code still on screen (previous key) and its own.
    assert await _scan_on(ctx, SecretsBox(rotated), database_url, old_path) == "accepted"
    assert await _scan_on(ctx, SecretsBox(rotated), database_url, new_path) == "accepted"
    # A hub that does not hold the new key yet refuses its codes (documented: until it re-reads the key file).
    assert await _scan_on(ctx, SecretsBox(dict(keys)), database_url, new_path) == "invalid_code"
    # Only the current and the previous key: after a second rotation the first key's codes are refused.
    twice = {**rotated, new_id + 1: os.urandom(32)}
    assert await _scan_on(ctx, SecretsBox(twice), database_url, new_path) == "accepted"
    assert await _scan_on(ctx, SecretsBox(twice), database_url, old_path) == "invalid_code"


async def test_session_without_live_actor_refuses_display_checkin(app, world):
    path = await _display_url(app.test_client(), world)
    phone = app.test_client()
    pending = (await phone.get(path)).headers["Location"].rsplit("/", 1)[1]
    await page_login(phone, world.username("stu2"))
    response = await phone.post("/api/v1/checkin/display", json={"pending": pending})
    assert response.status_code == 409 and (await response.get_json())["error"]["code"] == "session_not_live"


async def test_manual_and_bulk_marks_through_the_live_actor(client, world, db, bus, live):
    session = world.sessions["live1"]
    headers = await bearer(client, world.username("fac1"))
    with bus.subscribe([session_topic(session)]) as updates:
        response = await client.post(f"/api/v1/sessions/{session}/marks", headers=headers, json={
            "marks": [{"student_id": world.users["stu2"], "status": "excused"}], "reason": "medical"})
        assert response.status_code == 200, await response.get_data(as_text=True)
        assert (await response.get_json())["changed"] == [
            {"student_id": world.users["stu2"], "status": "excused", "before": None}]
        with trio.fail_after(5):
            update = json.loads((await updates.receive()).json)
    assert update["status"] == "excused" and update["source"] == "manual"
    audit = await db.fetchrow("SELECT actor, reason, after FROM audit_log WHERE entity_id = $1 ORDER BY id DESC LIMIT 1",
                              f"{session}/{world.users['stu2']}")
    assert audit["actor"] == world.users["fac1"] and audit["reason"] == "medical"
    assert json.loads(audit["after"])["status"] == "excused"
    # The actor knows: stu2 can no longer check in by scanning.
    from hub.pipeline.session_actor import RosterStatus
    assert (await live.lookup(session).ask(RosterStatus()))[world.users["stu2"]] == "excused"
    # Bulk: every student without a record (none left) changes nothing.
    bulk = await client.post(f"/api/v1/sessions/{session}/marks/unmarked", headers=headers, json={"status": "absent"})
    assert bulk.status_code == 200 and (await bulk.get_json())["changed"] == []


async def test_marks_of_a_session_without_actor_are_written_directly_and_checked(client, world, db):
    session = world.sessions["past1"]
    headers = await bearer(client, world.username("fac1"))
    response = await client.post(f"/api/v1/sessions/{session}/marks/unmarked", headers=headers,
                                  json={"status": "absent", "reason": "register"})
    assert (await response.get_json())["changed"] == [
        {"student_id": world.users["stu2"], "status": "absent", "before": None}]
    bad = await client.post(f"/api/v1/sessions/{session}/marks", headers=headers,
                            json={"marks": [{"student_id": world.users["stu3"], "status": "present"}]})
    assert bad.status_code == 400 and (await bad.get_json())["error"]["field"] == "marks[0].student_id"
    bad = await client.post(f"/api/v1/sessions/{session}/marks", headers=headers,
                            json={"marks": [{"student_id": world.users["stu2"], "status": "here"}]})
    assert bad.status_code == 400
    other = await client.post(f"/api/v1/sessions/{session}/marks", headers=await bearer(client, world.username("fac2")),
                              json={"marks": [{"student_id": world.users["stu2"], "status": "present"}]})
    assert other.status_code == 403
    student = await client.post(f"/api/v1/sessions/{session}/marks", headers=await bearer(client, world.username("stu2")),
                                json={"marks": [{"student_id": world.users["stu2"], "status": "present"}]})
    assert student.status_code == 403
    assert await db.fetchval("SELECT status FROM attendance WHERE session_id = $1 AND student_id = $2",
                             session, world.users["stu2"]) == "absent"



async def test_a_mark_without_an_actor_is_audited_and_announced_as_through_one(client, world, db, bus):
    """One use case for both paths (hub/db/marks.py): the same record, audit entry and live update."""
    session, student = world.sessions["past1"], world.users["stu2"]
    headers = await bearer(client, world.username("fac1"))
    body = {"marks": [{"student_id": student, "status": "excused"}], "reason": "medical"}
    with bus.subscribe([session_topic(session)]) as updates:
        response = await client.post(f"/api/v1/sessions/{session}/marks", headers=headers, json=body)
        assert response.status_code == 200, await response.get_data(as_text=True)
        assert [c["status"] for c in (await response.get_json())["changed"]] == ["excused"]
        with trio.fail_after(5):
            update = json.loads((await updates.receive()).json)
    assert (update["type"], update["student_id"], update["status"], update["source"], update["checked_in_at"]) == (
        "attendance", student, "excused", "manual", None)
    audit = await db.fetchrow("SELECT actor, reason, after FROM audit_log WHERE entity_id = $1 ORDER BY id DESC LIMIT 1",
                              f"{session}/{student}")
    assert audit["actor"] == world.users["fac1"] and audit["reason"] == "medical"
    assert json.loads(audit["after"])["status"] == "excused" and json.loads(audit["after"])["source"] == "manual"
    again = await client.post(f"/api/v1/sessions/{session}/marks", headers=headers, json=body)
    assert (await again.get_json())["changed"] == []  # a mark that changes nothing writes nothing

async def test_flag_review_reject_marks_absent_once(client, world, db):
    session = world.sessions["past1"]
    flag_id = await db.fetchval(
        "INSERT INTO checkin_flags (session_id, student_id, kind, detail, source, raised_at)"
        " VALUES ($1, $2, 'wrong_room', 'scanned elsewhere', 'qr', now()) RETURNING id", session, world.users["stu1"])
    headers = await bearer(client, world.username("fac1"))
    page = await (await client.get(f"/api/v1/sessions/{session}/flags", headers=headers)).get_json()
    assert page["total"] == 1 and page["items"][0]["kind"] == "wrong_room" and page["items"][0]["status"] == "present"
    assert (await client.post(f"/api/v1/flags/{flag_id}/review", headers=await bearer(client, world.username("fac2")),
                              json={"decision": "reject"})).status_code == 403
    reviewed = await client.post(f"/api/v1/flags/{flag_id}/review", headers=headers,
                                 json={"decision": "reject", "note": "was not there"})
    body = await reviewed.get_json()
    assert reviewed.status_code == 200 and body["state"] == "rejected" and body["status"] == "absent"
    again = await client.post(f"/api/v1/flags/{flag_id}/review", headers=headers, json={"decision": "accept"})
    assert again.status_code == 409
    assert (await client.post("/api/v1/flags/99999999999999999999/review", headers=headers,
                              json={"decision": "accept"})).status_code == 404
    remaining = await (await client.get(f"/api/v1/sessions/{session}/flags?state=open", headers=headers)).get_json()
    assert remaining["total"] == 0


async def test_projector_page_shows_only_the_window_the_hub_says(client, world, clock):
    await page_login(client, world.username("fac1"))
    session = world.sessions["live1"]
    page = await client.get(f"/faculty/sessions/{session}/display")
    assert page.status_code == 200 and 'id="display-qr"' in await page.get_data(as_text=True)
    code = await (await client.get(f"/api/v1/sessions/{session}/display-code")).get_json()
    svg = await client.get(f"/faculty/sessions/{session}/display.svg?window={code['window']}")
    assert svg.status_code == 200 and svg.headers["Content-Type"].startswith("image/svg+xml")
    assert (await client.get(f"/faculty/sessions/{session}/display.svg?window={code['window'] - 2}")).status_code == 410
    clock.advance(3 * 3600)  # over
    assert (await (await client.get(f"/api/v1/sessions/{session}/display-code")).get_json())["live"] is False
    await page_login(client, world.username("fac2"))
    assert (await client.get(f"/api/v1/sessions/{session}/display-code")).status_code == 403


async def test_a_flag_reaches_the_open_rosters_and_each_managing_faculty_once(app, client, world, db, bus, live):
    session, fac1, fac2 = world.sessions["live1"], world.users["fac1"], world.users["fac2"]
    # fac2 is assigned to c1 as well: a managing faculty besides the coordinator.
    await db.execute("INSERT INTO faculty_assignments (course_id, faculty_id) VALUES ($1, $2)",
                     world.courses["c1"], fac2)
    path = await _display_url(app.test_client(), world)
    await page_login(client, world.username("fac1"))
    async with client.websocket(f"/ws/sessions/{session}") as ws:
        assert (await recv(ws))["flags"] == []
        with bus.subscribe([user_topic(fac1), user_topic(fac2), user_topic(world.users["admin"])]) as pushed:
            phone = app.test_client()
            for key in ("stu2", "stu1"):  # one phone, two students: the second is flagged shared_device
                await phone.post("/logout")
                pending = (await phone.get(path)).headers["Location"].rsplit("/", 1)[1]
                await page_login(phone, world.username(key))
                await phone.post("/api/v1/checkin/display", json={"pending": pending})
            message = await recv(ws)
            while message["type"] != "flag":  # stu2's attendance update comes first
                assert message["type"] == "attendance" and message["student_id"] == world.users["stu2"]
                message = await recv(ws)
            flag = message["flag"]
            assert (flag["student_id"], flag["kind"], flag["state"], flag["status"]) == (
                world.users["stu1"], "shared_device", "open", "present")
            assert isinstance(flag["id"], int) and flag["student_name"]
            notes = [json.loads((await pushed.receive()).json) for _ in range(2)]
        assert {n["notification"]["user_id"] for n in notes} == {fac1, fac2}
        assert all(n["notification"]["data"]["flag_id"] == flag["id"] for n in notes)
        # One per flag and managing faculty; the ordinary check-in before it notified nobody.
        stored = await db.fetch("SELECT user_id, link FROM notifications WHERE kind = 'checkin_flagged'"
                                " AND user_id = ANY($1::text[]) ORDER BY user_id", [fac1, fac2, world.users["admin"]])
        assert [(n["user_id"], n["link"]) for n in stored] == [(fac1, f"/faculty/sessions/{session}"),
                                                               (fac2, f"/faculty/sessions/{session}")]
        # A roster opened now gets the open flag in its snapshot.
        async with app.test_client().websocket(f"/ws/sessions/{session}",
                                               headers=await bearer(app.test_client(), world.username("fac2"))) as late:
            assert [f["id"] for f in (await recv(late))["flags"]] == [flag["id"]]
        # The assigned faculty reviews it: every open roster drops it.
        reviewer = app.test_client()
        reviewed = await reviewer.post(f"/api/v1/flags/{flag['id']}/review", json={"decision": "accept"},
                                       headers=await bearer(reviewer, world.username("fac2")))
        assert reviewed.status_code == 200
        update = await recv(ws)
        assert (update["type"], update["flag"]["id"], update["flag"]["state"]) == ("flag", flag["id"], "accepted")
    async with client.websocket(f"/ws/sessions/{session}") as ws:
        assert (await recv(ws))["flags"] == []


async def test_the_batch_writer_notifies_a_flag_once_even_when_its_message_is_redelivered(world, db):
    from hub.core.records import CheckinFlagRow, Commit
    from hub.db.ingest import write_batch

    session = world.sessions["live1"]
    row = CheckinFlagRow(session, world.users["stu2"], "wrong_room", "scanned elsewhere", {"room_id": "x"}, "qr",
                         None, world.now)
    commit = Commit(b"redelivered-" + world.suffix.encode(), (row,))
    first = await write_batch(db, [commit])
    again = await write_batch(db, [commit])
    assert first.fresh == {commit.dedup_key} and again.fresh == set() and again.live == []
    topics = [topic for topic, _ in first.live]
    assert topics == [session_topic(session), user_topic(world.users["fac1"])]  # the flag, then fac1's note
    flag, note = (json.loads(message.json) for _, message in first.live)
    assert flag["flag"]["status"] is None and flag["flag"]["state"] == "open"
    assert note["notification"]["kind"] == "checkin_flagged" and note["notification"]["data"]["flag_id"] == flag["flag"]["id"]
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE kind = 'checkin_flagged' AND user_id = $1",
                             world.users["fac1"]) == 1
