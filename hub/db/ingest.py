"""The writer's one transaction per batch: dedup, then every effect, with as few round trips as possible."""
from __future__ import annotations

import json
from collections import defaultdict
from typing import Iterable, Sequence

import asyncpg

from hub.records import (
    AcceptedEvent, AttendanceMark, Commit, DeviceHealthRow, Rejection, SensorRow, TokenUse,
    digest_key,
)

from ._pool import Database


async def write_batch(db: Database, commits: Sequence[Commit]) -> set[bytes]:
    """Commit ``commits`` in one transaction; return the dedup keys that were new.

    A commit whose key was already processed is skipped whole (a redelivery
    changes nothing). Blocks until PostgreSQL commits; raises on any database
    error with nothing written. Cancellation rolls the transaction back.
    """
    keys = [c.dedup_key for c in commits]

    async def work(conn: asyncpg.Connection) -> set[bytes]:
        rows = await conn.fetch(
            "INSERT INTO processed_messages (dedup_key) SELECT DISTINCT unnest($1::bytea[])"
            " ON CONFLICT DO NOTHING RETURNING dedup_key",
            keys,
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
        await _write_effects(conn, by_type)
        return fresh

    return await db.run(work, transaction=True)


async def _write_effects(conn: asyncpg.Connection, by_type: dict[type, list]) -> None:
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
        await conn.executemany(
            "INSERT INTO rejected_events (dedup_key, event_id, device_id, topic, kind, reason, detail,"
            " session_id, payload, received_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)"
            " ON CONFLICT (dedup_key) DO NOTHING",
            [
                (_rejection_key(r), r.event_id, r.device_id, r.topic, r.kind, r.reason, r.detail[:1000],
                 r.session_id, r.payload, r.received_at)
                for r in rejections
            ],
        )
    if marks := by_type.get(AttendanceMark):
        await _write_attendance(conn, marks)
    if uses := by_type.get(TokenUse):
        await conn.executemany(
            "INSERT INTO token_uses (session_id, student_id, token_window, event_id)"
            " VALUES ($1,$2,$3,$4) ON CONFLICT DO NOTHING",
            [(u.session_id, u.student_id, u.token_window, u.event_id) for u in uses],
        )
    if readings := by_type.get(SensorRow):
        await conn.copy_records_to_table(
            "sensor_readings",
            columns=["event_id", "device_id", "metric", "value", "unit", "device_ts"],
            records=[(s.event_id, s.device_id, s.metric, s.value, s.unit, s.device_ts) for s in readings],
        )
    if health := by_type.get(DeviceHealthRow):
        latest = {h.device_id: h for h in health}  # last write of the batch wins
        await conn.executemany(
            "INSERT INTO device_health (device_id, online, last_seen, last_change, reason, firmware,"
            " uptime_s, outbox_depth) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
            " ON CONFLICT (device_id) DO UPDATE SET online = EXCLUDED.online,"
            " last_seen = EXCLUDED.last_seen, last_change = EXCLUDED.last_change,"
            " reason = EXCLUDED.reason, firmware = EXCLUDED.firmware,"
            " uptime_s = EXCLUDED.uptime_s, outbox_depth = EXCLUDED.outbox_depth",
            [
                (h.device_id, h.online, h.last_seen, h.last_change, h.reason, h.firmware,
                 h.uptime_s, h.outbox_depth)
                for h in latest.values()
            ],
        )


async def _write_attendance(conn: asyncpg.Connection, marks: Iterable[AttendanceMark]) -> None:
    marks = list(marks)
    # Only a mark that really created the row gets an audit entry: the audit
    # trail must say exactly what changed.
    created = await conn.fetch(
        "INSERT INTO attendance (session_id, student_id, status, checked_in_at, source, event_id)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::uuid[])"
        " ON CONFLICT (session_id, student_id) DO NOTHING"
        " RETURNING session_id, student_id, status, checked_in_at, source",
        [m.session_id for m in marks], [m.student_id for m in marks], [m.status for m in marks],
        [m.checked_in_at for m in marks], [m.source for m in marks], [m.event_id for m in marks],
    )
    actors = {(m.session_id, m.student_id): m.actor for m in marks}
    if created:
        await conn.executemany(
            "INSERT INTO audit_log (actor, entity, entity_id, before, after, reason)"
            " VALUES ($1, 'attendance', $2, NULL, $3, $4)",
            [
                (actors[(r["session_id"], r["student_id"])], f"{r['session_id']}/{r['student_id']}",
                 json.dumps({"status": r["status"], "checked_in_at": r["checked_in_at"].isoformat(),
                             "source": r["source"]}),
                 "check-in")
                for r in created
            ],
        )


def _rejection_key(rejection: Rejection) -> bytes:
    if rejection.event_id is not None:
        return rejection.event_id.bytes + rejection.reason.encode()
    return digest_key(rejection.topic, rejection.payload)
