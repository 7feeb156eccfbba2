"""Rejected messages: counts per reason, a page of the latest, and the tallies of a flood.

Every refused message is counted with its reason; the first few a minute of
each source and reason are kept as bounded rows (size, SHA-256 and the first
bytes of the payload; hub/db/ingest.py), the rest only in ``rejection_tallies``.

Concurrency contract: every function is one round trip on the shared
:class:`~hub.db.Database` (several statements go through ``db.run`` so they
share one connection and one trio ↔ asyncio hop) and may be called from any
trio task. Nothing here writes. Results are plain frozen dataclasses, never
asyncpg records.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from ._pool import Database
from .paging import Page


@dataclass(frozen=True)
class RejectionRow:
    id: int
    received_at: datetime
    reason: str
    detail: str
    topic: str
    device_id: str | None
    kind: str | None
    session_id: str | None
    event_id: UUID | None
    #: The size of the message's whole payload, and its SHA-256; the row keeps only its first bytes.
    payload_bytes: int
    payload_sha256: bytes


@dataclass(frozen=True)
class SuppressedRejections:
    """Rejections of one source and reason in one minute that were counted but not kept as rows."""

    source: str
    reason: str
    window_start: datetime
    offered: int
    suppressed: int
    first_seen: datetime
    last_seen: datetime


async def rejection_counts(db: Database) -> dict[str, int]:
    """Rejected messages per reason, most frequent first: the kept rows plus the ones only counted."""
    rows = await db.fetch(
        "SELECT reason, sum(n)::bigint AS n FROM ("
        " SELECT reason, count(*) AS n FROM rejected_events GROUP BY reason"
        " UNION ALL SELECT reason, sum(suppressed) FROM rejection_tallies WHERE suppressed > 0 GROUP BY reason"
        ") AS counts GROUP BY reason ORDER BY n DESC, reason"
    )
    return {r["reason"]: r["n"] for r in rows}


async def list_suppressed(db: Database, limit: int) -> list[SuppressedRejections]:
    """The latest minutes in which a source's rejections of one reason were only counted, newest first."""
    rows = await db.fetch(
        "SELECT source, reason, window_start, offered, suppressed, first_seen, last_seen FROM rejection_tallies"
        " WHERE suppressed > 0 ORDER BY last_seen DESC, source, reason LIMIT $1",
        limit,
    )
    return [SuppressedRejections(**dict(r)) for r in rows]


async def list_rejections(
    db: Database, limit: int, offset: int, reason: str | None = None
) -> Page[RejectionRow]:
    """One page of rejected messages, newest first, optionally of one reason, with the total."""

    async def work(conn: asyncpg.Connection) -> Page[RejectionRow]:
        total = await conn.fetchval(
            "SELECT count(*) FROM rejected_events WHERE ($1::text IS NULL OR reason = $1)", reason
        )
        rows = await conn.fetch(
            "SELECT id, received_at, reason, detail, topic, device_id, kind, session_id, event_id,"
            # NULL size and hash: a row written whole by hand (migration 0018).
            " coalesce(payload_size, octet_length(payload)) AS payload_bytes,"
            " coalesce(payload_sha256, sha256(payload)) AS payload_sha256"
            " FROM rejected_events WHERE ($1::text IS NULL OR reason = $1)"
            " ORDER BY received_at DESC, id DESC LIMIT $2 OFFSET $3",
            reason, limit, offset,
        )
        return Page([RejectionRow(**dict(r)) for r in rows], total)

    return await db.run(work)
