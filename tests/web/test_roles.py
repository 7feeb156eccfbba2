"""Every role against every route, then record ownership (which session, which student)."""
from __future__ import annotations

import pytest
from web_helpers import bearer, page_login

ROLE_USERS = {"admin": "admin", "faculty": "fac1", "student": "stu1", "ops": "ops"}

# route template -> roles allowed (everyone else: 403). {live1} / {stu1} are filled from the world.
MATRIX = {
    "/faculty": {"faculty", "admin"},
    "/faculty/sessions/{live1}": {"faculty", "admin"},
    "/student": {"student"},
    "/student/qr.svg": {"student"},
    "/ops": {"ops", "admin"},
    "/admin": {"admin"},
    "/admin/people": {"admin"},
    "/api/v1/me": {"admin", "faculty", "student", "ops"},
    "/api/v1/sessions/{live1}/roster": {"faculty", "admin"},
    "/api/v1/students/{stu1}/attendance": {"student", "faculty", "admin"},
    "/api/v1/students/{stu1}/export": {"student", "admin"},
    "/api/v1/devices": {"ops", "admin"},
    "/api/v1/rejections": {"admin", "ops"},
    "/student/privacy": {"student"},
    "/api/v1/students/{stu1}/biometric-consent": {"student", "admin", "ops"},
    "/settings/thresholds": {"ops", "admin"},
    "/settings/webhooks": {"admin"},
    "/settings/tickets": {"ops", "admin"},
}


def _path(template: str, world) -> str:
    return template.format(live1=world.sessions["live1"], stu1=world.users["stu1"])


@pytest.mark.parametrize("role", sorted(ROLE_USERS))
async def test_role_matrix(client, world, role):
    headers = await bearer(client, world.username(ROLE_USERS[role]))
    outcome = {}
    for template in MATRIX:
        response = await client.get(_path(template, world), headers=headers)
        outcome[template] = response.status_code
        if response.status_code == 403 and template.startswith("/api/"):
            assert (await response.get_json())["error"]["code"] == "forbidden"
    assert outcome == {t: 200 if role in allowed else 403 for t, allowed in MATRIX.items()}


async def test_anonymous_gets_login_redirects_and_api_401s(client, world):
    for template in MATRIX:
        response = await client.get(_path(template, world))
        expected = 401 if template.startswith("/api/") else 302
        assert response.status_code == expected, template


async def test_home_redirects_by_role_with_bearer_too(client, world):
    for role, key in ROLE_USERS.items():
        response = await client.get("/", headers=await bearer(client, world.username(key)))
        assert response.status_code == 302
        assert response.headers["Location"] == f"/{'faculty' if role == 'faculty' else role}"


async def test_forbidden_page_renders_html_error(client, world):
    await page_login(client, world.username("stu1"))
    response = await client.get("/admin")
    assert response.status_code == 403
    assert 'id="error" data-status="403"' in await response.get_data(as_text=True)


# --- ownership ------------------------------------------------------------------

async def test_student_cannot_read_another_students_attendance(client, world):
    headers = await bearer(client, world.username("stu1"))
    own = await client.get(f"/api/v1/students/{world.users['stu1']}/attendance", headers=headers)
    assert own.status_code == 200
    other = await client.get(f"/api/v1/students/{world.users['stu2']}/attendance", headers=headers)
    assert other.status_code == 403
    # Same answer for an id that does not exist: no probing for student ids.
    ghost = await client.get(f"/api/v1/students/ghost_{world.suffix}/attendance", headers=headers)
    assert ghost.status_code == 403


async def test_faculty_sees_only_students_and_courses_they_teach(client, world):
    fac1 = await bearer(client, world.username("fac1"))
    fac2 = await bearer(client, world.username("fac2"))
    stu1 = f"/api/v1/students/{world.users['stu1']}/attendance"
    codes = lambda body: [c["course_code"] for c in body["courses"]]  # noqa: E731
    assert codes(await (await client.get(stu1, headers=fac1)).get_json()) == [f"C1-{world.suffix}"]
    assert codes(await (await client.get(stu1, headers=fac2)).get_json()) == [f"C2-{world.suffix}"]
    # stu2 takes only fac1's course.
    response = await client.get(f"/api/v1/students/{world.users['stu2']}/attendance", headers=fac2)
    assert response.status_code == 403
    admin = await bearer(client, world.username("admin"))
    assert codes(await (await client.get(stu1, headers=admin)).get_json()) == [f"C1-{world.suffix}", f"C2-{world.suffix}"]
    missing = await client.get(f"/api/v1/students/ghost_{world.suffix}/attendance", headers=admin)
    assert missing.status_code == 404


async def test_faculty_cannot_open_a_session_of_a_course_they_do_not_teach(client, world):
    live1 = world.sessions["live1"]
    fac2 = await bearer(client, world.username("fac2"))
    assert (await client.get(f"/faculty/sessions/{live1}", headers=fac2)).status_code == 403
    assert (await client.get(f"/api/v1/sessions/{live1}/roster", headers=fac2)).status_code == 403
    own = await client.get(f"/api/v1/sessions/{world.sessions['live2']}/roster", headers=fac2)
    assert own.status_code == 200
    missing = await client.get(f"/api/v1/sessions/nope_{world.suffix}/roster", headers=fac2)
    assert missing.status_code == 404


async def test_faculty_page_lists_only_own_sessions_live_highlighted(client, world):
    await page_login(client, world.username("fac1"))
    html = await (await client.get("/faculty")).get_data(as_text=True)
    assert f'data-session-id="{world.sessions["live1"]}"' in html
    assert world.sessions["live2"] not in html
    assert 'class="session-card session-live"' in html


async def test_admin_faculty_page_lists_all_courses(client, world):
    await page_login(client, world.username("admin"))
    html = await (await client.get("/faculty")).get_data(as_text=True)
    assert world.sessions["live1"] in html and world.sessions["live2"] in html
