"""Login, tokens (access JWT + rotating refresh token), cookies, CSRF guards."""
from __future__ import annotations

import hashlib
import time

import jwt
import pytest
import trio
from web_helpers import JWT_SECRET, PASSWORD, api_login, bearer, page_login

from web.auth import ACCESS_TTL_S, BROWSER_REFRESH_GRACE_S, REFRESH_TTL_S


def cookie_headers(response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.getlist("Set-Cookie")}


# --- login ------------------------------------------------------------------------

@pytest.mark.parametrize("key, home", [("admin", "/admin"), ("fac1", "/faculty"), ("stu1", "/student"), ("ops", "/ops")])
async def test_login_form_sets_httponly_lax_cookies_and_redirects_by_role(client, world, key, home):
    response = await page_login(client, world.username(key))
    assert response.status_code == 303
    assert response.headers["Location"] == home
    cookies = cookie_headers(response)
    assert set(cookies) == {"ch_access", "ch_refresh"}
    for header in cookies.values():
        assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert (await client.get("/")).headers["Location"] == home


async def test_login_form_honours_only_local_next(client, world):
    ok = await client.post("/login?next=/faculty/sessions/x", form={"username": world.username("fac1"), "password": PASSWORD})
    assert ok.headers["Location"] == "/faculty/sessions/x"
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = await client.post(f"/login?next={evil}", form={"username": world.username("fac1"), "password": PASSWORD})
        assert response.headers["Location"] == "/faculty"


@pytest.mark.parametrize("who, password", [("fac1", "wrong password"), (None, PASSWORD)])
async def test_login_failure_is_401_without_cookies_and_same_message(client, world, who, password):
    username = world.username(who) if who else f"nobody_{world.suffix}"
    response = await page_login(client, username, password)
    assert response.status_code == 401
    assert "Set-Cookie" not in response.headers
    assert "Wrong username or password." in await response.get_data(as_text=True)
    api = await client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert api.status_code == 401
    assert await api.get_json() == {"error": {"code": "invalid_credentials", "message": "Wrong username or password."}}


