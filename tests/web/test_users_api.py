"""The people API (/api/v1/users) against the real PostgreSQL: create with an activation code, search
and paging, edit, role change, deactivation (the token stops at once, the bus says so), reactivation,
deletion and its refusals, and the guards on oneself."""
from __future__ import annotations

import json
import uuid

import pytest
import trio
from quart.testing.connections import WebsocketDisconnectError
from web_helpers import api_login, bearer, page_login

from hub.core.bus import LiveAccountChanged, user_topic
from hub.db.students import student_token_secret

pytestmark = pytest.mark.integration


def _sfx() -> str:
    return uuid.uuid4().hex[:8]


async def _create(client, headers, **fields):
    response = await client.post("/api/v1/users", json=fields, headers=headers)
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


async def test_create_student_with_activation_code(client, world, db):
    headers = await bearer(client, world.username("admin"))
    sfx = _sfx()
    made = await _create(client, headers, username=f"new_{sfx}", display_name="  New Student  ", role="student",
                         roll_number=f"R{sfx}", email=f"new_{sfx}@example.edu", program="B.Tech CSE", section="A")
    user = made["user"]
    assert user["display_name"] == "New Student" and user["role"] == "student" and user["active"] is True
    assert (user["roll_number"], user["program"], user["section"]) == (f"R{sfx}", "B.Tech CSE", "A")
    assert made["activation"]["code"] and made["activation"]["expires_at"]
    assert len(await student_token_secret(db, user["id"]) or b"") == 32  # stored sealed (hub/db/sealed_secrets.py)
    # Shown once: the account listing never carries it.
    got = await client.get(f"/api/v1/users/{user['id']}", headers=headers)
    assert got.status_code == 200 and "activation" not in await got.get_json()
    audit = await db.fetch("SELECT actor, action FROM audit_log WHERE entity = 'user' AND entity_id = $1", user["id"])
    assert [(r["actor"], r["action"]) for r in audit] == [(world.users["admin"], "created")]


async def test_create_refusals(client, world):
    headers = await bearer(client, world.username("admin"))
    cases = [
        ({"username": "ok_name", "display_name": "X", "role": "student"}, 400, "roll_number"),
        ({"username": "ok_name", "display_name": "X", "role": "faculty", "roll_number": "R1"}, 400, "roll_number"),
        ({"username": "ok_name", "display_name": "X", "role": "counselor"}, 400, "role"),
        ({"username": "a", "display_name": "X", "role": "ops"}, 400, "username"),
        ({"username": "ok_name", "display_name": "X" * 201, "role": "ops"}, 400, "display_name"),
        ({"username": "ok_name", "display_name": "X", "role": "ops", "email": "nope"}, 400, "email"),
        ({"username": world.users["fac1"], "display_name": "X", "role": "ops"}, 409, "username"),
    ]
    for body, status, field in cases:
        response = await client.post("/api/v1/users", json=body, headers=headers)
        assert response.status_code == status, (body, await response.get_data(as_text=True))
        assert (await response.get_json())["error"]["field"] == field, body


async def test_list_search_and_paging(client, world):
    headers = await bearer(client, world.username("admin"))
    sfx = world.suffix
    response = await client.get(f"/api/v1/users?q={sfx}&limit=2", headers=headers)
    page = await response.get_json()
    assert response.status_code == 200 and page["total"] == 7 and len(page["items"]) == 2
    assert [u["username"] for u in page["items"]] == sorted(world.users.values())[:2]
    rest = await (await client.get(f"/api/v1/users?q={sfx}&limit=50&offset=2", headers=headers)).get_json()
    assert len(rest["items"]) == 5
    students = await (await client.get(f"/api/v1/users?q={sfx}&role=student", headers=headers)).get_json()
    assert students["total"] == 3 and all(u["roll_number"] for u in students["items"])
    by_roll = await (await client.get(f"/api/v1/users?q=R-stu2-{sfx}", headers=headers)).get_json()
    assert [u["id"] for u in by_roll["items"]] == [world.users["stu2"]]
    for bad in ("role=counselor", "state=gone", "limit=0", "q=" + "x" * 300, "q=a%00b"):
        response = await client.get(f"/api/v1/users?{bad}", headers=headers)
        assert response.status_code == 400, bad


