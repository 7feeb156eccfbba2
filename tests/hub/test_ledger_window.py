"""The dedup ledger's window, end to end through a running hub (docs/data-lifecycle.md).

An event signed longer ago than ``EVENT_MAX_AGE_S`` is refused ``expired``
(so a redelivery the pruned ledger no longer remembers is never applied
twice); one inside the window is applied once, however often it is
redelivered, and a retention pass in between does not change that.
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import cast

from support.hub_helpers import eventually, session_with_device

from hub.core.campus import DeviceCredentials
from hub.core.config import EVENT_MAX_AGE_S
from hub.db.retention import policy_from_settings, run_pass
from schemas import SensorReading, SensorReadingEvent, SignatureAlgorithm, Topics, encode_event, new_event_id


def _reading(device: DeviceCredentials, seq: int, at: float) -> tuple[bytes, bytes]:
    """A signed reading stamped ``at`` (the device's clock, s), and its event id."""
    event_id = new_event_id()
    event = SensorReadingEvent(v=1, id=event_id, device=device.device_id, ts=int(at * 1000), seq=seq,
                               body=SensorReading(metric="temperature", value=21.5, unit="C"))
    return encode_event(event, cast(SignatureAlgorithm, device.alg), device.signing_key), event_id


async def test_an_event_older_than_the_window_is_refused_and_one_inside_is_applied_once(
        hub, hub_settings, hub_campus, test_db, publisher) -> None:
    _, device = session_with_device(hub_campus)
    up = Topics(hub_settings.topic_prefix).uplink(device.device_id)
    now = time.time()
    too_old, too_old_id = _reading(device, 1, now - EVENT_MAX_AGE_S - 3600)
    inside, inside_id = _reading(device, 2, now - EVENT_MAX_AGE_S + 3600)

    await publisher.publish(up, too_old, qos=1, wait_for_ack=True)
    await publisher.publish(up, inside, qos=1, wait_for_ack=True)
    await eventually(lambda: test_db.fetchval(
        "SELECT count(*) FROM rejected_events WHERE reason = 'expired' AND event_id = $1", uuid.UUID(bytes=too_old_id)))
    await eventually(lambda: test_db.fetchval(
        "SELECT count(*) FROM processed_messages WHERE dedup_key = $1", inside_id))
    assert await test_db.fetchval("SELECT count(*) FROM events WHERE kind = 'sensor_reading'") == 1

    # Its ledger row is in the partition of its signed day, which a retention pass keeps.
    signed_day = datetime.fromtimestamp(now - EVENT_MAX_AGE_S + 3600, timezone.utc).date()
    assert await test_db.fetchval(
        "SELECT ledger_day FROM processed_messages WHERE dedup_key = $1", inside_id) == signed_day
    report = await run_pass(test_db, datetime.now(timezone.utc), policy_from_settings(hub_settings))
    assert not report.skipped and signed_day not in report.tables["processed_messages"].partitions_dropped

    # Redelivered (the same bytes: the broker's or the outbox's second copy): applied once only.
    await publisher.publish(up, inside, qos=1, wait_for_ack=True)
    marker, marker_id = _reading(device, 3, time.time())
    await publisher.publish(up, marker, qos=1, wait_for_ack=True)
    await eventually(lambda: test_db.fetchval(
        "SELECT count(*) FROM processed_messages WHERE dedup_key = $1", marker_id))
    assert await test_db.fetchval("SELECT count(*) FROM events WHERE kind = 'sensor_reading'") == 2
    assert await test_db.fetchval("SELECT count(*) FROM sensor_readings") == 2
    assert await test_db.fetchval("SELECT count(*) FROM processed_messages WHERE dedup_key = $1", inside_id) == 1
    assert await test_db.fetchval("SELECT count(*) FROM events WHERE event_id = $1", uuid.UUID(bytes=too_old_id)) == 0
