"""Accounts over HTTP against the real PostgreSQL: the live password check, activation with a code,
changing one's own password, an admin's reset, and the people CSV import (dry run, apply, idempotent,
all or nothing, the codes as CSV)."""
from __future__ import annotations

import csv
import io
import uuid

import pytest
from web_helpers import PASSWORD, api_login, bearer, page_login

from hub.db.students import student_token_secret

pytestmark = pytest.mark.integration

NEW_PASSWORD = "orbit lantern quiet mango"


def _sfx() -> str:
    return uuid.uuid4().hex[:8]


def _people(sfx: str) -> str:
    return ("role,name,username,email,roll_number,program,section\n"
            f"student,Asha Rao,,asha_{sfx}@campus.example,R{sfx},B.Tech CSE,A\n"
            f"faculty,Meera Iyer,miyer_{sfx},,,,\n")


async def _import(client, headers, text: str, query: str = ""):
    return await client.post(f"/api/v1/users/import{query}", data=text.encode(),
                             headers={**headers, "Content-Type": "text/csv"})


async def test_import_dry_run_then_apply_then_reimport_changes_nothing(client, world, db):
    headers = await bearer(client, world.username("admin"))
    sfx = _sfx()
    dry = await _import(client, headers, _people(sfx), "?dry_run=1")
    assert dry.status_code == 200, await dry.get_data(as_text=True)
    body = await dry.get_json()
    assert body["dry_run"] is True and [c["username"] for c in body["created"]] == [f"R{sfx}", f"miyer_{sfx}"]
    assert all(c["activation_code"] is None for c in body["created"])
    assert await db.fetchval("SELECT count(*) FROM users WHERE username = $1", f"miyer_{sfx}") == 0

    applied = await _import(client, headers, _people(sfx))
    body = await applied.get_json()
    assert applied.status_code == 200 and body["dry_run"] is False and body["unchanged"] == 0
    codes = {c["username"]: c["activation_code"] for c in body["created"]}
    assert all(codes.values())
    student = await db.fetchval("SELECT id FROM students WHERE roll_number = $1", f"R{sfx}")
    assert len(await student_token_secret(db, student) or b"") == 32  # stored sealed (hub/db/sealed_secrets.py)

    again = await (await _import(client, headers, _people(sfx))).get_json()
    assert again == {"dry_run": False, "created": [], "unchanged": 2}

    # The faculty member activates with the code and logs in.
    activated = await client.post("/api/v1/activate", json={"code": codes[f"miyer_{sfx}"], "password": NEW_PASSWORD})
    assert activated.status_code == 200 and (await activated.get_json())["username"] == f"miyer_{sfx}"
    assert (await api_login(client, f"miyer_{sfx}", NEW_PASSWORD))["access_token"]


async def test_import_reports_every_bad_row_and_applies_nothing(client, world, db):
    headers = await bearer(client, world.username("admin"))
    sfx = _sfx()
    text = ("role,name,username,email,roll_number\n"
            f"faculty,Good Row,good_{sfx},,\n"
            f"faculty,=cmd|' /C calc'!A0,evil_{sfx},,\n"
            f"faculty,Taken,{world.users['fac1']},,\n"
            f"student,Dup,,,R-stu1-{world.suffix}\n"
            "wizard,Merlin,merlin,,\n")
    response = await _import(client, headers, text)
    assert response.status_code == 422
    body = await response.get_json()
    assert body["error"]["code"] == "import_rejected"
    assert [(e["line"], e["field"]) for e in body["errors"]] == [
        (3, "name"), (4, "name"), (5, "roll_number"), (6, "role")]
    assert await db.fetchval("SELECT count(*) FROM users WHERE username = $1", f"good_{sfx}") == 0


