"""Builders for the :class:`~hub.core.records.Commit` of an inbound message: one way to make each."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

import msgspec

from hub.core.bus import LiveUpdate
from hub.core.records import AcceptedEvent, Commit, Effect, Rejection, digest_key
from hub.mqtt import InboundMessage
from schemas import Event


def utc_from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def signed_at_or_none(ms: int) -> datetime | None:
    """``utc_from_ms(ms)``, or None where no datetime can hold it (a hostile or broken clock's
    timestamp, e.g. 2**63 ms): the ledger then files the message by the day it was received."""
    try:
        return utc_from_ms(ms)
    except (ValueError, OverflowError, OSError):
        return None


def utc_from_s(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def event_row(event: Event, message: InboundMessage, session_id: str | None = None) -> AcceptedEvent:
    return AcceptedEvent(
        event_id=uuid.UUID(bytes=event.id),
        device_id=event.device,
        seq=event.seq,
        kind=event.kind,
        device_ts=utc_from_ms(event.ts),
        received_at=utc_from_s(message.received_at),
        session_id=session_id,
        body=msgspec.to_builtins(event.body),
    )


def accept(
    event: Event, message: InboundMessage, extra: tuple[Effect, ...] = (), *,
    session_id: str | None = None, live: tuple[LiveUpdate, ...] = (),
) -> Commit:
    """The commit of an accepted, authenticated event: its ledger row plus ``extra`` effects."""
    return Commit(
        dedup_key=event.id,
        effects=(event_row(event, message, session_id), *extra),
        message=message,
        live=live,
        outcome=("ingested", event.kind),
        signed_at=utc_from_ms(event.ts),
    )


def reject(
    message: InboundMessage, reason: str, detail: str = "", *,
    event: Event | None = None, session_id: str | None = None,
    extra: tuple[Effect, ...] = (), live: tuple[LiveUpdate, ...] = (),
) -> Commit:
    """The commit of a rejected message, kept with its reason (plus ``extra`` effects, e.g. the alarm
    a ``rate_limited`` rejection raises, and their ``live`` updates).

    With ``event`` (authenticated) the dedup key is its event id, so a
    redelivery is recognised; otherwise it is a digest of topic and payload.
    The :class:`Rejection` carries the whole payload (the message is in memory
    until its ack anyway); the writer stores only its size, hash and first
    bytes, and only the first few a minute of each source and reason as rows
    (hub/db/ingest.py ``write_rejections``).
    """
    rejection = Rejection(
        reason=reason,
        detail=detail,
        topic=message.topic,
        payload=message.payload,
        received_at=utc_from_s(message.received_at),
        event_id=uuid.UUID(bytes=event.id) if event is not None else None,
        device_id=event.device if event is not None else None,
        kind=event.kind if event is not None else None,
        session_id=session_id,
    )
    key = event.id if event is not None else digest_key(message.topic, message.payload)
    return Commit(key, (rejection, *extra), message, live, ("rejected", reason),
                  signed_at=signed_at_or_none(event.ts) if event is not None else None)
