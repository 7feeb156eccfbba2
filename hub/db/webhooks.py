"""Webhook subscriptions (admin CRUD) and the delivery outbox the hub's dispatcher drains.

Outbox rows are created by :func:`hub.db.notifications.add_notifications` in
the transaction of whatever caused them. The dispatcher (hub/services/webhooks.py)
*claims* due rows by pushing their ``next_attempt_at`` one lease ahead, posts
them, then records each outcome; a hub that dies mid-delivery leaves the rows
to be retried once the lease has passed (at-least-once delivery; receivers
deduplicate on the delivery's ``event_id``).

Several hub workers claim from the same outbox. Whether a row is due and how
long a claim lasts are judged by the database's clock (``now()``), never by a
worker's, so a worker whose clock runs ahead cannot take a row another is
still posting. A claim's lease end is its token (:attr:`DueDelivery.claimed_until`):
an outcome is recorded only on a row still held by that claim, so a worker
that outlived its lease cannot overwrite the outcome of the worker that took
the row over.

Concurrency contract: every function is a coroutine on the shared
:class:`~hub.db.Database`, callable from any trio task; each subscription change is one
transaction that also appends its audit entry (:func:`hub.db.security_audit.record`, last, so
the audit chain's lock is held only for the commit). :func:`claim_due`
uses ``FOR UPDATE SKIP LOCKED``, so several hubs never claim the same row.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg

from hub.core.secrets_box import SecretsBox

from ._pool import Database
from .paging import Page
from .sealed_secrets import webhook_secret_context
from .security_audit import record

#: ``secret`` is only the plaintext of a row from before migration 0025 not sealed yet: the signing
#: secret is stored in ``secret_sealed`` (campus key) and opened by :func:`_subscription`.
_SUB_COLUMNS = "id, url, secret, secret_sealed, kinds, active, description, created_at, created_by, updated_at"
_DELIVERY_COLUMNS = (
    "id, subscription_id, event_id, kind, payload, state, attempts, next_attempt_at, last_attempt_at,"
    " last_status, last_error, delivered_at, created_at"
)


@dataclass(frozen=True)
class Subscription:
    id: int
    url: str
    secret: str
    kinds: list[str]
    active: bool
    description: str
    created_at: datetime
    created_by: str | None
    updated_at: datetime


@dataclass(frozen=True)
class Delivery:
    id: int
    subscription_id: int
    event_id: UUID
    kind: str
    payload: dict
    state: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class DueDelivery:
    """What the dispatcher needs to post one delivery."""

    id: int
    event_id: UUID
    kind: str
    body: bytes
    url: str
    secret: str
    attempts: int  # before this one
    #: The claim's lease end (the database's clock): the claim's token for :func:`record_outcomes`.
    claimed_until: datetime


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    ok: bool
    status: int | None
    error: str | None


def _opened_secret(secrets: SecretsBox, subscription_id: int, secret: str | None, sealed: bytes | None) -> str:
    if sealed is None:
        assert secret is not None  # the migration's CHECK: one of the two is set
        return secret
    return secrets.decrypt(bytes(sealed), webhook_secret_context(subscription_id)).decode()


def _subscription(row: asyncpg.Record, secrets: SecretsBox) -> Subscription:
    values = dict(row)
    values["secret"] = _opened_secret(secrets, row["id"], values.pop("secret"), values.pop("secret_sealed"))
    return Subscription(**{**values, "kinds": list(row["kinds"])})


def _delivery(row: asyncpg.Record) -> Delivery:
    payload = row["payload"]
    return Delivery(**{**dict(row), "payload": json.loads(payload) if isinstance(payload, str) else payload})


# --- subscriptions ----------------------------------------------------------------------

async def list_subscriptions(db: Database, limit: int, offset: int) -> Page[Subscription]:
    async def work(conn: asyncpg.Connection) -> Page[Subscription]:
        total = await conn.fetchval("SELECT count(*) FROM webhook_subscriptions")
        rows = await conn.fetch(
            f"SELECT {_SUB_COLUMNS} FROM webhook_subscriptions ORDER BY id LIMIT $1 OFFSET $2", limit, offset)
        return Page([_subscription(r, db.secrets) for r in rows], total)

    return await db.run(work)


async def get_subscription(db: Database, subscription_id: int) -> Subscription | None:
    row = await db.fetchrow(f"SELECT {_SUB_COLUMNS} FROM webhook_subscriptions WHERE id = $1", subscription_id)
    return _subscription(row, db.secrets) if row is not None else None


def _audited(sub: Subscription) -> dict[str, object]:
    """What the audit log keeps of a subscription. Never its signing secret, nor its full URL:
    many receivers (chat webhooks) put their credential in the path or query, so only the
    origin is kept (``url_digest`` still tells whether the URL changed)."""
    parts = urlsplit(sub.url)
    return {"url_origin": f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}",
            "url_digest": hashlib.sha256(sub.url.encode()).hexdigest()[:16],
            "kinds": list(sub.kinds), "active": sub.active, "description": sub.description}


async def create_subscription(
    db: Database, *, url: str, secret: str, kinds: Sequence[str], active: bool, description: str,
    created_by: str, now: datetime,
) -> Subscription:
    async def work(conn: asyncpg.Connection) -> Subscription:
        # The id first: the sealed secret is bound to it.
        new_id = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('webhook_subscriptions', 'id'))")
        row = await conn.fetchrow(
            "INSERT INTO webhook_subscriptions (id, url, secret_sealed, kinds, active, description, created_by,"
            " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)"
            f" RETURNING {_SUB_COLUMNS}",
            new_id, url, db.secrets.encrypt(secret.encode(), webhook_secret_context(new_id)), list(kinds), active,
            description, created_by, now,
        )
        created = _subscription(row, db.secrets)
        await record(conn, actor=created_by, action="created", entity="webhook", entity_id=str(created.id),
                     after=_audited(created))
        return created

    return await db.run(work, transaction=True)


async def update_subscription(
    db: Database, subscription_id: int, changes: dict, now: datetime, *, by: str,
) -> Subscription | None:
    """Apply ``changes`` (any of url, secret, kinds, active, description); None if there is no such
    subscription. Audited (``secret_replaced`` says whether the secret was set, never its value)."""
    allowed = ("url", "secret", "kinds", "active", "description")
    names = [name for name in allowed if name in changes]
    # A new secret is stored sealed (and any pre-0025 plaintext cleared with it).
    sets = ", ".join(f"secret = NULL, secret_sealed = ${i + 3}" if name == "secret" else f"{name} = ${i + 3}"
                     for i, name in enumerate(names))
    sealed = {"secret": db.secrets.encrypt(changes["secret"].encode(), webhook_secret_context(subscription_id))
              } if "secret" in changes else {}

    async def work(conn: asyncpg.Connection) -> Subscription | None:
        old = await conn.fetchrow(f"SELECT {_SUB_COLUMNS} FROM webhook_subscriptions WHERE id = $1 FOR UPDATE",
                                  subscription_id)
        if old is None:
            return None
        row = await conn.fetchrow(
            f"UPDATE webhook_subscriptions SET updated_at = $2{', ' + sets if sets else ''}"
            f" WHERE id = $1 RETURNING {_SUB_COLUMNS}",
            subscription_id, now,
            *(list(changes[n]) if n == "kinds" else sealed.get(n, changes[n]) for n in names),
        )
        before, updated = _subscription(old, db.secrets), _subscription(row, db.secrets)
        await record(conn, actor=by, action="updated", entity="webhook", entity_id=str(subscription_id),
                     before=_audited(before),
                     after={**_audited(updated), "secret_replaced": before.secret != updated.secret})
        return updated

    return await db.run(work, transaction=True)


async def delete_subscription(db: Database, subscription_id: int, *, by: str) -> bool:
    """Delete a subscription and its delivery log, audited; False if there was none."""

    async def work(conn: asyncpg.Connection) -> bool:
        row = await conn.fetchrow(f"DELETE FROM webhook_subscriptions WHERE id = $1 RETURNING {_SUB_COLUMNS}",
                                  subscription_id)
        if row is None:
            return False
        await record(conn, actor=by, action="deleted", entity="webhook", entity_id=str(subscription_id),
                     before=_audited(_subscription(row, db.secrets)))
        return True

    return await db.run(work, transaction=True)


async def list_deliveries(
    db: Database, subscription_id: int, state: str | None, limit: int, offset: int,
) -> Page[Delivery]:
    """A subscription's deliveries, newest first."""

    async def work(conn: asyncpg.Connection) -> Page[Delivery]:
        where = "subscription_id = $1 AND ($2::text IS NULL OR state = $2)"
        total = await conn.fetchval(f"SELECT count(*) FROM webhook_deliveries WHERE {where}", subscription_id, state)
        rows = await conn.fetch(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {where}"
            " ORDER BY id DESC LIMIT $3 OFFSET $4",
            subscription_id, state, limit, offset,
        )
        return Page([_delivery(r) for r in rows], total)

    return await db.run(work)


