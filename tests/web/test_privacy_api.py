"""``GET /api/v1/students/{id}/export`` and ``POST /api/v1/students/{id}/erase`` over HTTP.

Who may export whose data, what the zip holds, that both are written to the audit log, and that
erasure is refused for an active student and, for a former one, queues the terminals' removal.
(What erasure does to every table: tests/db/test_personal_data.py.)
"""
from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timezone
from functools import lru_cache

import pytest
from support.privacy_world import PrivacyWorld, build_privacy_world, make_former
from web_helpers import PASSWORD, bearer

from hub.core.passwords import hash_password
from hub.db import Database
from hub.db.personal_data import pseudonym


@lru_cache(maxsize=1)
def _password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
async def pw(db: Database, clock) -> PrivacyWorld:
    return await build_privacy_world(db, datetime.fromtimestamp(clock.now, timezone.utc), webhook=False,
                                     password_hash=_password_hash())


async def _zip(response) -> zipfile.ZipFile:
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/zip"
    assert "attachment" in response.headers["Content-Disposition"]
    return zipfile.ZipFile(io.BytesIO(await response.get_data()))


async def _exports(db: Database, student_id: str) -> list[str]:
    return [r["actor"] for r in await db.fetch(
        "SELECT actor FROM audit_log WHERE entity = 'personal_data' AND action = 'exported' AND entity_id = $1"
        " ORDER BY id", student_id)]


async def test_a_student_exports_their_own_data(client, db: Database, pw: PrivacyWorld):
    headers = await bearer(client, pw.target.username)
    archive = await _zip(await client.get(f"/api/v1/students/{pw.target.id}/export", headers=headers))
    names = archive.namelist()
    assert {"README.txt", "profile.json", "profile.csv", "attendance.json", "attendance.csv",
            "attendance_history.json", "leave_applications.json", "corrections.json", "condonation.json",
            "notifications.json", "checkin_flags.json"} <= set(names)
    documents = [n for n in names if n.startswith("documents/")]
    assert [archive.read(n) for n in documents] == [pw.target.document]
    profile = json.loads(archive.read("profile.json"))[0]
    assert (profile["id"], profile["display_name"], profile["email"]) == (pw.target.id, pw.target.name,
                                                                          pw.target.email)
    everything = "\n".join(archive.read(n).decode(errors="replace") for n in names)
    assert pw.other.id not in everything and pw.other.name not in everything
    assert await _exports(db, pw.target.id) == [pw.target.id]


async def test_nobody_else_but_an_admin_may_export(client, db: Database, pw: PrivacyWorld):
    path = f"/api/v1/students/{pw.other.id}/export"
    as_target = await client.get(path, headers=await bearer(client, pw.target.username))
    assert as_target.status_code == 403
    assert (await as_target.get_json())["error"]["code"] == "forbidden"
    as_faculty = await client.get(path, headers=await bearer(client, pw.usernames["faculty"]))
    assert as_faculty.status_code == 403
    assert (await client.get(path)).status_code == 401
    assert await _exports(db, pw.other.id) == []  # a refusal is not an export

    archive = await _zip(await client.get(path, headers=await bearer(client, pw.usernames["admin"])))
    assert json.loads(archive.read("profile.json"))[0]["id"] == pw.other.id
    assert await _exports(db, pw.other.id) == [pw.admin]
    unknown = await client.get(f"/api/v1/students/stu-none-{pw.sfx}/export",
                               headers=await bearer(client, pw.usernames["admin"]))
    assert unknown.status_code == 404


async def test_erasure_is_refused_for_an_active_student_then_done_for_a_former_one(client, ctx, db: Database,
                                                                                   pw: PrivacyWorld, tmp_path):
    ctx.audit_archive_dir = tmp_path  # an archive with no segment yet (tests/cli/test_users_erase_cli.py has some)
    admin = await bearer(client, pw.usernames["admin"])
    path = f"/api/v1/students/{pw.target.id}/erase"
    wrong = await client.post(path, json={"confirm": pw.other.id}, headers=admin)
    assert wrong.status_code == 400 and (await wrong.get_json())["error"]["field"] == "confirm"
    active = await client.post(path, json={"confirm": pw.target.id}, headers=admin)
    assert active.status_code == 409
    assert (await active.get_json())["error"]["code"] == "active"
    as_student = await client.post(path, json={"confirm": pw.target.id},
                                   headers=await bearer(client, pw.target.username))
    assert as_student.status_code == 403
    assert await db.fetchval("SELECT display_name FROM users WHERE id = $1", pw.target.id) == pw.target.name

    await make_former(db, pw, pw.target)
    assert await db.fetchval("SELECT count(*) FROM terminal_roster WHERE student_id = $1", pw.target.id) == 1
    done = await client.post(path, json={"confirm": pw.target.id, "reason": "request 7"}, headers=admin)
    assert done.status_code == 200, await done.get_data(as_text=True)
    body = await done.get_json()
    assert body["pseudonym"] == pseudonym(pw.target.id) and body["already_erased"] is False
    assert body["changed"]["leave_documents:delete"] == 1
    assert body["changed"]["audit_archive:redacted"] == 0
    # The roster planner removed the student from the terminal and queued the command that says so.
    assert body["terminal_commands"] >= 1
    assert await db.fetchval("SELECT count(*) FROM terminal_roster WHERE student_id = $1", pw.target.id) == 0
    entry = await db.fetchrow("SELECT actor, reason FROM audit_log WHERE entity = 'personal_data'"
                              " AND action = 'erased' AND entity_id = $1", pw.target.id)
    assert entry["actor"] == pw.admin and entry["reason"] == "request 7"
    login = await client.post("/api/v1/auth/login", json={"username": pw.target.username, "password": PASSWORD})
    assert login.status_code == 401

    archive = await _zip(await client.get(f"/api/v1/students/{pw.target.id}/export", headers=admin))
    everything = "\n".join(archive.read(n).decode(errors="replace") for n in archive.namelist())
    for marker in pw.markers(pw.target):
        assert marker not in everything
    assert json.loads(archive.read("profile.json"))[0]["username"] == body["pseudonym"]
