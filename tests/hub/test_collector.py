"""hub/services/collector.py: the garbage-collector policy (thresholds, periodic freezing, rebuilds)."""
from __future__ import annotations

import gc
import weakref

import pytest
import trio

from actors import ChildSpec, Supervisor
from hub.services.collector import THRESHOLDS, CollectorKeeper, collector_policy, freeze_long_lived


class _Node:
    """A cycle: unreachable only to the cyclic collector, never freed by reference counting."""

    def __init__(self) -> None:
        self.me = self


def _frozen_cycle() -> weakref.ref:
    node = _Node()
    probe = weakref.ref(node)
    gc.freeze()  # the cycle is now in the permanent generation
    del node
    return probe


@pytest.fixture(autouse=True)
def _restore_collector():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_policy_applies_thresholds_and_restores_them() -> None:
    gc.set_threshold(700, 10, 10)
    with collector_policy():
        assert gc.get_threshold() == THRESHOLDS
        gc.freeze()
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0  # handed back to the collector


def test_frozen_cycles_survive_collections_until_a_rebuild() -> None:
    probe = _frozen_cycle()
    gc.collect()
    assert probe() is not None, "a frozen cycle is never collected: that is what rebuilds are for"
    keeper = CollectorKeeper()
    keeper.rebuild()
    assert probe() is None
    assert gc.get_freeze_count() > 0 and keeper.rebuilds == 1


def test_freeze_long_lived_freezes_survivors() -> None:
    kept = [_Node() for _ in range(100)]
    frozen = freeze_long_lived()
    assert frozen >= 100 and gc.get_freeze_count() == frozen
    assert kept


async def test_keeper_freezes_periodically_and_rebuilds_on_schedule() -> None:
    root = Supervisor("test-collector")
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        keeper = CollectorKeeper(freeze_every_s=0.02, rebuild_every_s=0.15)
        await root.start_child(ChildSpec("collector", lambda: keeper))
        gc.unfreeze()
        with trio.fail_after(5):
            while keeper.freezes == 0:
                await trio.sleep(0.01)
        assert gc.get_freeze_count() > 0
        probe = _frozen_cycle()
        with trio.fail_after(5):
            while keeper.rebuilds == 0:
                await trio.sleep(0.01)
        assert probe() is None, "the scheduled rebuild collected the frozen cycle"
        await root.shutdown()
