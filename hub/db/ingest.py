"""The writer's one transaction per batch: dedup, then every effect, with as few round trips as possible."""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Iterable, Sequence

import asyncpg

from hub.core.bus import LiveUpdate
from hub.core.records import (
    AcceptedEvent,
    AttendanceMark,
    Commit,
    Rejection,
    SensorRow,
    TokenUse,
    digest_key,
)
from schemas import Topics

from ._pool import Database
from .attendance import AttendanceChange, apply_attributed_changes
from .checkin import announce_flags, write_checkin_effects
from .device_health import write_health_effects
from .syllabus import write_syllabus_effects

#: What a ``rejected_events`` row keeps of a rejected message (migration 0018 checks the same bounds):
#: the payload's first bytes (with its size and SHA-256), the topic and the detail cut to these lengths.
REJECTED_PAYLOAD_HEAD_BYTES = 256
REJECTED_TOPIC_CHARS = 256
REJECTED_DETAIL_CHARS = 1000
#: Rows kept per source and reason a minute (Settings.rejections_kept_per_minute); the rest are only counted.
REJECTIONS_KEPT_PER_MINUTE = 60
#: The source of a rejection that no registered device can be blamed for (bad topics, unknown ids).
UNKNOWN_SOURCE = "unknown"


@dataclass(frozen=True)
class BatchWritten:
    """What one :func:`write_batch` committed."""

    #: The dedup keys that were new (the commits whose effects were applied).
    fresh: set[bytes]
    #: Live updates about rows the database itself numbered (new check-in flags and the
    #: notifications they caused): the writer publishes them after the commit.
    live: list[LiveUpdate]


async def write_batch(
    db: Database, commits: Sequence[Commit], *, rejections_kept_per_minute: int = REJECTIONS_KEPT_PER_MINUTE,
) -> BatchWritten:
    """Commit ``commits`` in one transaction; return the dedup keys that were new (and what to publish).

    A commit whose key was already processed is skipped whole (a redelivery
    changes nothing). Rejections are kept as bounded rows, at most
    ``rejections_kept_per_minute`` per source and reason, and counted in
    ``rejection_tallies`` (:func:`write_rejections`). Blocks until PostgreSQL
    commits; raises on any database error with nothing written. Cancellation
    rolls the transaction back.
    """
    keys = [c.dedup_key for c in commits]
    today = datetime.now(timezone.utc).date()
    days = [ledger_day(c, today) for c in commits]

    async def work(conn: asyncpg.Connection) -> BatchWritten:
        rows = await conn.fetch(
            "INSERT INTO processed_messages (dedup_key, ledger_day)"
            " SELECT DISTINCT k, d FROM unnest($1::bytea[], $2::date[]) AS l (k, d)"
            " ON CONFLICT DO NOTHING RETURNING dedup_key",
            keys, days,
        )
        fresh = {bytes(r["dedup_key"]) for r in rows}
        seen: set[bytes] = set()
        by_type: dict[type, list] = defaultdict(list)
        for commit in commits:
            # Two copies of one message inside a batch: only the first counts.
            if commit.dedup_key in fresh and commit.dedup_key not in seen:
                seen.add(commit.dedup_key)
                for effect in commit.effects:
                    by_type[type(effect)].append(effect)
        return BatchWritten(fresh, await _write_effects(conn, by_type, rejections_kept_per_minute))

    return await db.run(work, transaction=True)


def ledger_day(commit: Commit, today: date) -> date:
    """The dedup ledger's partition of ``commit`` (migration 0023): the UTC date of its signed
    timestamp (events and statuses), which every redelivery repeats; else the day its message
    was received (a message that failed authentication: a copy received another day is kept
    twice, as the rejection it is, and changes nothing else); else ``today`` (hub-originated:
    never redelivered)."""
    if commit.signed_at is not None:
        return commit.signed_at.astimezone(timezone.utc).date()
    if commit.message is not None:
        return datetime.fromtimestamp(commit.message.received_at, timezone.utc).date()
    return today


