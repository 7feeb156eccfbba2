"""Notification centre: the contract functions, the API (list, unread, read marks), the live /ws/me feed,
webhook queueing and the admin webhook API."""
from __future__ import annotations

import json

import trio
from web_helpers import bearer, page_login

from hub.core.bus import user_topic
from hub.db.notifications import NewNotification, add_notifications, publish_notifications


async def notify(db, bus, *notes: NewNotification) -> list[dict]:
    rows = await db.run(lambda conn: add_notifications(conn, list(notes)), transaction=True)
    publish_notifications(bus, rows)
    return rows


def note(user_id: str, kind: str = "leave_decided", title: str = "Leave approved", **data) -> NewNotification:
    return NewNotification(user_id, kind, title, f"{title}.", link="/student", data=data)


async def recv(ws, timeout: float = 5.0) -> dict:
    with trio.fail_after(timeout):
        return json.loads(await ws.receive())


async def test_add_notifications_returns_rows_in_order_and_publishes_them_to_each_user(db, bus, world):
    stu1, stu2 = world.users["stu1"], world.users["stu2"]
    with bus.subscribe([user_topic(stu1)]) as mine, bus.subscribe([user_topic(stu2)]) as theirs:
        rows = await notify(db, bus, note(stu1, day="mon"), note(stu2), note(stu1, "correction_decided", "Fixed"))
        assert [r["user_id"] for r in rows] == [stu1, stu2, stu1]
        assert rows[0]["data"] == {"day": "mon"} and rows[0]["read"] is False and rows[0]["read_at"] is None
        got = [json.loads((await mine.receive()).json), json.loads((await mine.receive()).json)]
        assert [m["notification"]["id"] for m in got] == [rows[0]["id"], rows[2]["id"]]
        assert all(m["type"] == "notification" for m in got)
        assert json.loads((await theirs.receive()).json)["notification"]["id"] == rows[1]["id"]
    assert await db.run(lambda conn: add_notifications(conn, [])) == []


async def test_the_centre_lists_counts_and_marks_read(client, db, bus, world):
    stu1 = world.users["stu1"]
    rows = await notify(db, bus, *(note(stu1, title=f"n{i}") for i in range(3)))
    await notify(db, bus, note(world.users["stu2"], title="not yours"))
    headers = await bearer(client, world.username("stu1"))

    body = await (await client.get("/api/v1/notifications?limit=2", headers=headers)).get_json()
    assert [n["title"] for n in body["items"]] == ["n2", "n1"]  # newest first
    assert (body["total"], body["unread"], body["limit"], body["offset"]) == (3, 3, 2, 0)

    read = await client.post(f"/api/v1/notifications/{rows[0]['id']}/read", json={}, headers=headers)
    assert read.status_code == 200 and (await read.get_json())["read"] is True
    again = await client.post(f"/api/v1/notifications/{rows[0]['id']}/read", json={}, headers=headers)
    assert (await again.get_json())["read_at"] == (await read.get_json())["read_at"]  # idempotent
    assert (await (await client.get("/api/v1/notifications/unread-count", headers=headers)).get_json()) == {"unread": 2}
    unread = await (await client.get("/api/v1/notifications?unread=true", headers=headers)).get_json()
    assert [n["title"] for n in unread["items"]] == ["n2", "n1"] and unread["total"] == 2

    done = await client.post("/api/v1/notifications/read-all", json={}, headers=headers)
    assert await done.get_json() == {"updated": 2, "unread": 0}
    assert (await (await client.get("/api/v1/notifications/unread-count", headers=headers)).get_json()) == {"unread": 0}


async def test_nobody_can_read_or_mark_someone_elses_notification(client, db, bus, world):
    [theirs] = await notify(db, bus, note(world.users["stu2"]))
    for user in ("stu1", "admin", "fac1"):
        headers = await bearer(client, world.username(user))
        response = await client.post(f"/api/v1/notifications/{theirs['id']}/read", json={}, headers=headers)
        assert response.status_code == 404, user
        listed = await (await client.get("/api/v1/notifications", headers=headers)).get_json()
        assert theirs["id"] not in [n["id"] for n in listed["items"]]
    stu2 = await bearer(client, world.username("stu2"))
    assert (await (await client.get("/api/v1/notifications/unread-count", headers=stu2)).get_json())["unread"] == 1


async def test_bad_requests_are_clear_json_errors(client, world):
    headers = await bearer(client, world.username("stu1"))
    for method, path, kwargs, status, field in (
        ("get", "/api/v1/notifications?unread=maybe", {}, 400, "unread"),
        ("get", "/api/v1/notifications?limit=100000", {}, 400, "limit"),
        ("post", "/api/v1/notifications/abc/read", {"json": {}}, 404, None),
        ("post", "/api/v1/notifications/read-all", {"data": "x"}, 415, None),
    ):
        response = await getattr(client, method)(path, headers=headers, **kwargs)
        assert response.status_code == status, path
        error = (await response.get_json())["error"]
        assert error.get("field") == field and error["message"]


async def test_live_feed_sends_a_snapshot_then_only_the_users_own_notifications(client, db, bus, world):
    await notify(db, bus, note(world.users["fac1"], "attendance_warning", "Earlier"))
    await page_login(client, world.username("fac1"))
    async with client.websocket("/ws/me") as ws:
        snapshot = await recv(ws)
        assert (snapshot["type"], snapshot["feed"], snapshot["unread"]) == ("snapshot", "notifications", 1)
        assert [n["title"] for n in snapshot["items"]] == ["Earlier"]
        await notify(db, bus, note(world.users["fac2"], title="for someone else"))
        [fresh] = await notify(db, bus, note(world.users["fac1"], "attendance_warning", "Now"))
        message = await recv(ws)
        assert message == {"type": "notification", "notification": fresh}


