"""The attendance primitive and the audit log's hash chain: what changes is audited once,
the chain verifies, concurrent writers keep one chain, and tampering is pinpointed.

Each test has its own database (exact chains, and the tamper tests break it on purpose).
"""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator

import asyncpg
import pytest
import trio

from hub.core.campus import Campus
from hub.db import Database, open_database
from hub.db.attendance import (
    AttendanceChange,
    InvalidAttendanceChange,
    apply_attendance_changes,
    apply_attributed_changes,
)
from hub.db.audit import AuditFilter, csv_chunk, csv_header, iter_audit, jsonl_chunk, search_audit, verify_chain
from hub.db.seed import ensure_campus

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 4, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=6) as database:
        yield database


@pytest.fixture
async def small_campus(fresh_db: Database) -> Campus:
    return await ensure_campus(fresh_db, rooms=1, students=4, now=NOW)


async def apply(db: Database, changes: list[AttendanceChange], actor: str = "usr-admin", reason: str = "test"):
    return await db.run(lambda conn: apply_attendance_changes(conn, changes, actor=actor, reason=reason),
                        transaction=True)


def ids(campus: Campus) -> tuple[str, list[str]]:
    session = campus.sessions[0]
    return session.session_id, list(session.enrolled)


async def test_changes_are_written_and_audited_once_each(fresh_db: Database, small_campus: Campus) -> None:
    session_id, students = ids(small_campus)
    at = NOW + timedelta(minutes=2)
    applied = await apply(fresh_db, [
        AttendanceChange(session_id, students[0], "present", "qr", at),
        AttendanceChange(session_id, students[1], "absent", "manual"),
    ], actor="usr-fac", reason="first")
    assert [(a.student_id, a.before, a.after["status"]) for a in applied] == [
        (students[0], None, "present"), (students[1], None, "absent")]
    assert applied[0].course_id == small_campus.sessions[0].course_id

    # The same value again (even spelled in another offset) is no change and no entry.
    same = at.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert await apply(fresh_db, [AttendanceChange(session_id, students[0], "present", "qr", same)]) == []
    # Two changes to one record in one call: both audited, in order; the final value is stored.
    applied = await apply(fresh_db, [
        AttendanceChange(session_id, students[1], "late", "correction", at),
        AttendanceChange(session_id, students[1], "excused", "leave"),
    ], reason="second")
    assert [(a.before["status"], a.after["status"]) for a in applied] == [("absent", "late"), ("late", "excused")]
    row = await fresh_db.fetchrow("SELECT status, source, checked_in_at FROM attendance"
                                  " WHERE session_id = $1 AND student_id = $2", session_id, students[1])
    assert dict(row) == {"status": "excused", "source": "leave", "checked_in_at": None}

    entries = await fresh_db.fetch("SELECT actor, entity, entity_id, student_id, session_id, course_id, before,"
                                   " after, reason FROM audit_log WHERE entity = 'attendance' ORDER BY id")
    assert len(entries) == 4
    assert entries[0]["actor"] == "usr-fac" and entries[0]["reason"] == "first"
    assert entries[0]["entity_id"] == f"{session_id}/{students[0]}" and entries[0]["before"] is None
    assert json.loads(entries[3]["before"])["status"] == "late"
    assert json.loads(entries[3]["after"]) == {"status": "excused", "checked_in_at": None, "source": "leave",
                                               "event_id": None}
    assert (await verify_chain(fresh_db)).ok


async def test_removal_and_replaces(fresh_db: Database, small_campus: Campus) -> None:
    session_id, students = ids(small_campus)
    await apply(fresh_db, [AttendanceChange(session_id, students[0], "present", "qr", NOW)])
    # A check-in that may only replace absences leaves the present record alone (and no entry).
    skipped = await apply(fresh_db, [AttendanceChange(session_id, students[0], "late", "qr", NOW,
                                                      replaces=frozenset({"absent", "excused"}))])
    assert skipped == []
    # replaces never stops the creation of a missing record.
    created = await apply(fresh_db, [AttendanceChange(session_id, students[1], "absent", "auto_absent",
                                                      replaces=frozenset())])
    assert len(created) == 1
    removed = await apply(fresh_db, [AttendanceChange(session_id, students[1], None, "leave")])
    assert removed[0].after is None and removed[0].before["status"] == "absent"
    assert await fresh_db.fetchval("SELECT count(*) FROM attendance WHERE student_id = $1", students[1]) == 0
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log") == 3
    # Removing what is not there changes nothing.
    assert await apply(fresh_db, [AttendanceChange(session_id, students[1], None, "leave")]) == []


