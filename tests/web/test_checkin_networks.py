"""The check-in network restriction through the web app: admin settings, then display check-ins from
phones at given client addresses, judged by a real SessionActor and PersistenceWriter.

The campus setting is one row of the run's shared database: the ``campus_setting`` fixture puts it
back to "no restriction" after each test that changes it.
"""
from __future__ import annotations

import json

import pytest
import test_checkin_web
from test_checkin_web import _display_url
from web_helpers import bearer, page_login

from hub.core.config import Settings
from hub.db.checkin_networks import set_campus_networks
from hub.db.session_snapshots import load_session_snapshot
from hub.domain.session_messages import ReloadRoster
from web import create_app

#: live1's session actor and writer running (the fixture of test_checkin_web.py, shared by name).
live = test_checkin_web.live
CAMPUS_URL = "/api/v1/campus/checkin-networks"


def room_url(room_id: str) -> str:
    return f"/api/v1/rooms/{room_id}/checkin-networks"


def at(address: str) -> dict:
    """Test-client keyword arguments of a request whose peer is ``address``."""
    return {"scope_base": {"client": (address, 50000)}}


@pytest.fixture
async def campus_setting(db):
    yield
    await set_campus_networks(db, [], by="test")


async def _admin(client, world) -> dict:
    return await bearer(client, world.username("admin"))


async def display_checkin(app, world, student: str, address: str, headers: dict | None = None):
    """Scan live1's display from ``address``, log in as ``student`` and finish; the JSON answer."""
    path = await _display_url(app.test_client(), world)
    phone = app.test_client()
    scan = await phone.get(path, headers=headers or {}, **at(address))
    assert scan.status_code == 303, await scan.get_data(as_text=True)
    await page_login(phone, world.username(student))
    pending = scan.headers["Location"].rsplit("/", 1)[1]
    done = await phone.post("/api/v1/checkin/display", json={"pending": pending}, **at("192.0.2.200"))
    assert done.status_code == 200, await done.get_data(as_text=True)
    return await done.get_json()


async def flags_of(db, world, student: str) -> list[tuple[str, dict]]:
    rows = await db.fetch("SELECT kind, evidence FROM checkin_flags WHERE session_id = $1 AND student_id = $2"
                          " ORDER BY id", world.sessions["live1"], world.users[student])
    return [(r["kind"], json.loads(r["evidence"]) if isinstance(r["evidence"], str) else r["evidence"])
            for r in rows]


async def test_a_checkin_from_outside_the_campus_ranges_is_accepted_and_flagged(
        app, client, world, db, live, campus_setting):
    saved = await client.put(CAMPUS_URL, json={"ranges": ["10.0.0.0/8", "2001:db8::/32"]},
                             headers=await _admin(client, world))
    assert saved.status_code == 200 and (await saved.get_json())["ranges"] == ["10.0.0.0/8", "2001:db8::/32"]
    outside = await display_checkin(app, world, "stu2", "198.51.100.7")
    assert outside["status"] == "present" and outside["flagged"] is True
    assert await flags_of(db, world, "stu2") == [
        ("outside_network", {"network": "198.51.100.0/24", "restriction": "campus"})]
    # Only the /24 is kept, never the address (and the verdict with it).
    row = await db.fetchrow("SELECT network::text AS network, network_inside FROM display_checkins"
                            " WHERE session_id = $1 AND student_id = $2", world.sessions["live1"], world.users["stu2"])
    assert (row["network"], row["network_inside"]) == ("198.51.100.0/24", False)


async def test_a_checkin_from_inside_the_campus_ranges_is_not_flagged(app, client, world, db, live, campus_setting):
    await client.put(CAMPUS_URL, json={"ranges": ["10.0.0.0/8"]}, headers=await _admin(client, world))
    inside = await display_checkin(app, world, "stu2", "::ffff:10.4.5.6")  # a dual-stack listener's IPv4 peer
    assert inside["flagged"] is False and await flags_of(db, world, "stu2") == []


