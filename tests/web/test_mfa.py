"""Two-factor authentication against the real PostgreSQL: enrolment, the two-step login (API and form),
replay refusal, single-use recovery codes, the wrong-code limit, and admin/ops held to enrolment."""
from __future__ import annotations

import base64

import pyotp
import pytest
from test_authorization_matrix import call, fill, operations
from web_helpers import PASSWORD, api_login, page_login

from web.auth import MFA_PENDING_TTL_S
from web.mfa import MAX_FAILED_CODES, RECOVERY_CODE_COUNT, matching_step

#: Operations a role that must have MFA may call before enrolling (a forced password change may come first).
ENROLMENT_OPERATIONS = {("get", "/api/v1/me"), ("get", "/api/v1/me/mfa"), ("post", "/api/v1/me/mfa/enrolment"),
                        ("post", "/api/v1/me/mfa/enrolment/confirm"), ("post", "/api/v1/account/password")}


@pytest.fixture
def ctx(ctx):
    ctx.mfa_required_roles = frozenset({"admin", "ops"})  # as `serve` runs (the web conftest makes it optional)
    return ctx


def code_at(secret: str, now: float) -> str:
    return pyotp.TOTP(secret).at(now)


def auth(tokens: dict) -> dict:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def enrol(client, clock, username: str) -> tuple[str, list[str], dict]:
    """Enrol ``username`` through the API; its TOTP secret, recovery codes and the renewed tokens.

    Leaves the clock one step later, so the next code is not the enrolment's (which would be a replay).
    """
    tokens = await api_login(client, username)
    started = await client.post("/api/v1/me/mfa/enrolment", json={}, headers=auth(tokens))
    assert started.status_code == 200, await started.get_data(as_text=True)
    enrolment = await started.get_json()
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/CampusHub:")
    assert enrolment["qr_svg"].startswith("data:image/svg+xml;base64,")
    confirmed = await client.post("/api/v1/me/mfa/enrolment/confirm", headers=auth(tokens),
                                  json={"code": code_at(enrolment["secret"], clock.now)})
    assert confirmed.status_code == 200, await confirmed.get_data(as_text=True)
    body = await confirmed.get_json()
    clock.advance(30)
    return enrolment["secret"], body["recovery_codes"], body["tokens"]


async def password_step(client, username: str) -> str:
    answer = await api_login(client, username)
    assert answer["mfa_required"] is True and "access_token" not in answer
    assert answer["methods"] == ["totp", "recovery_code"] and 0 < answer["expires_in"] <= MFA_PENDING_TTL_S
    return answer["mfa_token"]


async def second_step(client, mfa_token: str, code: str):
    return await client.post("/api/v1/auth/login/mfa", json={"mfa_token": mfa_token, "code": code})


async def audit_actions(db, user_id: str) -> list[str]:
    rows = await db.fetch("SELECT action FROM audit_log WHERE entity = 'mfa' AND entity_id = $1 ORDER BY id", user_id)
    return [r["action"] for r in rows]


# --- admin and ops are held to enrolment -------------------------------------------------------

async def test_admin_without_mfa_may_only_enrol(client, world):
    tokens = await api_login(client, world.username("admin"))  # a password alone still logs in...
    headers = auth(tokens)
    refused = await client.get("/api/v1/devices", headers=headers)
    assert refused.status_code == 403
    assert (await refused.get_json())["error"]["code"] == "mfa_enrollment_required"
    me = await client.get("/api/v1/me", headers=headers)  # ...to enrol
    assert me.status_code == 200
    status = await (await client.get("/api/v1/me/mfa", headers=headers)).get_json()
    assert status == {"enabled": False, "required": True, "enrolment_pending": False, "enrolled_at": None,
                      "recovery_codes_left": 0}


@pytest.mark.parametrize("role", ["admin", "ops"])
async def test_every_other_operation_answers_mfa_enrollment_required(client, world, role):
    headers = auth(await api_login(client, world.username(role)))
    wrong = []
    for path, method, op in operations():
        if role not in op["x-roles"] or (method, path) in ENROLMENT_OPERATIONS:
            continue
        response = await call(client, method, fill(path, method, world), headers)
        body = await response.get_json(force=True, silent=True) or {}
        if response.status_code != 403 or body.get("error", {}).get("code") != "mfa_enrollment_required":
            wrong.append(f"{method.upper()} {path} -> {response.status_code}")
    assert not wrong, "\n".join(wrong)


