"""Login and API protection (web/protection.py): failed-login limits, per-user request limits, token freshness."""
from __future__ import annotations

import json

import pytest
import trio
from prometheus_client import CollectorRegistry
from quart.testing.connections import WebsocketDisconnectError
from web_helpers import PASSWORD, api_login, bearer, page_login

from hub.core.config import Settings
from hub.core.metrics import HubMetrics, limiter_decisions_counter
from web import create_app
from web.auth import ACCESS_TTL_S
from web.protection import AccountCache, AccountStanding, Protection

WRONG = "not the password at all"


def protect(ctx, *, login_limit_account: str = Settings.login_limit_account,
            login_limit_address: str = Settings.login_limit_address,
            api_rate_limits: str = Settings.api_rate_limits) -> CollectorRegistry:
    """Give the test app limiters of these settings; returns the registry their decisions are counted in."""
    registry = CollectorRegistry()
    settings = Settings(login_limit_account=login_limit_account, login_limit_address=login_limit_address,
                        api_rate_limits=api_rate_limits)
    ctx.protection = Protection(settings, limiter_decisions_counter(registry))
    return registry


def decisions(registry: CollectorRegistry, limiter: str, decision: str) -> float:
    value = registry.get_sample_value(
        "campushub_limiter_decisions_total", {"limiter": limiter, "decision": decision})
    return value or 0.0


async def try_login(client, username: str, password: str, address: str = "10.0.0.1"):
    return await client.post("/api/v1/auth/login", json={"username": username, "password": password},
                             scope_base={"client": (address, 40000)})


# --- failed logins ---------------------------------------------------------------------------

async def test_failed_logins_per_account_get_429_with_retry_after(client, ctx, world):
    registry = protect(ctx, login_limit_account="3/15 minutes")
    fac1 = world.username("fac1")
    for _ in range(3):
        assert (await try_login(client, fac1, WRONG)).status_code == 401
    refused = await try_login(client, fac1, PASSWORD)  # even the right password: the account is locked for now
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 15 * 60
    assert (await refused.get_json())["error"]["code"] == "rate_limited"
    # Another account from the same address is not affected.
    assert (await try_login(client, world.username("fac2"), PASSWORD)).status_code == 200
    assert decisions(registry, "login_account", "refused") == 1
    assert decisions(registry, "login_account", "allowed") == 4


async def test_a_successful_login_resets_the_account_window(client, ctx, world):
    protect(ctx, login_limit_account="3/15 minutes")
    fac1 = world.username("fac1")
    for _ in range(2):
        assert (await try_login(client, fac1, WRONG)).status_code == 401
    assert (await try_login(client, fac1, PASSWORD)).status_code == 200
    for _ in range(2):
        assert (await try_login(client, fac1, WRONG)).status_code == 401
    assert (await try_login(client, fac1, PASSWORD)).status_code == 200


async def test_failed_logins_per_address_get_429(client, ctx, world):
    registry = protect(ctx, login_limit_address="3/15 minutes")
    for key in ("fac1", "fac2", "stu1"):
        assert (await try_login(client, world.username(key), WRONG, "10.0.0.9")).status_code == 401
    refused = await try_login(client, world.username("stu2"), PASSWORD, "10.0.0.9")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    # Another address is not affected, and the address window counts failures only.
    for _ in range(5):
        assert (await try_login(client, world.username("stu2"), PASSWORD, "10.0.0.10")).status_code == 200
    assert decisions(registry, "login_address", "refused") == 1


async def test_behind_a_trusted_proxy_failed_logins_count_per_forwarded_client(ctx, world):
    """Behind a proxy every peer address is the proxy's: the limit must key on the client it forwarded."""
    protect(ctx, login_limit_address="3/15 minutes")
    proxied = create_app(ctx, trusted_proxies=["10.9.0.0/16"]).test_client()

    async def login(key: str, password: str, client_address: str):
        return await proxied.post("/api/v1/auth/login", json={"username": world.username(key), "password": password},
                                  headers={"X-Forwarded-For": client_address}, scope_base={"client": ("10.9.0.1", 1)})

    for key in ("fac1", "fac2", "stu1"):
        assert (await login(key, WRONG, "203.0.113.5")).status_code == 401
    assert (await login("stu2", PASSWORD, "203.0.113.5")).status_code == 429
    # Another client behind the same proxy is not locked out with it.
    assert (await login("stu2", PASSWORD, "203.0.113.6")).status_code == 200