async def test_edit_and_role_change_take_effect_at_once(client, world, bus):
    admin = await bearer(client, world.username("admin"))
    ops_tokens = await api_login(client, world.username("ops"))
    ops = {"Authorization": f"Bearer {ops_tokens['access_token']}"}
    assert (await client.get("/api/v1/devices", headers=ops)).status_code == 200
    ops_id = world.users["ops"]
    with bus.subscribe([user_topic(ops_id)]) as subscription:
        response = await client.patch(f"/api/v1/users/{ops_id}", headers=admin,
                                      json={"role": "faculty", "display_name": "Moved", "reason": "new job"})
        assert response.status_code == 200, await response.get_data(as_text=True)
        user = await response.get_json()
        assert (user["role"], user["display_name"]) == ("faculty", "Moved")
        message = await subscription.receive()
    assert isinstance(message, LiveAccountChanged)
    assert (message.user_id, message.role, message.active, message.deleted) == (ops_id, "faculty", True, False)
    # The same token, next request: the new role applies.
    assert (await client.get("/api/v1/devices", headers=ops)).status_code == 403
    # Student fields belong to students; a student keeps the student role.
    refused = await client.patch(f"/api/v1/users/{ops_id}", headers=admin, json={"roll_number": "R9"})
    assert refused.status_code == 400 and (await refused.get_json())["error"]["field"] == "roll_number"
    refused = await client.patch(f"/api/v1/users/{world.users['stu1']}", headers=admin, json={"role": "faculty"})
    assert refused.status_code == 409 and (await refused.get_json())["error"]["code"] == "refused"
    assert (await client.patch(f"/api/v1/users/{ops_id}", headers=admin, json={})).status_code == 400
    assert (await client.patch("/api/v1/users/usr-none", headers=admin, json={"display_name": "x"})).status_code == 404


async def test_deactivate_stops_tokens_and_reactivate(client, world, bus):
    admin = await bearer(client, world.username("admin"))
    student = world.users["stu2"]
    tokens = await api_login(client, student)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    with bus.subscribe([user_topic(student)]) as subscription:
        response = await client.post(f"/api/v1/users/{student}/deactivate", headers=admin,
                                     json={"reason": "left the college"})
        assert response.status_code == 200
        assert (await response.get_json())["active"] is False
        message = await subscription.receive()
    assert isinstance(message, LiveAccountChanged) and message.active is False
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401
    login = await client.post("/api/v1/auth/login", json={"username": student, "password": "x" * 12})
    assert login.status_code == 401
    listed = await (await client.get(f"/api/v1/users?q={student}&state=deactivated", headers=admin)).get_json()
    assert [u["id"] for u in listed["items"]] == [student]
    response = await client.post(f"/api/v1/users/{student}/reactivate", headers=admin, json={})
    assert response.status_code == 200 and (await response.get_json())["active"] is True
    await api_login(client, student)  # logs in again


async def test_admin_guards_on_oneself(client, world):
    admin_id = world.users["admin"]
    headers = await bearer(client, admin_id)
    for method, path, body in (("post", f"/api/v1/users/{admin_id}/deactivate", {}),
                               ("patch", f"/api/v1/users/{admin_id}", {"role": "ops"}),
                               ("delete", f"/api/v1/users/{admin_id}", None)):
        kwargs = {} if body is None else {"json": body}
        response = await getattr(client, method)(path, headers=headers, **kwargs)
        assert response.status_code == 409, path
        error = (await response.get_json())["error"]
        assert error["code"] == "refused" and "your own" in error["message"]


async def test_delete_refused_with_reason_then_allowed(client, world, db):
    headers = await bearer(client, world.username("admin"))
    response = await client.delete(f"/api/v1/users/{world.users['stu1']}", headers=headers)
    assert response.status_code == 409
    error = (await response.get_json())["error"]
    assert error["code"] == "records_kept" and "attendance" in error["message"] and "deactivate" in error["message"]
    response = await client.delete(f"/api/v1/users/{world.users['fac2']}", headers=headers)
    assert response.status_code == 409 and "teaches courses" in (await response.get_json())["error"]["message"]
    made = (await _create(client, headers, username=f"oops_{_sfx()}", display_name="Mistake", role="ops"))["user"]
    response = await client.delete(f"/api/v1/users/{made['id']}", headers=headers)
    assert response.status_code == 204
    assert (await client.get(f"/api/v1/users/{made['id']}", headers=headers)).status_code == 404
    assert (await client.delete(f"/api/v1/users/{made['id']}", headers=headers)).status_code == 404


async def test_deactivation_through_the_api_closes_open_websockets_within_a_second(app, client, world):
    await page_login(client, world.username("fac1"))
    admin_client = app.test_client()
    admin = await bearer(admin_client, world.username("admin"))
    async with client.websocket(f"/ws/sessions/{world.sessions['live1']}") as ws:
        with trio.fail_after(5):
            assert json.loads(await ws.receive())["type"] == "snapshot"
        response = await admin_client.post(f"/api/v1/users/{world.users['fac1']}/deactivate", headers=admin, json={})
        assert response.status_code == 200
        with trio.fail_after(1), pytest.raises(WebsocketDisconnectError) as closing:
            await ws.receive()
        assert closing.value.args[0] == 4401
