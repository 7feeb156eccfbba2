"""Check-in tables (migration 0003): proxy-attendance flags, display check-ins; the display secrets
(derived from the campus key, stored nowhere: :func:`display_secrets`).

Concurrency contract: every ``async`` function here is one round trip on the
shared :class:`~hub.db.Database` (or runs on the caller's connection, inside
the caller's transaction, when it takes ``conn``) and may be called from any
trio task. Cancellation rolls back whatever it was writing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

import asyncpg

from hub.core.bus import LiveFlag, LiveMessage, LiveUpdate, session_topic
from hub.core.records import CheckinFlagRow, DisplayCheckinRow
from hub.core.secrets_box import SecretsBox
from hub.domain.checkin import FLAG_LABELS
from hub.domain.display_code import CodeCheck, DisplayFrame, check_display_code, current_frame, display_code

from ._pool import Database
from .academic import manages_sql
from .notifications import NewNotification, add_notifications, publish_notifications
from .paging import Page

FLAG_STATES = ("open", "accepted", "rejected")


# --- the writer's batch -------------------------------------------------------------

async def write_checkin_effects(conn: asyncpg.Connection, by_type: dict[type, list]) -> list[int]:
    """Insert the batch's flags and display check-ins (called inside the writer's transaction).

    Returns the ids of the new flags, for :func:`announce_flags` once the
    batch's attendance is written too.
    """
    flag_ids = await insert_flags(conn, by_type.get(CheckinFlagRow, ()))
    if uses := by_type.get(DisplayCheckinRow):
        await conn.executemany(
            "INSERT INTO display_checkins (session_id, student_id, scanned_at, code_window, device_hash, nonce,"
            " user_agent, outcome, network, network_inside) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::cidr, $10)",
            [(u.session_id, u.student_id, u.scanned_at, u.code_window, u.device_hash, u.nonce, u.user_agent[:300],
              u.outcome, u.network, u.network_inside) for u in uses],
        )
    return flag_ids


async def insert_flags(conn: asyncpg.Connection, flags: Sequence[CheckinFlagRow]) -> list[int]:
    """Insert ``flags`` (one statement) in the caller's transaction; returns their new ids."""
    if not flags:
        return []
    rows = await conn.fetch(
        "INSERT INTO checkin_flags (session_id, student_id, kind, detail, evidence, source, event_id, raised_at)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[],"
        " $7::uuid[], $8::timestamptz[]) RETURNING id",
        [f.session_id for f in flags], [f.student_id for f in flags], [f.kind for f in flags],
        [f.detail[:1000] for f in flags], [json.dumps(f.evidence) for f in flags], [f.source for f in flags],
        [f.event_id for f in flags], [f.raised_at for f in flags],
    )
    return [r["id"] for r in rows]


async def announce_flags(conn: asyncpg.Connection, flag_ids: Sequence[int]) -> list[LiveUpdate]:
    """Notify the managing faculty of new flags, in the caller's transaction; return what to publish
    on the live bus AFTER the commit: each flag (``flag_update``) and each notification.

    One ``checkin_flagged`` notification per flag to every faculty member who
    manages the session's course (coordinator or assigned:
    :func:`hub.db.academic.manages_sql`). Call it after the batch's attendance
    is written, so each flag carries the student's current status. Costs four
    statements for any number of flags, none without flags.
    """
    if not flag_ids:
        return []
    flags = [_flag(r) for r in await conn.fetch(
        _FLAG_SELECT + " WHERE f.id = ANY($1::bigint[]) ORDER BY f.id", list(flag_ids))]
    recipients = await conn.fetch(
        "SELECT f.id AS flag_id, c.id AS course_id, c.code AS course_code, u.id AS faculty_id"
        " FROM checkin_flags f JOIN class_sessions cs ON cs.id = f.session_id JOIN courses c ON c.id = cs.course_id"
        " JOIN users u ON u.role = 'faculty' AND " + manages_sql("c.id", "u.id") +
        " WHERE f.id = ANY($1::bigint[]) ORDER BY f.id, u.id", list(flag_ids))
    by_id = {f.id: f for f in flags}
    notes = [_flag_note(by_id[r["flag_id"]], r["faculty_id"], r["course_id"], r["course_code"])
             for r in recipients if r["flag_id"] in by_id]
    collected = _Collector()
    for flag in flags:
        collected.publish(*flag_update(flag))
    publish_notifications(collected, await add_notifications(conn, notes))
    return collected