async def test_login_form_refuses_cross_origin_post(client, world):
    response = await client.post(
        "/login", form={"username": world.username("fac1"), "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert "Set-Cookie" not in response.headers


async def test_passwords_and_refresh_tokens_are_stored_hashed(client, db, world):
    stored = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", world.users["fac1"])
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    tokens = await api_login(client, world.username("fac1"))
    rows = await db.fetch("SELECT token_hash FROM refresh_tokens WHERE user_id = $1", world.users["fac1"])
    raw = tokens["refresh_token"].encode()
    assert [bytes(r["token_hash"]) for r in rows] == [hashlib.sha256(raw).digest()]


async def test_api_login_issues_hs256_access_token_with_required_claims(client, world, clock):
    tokens = await api_login(client, world.username("stu1"))
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == ACCESS_TTL_S and tokens["refresh_expires_in"] == REFRESH_TTL_S
    assert tokens["user"] == {"id": world.users["stu1"], "username": world.users["stu1"],
                              "display_name": f"Stu1 {world.suffix}", "role": "student"}
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "HS256"
    claims = jwt.decode(tokens["access_token"], JWT_SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert set(claims) == {"sub", "role", "exp", "iat", "jti"}
    assert claims["sub"] == world.users["stu1"] and claims["role"] == "student"
    assert claims["exp"] - claims["iat"] == 15 * 60 and claims["iat"] == int(clock.now)


# --- refresh, reuse, logout ------------------------------------------------------------

async def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_family(client, world):
    first = await api_login(client, world.username("fac1"))
    second = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    second = await second.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert (await me.get_json())["id"] == world.users["fac1"]

    reused = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert (await reused.get_json())["error"]["code"] == "invalid_refresh_token"
    # The reuse is treated as theft: the token issued by the rotation is revoked too.
    after = await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert after.status_code == 401


async def test_refresh_token_expires(client, world, clock):
    tokens = await api_login(client, world.username("fac1"))
    clock.advance(REFRESH_TTL_S + 1)
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 401


async def test_api_logout_revokes_refresh_token(client, world):
    tokens = await api_login(client, world.username("ops"))
    response = await client.post("/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 204
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 401


async def test_page_logout_revokes_and_clears_cookies(client, db, world):
    await page_login(client, world.username("ops"))
    response = await client.post("/logout", headers={"Origin": "http://localhost"})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert all("Max-Age=0" in h or "Expires=Thu, 01 Jan 1970" in h for h in cookie_headers(response).values())
    live = await db.fetchval(
        "SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL", world.users["ops"]
    )
    assert live == 0
    assert (await client.get("/ops")).status_code == 302


async def test_get_logout_only_asks_so_another_site_cannot_log_a_user_out(client, db, world):
    await page_login(client, world.username("ops"))
    page = await client.get("/logout")
    html = await page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="logout-confirm-form" method="post" action="/logout"' in html
    assert not cookie_headers(page)
    assert (await client.get("/ops")).status_code == 200  # still logged in


async def test_cross_origin_logout_is_refused(client, db, world):
    await page_login(client, world.username("ops"))
    response = await client.post("/logout", headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    live = await db.fetchval(
        "SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL", world.users["ops"]
    )
    assert live == 1 and (await client.get("/ops")).status_code == 200


async def test_pages_log_out_with_a_form_post(client, world):
    await page_login(client, world.username("ops"))
    html = await (await client.get("/ops")).get_data(as_text=True)
    assert '<form class="logout-form" method="post" action="/logout"><button id="logout"' in html
    assert 'href="/logout"' not in html


# --- expired and forged access tokens --------------------------------------------------

async def test_expired_access_token_is_401(client, world, clock):
    headers = await bearer(client, world.username("admin"))
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    clock.advance(ACCESS_TTL_S + 1)
    response = await client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert (await response.get_json())["error"]["code"] == "token_expired"


def _forged(world) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": world.users["stu1"], "role": "admin", "iat": now, "exp": now + 600, "jti": "x"}
    good = jwt.encode({**claims, "role": "student"}, JWT_SECRET, algorithm="HS256")
    header, payload, signature = good.split(".")
    tampered_payload = jwt.encode(claims, JWT_SECRET, algorithm="HS256").split(".")[1]
    return {
        "wrong key": jwt.encode(claims, b"another-secret-another-secret-!!", algorithm="HS256"),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "tampered payload": f"{header}.{tampered_payload}.{signature}",
        "missing jti": jwt.encode({k: v for k, v in claims.items() if k != "jti"}, JWT_SECRET, algorithm="HS256"),
        "unknown role": jwt.encode({**claims, "role": "root"}, JWT_SECRET, algorithm="HS256"),
        "garbage": "not-a-jwt",
    }


@pytest.mark.parametrize("kind", ["wrong key", "alg none", "tampered payload", "missing jti", "unknown role", "garbage"])
async def test_forged_access_tokens_are_401(client, world, kind):
    token = _forged(world)[kind]
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    body = await response.get_json()
    assert body["error"]["code"] == "invalid_token" and body["error"]["message"]


async def test_authorization_header_must_be_bearer(client, world):
    response = await client.get("/api/v1/me", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert response.status_code == 401


async def test_forged_cookie_redirects_page_to_login_and_clears_cookies(client, world):
    client.set_cookie("localhost", "ch_access", _forged(world)["wrong key"])
    response = await client.get("/ops")
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=%2Fops"
    assert "ch_access" in cookie_headers(response)


async def test_unauthenticated_pages_redirect_and_api_answers_json_401(client):
    page = await client.get("/faculty")
    assert page.status_code == 302 and page.headers["Location"] == "/login?next=%2Ffaculty"
    api = await client.get("/api/v1/me")
    assert api.status_code == 401
    assert await api.get_json() == {"error": {"code": "unauthenticated", "message": "Log in first."}}


async def test_expired_cookie_session_is_refreshed_transparently(client, db, world, clock):
    await page_login(client, world.username("fac1"))
    clock.advance(ACCESS_TTL_S + 5)
    response = await client.get("/faculty")
    assert response.status_code == 200
    assert set(cookie_headers(response)) == {"ch_access", "ch_refresh"}
    # Exactly one live refresh token: the rotated one.
    live = await db.fetchval(
        "SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL", world.users["fac1"]
    )
    assert live == 1
    assert (await client.get("/api/v1/me")).status_code == 200


# --- API input rules ------------------------------------------------------------------

async def test_state_changing_api_requires_a_json_body(client, world):
    form = await client.post("/api/v1/auth/login", form={"username": world.username("fac1"), "password": PASSWORD})
    assert form.status_code == 415
    assert (await form.get_json())["error"]["code"] == "unsupported_media_type"
    missing = await client.post("/api/v1/auth/login", json={"username": world.username("fac1")})
    assert missing.status_code == 400
    assert (await missing.get_json())["error"] == {
        "code": "invalid_request", "message": "'password' is required (a non-empty string).", "field": "password",
    }


async def test_api_unknown_route_is_json_404(client):
    response = await client.get("/api/v1/nope")
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "not_found"


async def test_concurrent_browser_refreshes_share_one_rotation(client, db, world, clock):
    """Two tabs hitting an expired session at once both stay logged in (no false reuse alarm)."""
    await page_login(client, world.username("fac1"))
    clock.advance(ACCESS_TTL_S + 5)
    old_cookies = {c.name: c.value for c in client.cookie_jar}
    results = []

    async def request(path: str) -> None:
        results.append(await client.get(path))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(request, "/faculty")
        nursery.start_soon(request, "/api/v1/me")
    assert [r.status_code for r in results] == [200, 200]
    new_refresh = {cookie_headers(r)["ch_refresh"].split(";")[0] for r in results}
    assert len(new_refresh) == 1  # both responses carry the same rotated token
    live = await db.fetchval(
        "SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL", world.users["fac1"]
    )
    assert live == 1

    # Past the grace period the old refresh cookie is a reuse again: the session is revoked.
    clock.advance(BROWSER_REFRESH_GRACE_S + 1)
    stale = app_client_with(client, old_cookies)
    response = await stale.get("/api/v1/me")
    assert response.status_code == 401
    assert (await response.get_json())["error"]["code"] == "invalid_refresh_token"


def app_client_with(client, cookies: dict[str, str]):
    other = client.app.test_client()
    for name, value in cookies.items():
        other.set_cookie("localhost", name, value)
    return other
