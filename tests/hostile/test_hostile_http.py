"""Every hostile HTTP request of the corpus, over real HTTP against a running hub; and HTML injection in pages."""
from __future__ import annotations

import base64
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from hostile_corpus import (
    API_WORLD_IDS,
    HTTP_CASES,
    IMG_XSS,
    SCRIPT,
    UNSET,
    WATCHED_TABLES,
    HttpCase,
    HttpWorld,
    authorization,
    leave_body,
)
from markupsafe import escape

from hub.db.notifications import NewNotification, add_notifications
from hub.db.seed import DEMO_PASSWORD

ERROR_KEYS = {"code", "message", "field"}


async def _login(http: httpx.AsyncClient, username: str) -> dict:
    response = await http.post("/api/v1/auth/login", json={"username": username, "password": DEMO_PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()


async def _faculty_of(db, session_id: str) -> str:
    return await db.fetchval(
        "SELECT u.username FROM class_sessions s JOIN courses c ON c.id = s.course_id"
        " JOIN users u ON u.id = c.faculty_id WHERE s.id = $1", session_id)


async def _world(http: httpx.AsyncClient, hub_settings, campus, db) -> HttpWorld:
    session = campus.sessions[0]
    # The last two enrolled students: the seed gives the first one demo leave and corrections.
    enrolled = next(s for s in campus.students if s.student_id == session.enrolled[-1])
    other = next(s for s in campus.students if s.student_id == session.enrolled[-2])
    logins = {
        "admin": await _login(http, "admin"),
        "ops": await _login(http, "ops"),
        "faculty": await _login(http, await _faculty_of(db, session.session_id)),
        "student": await _login(http, enrolled.username),
    }
    # A refresh token rotated once: presenting it again is a reuse.
    rotated = (await _login(http, "admin"))["refresh_token"]
    response = await http.post("/api/v1/auth/refresh", json={"refresh_token": rotated})
    assert response.status_code == 200, response.text
    world = HttpWorld(
        jwt_secret=hub_settings.jwt_secret.encode(),
        users={role: login["user"]["id"] for role, login in logins.items()},
        tokens={role: login["access_token"] for role, login in logins.items()},
        session_id=session.session_id, student_id=enrolled.student_id, other_student_id=other.student_id,
        rotated_refresh=rotated, rotated_successor=response.json()["refresh_token"],
    )
    other_token = (await _login(http, other.username))["access_token"]
    world.ids = await _api_rows(http, world, campus, db, other_token=other_token)
    assert set(world.ids) == set(API_WORLD_IDS)
    return world


async def _api_rows(http: httpx.AsyncClient, world: HttpWorld, campus, db, *, other_token: str) -> dict[str, str]:
    """The rows the API cases name, made through the API where it can (``API_WORLD_IDS``)."""
    session = campus.sessions[0]

    async def post(token: str, path: str, body: dict) -> dict:
        response = await http.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 201, (path, response.text)
        return response.json()

    student, admin = world.tokens["student"], world.tokens["admin"]
    pdf = {"filename": 'x<script>"evil".html\r\nSet-Cookie: a=b', "content_type": "application/pdf",
           "data_base64": base64.b64encode(b"%PDF-1.7\n%hostile\n%%EOF\n").decode()}
    own_leave = await post(student, "/api/v1/leave", leave_body(100, "Own leave", pdf))
    other_leave = await post(other_token, "/api/v1/leave", leave_body(100, "Other's leave", pdf))
    other_correction = await post(other_token, "/api/v1/corrections", {
        "session_id": session.session_id, "requested_status": "late", "reason": "Other's correction"})
    term = await post(admin, "/api/v1/terms", {"name": "Hostile term", "starts_on": "2030-01-07",
                                               "ends_on": "2030-05-01"})
    ticket = await post(student, "/api/v1/tickets", {"title": "Projector", "room_id": session.room_id})
    notes = await db.run(lambda conn: add_notifications(conn, [NewNotification(
        world.other_student_id, "attendance_warning", "Private", "Only for the other student")]))
    # Another faculty member's course and a session of it (nothing in the API makes a faculty user).
    other_faculty, other_course, other_session = "hostile-fac-2", "hostile-course-2", "hostile-session-2"
    await db.execute(
        "INSERT INTO users (id, username, display_name, role, password_hash)"
        " SELECT $1, $1, 'Prof. Other', 'faculty', password_hash FROM users WHERE id = $2",
        other_faculty, world.users["faculty"])
    await db.execute("INSERT INTO courses (id, code, title, faculty_id) VALUES ($1, 'OTH-2', 'Other course', $2)",
                     other_course, other_faculty)
    await db.execute(
        "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status)"
        " VALUES ($1, $2, $3, now() + interval '30 days', now() + interval '30 days 1 hour', 'scheduled')",
        other_session, other_course, campus.sessions[-1].room_id)
    device = next(d for d in campus.devices if d.room_id == session.room_id)
    return {
        "course_id": session.course_id, "room_id": session.room_id, "device_id": device.device_id,
        "term_id": term["id"], "ticket_id": str(ticket["id"]), "own_leave_id": str(own_leave["id"]),
        "other_leave_id": str(other_leave["id"]), "other_correction_id": str(other_correction["id"]),
        "other_notification_id": str(notes[0]["id"]), "other_course_id": other_course,
        "other_session_id": other_session,
    }


async def _send(http: httpx.AsyncClient, case: HttpCase, world: HttpWorld) -> httpx.Response:
    headers = {**authorization(case.auth, world), **case.headers}
    kwargs: dict = {}
    if case.refresh is not None:
        token = world.rotated_refresh if case.refresh == "rotated" else world.rotated_successor
        kwargs["json"] = {"refresh_token": token}
    elif case.json is not UNSET:
        kwargs["json"] = case.json(world) if callable(case.json) else case.json
    elif case.body is not None:
        kwargs["content"] = case.body
    elif case.chunked is not None:
        data = case.chunked

        async def chunks():
            for i in range(0, len(data), 64 * 1024):
                yield data[i:i + 64 * 1024]

        kwargs["content"] = chunks()
    http.cookies.clear()
    return await http.request(case.method, world.fill(case.path), headers=headers, **kwargs)


def _judge(case: HttpCase, response: httpx.Response) -> list[str]:
    problems = []
    if response.status_code != case.status:
        problems.append(f"status {response.status_code}, expected {case.status}: {response.text[:200]!r}")
        return problems
    content_type = response.headers.get("content-type", "")
    if case.code is not None:
        if not content_type.startswith("application/json"):
            return [f"content type {content_type!r}, expected JSON"]
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        # An error body is {"error": {...}}; a case with a check may carry more (an import's row errors).
        if (set(body) != {"error"} and case.check is None) or not isinstance(error, dict) \
                or not {"code", "message"} <= set(error) or not set(error) <= ERROR_KEYS \
                or not isinstance(error["message"], str) or not error["message"]:
            problems.append(f"error shape {str(body)[:300]!r}")
        elif error["code"] != case.code:
            problems.append(f"code {error['code']!r}, expected {case.code!r}: {error['message']!r}")
        elif case.check is not None and not case.check(body):
            problems.append(f"check failed on {response.text[:300]!r}")
    elif case.content_type is not None:
        if content_type != case.content_type:
            problems.append(f"content type {content_type!r}, expected {case.content_type!r}")
        for name, start in case.response_headers.items():
            if not response.headers.get(name, "").startswith(start):
                problems.append(f"{name}: {response.headers.get(name)!r}, expected {start!r}...")
    elif case.check is not None:
        if not content_type.startswith("application/json") or not case.check(response.json()):
            problems.append(f"check failed on {response.text[:300]!r}")
    else:
        if not content_type.startswith("text/html"):
            problems.append(f"content type {content_type!r}, expected an HTML page")
        for raw in case.absent:
            if raw in response.text:
                problems.append(f"{raw!r} came back unescaped")
        for escaped in case.present:
            if escaped not in response.text:
                problems.append(f"{escaped!r} missing")
    if response.headers.get("x-content-type-options") != "nosniff":
        problems.append("no X-Content-Type-Options: nosniff")
    return problems


_COUNTS = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t}) AS {t}" for t in WATCHED_TABLES)
#: The tables an injection could drop, less the daily partitions of ``sensor_readings``, ``events``
#: and ``processed_messages`` (hub/db/partitions.py): the hub's telemetry and retention actors
#: create and drop those by the date, at any moment of the test (their first passes run seconds
#: after boot, the next ones every hour), so they are no evidence of anything the requests did.
_TABLES = ("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
           " AND table_name !~ '^(sensor_readings|events|processed_messages)_p[0-9]{8}$' ORDER BY 1")