class _Collector(list):
    """Collects bus messages (the notification module's publisher protocol) to publish after a commit."""

    def publish(self, topic: str, message: LiveMessage) -> None:
        self.append((topic, message))


def _flag_note(flag: "FlagRecord", faculty_id: str, course_id: str, course_code: str) -> NewNotification:
    kind = FLAG_LABELS.get(flag.kind, flag.kind.replace("_", " ")).lower()
    return NewNotification(
        faculty_id, "checkin_flagged",
        f"Check-in flagged in {course_code}: {kind}",
        f"{flag.student_name} ({flag.roll_number}): {flag.detail}. Review it on the session roster.",
        f"/faculty/sessions/{flag.session_id}",
        {"flag_id": flag.id, "session_id": flag.session_id, "course_id": course_id,
         "student_id": flag.student_id, "kind": flag.kind},
    )


# --- clock skew -----------------------------------------------------------------------

async def device_clock_samples(
    db: Database, device_id: str, received_since: datetime,
) -> list[tuple[datetime, timedelta]]:
    """The stored clock-offset samples of a device since ``received_since``, oldest first: hub receive
    time minus device time of each heartbeat made with an empty outbox.

    Read once per device actor, the first time a late check-in needs them
    (hub.domain.device_health.ClockEvidence); the actor keeps the later ones in memory. Reads the
    partial index ``events_heartbeats_received`` (device_id, received_at) of migration 0034, a few
    entries per device (tests/db/test_ingest_indexes.py checks the plan).
    """
    rows = await db.fetch(CLOCK_SAMPLES_SQL, device_id, received_since)
    return [(row["received_at"], row["offset"]) for row in rows]


CLOCK_SAMPLES_SQL = (
    "SELECT received_at, received_at - device_ts AS offset FROM events"
    " WHERE device_id = $1 AND received_at >= $2 AND kind = 'heartbeat' AND (body->>'outbox_depth')::bigint = 0"
    " ORDER BY received_at")


# --- display mode ------------------------------------------------------------------------

#: HKDF purpose of the display secrets (``SecretsBox.derive_key``): never reuse it for anything else.
DISPLAY_CODE_PURPOSE = b"display-code"


def display_secrets(secrets: SecretsBox, session_id: str) -> tuple[bytes, ...]:
    """The HMAC keys of ``session_id``'s display code (hub/domain/display_code.py), derived from the
    campus key: the current key's first (what the display shows), then the previous key's, if held.

    The one home of the display secret: ``derive_key(DISPLAY_CODE_PURPOSE, salt=session id)``
    (HKDF-SHA256), so it is stored nowhere (migration 0037 dropped ``class_sessions.display_secret``)
    and every hub process holding the same campus key makes and accepts the same codes, across a
    restart too. A rotation (``campushub keys rotate``) changes the code the display shows; the
    previous key's code is still accepted, so a code on screen at the switch is not refused.
    "Current" is the highest id this box holds (it re-reads a changed key file at its next seal).
    Pure computation (at most two HKDF of key ids the box holds: no I/O); safe from any task or
    thread, as the box is.
    """
    salt = session_id.encode()
    current_id, current = secrets.derive_key(DISPLAY_CODE_PURPOSE, salt=salt)
    older = [key_id for key_id in secrets.key_ids if key_id < current_id]
    if not older:
        return (current,)
    return current, secrets.derive_key(DISPLAY_CODE_PURPOSE, key_id=older[-1], salt=salt)[1]