async def test_inside_the_ranges_no_flag_and_the_room_setting_wins(app, client, world, db, live, campus_setting):
    admin = await _admin(client, world)
    await client.put(CAMPUS_URL, json={"ranges": ["10.0.0.0/8"]}, headers=admin)
    room = await client.put(room_url(world.room), json={"ranges": ["192.0.2.0/24"]}, headers=admin)
    assert (await room.get_json())["applies"] == "room"
    # Inside the campus's ranges but outside the room's own: the room's setting decides.
    flagged = await display_checkin(app, world, "stu2", "10.1.2.3")
    assert flagged["flagged"] is True
    assert await flags_of(db, world, "stu2") == [
        ("outside_network", {"network": "10.1.2.0/24", "restriction": "room"})]


async def test_inside_the_room_range_is_not_flagged(app, client, world, db, live, campus_setting):
    admin = await _admin(client, world)
    await client.put(CAMPUS_URL, json={"ranges": ["10.0.0.0/8"]}, headers=admin)
    await client.put(room_url(world.room), json={"ranges": ["192.0.2.0/24"]}, headers=admin)
    inside = await display_checkin(app, world, "stu2", "192.0.2.44")
    assert inside["flagged"] is False and await flags_of(db, world, "stu2") == []
    assert await db.fetchval("SELECT network_inside FROM display_checkins WHERE session_id = $1"
                             " AND student_id = $2", world.sessions["live1"], world.users["stu2"]) is True


async def test_behind_a_trusted_proxy_the_forwarded_client_is_judged(ctx, client, world, db, live):
    await client.put(room_url(world.room), json={"ranges": ["192.0.2.0/24"]}, headers=await _admin(client, world))
    proxied = create_app(ctx, trusted_proxies=["127.0.0.0/8"])
    # The proxy (127.0.0.1) saw 198.51.100.7; the client's own claim to its left is not believed.
    answer = await display_checkin(proxied, world, "stu2", "127.0.0.1",
                                   headers={"X-Forwarded-For": "192.0.2.9, 198.51.100.7"})
    assert answer["flagged"] is True
    assert await flags_of(db, world, "stu2") == [
        ("outside_network", {"network": "198.51.100.0/24", "restriction": "room"})]


async def test_an_untrusted_peer_cannot_claim_an_inside_address(app, client, world, db, live):
    await client.put(room_url(world.room), json={"ranges": ["192.0.2.0/24"]}, headers=await _admin(client, world))
    answer = await display_checkin(app, world, "stu2", "198.51.100.7", headers={"X-Forwarded-For": "192.0.2.9"})
    assert answer["flagged"] is True


async def test_room_settings_follow_opt_out_and_are_audited(client, world, db, campus_setting):
    admin = await _admin(client, world)
    await client.put(CAMPUS_URL, json={"ranges": ["10.0.0.0/8"]}, headers=admin)
    follows = await (await client.get(room_url(world.room), headers=admin)).get_json()
    assert follows == {"room_id": world.room, "ranges": None, "updated_by": None, "updated_at": None,
                       "effective": ["10.0.0.0/8"], "applies": "campus"}
    exempt = await (await client.put(room_url(world.room), json={"ranges": []}, headers=admin)).get_json()
    assert (exempt["ranges"], exempt["effective"], exempt["applies"]) == ([], [], "none")
    listed = await (await client.get(CAMPUS_URL, headers=admin)).get_json()
    assert {"room_id": world.room, "ranges": []}.items() <= next(
        r for r in listed["rooms"] if r["room_id"] == world.room).items()
    back = await (await client.put(room_url(world.room), json={"ranges": None}, headers=admin)).get_json()
    assert back["applies"] == "campus" and back["ranges"] is None
    audited = await db.fetch("SELECT actor, before, after FROM audit_log WHERE entity = 'checkin_networks'"
                             " AND entity_id = $1 ORDER BY id", world.room)
    assert [(a["actor"], a["before"], a["after"]) for a in audited] == [
        (world.users["admin"], '{"ranges": null}', '{"ranges": []}'),
        (world.users["admin"], '{"ranges": []}', '{"ranges": null}')]


@pytest.mark.parametrize("ranges, field, says", [
    (["192.0.2.0/24", "10.1.2.3/8"], "ranges[1]", "did you mean 10.0.0.0/8"),
    (["the campus"], "ranges[0]", "not an address range"),
    ("10.0.0.0/8", "ranges", ""),
])
async def test_bad_ranges_are_refused_with_the_field(client, world, ranges, field, says):
    response = await client.put(room_url(world.room), json={"ranges": ranges}, headers=await _admin(client, world))
    assert response.status_code == 400
    refused = (await response.get_json())["error"]
    assert refused["field"] == field and says in refused["message"]


