"""Every hostile MQTT message of the corpus, through a running hub: rejected with exactly its reason.

One message at a time: publish, wait until the writer has acknowledged it
(``campushub_ingest_to_commit_seconds_count``, observed once per MQTT
message, duplicates included), then compare what changed in PostgreSQL with
the case's expectation: exactly one new ``rejected_events`` row with the
expected reason, or exactly the rows a legitimate (replay-setup) message
adds. Afterwards the totals, /metrics and the hub's health are checked.
"""
from __future__ import annotations

import hashlib
import time
from collections import Counter

import httpx
from hostile_corpus import MQTT_CASES, MqttWorld
from support.hub_helpers import eventually, student

from schemas import Topics, issue_checkin_token

_PROCESSED = "campushub_ingest_to_commit_seconds_count"


def _processed(hub) -> int:
    return int(hub.metrics.registry.get_sample_value(_PROCESSED) or 0)


async def _processed_at_least(hub, n: int) -> bool:
    return _processed(hub) >= n


async def _counts(db) -> dict[str, int]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM attendance) AS attendance,"
        " (SELECT count(*) FROM sensor_readings) AS sensor, (SELECT count(*) FROM token_uses) AS token_uses,"
        " (SELECT count(*) FROM devices) AS devices, (SELECT count(*) FROM users) AS users,"
        " (SELECT coalesce(max(id), 0) FROM rejected_events) AS last_rejection")
    return dict(row)


async def test_every_hostile_mqtt_message_is_rejected_with_exactly_its_reason(
    hub, hub_settings, hostile_campus, test_db, publisher,
):
    campus = hostile_campus.campus
    session = campus.sessions[0]
    device = next(d for d in campus.devices if d.room_id == session.room_id)
    outsider = next(s for s in campus.students if s.student_id not in session.enrolled)
    world = MqttWorld(
        topics=Topics(hub_settings.topic_prefix),
        devices={"hmac": device, "ed25519": hostile_campus.ed25519, "revoked": hostile_campus.revoked},
        session=session,
        students={"replay": student(campus, session.enrolled[0]), "outsider": outsider},
        commands={"ed25519": hostile_campus.ed25519_command},
    )
    before = await _counts(test_db)
    sent = _processed(hub)
    expected_reasons: Counter[str] = Counter()
    expected = {"events": 0, "attendance": 0, "sensor": 0}
    mismatches: list[str] = []

    for case in MQTT_CASES:
        topic = world.topic(case.channel, case.device)
        payloads = case.build(world)
        assert len(payloads) == len(case.expect), case.name
        for n, (payload, outcome) in enumerate(zip(payloads, case.expect)):
            start = await _counts(test_db)
            await publisher.publish(topic, payload, qos=1, wait_for_ack=True)
            sent += 1
            try:
                # A short poll: the check reads the in-process registry, and each message commits in a few ms.
                await eventually(lambda sent=sent: _processed_at_least(hub, sent), timeout=10, interval=0.005)
            except AssertionError:
                raise AssertionError(f"{case.name}[{n}]: the hub never committed this message") from None
            new = [r["reason"] for r in await test_db.fetch(
                "SELECT reason FROM rejected_events WHERE id > $1 ORDER BY id", start["last_rejection"])]
            after = await _counts(test_db)
            got = {k: after[k] - start[k] for k in expected}
            want = {"events": outcome.events, "attendance": outcome.attendance, "sensor": outcome.sensor}
            wanted_reasons = [outcome.reason] if outcome.reason else []
            if new != wanted_reasons or got != want:
                mismatches.append(f"{case.name}[{n}]: expected {outcome} {want}, got rejections {new} {got}")
            if outcome.reason:
                expected_reasons[outcome.reason] += 1
            for k in expected:
                expected[k] += want[k]

    assert not mismatches, "\n".join(mismatches)

    # Totals: exactly the expected rejections, nothing stored from any hostile message.
    stored = {r["reason"]: r["n"] for r in await test_db.fetch(
        "SELECT reason, count(*) AS n FROM rejected_events GROUP BY reason")}
    assert stored == dict(expected_reasons)
    after = await _counts(test_db)
    for k in ("events", "attendance", "sensor"):
        assert after[k] - before[k] == expected[k], k
    assert after["token_uses"] - before["token_uses"] == expected["attendance"]
    assert (after["devices"], after["users"]) == (before["devices"], before["users"])  # injections changed nothing
    # The other device's command was not answered by anybody else's ack.
    assert await test_db.fetchval("SELECT status FROM device_commands WHERE id = $1",
                                  hostile_campus.ed25519_command) == "sent"
    assert await test_db.fetchval(
        "SELECT count(*) FROM device_health WHERE device_id = ANY($1::text[])",
        [hostile_campus.revoked.device_id, "hostile-ghost-device"]) == 0
    # The raw payload of each rejection is kept (e.g. the truncated garbage, byte for byte).
    kept = await test_db.fetchval("SELECT payload FROM rejected_events WHERE topic = $1 AND reason = 'malformed'"
                                  " AND payload = $2", world.topic("up", "@hmac"), b"\xc1garbage-twice")
    assert bytes(kept) == b"\xc1garbage-twice"
    # Bounded intake (issue 12 §3): no row holds more than 256 bytes of payload or 256 characters of
    # topic, whatever was sent; the 16 KiB message is known by its size and SHA-256.
    bounds = await test_db.fetchrow(
        "SELECT max(octet_length(payload)) AS head, max(char_length(topic)) AS topic FROM rejected_events")
    assert bounds["head"] <= 256 and bounds["topic"] <= 256, dict(bounds)
    big = await test_db.fetchrow("SELECT payload_size, payload_sha256 FROM rejected_events"
                                 " WHERE reason = 'oversize' AND payload_size = 16384")
    assert bytes(big["payload_sha256"]) == hashlib.sha256(b"\xab" * 16384).digest()

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}", timeout=10) as http:
        metrics = (await http.get("/metrics")).text
        for reason, count in expected_reasons.items():
            assert f'campushub_events_rejected_total{{reason="{reason}"}} {float(count)}' in metrics, reason

        # The hub is unaffected: healthy, no restarts, and a valid check-in still lands.
        fresh = student(campus, session.enrolled[-1])
        await publisher.publish(
            world.topic("up", "@hmac"),
            world.signed(world.envelope(body={"text": issue_checkin_token(
                fresh.student_id, fresh.token_secret, time.time())})),
            qos=1, wait_for_ack=True)
        status = await eventually(lambda: test_db.fetchval(
            "SELECT status FROM attendance WHERE student_id = $1 AND session_id = $2",
            fresh.student_id, session.session_id))
        assert status in ("present", "late")
        health = (await http.get("/healthz")).json()
        # The public body is the status alone; "ok" means the database and the broker answer (Hub.health).
        assert health == {"status": "ok"}
        metrics = (await http.get("/metrics")).text
    assert "campushub_actor_restarts_total 0.0" in metrics