async def queue_test_delivery(db: Database, subscription_id: int, payload: dict, *, by: str) -> Delivery | None:
    """Queue one ``webhook_test`` delivery of ``payload`` to a subscription, audited (action
    ``test_sent``); the dispatcher posts it like any other (signed, retried). None if there is no
    such subscription."""

    async def work(conn: asyncpg.Connection) -> Delivery | None:
        row = await conn.fetchrow(
            "INSERT INTO webhook_deliveries (subscription_id, kind, payload)"
            " SELECT id, 'webhook_test', $2::jsonb FROM webhook_subscriptions WHERE id = $1"
            f" RETURNING {_DELIVERY_COLUMNS}",
            subscription_id, json.dumps(payload))
        if row is None:
            return None
        await record(conn, actor=by, action="test_sent", entity="webhook", entity_id=str(subscription_id),
                     after={"delivery_id": row["id"], "event_id": str(row["event_id"])})
        return _delivery(row)

    return await db.run(work, transaction=True)


# --- the dispatcher's side ---------------------------------------------------------------

async def claim_due(db: Database, lease: timedelta, limit: int) -> list[DueDelivery]:
    """Claim up to ``limit`` pending deliveries due now (of active subscriptions) for ``lease``.

    "Now" is the database's clock, for every worker alike. ``FOR UPDATE SKIP LOCKED``: two workers
    claiming at once take different rows; a claimed row is not due again until its lease ends.
    """
    rows = await db.fetch(
        "WITH due AS ("
        "  SELECT d.id FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id"
        "  WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND s.active"
        "  ORDER BY d.next_attempt_at, d.id LIMIT $2 FOR UPDATE OF d SKIP LOCKED)"
        " UPDATE webhook_deliveries d SET next_attempt_at = now() + $1::interval"
        " FROM due, webhook_subscriptions s WHERE d.id = due.id AND s.id = d.subscription_id"
        " RETURNING d.id, d.event_id, d.kind, d.payload::text AS body, s.url, s.id AS subscription_id, s.secret,"
        " s.secret_sealed, d.attempts, d.next_attempt_at",
        lease, limit,
    )
    return [DueDelivery(r["id"], r["event_id"], r["kind"], r["body"].encode(), r["url"],
                        _opened_secret(db.secrets, r["subscription_id"], r["secret"], r["secret_sealed"]), r["attempts"],
                        r["next_attempt_at"])
            for r in rows]


