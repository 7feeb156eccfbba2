"""Frozen records that actors hand to the persistence writer.

One :class:`Commit` holds every effect of one inbound MQTT message (or of one
internal decision, such as a heartbeat timeout). The writer commits it whole,
then acknowledges the message and publishes its live updates.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Union

from hub.mqtt import InboundMessage


@dataclass(frozen=True)
class AcceptedEvent:
    event_id: uuid.UUID
    device_id: str
    seq: int
    kind: str
    device_ts: datetime
    received_at: datetime
    session_id: str | None
    body: dict[str, Any]


@dataclass(frozen=True)
class Rejection:
    reason: str
    detail: str
    topic: str
    payload: bytes
    received_at: datetime
    event_id: uuid.UUID | None = None
    device_id: str | None = None
    kind: str | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class AttendanceMark:
    session_id: str
    student_id: str
    status: str
    checked_in_at: datetime
    source: str
    event_id: uuid.UUID | None
    actor: str


@dataclass(frozen=True)
class TokenUse:
    session_id: str
    student_id: str
    token_window: int
    event_id: uuid.UUID


@dataclass(frozen=True)
class SensorRow:
    event_id: uuid.UUID
    device_id: str
    metric: str
    value: float
    unit: str
    device_ts: datetime


@dataclass(frozen=True)
class DeviceHealthRow:
    device_id: str
    online: bool
    last_seen: datetime | None
    last_change: datetime
    reason: str
    firmware: str
    uptime_s: int
    outbox_depth: int


Effect = Union[AcceptedEvent, Rejection, AttendanceMark, TokenUse, SensorRow, DeviceHealthRow]
LiveUpdate = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Commit:
    """All effects of one message. ``dedup_key`` makes a redelivery change nothing."""

    dedup_key: bytes
    effects: tuple[Effect, ...]
    message: InboundMessage | None = None
    live: tuple[LiveUpdate, ...] = ()
    #: For metrics: ("ingested", kind) or ("rejected", reason) or None.
    outcome: tuple[str, str] | None = None
    created_at: float = field(default=0.0)


def digest_key(topic: str, payload: bytes) -> bytes:
    """Dedup key for a message without a trustworthy event id."""
    return hashlib.sha256(topic.encode() + b"\x00" + payload).digest()


def internal_key() -> bytes:
    """Dedup key for a hub-originated change (never redelivered)."""
    return b"internal:" + uuid.uuid4().bytes