async def test_unknown_user_and_wrong_password_get_the_same_answer(client, ctx, world):
    unknown = await try_login(client, "nobody_" + world.suffix, WRONG)
    wrong = await try_login(client, world.username("fac1"), WRONG)
    assert unknown.status_code == wrong.status_code == 401
    assert await unknown.get_json() == await wrong.get_json()


async def test_unknown_users_count_against_the_address_too(client, ctx, world):
    protect(ctx, login_limit_address="2/15 minutes")
    for n in range(2):
        assert (await try_login(client, f"ghost{n}_{world.suffix}", WRONG)).status_code == 401
    assert (await try_login(client, f"ghost9_{world.suffix}", WRONG)).status_code == 429


async def test_login_form_is_limited_too(client, ctx, world):
    protect(ctx, login_limit_account="2/15 minutes")
    fac1 = world.username("fac1")
    for _ in range(2):
        await page_login(client, fac1, WRONG)
    response = await page_login(client, fac1, PASSWORD)
    assert response.status_code == 429 and "Retry-After" in response.headers


async def test_parallel_wrong_logins_cannot_overrun_the_account_limit(client, ctx, world):
    protect(ctx, login_limit_account="5/15 minutes")
    statuses: list[int] = []

    async def attempt() -> None:
        statuses.append((await try_login(client, world.username("fac1"), WRONG)).status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(attempt)
    assert sorted(statuses) == [401] * 5 + [429] * 15


# --- API request limits -----------------------------------------------------------------------

async def test_api_requests_per_user_are_limited_with_retry_after(client, ctx, world):
    registry = protect(ctx, api_rate_limits="5/10 seconds;100/minute")
    headers = await bearer(client, world.username("fac1"))
    for _ in range(5):
        assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    refused = await client.get("/api/v1/me", headers=headers)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 10
    assert (await refused.get_json())["error"]["code"] == "rate_limited"
    # Per user: another user still gets through.
    assert (await client.get("/api/v1/me", headers=await bearer(client, world.username("fac2")))).status_code == 200
    assert decisions(registry, "api", "refused") == 1
    assert decisions(registry, "api", "allowed") == 6


async def test_websockets_and_static_files_are_exempt(client, ctx, world):
    protect(ctx, api_rate_limits="2/10 seconds")
    await page_login(client, world.username("fac1"))
    for _ in range(2):
        assert (await client.get("/api/v1/me")).status_code == 200
    assert (await client.get("/api/v1/me")).status_code == 429
    async with client.websocket(f"/ws/sessions/{world.sessions['live1']}") as ws:
        with trio.fail_after(5):
            assert json.loads(await ws.receive())["type"] == "snapshot"
    for _ in range(5):
        assert (await client.get("/static/app.css")).status_code == 200


def test_limiter_decisions_are_on_the_hub_metrics():
    metrics = HubMetrics()
    Protection(Settings(), metrics.limiter_decisions).api.request("u1")
    text = metrics.render()
    assert 'campushub_limiter_decisions_total{decision="allowed",limiter="api"} 1.0' in text
    assert 'campushub_limiter_decisions_total{decision="refused",limiter="login_account"} 0.0' in text


def test_settings_refuse_a_malformed_limit():
    with pytest.raises(ValueError, match="api_rate_limits"):
        Settings(api_rate_limits="lots")
    assert Settings.from_env({"CAMPUSHUB_API_RATE_LIMITS": "7/second"}).api_rate_limits == "7/second"


# --- token freshness --------------------------------------------------------------------------

async def test_a_deactivated_users_token_is_refused_on_the_very_next_request(client, ctx, db, world):
    headers = await bearer(client, world.username("stu2"))
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    await db.execute("UPDATE users SET deactivated_at = now() WHERE id = $1", world.users["stu2"])
    ctx.protection.accounts.invalidate(world.users["stu2"])
    response = await client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert (await response.get_json())["error"]["code"] == "account_inactive"


async def test_a_deleted_users_token_is_refused(client, ctx, db, world):
    user_id = "gone_" + world.suffix
    await db.execute("INSERT INTO users (id, username, display_name, role, password_hash)"
                     " SELECT $1, $1, 'Gone', 'faculty', password_hash FROM users WHERE id = $2",
                     user_id, world.users["fac1"])
    pair = await api_login(client, user_id)
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    await db.execute("DELETE FROM refresh_tokens WHERE user_id = $1", user_id)
    await db.execute("DELETE FROM users WHERE id = $1", user_id)
    ctx.protection.accounts.invalidate(user_id)
    assert (await client.get("/faculty", headers=headers)).status_code in (302, 401)
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401


async def test_a_role_change_applies_to_the_existing_token_at_once(client, ctx, db, world):
    headers = await bearer(client, world.username("fac1"))
    roster = f"/api/v1/sessions/{world.sessions['live1']}/roster"
    assert (await client.get(roster, headers=headers)).status_code == 200
    await db.execute("UPDATE users SET role = 'student' WHERE id = $1", world.users["fac1"])
    ctx.protection.accounts.invalidate(world.users["fac1"])
    assert (await client.get(roster, headers=headers)).status_code == 403
    # And the other way: a token issued to a student now carries faculty rights.
    await db.execute("UPDATE users SET role = 'faculty' WHERE id = $1", world.users["fac1"])
    ctx.protection.accounts.invalidate(world.users["fac1"])
    assert (await client.get(roster, headers=headers)).status_code == 200


async def test_standing_is_cached_until_invalidated(client, ctx, db, world):
    headers = await bearer(client, world.username("stu3"))
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    await db.execute("UPDATE users SET deactivated_at = now() WHERE id = $1", world.users["stu3"])
    # Cached (no invalidate yet): one query per account per TTL, not per request.
    assert (await client.get("/api/v1/notifications", headers=headers)).status_code == 200
    ctx.protection.accounts.invalidate(world.users["stu3"])
    assert (await client.get("/api/v1/notifications", headers=headers)).status_code == 401


async def test_cache_entries_expire_after_their_ttl(db, world):
    now = [0.0]
    cache = AccountCache(ttl_s=30, clock=lambda: now[0])
    assert (await cache.standing(db, world.users["stu1"])).active
    await db.execute("UPDATE users SET deactivated_at = now() WHERE id = $1", world.users["stu1"])
    assert (await cache.standing(db, world.users["stu1"])).active
    now[0] = 31.0
    assert not (await cache.standing(db, world.users["stu1"])).active


async def test_api_logout_recalls_the_access_token_it_carries(client, world):
    pair = await api_login(client, world.username("fac1"))
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    response = await client.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]},
                                 headers=headers)
    assert response.status_code == 204
    refused = await client.get("/api/v1/me", headers=headers)
    assert refused.status_code == 401
    assert (await refused.get_json())["error"]["code"] == "token_revoked"
    # Other sessions of the same user are untouched.
    assert (await client.get("/api/v1/me", headers=await bearer(client, world.username("fac1")))).status_code == 200


