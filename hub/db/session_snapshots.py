"""A class session as its actor rebuilds it: the session's rules, roster, records and used tokens.

Concurrency contract: one round trip on the shared :class:`~hub.db.Database`
(the five statements share one connection through ``db.run``), callable from
any trio task; nothing here writes.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

import asyncpg

from ._pool import Database
from .students import opened_token_secret


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    course_id: str
    room_id: str
    starts_at: datetime
    ends_at: datetime
    grace: timedelta
    opens_before: timedelta
    status: str
    late_cutoff: timedelta = timedelta(minutes=30)

    @property
    def opens_at(self) -> datetime:
        return self.starts_at - self.opens_before


@dataclass(frozen=True)
class DisplayUseRecord:
    student_id: str
    device_hash: bytes
    nonce: bytes
    scanned_at: datetime
    code_window: int | None = None
    #: The client's kept network (text) and whether it was inside the restriction (migration 0021).
    network: str | None = None
    network_inside: bool | None = None


@dataclass(frozen=True)
class SessionSnapshot:
    session: SessionRecord
    roster: dict[str, bytes]
    #: student id → (status, source) of every record.
    records: dict[str, tuple[str, str]]
    used_tokens: set[tuple[str, int]]
    #: Accepted display-mode check-ins (for the shared-phone and reused-link signals).
    display_uses: tuple[DisplayUseRecord, ...] = ()

    @property
    def checked_in(self) -> dict[str, str]:
        return {student: status for student, (status, _) in self.records.items()}


_SESSION_COLUMNS = (
    "id, course_id, room_id, starts_at, ends_at, grace_minutes, opens_minutes_before, status, late_cutoff_minutes"
)


def _session(r: asyncpg.Record) -> SessionRecord:
    return SessionRecord(
        r["id"], r["course_id"], r["room_id"], r["starts_at"], r["ends_at"],
        timedelta(minutes=r["grace_minutes"]), timedelta(minutes=r["opens_minutes_before"]), r["status"],
        timedelta(minutes=r["late_cutoff_minutes"]),
    )


#: A session's roster (student → token secret), records, used tokens and display uses, while loading.
_SnapshotParts = tuple[dict[str, bytes], dict[str, tuple[str, str]], set[tuple[str, int]], list[DisplayUseRecord]]


#: The roster of sessions ``$1``: students enrolled in the course whose account is active
#: (a deactivated student can no longer check in, and is not marked absent at close).
_ROSTER_SQL = (
    "SELECT cs.id AS session_id, s.id, s.token_secret, s.token_secret_sealed FROM class_sessions cs"
    " JOIN enrolments e ON e.course_id = cs.course_id JOIN students s ON s.id = e.student_id"
    " JOIN users u ON u.id = s.id AND u.deactivated_at IS NULL"
    " WHERE cs.id = ANY($1::text[])"
)


async def load_session_roster(db: Database, session_id: str) -> dict[str, bytes]:
    """A session's roster as its actor holds it (student id → token secret), for :class:`ReloadRoster`."""
    return _opened_roster(db, await db.fetch(_ROSTER_SQL, [session_id]))[session_id]


def _opened_roster(db: Database, rows: Sequence[asyncpg.Record]) -> dict[str, dict[str, bytes]]:
    """Rows of ``_ROSTER_SQL`` as session → (student → token secret), each sealed secret opened once
    per call however many of the sessions the student is in. A student without a token secret
    (erased; never active, so never here in practice) is left out rather than given an empty key."""
    opened: dict[str, bytes | None] = {}
    rosters: dict[str, dict[str, bytes]] = defaultdict(dict)
    for r in rows:
        student = r["id"]
        if student not in opened:
            opened[student] = opened_token_secret(db.secrets, student, r["token_secret"], r["token_secret_sealed"])
        secret = opened[student]
        if secret is not None:
            rosters[r["session_id"]][student] = secret
    return rosters


async def sessions_enrolling(db: Database, now: datetime, *, student_ids: Sequence[str] = (),
                             roll_numbers: Sequence[str] = ()) -> list[str]:
    """Sessions that may have a live actor (open for check-in by ``now``, not finalized, not cancelled)
    of the courses any of these students (by id or roll number) is enrolled in: whose roster a change
    to their enrolments or accounts can change. Sessions not open yet load their roster when they open."""
    rows = await db.fetch(
        "SELECT DISTINCT cs.id FROM class_sessions cs JOIN enrolments e ON e.course_id = cs.course_id"
        " JOIN students s ON s.id = e.student_id"
        " WHERE (s.id = ANY($1::text[]) OR s.roll_number = ANY($2::text[]))"
        " AND cs.status <> 'cancelled' AND cs.finalized_at IS NULL"
        " AND cs.starts_at - make_interval(mins => cs.opens_minutes_before) <= $3"
        " AND cs.ends_at >= $3 - interval '7 days' ORDER BY cs.id",
        list(student_ids), list(roll_numbers), now)
    return [r["id"] for r in rows]


async def load_session_snapshot(db: Database, session_id: str) -> SessionSnapshot | None:
    """Everything a session actor needs, in one round trip."""
    return (await load_session_snapshots(db, [session_id])).get(session_id)


async def load_session_snapshots(db: Database, session_ids: Sequence[str]) -> dict[str, SessionSnapshot]:
    """Snapshots of ``session_ids`` (missing ids are absent from the result), in one round trip of
    five set queries however many sessions: the scheduler loads every session it opens at boot
    at once and hands each actor its own, instead of 2,000 actors each making five queries."""
    ids = list(session_ids)

    async def work(conn: asyncpg.Connection) -> dict[str, SessionSnapshot]:
        rows = await conn.fetch(f"SELECT {_SESSION_COLUMNS} FROM class_sessions WHERE id = ANY($1::text[])", ids)
        roster = await conn.fetch(_ROSTER_SQL, ids)
        marks = await conn.fetch(
            "SELECT session_id, student_id, status, source FROM attendance WHERE session_id = ANY($1::text[])", ids)
        uses = await conn.fetch(
            "SELECT session_id, student_id, token_window FROM token_uses WHERE session_id = ANY($1::text[])", ids)
        displays = await conn.fetch(
            "SELECT session_id, student_id, device_hash, nonce, scanned_at, code_window, network::text AS network,"
            " network_inside FROM display_checkins"
            " WHERE session_id = ANY($1::text[]) AND outcome = 'accepted'", ids)
        by_session: dict[str, _SnapshotParts] = {r["id"]: ({}, {}, set(), []) for r in rows}
        for session_id, students in _opened_roster(db, roster).items():
            by_session[session_id][0].update(students)
        for r in marks:
            by_session[r["session_id"]][1][r["student_id"]] = (r["status"], r["source"])
        for r in uses:
            by_session[r["session_id"]][2].add((r["student_id"], r["token_window"]))
        for r in displays:
            by_session[r["session_id"]][3].append(
                DisplayUseRecord(r["student_id"], bytes(r["device_hash"]), bytes(r["nonce"]), r["scanned_at"],
                                 r["code_window"], r["network"], r["network_inside"]))
        return {
            r["id"]: SessionSnapshot(_session(r), *by_session[r["id"]][:3], tuple(by_session[r["id"]][3]))
            for r in rows
        }

    return await db.run(work)