async def _write_effects(
    conn: asyncpg.Connection, by_type: dict[type, list], kept_per_minute: int,
) -> list[LiveUpdate]:
    if events := by_type.get(AcceptedEvent):
        await conn.copy_records_to_table(
            "events",
            columns=["event_id", "device_id", "seq", "kind", "device_ts", "received_at", "session_id", "body"],
            records=[
                (e.event_id, e.device_id, e.seq, e.kind, e.device_ts, e.received_at, e.session_id,
                 json.dumps(e.body))
                for e in events
            ],
        )
    if rejections := by_type.get(Rejection):
        await write_rejections(conn, rejections, kept_per_minute)
    flag_ids = await write_checkin_effects(conn, by_type)
    if marks := by_type.get(AttendanceMark):
        await write_attendance_marks(conn, marks)
    if uses := by_type.get(TokenUse):
        # One statement for the batch (executemany ran one per check-in: a statement each in the server).
        await conn.execute(
            "INSERT INTO token_uses (session_id, student_id, token_window, event_id)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::uuid[]) ON CONFLICT DO NOTHING",
            [u.session_id for u in uses], [u.student_id for u in uses], [u.token_window for u in uses],
            [u.event_id for u in uses],
        )
    if readings := by_type.get(SensorRow):
        await conn.copy_records_to_table(
            "sensor_readings",
            columns=["event_id", "device_id", "metric", "value", "unit", "device_ts"],
            records=[(s.event_id, s.device_id, s.metric, s.value, s.unit, s.device_ts) for s in readings],
        )
    # Health, its history, alarms and threshold state (hub/db/device_health.py).
    await write_health_effects(conn, by_type)
    # Session topics and understanding levels with the progress they change (hub/db/syllabus.py), after
    # this batch's attendance marks so progress sees them; nothing to do (no query) in other batches.
    await write_syllabus_effects(conn, by_type)
    # Last, so each flag carries the student's status as this batch leaves it.
    return await announce_flags(conn, flag_ids)


#: Sources of a student's own check-in. A check-in replaces an absence or an excuse (the student
#: was there after all) but never an earlier check-in: the first one wins.
CHECKIN_SOURCES = frozenset({"qr", "biometric", "display"})
_CHECKIN_REPLACES = frozenset({"absent", "excused"})
#: The hub's automatic absences only fill records nobody has set.
_AUTO_ABSENT_REPLACES: frozenset[str] = frozenset()


async def write_attendance_marks(conn: asyncpg.Connection, marks: Iterable[AttendanceMark]) -> None:
    """Inside the caller's transaction: apply attendance marks (the writer's batches, and faculty
    marks of a session without a live actor, hub/db/marks.py) with their audit entries."""
    # Through the one attendance primitive: the audit trail says exactly what changed, and
    # the whole batch still costs a constant number of round trips.
    await apply_attributed_changes(conn, [
        (AttendanceChange(m.session_id, m.student_id, m.status, m.source, m.checked_in_at, m.event_id,
                          replaces=_replaces(m)),
         m.actor, m.reason or ("check-in" if m.source in CHECKIN_SOURCES else m.source))
        for m in marks
    ])


def _replaces(mark: AttendanceMark) -> frozenset[str] | None:
    if mark.source in CHECKIN_SOURCES:
        return _CHECKIN_REPLACES
    if mark.source == "auto_absent":
        return _AUTO_ABSENT_REPLACES
    return None  # a decision made by a person through the session actor (manual, bulk) replaces anything


