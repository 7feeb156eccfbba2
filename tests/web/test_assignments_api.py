"""Assignments end to end through the API: create, publish (notified), submit and resubmit with receipts,
late work, the cut-off and an extension, who may see what, grading with a rubric and the late penalty,
returning, the CSV import, the zip, and marks hidden until the grades are released. Files are stored sealed
(key rotation over them: tests/db/test_sealed_secrets.py)."""
from __future__ import annotations

import base64
import io
import zipfile
from datetime import datetime, timedelta, timezone

import pytest
from web_helpers import bearer

from hub.core.secrets_box import SecretsBoxError
from hub.db.sealed_secrets import assignment_attachment_context, submission_file_context
from hub.db.submissions import receipt_hash

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def file(data: bytes, name: str, content_type: str | None = None) -> dict:
    body = {"filename": name, "data_base64": base64.b64encode(data).decode()}
    if content_type:
        body["content_type"] = content_type
    return body


@pytest.fixture
async def term(db, world) -> str:
    term_id = f"t_{world.suffix}"
    today = world.now.date()
    await db.execute("INSERT INTO terms (id, name, starts_on, ends_on) VALUES ($1, $2, $3, $4)",
                     term_id, f"Term {world.suffix}", today - timedelta(days=30), today + timedelta(days=90))
    # stu3 takes c1 too, so three students share the assignment.
    await db.execute("INSERT INTO enrolments (course_id, student_id) VALUES ($1, $2)",
                     world.courses["c1"], world.users["stu3"])
    return term_id


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


async def notes(db, user_id: str, kind: str) -> list:
    return await db.fetch("SELECT title, body, data FROM notifications WHERE user_id = $1 AND kind = $2",
                          user_id, kind)


