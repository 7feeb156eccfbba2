"""The personal data map covers the schema; erasure removes the person and keeps the records.

Erasure is checked the way an auditor would: a data-only ``pg_dump`` of the whole database
(the test's own, ``fresh_database_url``) must not contain the erased student's name, email,
roll number, free text or document bytes anywhere, while the other student's are all still there.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import AsyncIterator

import pytest
from support.privacy_world import PrivacyWorld, build_privacy_world, make_former

from hub.db import Database, open_database
from hub.db.assignments import AssignmentFields, NewFile, create_assignment, publish
from hub.db.audit import verify_chain
from hub.db.erasure import ErasureRefused, erase_student
from hub.db.personal_data import HOLDINGS, NOT_PERSONAL, export_zip, pseudonym
from hub.db.submissions import submit
from hub.db.users import AccountRefused, reactivate_user

NOW = datetime.now(timezone.utc)


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=4) as database:
        yield database


async def test_every_table_about_a_person_is_in_the_map(db: Database):
    columns = await db.fetch(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
        " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
        " AND c.column_name IN ('student_id', 'user_id')")
    found = {(r["table_name"], r["column_name"]) for r in columns}
    # Partitions are the parent's holding.
    parents = {r["relname"] for r in await db.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid")}
    found = {(t, c) for t, c in found if t not in parents}
    mapped = {(h.table, h.key) for h in HOLDINGS if h.key is not None}
    missing = sorted(found - mapped - set(NOT_PERSONAL))
    assert not missing, f"tables holding a person's id, in neither HOLDINGS nor NOT_PERSONAL: {missing}"
    assert all(NOT_PERSONAL.values()), "every NOT_PERSONAL entry says why"
    assert ("students", "id") in {(h.table, h.key) for h in HOLDINGS}
    assert ("users", "id") in {(h.table, h.key) for h in HOLDINGS}


def test_every_holding_says_why_and_scrubs_when_it_says_so():
    for h in HOLDINGS:
        assert h.why, h.table
        assert (h.erase == "scrub") == bool(h.scrub), h.table
        assert h.file is None or h.describe, h.table
    files = [h.file for h in HOLDINGS if h.file]
    assert len(files) == len(set(files))


def test_pseudonym_is_stable_per_student_and_a_valid_username():
    assert pseudonym("stu-1") == pseudonym("stu-1") != pseudonym("stu-2")
    assert pseudonym("stu-1").startswith("erased-") and len(pseudonym("stu-1")) == 23


def _dump(url: str) -> str:
    return subprocess.run(["pg_dump", "--data-only", "--no-owner", url], check=True, capture_output=True,
                          text=True, timeout=120).stdout


async def _export(db: Database, student_id: str) -> zipfile.ZipFile:
    data = b"".join([piece async for piece in export_zip(db, student_id, now=NOW)])
    return zipfile.ZipFile(io.BytesIO(data))


async def _counts(db: Database, w: PrivacyWorld) -> dict[str, int]:
    kept = {}
    for table in ("attendance", "leave_applications", "correction_requests", "condonation_applications",
                  "checkin_flags", "display_checkins", "token_uses", "enrolments", "leave_sessions"):
        kept[table] = await db.fetchval(f"SELECT count(*) FROM {table} WHERE student_id = $1", w.target.id)
    kept["audit_log"] = await db.fetchval("SELECT count(*) FROM audit_log")
    return kept


async def test_erasure_removes_the_person_keeps_the_records_and_the_chain_verifies(fresh_db: Database,
                                                                                   fresh_database_url: str):
    w = await build_privacy_world(fresh_db, NOW)
    await make_former(fresh_db, w, w.target)
    before_dump = _dump(fresh_database_url)
    for marker in w.markers(w.target):
        assert marker in before_dump, f"the world did not store {marker!r}: the scan below would prove nothing"
    kept_before = await _counts(fresh_db, w)
    assert kept_before["attendance"] == 2 and kept_before["checkin_flags"] == 1

    report = await erase_student(fresh_db, w.target.id, actor=w.admin, now=NOW, reason="request 42")
    assert report.pseudonym == pseudonym(w.target.id) and not report.already_erased
    assert report.changed["leave_documents:delete"] == 1
    assert report.changed["audit_log:redacted"] > 0

    dump = _dump(fresh_database_url)
    for marker in w.markers(w.target):
        assert marker not in dump, f"{marker!r} is still in the database after erasure"
    assert await fresh_db.fetchval(
        "SELECT count(*) FROM leave_documents d JOIN leave_applications l ON l.id = d.leave_id"
        " WHERE l.student_id = $1", w.target.id) == 0
    for marker in w.markers(w.other):  # the other student is untouched
        assert marker in dump, marker

    kept_after = await _counts(fresh_db, w)
    assert kept_after == {**kept_before, "audit_log": kept_before["audit_log"] + 1}  # + the erasure's entry
    account = await fresh_db.fetchrow(
        "SELECT u.username, u.display_name, u.email, u.password_hash, s.roll_number FROM users u"
        " JOIN students s USING (id) WHERE u.id = $1", w.target.id)
    assert dict(account) == {"username": report.pseudonym, "display_name": "Erased student", "email": None,
                             "password_hash": "", "roll_number": report.pseudonym}
    assert await fresh_db.fetchval("SELECT count(*) FROM notifications WHERE user_id = $1", w.target.id) == 0
    chain = await verify_chain(fresh_db)
    assert chain.ok, chain
    entry = await fresh_db.fetchrow(
        "SELECT actor, reason FROM audit_log WHERE entity = 'personal_data' AND action = 'erased'"
        " AND entity_id = $1", w.target.id)
    assert entry is not None and entry["actor"] == w.admin

    # The export of the erased student shows only pseudonymised data.
    archive = await _export(fresh_db, w.target.id)
    text = "\n".join(archive.read(n).decode(errors="replace") for n in archive.namelist())
    for marker in w.markers(w.target):
        assert marker not in text
    profile = json.loads(archive.read("profile.json"))
    assert profile[0]["username"] == report.pseudonym
    assert len(json.loads(archive.read("attendance.json"))) == 2
    history = json.loads(archive.read("attendance_history.json"))
    assert {e["session_id"] for e in history if e["entity"] == "attendance"} == set(w.sessions[:2])
    assert all(e["redacted"] for e in history if e["entity"] != "personal_data")
    assert not [n for n in archive.namelist() if n.startswith("documents/")]

    # Once erased: again is a no-op; it cannot come back.
    again = await erase_student(fresh_db, w.target.id, actor=w.admin, now=NOW)
    assert again.already_erased and again.changed == {}
    with pytest.raises(AccountRefused):
        await reactivate_user(fresh_db, w.target.id, actor=w.admin)


async def test_erasure_of_an_active_student_is_refused_and_changes_nothing(db: Database):
    w = await build_privacy_world(db, NOW, webhook=False)
    audit_before = await db.fetchval("SELECT count(*) FROM audit_log")
    with pytest.raises(ErasureRefused) as refused:
        await erase_student(db, w.target.id, actor=w.admin, now=NOW)
    assert refused.value.code == "active" and "Deactivate" in refused.value.message
    assert await db.fetchval("SELECT display_name FROM users WHERE id = $1", w.target.id) == w.target.name
    assert await db.fetchval("SELECT count(*) FROM audit_log") == audit_before
    with pytest.raises(ErasureRefused) as unknown:
        await erase_student(db, f"stu-nobody-{w.sfx}", actor=w.admin, now=NOW)
    assert unknown.value.code == "not_found"


async def test_export_holds_the_students_records_and_no_one_elses(db: Database):
    w = await build_privacy_world(db, NOW, webhook=False)
    archive = await _export(db, w.target.id)
    names = archive.namelist()
    for expected in ("README.txt", "profile.json", "profile.csv", "student.json", "enrolments.json",
                     "attendance.json", "attendance.csv", "attendance_history.json", "leave_applications.json",
                     "leave_documents.json", "corrections.json", "condonation.json", "notifications.json",
                     "checkin_flags.json", "display_checkins.json", "token_uses.json", "terminal_enrolments.json",
                     "biometric_consents.json", "reported_problems.json", "ticket_comments.json"):
        assert expected in names, expected
    documents = [n for n in names if n.startswith("documents/")]
    assert len(documents) == 1 and archive.read(documents[0]) == w.target.document

    everything = "\n".join(archive.read(n).decode(errors="replace") for n in names)
    for marker in w.markers(w.target):
        assert marker in everything, marker
    assert w.other.id not in everything and w.other.name not in everything and w.other.roll_number not in everything

    attendance = json.loads(archive.read("attendance.json"))
    assert sorted(r["session_id"] for r in attendance) == sorted(w.sessions[:2])
    assert {r["student_id"] for r in attendance} == {w.target.id}
    assert all(r["checked_in_at"].endswith("+00:00") for r in attendance)  # UTC, as the README says
    history = json.loads(archive.read("attendance_history.json"))
    assert {e["session_id"] for e in history if e["entity"] == "attendance"} == set(w.sessions[:2])
    assert [t["title"] for t in json.loads(archive.read("reported_problems.json"))] == [
        f"Projector flickers {w.target.id}"]
    assert [c["given_by"] for c in json.loads(archive.read("biometric_consents.json"))] == [w.target.id]
    student = json.loads(archive.read("student.json"))
    assert "token_secret" not in student[0] and student[0]["roll_number"] == w.target.roll_number
    assert "password_hash" not in json.loads(archive.read("profile.json"))[0]
    assert "attendance.csv" in archive.read("README.txt").decode()
    assert archive.read("attendance.csv").decode().splitlines()[0].startswith("session_id,student_id,status")


async def test_export_holds_the_files_the_student_submitted_and_no_one_elses(db: Database):
    w = await build_privacy_world(db, NOW, webhook=False)
    course = await db.fetchval("SELECT course_id FROM enrolments WHERE student_id = $1", w.target.id)
    term = f"pt_{w.sfx}"
    await db.execute("INSERT INTO terms (id, name, starts_on, ends_on) VALUES ($1, 'Privacy term', $2, $3)",
                     term, NOW.date() - timedelta(days=30), NOW.date() + timedelta(days=30))
    assignment = await create_assignment(db, course_id=course, term_id=term, section_id=None, created_by="test",
                                         fields=AssignmentFields(
        title="Essay", max_marks=Decimal(10), weight=Decimal(10), instructions="", opens_at=None,
        due_at=NOW + timedelta(days=7), cut_off_at=None, grace_minutes=0, penalty_percent=Decimal(0),
        penalty_period="day", penalty_cap_percent=Decimal(0), pass_percent=None, max_attempts=2))
    await publish(db, assignment.id, NOW)
    mine, theirs = (b"%PDF-1.7 essay " + os.urandom(20_000) for _ in range(2))
    submitted = await submit(db, assignment.id, w.target.id, text="", now=NOW,
                             files=[NewFile("my essay.pdf", "application/pdf", mine)])
    await submit(db, assignment.id, w.other.id, text="", now=NOW,
                 files=[NewFile("their essay.pdf", "application/pdf", theirs)])

    archive = await _export(db, w.target.id)
    files = [n for n in archive.namelist() if n.startswith("submissions/")]
    assert files == [f"submissions/{submitted.id}-{submitted.files[0].id}-my essay.pdf"]
    assert archive.read(files[0]) == mine  # opened: the bytes as uploaded, not the sealed blob
    listed = json.loads(archive.read("submission_files.json"))
    assert [(r["submission_id"], r["filename"]) for r in listed] == [(submitted.id, "my essay.pdf")]
    assert "submissions/" in archive.read("README.txt").decode()
    assert not [n for n in (await _export(db, w.other.id)).namelist() if n.endswith("my essay.pdf")]
