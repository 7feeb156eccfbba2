"""Partition leases and worker heartbeats in PostgreSQL: the SQL half of a many-worker hub.

Tables ``partition_leases`` and ``hub_workers`` (migration 0036). Which
partition a room is in, who should own what and what to claim or give up are
pure rules in hub/domain/partitions.py (``balance_plan``); this module only
reads and moves leases. Expiry is judged by the database's clock alone
(``now()``, never a time sent by a worker), so the workers' clocks may
disagree. Every lease function is one statement, whatever the number of
partitions; :func:`session_owner` and :func:`device_owner` (who serves a
session or a device now, for the asks between workers) read its room first.

The lease keeper (hub/app/partition_sessions.py ``PartitionKeeper``) runs,
each round of a third of the lease: :func:`register_worker` (the heartbeat)
and :func:`renew` what it serves (in a task of their own; it stops serving
at once what it lost), :func:`live_workers` and :func:`read_leases`, the
domain's plan, :func:`release` (after it stopped serving them) and
:func:`claim`.

Concurrency contract:

- Each lease call is one autocommit statement; ``now()`` is its start. Row locks
  serialise calls on the same partition, and each re-checks its condition
  on the row as the other left it (``UPDATE`` and ``ON CONFLICT DO UPDATE
  ... WHERE`` under READ COMMITTED), so when two workers claim the same
  free partition at once exactly one gets it; the other's claim returns
  without it.
- A lease got or renewed at a call runs at least until the caller's
  monotonic clock, read *before* it sent the call, plus ``lease_s``: the
  database's ``now()`` is no earlier than that moment. A worker must stop
  serving a partition by that deadline unless a renewal extends it, and
  stop at once when :func:`renew` leaves it out. No other worker can get it
  before the lease expires by the database's clock.
- The fence grows by one at every change of owner (including a claim after
  a release) and never on a renewal or a claim of one's own lease.
- Calls may come from any trio task; they share nothing but the database.
"""
from __future__ import annotations

from collections.abc import Sequence

from hub.domain.partitions import PartitionLease, partition_of_device, partition_of_room

from ._pool import Database

#: Register a worker or refresh its heartbeat; a new host or pid is a new start.
REGISTER_SQL = """
INSERT INTO hub_workers AS w (worker_id, host, pid) VALUES ($1, $2, $3)
ON CONFLICT (worker_id) DO UPDATE SET
    seen_at = now(), host = excluded.host, pid = excluded.pid,
    started_at = CASE WHEN (w.host, w.pid) = (excluded.host, excluded.pid) THEN w.started_at ELSE now() END
"""

LIVE_WORKERS_SQL = """
SELECT worker_id FROM hub_workers WHERE seen_at > now() - make_interval(secs => $1) ORDER BY worker_id
"""

FORGET_WORKER_SQL = "DELETE FROM hub_workers WHERE worker_id = $1"

FORGET_UNSEEN_SQL = """
DELETE FROM hub_workers WHERE seen_at <= now() - make_interval(secs => $1) RETURNING worker_id
"""

#: The missing rows of partitions 0..$1-1 are inserted free; the main query reads the snapshot
#: from before that insert, so the new rows come back through RETURNING.
READ_SQL = """
WITH missing AS (
    INSERT INTO partition_leases (partition) SELECT p FROM generate_series(0, $1 - 1) AS p ORDER BY p
    ON CONFLICT (partition) DO NOTHING
    RETURNING partition, owner, fence
)
SELECT partition, owner, fence, (expires_at IS NULL OR expires_at <= now()) AS expired FROM partition_leases
UNION ALL
SELECT partition, owner, fence, true FROM missing
ORDER BY partition
"""

#: Claim: a partition without a row is inserted as ours (fence 1); a row is taken if free, expired
#: or already ours. The WHERE is evaluated on the row locked, as the last writer left it.
#: Every statement here locks its rows in ascending partition order (the ORDER BY before the
#: insert, FOR UPDATE in an ordered CTE before the updates), so two of them never deadlock.
CLAIM_SQL = """
INSERT INTO partition_leases AS l (partition, owner, fence, expires_at, acquired_at)
SELECT p, $1, 1, now() + make_interval(secs => $3), now() FROM unnest($2::integer[]) AS p ORDER BY p
ON CONFLICT (partition) DO UPDATE SET
    owner = excluded.owner,
    fence = CASE WHEN l.owner IS DISTINCT FROM excluded.owner THEN l.fence + 1 ELSE l.fence END,
    acquired_at = CASE WHEN l.owner IS DISTINCT FROM excluded.owner THEN now() ELSE l.acquired_at END,
    expires_at = excluded.expires_at
WHERE l.owner IS NULL OR l.owner = excluded.owner OR l.expires_at <= now()
RETURNING partition, fence
"""

#: Renew: only a lease that is ours and has not expired (an expired one may have to be claimed again).
RENEW_SQL = """
WITH mine AS (
    SELECT partition FROM partition_leases WHERE partition = ANY($2::integer[]) AND owner = $1
    ORDER BY partition FOR UPDATE
)
UPDATE partition_leases l SET expires_at = now() + make_interval(secs => $3)
FROM mine WHERE l.partition = mine.partition AND l.owner = $1 AND l.expires_at > now()
RETURNING l.partition
"""

