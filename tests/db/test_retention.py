"""Retention of every table (hub/db/retention.py, migration 0023) on a real PostgreSQL, with a controlled "now"."""
from __future__ import annotations

import dataclasses
import os
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import AsyncIterator

import asyncpg
import pytest
from trio_asyncio import aio_as_trio

from hub.core.config import EVENT_MAX_AGE_S
from hub.core.records import AcceptedEvent, Commit
from hub.db import Database, open_database
from hub.db.audit import verify_chain
from hub.db.ingest import write_batch
from hub.db.retention import (
    EVENTS,
    LEDGER,
    LEDGER_MARGIN,
    RETENTION_LOCK,
    RetentionPeriods,
    keep_from_days,
    run_pass,
    years_before,
)

NOW = datetime(2026, 3, 20, 10, 30, tzinfo=timezone.utc)
PERIODS = RetentionPeriods(events_days=14, ahead_days=3)
#: The same periods with a short lock wait, for the pass that runs behind a reader: each of the ~20
#: partitions it cannot lock (creations and drops) would otherwise wait the default 2 s in turn.
IMPATIENT = dataclasses.replace(PERIODS, lock_timeout_ms=100)
DEVICE = "dev-retention"


@pytest.fixture
async def rdb(aio_loop, fresh_database_url: str) -> AsyncIterator[Database]:
    async with open_database(fresh_database_url, max_size=3) as database:
        await database.execute("INSERT INTO rooms (id, name, building) VALUES ('r-ret', 'R', 'B')")
        await database.execute(
            "INSERT INTO devices (id, room_id, kind, alg, key) VALUES ($1, 'r-ret', 'sensor', 'hmac-sha256', $2)",
            DEVICE, os.urandom(32))
        yield database


def _event(signed: datetime, received: datetime) -> Commit:
    """An accepted heartbeat's commit, as hub.pipeline.commits.accept builds it (no message: a test)."""
    event_id = uuid.uuid4()
    row = AcceptedEvent(event_id=event_id, device_id=DEVICE, seq=1, kind="heartbeat", device_ts=signed,
                        received_at=received, session_id=None, body={"uptime_s": 1})
    return Commit(event_id.bytes, (row,), outcome=("ingested", "heartbeat"), signed_at=signed)


async def _count(db: Database, table: str) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM {table}"))


async def _partitions(db: Database, table) -> list[date]:
    return sorted(await db.run(table.existing))


async def test_events_move_into_daily_partitions_and_old_days_are_dropped(rdb: Database) -> None:
    days_ago = [0, 1, 5, 13, 20]
    for n in days_ago:
        at = NOW - timedelta(days=n)
        await write_batch(rdb, [_event(at, at), _event(at, at)])
    assert await _count(rdb, EVENTS.default) == 10  # no partitions yet: everything in DEFAULT

    first = await run_pass(rdb, NOW, PERIODS)
    report = first.tables["events"]
    kept_from = NOW.date() - timedelta(days=14)
    assert report.partitions_created == [kept_from + timedelta(days=i) for i in range(14 + 1 + 3)]
    assert report.moved_from_default == 8  # the four kept days' rows left DEFAULT for their partitions
    assert report.rows == 2  # the 20-day-old pair, deleted from DEFAULT
    assert report.partitions_dropped == []
    assert await _count(rdb, "events") == 8
    assert await _count(rdb, EVENTS.default) == 0
    assert await rdb.fetchval(
        "SELECT count(*) FROM events_p" + (NOW.date() - timedelta(days=5)).strftime("%Y%m%d")) == 2

    # Ten days later, the days now older than 14 days are dropped whole.
    later = NOW + timedelta(days=10)
    second = await run_pass(rdb, later, PERIODS)
    dropped = second.tables["events"].partitions_dropped
    assert dropped == [kept_from + timedelta(days=i) for i in range(10)]
    assert second.tables["events"].partition_rows == 4  # the 13- and 5-day-old pairs, as counted before the drop
    assert second.tables["events"].rows == 0
    assert await _count(rdb, "events") == 4
    parts = await _partitions(rdb, EVENTS)
    assert parts[0] == later.date() - timedelta(days=14) and parts[-1] == later.date() + timedelta(days=3)

    # A pass again at the same moment finds nothing more to do.
    again = await run_pass(rdb, later, PERIODS)
    assert again.tables["events"].removed == 0 and again.tables["events"].partitions_created == []


async def test_ledger_is_partitioned_by_the_signed_day_and_redeliveries_inside_it_change_nothing(rdb: Database) -> None:
    signed = NOW - timedelta(days=3)
    original = _event(signed, NOW)
    assert await write_batch(rdb, [original]) is not None
    await run_pass(rdb, NOW, PERIODS)
    assert await rdb.fetchval(
        "SELECT ledger_day FROM processed_messages WHERE dedup_key = $1", original.dedup_key) == signed.date()
    assert await rdb.fetchval("SELECT count(*) FROM " + LEDGER.name(signed.date())) == 1

    # The same event redelivered (same id, same signature, received later): not applied again,
    # as long as the ledger keeps its day, i.e. up to the age at which the hub refuses it.
    last_accepted = signed + timedelta(seconds=EVENT_MAX_AGE_S)
    await run_pass(rdb, last_accepted, PERIODS)
    redelivered = _event(signed, last_accepted)
    redelivered = Commit(original.dedup_key, redelivered.effects, signed_at=signed)
    written = await write_batch(rdb, [redelivered])
    assert written.fresh == set()
    assert await _count(rdb, "events") == 1