async def test_assignment_workflow(client, db, world, term, clock) -> None:
    fac1, fac2 = await bearer(client, world.users["fac1"]), await bearer(client, world.users["fac2"])
    stu1, stu2, stu3 = [await bearer(client, world.users[k]) for k in ("stu1", "stu2", "stu3")]
    now = datetime.fromtimestamp(clock.now, timezone.utc)
    due, cut = now + timedelta(days=2), now + timedelta(days=4)
    body = {"course_id": world.courses["c1"], "term_id": term, "title": "Sockets lab", "max_marks": "20",
            "weight": 10, "instructions": "Write an echo server.", "due_at": iso(due), "cut_off_at": iso(cut),
            "grace_minutes": 10, "penalty_percent": 10, "penalty_period": "started_day",
            "penalty_cap_percent": 30, "pass_percent": 50, "max_attempts": 2,
            "rubric": [{"criterion": "Works", "max_points": 12}, {"criterion": "Clear code", "max_points": 8}]}

    # A rubric must add up to the maximum marks; only the course's faculty may create.
    bad = await client.post("/api/v1/assignments", headers=fac1, json={**body, "rubric": body["rubric"][:1]})
    assert bad.status_code == 400 and (await bad.get_json())["error"]["field"] == "rubric"
    assert (await client.post("/api/v1/assignments", headers=fac2, json=body)).status_code == 403
    assert (await client.post("/api/v1/assignments", headers=stu1, json=body)).status_code == 403
    topics = [await db.fetchval("INSERT INTO syllabus_topics (course_id, position, title, est_minutes)"
                                " VALUES ($1, $2, $3, 60) RETURNING id", course, n, f"Topic {n}")
              for n, course in ((1, world.courses["c1"]), (2, world.courses["c2"]))]
    wrong = await client.post("/api/v1/assignments", headers=fac1, json={**body, "topic_ids": [topics[1]]})
    assert wrong.status_code == 400 and (await wrong.get_json())["error"]["field"] == "topic_ids"
    body["topic_ids"] = [topics[0]]
    created = await client.post("/api/v1/assignments", headers=fac1, json=body)
    assert created.status_code == 201, await created.get_data()
    a = await created.get_json()
    aid, rubric = a["id"], {c["criterion"]: c["id"] for c in (await created.get_json())["rubric"]}
    assert a["published_at"] is None and a["max_marks"] == "20.00" and a["students"] == 3
    assert a["topic_ids"] == [topics[0]]

    # A draft is invisible to students; other faculty may not see it.
    assert (await client.get(f"/api/v1/assignments/{aid}", headers=stu1)).status_code == 404
    assert (await client.get(f"/api/v1/assignments/{aid}", headers=fac2)).status_code == 403
    assert (await client.get("/api/v1/assignments", headers=stu1)).status_code == 200
    refused = await client.post(f"/api/v1/assignments/{aid}/submissions", headers=stu1, json={"text": "hi"})
    assert refused.status_code == 404

    attach = await client.post(f"/api/v1/assignments/{aid}/attachments", headers=fac1, json=file(PDF, "brief.pdf"))
    assert attach.status_code == 201
    published = await client.post(f"/api/v1/assignments/{aid}/publish", headers=fac1, json={})
    assert published.status_code == 200 and (await published.get_json())["published_at"] is not None
    for key in ("stu1", "stu2", "stu3"):
        assert len(await notes(db, world.users[key], "assignment_published")) == 1
    # Publishing again notifies nobody.
    await client.post(f"/api/v1/assignments/{aid}/publish", headers=fac1, json={})
    assert len(await notes(db, world.users["stu1"], "assignment_published")) == 1

    items = (await (await client.get("/api/v1/assignments", headers=stu1)).get_json())["items"]
    assert [i["id"] for i in items if i["id"] == aid] == [aid]
    brief = (await client.get(f"/api/v1/assignments/{aid}", headers=stu1))
    url = (await brief.get_json())["attachments"][0]["url"]
    assert (await (await client.get(url, headers=stu1)).get_data()) == PDF

    # Submit, resubmit, and the attempt limit; the receipt is the manifest's SHA-256.
    first = await client.post(f"/api/v1/assignments/{aid}/submissions", headers=stu1,
                              json={"text": "v1", "files": [file(PDF, "answer.pdf", "application/pdf")]})
    assert first.status_code == 201, await first.get_data()
    sub = await first.get_json()
    assert sub["attempt"] == 1 and sub["late_minutes"] == 0
    assert sub["sha256"] == receipt_hash(aid, world.users["stu1"], 1, datetime.fromisoformat(sub["submitted_at"]),
                                         "v1", [("answer.pdf", "application/pdf", PDF)])
    second = await client.post(f"/api/v1/assignments/{aid}/submissions", headers=stu1,
                               json={"text": "v2", "files": [file(PDF, "answer2.pdf")]})
    assert (await second.get_json())["attempt"] == 2
    third = await client.post(f"/api/v1/assignments/{aid}/submissions", headers=stu1, json={"text": "v3"})
    assert third.status_code == 409 and (await third.get_json())["error"]["code"] == "attempts_used"
    # Type by content: a PNG called a PDF is refused; an empty submission too.
    liar = await client.post(f"/api/v1/assignments/{aid}/submissions", headers=stu2,
                             json={"files": [file(PNG, "x.pdf", "application/pdf")]})
    assert liar.status_code == 415 and (await liar.get_json())["error"]["code"] == "unsupported_document"
    assert (await client.post(f"/api/v1/assignments/{aid}/submissions", headers=stu2,
                              json={"text": "  "})).status_code == 400

    # Files are stored sealed with the campus key (like leave documents), each bound to its own row.
    second_sub = await second.get_json()
    attached = await attach.get_json()
    for table, row_id, context in (
            ("submission_files", second_sub["files"][0]["id"], submission_file_context),
            ("assignment_attachments", attached["id"], assignment_attachment_context)):
        stored = bytes(await db.fetchval(f"SELECT data_sealed FROM {table} WHERE id = $1", row_id))
        assert PDF not in stored and PDF[:16] not in stored and len(stored) == len(PDF) + 30
        assert db.secrets.decrypt_document(stored, context(row_id)) == PDF
        with pytest.raises(SecretsBoxError):  # copied onto another row, it does not open
            db.secrets.decrypt_document(stored, context(row_id + 1))

    # A student never reaches another student's work.
    assert (await client.get(second_sub["files"][0]["url"], headers=stu2)).status_code == 404
    assert (await client.get(second_sub["files"][0]["url"], headers=fac2)).status_code == 403
    assert (await client.get(second_sub["files"][0]["url"], headers=fac1)).status_code == 200
    assert (await client.get(f"/api/v1/assignments/{aid}/queue", headers=stu1)).status_code == 403
    assert (await client.get(f"/api/v1/assignments/{aid}/queue", headers=fac2)).status_code == 403

    # 25 h after the due date: stu2's first submission is late, and stu2 may not resubmit now.
    clock.advance((due - now).total_seconds() + 25 * 3600)
    fac1, stu1, stu2, stu3 = [await bearer(client, world.users[k]) for k in ("fac1", "stu1", "stu2", "stu3")]
    late = await client.post(f"/api/v1/assignments/{aid}/submissions", headers=stu2,
                             json={"text": "sorry, late", "files": [file(PNG, "photo.png")]})
    assert late.status_code == 201
    assert (await late.get_json())["late_minutes"] == 25 * 60
    again = await client.post(f"/api/v1/assignments/{aid}/submissions", headers=stu2, json={"text": "v2"})
    assert (await again.get_json())["error"]["code"] == "resubmission_after_due"

    # After the cut-off: refused, until the student is given an extension.
    clock.advance(2 * 86400)
    fac1, stu1, stu2, stu3 = [await bearer(client, world.users[k]) for k in ("fac1", "stu1", "stu2", "stu3")]
    closed = await client.post(f"/api/v1/assignments/{aid}/submissions", headers=stu3, json={"text": "mine"})
    assert closed.status_code == 409 and (await closed.get_json())["error"]["code"] == "assignment_closed"
    ext = await client.put(f"/api/v1/assignments/{aid}/extensions/{world.users['stu3']}", headers=fac1,
                           json={"due_at": iso(cut + timedelta(days=3)), "reason": "medical"})
    assert ext.status_code == 200, await ext.get_data()
    on_time = await client.post(f"/api/v1/assignments/{aid}/submissions", headers=stu3, json={"text": "mine"})
    assert on_time.status_code == 201 and (await on_time.get_json())["late_minutes"] == 0
    mine3 = await (await client.get(f"/api/v1/assignments/{aid}/mine", headers=stu3)).get_json()
    assert mine3["extended"] is True

    # The queue: everybody, waiting work first.
    queue = await (await client.get(f"/api/v1/assignments/{aid}/queue", headers=fac1)).get_json()
    assert queue["total"] == 3 and queue["waiting"] == 3
    assert [r["submission"]["attempt"] for r in queue["items"] if r["student_id"] == world.users["stu1"]] == [2]

    # Grading with a rubric: the sum must match given marks.
    mismatch = await client.post(f"/api/v1/assignments/{aid}/grades", headers=fac1, json={
        "student_id": world.users["stu1"], "raw_marks": "16",
        "rubric": [{"criterion_id": rubric["Works"], "points": 10}, {"criterion_id": rubric["Clear code"], "points": 7}]})
    assert mismatch.status_code == 400
    graded = await client.post(f"/api/v1/assignments/{aid}/grades", headers=fac1, json={
        "student_id": world.users["stu1"], "feedback": "Solid work.",
        "rubric": [{"criterion_id": rubric["Works"], "points": 10}, {"criterion_id": rubric["Clear code"], "points": 7}]})
    assert graded.status_code == 200, await graded.get_data()
    assert await graded.get_json() == {"student_id": world.users["stu1"], "raw_marks": "17.00", "marks": "17.00",
                                       "penalty_note": None}
    assert len(await notes(db, world.users["stu1"], "assignment_graded")) == 1
    resubmit = await client.post(f"/api/v1/assignments/{aid}/submissions", headers=stu1, json={"text": "v4"})
    assert resubmit.status_code == 409

    # CSV import: preview reports each bad line and writes nothing; applying computes the penalty.
    csv_text = f"roll_number,marks,feedback\nR-stu2-{world.suffix},12,Late but fine\nNOPE,3\nR-stu3-{world.suffix},x\n"
    preview = await (await client.post(f"/api/v1/assignments/{aid}/marks/import", headers=fac1,
                                       json={"csv": csv_text, "apply": True})).get_json()
    assert preview["applied"] is False and [e["line"] for e in preview["errors"]] == [3, 4]
    assert await db.fetchval("SELECT count(*) FROM assessment_marks WHERE assessment_id = $1", aid) == 1
    good = f"R-stu2-{world.suffix},12,Late but fine\n"
    dry = await (await client.post(f"/api/v1/assignments/{aid}/marks/import", headers=fac1,
                                   json={"csv": good})).get_json()
    assert dry["applied"] is False and dry["rows"][0]["marks"] == "10.00"
    assert await db.fetchval("SELECT count(*) FROM assessment_marks WHERE assessment_id = $1", aid) == 1
    done = await (await client.post(f"/api/v1/assignments/{aid}/marks/import", headers=fac1,
                                    json={"csv": good, "apply": True})).get_json()
    assert done["applied"] is True
    # 25 h late = 2 started days x 10 % of 20 = 4 off: 12 - 4 = 8, below the pass mark 10, kept at 10.
    row = await db.fetchrow("SELECT raw_marks, marks, penalty_note FROM assessment_marks"
                            " WHERE assessment_id = $1 AND student_id = $2", aid, world.users["stu2"])
    assert (str(row["raw_marks"]), str(row["marks"])) == ("12.00", "10.00")
    assert "1 day 1 h late" in row["penalty_note"] and "pass mark" in row["penalty_note"]

    # Before release: returned and feedback, no marks.
    before = await (await client.get(f"/api/v1/assignments/{aid}/mine", headers=stu2)).get_json()
    assert before["submissions"][0]["status"] == "returned"
    assert before["mark"]["feedback"] == "Late but fine"
    assert before["mark"]["marks"] is None and before["mark"]["raw_marks"] is None
    assert before["mark"]["penalty_note"] is None
    await db.execute("INSERT INTO grade_releases (course_id, term_id, released_by) VALUES ($1, $2, $3)",
                     world.courses["c1"], term, world.users["fac1"])
    after = await (await client.get(f"/api/v1/assignments/{aid}/mine", headers=stu2)).get_json()
    assert after["mark"]["marks"] == "10.00" and after["mark"]["raw_marks"] == "12.00"
    stu1_after = await (await client.get(f"/api/v1/assignments/{aid}/mine", headers=stu1)).get_json()
    assert len(stu1_after["mark"]["rubric"]) == 2

    # The zip: every student's latest attempt, with its receipt.
    response = await client.get(f"/api/v1/assignments/{aid}/submissions.zip", headers=fac1)
    assert response.status_code == 200 and response.content_type == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(await response.get_data()))
    names = set(archive.namelist())
    assert f"R-stu1-{world.suffix}/answer2.pdf" in names and f"R-stu2-{world.suffix}/photo.png" in names
    assert archive.read(f"R-stu1-{world.suffix}/answer2.pdf") == PDF
    assert sub["sha256"] not in archive.read(f"R-stu1-{world.suffix}/receipt.txt").decode()  # attempt 2's receipt
    assert (await second.get_json())["sha256"] in archive.read(f"R-stu1-{world.suffix}/receipt.txt").decode()

    # Work was submitted: no deletion; a fresh draft can be deleted.
    assert (await client.delete(f"/api/v1/assignments/{aid}", headers=fac1)).status_code == 409
    draft = await (await client.post("/api/v1/assignments", headers=fac1,
                                     json={**body, "due_at": iso(now + timedelta(days=30)),
                                           "cut_off_at": None})).get_json()
    assert (await client.delete(f"/api/v1/assignments/{draft['id']}", headers=fac1)).status_code == 204
    assert (await client.get(f"/api/v1/assignments/{draft['id']}", headers=fac1)).status_code == 404