@dataclass(frozen=True)
class DisplaySession:
    """A session as its display and a scan see it; its codes come from here, so callers never
    touch the secrets (left out of ``repr``: a logged session shows no key). Immutable."""

    session_id: str
    course_id: str
    course_code: str
    course_title: str
    faculty_id: str
    room_name: str
    starts_at: datetime
    ends_at: datetime
    opens_at: datetime
    status: str
    #: :func:`display_secrets`: the first makes the codes shown, any of them makes a code accepted.
    secrets: tuple[bytes, ...] = field(repr=False)

    def takes_checkins(self, now: datetime) -> bool:
        """Open for display check-ins: inside the window and neither closed nor cancelled."""
        return self.status in ("scheduled", "open") and self.opens_at <= now <= self.ends_at

    def frame(self, at_unix: float) -> DisplayFrame:
        """What the display shows at hub time ``at_unix`` (under the current campus key)."""
        return current_frame(self.secrets[0], self.session_id, at_unix)

    def code(self, window: int) -> str:
        """The code of ``window`` (under the current campus key)."""
        return display_code(self.secrets[0], self.session_id, window)

    def check_code(self, window: int, code: str, at_unix: float) -> CodeCheck:
        """Judge a scanned code (``check_display_code``) against each secret: the first that made it decides."""
        verdict: CodeCheck = "invalid"
        for secret in self.secrets:
            verdict = check_display_code(secret, self.session_id, window, code, at_unix)
            if verdict != "invalid":
                break
        return verdict


async def display_session(db: Database, session_id: str) -> DisplaySession | None:
    """The session as the display and the scan see it, with its :func:`display_secrets`; None if unknown."""
    row = await db.fetchrow(
        "SELECT cs.id AS session_id, cs.course_id, c.code AS course_code, c.title AS course_title, c.faculty_id,"
        " r.name AS room_name, cs.starts_at, cs.ends_at,"
        " cs.starts_at - make_interval(mins => cs.opens_minutes_before) AS opens_at, cs.status"
        " FROM class_sessions cs JOIN courses c ON c.id = cs.course_id JOIN rooms r ON r.id = cs.room_id"
        " WHERE cs.id = $1",
        session_id,
    )
    if row is None:
        return None
    return DisplaySession(**dict(row), secrets=display_secrets(db.secrets, session_id))


# --- flags -------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlagRecord:
    id: int
    session_id: str
    student_id: str
    student_name: str
    roll_number: str
    kind: str
    detail: str
    evidence: dict[str, Any]
    source: str
    raised_at: datetime
    state: str
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str
    #: The student's current status in the session (None: no record).
    status: str | None
    faculty_id: str


_FLAG_SELECT = """
SELECT f.id, f.session_id, f.student_id, u.display_name AS student_name, s.roll_number, f.kind, f.detail,
       f.evidence, f.source, f.raised_at, f.state, f.reviewed_by, f.reviewed_at, f.review_note,
       a.status, c.faculty_id
FROM checkin_flags f
JOIN students s ON s.id = f.student_id
JOIN users u ON u.id = f.student_id
JOIN class_sessions cs ON cs.id = f.session_id
JOIN courses c ON c.id = cs.course_id
LEFT JOIN attendance a ON a.session_id = f.session_id AND a.student_id = f.student_id
"""


def flag_json(f: FlagRecord) -> dict[str, Any]:
    """The one JSON shape of a flag (API, live bus, websocket snapshot); times as ISO strings."""
    return {
        "id": f.id, "session_id": f.session_id, "student_id": f.student_id, "student_name": f.student_name,
        "roll_number": f.roll_number, "kind": f.kind, "detail": f.detail, "evidence": f.evidence,
        "source": f.source, "raised_at": f.raised_at.isoformat(), "state": f.state, "reviewed_by": f.reviewed_by,
        "reviewed_at": f.reviewed_at.isoformat() if f.reviewed_at else None, "review_note": f.review_note,
        "status": f.status,
    }