async def _counts(db) -> dict[str, int]:
    return dict(await db.fetchrow(_COUNTS))


async def test_every_hostile_http_request_gets_its_clear_refusal(hub, hub_settings, hostile_campus, test_db):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", timeout=30) as http:
        world = await _world(http, hub_settings, hostile_campus.campus, test_db)
        users_before = await test_db.fetch("SELECT id, username, role, password_hash FROM users ORDER BY id")
        tables_before = await test_db.fetch(_TABLES)
        leave_before = await test_db.fetch("SELECT id, status FROM leave_applications ORDER BY id")
        failures = []
        for case in HTTP_CASES:
            before = await _counts(test_db)
            try:
                response = await _send(http, case, world)
            except httpx.HTTPError as exc:
                failures.append(f"{case.name}: {type(exc).__name__}: {exc}")
                continue
            failures += [f"{case.name}: {problem}" for problem in _judge(case, response)]
            after = await _counts(test_db)
            changed = {t: after[t] - before[t] for t in WATCHED_TABLES if after[t] != before[t]}
            if changed != case.adds:
                failures.append(f"{case.name}: stored {changed}, expected {case.adds}")
        assert not failures, "\n".join(failures)

        # Nothing an injection or forged token tried changed who exists or who may do what,
        # dropped a table, or decided or cancelled anybody's leave.
        assert await test_db.fetch("SELECT id, username, role, password_hash FROM users ORDER BY id") == users_before
        assert await test_db.fetch(_TABLES) == tables_before
        assert [r for r in await test_db.fetch("SELECT id, status FROM leave_applications ORDER BY id")
                if r["id"] <= leave_before[-1]["id"]] == leave_before
        # The server is fine: healthy, and the genuine tokens still work.
        assert (await http.get("/healthz")).json()["status"] == "ok"
        me = await http.get("/api/v1/me", headers={"Authorization": f"Bearer {world.tokens['admin']}"})
        assert me.status_code == 200 and me.json()["role"] == "admin"
        metrics = (await http.get("/metrics")).text
    assert "campushub_actor_restarts_total 0.0" in metrics


