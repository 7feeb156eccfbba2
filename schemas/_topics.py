"""MQTT topic layout. A prefix isolates deployments (and test runs) on one broker."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import get_args

from ._envelope import DeviceId

#: The registry's device id shape, taken from the wire format's one definition (``DeviceId``).
_DEVICE_ID = re.compile(get_args(DeviceId)[1].pattern)
#: Longest device id the shape allows, and the longest channel name ("status").
_MAX_DEVICE_ID_CHARS = 64
_MAX_CHANNEL_CHARS = len("status")


@dataclass(frozen=True)
class Topics:
    """``{prefix}/v1/dev/{device}/up`` (events, QoS 1), ``.../status`` (retained, Last Will),
    ``.../down`` (hub → device commands); and, for the hub's own workers only, ``{prefix}/v1/hub/live``
    (:attr:`live_bus`) and ``{prefix}/v1/hub/workers/{id}/calls`` and ``.../replies``
    (:meth:`worker_calls`, :meth:`worker_replies`)."""

    prefix: str = "campushub"

    def uplink(self, device_id: str) -> str:
        return f"{self.prefix}/v1/dev/{device_id}/up"

    def status(self, device_id: str) -> str:
        return f"{self.prefix}/v1/dev/{device_id}/status"

    def downlink(self, device_id: str) -> str:
        return f"{self.prefix}/v1/dev/{device_id}/down"

    @property
    def live_bus(self) -> str:
        """The live bus between the hub's workers (hub/core/bus_bridge.py): QoS 1, never retained.

        Outside ``{prefix}/v1/dev/``, so :meth:`parse`, the device filters and every device's ACL
        never cover it; only the hub's account may read and write it.
        """
        return f"{self.prefix}/v1/hub/live"

    def worker_calls(self, worker_id: str) -> str:
        """Asks of other workers to the worker ``worker_id`` (hub/app/worker_calls.py): QoS 1, never retained.

        Outside ``{prefix}/v1/dev/`` like :attr:`live_bus`: the hub's account only. ``ValueError`` for an
        id that is not one topic level (empty, or holding ``/``, ``+``, ``#`` or NUL).
        """
        if not worker_id or any(c in worker_id for c in "/+#\0"):
            raise ValueError(f"not a worker id: {worker_id!r}")
        return f"{self.prefix}/v1/hub/workers/{worker_id}/calls"

    def worker_replies(self, worker_id: str) -> str:
        """Answers to the asks of the worker ``worker_id`` (hub/app/worker_calls.py): QoS 1, never retained.

        ``ValueError`` for an id that is not one topic level, as :meth:`worker_calls`.
        """
        if not worker_id or any(c in worker_id for c in "/+#\0"):
            raise ValueError(f"not a worker id: {worker_id!r}")
        return f"{self.prefix}/v1/hub/workers/{worker_id}/replies"

    @property
    def uplink_filter(self) -> str:
        return f"{self.prefix}/v1/dev/+/up"

    @property
    def status_filter(self) -> str:
        return f"{self.prefix}/v1/dev/+/status"

    @cached_property
    def _device_head(self) -> str:
        return f"{self.prefix}/v1/dev/"

    @cached_property
    def max_topic_chars(self) -> int:
        """The longest topic :meth:`parse` can accept under this prefix; longer ones are refused unread."""
        return len(self._device_head) + _MAX_DEVICE_ID_CHARS + 1 + _MAX_CHANNEL_CHARS

    @staticmethod
    def valid_device_id(device_id: str) -> bool:
        """Whether ``device_id`` has the registry's shape (``DeviceId``: 1-64 letters, digits, ``_.-``)."""
        return _DEVICE_ID.fullmatch(device_id) is not None

    def parse(self, topic: str) -> tuple[str, str] | None:
        """``(device_id, channel)`` for a topic under this prefix, else ``None``.

        ``None`` too when the topic is longer than :attr:`max_topic_chars` (checked
        first, so a 60,000-character topic costs one length test) or its device id
        is not of the registry's shape: nothing unbounded reaches a lookup or a row.
        """
        if len(topic) > self.max_topic_chars:
            return None
        head = self._device_head
        if not topic.startswith(head):
            return None
        rest = topic[len(head):].split("/")
        if len(rest) != 2 or not self.valid_device_id(rest[0]):
            return None
        return rest[0], rest[1]
