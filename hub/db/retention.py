"""Retention of every table: one pass drops old daily partitions and deletes old rows in batches.

docs/data-lifecycle.md is the table of rules (what each table holds, how long,
which setting, why); :data:`RULES` here is what the pass does, and the two
must say the same thing.

One pass (:func:`run_pass`, run by hub/services/retention.py and
``campushub retention run``):

1. **Partitioned tables** (migration 0023), the two that grow with every
   message: ``events`` by ``received_at`` and the dedup ledger
   ``processed_messages`` by ``ledger_day`` (the event's signed UTC date).
   The daily partitions of [first kept day, today + ``ahead_days``] are
   created (moving their rows out of DEFAULT), older ones are dropped, and
   DEFAULT rows older than the first kept day are deleted in batches.
   The ledger keeps a day until every event signed that day is refused as
   ``expired`` (``hub.core.config.EVENT_MAX_AGE_S``, the device actor) plus
   :data:`LEDGER_MARGIN`: a redelivery that the ledger no longer remembers
   is therefore never applied (docs/data-lifecycle.md, "The dedup ledger's window").
2. **Smaller tables**: batched ``DELETE``s by age (``batch_rows`` rows per
   statement and transaction, so no lock is held long and the writer never
   waits on a big delete), children before parents.
3. **The audit log**: ``hub.db.audit_archive.archive_and_prune`` (the audit
   chain's own module) archives entries older than the retention to verifiable
   segment files and only then deletes them.

Telemetry (``sensor_readings``, its aggregates, device health history) keeps
its own maintenance pass (hub/db/telemetry.py); this pass does not touch it.

Concurrency contract: a pass holds a PostgreSQL session advisory lock
(:data:`RETENTION_LOCK`) on one pooled connection through steps 1 and 2, so
of several hub processes only one prunes at a time; the others' passes are
skipped (``report.skipped``), not queued. Step 3 runs after it, on the audit
archive's own per-segment locks. A partition drop takes its parent's ACCESS
EXCLUSIVE lock and a creation its DEFAULT partition's (the writer's inserts
wait for either), so each waits at most ``lock_timeout_ms`` (:data:`LOCK_TIMEOUT_MS`) behind a
reader and otherwise leaves the partition to the next pass. Each partition operation and each
batch is its own short transaction; cancelling a pass rolls back only the
step in progress and the next pass carries on where it stopped. A dry run
takes the same lock, reads, and changes nothing.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

import asyncpg

from hub.core.config import EVENT_MAX_AGE_S, Settings

from . import advisory
from ._pool import Database
from .partitions import DailyPartitions

log = logging.getLogger("hub.db.retention")

#: The session advisory lock of a retention pass (key in hub/db/advisory.py, which says why a pass
#: locks on its pooled connection rather than with ``advisory.session_lock``).
RETENTION_LOCK = advisory.RETENTION_LOCK
#: Beyond :data:`EVENT_MAX_AGE_S`, a ledger day is kept one more day: an event accepted just inside
#: the age limit may still sit in the writer's batch (a database outage) when the pass runs.
LEDGER_MARGIN = timedelta(days=1)
#: How long a partition's creation or drop waits for its lock before it is left to the next pass.
LOCK_TIMEOUT_MS = 2000

EVENTS = DailyPartitions("events", "received_at")
LEDGER = DailyPartitions("processed_messages", "ledger_day", by_date=True)


@dataclass(frozen=True)
class RetentionPeriods:
    """How long each kind of row is kept (``Settings.retention_*``; docs/data-lifecycle.md).

    Telemetry has its own, ``hub.db.telemetry.RetentionPolicy``.
    """

    events_days: int = 14
    rejections_days: int = 90
    checkin_evidence_days: int = 180
    notifications_days: int = 180
    commands_days: int = 90
    webhook_deliveries_days: int = 30
    expired_credentials_days: int = 30
    tickets_days: int = 730
    alarms_days: int = 400
    records_years: int = 7
    audit_years: int = 7
    #: Where audit segments are written before their entries are deleted.
    audit_archive_dir: Path = Path(".campushub/audit-archive")
    #: Daily partitions are created this many days ahead.
    ahead_days: int = 3
    #: Rows per DELETE statement (and transaction) in the batched deletes.
    batch_rows: int = 5000
    #: Events signed longer ago are refused; the ledger keeps each day this long past its end.
    event_max_age: timedelta = timedelta(seconds=EVENT_MAX_AGE_S)
    #: How long a partition's creation or drop waits for its lock (not a setting: tests shorten it).
    lock_timeout_ms: int = LOCK_TIMEOUT_MS

    def __post_init__(self) -> None:
        for name in ("events_days", "rejections_days", "checkin_evidence_days", "notifications_days",
                     "commands_days", "webhook_deliveries_days", "expired_credentials_days",
                     "tickets_days", "alarms_days", "records_years", "audit_years", "ahead_days", "batch_rows",
                     "lock_timeout_ms"):
            if getattr(self, name) < 1:
                raise ValueError(f"retention: {name} must be at least 1, got {getattr(self, name)}")

    @property
    def ledger_days(self) -> int:
        """Whole days of ledger partitions kept before today (derived, not a setting)."""
        return math.ceil((self.event_max_age + LEDGER_MARGIN) / timedelta(days=1))


def policy_from_settings(settings: Settings) -> RetentionPeriods:
    return RetentionPeriods(
        events_days=settings.retention_events_days,
        rejections_days=settings.retention_rejections_days,
        checkin_evidence_days=settings.retention_checkin_evidence_days,
        notifications_days=settings.retention_notifications_days,
        commands_days=settings.retention_commands_days,
        webhook_deliveries_days=settings.retention_webhook_deliveries_days,
        expired_credentials_days=settings.retention_expired_credentials_days,
        tickets_days=settings.retention_tickets_days,
        alarms_days=settings.retention_alarms_days,
        records_years=settings.retention_records_years,
        audit_years=settings.retention_audit_years,
        audit_archive_dir=settings.audit_archive_path,
    )


def years_before(now: datetime, years: int) -> datetime:
    """The same calendar instant ``years`` earlier (29 February becomes the 28th)."""
    try:
        return now.replace(year=now.year - years)
    except ValueError:
        return now.replace(year=now.year - years, day=28)


@dataclass(frozen=True)
class DeleteRule:
    """One batched-DELETE rule: rows of ``table`` matching ``where`` (``$1`` = the cutoff) go."""

    table: str
    where: str
    #: The cutoff for ``now`` and a policy.
    cutoff: Callable[[datetime, RetentionPeriods], Any]


def _days(name: str) -> Callable[[datetime, RetentionPeriods], datetime]:
    return lambda now, policy: now - timedelta(days=getattr(policy, name))


def _records(now: datetime, policy: RetentionPeriods) -> datetime:
    return years_before(now, policy.records_years)


def _records_day(now: datetime, policy: RetentionPeriods) -> date:
    return years_before(now, policy.records_years).date()


_OLD_SESSION = "session_id IN (SELECT id FROM class_sessions WHERE starts_at < $1)"
_OLD_TICKET = "ticket_id IN (SELECT id FROM tickets WHERE state = 'closed' AND closed_at < $1)"
_OLD_LEAVE = "leave_id IN (SELECT id FROM leave_applications WHERE ends_on < $1)"
_OLD_TERM_WORK = ("assessment_id IN (SELECT a.id FROM assessments a JOIN terms t ON t.id = a.term_id"
                  " WHERE t.ends_on < $1)")

#: The batched deletes, in order (children before the rows they reference).
RULES: tuple[DeleteRule, ...] = (
    DeleteRule("rejected_events", "received_at < $1", _days("rejections_days")),
    DeleteRule("rejection_tallies", "window_start < $1", _days("rejections_days")),
    DeleteRule("display_checkins", "received_at < $1", _days("checkin_evidence_days")),
    DeleteRule("token_uses", _OLD_SESSION, _days("checkin_evidence_days")),
    DeleteRule("notifications", "created_at < $1", _days("notifications_days")),
    # "Due in 24 h" was sent: kept as long as the notification it stands for.
    DeleteRule("assignment_reminders", "sent_at < $1", _days("notifications_days")),
    DeleteRule("device_commands", "status NOT IN ('pending', 'sent') AND updated_at < $1", _days("commands_days")),
    DeleteRule("webhook_deliveries", "state <> 'pending' AND created_at < $1", _days("webhook_deliveries_days")),
    DeleteRule("refresh_tokens", "expires_at < $1", _days("expired_credentials_days")),
    DeleteRule("one_time_codes", "expires_at < $1", _days("expired_credentials_days")),
    DeleteRule("ticket_comments", _OLD_TICKET, _days("tickets_days")),
    DeleteRule("ticket_events", _OLD_TICKET, _days("tickets_days")),
    DeleteRule("tickets", "state = 'closed' AND closed_at < $1", _days("tickets_days")),
    DeleteRule("alarms", "state = 'cleared_acked' AND cleared_at < $1"
               " AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.alarm_id = alarms.id)", _days("alarms_days")),
    # Attendance and its records: 7 years by default, counted from the session (or application).
    DeleteRule("checkin_flags", _OLD_SESSION, _records),
    DeleteRule("correction_requests", "requested_at < $1", _records),
    DeleteRule("leave_sessions", _OLD_SESSION, _records),
    DeleteRule("leave_sessions", _OLD_LEAVE, _records_day),
    DeleteRule("leave_documents", _OLD_LEAVE, _records_day),
    DeleteRule("leave_applications", "ends_on < $1 AND NOT EXISTS (SELECT 1 FROM leave_sessions s"
         " WHERE s.leave_id = leave_applications.id)", _records_day),
    DeleteRule("attendance", _OLD_SESSION, _records),
    # Syllabus records of a session (migration 0027): kept like its attendance; progress once unchanged as long.
    DeleteRule("topic_understanding", _OLD_SESSION, _records),
    DeleteRule("session_topics", _OLD_SESSION, _records),
    DeleteRule("topic_progress", "updated_at < $1", _records),
    DeleteRule("session_events", "at < $1", _records),
    DeleteRule("condonation_applications", "created_at < $1", _records),
    DeleteRule("attendance_warnings", "changed_at < $1", _records),
    # Marks and exam sittings (migrations 0028, 0030): academic records, 7 years from the end of their term
    # (marks) or from the sitting (sittings). The assessments themselves stay with the course.
    DeleteRule("assessment_marks", "assessment_id IN (SELECT a.id FROM assessments a JOIN terms t ON t.id = a.term_id"
               " WHERE t.ends_on < $1)", _records_day),
    # Assignment work (migration 0029): records like the marks, 7 years from the end of the term; files first.
    DeleteRule("submission_files", "submission_id IN (SELECT s.id FROM assignment_submissions s"
               " JOIN assessments a ON a.id = s.assessment_id JOIN terms t ON t.id = a.term_id WHERE t.ends_on < $1)",
               _records_day),
    DeleteRule("assignment_submissions", _OLD_TERM_WORK, _records_day),
    DeleteRule("rubric_scores", _OLD_TERM_WORK, _records_day),
    DeleteRule("assignment_extensions", _OLD_TERM_WORK, _records_day),
    DeleteRule("exam_sittings", "ends_at < $1", _records),
    # Final course results (migration 0031): academic records, 7 years from the end of their term.
    DeleteRule("course_results", "term_id IN (SELECT id FROM terms WHERE ends_on < $1)", _records_day),
)


@dataclass
class TableReport:
    """What a pass removed from one table (a dry run: what it would remove)."""

    table: str
    rows: int = 0
    #: Daily partitions dropped, with their rows (the planner's estimate once the table was analysed).
    partitions_dropped: list[date] = field(default_factory=list)
    partition_rows: int = 0
    partitions_created: list[date] = field(default_factory=list)
    moved_from_default: int = 0

    @property
    def removed(self) -> int:
        return self.rows + self.partition_rows


@dataclass
class RetentionReport:
    at: datetime
    dry_run: bool
    skipped: bool = False
    tables: dict[str, TableReport] = field(default_factory=dict)
    #: ``hub.db.audit_archive.AuditPruneReport`` when the audit archive ran.
    audit: Any = None
    #: Why the audit log was not pruned (empty if it was).
    audit_note: str = ""
    duration_s: float = 0.0

    def table(self, name: str) -> TableReport:
        return self.tables.setdefault(name, TableReport(name))


async def _count_rows(conn: asyncpg.Connection, name: str) -> int:
    estimate = await conn.fetchval("SELECT reltuples::bigint FROM pg_class WHERE oid = $1::regclass", name)
    if estimate is None or estimate < 0:  # never analysed: count (small, or young)
        return int(await conn.fetchval(f"SELECT count(*) FROM {name}"))
    return int(estimate)


async def _batched_delete(conn: asyncpg.Connection, table: str, where: str, cutoff: Any, batch: int,
                          dry_run: bool) -> int:
    if dry_run:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", cutoff))
    total = 0
    sql = f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {where} LIMIT {int(batch)}))"
    while True:
        deleted = int((await conn.execute(sql, cutoff)).split()[-1])
        total += deleted
        if deleted < batch:
            return total


async def _prune_partitioned(conn: asyncpg.Connection, table: DailyPartitions, keep_from: date, today: date,
                             policy: RetentionPeriods, report: TableReport, dry_run: bool) -> None:
    existing = await table.existing(conn)
    if not dry_run:
        created, moved = await table.create_missing(conn, existing, keep_from,
                                                    today + timedelta(days=policy.ahead_days))
        report.partitions_created.extend(created)
        report.moved_from_default += moved
    for day, name in sorted(existing.items()):
        if day < keep_from:
            rows = await _count_rows(conn, name)
            if dry_run or await _drop(conn, table, name, policy.lock_timeout_ms):
                report.partition_rows += rows
                report.partitions_dropped.append(day)
    cutoff = table.bounds(keep_from)[0]
    report.rows += await _batched_delete(conn, table.default, f"{table.column} < $1", cutoff, policy.batch_rows,
                                         dry_run)


async def _drop(conn: asyncpg.Connection, table: DailyPartitions, name: str, lock_timeout_ms: int) -> bool:
    """Drop one partition; ``False`` if its lock was not granted within the pass's lock timeout
    (it is dropped by a later pass)."""
    try:
        async with conn.transaction():
            await table.drop_partition(conn, name)
        return True
    except asyncpg.LockNotAvailableError:
        log.warning("retention: %s is busy (lock not granted in %d ms); dropped next pass", name, lock_timeout_ms)
        return False


async def _with_lock(conn: asyncpg.Connection, lock_timeout_ms: int, work: Callable[[], Awaitable[None]]) -> bool:
    """Run ``work`` holding the retention lock and the pass's lock timeout; ``False``: the lock is taken."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RETENTION_LOCK):
        return False
    try:
        # Creating a partition locks DEFAULT and dropping one locks the parent exclusively:
        # waiting behind a long reader would queue the writer's next batch behind us.
        await conn.execute(f"SET lock_timeout = '{int(lock_timeout_ms)}ms'")
        await work()
        return True
    finally:
        await conn.execute("RESET lock_timeout")
        await conn.execute("SELECT pg_advisory_unlock($1)", RETENTION_LOCK)