async def test_injected_html_is_escaped_in_every_page(hub, hostile_campus, test_db):
    """Names, titles, device fields and rejection details holding markup come back escaped in every page."""
    campus = hostile_campus.campus
    session = campus.sessions[0]
    sfx = uuid.uuid4().hex[:8]
    xss_student = f"xss-{sfx}"
    now = datetime.now(timezone.utc)
    faculty = await _faculty_of(test_db, session.session_id)
    template_user = session.enrolled[0]  # only to copy a known password hash
    await test_db.execute(
        "INSERT INTO users (id, username, display_name, role, password_hash)"
        " SELECT $1, $1, $2, 'student', password_hash FROM users WHERE id = $3", xss_student, SCRIPT, template_user)
    await test_db.execute("INSERT INTO students (id, roll_number, token_secret) VALUES ($1, $2, $3)",
                          xss_student, IMG_XSS + sfx, os.urandom(32))
    await test_db.execute("INSERT INTO enrolments (course_id, student_id) VALUES ($1, $2)",
                          session.course_id, xss_student)
    course = f"xss-course-{sfx}"
    await test_db.execute(
        "INSERT INTO courses (id, code, title, faculty_id)"
        " SELECT $1, $2, $3, faculty_id FROM courses WHERE id = $4", course, f"XSS-{sfx}", SCRIPT, session.course_id)
    await test_db.execute("INSERT INTO enrolments (course_id, student_id) VALUES ($1, $2)", course, xss_student)
    xss_session = f"xss-session-{sfx}"
    await test_db.execute(
        "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at, status)"
        " VALUES ($1, $2, $3, $4, $5, 'closed')",
        xss_session, course, session.room_id, now - timedelta(hours=3), now - timedelta(hours=2))
    await test_db.execute(
        "INSERT INTO device_health (device_id, online, last_seen, last_change, reason, firmware)"
        " VALUES ($1, true, $2, $2, $3, $4)"
        " ON CONFLICT (device_id) DO UPDATE SET firmware = EXCLUDED.firmware, reason = EXCLUDED.reason",
        hostile_campus.ed25519.device_id, now, IMG_XSS, SCRIPT)
    await test_db.execute(
        "INSERT INTO rejected_events (dedup_key, device_id, topic, reason, detail, payload, received_at)"
        " VALUES ($1, $2, $3, 'not_enrolled', $4, $5, now())",
        os.urandom(16), SCRIPT, f"campushub/v1/dev/{IMG_XSS}/up", SCRIPT, SCRIPT.encode())

    escaped_script, escaped_img = str(escape(SCRIPT)), str(escape(IMG_XSS))
    ed25519_room = await test_db.fetchval("SELECT room_id FROM devices WHERE id = $1",
                                          hostile_campus.ed25519.device_id)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", timeout=30) as http:
        tokens = {
            "faculty": (await _login(http, faculty))["access_token"],
            "admin": (await _login(http, "admin"))["access_token"],
            "student": (await _login(http, xss_student))["access_token"],
        }
        pages = [
            ("faculty", f"/faculty/sessions/{session.session_id}", (escaped_script, escaped_img)),
            ("faculty", f"/faculty/sessions/{xss_session}", (escaped_script,)),
            ("admin", "/admin", (escaped_script,)),
            # The overview shows rooms, not device fields: the device's room page and its own page do.
            ("admin", f"/ops/rooms/{ed25519_room}", (escaped_script,)),
            ("admin", f"/ops/devices/{hostile_campus.ed25519.device_id}", (escaped_script, escaped_img)),
            ("student", "/student", (escaped_script,)),
        ]
        for role, path, expected in pages:
            response = await http.get(path, headers={"Authorization": f"Bearer {tokens[role]}"})
            assert response.status_code == 200, (path, response.status_code)
            assert response.headers["content-type"].startswith("text/html")
            html = response.text
            assert SCRIPT not in html and "<img src=x" not in html, path
            for form in expected:
                assert form in html, (path, form)
            assert "script-src 'self'" in response.headers["content-security-policy"]
        # The JSON API returns the name as data, never as a page.
        roster = await http.get(f"/api/v1/sessions/{session.session_id}/roster",
                                headers={"Authorization": f"Bearer {tokens['faculty']}"})
        assert roster.headers["content-type"].startswith("application/json")
        assert roster.headers["x-content-type-options"] == "nosniff"
        assert SCRIPT in [s["name"] for s in roster.json()["students"]]


