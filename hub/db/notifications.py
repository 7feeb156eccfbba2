"""Notifications: the in-app centre, the live push, and the webhook outbox they feed.

Writers (leave, corrections, check-in flags, warnings, condonation) create
notifications *inside their own transaction* with :func:`add_notifications`,
then, after the commit, push them live with :func:`publish_notifications`::

    async def work(conn):
        ...  # the change itself
        return await add_notifications(conn, [NewNotification(user_id, "leave_decided", title, body)])

    rows = await db.run(work, transaction=True)
    publish_notifications(ctx.bus, rows)

So a notification exists exactly when its cause was committed, and every
webhook subscription interested in its kind gets one outbox row in that same
transaction (delivered later by the hub's webhook dispatcher, hub/services/warnings.py).

Concurrency contract: the ``conn`` functions run on the asyncio side inside
the caller's ``Database.run`` work and never commit on their own; the
``Database`` functions are one round trip each and may be called from any
trio task; :func:`publish_notifications` is synchronous and never blocks.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, Sequence

import asyncpg

from hub.core.bus import LiveMessage, LiveNotification, user_topic

from ._pool import Database

#: Kinds written by the hub today; integrators may subscribe to any subset (empty = all).
KINDS = (
    "attendance_marked", "attendance_warning", "leave_decided", "correction_decided",
    "condonation_requested", "condonation_decided", "checkin_flagged",
    "grades_released", "exam_scheduled",
    "assignment_published", "assignment_due", "assignment_graded",
)


@dataclass(frozen=True)
class NewNotification:
    user_id: str
    kind: str  # see KINDS; free-form so new writers need no change here
    title: str
    body: str
    link: str | None = None
    data: dict = field(default_factory=dict)


class _Publisher(Protocol):
    def publish(self, topic: str, message: LiveMessage) -> None: ...


_COLUMNS = "id, user_id, kind, title, body, link, data, created_at, read_at"


def notification_json(row: asyncpg.Record | dict) -> dict:
    """The one JSON shape of a notification (API, websocket, bus); times as ISO strings."""
    data = row["data"]
    return {
        "id": row["id"],
        "user_id": row["user_id"],
        "kind": row["kind"],
        "title": row["title"],
        "body": row["body"],
        "link": row["link"],
        "data": json.loads(data) if isinstance(data, str) else dict(data or {}),
        "created_at": _iso(row["created_at"]),
        "read_at": _iso(row["read_at"]),
        "read": row["read_at"] is not None,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def add_notifications(conn: asyncpg.Connection, notes: Sequence[NewNotification]) -> list[dict]:
    """Insert ``notes`` and queue their webhook deliveries, in the caller's transaction.

    Returns the stored notifications (``notification_json`` shape), in the
    order given, for :func:`publish_notifications` after the commit. Costs
    two statements however many notes there are.
    """
    if not notes:
        return []
    rows = await conn.fetch(
        "INSERT INTO notifications (user_id, kind, title, body, link, data)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[])"
        f" RETURNING {_COLUMNS}",
        [n.user_id for n in notes], [n.kind for n in notes], [n.title for n in notes],
        [n.body for n in notes], [n.link for n in notes], [json.dumps(n.data) for n in notes],
    )
    stored = sorted((notification_json(r) for r in rows), key=lambda n: n["id"])
    payloads = [json.dumps(webhook_payload(n)) for n in stored]
    # One outbox row per (notification, matching active subscription), in one statement.
    await conn.execute(
        "INSERT INTO webhook_deliveries (subscription_id, kind, payload)"
        " SELECT s.id, n.kind, n.payload"
        " FROM unnest($1::text[], $2::jsonb[]) AS n(kind, payload)"
        " JOIN webhook_subscriptions s ON s.active AND (s.kinds = '{}' OR n.kind = ANY (s.kinds))",
        [n["kind"] for n in stored], payloads,
    )
    return stored


def webhook_payload(notification: dict) -> dict:
    """The JSON body integrators receive for a notification (see docs/notifications.md)."""
    return {
        "type": notification["kind"],
        "created_at": notification["created_at"],
        "notification": {k: notification[k] for k in ("id", "user_id", "title", "body", "link", "data")},
    }


def publish_notifications(bus: _Publisher, rows: Sequence[dict]) -> None:
    """Push committed notifications live on each recipient's ``user_topic``. Never blocks.

    Call only after the transaction that created ``rows`` committed.
    """
    for row in rows:
        bus.publish(user_topic(row["user_id"]), LiveNotification(row))


# --- the notification centre (read side and read marks) --------------------------------

async def list_notifications(
    db: Database, user_id: str, *, unread_only: bool, limit: int, offset: int,
) -> tuple[list[dict], int, int]:
    """A user's notifications, newest first: (page, total matching, unread count)."""

    async def work(conn: asyncpg.Connection) -> tuple[list[dict], int, int]:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM notifications WHERE user_id = $1 AND (NOT $2 OR read_at IS NULL)"
            " ORDER BY id DESC LIMIT $3 OFFSET $4",
            user_id, unread_only, limit, offset,
        )
        counts = await conn.fetchrow(
            "SELECT count(*) AS total, count(*) FILTER (WHERE read_at IS NULL) AS unread"
            " FROM notifications WHERE user_id = $1",
            user_id,
        )
        total = counts["unread"] if unread_only else counts["total"]
        return [notification_json(r) for r in rows], total, counts["unread"]

    return await db.run(work)


async def unread_count(db: Database, user_id: str) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL", user_id)


async def mark_read(db: Database, user_id: str, notification_id: int, now: datetime) -> dict | None:
    """Mark one of the user's notifications read (idempotent); None if it is not theirs or missing."""
    row = await db.fetchrow(
        "UPDATE notifications SET read_at = COALESCE(read_at, $3) WHERE id = $1 AND user_id = $2"
        f" RETURNING {_COLUMNS}",
        notification_id, user_id, now,
    )
    return notification_json(row) if row is not None else None


async def mark_all_read(db: Database, user_id: str, now: datetime) -> int:
    """Mark every unread notification of the user read; returns how many changed."""
    status = await db.execute(
        "UPDATE notifications SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL", user_id, now)
    return int(status.split()[-1])