async def record_outcomes(
    db: Database, claims: Sequence[DueDelivery], outcomes: Sequence[Outcome], now: datetime,
    retry_at: Sequence[datetime | None],
) -> int:
    """Store each attempt: delivered, rescheduled for ``retry_at[i]``, or failed for good (``None``).

    ``claims[i]`` is the claim ``outcomes[i]`` answers: a row whose lease that claim no longer holds
    (taken over by another worker after the lease ended) is left as it is. Returns the rows recorded.
    """
    if not outcomes:
        return 0
    status = await db.execute(
        "UPDATE webhook_deliveries d SET attempts = d.attempts + 1, last_attempt_at = $1::timestamptz,"
        " last_status = x.status, last_error = x.error,"
        " state = CASE WHEN x.ok THEN 'delivered' WHEN x.retry_at IS NULL THEN 'failed' ELSE 'pending' END,"
        " delivered_at = CASE WHEN x.ok THEN $1 END,"
        " next_attempt_at = coalesce(x.retry_at, d.next_attempt_at)"
        " FROM unnest($2::bigint[], $3::bool[], $4::int[], $5::text[], $6::timestamptz[], $7::timestamptz[])"
        "   AS x(id, ok, status, error, retry_at, claimed_until)"
        " WHERE d.id = x.id AND d.state = 'pending' AND d.next_attempt_at = x.claimed_until",
        now, [o.delivery_id for o in outcomes], [o.ok for o in outcomes], [o.status for o in outcomes],
        [o.error for o in outcomes], list(retry_at), [c.claimed_until for c in claims],
    )
    return int(status.split()[-1])


async def next_due_at(db: Database) -> datetime | None:
    """When the earliest pending delivery of an active subscription is due (None: nothing pending)."""
    return await db.fetchval(
        "SELECT min(d.next_attempt_at) FROM webhook_deliveries d"
        " JOIN webhook_subscriptions s ON s.id = d.subscription_id WHERE d.state = 'pending' AND s.active")
