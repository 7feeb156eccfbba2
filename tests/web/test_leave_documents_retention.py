"""Leave documents cannot pile up: a per-student quota (cancelled applications' documents count until
deleted) and the purge of cancelled applications' documents after the grace period."""
from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from web_helpers import bearer

from hub.db.leave import next_document_purge, purge_cancelled_documents
from hub.domain.leave import CANCELLED_DOCUMENT_GRACE, DOCUMENT_QUOTA_BYTES, MAX_DOCUMENT_BYTES, document_quota_problem
from hub.services.leave_documents import LeaveDocumentPurger

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
#: Just under the per-document limit: the quota allows five of these at once, not six.
NEARLY_FULL = PDF + b"0" * (MAX_DOCUMENT_BYTES - len(PDF) - 1024)


def _application(today: str, data: bytes) -> dict:
    return {"starts_on": today, "ends_on": today, "reason": "scan",
            "document": {"filename": "note.pdf", "data_base64": base64.b64encode(data).decode()}}


async def _apply_and_cancel(client, headers, today: str) -> int:
    response = await client.post("/api/v1/leave", headers=headers, json=_application(today, NEARLY_FULL))
    assert response.status_code == 201, await response.get_data(as_text=True)
    leave_id = (await response.get_json())["id"]
    cancelled = await client.post(f"/api/v1/leave/{leave_id}/cancel", headers=headers, json={})
    assert cancelled.status_code == 200
    return leave_id


def test_quota_rule():
    assert document_quota_problem(0, MAX_DOCUMENT_BYTES) is None
    assert document_quota_problem(DOCUMENT_QUOTA_BYTES - 10, 10) is None
    problem = document_quota_problem(DOCUMENT_QUOTA_BYTES - 10, 11)
    assert problem is not None and "the limit is 25 MB per student" in problem


async def test_applying_and_cancelling_cannot_store_unlimited_documents(client, db, world) -> None:
    stu3 = await bearer(client, world.users["stu3"])
    today = world.now.date().isoformat()
    first = await _apply_and_cancel(client, stu3, today)
    for _ in range(DOCUMENT_QUOTA_BYTES // len(NEARLY_FULL) - 1):
        await _apply_and_cancel(client, stu3, today)
    refused = await client.post("/api/v1/leave", headers=stu3, json=_application(today, NEARLY_FULL))
    assert refused.status_code == 413
    error = (await refused.get_json())["error"]
    assert error["code"] == "document_quota_exceeded" and error["field"] == "document"
    assert "the limit is 25 MB per student" in error["message"]
    assert await db.fetchval("SELECT count(*) FROM leave_applications WHERE student_id = $1 AND status = 'applied'",
                             world.users["stu3"]) == 0  # refused whole: no application without its document
    # Without a document the student may still apply; another student's quota is their own.
    no_document = {"starts_on": today, "ends_on": today, "reason": "no scan"}
    assert (await client.post("/api/v1/leave", headers=stu3, json=no_document)).status_code == 201
    stu2 = await bearer(client, world.users["stu2"])
    assert (await client.post("/api/v1/leave", headers=stu2, json=_application(today, PDF))).status_code == 201

    # The grace period: a cancelled application's document is kept, then deleted, the application stays.
    cancelled_at = await db.fetchval("SELECT max(cancelled_at) FROM leave_applications WHERE student_id = $1",
                                     world.users["stu3"])
    first_cancelled = await db.fetchval("SELECT cancelled_at FROM leave_applications WHERE id = $1", first)
    await purge_cancelled_documents(db, first_cancelled + CANCELLED_DOCUMENT_GRACE - timedelta(seconds=1))
    assert (await client.get(f"/api/v1/leave/{first}/document", headers=stu3)).status_code == 200
    assert await purge_cancelled_documents(db, cancelled_at + CANCELLED_DOCUMENT_GRACE) >= 5  # the run's others too
    assert await db.fetchval("SELECT count(*) FROM leave_documents d JOIN leave_applications l ON l.id = d.leave_id"
                             " WHERE l.student_id = $1", world.users["stu3"]) == 0
    gone = await client.get(f"/api/v1/leave/{first}", headers=stu3)
    assert gone.status_code == 200 and (await gone.get_json())["document"] is None
    assert (await client.get(f"/api/v1/leave/{first}/document", headers=stu3)).status_code == 404
    assert await db.fetchval("SELECT count(*) FROM leave_documents d JOIN leave_applications l ON l.id = d.leave_id"
                             " WHERE l.student_id = $1", world.users["stu2"]) == 1  # not cancelled: kept
    # The quota is free again.
    await db.execute("DELETE FROM leave_applications WHERE student_id = $1 AND status = 'applied'", world.users["stu3"])
    assert (await client.post("/api/v1/leave", headers=stu3, json=_application(today, NEARLY_FULL))).status_code == 201


async def test_the_purger_sleeps_exactly_until_the_next_document_falls_due(client, db, world) -> None:
    stu3 = await bearer(client, world.users["stu3"])
    today = world.now.date().isoformat()
    # The run's database holds other tests' cancelled documents: purge them all first.
    await purge_cancelled_documents(db, world.now + timedelta(days=3650))
    assert await next_document_purge(db) is None
    now = world.now
    purger = LeaveDocumentPurger(db, now=lambda: now)
    assert await purger.purge_due() == CANCELLED_DOCUMENT_GRACE.total_seconds()  # nothing waits: one grace period
    leave_id = await _apply_and_cancel(client, stu3, today)
    cancelled_at = await db.fetchval("SELECT cancelled_at FROM leave_applications WHERE id = $1", leave_id)
    assert await next_document_purge(db) == cancelled_at + CANCELLED_DOCUMENT_GRACE
    now = cancelled_at + timedelta(days=1)
    assert await purger.purge_due() == pytest.approx((CANCELLED_DOCUMENT_GRACE - timedelta(days=1)).total_seconds())
    now = cancelled_at + CANCELLED_DOCUMENT_GRACE
    await purger.purge_due()
    assert await db.fetchval("SELECT count(*) FROM leave_documents WHERE leave_id = $1", leave_id) == 0
