"""Migration 0024: personal data outside the hashed chain.

Entries written before it keep verifying (online and offline); new entries hash a commitment to
their personal payload; redacting a person's entries (erasure) leaves a chain that verifies, with
those entries reported ``redacted``, never ``altered``; tampering is still caught.

Each test has its own database (exact chains; some tests break them on purpose).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import AsyncIterator

import asyncpg
import pytest

from hub.core.campus import Campus
from hub.db import Database, available_migrations, migrate, open_database
from hub.db.attendance import AttendanceChange, apply_attendance_changes
from hub.db.audit import AuditFilter, entries_about_student, iter_audit, jsonl_chunk, redact_subject, verify_chain
from hub.db.audit_hash import check_entries, parse_entries
from hub.db.security_audit import record
from hub.db.seed import ensure_campus

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 4, 10, 0, tzinfo=timezone.utc)
PSEUDONYM = "erased-5f2a"


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=4) as database:
        yield database


@pytest.fixture
async def small_campus(fresh_db: Database) -> Campus:
    return await ensure_campus(fresh_db, rooms=1, students=4, now=NOW)


async def _offline(db: Database):
    """The whole log exported as JSON lines and re-checked without the database."""
    text = "".join([jsonl_chunk(chunk) async for chunk in iter_audit(db, AuditFilter())])
    return check_entries(parse_entries(text.splitlines()))


async def _tamper(db: Database, sql: str, *args) -> None:
    """As a superuser with triggers off: what an attacker with database access could do."""

    async def work(conn: asyncpg.Connection) -> None:
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql, *args)

    await db.run(work, transaction=True)


async def test_entries_from_before_the_migration_still_verify(aio_loop, empty_database_url: str) -> None:
    async with open_database(empty_database_url, max_size=2) as db:
        # The schema as it was before 0024, with entries written by its trigger (v1: payload hashed).
        async def upto_0023(conn: asyncpg.Connection) -> None:
            await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                               " applied_at timestamptz NOT NULL DEFAULT now())")
            for m in available_migrations():
                if m.version < 24:
                    async with conn.transaction():
                        await conn.execute(m.sql)
                        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                                           m.version, m.name)

        await db.run(upto_0023)
        for n in range(3):
            await db.execute(
                "INSERT INTO audit_log (actor, entity, entity_id, student_id, before, after, reason, action)"
                " VALUES ('usr-admin', 'user', $1, $1, '{\"display_name\": \"Old Name\"}',"
                " '{\"score\": 75.00}', 'before 0024', $2)", f"stu-{n}", None if n == 0 else "updated")
        old_head = await db.fetchval("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")

        applied = await migrate(db)
        assert 24 in [m.version for m in applied]
        assert await db.fetchval("SELECT count(*) FROM audit_log WHERE personal_commitment IS NULL") == 3
        await db.run(lambda conn: record(conn, actor="usr-admin", action="updated", entity="user",
                                         entity_id="stu-1", after={"display_name": "New"}), transaction=True)
        new = await db.fetchrow("SELECT * FROM audit_log ORDER BY id DESC LIMIT 1")
        assert bytes(new["prev_hash"]) == bytes(old_head)  # the chain goes on across the upgrade
        assert new["personal_commitment"] is not None and len(bytes(new["personal_salt"])) == 32

        report = await verify_chain(db)
        assert (report.ok, report.entries, report.redacted) == (True, 4, 0)
        offline = await _offline(db)
        assert (offline.ok, offline.entries, offline.head_hash) == (True, 4, report.head_hash)

        # An old entry can be redacted too: then only its links can be checked, and it says so.
        async def erase(conn: asyncpg.Connection) -> int:
            return await redact_subject(conn, student_id="stu-1", pseudonym=PSEUDONYM)

        assert await db.run(erase, transaction=True) == 2  # the v1 entry and the v2 one
        report = await verify_chain(db)
        assert (report.ok, report.entries, report.redacted, report.problem) == (True, 4, 2, None)
        offline = await _offline(db)
        assert (offline.ok, offline.redacted) == (True, 2)
        assert await db.fetchval("SELECT count(*) FROM audit_log WHERE 'stu-1' IN (student_id, entity_id, actor)"
                                 " OR after::text LIKE '%New%'") == 0
        assert await db.fetchval("SELECT count(*) FROM audit_log WHERE before::text LIKE '%Old Name%'") == 2


async def test_new_entries_hash_a_commitment_not_the_payload(fresh_db: Database, small_campus: Campus) -> None:
    session = small_campus.sessions[0]
    await fresh_db.run(lambda conn: apply_attendance_changes(
        conn, [AttendanceChange(session.session_id, s, "present", "qr", NOW) for s in session.enrolled[:2]],
        actor="usr-fac", reason="seen in class"), transaction=True)
    rows = await fresh_db.fetch("SELECT a.*, audit_entry_canonical(a) AS canonical FROM audit_log a ORDER BY id")
    assert len(rows) == 2
    for row in rows:
        canonical = json.loads(row["canonical"])
        # The chain holds ids and the commitment; the person, their states and the reason are outside it.
        assert set(canonical) == {"id", "at", "entity", "action", "session_id", "course_id", "personal"}
        assert canonical["personal"] == bytes(row["personal_commitment"]).hex()
        assert session.enrolled[0] not in row["canonical"] and "seen in class" not in row["canonical"]
    # Two entries with the same payload shape still get different salts, so different commitments.
    assert rows[0]["personal_salt"] != rows[1]["personal_salt"]
    report = await verify_chain(fresh_db)
    assert (report.ok, report.entries, report.redacted) == (True, 2, 0)
    offline = await _offline(fresh_db)
    assert (offline.ok, offline.entries, offline.head_hash) == (True, 2, report.head_hash)

    # Editing the payload (the student id, a state, the reason) is still caught, online and offline.
    await fresh_db.execute("CREATE TABLE audit_backup AS SELECT * FROM audit_log")
    for sql in ("UPDATE audit_log SET student_id = 'someone-else' WHERE id = $1",
                "UPDATE audit_log SET after = jsonb_set(after, '{status}', '\"absent\"') WHERE id = $1",
                "UPDATE audit_log SET personal_salt = sha256(personal_salt) WHERE id = $1"):
        await _tamper(fresh_db, sql, rows[0]["id"])
        report = await verify_chain(fresh_db)
        assert (report.ok, report.first_broken_id, report.problem) == (False, rows[0]["id"], "altered"), sql
        offline = await _offline(fresh_db)
        assert (offline.ok, offline.first_broken_id, offline.problem) == (False, rows[0]["id"], "altered"), sql
        await _tamper(fresh_db, "DELETE FROM audit_log")
        await _tamper(fresh_db, "INSERT INTO audit_log SELECT * FROM audit_backup")
        assert (await verify_chain(fresh_db)).ok


async def _people_entries(db: Database, campus: Campus) -> tuple[str, str, str]:
    """Entries about one student in every shape the hub writes; returns (student, username, other)."""
    session = campus.sessions[0]
    student, other = session.enrolled[0], session.enrolled[1]
    username = await db.fetchval("SELECT username FROM users WHERE id = $1", student)

    async def work(conn: asyncpg.Connection) -> None:
        await apply_attendance_changes(conn, [AttendanceChange(session.session_id, student, "present", "qr", NOW)],
                                       actor="usr-fac", reason="said she was at the clinic")
        await apply_attendance_changes(conn, [AttendanceChange(session.session_id, other, "absent", "manual")],
                                       actor="usr-fac", reason="roll call")
        await record(conn, actor="usr-admin", action="created", entity="user", entity_id=student,
                     after={"username": username, "display_name": "Jane Q Student", "email": "jane@example.edu",
                            "roll_number": "R-4242", "role": "student", "active": True}, reason="enrolled")
        await record(conn, actor=student, action="login_succeeded", entity="login", entity_id=username,
                     after={"address": "192.0.2.44"})
        await record(conn, actor="usr-admin", action="removed", entity="enrolment", entity_id=f"sec-1:{student}",
                     before={"section_id": "sec-1", "course_id": "c1", "student_id": student})
        await record(conn, actor="usr-admin", action="page_assigned", entity="terminal_roster",
                     entity_id=f"dev-1/{student}", after={"student_id": student, "source": "admin"})
        await record(conn, actor="usr-admin", action="imported", entity="user", entity_id="import:2025-03-04",
                     after={"created": 2, "accounts": [{"id": student, "username": username, "role": "student"},
                                                       {"id": other, "username": "other-user", "role": "student"}]},
                     reason="CSV import of 2 row(s)")
        # About someone else only: untouched by the erasure.
        await record(conn, actor="usr-admin", action="updated", entity="user", entity_id=other,
                     after={"display_name": "Other Person"}, reason="typo")

    await db.run(work, transaction=True)
    return student, username, other


async def test_redaction_erases_the_person_and_the_chain_still_verifies(fresh_db: Database,
                                                                         small_campus: Campus) -> None:
    student, username, other = await _people_entries(fresh_db, small_campus)
    about = await fresh_db.run(lambda conn: entries_about_student(conn, student))
    # Their attendance, their user record, their login, the enrolment, the terminal page, the import.
    assert [(e["entity"], e["action"]) for e in about] == [
        ("attendance", None), ("user", "created"), ("login", "login_succeeded"), ("enrolment", "removed"),
        ("terminal_roster", "page_assigned"), ("user", "imported")]
    assert all(e["personal_salt"] and not e["redacted"] for e in about)
    # The export shape: JSON lines that verify offline as a filtered export.
    lines = jsonl_chunk(about).splitlines()
    assert check_entries(parse_entries(lines), allow_gaps=True).ok

    redacted = await fresh_db.run(lambda conn: redact_subject(conn, student_id=student, pseudonym=PSEUDONYM),
                                  transaction=True)
    assert redacted == 6
    report = await verify_chain(fresh_db)
    assert (report.ok, report.entries, report.redacted, report.problem) == (True, 8, 6, None)
    offline = await _offline(fresh_db)
    assert (offline.ok, offline.entries, offline.redacted) == (True, 8, 6)

    # Nothing of the person is left in the log; the others' data is.
    dump = "\n".join(str(dict(r)) for r in await fresh_db.fetch("SELECT * FROM audit_log ORDER BY id"))
    for personal in (student, username, "Jane Q Student", "jane@example.edu", "R-4242", "192.0.2.44", "clinic"):
        assert personal not in dump, personal
    assert "Other Person" in dump and "other-user" in dump and other in dump
    rows = {r["action"] or r["entity"]: r for r in await fresh_db.fetch(
        "SELECT * FROM audit_log WHERE redacted_at IS NOT NULL ORDER BY id")}
    assert rows["attendance"]["student_id"] == PSEUDONYM
    assert rows["attendance"]["entity_id"].endswith(f"/{PSEUDONYM}")
    assert json.loads(rows["attendance"]["after"])["status"] == "present"  # the record's history is kept
    assert rows["attendance"]["reason"] == "[redacted]"
    assert json.loads(rows["created"]["after"])["role"] == "student"
    assert json.loads(rows["created"]["after"])["email"] == "[redacted]"
    assert rows["login_succeeded"]["actor"] == PSEUDONYM and rows["login_succeeded"]["entity_id"] == PSEUDONYM
    assert rows["removed"]["entity_id"] == f"sec-1:{PSEUDONYM}"
    assert json.loads(rows["imported"]["after"])["accounts"][0] == {
        "id": PSEUDONYM, "username": PSEUDONYM, "role": "student"}
    assert rows["imported"]["reason"] == "CSV import of 2 row(s)"  # not about the person: kept
    assert all(r["personal_salt"] is None for r in rows.values())
    # The other student's attendance entry is untouched and still verifies by its commitment.
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log WHERE student_id = $1 AND redacted_at IS NULL",
                                   other) == 1

    # Idempotent; the pseudonym finds the entries again (for an export after the erasure).
    assert await fresh_db.run(lambda conn: redact_subject(conn, student_id=student, pseudonym=PSEUDONYM),
                              transaction=True) == 0
    assert len(await fresh_db.run(lambda conn: entries_about_student(conn, PSEUDONYM))) == 6

    # A redacted entry whose chain fields are then changed is still caught.
    await _tamper(fresh_db, "UPDATE audit_log SET at = at - interval '1 day' WHERE id = $1",
                  rows["attendance"]["id"])
    report = await verify_chain(fresh_db)
    assert (report.ok, report.first_broken_id, report.problem) == (False, rows["attendance"]["id"], "altered")


async def test_only_a_marked_redaction_of_the_personal_columns_is_accepted(fresh_db: Database,
                                                                          small_campus: Campus) -> None:
    student, _, _ = await _people_entries(fresh_db, small_campus)
    entry_id = await fresh_db.fetchval("SELECT min(id) FROM audit_log WHERE student_id = $1", student)

    async def update(sql: str, switch: str | None) -> None:
        async def work(conn: asyncpg.Connection) -> None:
            if switch is not None:
                await conn.execute("SELECT set_config('campushub.audit_change', $1, true)", switch)
            await conn.execute(sql, entry_id)
        await fresh_db.run(work, transaction=True)

    marked = "personal_salt = NULL, redacted_at = now()"
    refused = [
        (f"UPDATE audit_log SET reason = 'x', {marked} WHERE id = $1", None),  # no switch
        ("UPDATE audit_log SET reason = 'x' WHERE id = $1", "redact"),  # not marked redacted
        (f"UPDATE audit_log SET at = now(), {marked} WHERE id = $1", "redact"),  # a chain field
        (f"UPDATE audit_log SET hash = sha256(hash), {marked} WHERE id = $1", "redact"),
        (f"UPDATE audit_log SET reason = 'x', {marked} WHERE id = $1", "prune"),
        ("DELETE FROM audit_log WHERE id = $1", "prune"),  # not inside an archived segment
        ("DELETE FROM audit_log WHERE id = $1", "redact"),
    ]
    for sql, switch in refused:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await update(sql, switch)
    await update(f"UPDATE audit_log SET reason = 'x', {marked} WHERE id = $1", "redact")
    # Once redacted, never again (the switch cannot be used to rewrite a redacted payload).
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await update(f"UPDATE audit_log SET reason = 'y', {marked} WHERE id = $1", "redact")
    assert (await verify_chain(fresh_db)).ok


async def test_redaction_refuses_bad_arguments(fresh_db: Database) -> None:
    for student_id, pseudonym in (("", "p"), ("s", ""), ("s", "s"), ("s\x00", "p")):
        with pytest.raises(ValueError):
            await fresh_db.run(lambda conn, s=student_id, p=pseudonym: redact_subject(conn, student_id=s, pseudonym=p),
                               transaction=True)


def test_decimal_payloads_keep_their_digits() -> None:
    # The commitment covers numbers as PostgreSQL prints them: 75.00 stays 75.00 through an export.
    from hub.db.audit_hash import personal_text

    entry = {"actor": "a", "entity_id": "e", "student_id": None, "before": {"pct": Decimal("75.00")},
             "after": None, "reason": ""}
    assert personal_text(entry) == ('{"actor": "a", "after": null, "before": {"pct": 75.00}, "reason": "",'
                                    ' "entity_id": "e", "student_id": null}')