async def write_rejections(conn: asyncpg.Connection, rejections: Sequence[Rejection], kept_per_minute: int) -> None:
    """Inside the batch's transaction: count every rejection, keep a bounded row of the first few.

    Each rejection is tallied under its source (the authenticated device, else
    the registered device whose topic it came on, else ``unknown``: so memory
    and rows stay bounded however many ids an attacker invents), its reason and
    the minute it arrived. The first ``kept_per_minute`` of each tally become
    ``rejected_events`` rows of bounded size; the rest only add to the tally's
    ``suppressed`` count. Exact under concurrent writers: the tally's upsert
    locks its row. Two round trips, whatever the number of rejections.
    """
    kept = await conn.fetch(
        _TALLY_SQL,
        list(range(len(rejections))),
        [r.device_id or _topic_device(r.topic) for r in rejections],
        [r.reason for r in rejections],
        [r.received_at for r in rejections],
        kept_per_minute,
        UNKNOWN_SOURCE,
    )
    if not kept:
        return
    await conn.executemany(
        "INSERT INTO rejected_events (dedup_key, event_id, device_id, topic, kind, reason, detail,"
        " session_id, payload, payload_size, payload_sha256, received_at)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)"
        " ON CONFLICT (dedup_key) DO NOTHING",
        [_rejection_row(rejections[row["idx"]]) for row in kept],
    )


# The rejections to keep as rows: the first $5 - (what the tally had before) of each
# (source, reason, minute), in batch order. The upsert adds to the tally whatever is not kept.
_TALLY_SQL = """
WITH sourced AS (
    SELECT i.idx, i.reason, i.at, date_trunc('minute', i.at) AS window_start,
           coalesce(d.id, $6) AS source
      FROM unnest($1::int[], $2::text[], $3::text[], $4::timestamptz[]) AS i (idx, candidate, reason, at)
      LEFT JOIN devices d ON d.id = i.candidate
), grouped AS (
    SELECT source, reason, window_start, count(*) AS n, min(at) AS first_seen, max(at) AS last_seen
      FROM sourced GROUP BY source, reason, window_start
), tallied AS (
    INSERT INTO rejection_tallies AS t (source, reason, window_start, offered, suppressed, first_seen, last_seen)
    SELECT source, reason, window_start, n, greatest(n - $5, 0), first_seen, last_seen FROM grouped
    ON CONFLICT (source, reason, window_start) DO UPDATE SET
        offered = t.offered + excluded.offered,
        suppressed = t.suppressed + excluded.offered - least(excluded.offered, greatest($5 - t.offered, 0)),
        first_seen = least(t.first_seen, excluded.first_seen),
        last_seen = greatest(t.last_seen, excluded.last_seen)
    RETURNING source, reason, window_start, offered
)
SELECT r.idx
  FROM (SELECT idx, source, reason, window_start,
               row_number() OVER (PARTITION BY source, reason, window_start ORDER BY idx) AS rank
          FROM sourced) AS r
  JOIN tallied t USING (source, reason, window_start)
  JOIN grouped g USING (source, reason, window_start)
 WHERE r.rank <= $5 - (t.offered - g.n)
"""


def _topic_device(topic: str) -> str | None:
    """The device id of a ``…/v1/dev/{id}/{channel}`` topic (any prefix), if it has the registry's shape."""
    parts = topic.rsplit("/", 4)
    if len(parts) == 5 and parts[1] == "v1" and parts[2] == "dev" and Topics.valid_device_id(parts[3]):
        return parts[3]
    return None


def _rejection_row(r: Rejection) -> tuple:
    return (
        _rejection_key(r), r.event_id, r.device_id, r.topic[:REJECTED_TOPIC_CHARS], r.kind, r.reason,
        r.detail[:REJECTED_DETAIL_CHARS], r.session_id, r.payload[:REJECTED_PAYLOAD_HEAD_BYTES], len(r.payload),
        hashlib.sha256(r.payload).digest(), r.received_at,
    )


def _rejection_key(rejection: Rejection) -> bytes:
    if rejection.event_id is not None:
        return rejection.event_id.bytes + rejection.reason.encode()
    return digest_key(rejection.topic, rejection.payload)
