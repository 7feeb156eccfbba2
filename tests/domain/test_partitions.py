"""Work partitions: the fixed room/device hash, and the balance plan simulated against a lease table.

The simulated table below applies the same rules as hub/db/partition_leases.py's SQL (a claim gets
a partition that is free, expired or already the claimer's; a renewal extends only an unexpired
lease of its owner; the fence grows on a change of owner), with a clock of its own. Each simulated
worker serves a partition from a successful claim until the deadline of its last claim or renewal
(its call's time + the lease) or until it releases it, and the invariant checked after every step
is that no partition is served by two live workers.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from hub.domain.partitions import (
    BalancePlan,
    PartitionLease,
    balance_plan,
    fair_shares,
    partition_of_device,
    partition_of_room,
)

# --------------------------------------------------------------------------- the hash


def test_the_room_hash_is_standard_crc32_and_fixed():
    # CRC-32's published check value: the hash is zlib's crc32 of the UTF-8 bytes, nothing else.
    assert partition_of_room("123456789", 2**32) == 0xCBF43926
    # Fixed for good: every worker of every version must put a room in the same partition.
    assert [partition_of_room(r, 16) for r in ("room-101", "B-204", "lab 3", "Aula 1.º")] == [6, 15, 13, 4]
    assert [partition_of_room(r, 7) for r in ("room-101", "B-204", "lab 3", "Aula 1.º")] == [5, 2, 4, 2]
    assert partition_of_room("anything", 1) == 0


def test_a_device_is_in_its_rooms_partition_and_without_a_room_in_its_own():
    assert partition_of_device("qr-001", "room-101", 16) == partition_of_room("room-101", 16) == 6
    assert partition_of_device("qr-001", None, 16) == 2
    assert partition_of_device("qr-001", None, 16) == partition_of_room("qr-001", 16)


@pytest.mark.parametrize("count", [0, -3])
def test_a_partition_count_below_one_is_refused(count):
    with pytest.raises(ValueError):
        partition_of_room("room-101", count)
    with pytest.raises(ValueError):
        balance_plan(count, ["w1"], [], "w1")


# --------------------------------------------------------------------------- the plan, case by case


def held(owners: dict[int, str], partitions: int, expired: frozenset[int] = frozenset()) -> list[PartitionLease]:
    return [PartitionLease(p, owners.get(p), 1 if p in owners else 0, p in expired or p not in owners)
            for p in range(partitions)]


def test_shares_split_evenly_and_the_extra_ones_go_to_the_workers_holding_most():
    assert fair_shares(16, {"a": 0, "b": 0, "c": 0}) == {"a": 6, "b": 5, "c": 5}
    assert fair_shares(16, {"a": 0, "b": 0, "c": 7}) == {"a": 5, "b": 5, "c": 6}
    assert fair_shares(4, {"a": 1, "b": 1, "c": 1, "d": 1, "e": 0}) == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 0}
    assert fair_shares(3, {}) == {}


def test_a_lone_worker_claims_every_partition_lowest_first():
    assert balance_plan(4, ["w1"], [], "w1") == BalancePlan(4, (), (0, 1, 2, 3), ())
    assert balance_plan(4, [], held({}, 4), "w1") == BalancePlan(4, (), (0, 1, 2, 3), ())


def test_a_worker_over_its_share_gives_up_its_highest_numbered_extras():
    owners = {p: "a" for p in range(8)}
    assert balance_plan(8, ["a", "b"], held(owners, 8), "a") == BalancePlan(4, (0, 1, 2, 3), (), (4, 5, 6, 7))


def test_a_worker_below_its_share_claims_nothing_while_everything_is_held():
    owners = {p: "a" for p in range(8)}
    assert balance_plan(8, ["a", "b"], held(owners, 8), "b") == BalancePlan(4, (), (), ())


def test_expired_and_released_partitions_are_free_and_claimed_lowest_first():
    owners = {0: "a", 1: "dead", 2: "dead", 3: "a"}
    plan = balance_plan(6, ["a", "b"], held(owners, 6, expired=frozenset({1, 2})), "b")
    assert plan == BalancePlan(3, (), (1, 2, 4), ())


def test_an_unexpired_holder_counts_even_when_its_heartbeat_is_missing():
    # "c" is not in the live list but holds a lease that has not run out: it keeps its share meanwhile.
    owners = {0: "c", 1: "c", 2: "a", 3: "a"}
    plan = balance_plan(6, ["a", "b"], held(owners, 6), "b")
    assert plan == BalancePlan(2, (), (4, 5), ())


def test_my_leases_beyond_a_lowered_partition_count_are_released():
    leases = held({0: "a"}, 2) + [PartitionLease(5, "a", 3, False), PartitionLease(6, "b", 1, False)]
    assert balance_plan(2, ["a"], leases, "a") == BalancePlan(2, (0,), (1,), (5,))


def test_the_plan_is_deterministic_whatever_the_order_of_its_inputs():
    owners = {0: "b", 3: "c", 4: "c", 5: "c", 6: "c"}
    leases = held(owners, 8)
    plans = {balance_plan(8, order, random.Random(seed).sample(leases, len(leases)), "a")
             for seed, order in enumerate((["a", "b", "c"], ["c", "a", "b"], ["b", "c", "a"]))}
    # 8 over 3: c (holding 4) and b (holding 1) get the two larger shares of 3, a gets 2.
    assert plans == {BalancePlan(2, (), (1, 2), ())}


# --------------------------------------------------------------------------- simulation

LEASE_S = 10.0
ROUND_S = 2.5


@dataclass
class Row:
    owner: str | None = None
    fence: int = 0
    expires_at: float | None = None


@dataclass
class LeaseTable:
    """The database's lease table and clock: the same rules as the adapter's SQL."""

    now: float = 0.0
    rows: dict[int, Row] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)

    def _row(self, p: int) -> Row:
        return self.rows.setdefault(p, Row())

    def _live(self, row: Row) -> bool:
        return row.owner is not None and row.expires_at is not None and row.expires_at > self.now

    def read(self, partitions: int) -> list[PartitionLease]:
        return [PartitionLease(p, self._row(p).owner, self._row(p).fence, not self._live(self._row(p)))
                for p in range(partitions)]

    def live_workers(self) -> list[str]:
        return sorted(w for w, at in self.seen.items() if at > self.now - LEASE_S)

    def claim(self, worker: str, partitions: tuple[int, ...]) -> dict[int, int]:
        got = {}
        for p in partitions:
            row = self._row(p)
            if row.owner is None or row.owner == worker or not self._live(row):
                if row.owner != worker:
                    row.fence += 1
                row.owner, row.expires_at = worker, self.now + LEASE_S
                got[p] = row.fence
        return got

    def renew(self, worker: str, partitions: set[int]) -> set[int]:
        kept = {p for p in partitions if self._row(p).owner == worker and self._live(self._row(p))}
        for p in kept:
            self.rows[p].expires_at = self.now + LEASE_S
        return kept

    def release(self, worker: str, partitions: tuple[int, ...]) -> None:
        for p in partitions:
            if self._row(p).owner == worker:
                self.rows[p].owner = self.rows[p].expires_at = None


@dataclass
class Worker:
    """A worker as a lease keeper would run it: heartbeat, renew, read, plan, release, claim."""

    name: str
    alive: bool = True
    #: partition -> the deadline (the time of its last successful claim or renewal + the lease).
    serving: dict[int, float] = field(default_factory=dict)
    fences: dict[int, int] = field(default_factory=dict)

    def start_round(self, table: LeaseTable) -> None:
        table.seen[self.name] = table.now
        self.serving = {p: table.now + LEASE_S for p in table.renew(self.name, set(self.serving))}

    def plan(self, table: LeaseTable, partitions: int) -> BalancePlan:
        return balance_plan(partitions, table.live_workers(), table.read(partitions), self.name)

    def act(self, table: LeaseTable, plan: BalancePlan) -> bool:
        for p in plan.release:  # stop serving first, then let go
            self.serving.pop(p, None)
        table.release(self.name, plan.release)
        got = table.claim(self.name, plan.claim)
        for p, fence in got.items():
            assert fence > self.fences.get(p, 0) or p in self.serving
            self.serving[p], self.fences[p] = table.now + LEASE_S, fence
        return bool(plan.release or plan.claim)


def assert_one_server_at_most(table: LeaseTable, workers: list[Worker]) -> None:
    servers: dict[int, list[str]] = {}
    for w in workers:
        if w.alive:
            for p, deadline in w.serving.items():
                if deadline > table.now:
                    servers.setdefault(p, []).append(w.name)
    assert all(len(names) == 1 for names in servers.values()), servers


def run_rounds(table: LeaseTable, workers: list[Worker], partitions: int, rng: random.Random, *,
               stale_views: bool, not_before: float = 0.0, max_rounds: int = 40) -> int:
    """Rounds until one whole round moves nothing (not before the clock reads ``not_before``).

    Returns how many rounds were needed. Checks the invariant after every step.
    """
    for rounds in range(1, max_rounds + 1):
        live = [w for w in workers if w.alive]
        order = rng.sample(live, len(live))
        for w in order:
            w.start_round(table)
            assert_one_server_at_most(table, workers)
        moved = False
        if stale_views:  # everyone reads the same snapshot, then acts on it one after the other
            plans = {w.name: w.plan(table, partitions) for w in order}
            for w in order:
                moved |= w.act(table, plans[w.name])
                assert_one_server_at_most(table, workers)
        else:
            for w in order:
                moved |= w.act(table, w.plan(table, partitions))
                assert_one_server_at_most(table, workers)
        table.now += ROUND_S
        if not moved and table.now > not_before:
            return rounds
    raise AssertionError(f"no agreement after {max_rounds} rounds")


def assert_balanced(table: LeaseTable, workers: list[Worker], partitions: int) -> list[int]:
    live = [w for w in workers if w.alive]
    owners = {p: [w.name for w in live if p in w.serving] for p in range(partitions)}
    assert all(len(names) == 1 for names in owners.values()), owners
    assert all(table.rows[p].owner == names[0] for p, names in owners.items())
    shares = sorted(len(w.serving) for w in live)
    assert sum(shares) == partitions and shares[-1] - shares[0] <= 1, shares
    return shares


@pytest.mark.parametrize("stale_views", [False, True])
@pytest.mark.parametrize("partitions", [1, 5, 16])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_workers_converge_to_one_owner_per_partition_with_even_shares(count, partitions, stale_views):
    for seed in range(20):
        table, rng = LeaseTable(), random.Random(seed)
        workers = [Worker(f"w{i}") for i in range(count)]
        run_rounds(table, workers, partitions, rng, stale_views=stale_views)
        assert_balanced(table, workers, partitions)
        # Agreement is stable: more rounds move nothing and renew every lease.
        before = {w.name: dict(w.fences) for w in workers}
        assert run_rounds(table, workers, partitions, rng, stale_views=stale_views) == 1
        assert {w.name: dict(w.fences) for w in workers} == before


@pytest.mark.parametrize("stale_views", [False, True])
def test_a_dead_workers_partitions_are_taken_over_with_a_higher_fence(stale_views):
    for seed in range(20):
        table, rng = LeaseTable(), random.Random(seed)
        workers = [Worker("w0"), Worker("w1"), Worker("w2")]
        run_rounds(table, workers, 16, rng, stale_views=stale_views)
        dead = workers[1]
        orphaned = {p: table.rows[p].fence for p in dead.serving}
        dead.alive = False
        died_at = table.now
        # Nothing moves while its leases run: the survivors wait for them to expire.
        run_rounds(table, workers, 16, rng, stale_views=stale_views, not_before=died_at + LEASE_S)
        assert assert_balanced(table, workers, 16) == [8, 8]
        for p, fence in orphaned.items():
            assert table.rows[p].owner != "w1" and table.rows[p].fence > fence
        # Taken over within a few rounds of the lease running out.
        assert table.now <= died_at + LEASE_S + 6 * ROUND_S


@pytest.mark.parametrize("stale_views", [False, True])
def test_a_joining_worker_gets_its_share_without_two_owners_ever(stale_views):
    for seed in range(20):
        table, rng = LeaseTable(), random.Random(seed)
        workers = [Worker("w0"), Worker("w1")]
        run_rounds(table, workers, 16, rng, stale_views=stale_views)
        assert assert_balanced(table, workers, 16) == [8, 8]
        fences = sum(row.fence for row in table.rows.values())
        workers.append(Worker("w2"))  # the invariant is checked after every step of every round
        run_rounds(table, workers, 16, rng, stale_views=stale_views)
        assert assert_balanced(table, workers, 16) == [5, 5, 6]
        # Few moves: the newcomer's 5 changed hands once each (a fence step per change of owner), nothing else.
        assert len(workers[2].serving) == 5
        assert sum(row.fence for row in table.rows.values()) - fences == 5