async def test_unknown_room_is_404(client, world):
    admin = await _admin(client, world)
    assert (await client.get(room_url(f"nope-{world.suffix}"), headers=admin)).status_code == 404
    assert (await client.put(room_url(f"nope-{world.suffix}"), json={"ranges": []}, headers=admin)).status_code == 404


@pytest.mark.parametrize("role", ["fac1", "stu1", "ops"])
async def test_only_admins_see_or_change_the_settings(client, world, role):
    headers = await bearer(client, world.username(role))
    for method, url, body in (("get", CAMPUS_URL, None), ("put", CAMPUS_URL, {"ranges": []}),
                              ("get", room_url(world.room), None), ("put", room_url(world.room), {"ranges": []})):
        response = await getattr(client, method)(url, headers=headers, **({"json": body} if body else {}))
        assert response.status_code == 403, (role, method, url)
    assert (await client.get(CAMPUS_URL)).status_code == 401


async def test_one_display_window_used_from_many_networks_flags_those_checkins(app, ctx, world, db, live):
    """No restriction configured: the third distinct /24 within one code window flags every check-in of
    that window (the earlier ones too); the snapshot a restarted actor loads keeps each one's network and window."""
    session = world.sessions["live1"]
    extra = [f"crowd{i}_{world.suffix}" for i in range(3)]

    async def enrol(conn) -> None:
        await conn.executemany("INSERT INTO users (id, username, display_name, role, password_hash)"
                               " SELECT $1, $1, $1, 'student', password_hash FROM users WHERE id = $2",
                               [(s, world.users["stu2"]) for s in extra])
        await conn.executemany("INSERT INTO students (id, roll_number, token_secret) VALUES ($1, $1, $2)",
                               [(s, b"k" * 32) for s in extra])
        await conn.executemany("INSERT INTO enrolments (course_id, student_id) VALUES ($1, $2)",
                               [(world.courses["c1"], s) for s in extra])

    await db.run(enrol, transaction=True)
    assert (await ctx.session_call(session, ReloadRoster())).added == tuple(sorted(extra))
    path = await _display_url(app.test_client(), world)  # one window: the clock stands still
    answers = {}
    for student, address in ((world.users["stu2"], "10.1.1.5"), (extra[0], "10.1.1.9"),
                             (extra[1], "198.51.100.7"), (extra[2], "203.0.113.50")):
        phone = app.test_client()
        pending = (await phone.get(path, **at(address))).headers["Location"].rsplit("/", 1)[1]
        await page_login(phone, student)
        answer = await phone.post("/api/v1/checkin/display", json={"pending": pending})
        answers[student] = (await answer.get_json())["flagged"]
    assert list(answers.values()) == [False, False, False, True]  # only the third network's own answer says so
    flagged = await db.fetch("SELECT student_id, kind, evidence FROM checkin_flags WHERE session_id = $1"
                             " ORDER BY student_id", session)
    assert sorted((r["student_id"], r["kind"]) for r in flagged) == sorted(
        (s, "many_networks") for s in (world.users["stu2"], *extra))
    snapshot = await load_session_snapshot(db, session)
    assert snapshot is not None
    assert sorted((u.student_id, u.network) for u in snapshot.display_uses) == sorted([
        (world.users["stu2"], "10.1.1.0/24"), (extra[0], "10.1.1.0/24"), (extra[1], "198.51.100.0/24"),
        (extra[2], "203.0.113.0/24")])
    assert {u.code_window for u in snapshot.display_uses} == {int(path.split("/")[3])}


def test_trusted_proxies_come_from_the_environment_and_are_checked():
    settings = Settings.from_env({"CAMPUSHUB_TRUSTED_PROXIES": " 10.0.0.5/32, 2001:db8::/64 ,"})
    assert settings.trusted_proxies == ("10.0.0.5/32", "2001:db8::/64")
    assert Settings.from_env({}).trusted_proxies == ()
    with pytest.raises(ValueError, match="CAMPUSHUB_TRUSTED_PROXIES: 10.0.0.5/8 has host bits set"):
        Settings.from_env({"CAMPUSHUB_TRUSTED_PROXIES": "10.0.0.5/8"})