async def test_invalid_changes_are_refused_before_writing(fresh_db: Database, small_campus: Campus) -> None:
    session_id, students = ids(small_campus)
    with pytest.raises(InvalidAttendanceChange):
        await apply(fresh_db, [AttendanceChange(session_id, students[0], "here", "qr")])
    with pytest.raises(InvalidAttendanceChange):
        await apply(fresh_db, [AttendanceChange(session_id, students[0], "present", "qr", datetime(2025, 1, 1))])
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await apply(fresh_db, [AttendanceChange("no-such-session", students[0], "present", "qr", NOW)])
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_audit_log_refuses_update_delete_truncate(fresh_db: Database, small_campus: Campus) -> None:
    session_id, students = ids(small_campus)
    await apply(fresh_db, [AttendanceChange(session_id, students[0], "present", "qr", NOW)])
    for sql in ("UPDATE audit_log SET reason = 'edited'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await fresh_db.execute(sql)
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log") == 1


async def test_concurrent_writers_keep_one_chain(fresh_db: Database, small_campus: Campus) -> None:
    session_id, students = ids(small_campus)
    statuses = ("present", "late", "absent", "excused")

    async def writer(n: int) -> None:
        for round_ in range(6):
            status = statuses[(n + round_) % 4]
            await fresh_db.run(lambda conn, status=status, round_=round_: apply_attributed_changes(conn, [
                (AttendanceChange(session_id, students[n], status, "manual", None), f"writer-{n}", f"round {round_}"),
            ]), transaction=True)

    async with trio.open_nursery() as nursery:
        for n in range(4):
            nursery.start_soon(writer, n)
    # A direct append for another entity (as other modules may make) joins the same chain.
    await fresh_db.execute("INSERT INTO audit_log (actor, entity, entity_id, reason) VALUES ('x', 'course', 'c', 'r')")
    report = await verify_chain(fresh_db)
    assert report.ok and report.entries == 25, report
    links = await fresh_db.fetch("SELECT id, prev_hash, hash FROM audit_log ORDER BY id")
    assert bytes(links[0]["prev_hash"]) == bytes(32)
    assert all(links[i]["prev_hash"] == links[i - 1]["hash"] for i in range(1, len(links)))
    assert report.head_id == links[-1]["id"] and report.head_hash == bytes(links[-1]["hash"]).hex()


async def _tamper(db: Database, sql: str, *args) -> None:
    """As a superuser with triggers off: what an attacker with database access could do."""

    async def work(conn: asyncpg.Connection) -> None:
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql, *args)

    await db.run(work, transaction=True)


async def _chain_of_five(db: Database, campus: Campus) -> list[int]:
    session_id, students = ids(campus)
    for status in ("present", "late", "absent", "present", "excused"):
        await apply(db, [AttendanceChange(session_id, students[0], status, "manual")])
    return [r["id"] for r in await db.fetch("SELECT id FROM audit_log ORDER BY id")]


async def test_an_edited_entry_is_reported_exactly(fresh_db: Database, small_campus: Campus) -> None:
    entry_ids = await _chain_of_five(fresh_db, small_campus)
    assert (await verify_chain(fresh_db)).ok
    await _tamper(fresh_db, "UPDATE audit_log SET after = jsonb_set(after, '{status}', '\"present\"')"
                            " WHERE id = $1", entry_ids[2])
    report = await verify_chain(fresh_db)
    assert not report.ok and report.first_broken_id == entry_ids[2] and report.problem == "altered"
    assert report.entries == 5


