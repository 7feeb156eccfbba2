"""Shapes of the JSON API, /healthz, /metrics, the QR code and the pages' stable hooks."""
from __future__ import annotations

from datetime import datetime

import pytest
from web_helpers import bearer, page_login

from schemas import TOKEN_WINDOW_SECONDS, issue_checkin_token
from web.app import create_app, create_metrics_app
from web.routes.student import render_qr_svg
from web.wording import rejection_words


async def test_roster_lists_enrolled_students_with_status_and_counts(client, world):
    headers = await bearer(client, world.username("fac1"))
    body = await (await client.get(f"/api/v1/sessions/{world.sessions['live1']}/roster", headers=headers)).get_json()
    assert body["session"]["session_id"] == world.sessions["live1"]
    assert body["session"]["live"] is True and body["session"]["ended"] is False
    by_id = {s["student_id"]: s for s in body["students"]}
    assert set(by_id) == {world.users["stu1"], world.users["stu2"]}
    assert by_id[world.users["stu1"]]["status"] == "present"
    assert datetime.fromisoformat(by_id[world.users["stu1"]]["checked_in_at"]).tzinfo is not None
    assert by_id[world.users["stu2"]]["checked_in_at"] is None
    assert by_id[world.users["stu2"]]["status"] == "not-yet"
    assert body["counts"] == {"present": 1, "late": 0, "absent": 0, "excused": 0, "not_yet": 1, "enrolled": 2}


async def test_ended_session_counts_missing_students_absent(client, world):
    headers = await bearer(client, world.username("fac1"))
    body = await (await client.get(f"/api/v1/sessions/{world.sessions['past1']}/roster", headers=headers)).get_json()
    assert body["session"]["ended"] is True
    assert {s["student_id"]: s["status"] for s in body["students"]} == {
        world.users["stu1"]: "present", world.users["stu2"]: "absent",
    }


async def test_student_attendance_per_course(client, world):
    headers = await bearer(client, world.username("stu1"))
    body = await (await client.get(f"/api/v1/students/{world.users['stu1']}/attendance", headers=headers)).get_json()
    assert body["student"]["student_id"] == world.users["stu1"]
    c1, c2 = body["courses"]
    assert [s["session_id"] for s in c1["sessions"]] == [world.sessions["live1"], world.sessions["past1"]]
    assert [s["status"] for s in c1["sessions"]] == ["present", "present"]
    assert (c1["attended"], c1["total"]) == (2, 2)
    assert [s["status"] for s in c2["sessions"]] == ["not-yet"]
    assert (c2["attended"], c2["total"]) == (0, 0)


async def test_devices_overview(client, world):
    headers = await bearer(client, world.username("ops"))
    body = await (await client.get("/api/v1/devices", headers=headers)).get_json()
    ours = [d for d in body["devices"] if d["device_id"] == world.device]
    assert ours == [{
        "device_id": world.device, "room_id": world.room, "room_name": f"Room {world.suffix}",
        "kind": "qr_camera", "model": "", "revoked": False, "online": True,
        "last_seen": ours[0]["last_seen"], "firmware": "1.2.3", "outbox_depth": 0, "reason": "",
        # The health fields of docs/device-health.md (none reported by this device yet).
        "last_change": ours[0]["last_change"], "uptime_s": 0, "last_connect_at": None, "last_connect_reason": "",
        "last_disconnect_at": None, "last_disconnect_reason": "", "battery_pct": None, "signal_dbm": None,
        "clock_skew_ms": None, "error_count": 0, "active_alarms": 0, "alarm_severity": None,
    }]
    assert datetime.fromisoformat(ours[0]["last_seen"]) == world.now
    assert datetime.fromisoformat(ours[0]["last_change"]) == world.now


async def test_rejections_paginate_and_filter_by_reason(client, world):
    headers = await bearer(client, world.username("admin"))
    reason = world.reasons["bad_sig"]
    first = await (await client.get(f"/api/v1/rejections?reason={reason}&limit=2", headers=headers)).get_json()
    assert first["total"] == 3 and first["limit"] == 2 and first["offset"] == 0 and len(first["items"]) == 2
    second = await (await client.get(f"/api/v1/rejections?reason={reason}&limit=2&offset=2", headers=headers)).get_json()
    assert len(second["items"]) == 1
    ids = [r["id"] for r in first["items"] + second["items"]]
    assert len(set(ids)) == 3
    assert all(r["reason"] == reason and r["device_id"] == world.device and r["payload_bytes"] == 3
               for r in first["items"] + second["items"])
    everything = await (await client.get("/api/v1/rejections?limit=500", headers=headers)).get_json()
    assert everything["total"] >= 4


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=501", "limit"), ("limit=x", "limit"), ("offset=-1", "offset")])
async def test_rejections_reject_bad_paging(client, world, query, field):
    headers = await bearer(client, world.username("ops"))
    response = await client.get(f"/api/v1/rejections?{query}", headers=headers)
    assert response.status_code == 400
    assert (await response.get_json())["error"]["field"] == field


async def test_me(client, world):
    body = await (await client.get("/api/v1/me", headers=await bearer(client, world.username("ops")))).get_json()
    assert body == {"id": world.users["ops"], "username": world.users["ops"],
                    "display_name": f"Ops {world.suffix}", "role": "ops"}


# --- health and metrics ------------------------------------------------------------