async def test_enrolled_admin_gets_everything_back(client, world, clock, db):
    admin = world.username("admin")
    secret, codes, tokens = await enrol(client, clock, admin)
    assert len(codes) == RECOVERY_CODE_COUNT == len(set(codes))
    assert (await client.get("/api/v1/devices", headers=auth(tokens))).status_code == 200  # the renewed session
    assert await audit_actions(db, admin) == ["enrolled"]
    # From now on, a password alone is not a login.
    token = await password_step(client, admin)
    assert (await client.get("/api/v1/devices", headers={"Authorization": f"Bearer {token}"})).status_code == 401
    done = await second_step(client, token, code_at(secret, clock.now))
    assert done.status_code == 200, await done.get_data(as_text=True)
    new = await done.get_json()
    assert (await client.get("/api/v1/devices", headers=auth(new))).status_code == 200
    # A refresh keeps the second factor.
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert (await client.get("/api/v1/devices", headers=auth(await refreshed.get_json()))).status_code == 200


async def test_admin_cannot_turn_mfa_off_but_another_admin_can_reset_it(client, world, clock, db, ctx):
    admin, ops = world.username("admin"), world.username("ops")
    ops_secret, _, ops_tokens = await enrol(client, clock, ops)
    refused = await client.post("/api/v1/me/mfa/disable", headers=auth(ops_tokens),
                                json={"code": code_at(ops_secret, clock.now)})
    assert refused.status_code == 403 and (await refused.get_json())["error"]["code"] == "mfa_required"
    _, _, admin_tokens = await enrol(client, clock, admin)
    reset = await client.post(f"/api/v1/users/{ops}/mfa/reset", headers=auth(admin_tokens),
                              json={"reason": "lost phone"})
    assert reset.status_code == 204
    assert await audit_actions(db, ops) == ["enrolled", "removed"]
    row = await db.fetchrow("SELECT actor, reason FROM audit_log WHERE entity = 'mfa' AND action = 'removed'"
                            " AND entity_id = $1", ops)
    assert (row["actor"], row["reason"]) == (admin, "lost phone")
    again = await client.post(f"/api/v1/users/{ops}/mfa/reset", headers=auth(admin_tokens), json={})
    assert again.status_code == 409
    # ops logs in with a password again, and is held to enrolment again.
    ops_again = await api_login(client, ops)
    assert (await client.get("/api/v1/devices", headers=auth(ops_again))).status_code == 403


# --- codes: replay, recovery, limits ----------------------------------------------------------

async def test_a_code_is_refused_the_second_time_within_its_window(client, world, clock):
    fac = world.username("fac1")
    secret, _, _ = await enrol(client, clock, fac)
    code = code_at(secret, clock.now)
    assert (await second_step(client, await password_step(client, fac), code)).status_code == 200
    clock.advance(5)  # same 30 s window
    replay = await second_step(client, await password_step(client, fac), code)
    assert replay.status_code == 400 and (await replay.get_json())["error"]["code"] == "invalid_code"
    # An earlier window's code (still inside the drift allowance) is a replay too.
    earlier = code_at(secret, clock.now - 30)
    assert (await second_step(client, await password_step(client, fac), earlier)).status_code == 400
    clock.advance(30)
    assert (await second_step(client, await password_step(client, fac), code_at(secret, clock.now))).status_code == 200


async def test_recovery_codes_work_once_each(client, world, clock, db):
    fac = world.username("fac2")
    _, codes, _ = await enrol(client, clock, fac)
    first = await second_step(client, await password_step(client, fac), codes[0].upper().replace("-", " "))
    assert first.status_code == 200, await first.get_data(as_text=True)  # typed loosely: still accepted
    again = await second_step(client, await password_step(client, fac), codes[0])
    assert again.status_code == 400
    assert await audit_actions(db, fac) == ["enrolled", "recovery_used"]
    status = await (await client.get("/api/v1/me/mfa", headers=auth(await first.get_json()))).get_json()
    assert status["recovery_codes_left"] == RECOVERY_CODE_COUNT - 1


async def test_new_recovery_codes_replace_the_old_ones(client, world, clock):
    fac = world.username("fac1")
    secret, old, tokens = await enrol(client, clock, fac)
    fresh = await client.post("/api/v1/me/mfa/recovery-codes", headers=auth(tokens),
                              json={"code": code_at(secret, clock.now)})
    assert fresh.status_code == 200
    new = (await fresh.get_json())["recovery_codes"]
    assert (await second_step(client, await password_step(client, fac), old[1])).status_code == 400
    assert (await second_step(client, await password_step(client, fac), new[1])).status_code == 200


