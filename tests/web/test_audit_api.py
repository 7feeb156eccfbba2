"""The audit API: search scoped by role, CSV and JSON-lines export, chain verification."""
from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from web_helpers import bearer

from hub.db.attendance import AttendanceChange, apply_attendance_changes

pytestmark = pytest.mark.integration


async def _changes(db, world) -> None:
    async def work(conn):
        await apply_attendance_changes(conn, [
            AttendanceChange(world.sessions["live1"], world.users["stu2"], "late", "manual", world.now),
            AttendanceChange(world.sessions["live2"], world.users["stu3"], "absent", "manual"),
        ], actor=world.users["admin"], reason="audit test")

    await db.run(work, transaction=True)


async def test_search_is_scoped_by_role(client, db, world) -> None:
    await _changes(db, world)
    admin, fac1 = await bearer(client, world.users["admin"]), await bearer(client, world.users["fac1"])
    # entity=attendance: the admin's own logins are in the log too (security entries).
    response = await client.get(f"/api/v1/audit?actor={world.users['admin']}&entity=attendance", headers=admin)
    page = await response.get_json()
    assert page["total"] == 2 and set(page) == {"items", "total", "limit", "offset"}
    assert {e["student_id"] for e in page["items"]} == {world.users["stu2"], world.users["stu3"]}
    entry = page["items"][0]
    assert len(entry["hash"]) == 64 and len(entry["prev_hash"]) == 64 and entry["after"]["status"] in ("late", "absent")

    # fac1 teaches c1 only: stu3's c2 entry is not theirs, whatever they ask for.
    page = await (await client.get(f"/api/v1/audit?actor={world.users['admin']}", headers=fac1)).get_json()
    assert [e["session_id"] for e in page["items"]] == [world.sessions["live1"]]
    page = await (await client.get(f"/api/v1/audit?course_id={world.courses['c2']}", headers=fac1)).get_json()
    assert page["total"] == 0

    since = (world.now + timedelta(days=1)).isoformat()
    page = await (await client.get("/api/v1/audit", headers=admin,
                                   query_string={"student_id": world.users["stu2"], "since": since})).get_json()
    assert page["total"] == 0
    for bad in ({"since": "yesterday"}, {"until": "2025-01-01T00:00:00"}, {"limit": "0"}, {"actor": "x" * 300}):
        response = await client.get("/api/v1/audit", headers=admin, query_string=bad)
        assert response.status_code == 400, bad
    for role in ("stu2", "ops"):
        assert (await client.get("/api/v1/audit", headers=await bearer(client, world.users[role]))).status_code == 403


async def test_export_and_verify(client, db, world) -> None:
    await _changes(db, world)
    admin = await bearer(client, world.users["admin"])
    response = await client.get("/api/v1/audit/export", headers=admin,
                                query_string={"actor": world.users["admin"], "entity": "attendance", "format": "csv"})
    assert response.status_code == 200 and response.content_type.startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await response.get_data(as_text=True))))
    assert [r["student_id"] for r in rows] == [world.users["stu2"], world.users["stu3"]]  # oldest first
    assert rows[0]["reason"] == "audit test" and json.loads(rows[0]["after"])["status"] == "late"

    response = await client.get("/api/v1/audit/export", headers=await bearer(client, world.users["fac2"]),
                                query_string={"actor": world.users["admin"], "entity": "attendance",
                                              "format": "jsonl"})
    lines = [json.loads(line) for line in (await response.get_data(as_text=True)).splitlines()]
    assert [e["student_id"] for e in lines] == [world.users["stu3"]]
    assert (await client.get("/api/v1/audit/export?format=xml", headers=admin)).status_code == 400

    report = await (await client.get("/api/v1/audit/verify", headers=admin)).get_json()
    assert report["ok"] is True and report["entries"] >= 2 and report["first_broken_id"] is None
    assert len(report["head_hash"]) == 64
    fac1 = await bearer(client, world.users["fac1"])
    assert (await client.get("/api/v1/audit/verify", headers=fac1)).status_code == 403


async def test_a_filtered_jsonl_export_verifies_offline(client, db, world) -> None:
    from decimal import Decimal

    from hub.db.audit_hash import check_entries

    await _changes(db, world)
    admin = await bearer(client, world.users["admin"])
    response = await client.get("/api/v1/audit/export", headers=admin,
                                query_string={"actor": world.users["admin"], "entity": "attendance",
                                              "format": "jsonl"})
    entries = [json.loads(line, parse_float=Decimal) for line in (await response.get_data(as_text=True)).split("\n")
               if line]
    # The shared test database holds other tests' entries between these two: only gaps, no broken hash.
    report = check_entries(entries, allow_gaps=True)
    assert report.ok and report.entries == 2 and report.head_hash == entries[-1]["hash"]
    entries[0]["reason"] = "edited"
    assert check_entries(entries, allow_gaps=True).problem == "altered"


