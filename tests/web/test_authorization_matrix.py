"""Every documented API operation × {anonymous, admin, faculty, student, ops}, from the OpenAPI document.

Each operation declares who may call it in ``"x-roles"`` (``[]``: public). An
allowed role never gets 401/403; any other role gets 403 with the ``forbidden``
error; an anonymous caller gets 401 unless the operation is public. Generic:
operations added by any module listed in web/openapi.py are covered as they land.

Path parameters are filled so that ownership allows the allowed roles (the
world's stu1 is in fac1's course c1; live1 is a session of c1); ids of other
kinds are unknown ones, so an allowed role may get 404 or 400, never 401/403.
Bodies are ``{}``: role checks come before body validation.
"""
from __future__ import annotations

import re

import pytest
from web_helpers import bearer

from web.auth import ROLES
from web.openapi import DOCUMENT

ROLE_USERS = {"admin": "admin", "faculty": "fac1", "student": "stu1", "ops": "ops"}
METHODS = ("get", "post", "put", "patch", "delete")


def operations() -> list[tuple[str, str, dict]]:
    return [(path, method, op) for path, item in DOCUMENT["paths"].items()
            for method, op in item.items() if method in METHODS]


def test_every_operation_declares_its_roles():
    missing = [f"{m.upper()} {p}" for p, m, op in operations() if "x-roles" not in op]
    assert not missing, f"operations without x-roles: {missing}"
    unknown = {f"{m.upper()} {p}": op["x-roles"] for p, m, op in operations() if not set(op["x-roles"]) <= set(ROLES)}
    assert not unknown, unknown


def _integer_params(path: str, method: str) -> set[str]:
    item = DOCUMENT["paths"][path]
    params = [*item.get("parameters", []), *item[method].get("parameters", [])]
    return {p["name"] for p in params if p.get("in") == "path" and p.get("schema", {}).get("type") == "integer"}


def fill(path: str, method: str, world) -> str:
    """Known ids for ownership; for other ids an unknown one of the documented type (an int route
    converter would 404 a non-numeric id before any role check)."""
    known = {"student_id": world.users["stu1"], "course_id": world.courses["c1"],
             "session_id": world.sessions["live1"]}
    integers = _integer_params(path, method)

    def value(match: re.Match) -> str:
        name = match.group(1)
        return known.get(name) or ("987654321" if name in integers else f"unknown-{world.suffix}")

    return re.sub(r"\{(\w+)\}", value, path)


async def call(client, method: str, path: str, headers: dict):
    kwargs = {"json": {}} if method in ("post", "put", "patch") else {}
    return await getattr(client, method)(path, headers=headers, **kwargs)


@pytest.mark.parametrize("role", ["anonymous", *sorted(ROLE_USERS)])
async def test_role_against_every_operation(client, world, role):
    headers = {} if role == "anonymous" else await bearer(client, world.username(ROLE_USERS[role]))
    wrong = []
    for path, method, op in operations():
        roles = op["x-roles"]
        response = await call(client, method, fill(path, method, world), headers)
        status = response.status_code
        if not roles:  # public
            ok = status not in (401, 403)
        elif role == "anonymous":
            ok = status == 401
        elif role in roles:
            ok = status not in (401, 403)
        else:
            ok = status == 403 and (await response.get_json())["error"]["code"] == "forbidden"
        if not ok:
            wrong.append(f"{method.upper()} {path} ({roles}) -> {status}")
        assert status < 500, f"{method.upper()} {path} -> {status}"
    assert not wrong, "\n".join(wrong)