async def test_import_codes_as_csv_and_json_body_and_encoding(client, world):
    headers = await bearer(client, world.username("admin"))
    sfx = _sfx()
    response = await _import(client, headers, _people(sfx), "?format=csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await response.get_data(as_text=True))))
    assert [r["username"] for r in rows] == [f"R{sfx}", f"miyer_{sfx}"] and all(r["activation_code"] for r in rows)
    as_json = await client.post("/api/v1/users/import?dry_run=1", json={"csv": _people(sfx)}, headers=headers)
    assert (await as_json.get_json())["unchanged"] == 2
    latin1 = await client.post("/api/v1/users/import", data="role,name,username\nfaculty,José,jose1\n".encode("latin-1"),
                               headers={**headers, "Content-Type": "text/csv"})
    assert latin1.status_code == 422
    assert "not UTF-8" in (await latin1.get_json())["errors"][0]["reason"]
    wrong_type = await client.post("/api/v1/users/import", data=b"x", headers={**headers, "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415


async def test_password_check_explains_as_the_person_types(client, world):
    headers = await bearer(client, world.username("fac1"))
    short = await client.post("/api/v1/password-check", json={"password": "abc"}, headers=headers)
    assert (await short.get_json())["reason"] == "Use at least 12 characters (3 so far)."
    personal = await client.post("/api/v1/password-check", json={"password": f"{world.users['fac1']}!!"},
                                 headers=headers)
    assert (await personal.get_json())["reason"] == "The password is too close to your username, name or email."
    good = await client.post("/api/v1/password-check", json={"password": NEW_PASSWORD}, headers=headers)
    assert (await good.get_json())["ok"] is True
    anonymous = await client.post("/api/v1/password-check", json={"password": NEW_PASSWORD})
    assert anonymous.status_code == 401
    bad_code = await client.post("/api/v1/password-check", json={"password": NEW_PASSWORD, "code": "nope"})
    assert bad_code.status_code == 400 and (await bad_code.get_json())["error"]["code"] == "invalid_code"


async def test_change_own_password(client, world, db):
    user = world.username("stu2")
    headers = await bearer(client, user)
    wrong = await client.post("/api/v1/account/password",
                              json={"current_password": "not it", "new_password": NEW_PASSWORD}, headers=headers)
    assert wrong.status_code == 400 and (await wrong.get_json())["error"]["field"] == "current_password"
    weak = await client.post("/api/v1/account/password",
                             json={"current_password": PASSWORD, "new_password": "password1234"}, headers=headers)
    assert weak.status_code == 400 and (await weak.get_json())["error"]["code"] == "weak_password"
    changed = await client.post("/api/v1/account/password",
                                json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=headers)
    assert changed.status_code == 200, await changed.get_data(as_text=True)
    assert (await api_login(client, user, NEW_PASSWORD))["access_token"]
    old = await client.post("/api/v1/auth/login", json={"username": user, "password": PASSWORD})
    assert old.status_code == 401
    actions = await db.fetch("SELECT action FROM audit_log WHERE entity = 'account' AND entity_id = $1", user)
    assert [a["action"] for a in actions] == ["password_changed"]


async def test_admin_reset_gives_a_code_once_and_the_old_password_stops(client, world, db):
    admin = await bearer(client, world.username("admin"))
    target = world.username("stu3")
    target_headers = await bearer(client, target)
    response = await client.post(f"/api/v1/users/{target}/reset", json={"reason": "forgot"}, headers=admin)
    assert response.status_code == 200
    code = (await response.get_json())["code"]
    assert await db.fetchval("SELECT must_change_password FROM users WHERE id = $1", target)
    refused = await client.post("/api/v1/auth/login", json={"username": target, "password": PASSWORD})
    assert refused.status_code == 401
    # Until the new password is chosen, nothing but that works.
    weak = await client.post("/api/v1/activate", json={"code": code, "password": "password1234"})
    assert weak.status_code == 400 and (await weak.get_json())["error"]["code"] == "weak_password"
    done = await client.post("/api/v1/activate", json={"code": code, "password": NEW_PASSWORD})
    assert done.status_code == 200
    assert not await db.fetchval("SELECT must_change_password FROM users WHERE id = $1", target)
    assert (await api_login(client, target, NEW_PASSWORD))["access_token"]
    reused = await client.post("/api/v1/activate", json={"code": code, "password": "another fine long phrase"})
    assert reused.status_code == 400 and (await reused.get_json())["error"]["code"] == "invalid_code"
    assert target_headers  # the old session's refresh tokens were revoked by the reset (tests/db/test_accounts.py)


async def test_reset_refusals(client, world):
    admin = await bearer(client, world.username("admin"))
    own = await client.post(f"/api/v1/users/{world.users['admin']}/reset", json={}, headers=admin)
    assert own.status_code == 409
    missing = await client.post("/api/v1/users/nobody-here/reset", json={}, headers=admin)
    assert missing.status_code == 404
    faculty = await bearer(client, world.username("fac1"))
    assert (await client.post(f"/api/v1/users/{world.users['stu1']}/reset", json={}, headers=faculty)).status_code == 403


async def test_pages_render(client, world):
    page = await client.get("/activate?code=ABCDE-FGHJK")
    html = await page.get_data(as_text=True)
    assert page.status_code == 200 and 'value="ABCDE-FGHJK"' in html and "password.js" in html
    assert (await client.get("/account/password")).status_code in (302, 303, 401)


async def test_guessing_the_current_password_is_throttled_like_a_login(client, world):
    headers = await bearer(client, world.username("fac2"))
    statuses = []
    for _ in range(11):
        response = await client.post("/api/v1/account/password",
                                     json={"current_password": "guess guess guess", "new_password": NEW_PASSWORD},
                                     headers=headers)
        statuses.append(response.status_code)
    assert statuses[:10] == [400] * 10 and statuses[10] == 429, statuses


async def _fresh_person(client, admin_headers, role: str = "faculty") -> str:
    """A new account with NEW_PASSWORD set through its activation code (tests here change its password)."""
    username = f"p_{_sfx()}"
    made = await client.post("/api/v1/users", json={"username": username, "display_name": "Ravi Menon", "role": role},
                             headers=admin_headers)
    assert made.status_code == 201, await made.get_data(as_text=True)
    code = (await made.get_json())["activation"]["code"]
    assert (await client.post("/api/v1/activate", json={"code": code, "password": NEW_PASSWORD})).status_code == 200
    return username


async def test_admin_reset_ends_the_users_current_access_tokens(client, world):
    admin = await bearer(client, world.username("admin"))
    target = await _fresh_person(client, admin)
    session = await api_login(client, target, NEW_PASSWORD)
    held = {"Authorization": f"Bearer {session['access_token']}"}
    assert (await client.get("/api/v1/me", headers=held)).status_code == 200
    reset = await client.post(f"/api/v1/users/{session['user']['id']}/reset", json={}, headers=admin)
    assert reset.status_code == 200
    after = await client.get("/api/v1/me", headers=held)
    assert after.status_code == 401 and (await after.get_json())["error"]["code"] == "token_revoked"
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert refreshed.status_code == 401
    # The person's new session, even within the second of the reset (the app's clock stands still here), is admitted.
    code = (await reset.get_json())["code"]
    assert (await client.post("/api/v1/activate", json={"code": code, "password": "violet harbour seven kites"})
            ).status_code == 200
    fresh = await api_login(client, target, "violet harbour seven kites")
    assert (await client.get("/api/v1/me", headers={"Authorization": f"Bearer {fresh['access_token']}"})
            ).status_code == 200


async def test_changing_ones_password_ends_other_sessions_and_renews_this_one(client, world):
    admin = await bearer(client, world.username("admin"))
    user = await _fresh_person(client, admin)
    this = await api_login(client, user, NEW_PASSWORD)
    other = await api_login(client, user, NEW_PASSWORD)
    this_headers = {"Authorization": f"Bearer {this['access_token']}"}
    changed = await client.post("/api/v1/account/password", headers=this_headers,
                                json={"current_password": NEW_PASSWORD, "new_password": "violet harbour seven kites"})
    assert changed.status_code == 200, await changed.get_data(as_text=True)
    tokens = (await changed.get_json())["tokens"]
    for old in (this["access_token"], other["access_token"]):
        gone = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {old}"})
        assert gone.status_code == 401 and (await gone.get_json())["error"]["code"] == "token_revoked"
    renewed = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert renewed.status_code == 200
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 200, await again.get_data(as_text=True)
    # The other session cannot come back through its refresh token (presenting it is a reuse alarm).
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
            ).status_code == 401


async def test_changing_ones_password_in_the_browser_renews_the_cookies(app, world):
    admin_client = app.test_client()
    admin = await bearer(admin_client, world.username("admin"))
    user = await _fresh_person(admin_client, admin)
    browser, elsewhere = app.test_client(), app.test_client()
    for c in (browser, elsewhere):
        assert (await page_login(c, user, NEW_PASSWORD)).status_code == 303
    changed = await browser.post("/api/v1/account/password",
                                 json={"current_password": NEW_PASSWORD, "new_password": "violet harbour seven kites"})
    assert changed.status_code == 200 and "tokens" not in await changed.get_json()
    assert (await browser.get("/api/v1/me")).status_code == 200
    assert (await elsewhere.get("/api/v1/me")).status_code == 401