async def test_audit_page_is_scoped_like_the_api(client, world) -> None:
    from web_helpers import page_login

    await page_login(client, world.users["admin"])
    html = await (await client.get("/audit")).get_data(as_text=True)
    assert 'id="audit-form"' in html and 'id="audit-verify"' in html and 'id="nav-audit"' in html
    assert world.courses["c1"] in html and world.courses["c2"] in html
    await page_login(client, world.users["fac1"])
    page = await client.get("/audit")
    html = await page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="audit-results"' in html
    # fac1 teaches c1 only: no c2 in the course list, no stu3 (c2 only) among the students, no verify.
    assert world.courses["c1"] in html and world.courses["c2"] not in html
    assert world.users["stu2"] in html and world.users["stu3"] not in html
    assert 'id="audit-verify"' not in html
    await page_login(client, world.users["stu1"])
    assert (await client.get("/audit")).status_code == 403
    assert 'id="nav-audit"' not in await (await client.get("/student/leave")).get_data(as_text=True)


async def test_security_entries_are_searchable_exportable_and_admin_only(client, db, world) -> None:
    """A threshold rule made and deleted through the API: one entry each, found by entity and
    action, exported (and verifiable offline), never shown to faculty."""
    from decimal import Decimal

    from hub.db.audit_hash import check_entries

    ops, admin = await bearer(client, world.users["ops"]), await bearer(client, world.users["admin"])
    rule = {"metric": "noise_db", "op": "above", "value": 80, "clear_value": 70, "severity": "minor"}
    created = await client.post("/api/v1/thresholds", json=rule, headers=ops)
    assert created.status_code == 201
    rule_id = str((await created.get_json())["id"])
    assert (await client.delete(f"/api/v1/thresholds/{rule_id}", headers=admin)).status_code == 204

    response = await client.get("/api/v1/audit", headers=admin,
                                query_string={"entity": "threshold_rule", "action": "created"})
    items = [e for e in (await response.get_json())["items"] if e["entity_id"] == rule_id]
    assert len(items) == 1 and items[0]["actor"] == world.users["ops"] and items[0]["before"] is None
    assert items[0]["after"]["metric"] == "noise_db" and items[0]["course_id"] is None
    page = await (await client.get("/api/v1/audit", headers=admin, query_string={
        "entity": "threshold_rule", "actor": world.users["admin"]})).get_json()
    deleted = [e for e in page["items"] if e["entity_id"] == rule_id]
    assert [(e["action"], e["after"]) for e in deleted] == [("deleted", None)]

    response = await client.get("/api/v1/audit/export", headers=admin,
                                query_string={"entity": "threshold_rule", "format": "jsonl"})
    lines = [json.loads(line, parse_float=Decimal) for line in (await response.get_data(as_text=True)).splitlines()]
    assert {(e["entity_id"], e["action"]) for e in lines} >= {(rule_id, "created"), (rule_id, "deleted")}
    assert check_entries(lines, allow_gaps=True).ok
    response = await client.get("/api/v1/audit/export", headers=admin,
                                query_string={"entity": "threshold_rule", "action": "deleted", "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(await response.get_data(as_text=True))))
    assert rows and all(r["action"] == "deleted" for r in rows)

    # Faculty see only their courses' attendance entries: a security entry belongs to no course.
    fac1 = await bearer(client, world.users["fac1"])
    page = await (await client.get("/api/v1/audit", headers=fac1, query_string={"entity": "threshold_rule"})).get_json()
    assert page["total"] == 0
    for bad in ({"action": "Deleted"}, {"action": "x" * 65}, {"entity": "threshold rule"}, {"action": "a\x00b"},
                {"entity": "' OR '1'='1"}):
        response = await client.get("/api/v1/audit", headers=admin, query_string=bad)
        assert response.status_code == 400, bad
        error = (await response.get_json())["error"]
        assert error["code"] == "invalid_request" and error.get("field", "action") in ("action", "entity"), error


async def test_audit_page_offers_security_filters_to_admins_only(client, world) -> None:
    from web_helpers import page_login

    await page_login(client, world.users["admin"])
    html = await (await client.get("/audit")).get_data(as_text=True)
    assert 'id="audit-entity"' in html and 'id="audit-action"' in html and '<option value="login_failed">' in html
    await page_login(client, world.users["fac1"])
    html = await (await client.get("/audit")).get_data(as_text=True)
    assert 'id="audit-entity"' not in html and 'id="audit-action"' not in html