@pytest.mark.parametrize("hour", [0, 1, 6, 12, 23])
def test_a_dropped_ledger_day_holds_only_events_the_hub_refuses(hour: int) -> None:
    # The window's arithmetic: at any moment, every day the pass drops ended longer ago than
    # EVENT_MAX_AGE_S (and the margin), so a redelivery of any of its events is refused 'expired'.
    for day in range(20):
        now = NOW.replace(hour=hour, minute=17) + timedelta(days=day)
        first_kept = keep_from_days(now, PERIODS)["processed_messages"]
        last_dropped_end = datetime.combine(first_kept, datetime.min.time(), timezone.utc)
        assert last_dropped_end <= now - timedelta(seconds=EVENT_MAX_AGE_S) - LEDGER_MARGIN
        # ...and no more than a day beyond that is kept.
        assert last_dropped_end > now - timedelta(seconds=EVENT_MAX_AGE_S) - LEDGER_MARGIN - timedelta(days=1)
    assert PERIODS.ledger_days == 9  # 7 days of outbox + 1 h of broker session + 1 day of margin, in whole days


async def test_ledger_days_past_the_window_are_dropped(rdb: Database) -> None:
    old = NOW - timedelta(days=2)
    await write_batch(rdb, [_event(old, old), _event(NOW, NOW)])
    await run_pass(rdb, NOW, PERIODS)
    assert old.date() in await _partitions(rdb, LEDGER)

    much_later = old + timedelta(seconds=EVENT_MAX_AGE_S) + LEDGER_MARGIN + timedelta(days=1)
    report = await run_pass(rdb, much_later, PERIODS)
    ledger = report.tables["processed_messages"]
    assert old.date() in ledger.partitions_dropped and NOW.date() not in ledger.partitions_dropped
    assert old.date() not in await _partitions(rdb, LEDGER)
    assert await _count(rdb, "processed_messages") == 1


async def test_dry_run_reports_and_changes_nothing(rdb: Database) -> None:
    for n in (0, 20):
        at = NOW - timedelta(days=n)
        await write_batch(rdb, [_event(at, at)])
    await rdb.execute(
        "INSERT INTO rejected_events (dedup_key, topic, reason, payload, payload_size, payload_sha256, received_at)"
        " VALUES ($1, 't', 'malformed', '\\x00', 1, $2, $3), ($4, 't', 'malformed', '\\x00', 1, $2, $5)",
        b"old", b"\x00" * 32, NOW - timedelta(days=100), b"new", NOW - timedelta(days=1))

    async def snapshot() -> tuple:
        return (await _count(rdb, "events"), await _count(rdb, EVENTS.default), await _count(rdb, "rejected_events"),
                await _count(rdb, "processed_messages"), await _partitions(rdb, EVENTS), await _partitions(rdb, LEDGER))

    before = await snapshot()
    dry = await run_pass(rdb, NOW, PERIODS, dry_run=True)
    assert await snapshot() == before
    assert dry.dry_run and not dry.skipped
    assert dry.tables["events"].rows == 1 and dry.tables["events"].partitions_created == []
    assert dry.tables["rejected_events"].rows == 1

    real = await run_pass(rdb, NOW, PERIODS)
    assert real.tables["events"].rows == dry.tables["events"].rows
    assert real.tables["rejected_events"].rows == 1
    assert await rdb.fetchval("SELECT dedup_key FROM rejected_events") == b"new"


async def test_a_second_process_skips_while_one_holds_the_lock(rdb: Database, fresh_database_url: str) -> None:
    old = NOW - timedelta(days=30)
    await write_batch(rdb, [_event(old, old)])
    # "Another hub process": its own connection, outside the pool, holding the retention lock.
    other = await aio_as_trio(asyncpg.connect)(fresh_database_url)
    try:
        assert await aio_as_trio(other.fetchval)("SELECT pg_try_advisory_lock($1)", RETENTION_LOCK)
        skipped = await run_pass(rdb, NOW, PERIODS)
        assert skipped.skipped and skipped.tables == {}
        assert await _count(rdb, "events") == 1
        await aio_as_trio(other.execute)("SELECT pg_advisory_unlock($1)", RETENTION_LOCK)
    finally:
        await aio_as_trio(other.close)()
    done = await run_pass(rdb, NOW, PERIODS)
    assert not done.skipped and done.tables["events"].rows == 1


