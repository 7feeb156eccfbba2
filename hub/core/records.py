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
from typing import Any, Callable, Union

from hub.core.bus import LiveUpdate
from hub.domain.device_health import DeviceHealth  # a device's health is persisted as the domain holds it
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
    checked_in_at: datetime | None
    source: str
    event_id: uuid.UUID | None
    actor: str
    #: Why, for the audit log (a faculty's reason for a manual mark); empty: derived from the source.
    reason: str = ""


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
class DeviceHealthHistoryRow:
    """One row of ``device_health_history``: a transition and the health at that moment."""

    change: str  # online | offline | firmware
    health: DeviceHealth
    at: datetime


@dataclass(frozen=True)
class AlarmRow:
    """The whole state of one alarm after a transition (upserted by id, in commit order)."""

    id: int
    device_id: str
    room_id: str | None
    type: str
    severity: str
    state: str
    raised_at: datetime
    acked_at: datetime | None
    acked_by: str | None
    cleared_at: datetime | None
    cleared_by: str | None
    value: float | None
    message: str
    details: dict[str, Any]
    updated_at: datetime


@dataclass(frozen=True)
class ThresholdStateRow:
    """A threshold rule's evaluation state on a device (only written when it changes)."""

    device_id: str
    rule_id: int
    pending_since: datetime | None
    active: bool
    last_ts: datetime


@dataclass(frozen=True)
class CheckinFlagRow:
    """A proxy-attendance flag raised by a session actor (table ``checkin_flags``)."""

    session_id: str
    student_id: str
    kind: str
    detail: str
    evidence: dict[str, Any]
    source: str
    event_id: uuid.UUID | None
    raised_at: datetime


@dataclass(frozen=True)
class DisplayCheckinRow:
    """One display-mode check-in attempt with its phone fingerprint (table ``display_checkins``)."""

    session_id: str
    student_id: str
    scanned_at: datetime
    code_window: int
    device_hash: bytes
    nonce: bytes
    user_agent: str
    outcome: str
    #: The client's kept /24 or /48 network, and whether it was inside the check-in network
    #: restriction (``None``: unknown / no restriction); hub.domain.checkin_network.
    network: str | None = None
    network_inside: bool | None = None


@dataclass(frozen=True)
class SessionTopicsRow:
    """The syllabus topics a session covered, replacing what it had (table ``session_topics``;
    written with the topic progress they change by ``hub.db.syllabus.write_syllabus_effects``)."""

    session_id: str
    topic_ids: tuple[int, ...]
    actor: str
    at: datetime


@dataclass(frozen=True)
class UnderstandingRow:
    """A student's understanding level 1-5 in a session, of one topic or (``topic_id`` None) of the
    session (table ``topic_understanding``; hub.db.syllabus.write_syllabus_effects)."""

    session_id: str
    student_id: str
    topic_id: int | None
    level: int
    actor: str
    at: datetime


Effect = Union[AcceptedEvent, Rejection, AttendanceMark, TokenUse, SensorRow, DeviceHealth,
               CheckinFlagRow, DisplayCheckinRow,
               DeviceHealthHistoryRow, AlarmRow, ThresholdStateRow, SessionTopicsRow, UnderstandingRow]


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
    #: Called by the writer once the commit is settled: ``True`` committed (or already
    #: committed once), ``False`` stored as a ``persistence_error`` instead. Must not block
    #: or raise (set an event). For a web request waiting on its commit's outcome.
    on_done: Callable[[bool], None] | None = field(default=None, compare=False)
    #: The signed timestamp of the message this commit answers (an authenticated event's ``ts``):
    #: its UTC date is the dedup ledger's partition (hub/db/ingest.py), the same on every redelivery.
    #: ``None``: the day the message was received (or, hub-originated, committed).
    signed_at: datetime | None = None


def digest_key(topic: str, payload: bytes) -> bytes:
    """Dedup key for a message without a trustworthy event id."""
    return hashlib.sha256(topic.encode() + b"\x00" + payload).digest()


def internal_key() -> bytes:
    """Dedup key for a hub-originated change (never redelivered)."""
    return b"internal:" + uuid.uuid4().bytes