async def test_open_websockets_close_within_a_second_of_deactivation(client, ctx, db, world):
    await page_login(client, world.username("fac1"))
    async with client.websocket(f"/ws/sessions/{world.sessions['live1']}") as ws:
        with trio.fail_after(5):
            assert json.loads(await ws.receive())["type"] == "snapshot"
        await db.execute("UPDATE users SET deactivated_at = now() WHERE id = $1", world.users["fac1"])
        ctx.protection.accounts.invalidate(world.users["fac1"])
        with trio.fail_after(1), pytest.raises(WebsocketDisconnectError) as closing:
            await ws.receive()
        assert closing.value.args[0] == 4401


async def test_open_websockets_of_a_demoted_user_close_within_a_second(client, ctx, db, world):
    await page_login(client, world.username("fac1"))
    async with client.websocket(f"/ws/sessions/{world.sessions['live1']}") as ws:
        with trio.fail_after(5):
            assert json.loads(await ws.receive())["type"] == "snapshot"
        await db.execute("UPDATE users SET role = 'student' WHERE id = $1", world.users["fac1"])
        ctx.protection.accounts.invalidate(world.users["fac1"])
        with trio.fail_after(1), pytest.raises(WebsocketDisconnectError) as closing:
            await ws.receive()
        assert closing.value.args[0] == 4401