def keep_from_days(now: datetime, policy: RetentionPeriods) -> dict[str, date]:
    """The first kept day of each partitioned table at ``now``."""
    today = now.astimezone(timezone.utc).date()
    return {
        EVENTS.parent: today - timedelta(days=policy.events_days),
        LEDGER.parent: (now - policy.event_max_age - LEDGER_MARGIN).astimezone(timezone.utc).date(),
    }


async def ensure_partitions(db: Database, now: datetime, policy: RetentionPeriods = RetentionPeriods()) -> bool:
    """Create the missing daily partitions of ``events`` and the ledger (kept days to ``ahead_days``
    ahead), nothing else. Run at hub start, before the ingress reads: otherwise the first pass
    would move a whole morning's rows out of DEFAULT. ``False``: another hub holds the lock."""
    today = now.astimezone(timezone.utc).date()

    async def work(conn: asyncpg.Connection) -> bool:
        async def create() -> None:
            for table in (EVENTS, LEDGER):
                # From today only: older kept days are created by the first pass, off the start path.
                await table.create_missing(conn, await table.existing(conn), today,
                                           today + timedelta(days=policy.ahead_days))

        return await _with_lock(conn, policy.lock_timeout_ms, create)

    return await db.run(work)


async def run_pass(db: Database, now: datetime, policy: RetentionPeriods = RetentionPeriods(), *,
                   dry_run: bool = False) -> RetentionReport:
    """One retention pass at ``now`` (see the module docstring). Idempotent; ``dry_run`` changes nothing."""
    started = time.monotonic()
    report = RetentionReport(at=now, dry_run=dry_run)
    today = now.astimezone(timezone.utc).date()
    firsts = keep_from_days(now, policy)

    async def work(conn: asyncpg.Connection) -> None:
        async def prune() -> None:
            for table in (EVENTS, LEDGER):
                await _prune_partitioned(conn, table, firsts[table.parent], today, policy,
                                         report.table(table.parent), dry_run)
            for rule in RULES:
                report.table(rule.table).rows += await _batched_delete(
                    conn, rule.table, rule.where, rule.cutoff(now, policy), policy.batch_rows, dry_run)

        report.skipped = not await _with_lock(conn, policy.lock_timeout_ms, prune)

    try:
        await db.run(work)
        if not report.skipped:
            await _prune_audit(db, now, policy, report, dry_run)
    finally:
        report.duration_s = time.monotonic() - started
    return report


async def _prune_audit(db: Database, now: datetime, policy: RetentionPeriods, report: RetentionReport,
                       dry_run: bool) -> None:
    try:
        from hub.db.audit_archive import archive_and_prune  # the audit chain's own module (issue 14)
    except ImportError:
        report.audit_note = "hub.db.audit_archive is not installed: audit log not pruned"
        log.warning("retention: %s", report.audit_note)
        return
    audit = await archive_and_prune(db, older_than=years_before(now, policy.audit_years),
                                    archive_dir=policy.audit_archive_dir, dry_run=dry_run)
    report.audit = audit
    report.table("audit_log").rows += int(audit.entries_pruned)
