"""Work partitions of a many-worker hub: which partition a room or device is in, and who should own which. Pure.

The hub's load is cut into ``P`` partitions so that a room's devices and its
session actors live in the same worker: a room's partition is
``crc32(room_id) % P`` and a device's is its room's (a device without a room:
``crc32(device_id) % P``). crc32 (zlib's, of the UTF-8 bytes) is fixed by
this module for good: every worker of a deployment, of any version, must
compute the same partition, and Python's own ``hash`` of a str differs
between processes.

Ownership is leased through PostgreSQL (hub/db/partition_leases.py, which
holds the claim/renew/release SQL and judges expiry by the database's
clock). :func:`balance_plan` is the rule each worker applies to what it read
there: which partitions it keeps, which it claims and which it gives up.
Every worker runs the same rule on (eventually) the same view, so they agree
without talking to each other:

- the fair shares are an even split of ``P`` over the workers: each gets
  ``P // n``, and the ``P % n`` workers that hold the most now (ties: the
  lowest worker id) get one more, so shares differ by at most 1 and a
  worker already at the larger share keeps it (few moves);
- a worker keeps what it holds up to its share, and gives up its
  highest-numbered extras;
- a worker below its share claims free partitions (never owned, released,
  or expired), lowest first, up to its share; when none is free it claims
  nothing and waits for the owner above its share to give one up.

The plan never takes a partition from a live owner: only the database's
claim moves a lease, and it refuses one that is held. So at no time do two
workers own a partition; the plan only decides how fast they converge.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass


def _crc_partition(key: str, partitions: int) -> int:
    if partitions < 1:
        raise ValueError(f"the partition count must be at least 1, not {partitions}")
    return zlib.crc32(key.encode("utf-8")) % partitions


def partition_of_room(room_id: str, partitions: int) -> int:
    """The partition of ``room_id`` among ``partitions`` (crc32 of its UTF-8 bytes, modulo the count)."""
    return _crc_partition(room_id, partitions)


def partition_of_device(device_id: str, room_id: str | None, partitions: int) -> int:
    """The partition of a device: its room's, or for a device without a room, crc32 of its own id's."""
    if room_id is not None:
        return partition_of_room(room_id, partitions)
    return _crc_partition(device_id, partitions)


@dataclass(frozen=True)
class PartitionLease:
    """One partition's lease as read from the database.

    ``owner`` is the last worker that claimed it (None: never claimed, or
    released); ``expired`` is the database's judgement at the time of the read
    (``expires_at <= now()``, or no lease at all). ``fence`` grows by one at
    every change of owner and never on a renewal.
    """

    partition: int
    owner: str | None
    fence: int
    expired: bool

    @property
    def holder(self) -> str | None:
        """The worker that owns the partition now, or None if anyone may claim it."""
        return None if self.expired else self.owner


@dataclass(frozen=True)
class BalancePlan:
    """What one worker should do with the leases this round; every tuple sorted ascending.

    ``keep``: held and within the share (renew them). ``claim``: free ones to
    claim (the database may refuse some: another worker was first).
    ``release``: held beyond the share (stop serving, then release).
    """

    share: int
    keep: tuple[int, ...]
    claim: tuple[int, ...]
    release: tuple[int, ...]


def fair_shares(partitions: int, held: dict[str, int]) -> dict[str, int]:
    """Each worker's share of ``partitions``: an even split, the extra ones to the workers holding most.

    ``held`` maps every worker to the number of partitions it holds now. The
    ``partitions % n`` workers with the most (ties: the lowest id) get
    ``partitions // n + 1``, the others ``partitions // n``: the shares add up
    to ``partitions`` and differ by at most 1.
    """
    if not held:
        return {}
    base, extra = divmod(partitions, len(held))
    ranked = sorted(held, key=lambda worker: (-held[worker], worker))
    return {worker: base + (1 if rank < extra else 0) for rank, worker in enumerate(ranked)}


def balance_plan(partitions: int, live_workers: Iterable[str], leases: Iterable[PartitionLease],
                 me: str) -> BalancePlan:
    """What ``me`` keeps, claims and releases, given ``partitions``, the live workers and the leases as read.

    The workers sharing the partitions are the live ones, ``me``, and any
    other holder of an unexpired lease (live or not by its last heartbeat,
    it owns that partition until the lease runs out). A partition missing
    from ``leases`` (no row yet) counts as free. A lease of a partition
    beyond ``partitions`` held by ``me`` is released (the count was lowered).
    Deterministic: the same inputs give the same plan.
    """
    if partitions < 1:
        raise ValueError(f"the partition count must be at least 1, not {partitions}")
    holder_of: dict[int, str] = {}
    beyond: list[int] = []
    for lease in leases:
        holder = lease.holder
        if holder is None:
            continue
        if lease.partition >= partitions:
            if holder == me:
                beyond.append(lease.partition)
            continue
        holder_of[lease.partition] = holder
    held: dict[str, int] = {worker: 0 for worker in live_workers}
    held[me] = 0
    for holder in holder_of.values():
        held[holder] = held.get(holder, 0) + 1
    share = fair_shares(partitions, held)[me]
    mine = sorted(p for p, holder in holder_of.items() if holder == me)
    if len(mine) > share:
        return BalancePlan(share, tuple(mine[:share]), (), tuple(mine[share:] + sorted(beyond)))
    free = [p for p in range(partitions) if p not in holder_of]
    return BalancePlan(share, tuple(mine), tuple(free[:share - len(mine)]), tuple(sorted(beyond)))
