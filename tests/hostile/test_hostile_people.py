"""Hostile input to the people API, over real HTTP against a running hub: oversized and control-character
names, NUL, unknown roles, privilege games, and a deactivated user's token."""
from __future__ import annotations

import httpx
from hostile_corpus import IMG_XSS, SCRIPT

from hub.db.seed import DEMO_PASSWORD

ERROR_KEYS = {"code", "message", "field"}


async def _token(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await http.post("/api/v1/auth/login", json={"username": username, "password": DEMO_PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _refused(response: httpx.Response, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) <= ERROR_KEYS and error["message"]
    if field is not None:
        assert error.get("field") == field, error


async def test_hostile_people_requests(hub, hostile_campus, test_db):
    student = hostile_campus.campus.students[-1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", timeout=30) as http:
        admin = await _token(http, "admin")
        users_before = await test_db.fetchval("SELECT count(*) FROM users")
        base = {"username": "hostile_user", "display_name": "Hostile", "role": "ops"}
        cases = [
            ({**base, "display_name": "x" * 10_000}, 400, "display_name"),
            ({**base, "display_name": "a\u0000b"}, 400, "display_name"),
            ({**base, "display_name": "tab\tname"}, 400, "display_name"),
            ({**base, "display_name": "   "}, 400, "display_name"),
            ({**base, "username": "a\u0000b"}, 400, "username"),
            ({**base, "username": "x" * 65}, 400, "username"),
            ({**base, "username": "../admin"}, 400, "username"),
            ({**base, "username": "line\nbreak"}, 400, "username"),
            ({**base, "role": "superadmin"}, 400, "role"),
            ({**base, "role": "Admin"}, 400, "role"),
            ({**base, "role": ["admin"]}, 400, "role"),
            ({**base, "email": "a@b.c" + "c" * 300}, 400, "email"),
            ({**base, "email": "x\u0000@example.edu"}, 400, "email"),
            ({**base, "role": "student", "roll_number": "R 1; DROP TABLE students"}, 400, "roll_number"),
            ({**base, "role": "student", "roll_number": "R1", "program": "p" * 101}, 400, "program"),
            ({**base, "username": "admin"}, 409, "username"),
        ]
        for body, status, field in cases:
            _refused(await http.post("/api/v1/users", json=body, headers=admin), status, field)
        _refused(await http.post("/api/v1/users", content=b"[1, 2]", headers={**admin, "Content-Type":
                                                                               "application/json"}), 400)
        _refused(await http.post("/api/v1/users", content=b"username=x", headers={
            **admin, "Content-Type": "application/x-www-form-urlencoded"}), 415)
        _refused(await http.get("/api/v1/users", params={"q": "x" * 1000}, headers=admin), 400, "q")
        _refused(await http.get("/api/v1/users", params={"q": "\u0000"}, headers=admin), 400)
        _refused(await http.get("/api/v1/users", params={"role": "root"}, headers=admin), 400, "role")
        _refused(await http.get("/api/v1/users", params={"offset": "-1"}, headers=admin), 400, "offset")
        _refused(await http.patch(f"/api/v1/users/{student.student_id}", json={"reason": "r" * 501}, headers=admin),
                 400, "reason")
        _refused(await http.delete("/api/v1/users/" + "x" * 5000, headers=admin), 404)
        assert await test_db.fetchval("SELECT count(*) FROM users") == users_before

        # Markup in a name is stored as text and comes back as JSON text (the page escapes it: textContent).
        made = await http.post("/api/v1/users", json={**base, "display_name": SCRIPT + IMG_XSS}, headers=admin)
        assert made.status_code == 201, made.text
        assert made.json()["user"]["display_name"] == SCRIPT + IMG_XSS

        # Nobody but an admin manages people; a student cannot promote themselves.
        own = await _token(http, student.username)
        _refused(await http.patch(f"/api/v1/users/{student.student_id}", json={"role": "admin"}, headers=own), 403)
        _refused(await http.post("/api/v1/users", json=base, headers=await _token(http, "ops")), 403)

        # A deactivated user's token stops on its very next request.
        assert (await http.get("/api/v1/me", headers=own)).status_code == 200
        off = await http.post(f"/api/v1/users/{student.student_id}/deactivate", json={}, headers=admin)
        assert off.status_code == 200, off.text
        assert (await http.get("/api/v1/me", headers=own)).status_code == 401
        login = await http.post("/api/v1/auth/login", json={"username": student.username, "password": DEMO_PASSWORD})
        assert login.status_code == 401