async def test_wrong_codes_are_limited_per_account(client, world, clock, ctx):
    fac = world.username("fac1")
    secret, _, _ = await enrol(client, clock, fac)
    token = await password_step(client, fac)
    right = code_at(secret, clock.now)
    wrong = next(c for c in ("000000", "111111", "222222") if matching_step(secret, c, clock.now) is None)
    responses = [await second_step(client, token, wrong) for _ in range(MAX_FAILED_CODES)]
    assert [r.status_code for r in responses] == [400] * (MAX_FAILED_CODES - 1) + [429]
    assert (await responses[-1].get_json())["error"]["code"] == "too_many_codes"
    # The login limiter (web/protection.py) holds the account too; its window is wall-clock time, so
    # forget it here: the code limit, kept in PostgreSQL, must hold by itself, even for the right code.
    ctx.protection.logins.succeeded(fac, "")
    locked = await second_step(client, await password_step(client, fac), right)
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert (await locked.get_json())["error"]["code"] == "too_many_codes"
    ctx.protection.logins.succeeded(fac, "")
    clock.advance(15 * 60 + 1)
    fresh = await second_step(client, await password_step(client, fac), code_at(secret, clock.now))
    assert fresh.status_code == 200


# --- pending-login tokens -----------------------------------------------------------------------

async def test_pending_login_tokens_expire_and_cannot_be_forged(client, world, clock):
    fac = world.username("fac1")
    secret, _, tokens = await enrol(client, clock, fac)
    token = await password_step(client, fac)
    code = code_at(secret, clock.now)
    for forged in (tokens["access_token"], token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "x" * 5000):
        response = await second_step(client, forged, code)
        assert response.status_code in (400, 401), forged[:20]
        assert (await response.get_json())["error"]["code"] in ("invalid_mfa_token", "invalid_request")
    clock.advance(MFA_PENDING_TTL_S + 1)
    expired = await second_step(client, token, code_at(secret, clock.now))
    assert expired.status_code == 401 and (await expired.get_json())["error"]["code"] == "invalid_mfa_token"


# --- optional for faculty and students ------------------------------------------------------------

async def test_faculty_may_turn_mfa_off_with_a_code(client, world, clock, db):
    fac = world.username("fac2")
    assert "access_token" in await api_login(client, fac)  # no MFA: one step, as before
    secret, _, tokens = await enrol(client, clock, fac)
    wrong = await client.post("/api/v1/me/mfa/disable", headers=auth(tokens), json={"code": "12345"})
    assert wrong.status_code == 400
    off = await client.post("/api/v1/me/mfa/disable", headers=auth(tokens), json={"code": code_at(secret, clock.now)})
    assert off.status_code == 204
    assert "access_token" in await api_login(client, fac)
    assert await audit_actions(db, fac) == ["enrolled", "removed"]


async def test_enrolment_cannot_start_twice_or_confirm_without_start(client, world, clock):
    stu = world.username("stu1")
    tokens = await api_login(client, stu)
    early = await client.post("/api/v1/me/mfa/enrolment/confirm", headers=auth(tokens), json={"code": "123456"})
    assert early.status_code == 409
    _, _, tokens = await enrol(client, clock, stu)
    again = await client.post("/api/v1/me/mfa/enrolment", headers=auth(tokens), json={})
    assert again.status_code == 409 and (await again.get_json())["error"]["code"] == "mfa_already_enabled"


async def test_the_seed_is_stored_sealed(client, world, clock, db):
    stu = world.username("stu2")
    secret, _, _ = await enrol(client, clock, stu)
    sealed = await db.fetchval("SELECT secret_sealed FROM user_mfa WHERE user_id = $1", stu)
    assert secret.encode() not in sealed and base64.b32decode(secret) not in sealed


# --- the login form -------------------------------------------------------------------------------

async def test_login_form_asks_for_the_code_then_logs_in(client, world, clock):
    fac = world.username("fac1")
    secret, _, _ = await enrol(client, clock, fac)
    first = await page_login(client, fac, PASSWORD)
    assert first.status_code == 200
    html = await first.get_data(as_text=True)
    assert 'id="mfa-form"' in html and 'name="mfa_token"' in html
    mfa_token = html.split('name="mfa_token" value="', 1)[1].split('"', 1)[0]
    wrong = await client.post("/login/mfa", form={"mfa_token": mfa_token, "code": "000000"})
    assert wrong.status_code == 400 and 'id="login-error"' in await wrong.get_data(as_text=True)
    done = await client.post("/login/mfa", form={"mfa_token": mfa_token, "code": code_at(secret, clock.now)})
    assert done.status_code == 303 and done.headers["Location"] == "/faculty"
    assert (await client.get("/faculty")).status_code == 200


async def test_admin_without_mfa_is_sent_to_enrol(client, world):
    response = await page_login(client, world.username("admin"))
    assert response.status_code == 303 and response.headers["Location"] == "/account/mfa"
    page = await client.get("/account/mfa")
    assert page.status_code == 200 and 'id="mfa-required"' in await page.get_data(as_text=True)
    assert (await client.get("/admin")).status_code == 403


async def test_cross_origin_second_step_is_refused(client, world, clock):
    fac = world.username("fac1")
    await enrol(client, clock, fac)
    token = await password_step(client, fac)
    response = await client.post("/login/mfa", form={"mfa_token": token, "code": "123456"},
                                 headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
