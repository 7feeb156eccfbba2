"""hub.db.audit_archive: old entries go to verifiable segment files, then leave the database; the
chain left behind verifies from the archive's anchor and goes on growing; a segment verifies
offline and against its anchor; a dry run changes nothing; two callers at once archive once."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator

import asyncpg
import pytest
import trio

from hub.db import Database, open_database
from hub.db.audit import redact_subject, verify_chain
from hub.db.audit_archive import (
    ArchiveWriteError,
    BrokenChain,
    anchored_segments,
    archive_and_prune,
    check_segment_file,
    manifest_path,
    read_manifest,
    redact_archived_subject,
)
from hub.db.security_audit import record

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 4, 10, 0, tzinfo=timezone.utc)
OLD = NOW - timedelta(days=9 * 365)


@pytest.fixture
async def fresh_db(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=4) as database:
        yield database


async def _append(db: Database, at: datetime, n: int, *, student: str = "stu-1") -> None:
    """``n`` entries dated ``at`` (the ``at`` a writer may give), one transaction."""

    async def work(conn: asyncpg.Connection) -> None:
        for i in range(n):
            await conn.execute(
                "INSERT INTO audit_log (at, actor, entity, entity_id, student_id, before, after, reason)"
                " VALUES ($1, 'usr-fac', 'attendance', $2, $3, NULL, $4::jsonb, 'r')",
                at + timedelta(seconds=i), f"ses-1/{student}", student,
                json.dumps({"status": "present", "score": 75.5, "n": i}))

    await db.run(work, transaction=True)


async def test_archive_prune_and_the_chain_still_verifies(fresh_db: Database, tmp_path: Path) -> None:
    await _append(fresh_db, OLD, 7)
    await _append(fresh_db, NOW, 3)
    before = await verify_chain(fresh_db)
    assert before.ok and before.entries == 10
    cutoff = NOW - timedelta(days=7 * 365)

    report = await archive_and_prune(fresh_db, older_than=cutoff, archive_dir=tmp_path / "archive",
                                     dry_run=False, segment_entries=3)
    assert (report.entries_archived, report.entries_pruned, report.dry_run) == (7, 7, False)
    assert [p.name for p in report.segment_paths] == [
        "audit-000000000001-000000000003.jsonl", "audit-000000000004-000000000006.jsonl",
        "audit-000000000007-000000000007.jsonl"]
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log") == 3

    after = await verify_chain(fresh_db)
    assert (after.ok, after.entries, after.archived_entries, after.archived_segments) == (True, 3, 7, 3)
    assert (after.head_id, after.head_hash) == (before.head_id, before.head_hash)

    # Each segment verifies offline, matches its manifest and its anchor; together they are the
    # chain's first seven links.
    anchors = await anchored_segments(fresh_db)
    assert [a.file_name for a in anchors] == [p.name for p in report.segment_paths]
    previous_hash = "0" * 64
    for path, anchor in zip(report.segment_paths, anchors):
        manifest = read_manifest(path)
        assert manifest is not None and manifest["segment_id"] == anchor.segment_id
        for expected in (manifest, anchor.expected()):
            check = check_segment_file(path, expected)
            assert check.ok, (path, check)
        assert check.chain.start_prev_hash == previous_hash
        previous_hash = check.chain.head_hash
    first_left = await fresh_db.fetchrow("SELECT prev_hash FROM audit_log ORDER BY id LIMIT 1")
    assert bytes(first_left["prev_hash"]).hex() == previous_hash
    assert not list((tmp_path / "archive").glob(".*"))  # no temporary file left behind

    # Nothing more is old enough: a second run does nothing.
    again = await archive_and_prune(fresh_db, older_than=cutoff, archive_dir=tmp_path / "archive", dry_run=False)
    assert (again.entries_archived, again.segment_paths) == (0, [])

    # The chain goes on: new entries, then everything archived, then new entries after an empty log.
    await fresh_db.run(lambda conn: record(conn, actor="usr-admin", action="updated", entity="user",
                                           entity_id="stu-1", after={"display_name": "X"}), transaction=True)
    everything = await archive_and_prune(fresh_db, older_than=NOW + timedelta(days=36500),
                                         archive_dir=tmp_path / "archive", dry_run=False)
    assert everything.entries_archived == 4
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log") == 0
    empty = await verify_chain(fresh_db)
    assert (empty.ok, empty.entries, empty.archived_entries, empty.archived_segments) == (True, 0, 11, 4)
    await _append(fresh_db, NOW, 1)
    resumed = await verify_chain(fresh_db)
    assert (resumed.ok, resumed.entries, resumed.archived_entries) == (True, 1, 11)
    last_anchor = (await anchored_segments(fresh_db))[-1]
    assert bytes((await fresh_db.fetchrow("SELECT prev_hash FROM audit_log"))["prev_hash"]).hex() \
        == last_anchor.last_hash


async def test_only_a_prefix_of_the_chain_is_archived(fresh_db: Database, tmp_path: Path) -> None:
    # An entry dated recently between old ones stops the prefix: the chain left must be contiguous.
    await _append(fresh_db, OLD, 2)
    await _append(fresh_db, NOW, 1)
    await _append(fresh_db, OLD, 2)
    report = await archive_and_prune(fresh_db, older_than=NOW - timedelta(days=1), archive_dir=tmp_path,
                                     dry_run=False)
    assert report.entries_archived == 2
    assert [r["id"] for r in await fresh_db.fetch("SELECT id FROM audit_log ORDER BY id")] == [3, 4, 5]
    assert (await verify_chain(fresh_db)).ok


async def test_dry_run_writes_and_deletes_nothing(fresh_db: Database, tmp_path: Path) -> None:
    await _append(fresh_db, OLD, 5)
    await _append(fresh_db, NOW, 2)
    report = await archive_and_prune(fresh_db, older_than=NOW - timedelta(days=1), archive_dir=tmp_path / "a",
                                     dry_run=True, segment_entries=2)
    assert (report.entries_archived, report.entries_pruned, report.dry_run) == (5, 5, True)
    assert [p.name for p in report.segment_paths] == [
        "audit-000000000001-000000000002.jsonl", "audit-000000000003-000000000004.jsonl",
        "audit-000000000005-000000000005.jsonl"]
    assert not (tmp_path / "a").exists()
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log") == 7
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_archive") == 0
    # The dry run's figures are what the real run then does.
    real = await archive_and_prune(fresh_db, older_than=NOW - timedelta(days=1), archive_dir=tmp_path / "a",
                                   dry_run=False, segment_entries=2)
    assert (real.entries_archived, real.segment_paths) == (report.entries_archived, report.segment_paths)


async def test_two_callers_at_once_archive_each_entry_once(fresh_db: Database, tmp_path: Path) -> None:
    await _append(fresh_db, OLD, 40)
    results = []

    async def caller(directory: Path) -> None:
        # A pool of its own: as another hub process would have.
        async with open_database(fresh_db.dsn, max_size=2) as db:
            results.append(await archive_and_prune(db, older_than=NOW, archive_dir=directory, dry_run=False,
                                                   segment_entries=7))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller, tmp_path / "one")
        nursery.start_soon(caller, tmp_path / "two")
    assert sum(r.entries_archived for r in results) == 40
    anchors = await anchored_segments(fresh_db)
    assert sum(a.entries for a in anchors) == 40 and len(anchors) == 6
    report = await verify_chain(fresh_db)
    assert (report.ok, report.entries, report.archived_entries) == (True, 0, 40)
    written = sorted(p for r in results for p in r.segment_paths)
    assert len(written) == 6
    for anchor in anchors:
        path = next(p for p in written if p.name == anchor.file_name)
        assert check_segment_file(path, anchor.expected()).ok


async def test_a_redacted_entry_archives_and_verifies(fresh_db: Database, tmp_path: Path) -> None:
    await _append(fresh_db, OLD, 2, student="stu-1")
    await _append(fresh_db, OLD, 2, student="stu-2")
    assert await fresh_db.run(lambda conn: redact_subject(conn, student_id="stu-1", pseudonym="erased-1"),
                              transaction=True) == 2
    report = await archive_and_prune(fresh_db, older_than=NOW, archive_dir=tmp_path, dry_run=False)
    [segment] = report.segment_paths
    check = check_segment_file(segment, read_manifest(segment))
    assert (check.ok, check.chain.entries, check.chain.redacted) == (True, 4, 2)
    assert "stu-1" not in segment.read_text()


async def test_erasure_reaches_archived_segments(fresh_db: Database, tmp_path: Path) -> None:
    await _append(fresh_db, OLD, 3, student="stu-1")
    await _append(fresh_db, OLD, 2, student="stu-2")
    report = await archive_and_prune(fresh_db, older_than=NOW, archive_dir=tmp_path, dry_run=False,
                                     segment_entries=4)
    first, second = report.segment_paths
    untouched = second.read_bytes()  # entry 5 only: stu-2's

    redacted = await redact_archived_subject(fresh_db, archive_dir=tmp_path, student_id="stu-1",
                                             pseudonym="erased-1")
    assert redacted == 3
    assert "stu-1" not in first.read_text() and second.read_bytes() == untouched
    [anchor, _] = await anchored_segments(fresh_db)
    # Same entries, ids and hashes: it verifies against its anchor (new bytes, counted as redacted)
    # and against its rewritten manifest.
    for expected in (anchor.expected(), read_manifest(first)):
        check = check_segment_file(first, expected)
        assert (check.ok, check.chain.entries, check.chain.redacted) == (True, 4, 3), check
    assert read_manifest(first)["redacted_entries"] == 3
    assert (await verify_chain(fresh_db)).ok
    assert await redact_archived_subject(fresh_db, archive_dir=tmp_path, student_id="stu-1",
                                         pseudonym="erased-1") == 0

    # Tampering with an entry that was not redacted is still caught.
    lines = first.read_text().splitlines(keepends=True)
    edited = json.loads(lines[3])
    edited["after"]["status"] = "absent"
    first.write_text("".join([*lines[:3], json.dumps(edited) + "\n"]))
    check = check_segment_file(first, anchor.expected())
    assert (check.ok, check.chain.problem, check.chain.first_broken_id) == (False, "altered", 4)


async def test_tampered_segments_and_anchors_are_detected(fresh_db: Database, tmp_path: Path) -> None:
    await _append(fresh_db, OLD, 6)
    await _append(fresh_db, NOW, 1)
    report = await archive_and_prune(fresh_db, older_than=NOW - timedelta(days=1), archive_dir=tmp_path,
                                     dry_run=False, segment_entries=3)
    first, second = report.segment_paths
    anchor = (await anchored_segments(fresh_db))[0]
    lines = first.read_text().splitlines(keepends=True)

    edited = json.loads(lines[1])
    edited["after"]["status"] = "absent"
    first.write_text(lines[0] + json.dumps(edited) + "\n" + lines[2])
    check = check_segment_file(first, anchor.expected())
    assert (check.ok, check.chain.problem, check.chain.first_broken_id) == (False, "altered", 2)
    assert check.mismatches == ("sha256",)

    # Cut short: the chain left in the file still verifies; the anchor (and manifest) say it is not all.
    first.write_text("".join(lines[:2]))
    check = check_segment_file(first, anchor.expected())
    assert check.chain.ok and not check.ok
    assert set(check.mismatches) == {"sha256", "entries", "last_id", "last_hash"}
    assert not check_segment_file(first, read_manifest(first)).ok

    # Swapped for the other segment (each verifies on its own): the anchor's ends do not match.
    first.write_text(second.read_text())
    check = check_segment_file(first, anchor.expected())
    assert check.chain.ok and {"first_id", "first_prev_hash", "sha256"} <= set(check.mismatches)

    # An anchor changed in the database (triggers off) no longer links up.
    async def work(conn: asyncpg.Connection) -> None:
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE audit_archive SET first_prev_hash = sha256(first_prev_hash)"
                           " WHERE segment_id = $1", anchor.segment_id + 1)

    await fresh_db.run(work, transaction=True)
    verdict = await verify_chain(fresh_db)
    assert (verdict.ok, verdict.problem, verdict.first_broken_id) == (False, "broken_link", 4)
    # The anchors themselves refuse change.
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await fresh_db.execute("DELETE FROM audit_archive")


async def test_an_unwritable_directory_deletes_nothing(fresh_db: Database, tmp_path: Path) -> None:
    await _append(fresh_db, OLD, 3)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ArchiveWriteError):
        await archive_and_prune(fresh_db, older_than=NOW, archive_dir=blocker / "archive", dry_run=False)
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_log") == 3
    assert await fresh_db.fetchval("SELECT count(*) FROM audit_archive") == 0
    with pytest.raises(ValueError):
        await archive_and_prune(fresh_db, older_than=datetime(2020, 1, 1), archive_dir=tmp_path, dry_run=True)


async def test_a_broken_stretch_is_not_archived(fresh_db: Database, tmp_path: Path) -> None:
    await _append(fresh_db, OLD, 6)

    async def delete_third(conn: asyncpg.Connection) -> None:  # an attacker, triggers off
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("DELETE FROM audit_log WHERE id = 3")

    await fresh_db.run(delete_third, transaction=True)
    with pytest.raises(BrokenChain) as refused:
        await archive_and_prune(fresh_db, older_than=NOW, archive_dir=tmp_path, dry_run=False, segment_entries=2)
    assert refused.value.entry_id == 4
    # The segment before the break is archived; the broken stretch stays in the database as evidence.
    assert [a.file_name for a in await anchored_segments(fresh_db)] == ["audit-000000000001-000000000002.jsonl"]
    assert [r["id"] for r in await fresh_db.fetch("SELECT id FROM audit_log ORDER BY id")] == [4, 5, 6]
    assert sorted(p.name for p in await trio.Path(tmp_path).iterdir()) == [
        "audit-000000000001-000000000002.jsonl", "audit-000000000001-000000000002.manifest.json"]
    report = await verify_chain(fresh_db)
    assert (report.ok, report.first_broken_id, report.problem) == (False, 4, "broken_link")


def test_manifest_sits_beside_its_segment(tmp_path: Path) -> None:
    assert manifest_path(tmp_path / "audit-000000000001-000000000003.jsonl") == \
        tmp_path / "audit-000000000001-000000000003.manifest.json"
    assert read_manifest(tmp_path / "nothing.jsonl") is None
