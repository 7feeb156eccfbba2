"""The deployment's identity: a random id generated once, kept in PostgreSQL (migration 0016).

The hub's default MQTT client id derives from it (:func:`derived_hub_client_id`),
so two deployments sharing a broker do not share the hub's persistent session
unless an operator forces the same ``CAMPUSHUB_HUB_CLIENT_ID`` on both.

Concurrency contract: :func:`deployment_identity` is safe to call from any
trio task and from several hubs starting at once on the same database: the
first insert wins (``ON CONFLICT DO NOTHING`` waits for a concurrent insert to
commit) and every caller then reads that one row. It does not run inside a
caller's transaction.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from ._pool import Database

#: Default hub client ids are this prefix and :data:`CLIENT_ID_HEX` hex digits.
HUB_CLIENT_ID_PREFIX = "campushub-hub-"
CLIENT_ID_HEX = 12


@dataclass(frozen=True)
class Deployment:
    id: uuid.UUID
    created_at: datetime


async def deployment_identity(db: Database) -> Deployment:
    """This database's deployment identity, created on first use (needs migration 0016)."""
    # The id is made here rather than by gen_random_uuid(): nothing depends on the server's version.
    await db.execute("INSERT INTO deployment (id) VALUES ($1) ON CONFLICT (singleton) DO NOTHING", uuid.uuid4())
    # A statement of its own: under READ COMMITTED it sees the row a concurrent hub committed.
    row = await db.fetchrow("SELECT id, created_at FROM deployment")
    assert row is not None  # inserted just above, or by the hub whose insert won; never deleted
    return Deployment(row["id"], row["created_at"])


def derived_hub_client_id(deployment_id: uuid.UUID, topic_prefix: str) -> str:
    """The hub's default MQTT client id: ``campushub-hub-<12 hex>``, stable for a deployment and prefix.

    The topic prefix takes part so that a copy of the database (a staging
    restore) put on the same broker under its own prefix gets its own session,
    and so that a hub whose prefix changes does not resume a session that still
    carries the old prefix's subscriptions (hub/pipeline/session_guard.py would
    refuse it).
    """
    digest = hashlib.sha256(f"{deployment_id}\0{topic_prefix}".encode()).hexdigest()
    return HUB_CLIENT_ID_PREFIX + digest[:CLIENT_ID_HEX]
