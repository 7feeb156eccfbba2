"""Device online/offline rules. Pure: the device actor supplies the time.

Three sources decide the state: the retained status (online on connect,
offline on clean shutdown), the broker's Last Will (offline, connection
lost) and the device actor's own heartbeat-timeout timer. Any authenticated
event is proof of life.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from schemas import DeviceStatus, Heartbeat


@dataclass(frozen=True)
class DeviceHealth:
    device_id: str
    online: bool = False
    last_seen: datetime | None = None
    last_change: datetime | None = None
    reason: str = "never seen"
    firmware: str = ""
    uptime_s: int = 0
    outbox_depth: int = 0
    #: Device time (ms) of the status that set the current state; an older
    #: retained status arriving late must not undo a newer one.
    status_ts: int = 0

    def _to(self, online: bool, reason: str, at: datetime) -> "DeviceHealth":
        if online == self.online and reason == self.reason:
            return self
        return replace(self, online=online, reason=reason, last_change=at)

    def on_status(self, status: DeviceStatus, at: datetime) -> "DeviceHealth":
        if status.ts < self.status_ts:
            return self
        state = self._to(status.state == "online", status.reason or status.state, at)
        return replace(state, status_ts=status.ts)

    def on_event(self, at: datetime) -> "DeviceHealth":
        seen = replace(self, last_seen=at)
        return seen if self.online else seen._to(True, "traffic", at)

    def on_heartbeat(self, heartbeat: Heartbeat, at: datetime) -> "DeviceHealth":
        return replace(
            self.on_event(at),
            firmware=heartbeat.firmware, uptime_s=heartbeat.uptime_s, outbox_depth=heartbeat.outbox_depth,
        )

    def on_heartbeat_timeout(self, at: datetime) -> "DeviceHealth":
        return self._to(False, "heartbeat timeout", at) if self.online else self
