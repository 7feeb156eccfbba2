"""MQTT topic layout. A prefix isolates deployments (and test runs) on one broker."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """``{prefix}/v1/dev/{device}/up`` (events, QoS 1), ``.../status`` (retained, Last Will),
    ``.../down`` (hub → device commands)."""

    prefix: str = "campushub"

    def uplink(self, device_id: str) -> str:
        return f"{self.prefix}/v1/dev/{device_id}/up"

    def status(self, device_id: str) -> str:
        return f"{self.prefix}/v1/dev/{device_id}/status"

    def downlink(self, device_id: str) -> str:
        return f"{self.prefix}/v1/dev/{device_id}/down"

    @property
    def uplink_filter(self) -> str:
        return f"{self.prefix}/v1/dev/+/up"

    @property
    def status_filter(self) -> str:
        return f"{self.prefix}/v1/dev/+/status"

    def parse(self, topic: str) -> tuple[str, str] | None:
        """``(device_id, channel)`` for a topic under this prefix, else ``None``."""
        head = f"{self.prefix}/v1/dev/"
        if not topic.startswith(head):
            return None
        rest = topic[len(head):].split("/")
        if len(rest) != 2 or not rest[0]:
            return None
        return rest[0], rest[1]