RELEASE_SQL = """
WITH mine AS (
    SELECT partition FROM partition_leases WHERE partition = ANY($2::integer[]) AND owner = $1
    ORDER BY partition FOR UPDATE
)
UPDATE partition_leases l SET owner = NULL, expires_at = NULL, acquired_at = NULL
FROM mine WHERE l.partition = mine.partition AND l.owner = $1
RETURNING l.partition
"""


def _partition_list(partitions: Sequence[int]) -> list[int]:
    # Once each (ON CONFLICT DO UPDATE may not touch a row twice), in order (rows locked in one order).
    chosen = sorted(set(partitions))
    if chosen and chosen[0] < 0:
        raise ValueError(f"a partition is a number from 0, not {chosen[0]}")
    return chosen


def _lease_seconds(lease_s: float) -> float:
    if not lease_s > 0:
        raise ValueError(f"a lease lasts more than 0 s, not {lease_s}")
    return float(lease_s)


async def register_worker(db: Database, worker_id: str, host: str, pid: int) -> None:
    """Record ``worker_id`` as live now: at its start and at every round after (it is the heartbeat)."""
    await db.execute(REGISTER_SQL, worker_id, host, pid)


async def live_workers(db: Database, lease_s: float) -> list[str]:
    """The workers whose heartbeat is within ``lease_s`` of the database's now, sorted."""
    return [r["worker_id"] for r in await db.fetch(LIVE_WORKERS_SQL, _lease_seconds(lease_s))]


async def forget_worker(db: Database, worker_id: str) -> None:
    """Remove ``worker_id``'s heartbeat row (a clean exit, after releasing its leases)."""
    await db.execute(FORGET_WORKER_SQL, worker_id)


async def forget_unseen_workers(db: Database, unseen_s: float) -> list[str]:
    """Remove the rows of workers not seen for ``unseen_s`` (those that died without a clean exit)."""
    return sorted(r["worker_id"] for r in await db.fetch(FORGET_UNSEEN_SQL, _lease_seconds(unseen_s)))


async def read_leases(db: Database, partitions: int) -> list[PartitionLease]:
    """Every lease row by partition (rows beyond ``partitions`` too), first creating the missing ones free.

    ``expired`` is judged by the database's ``now()``. A row another worker
    creates at the same instant may be missing from the answer: the plan
    counts a missing partition as free, and the claim decides.
    """
    if partitions < 1:
        raise ValueError(f"the partition count must be at least 1, not {partitions}")
    rows = await db.fetch(READ_SQL, partitions)
    return [PartitionLease(r["partition"], r["owner"], r["fence"], r["expired"]) for r in rows]


async def claim(db: Database, worker_id: str, partitions: Sequence[int], lease_s: float) -> dict[int, int]:
    """Claim ``partitions`` for ``lease_s``: those got (free, expired or already ours), each with its fence.

    The fence grows when the owner changes and stays when the claimer already
    owned it (expired or not). A partition held by another worker is left out.
    """
    chosen = _partition_list(partitions)
    if not chosen:
        return {}
    rows = await db.fetch(CLAIM_SQL, worker_id, chosen, _lease_seconds(lease_s))
    return {r["partition"]: r["fence"] for r in rows}


async def renew(db: Database, worker_id: str, partitions: Sequence[int], lease_s: float) -> set[int]:
    """Extend ``worker_id``'s unexpired leases of ``partitions`` by ``lease_s`` from now: those still ours.

    A partition left out was lost (expired, perhaps taken): stop serving it
    at once. The fence does not change.
    """
    chosen = _partition_list(partitions)
    if not chosen:
        return set()
    return {r["partition"] for r in await db.fetch(RENEW_SQL, worker_id, chosen, _lease_seconds(lease_s))}


async def release(db: Database, worker_id: str, partitions: Sequence[int]) -> set[int]:
    """Give up ``worker_id``'s leases of ``partitions`` (stop serving them first): those it still owned."""
    chosen = _partition_list(partitions)
    if not chosen:
        return set()
    return {r["partition"] for r in await db.fetch(RELEASE_SQL, worker_id, chosen)}


#: The owner of one partition now, by the database's clock (None: free, expired or never claimed).
OWNER_SQL = "SELECT owner FROM partition_leases WHERE partition = $1 AND expires_at > now()"


async def partition_owner(db: Database, partition: int) -> str | None:
    """The worker that holds ``partition``'s lease now, or ``None``."""
    owner: str | None = await db.fetchval(OWNER_SQL, partition)
    return owner


async def session_owner(db: Database, session_id: str, partitions: int) -> str | None:
    """The worker serving ``session_id``'s room now (its actor lives there), or ``None`` (no such session, or free)."""
    room_id = await db.fetchval("SELECT room_id FROM class_sessions WHERE id = $1", session_id)
    return None if room_id is None else await partition_owner(db, partition_of_room(room_id, partitions))


async def device_owner(db: Database, device_id: str, partitions: int) -> str | None:
    """The worker serving ``device_id`` now (its actor lives there), or ``None`` (no such device, or free)."""
    row = await db.fetchrow("SELECT room_id FROM devices WHERE id = $1", device_id)
    if row is None:
        return None
    return await partition_owner(db, partition_of_device(device_id, row["room_id"], partitions))