async def test_a_deleted_entry_breaks_the_next_link(fresh_db: Database, small_campus: Campus) -> None:
    entry_ids = await _chain_of_five(fresh_db, small_campus)
    await _tamper(fresh_db, "DELETE FROM audit_log WHERE id = $1", entry_ids[1])
    report = await verify_chain(fresh_db)
    assert (report.ok, report.first_broken_id, report.problem) == (False, entry_ids[2], "broken_link")


async def test_a_rehashed_entry_still_breaks_the_chain(fresh_db: Database, small_campus: Campus) -> None:
    # Editing an entry AND recomputing its commitment and its own hash is caught by the next entry's link.
    entry_ids = await _chain_of_five(fresh_db, small_campus)
    await _tamper(fresh_db, "UPDATE audit_log SET reason = 'nothing to see'  WHERE id = $1", entry_ids[1])
    report = await verify_chain(fresh_db)  # the payload no longer matches its commitment
    assert (report.first_broken_id, report.problem) == (entry_ids[1], "altered")
    await _tamper(fresh_db, "UPDATE audit_log a SET personal_commitment = sha256(a.personal_salt ||"
                            " convert_to(audit_personal_canonical(a), 'UTF8')) WHERE id = $1", entry_ids[1])
    report = await verify_chain(fresh_db)  # the commitment no longer matches the entry's hash
    assert (report.first_broken_id, report.problem) == (entry_ids[1], "altered")
    await _tamper(fresh_db, "UPDATE audit_log a SET hash = sha256(a.prev_hash ||"
                            " convert_to(audit_entry_canonical(a), 'UTF8')) WHERE id = $1", entry_ids[1])
    report = await verify_chain(fresh_db)
    assert (report.first_broken_id, report.problem) == (entry_ids[2], "broken_link")


async def test_an_entry_forged_without_the_trigger_is_reported(fresh_db: Database, small_campus: Campus) -> None:
    entry_ids = await _chain_of_five(fresh_db, small_campus)
    await _tamper(fresh_db, "INSERT INTO audit_log (id, actor, entity, entity_id) VALUES ($1, 'me', 'attendance', 'x')",
                  entry_ids[-1] + 100)
    report = await verify_chain(fresh_db)
    assert (report.first_broken_id, report.problem) == (entry_ids[-1] + 100, "missing_hash")


async def test_search_and_export(fresh_db: Database, small_campus: Campus) -> None:
    session_id, students = ids(small_campus)
    await apply(fresh_db, [AttendanceChange(session_id, s, "present", "qr", NOW) for s in students], actor="dev")
    await apply(fresh_db, [AttendanceChange(session_id, students[0], "late", "correction", NOW)],
                actor="usr-fac", reason="=cmd|' /C calc'!A0")
    page = await search_audit(fresh_db, AuditFilter(student_id=students[0]), limit=10, offset=0)
    assert page.total == 2 and [e["actor"] for e in page.items] == ["usr-fac", "dev"]  # newest first
    page = await search_audit(fresh_db, AuditFilter(actor="dev", session_id=session_id), limit=2, offset=2)
    assert page.total == 4 and len(page.items) == 2
    assert (await search_audit(fresh_db, AuditFilter(course_ids=[]), limit=10, offset=0)).total == 0
    future = NOW + timedelta(days=3650)
    assert (await search_audit(fresh_db, AuditFilter(since=future), limit=10, offset=0)).total == 0

    chunks = [c async for c in iter_audit(fresh_db, AuditFilter(), chunk=2)]
    assert [len(c) for c in chunks] == [2, 2, 1]
    flat = [e for c in chunks for e in c]
    assert [e["id"] for e in flat] == sorted(e["id"] for e in flat)
    lines = jsonl_chunk(flat).splitlines()
    assert json.loads(lines[-1])["after"]["status"] == "late"
    rows = list(csv.DictReader(io.StringIO(csv_header() + csv_chunk(flat))))
    assert len(rows) == 5 and rows[-1]["reason"].startswith("'=")  # no formula for a spreadsheet
    assert json.loads(rows[0]["after"])["status"] == "present" and len(rows[0]["hash"]) == 64