async def test_small_tables_and_records_follow_their_rules(rdb: Database) -> None:
    await rdb.execute(
        "INSERT INTO users (id, username, display_name, role, password_hash) VALUES ('u-ret', 'ret', 'R', 'admin', 'x')")
    await rdb.execute(
        "INSERT INTO notifications (user_id, kind, title, body, created_at) VALUES"
        " ('u-ret', 'k', 'old', '', $1), ('u-ret', 'k', 'new', '', $2)",
        NOW - timedelta(days=181), NOW - timedelta(days=179))
    await rdb.execute(
        "INSERT INTO refresh_tokens (token_hash, user_id, expires_at) VALUES ('\\x01', 'u-ret', $1), ('\\x02', 'u-ret', $2)",
        NOW - timedelta(days=31), NOW - timedelta(days=1))
    report = await run_pass(rdb, NOW, PERIODS)
    assert report.tables["notifications"].rows == 1
    assert report.tables["refresh_tokens"].rows == 1
    assert await rdb.fetchval("SELECT title FROM notifications") == "new"
    assert await rdb.fetchval("SELECT count(*) FROM refresh_tokens") == 1


def test_years_before_handles_the_leap_day() -> None:
    assert years_before(datetime(2028, 2, 29, 12, tzinfo=timezone.utc), 7) == datetime(2021, 2, 28, 12,
                                                                                       tzinfo=timezone.utc)
    assert years_before(NOW, 7) == NOW.replace(year=2019)


def test_periods_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="events_days"):
        RetentionPeriods(events_days=0)


async def test_attendance_is_kept_seven_years_by_default(rdb: Database) -> None:
    await rdb.execute(
        "INSERT INTO users (id, username, display_name, role, password_hash) VALUES"
        " ('u-fac', 'fac', 'F', 'faculty', 'x'), ('u-stu', 'stu', 'S', 'student', 'x')")
    await rdb.execute("INSERT INTO students (id, roll_number, token_secret) VALUES ('u-stu', 'R1', '\\x00')")
    await rdb.execute("INSERT INTO courses (id, code, title, faculty_id) VALUES ('c-ret', 'C1', 'C', 'u-fac')")
    for session_id, starts in (("s-old", years_before(NOW, 7) - timedelta(days=1)),
                               ("s-kept", years_before(NOW, 7) + timedelta(days=1))):
        await rdb.execute(
            "INSERT INTO class_sessions (id, course_id, room_id, starts_at, ends_at) VALUES ($1, 'c-ret', 'r-ret', $2, $3)",
            session_id, starts, starts + timedelta(hours=1))
        await rdb.execute(
            "INSERT INTO attendance (session_id, student_id, status, source) VALUES ($1, 'u-stu', 'present', 'qr')",
            session_id)
    report = await run_pass(rdb, NOW, PERIODS)
    assert report.tables["attendance"].rows == 1
    assert await rdb.fetchval("SELECT array_agg(session_id) FROM attendance") == ["s-kept"]


async def test_a_drop_behind_a_long_reader_gives_up_and_the_next_pass_drops(rdb: Database,
                                                                             fresh_database_url: str) -> None:
    old = NOW - timedelta(days=5)
    await write_batch(rdb, [_event(old, old)])
    await run_pass(rdb, NOW, PERIODS)
    later = NOW + timedelta(days=10)
    reader = await aio_as_trio(asyncpg.connect)(fresh_database_url)
    try:
        # A long report reading events holds its lock until it commits.
        await aio_as_trio(reader.execute)("BEGIN; SELECT count(*) FROM events")
        busy = await run_pass(rdb, later, IMPATIENT)
        assert busy.tables["events"].partitions_dropped == []
        assert old.date() in await _partitions(rdb, EVENTS)
        await aio_as_trio(reader.execute)("COMMIT")
    finally:
        await aio_as_trio(reader.close)()
    done = await run_pass(rdb, later, PERIODS)
    assert old.date() in done.tables["events"].partitions_dropped
    assert await _count(rdb, "events") == 0


async def test_the_audit_log_is_archived_then_pruned_after_seven_years(rdb: Database, tmp_path) -> None:
    await rdb.execute(
        "INSERT INTO audit_log (at, actor, entity, entity_id, action) VALUES"
        " ($1, 'test', 'device', 'old', 'created'), ($2, 'test', 'device', 'kept', 'created')",
        years_before(NOW, 7) - timedelta(days=1), years_before(NOW, 7) + timedelta(days=1))
    periods = RetentionPeriods(audit_archive_dir=tmp_path / "archive")
    dry = await run_pass(rdb, NOW, periods, dry_run=True)
    assert dry.audit.entries_archived == 1 and not (tmp_path / "archive").exists()
    report = await run_pass(rdb, NOW, periods)
    assert report.audit.entries_pruned == 1 and report.tables["audit_log"].rows == 1
    assert [p.parent for p in report.audit.segment_paths] == [tmp_path / "archive"]
    assert all(p.exists() for p in report.audit.segment_paths)
    assert await rdb.fetchval("SELECT array_agg(entity_id) FROM audit_log") == ["kept"]
    assert (await verify_chain(rdb)).ok  # the chain in the database still verifies after the prune