async def test_healthz_reflects_hub_health(client, health, world):
    ops = await bearer(client, world.username("ops"))  # the detailed body is for admin and ops
    ok = await client.get("/healthz", headers=ops)
    assert ok.status_code == 200 and await ok.get_json() == {"status": "ok", "database": "ok"}
    health.body = {"status": "unavailable", "database": "down"}
    bad = await client.get("/healthz", headers=ops)
    assert bad.status_code == 503 and (await bad.get_json())["database"] == "down"
    # Degraded still serves: a load balancer must not drop the hub over a problem an operator must fix.
    health.body = {"status": "degraded", "problems": ["the broker accepts anonymous connections"]}
    weak = await client.get("/healthz", headers=ops)
    assert weak.status_code == 200 and (await weak.get_json())["problems"] == health.body["problems"]


async def test_healthz_tells_anyone_else_the_status_only(client, health, world):
    ok = await client.get("/healthz")
    assert ok.status_code == 200 and await ok.get_json() == {"status": "ok"}
    health.body = {"status": "unavailable", "database": "down"}
    for headers in ({}, await bearer(client, world.username("stu1")), {"Authorization": "Bearer forged"}):
        bad = await client.get("/healthz", headers=headers)
        assert bad.status_code == 503 and await bad.get_json() == {"status": "unavailable"}
    health.body = {"status": "degraded", "problems": ["the broker accepts anonymous connections"]}
    weak = await client.get("/healthz")
    assert weak.status_code == 200 and await weak.get_json() == {"status": "degraded"}  # not what is weak


METRICS_TOKEN = "metrics-token-0123456789abcdef"


async def test_metrics_token_protects_metrics_and_opens_health_detail(ctx, health):
    client = create_app(ctx, metrics_token=METRICS_TOKEN).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": METRICS_TOKEN},
                    {"Authorization": "Bearer " + "x" * 10_000}):
        refused = await client.get("/metrics", headers=headers)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert "campushub_up" not in await refused.get_data(as_text=True)
    token = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    response = await client.get("/metrics", headers=token)
    assert response.status_code == 200 and "campushub_up 1.0" in await response.get_data(as_text=True)
    assert await (await client.get("/healthz", headers=token)).get_json() == {"status": "ok", "database": "ok"}
    assert await (await client.get("/healthz")).get_json() == {"status": "ok"}


async def test_metrics_on_their_own_listener_leave_the_main_port(ctx):
    main = create_app(ctx, serve_metrics=False).test_client()
    assert (await main.get("/metrics")).status_code == 404
    private = create_metrics_app(ctx).test_client()
    assert "campushub_up 1.0" in await (await private.get("/metrics")).get_data(as_text=True)
    assert await (await private.get("/healthz")).get_json() == {"status": "ok", "database": "ok"}
    assert (await private.get("/login")).status_code == 404  # nothing but health and metrics there


async def test_metrics_is_prometheus_text(client):
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "campushub_up 1.0" in await response.get_data(as_text=True)


# --- QR ------------------------------------------------------------------------------

async def test_qr_svg_encodes_the_students_current_token(client, world, clock):
    await page_login(client, world.username("stu1"))
    response = await client.get("/student/qr.svg")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/svg+xml"
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.get_data()
    assert body.startswith(b"<svg")
    expected = issue_checkin_token(world.users["stu1"], world.secrets["stu1"], clock.now)
    assert body == render_qr_svg(expected)
    clock.advance(TOKEN_WINDOW_SECONDS)
    rotated = await (await client.get("/student/qr.svg")).get_data()
    assert rotated != body
    assert rotated == render_qr_svg(issue_checkin_token(world.users["stu1"], world.secrets["stu1"], clock.now))


async def test_qr_svg_only_for_the_logged_in_student(client, world):
    assert (await client.get("/student/qr.svg")).status_code == 302
    await page_login(client, world.username("fac1"))
    assert (await client.get("/student/qr.svg")).status_code == 403


# --- pages: stable hooks for browser tests ---------------------------------------------------

async def test_student_page_has_qr_and_records(client, world):
    await page_login(client, world.username("stu1"))
    html = await (await client.get("/student")).get_data(as_text=True)
    assert '<img id="qr" class="qr" src="/student/qr.svg"' in html
    assert 'data-refresh-ms="5000"' in html
    assert f'data-session-id="{world.sessions["live1"]}"' in html
    assert 'class="status status-present" data-status="present"' in html
    assert 'data-ws="/ws/student"' in html


async def test_roster_page_rows_and_status_cells(client, world):
    await page_login(client, world.username("fac1"))
    html = await (await client.get(f"/faculty/sessions/{world.sessions['live1']}")).get_data(as_text=True)
    assert f'<tr class="roster-row" data-student-id="{world.users["stu1"]}">' in html
    assert 'class="status status-not-yet" data-status="not-yet"' in html
    assert f'data-ws="/ws/sessions/{world.sessions["live1"]}"' in html
    assert 'id="live-status"' in html and 'id="count-present">1<' in html


async def test_ops_and_admin_pages(client, world):
    await page_login(client, world.username("admin"))
    ops = await (await client.get("/ops")).get_data(as_text=True)
    assert f'class="device device-online" data-device-id="{world.device}"' in ops
    admin = await (await client.get("/admin")).get_data(as_text=True)
    reason = world.reasons["bad_sig"]  # a per-run code the wording does not know: shown as itself
    assert f'<tr data-reason="{reason}"><td>{rejection_words(reason)}</td><td class="n">3</td></tr>' in admin


async def test_security_headers(client, world):
    response = await client.get("/login")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    static = await client.get("/static/app.js")
    assert static.status_code == 200 and "no-store" not in static.headers.get("Cache-Control", "")