async def test_an_unrelated_account_change_leaves_websockets_open(client, ctx, world):
    await page_login(client, world.username("fac1"))
    async with client.websocket(f"/ws/sessions/{world.sessions['live1']}") as ws:
        with trio.fail_after(5):
            assert json.loads(await ws.receive())["type"] == "snapshot"
        ctx.protection.accounts.invalidate(world.users["fac1"])  # e.g. a display-name edit
        with trio.move_on_after(0.5) as waited:
            await ws.receive()
        assert waited.cancelled_caught


# --- the browser refresh grace window ---------------------------------------------------------

async def test_a_stolen_refresh_cookie_within_the_grace_window_gets_nothing(client, db, world, clock):
    browser = {"User-Agent": "VictimBrowser/1.0"}
    await client.post("/login", form={"username": world.username("fac1"), "password": PASSWORD}, headers=browser)
    stolen = {c.name: c.value for c in client.cookie_jar}
    clock.advance(ACCESS_TTL_S + 5)
    assert (await client.get("/api/v1/me", headers=browser)).status_code == 200  # the victim's browser rotates

    thief = client.app.test_client()
    for name, value in stolen.items():
        thief.set_cookie("localhost", name, value)
    response = await thief.get("/api/v1/me", headers={"User-Agent": "Thief/2.0"},
                               scope_base={"client": ("203.0.113.7", 5555)})
    assert response.status_code == 401
    assert (await response.get_json())["error"]["code"] == "invalid_refresh_token"
    assert not [h for h in response.headers.getlist("Set-Cookie") if "ch_access=ey" in h]
    # The reuse alarm went off: every refresh token of the user is revoked.
    live = await db.fetchval(
        "SELECT count(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL", world.users["fac1"])
    assert live == 0


async def test_the_same_browser_still_shares_the_rotation(client, world, clock):
    browser = {"User-Agent": "SameBrowser/1.0"}
    await client.post("/login", form={"username": world.username("fac1"), "password": PASSWORD}, headers=browser)
    old = {c.name: c.value for c in client.cookie_jar}
    clock.advance(ACCESS_TTL_S + 5)
    assert (await client.get("/api/v1/me", headers=browser)).status_code == 200
    tab = client.app.test_client()
    for name, value in old.items():
        tab.set_cookie("localhost", name, value)
    assert (await tab.get("/api/v1/me", headers=browser)).status_code == 200


async def test_one_password_check_at_a_time_per_address_and_a_bounded_queue():
    from web.errors import WebError
    from web.protection import MAX_WAITING_PER_ADDRESS

    logins = Protection().logins
    inside: list[str] = []
    most = 0
    refused = 0

    async def login(address: str) -> None:
        nonlocal most, refused
        try:
            async with logins.turn(address):
                inside.append(address)
                most = max(most, inside.count("a"))
                await trio.sleep(0.01)
                inside.remove(address)
        except WebError as error:
            assert error.status == 429 and error.retry_after == 1
            refused += 1

    async with trio.open_nursery() as nursery:
        for _ in range(MAX_WAITING_PER_ADDRESS + 4):
            nursery.start_soon(login, "a")
        nursery.start_soon(login, "b")
    assert most == 1 and refused == 4
    assert not logins._turns  # nothing kept once everyone is done


async def test_a_logout_with_a_made_up_refresh_token_recalls_nothing(client, world):
    pair = await api_login(client, world.username("fac2"))
    headers = {"Authorization": f"Bearer {pair['access_token']}"}
    response = await client.post("/api/v1/auth/logout", json={"refresh_token": "made-up"}, headers=headers)
    assert response.status_code == 204
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200


def test_account_standing_admits_only_tokens_issued_since_the_cutoff():
    assert AccountStanding(role="student", active=True).admits(0.0)
    cut = AccountStanding(role="student", active=True, sessions_valid_from=1_000.5)
    assert not cut.admits(1_000.0)
    assert cut.admits(1_001.0)
