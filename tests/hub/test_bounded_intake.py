"""Bounded intake through the running hub (issue 12 §3, §5): what a hostile or flooding publisher can
make the hub store, and the per-device rate limit with its alarm.

The hub here speaks MQTT 3.1.1, which has no Maximum Packet Size: the broker
delivers whatever it accepts, so the hub's own bounds are what is tested, not
the broker's. The 32 MiB test needs a broker with no size limit
(``open_mqtt_server_url``; the generated config refuses such a packet, which
tests/hub/test_broker_config.py tests); the others run on the run's broker.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from functools import partial
from urllib.parse import urlsplit, urlunsplit

import pytest
import trio
from support.hub_fixtures import broker_client
from support.hub_helpers import eventually

from hub.app.supervision import run_hub
from hub.core.config import Settings
from schemas import SensorReading, SensorReadingEvent, Topics, encode_event, new_event_id

pytestmark = pytest.mark.integration

KEPT_PER_MINUTE = 10
RATE = 10.0
BURST = 10


@pytest.fixture
def hub_settings(hub_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The hub in 3.1.1 on the run's broker, or (tests marked ``needs_unlimited_broker``) on an open broker with
    no packet size limit, with its credentials and TLS dropped."""
    mqtt_url, cafile = hub_settings.mqtt_url, hub_settings.mqtt_cafile
    if request.node.get_closest_marker("needs_unlimited_broker"):
        mqtt_url, cafile = request.getfixturevalue("open_mqtt_server_url"), None
    assert mqtt_url is not None
    return dataclasses.replace(
        hub_settings, mqtt_url=urlunsplit(urlsplit(mqtt_url)._replace(query="protocol=3.1.1")), mqtt_cafile=cafile,
        rejections_kept_per_minute=KEPT_PER_MINUTE, device_rate_per_s=RATE, device_burst=BURST)


def _rejected_total(metrics: str, reason: str) -> float:
    found = re.search(rf'^campushub_events_rejected_total\{{reason="{reason}"\}} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def _reading(device, seq: int) -> bytes:
    event = SensorReadingEvent(v=1, id=new_event_id(), device=device.device_id, ts=int(time.time() * 1000),
                               seq=seq, body=SensorReading(metric="temperature", value=21.5, unit="C"))
    return encode_event(event, device.alg, device.signing_key)


@pytest.mark.needs_unlimited_broker
async def test_a_32_mib_publish_and_a_60000_character_device_id_end_as_bounded_rows(
    hub, hub_settings, hub_campus, test_db, publisher,
):
    topics = Topics(hub_settings.topic_prefix)
    device = hub_campus.devices[0]
    huge = bytes(range(256)) * (128 * 1024)  # 32 MiB
    await publisher.publish(topics.uplink(device.device_id), huge, qos=1, wait_for_ack=True)
    await publisher.publish(topics.uplink("d" * 60_000), b"\x90", qos=1, wait_for_ack=True)

    async def both_stored():
        return await test_db.fetch(
            "SELECT reason, octet_length(payload) AS head, payload_size, payload_sha256, char_length(topic) AS topic,"
            " char_length(detail) AS detail FROM rejected_events ORDER BY reason")

    rows = await eventually(lambda: _at_least(both_stored(), 2), timeout=30)
    by_reason = {r["reason"]: r for r in rows}
    assert set(by_reason) == {"oversize", "bad_topic"}
    oversize = by_reason["oversize"]
    assert (oversize["head"], oversize["payload_size"]) == (256, 33_554_432)
    assert bytes(oversize["payload_sha256"]) == hashlib.sha256(huge).digest()
    bad_topic = by_reason["bad_topic"]
    assert bad_topic["topic"] <= 256 and bad_topic["detail"] <= 1000 and bad_topic["payload_size"] == 1
    # Refused before any lookup: the 60,000-character id never became a device, bucket or tally source.
    assert await test_db.fetchval("SELECT count(*) FROM rejection_tallies WHERE length(source) > 64") == 0
    assert await test_db.fetchval("SELECT max(pg_column_size(t.*)) FROM rejected_events t") < 2048


async def test_a_flood_of_5000_bad_messages_stores_the_cap_counts_all_and_acks_all(
    hub_settings, hub_campus, test_db, publisher, aio_loop,
):
    topics = Topics(hub_settings.topic_prefix)
    uplink = topics.uplink(hub_campus.devices[0].device_id)
    total = 5000
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, hub_settings, port=0))
        # In steps of 500: the shared broker queues at most 1,000 messages for a subscriber (Mosquitto's
        # max_queued_messages) and drops the rest, which is the broker's bound, not the one tested here.
        for start in range(0, total, 500):
            for i in range(start, start + 500):
                await publisher.publish(uplink, b"\xc1junk-%d" % i, qos=1)
            await eventually(partial(_metric_at_least, hub, "malformed", start + 500), timeout=30)
        nursery.cancel_scope.cancel()
    assert _rejected_total(hub.metrics.render(), "malformed") == total
    stored = await test_db.fetchval("SELECT count(*) FROM rejected_events WHERE reason = 'malformed'")
    # At most the cap a minute (a flood that crosses a minute boundary may keep two minutes' worth).
    assert KEPT_PER_MINUTE <= stored <= 2 * KEPT_PER_MINUTE
    tallied = await test_db.fetchrow(
        "SELECT sum(offered) AS offered, sum(suppressed) AS suppressed FROM rejection_tallies"
        " WHERE reason = 'malformed' AND source = $1", hub_campus.devices[0].device_id)
    assert (tallied["offered"], tallied["suppressed"]) == (total, total - stored)
    # Every message was acknowledged: the hub's persistent session holds nothing to redeliver.
    assert hub_settings.hub_client_id is not None
    session = broker_client(hub_settings, client_id=hub_settings.hub_client_id, clean_start=False)
    redelivered = []
    async with trio.open_nursery() as nursery:
        await nursery.start(session.run)
        with trio.move_on_after(1.5):
            async for message in session.messages:
                redelivered.append(message.topic)
        nursery.cancel_scope.cancel()
    assert redelivered == []


