"""What a partition's MQTT session subscribes to, and how to get there from what it has. Pure.

A partition's persistent session (one per partition, its client id fixed, see
docs/architecture.md) subscribes to the exact uplink and status topic of each
device of the partition -- no wildcard, so it receives nothing of another
partition. The subscriptions belong to the broker-side session, so a new owner
inherits them; after a change of the partition's devices (a device added,
moved to another room, removed) the owner sends only the difference.

A device id that is not of the registry's shape (``Topics.valid_device_id``) is
refused with ``ValueError``: one with ``+``, ``#`` or ``/`` would make a
wildcard filter and subscribe the partition to other devices' traffic.
"""
from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass

from schemas import Topics


def partition_topics(topics: Topics, device_ids: Iterable[str]) -> frozenset[str]:
    """The uplink and status topic of every device in ``device_ids`` (two per device)."""
    wanted: set[str] = set()
    for device_id in device_ids:
        if not topics.valid_device_id(device_id):
            raise ValueError(f"not a device id of the registry's shape: {device_id!r}")
        wanted.add(topics.uplink(device_id))
        wanted.add(topics.status(device_id))
    return frozenset(wanted)


@dataclass(frozen=True)
class SubscriptionChange:
    """Filters to subscribe and to unsubscribe, each sorted (a stable order for packets and logs)."""

    subscribe: tuple[str, ...]
    unsubscribe: tuple[str, ...]

    def __bool__(self) -> bool:
        """False when there is nothing to do."""
        return bool(self.subscribe or self.unsubscribe)


def subscription_change(current: Set[str], wanted: Set[str]) -> SubscriptionChange:
    """From the filters the session has (``current``) to those it should have (``wanted``).

    A topic is in at most one of the two lists, so the two can be sent in either order.
    """
    return SubscriptionChange(
        subscribe=tuple(sorted(wanted - current)),
        unsubscribe=tuple(sorted(current - wanted)),
    )
