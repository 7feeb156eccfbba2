"""Rejected messages: counts per reason and a page of the latest (every refused message is kept with its reason).

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
    payload_bytes: int


async def rejection_counts(db: Database) -> dict[str, int]:
    """Rejected messages per reason, most frequent first."""
    rows = await db.fetch(
        "SELECT reason, count(*) AS n FROM rejected_events GROUP BY reason ORDER BY n DESC, reason"
    )
    return {r["reason"]: r["n"] for r in rows}


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
            " octet_length(payload) AS payload_bytes"
            " FROM rejected_events WHERE ($1::text IS NULL OR reason = $1)"
            " ORDER BY received_at DESC, id DESC LIMIT $2 OFFSET $3",
            reason, limit, offset,
        )
        return Page([RejectionRow(**dict(r)) for r in rows], total)

    return await db.run(work)