async def test_markup_stored_through_the_new_api_is_escaped_in_its_pages(hub, hostile_campus, test_db):
    """Room, ticket, comment, device model, course, leave and correction text holding markup, stored
    through the API as data, comes back escaped in every server-rendered page that shows it."""
    campus = hostile_campus.campus
    session = campus.sessions[0]
    student = next(s for s in campus.students if s.student_id == session.enrolled[-1])
    faculty = await _faculty_of(test_db, session.session_id)
    escaped_script, escaped_img = str(escape(SCRIPT)), str(escape(IMG_XSS))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", timeout=30) as http:
        tokens = {"admin": (await _login(http, "admin"))["access_token"],
                  "faculty": (await _login(http, faculty))["access_token"],
                  "student": (await _login(http, student.username))["access_token"]}

        async def call(role: str, method: str, path: str, body: dict | None = None) -> dict:
            response = await http.request(method, path, json=body,
                                          headers={"Authorization": f"Bearer {tokens[role]}"})
            assert response.status_code in (200, 201), (path, response.text)
            return response.json()

        room = await call("admin", "POST", "/api/v1/rooms", {"name": SCRIPT, "building": IMG_XSS})
        ticket = await call("student", "POST", "/api/v1/tickets", {"title": SCRIPT, "description": IMG_XSS,
                                                                     "room_id": room["id"]})
        await call("student", "POST", f"/api/v1/tickets/{ticket['id']}/comments", {"body": IMG_XSS})
        await call("admin", "POST", "/api/v1/devices", {"device_id": "hostile-xss-model", "room_id": room["id"],
                                                        "kind": "sensor", "model": SCRIPT})
        await call("admin", "PUT", f"/api/v1/courses/{session.course_id}",
                   {"code": "XSS-1", "title": SCRIPT, "faculty_id": (await call("faculty", "GET", "/api/v1/me"))["id"]})
        await call("student", "POST", "/api/v1/leave", leave_body(150, SCRIPT))
        await call("student", "POST", "/api/v1/corrections",
                   {"session_id": session.session_id, "requested_status": "present", "reason": IMG_XSS})
        # Read back as data: verbatim.
        assert (await call("student", "GET", f"/api/v1/tickets/{ticket['id']}"))["title"] == SCRIPT

        pages = [
            ("admin", "/ops/tickets", (escaped_script,)),
            ("admin", "/ops", (escaped_script,)),
            ("admin", "/ops/devices/hostile-xss-model", (escaped_script,)),
            ("student", "/report", (escaped_script, escaped_img)),
            ("faculty", "/notifications", ()),
            ("faculty", "/faculty", (escaped_script,)),
            ("faculty", "/faculty/reports", (escaped_script,)),
            ("faculty", "/faculty/queues", ()),
            ("student", "/student", (escaped_script,)),
            ("student", "/student/corrections", ()),
            ("student", "/student/leave", ()),
            ("student", "/notifications", ()),
            ("admin", "/admin/academic", ()),
        ]
        for role, path, expected in pages:
            response = await http.get(path, headers={"Authorization": f"Bearer {tokens[role]}"})
            assert response.status_code == 200, (path, response.status_code)
            assert response.headers["content-type"].startswith("text/html")
            html = response.text
            assert SCRIPT not in html and "<img src=x" not in html, path
            for form in expected:
                assert form in html, (path, form)


def test_page_scripts_never_parse_markup():
    """Pages filled from the JSON API by our own scripts insert text, never markup: the stored
    names above reach those pages only through textContent / attributes."""
    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
             "createContextualFragment")
    static = Path(__file__).resolve().parents[2] / "web" / "static"
    found = [(js.name, sink) for js in sorted(static.glob("*.js")) for sink in sinks if sink in js.read_text()]
    assert not found, found
