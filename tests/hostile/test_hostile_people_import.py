"""Hostile people CSVs, activation-code guessing and oversized passwords, over real HTTP against a running hub.

Every file is refused with a clear reason (422 listing line, field and reason; 413 when too large;
nothing imported), and the hub stays responsive: a 100,000-column header or 20,000 rows are
answered at once.
"""
from __future__ import annotations

import time

import httpx

from hub.db.seed import DEMO_PASSWORD

HEADER = b"role,name,username,email,roll_number\n"
IMPORT = "/api/v1/users/import"


async def _admin(http: httpx.AsyncClient) -> dict[str, str]:
    response = await http.post("/api/v1/auth/login", json={"username": "admin", "password": DEMO_PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


#: name -> (body, content type, expected status, [(line, field, reason fragment)] of a 422)
CASES: dict[str, tuple[bytes, str, int, list[tuple[int, str | None, str]]]] = {
    **{f"formula {prefix!r}": (HEADER + b'faculty,"' + prefix + b'SUM(A1)",evil1,,\n', "text/csv", 422,
                                [(2, "name", "formula")])
       for prefix in (b"=", b"+", b"-", b"@", b"\t", b"\r")},
    "formula in the username": (HEADER + b"faculty,Ok,=cmd,,\n", "text/csv", 422, [(2, "username", "formula")]),
    "latin-1": (HEADER + "faculty,Jos\u00e9,jose1,,\n".encode("latin-1"), "text/csv", 422,
                [(2, None, "not UTF-8")]),
    "utf-16": ((HEADER + b"faculty,Ana,ana1,,\n").decode().encode("utf-16"), "text/csv", 422, [(1, None, "UTF-16")]),
    "duplicates": (HEADER + b"faculty,A,dupe1,d@x.example,\nfaculty,B,DUPE1,,\nops,C,other1,D@X.EXAMPLE,\n"
                   b"student,S,,,R-77\nstudent,T,,,R-77\n", "text/csv", 422,
                   [(3, "username", "duplicate username of line 2"), (4, "email", "duplicate email of line 2"),
                    (6, "username", "duplicate username of line 5")]),
    "NUL": (HEADER + b"faculty,A\x00B,nul1,,\n", "text/csv", 422, [(2, None, "NUL")]),
    "unclosed quote": (HEADER + b'faculty,"Ana,ana1,,\n', "text/csv", 422, [(2, None, "malformed")]),
    "empty": (b"", "text/csv", 422, [(1, None, "empty")]),
    "too many rows": (HEADER + b"".join(b"faculty,A,user%d,,\n" % i for i in range(20_001)), "text/csv", 422,
                      [(20_002, None, "too many rows")]),
    "huge": (HEADER + b"x" * (2 * 1024 * 1024), "text/csv", 413, []),
    "100k columns": (b"x," * 100_000 + b"\n", "text/csv", 422, [(1, "name", "'name'"), (1, "role", "'role'")]),
    "lone surrogate in JSON": (b'{"csv": "role,name,username\\nfaculty,A\\ud800,sur1\\n"}', "application/json", 422,
                               [(2, None, "surrogate")]),
    "wrong type": (b"role,name\n", "text/plain", 415, []),
}


async def test_hostile_people_files_are_refused_clearly_and_import_nothing(hub, hostile_campus, test_db):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", timeout=30) as http:
        admin = await _admin(http)
        users_before = await test_db.fetchval("SELECT count(*) FROM users")
        failures = []
        for name, (body, content_type, status, expected) in CASES.items():
            started = time.monotonic()
            response = await http.post(IMPORT, content=body, headers={**admin, "Content-Type": content_type})
            took = time.monotonic() - started
            if response.status_code != status:
                failures.append(f"{name}: {response.status_code} {response.text[:200]}")
                continue
            if took > 5:
                failures.append(f"{name}: took {took:.1f} s")
            if status == 422:
                errors = response.json()["errors"]
                got = [(e["line"], e["field"]) for e in errors]
                if got != [(line, field) for line, field, _ in expected]:
                    failures.append(f"{name}: {errors[:5]}")
                elif not all(fragment in e["reason"] for e, (_, _, fragment) in zip(errors, expected)):
                    failures.append(f"{name}: reasons {[e['reason'] for e in errors[:5]]}")
            else:
                assert response.json()["error"]["code"]
        assert not failures, "\n".join(failures)
        assert await test_db.fetchval("SELECT count(*) FROM users") == users_before
        assert await test_db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'imported'") == 0


async def test_guessing_activation_codes_is_throttled(hub, hostile_campus):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", timeout=30) as http:
        statuses = []
        for i in range(11):
            response = await http.post("/api/v1/activate",
                                       json={"code": f"AAAAA-BBBBB-CCCCC-{i:05d}", "password": "orbit lantern quiet mango"})
            statuses.append(response.status_code)
        assert statuses[:10] == [400] * 10 and statuses[10] == 429, statuses
        assert int(response.headers["Retry-After"]) > 0
        # The live check shares the throttle: no second oracle for codes.
        check = await http.post("/api/v1/password-check", json={"password": "x", "code": "AAAAA-BBBBB-CCCCC-DDDDD"})
        assert check.status_code == 429


async def test_oversized_and_nul_passwords_are_refused(hub, hostile_campus):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", timeout=30) as http:
        admin = await _admin(http)
        huge = await http.post("/api/v1/password-check", json={"password": "a" * 5000}, headers=admin)
        assert huge.status_code == 400 and huge.json()["error"]["field"] == "password"
        nul = await http.post("/api/v1/password-check", json={"password": "orbit lantern\u0000quiet"}, headers=admin)
        assert nul.status_code == 400
        long_ok = await http.post("/api/v1/password-check", json={"password": "b" * 1000}, headers=admin)
        assert long_ok.status_code == 200 and long_ok.json()["reason"] == "Use at most 128 characters."
