"""Hostile second factors over real HTTP against a running hub: a TOTP code replayed within its window
(sequentially and in a parallel race), forged and misused pending-login tokens, oversized and malformed
codes, and a brute force of codes, which the per-account limit stops."""
from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
import pyotp
import trio

from hub.db.seed import DEMO_PASSWORD
from web.mfa import MAX_FAILED_CODES


async def _enrolled_faculty(http: httpx.AsyncClient, campus) -> tuple[str, str]:
    """A seeded faculty member with TOTP on (enrolled through the API); their username and secret."""
    username = next(login.username for login in campus.logins if login.role == "faculty")
    tokens = (await http.post("/api/v1/auth/login", json={"username": username, "password": DEMO_PASSWORD})).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    secret = (await http.post("/api/v1/me/mfa/enrolment", json={}, headers=headers)).json()["secret"]
    confirmed = await http.post("/api/v1/me/mfa/enrolment/confirm", json={"code": pyotp.TOTP(secret).now()},
                                headers=headers)
    assert confirmed.status_code == 200, confirmed.text
    return username, secret


async def _pending(http: httpx.AsyncClient, username: str) -> str:
    answer = (await http.post("/api/v1/auth/login", json={"username": username, "password": DEMO_PASSWORD})).json()
    assert answer["mfa_required"] is True, answer
    return answer["mfa_token"]


async def _second(http: httpx.AsyncClient, mfa_token, code) -> httpx.Response:
    return await http.post("/api/v1/auth/login/mfa", json={"mfa_token": mfa_token, "code": code})


async def test_a_totp_code_replayed_within_its_window_is_refused(hub, hub_campus):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", timeout=30) as http:
        username, secret = await _enrolled_faculty(http, hub_campus)
        # A race: one fresh code sent 8 times at once wins exactly once. (The next step's code: the
        # enrolment used this one, and one step of clock drift is accepted.)
        code = pyotp.TOTP(secret).at(time.time() + 30)
        tokens = [await _pending(http, username) for _ in range(8)]
        statuses: list[int] = []

        async def attempt(token: str) -> None:
            statuses.append((await _second(http, token, code)).status_code)

        async with trio.open_nursery() as nursery:
            for token in tokens:
                nursery.start_soon(attempt, token)
        assert sorted(statuses) == [200] + [400] * 7
        # Replayed afterwards, within its window: refused.
        replay = await _second(http, await _pending(http, username), code)
        assert replay.status_code == 400 and replay.json()["error"]["code"] == "invalid_code"
        # The enrolment's own code (this step) is older than the last one used: refused as well.
        stale = await _second(http, await _pending(http, username), pyotp.TOTP(secret).now())
        assert stale.status_code == 400


async def test_wrong_pending_tokens_are_refused(hub, hub_campus, hub_settings):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", timeout=30) as http:
        username, secret = await _enrolled_faculty(http, hub_campus)
        token = await _pending(http, username)
        code = pyotp.TOTP(secret).at(time.time() + 30)
        header, claims, signature = token.split(".")
        decoded = json.loads(base64.urlsafe_b64decode(claims + "=="))
        other = next(login.username for login in hub_campus.logins if login.role == "admin")
        retargeted = base64.urlsafe_b64encode(json.dumps({**decoded, "sub": other}).encode()).rstrip(b"=").decode()
        access_key = hub_settings.jwt_secret.encode()
        forged = [
            f"{header}.{retargeted}.{signature}",                     # another user, old signature
            jwt.encode({**decoded, "sub": other}, access_key, algorithm="HS256"),  # signed with the access key
            jwt.encode({**decoded, "alg": "none"}, None, algorithm="none"),
            "", "x" * 2000, "\x00", token + ".",
        ]
        for bad in forged:
            response = await _second(http, bad, code)
            assert response.status_code in (400, 401), (bad[:30], response.status_code)
            assert response.json()["error"]["code"] in ("invalid_mfa_token", "invalid_request"), response.text
        # The pending token is no access token.
        as_access = await http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert as_access.status_code == 401
        # Not a JSON string, a huge code, a non-ASCII code: clear 400s, never 500.
        for body in ({"mfa_token": token, "code": 123456}, {"mfa_token": token, "code": "1" * 5000},
                     {"mfa_token": token, "code": "١٢٣٤٥٦"}, {"mfa_token": [token], "code": code}):
            response = await http.post("/api/v1/auth/login/mfa", json=body)
            assert response.status_code == 400, (body, response.text)
        # After all of that, the real token and code still work.
        assert (await _second(http, token, code)).status_code == 200


async def test_brute_force_of_codes_is_stopped(hub, hub_campus):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", timeout=30) as http:
        username, secret = await _enrolled_faculty(http, hub_campus)
        token = await _pending(http, username)
        statuses = []
        for guess in range(100):
            candidate = f"{guess:06d}"
            if pyotp.TOTP(secret).verify(candidate, valid_window=1):
                continue
            statuses.append((await _second(http, token, candidate)).status_code)
        assert statuses[:MAX_FAILED_CODES - 1] == [400] * (MAX_FAILED_CODES - 1)
        assert set(statuses[MAX_FAILED_CODES - 1:]) == {429}
        # The attacker knows the password: a new pending login does not reset the count (the login limiter
        # refuses the password step itself by now; the account's code limit would refuse the code).
        login = await http.post("/api/v1/auth/login", json={"username": username, "password": DEMO_PASSWORD})
        if login.status_code == 200:
            login = await _second(http, login.json()["mfa_token"], pyotp.TOTP(secret).at(time.time() + 30))
        assert login.status_code == 429 and int(login.headers["Retry-After"]) > 0
