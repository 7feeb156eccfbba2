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
    response = await client.get(f"/api/v1/audit?actor={world.users['admin']}", headers=admin)
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
                                query_string={"actor": world.users["admin"], "format": "csv"})
    assert response.status_code == 200 and response.content_type.startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await response.get_data(as_text=True))))
    assert [r["student_id"] for r in rows] == [world.users["stu2"], world.users["stu3"]]  # oldest first
    assert rows[0]["reason"] == "audit test" and json.loads(rows[0]["after"])["status"] == "late"

    response = await client.get("/api/v1/audit/export", headers=await bearer(client, world.users["fac2"]),
                                query_string={"actor": world.users["admin"], "format": "jsonl"})
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
                                query_string={"actor": world.users["admin"], "format": "jsonl"})
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