async def test_the_notification_page_works_for_every_role(client, db, bus, world):
    for user in ("admin", "ops", "fac1", "stu1"):
        await notify(db, bus, note(world.users[user], title=f"hello {user}"))
        await page_login(client, world.username(user))
        page = await client.get("/notifications")
        assert page.status_code == 200, user
        html = await page.get_data(as_text=True)
        assert f"hello {user}" in html and 'id="unread-badge"' in html
        await client.post("/logout")


async def test_webhook_deliveries_are_queued_for_matching_active_subscriptions(client, db, bus, world):
    admin = await bearer(client, world.username("admin"))
    created = []
    for body in ({"url": "https://example.test/all"},
                 {"url": "https://example.test/leave", "kinds": ["leave_decided"]},
                 {"url": "https://example.test/off", "active": False}):
        response = await client.post("/api/v1/webhooks", json=body, headers=admin)
        assert response.status_code == 201
        created.append(await response.get_json())
    [n] = await notify(db, bus, note(world.users["stu1"], "leave_decided"))
    [w] = await notify(db, bus, note(world.users["stu1"], "attendance_warning"))

    async def kinds_for(sub: dict) -> list[tuple[str, int]]:
        body = await (await client.get(f"/api/v1/webhooks/{sub['id']}/deliveries", headers=admin)).get_json()
        return sorted((d["kind"], d["payload"]["notification"]["id"]) for d in body["items"]
                      if d["payload"]["notification"]["id"] in (n["id"], w["id"]))

    assert await kinds_for(created[0]) == sorted([("leave_decided", n["id"]), ("attendance_warning", w["id"])])
    assert await kinds_for(created[1]) == [("leave_decided", n["id"])]
    assert await kinds_for(created[2]) == []
    for sub in created:
        await client.delete(f"/api/v1/webhooks/{sub['id']}", headers=admin)


async def test_webhook_admin_api(client, world):
    admin = await bearer(client, world.username("admin"))
    response = await client.post("/api/v1/webhooks", json={
        "url": "https://hooks.example.test/campushub", "kinds": ["attendance_warning"], "description": "SIS"},
        headers=admin)
    assert response.status_code == 201
    created = await response.get_json()
    assert len(created["secret"]) >= 32 and created["secret_hint"] == "…" + created["secret"][-4:]
    path = f"/api/v1/webhooks/{created['id']}"
    shown = await (await client.get(path, headers=admin)).get_json()
    assert "secret" not in shown and shown["kinds"] == ["attendance_warning"]
    listed = await (await client.get("/api/v1/webhooks?limit=500", headers=admin)).get_json()
    assert created["id"] in [s["id"] for s in listed["items"]]

    patched = await client.patch(path, json={"active": False, "secret": "s" * 20}, headers=admin)
    assert patched.status_code == 200
    body = await patched.get_json()
    assert body["active"] is False and body["secret"] == "s" * 20

    for payload, field in (({"url": "ftp://x"}, "url"), ({"url": "https://x", "secret": "short"}, "secret"),
                           ({"url": "https://x", "kinds": "all"}, "kinds"), ({"url": "https://x", "active": "yes"},
                                                                            "active")):
        bad = await client.post("/api/v1/webhooks", json=payload, headers=admin)
        assert bad.status_code == 400 and (await bad.get_json())["error"]["field"] == field
    assert (await client.get(f"{path}/deliveries?state=lost", headers=admin)).status_code == 400

    fac = await bearer(client, world.username("fac1"))
    assert (await client.get("/api/v1/webhooks", headers=fac)).status_code == 403
    assert (await client.delete(path, headers=admin)).status_code == 204
    assert (await client.get(path, headers=admin)).status_code == 404
    assert (await client.delete(path, headers=admin)).status_code == 404


async def test_webhook_targets_policy_and_delivery_log_redaction(client, db, bus, world):
    admin = await bearer(client, world.username("admin"))
    for url, why in (("http://169.254.169.254/latest/meta-data/", "link-local"),
                     ("http://metadata.google.internal/", "metadata host"),
                     ("http://[::ffff:169.254.169.254]/", "link-local"),
                     ("https://user:pass@hooks.example.test/", "user name or password"),
                     ("http://[::1", "absolute http(s) URL")):
        bad = await client.post("/api/v1/webhooks", json={"url": url}, headers=admin)
        error = (await bad.get_json())["error"]
        assert bad.status_code == 400 and error["code"] == "invalid_request" and error["field"] == "url"
        assert why in error["message"] and "user:pass" not in error["message"]
    # Loopback and private ranges are campus services: allowed.
    response = await client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/in?token=s3cret"},
                                 headers=admin)
    assert response.status_code == 201
    sub = await response.get_json()
    path = f"/api/v1/webhooks/{sub['id']}"
    patched = await client.patch(path, json={"url": "http://[fe80::1]/"}, headers=admin)
    assert patched.status_code == 400 and (await patched.get_json())["error"]["field"] == "url"
    assert (await (await client.get(path, headers=admin)).get_json())["url"] == "http://127.0.0.1:9/in?token=s3cret"

    # An error recorded before errors were redacted at the source is redacted in the delivery log.
    await notify(db, bus, note(world.users["stu1"]))
    await db.execute("UPDATE webhook_deliveries SET last_error = $2 WHERE subscription_id = $1", sub["id"],
                     "ConnectError: https://svc:hunter2@10.0.0.9/in?token=s3cret refused")
    log = await (await client.get(f"{path}/deliveries", headers=admin)).get_json()
    assert [d["last_error"] for d in log["items"]] == ["ConnectError: https://10.0.0.9/in?*** refused"]
    await client.delete(path, headers=admin)