async def test_a_device_over_its_rate_is_refused_and_alarmed_while_another_is_accepted(
    hub, hub_settings, hub_campus, test_db, publisher,
):
    topics = Topics(hub_settings.topic_prefix)
    flooding, calm = hub_campus.devices[0], hub_campus.devices[1]
    flood = 100
    started = trio.current_time()
    for seq in range(1, flood + 1):
        await publisher.publish(topics.uplink(flooding.device_id), _reading(flooding, seq), qos=1)
    for seq in range(1, 6):
        await publisher.publish(topics.uplink(calm.device_id), _reading(calm, seq), qos=1, wait_for_ack=True)

    async def settled():
        accepted = await test_db.fetchval(
            "SELECT count(*) FROM sensor_readings WHERE device_id = $1", flooding.device_id)
        limited = _rejected_total(hub.metrics.render(), "rate_limited")
        return (accepted, limited) if accepted + limited == flood else None

    accepted, limited = await eventually(settled, timeout=30)
    # The burst, plus what flowed back while the flood was routed: never more.
    elapsed = trio.current_time() - started
    assert BURST <= accepted <= BURST + RATE * elapsed + 1 and limited >= 1, (accepted, limited, elapsed)
    stored = await test_db.fetchval(
        "SELECT count(*) FROM rejected_events WHERE reason = 'rate_limited' AND device_id = $1", flooding.device_id)
    assert min(limited, KEPT_PER_MINUTE) <= stored <= min(limited, 2 * KEPT_PER_MINUTE)  # the storage cap applies
    # The other device is unaffected.
    await eventually(lambda: test_db.fetchval(
        "SELECT count(*) = 5 FROM sensor_readings WHERE device_id = $1", calm.device_id))
    # One alarm for the episode, however many events were refused.
    alarms = await test_db.fetch("SELECT device_id, severity, state FROM alarms WHERE type = 'rate_limited'")
    assert [tuple(a) for a in alarms] == [(flooding.device_id, "minor", "active_unacked")]
    # Quiet for burst / rate seconds: the bucket is full again, the next event is accepted and the alarm clears.
    await trio.sleep(BURST / RATE + 0.2)
    await publisher.publish(topics.uplink(flooding.device_id), _reading(flooding, flood + 1), qos=1,
                            wait_for_ack=True)
    await eventually(lambda: test_db.fetchval(
        "SELECT state = 'cleared_unacked' FROM alarms WHERE type = 'rate_limited'"))
    assert await test_db.fetchval(
        "SELECT count(*) FROM sensor_readings WHERE device_id = $1", flooding.device_id) == accepted + 1


async def test_the_hub_holds_at_most_its_unacked_window_whatever_the_broker_sends(
    hub_settings, hub_campus, test_db, publisher, aio_loop, monkeypatch,
):
    """Intake is bounded by the hub's own window, not by the broker's honouring of Receive Maximum.

    Mosquitto 2.0 stops honouring the hub's Receive Maximum after the first
    PUBACK (and 3.1.1, spoken here, has none). With a window of 8 the hub never
    holds more than 8 messages read and not yet committed and acknowledged,
    the window does shut (the reader stops reading the socket), and every
    message still ends in exactly one commit and its ack.
    """
    import hub.app.supervision as supervision

    window, total = 8, 800
    monkeypatch.setattr(supervision, "HUB_MAX_UNACKED", window)
    uplink = Topics(hub_settings.topic_prefix).uplink(hub_campus.devices[0].device_id)
    held: list[int] = []
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, hub_settings, port=0))
        stats = hub.client.stats

        async def sample() -> None:
            while True:
                held.append(stats.received - stats.acked)
                await trio.lowlevel.checkpoint()

        nursery.start_soon(sample)
        # In steps of 400: the shared broker queues at most 1,000 messages for a subscriber.
        for start in range(0, total, 400):
            for i in range(start, start + 400):
                await publisher.publish(uplink, b"\xc1junk-%d" % i, qos=1)
            await eventually(partial(_metric_at_least, hub, "malformed", start + 400), timeout=30)
        nursery.cancel_scope.cancel()
    assert _rejected_total(hub.metrics.render(), "malformed") == total
    assert stats.received == stats.acked == total and stats.reconnects == 0
    assert max(held) <= window and stats.window_waits >= 1, (max(held), stats.window_waits)


async def _at_least(rows, n: int):
    found = await rows
    return found if len(found) >= n else None


async def _metric_at_least(hub, reason: str, n: int) -> bool:
    return _rejected_total(hub.metrics.render(), reason) >= n