def flag_update(f: FlagRecord) -> LiveUpdate:
    """The live roster's message for a flag raised or reviewed, on the session's topic
    (the roster shows it while ``state`` is ``open``)."""
    return session_topic(f.session_id), LiveFlag(f.session_id, f.student_id, f.kind, f.detail, f.state, flag_json(f))


def _flag(row: asyncpg.Record) -> FlagRecord:
    values = dict(row)
    evidence = values["evidence"]
    values["evidence"] = json.loads(evidence) if isinstance(evidence, str) else (evidence or {})
    return FlagRecord(**values)


async def list_flags(
    db: Database, session_id: str, state: str | None, limit: int, offset: int,
) -> Page[FlagRecord]:
    """A page of the session's flags (newest first); ``state`` None: every state."""

    async def work(conn: asyncpg.Connection) -> Page[FlagRecord]:
        total = await conn.fetchval(
            "SELECT count(*) FROM checkin_flags WHERE session_id = $1 AND ($2::text IS NULL OR state = $2)",
            session_id, state)
        rows = await conn.fetch(
            _FLAG_SELECT + " WHERE f.session_id = $1 AND ($2::text IS NULL OR f.state = $2)"
            " ORDER BY f.raised_at DESC, f.id DESC LIMIT $3 OFFSET $4",
            session_id, state, limit, offset)
        return Page([_flag(r) for r in rows], total)

    return await db.run(work)


async def get_flag(db: Database, flag_id: int) -> FlagRecord | None:
    row = await db.fetchrow(_FLAG_SELECT + " WHERE f.id = $1", flag_id)
    return None if row is None else _flag(row)


async def decide_flag(db: Database, flag_id: int, state: str, reviewer: str, note: str, at: datetime) -> bool:
    """Close an open flag; False if it was already reviewed (someone else was faster)."""
    done = await db.fetchval(
        "UPDATE checkin_flags SET state = $2, reviewed_by = $3, reviewed_at = $4, review_note = $5"
        " WHERE id = $1 AND state = 'open' RETURNING id",
        flag_id, state, reviewer, at, note)
    return done is not None


# --- records of a session, for a reload and for sessions without an actor ------------------

async def session_records(
    db: Database | asyncpg.Connection, session_id: str, student_ids: Sequence[str],
) -> dict[str, tuple[str, str] | None]:
    """``{student: (status, source) or None}`` for these students of the session (in ``db``'s transaction, if any)."""
    rows = await db.fetch(
        "SELECT student_id, status, source FROM attendance WHERE session_id = $1 AND student_id = ANY($2::text[])",
        session_id, list(student_ids))
    found: dict[str, tuple[str, str] | None] = {s: None for s in student_ids}
    found.update({r["student_id"]: (r["status"], r["source"]) for r in rows})
    return found


async def enrolled_students(db: Database | asyncpg.Connection, session_id: str) -> set[str]:
    rows = await db.fetch(
        "SELECT e.student_id FROM class_sessions cs JOIN enrolments e ON e.course_id = cs.course_id"
        " WHERE cs.id = $1", session_id)
    return {r["student_id"] for r in rows}


async def student_session_at(db: Database, student_id: str, at: datetime, early: timedelta) -> tuple[str, str] | None:
    """``(session_id, room_id)`` of a session of ``student_id``'s courses taking check-ins at ``at``
    (from ``early`` before it opens), or ``None``."""
    row = await db.fetchrow(
        "SELECT cs.id, cs.room_id FROM enrolments e JOIN class_sessions cs ON cs.course_id = e.course_id"
        " WHERE e.student_id = $1 AND cs.status <> 'cancelled' AND cs.ends_at >= $2"
        " AND cs.starts_at - make_interval(mins => cs.opens_minutes_before) - $3::interval <= $2"
        " ORDER BY cs.starts_at LIMIT 1",
        student_id, at, early)
    return None if row is None else (row["id"], row["room_id"])
