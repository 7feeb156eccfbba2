"""Which rooms and devices this worker serves: the partitions it holds a lease on, read by the actors.

With ``Settings.partitions == 0`` (one hub process, the default) the worker
owns everything and nothing here changes. With ``P >= 1`` partitions, the
partition keeper (hub/app/partition_sessions.py) changes :attr:`owned` as
it gains and loses leases, and then tells the scheduler and the ingress
(:class:`OwnershipChanged`), which start the actors of what it gained and
stop those of what it lost. A room's partition is
:func:`~hub.domain.partitions.partition_of_room`; a device's is its room's.

Concurrency contract: one object per hub run, shared by the keeper, the
scheduler and the ingress, all tasks of that one trio run. Only the keeper
assigns :attr:`owned` (a frozenset, replaced whole, never mutated), between
awaits; readers see either the old or the new set, never a mix.
"""
from __future__ import annotations

from dataclasses import dataclass

from hub.domain.partitions import partition_of_room


@dataclass(frozen=True)
class OwnershipChanged:
    """Ask (scheduler, ingress): the owned partitions changed; start what is now ours, stop what is not."""


class PartitionOwnership:
    """This worker's partitions (:attr:`owned`) out of :attr:`partitions`; 0 partitions: owns everything."""

    def __init__(self, partitions: int = 0, owned: frozenset[int] = frozenset()) -> None:
        if partitions < 0:
            raise ValueError(f"the partition count is 0 (no partitioning) or more, not {partitions}")
        self.partitions = partitions
        #: Replaced whole by the partition keeper; see the module's concurrency contract.
        self.owned = owned
        # Rooms are few (hundreds) and asked about on every event: their partitions are kept.
        self._room_partition: dict[str, int] = {}

    @property
    def partitioned(self) -> bool:
        return self.partitions > 0

    def partition_of_room(self, room_id: str) -> int:
        found = self._room_partition.get(room_id)
        if found is None:
            if len(self._room_partition) > 100_000:  # bounded whatever room ids the database holds
                self._room_partition.clear()
            found = self._room_partition[room_id] = partition_of_room(room_id, self.partitions)
        return found

    def owns_room(self, room_id: str) -> bool:
        """Whether the room's sessions and devices are served here (always, without partitioning)."""
        return not self.partitions or self.partition_of_room(room_id) in self.owned


#: The single-process hub's ownership: every room, for good.
EVERYTHING = PartitionOwnership()
