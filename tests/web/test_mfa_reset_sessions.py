"""An admin's MFA reset ends the user's sessions, as a password reset does (real PostgreSQL).

Whoever holds the lost phone may hold a session too: after the reset, the
user's access token is refused on its very next request, their refresh token
is dead and their open websockets are woken to close; a new login works.
"""
from __future__ import annotations

import pytest
import trio
import trio.testing
from test_mfa import auth, enrol
from web_helpers import api_login


@pytest.fixture
def ctx(ctx):
    ctx.mfa_required_roles = frozenset({"admin", "ops"})  # as `serve` runs (the web conftest makes it optional)
    return ctx


async def test_an_mfa_reset_ends_the_users_sessions_at_once(client, world, clock, ctx):
    admin, ops = world.username("admin"), world.username("ops")
    _, _, ops_tokens = await enrol(client, clock, ops)
    assert (await client.get("/api/v1/devices", headers=auth(ops_tokens))).status_code == 200
    _, _, admin_tokens = await enrol(client, clock, admin)

    woken = trio.Event()

    async def websocket_waiter() -> None:  # what an open websocket of the user waits on (web/ws.py)
        await ctx.protection.accounts.changed(ops)
        woken.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(websocket_waiter)
        await trio.testing.wait_all_tasks_blocked()  # the waiter is registered
        reset = await client.post(f"/api/v1/users/{ops}/mfa/reset", headers=auth(admin_tokens),
                                  json={"reason": "lost phone"})
        assert reset.status_code == 204
        with trio.fail_after(1):
            await woken.wait()

    after = await client.get("/api/v1/me", headers=auth(ops_tokens))
    assert after.status_code == 401 and (await after.get_json())["error"]["code"] == "token_revoked"
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": ops_tokens["refresh_token"]})
    assert refreshed.status_code == 401
    # A new login (password only now, held to enrolment again) is admitted within the same second.
    again = await api_login(client, ops)
    assert (await client.get("/api/v1/me", headers=auth(again))).status_code == 200
    assert (await client.get("/api/v1/devices", headers=auth(again))).status_code == 403
