"""Each kind of bad input is rejected with its reason, stored, counted, acknowledged; the hub keeps serving."""
from __future__ import annotations

import dataclasses
import time

import httpx
import msgspec
from support.hub_helpers import eventually, session_with_device, signed_scan, student

from schemas import MAX_MESSAGE_BYTES, TOKEN_WINDOW_SECONDS, Topics, issue_checkin_token


async def _reasons(db) -> dict[str, int]:
    rows = await db.fetch("SELECT reason, count(*) AS n FROM rejected_events GROUP BY reason")
    return {r["reason"]: r["n"] for r in rows}


async def test_each_kind_of_bad_input_is_rejected_with_its_reason(hub, hub_settings, hub_campus, test_db, publisher):
    topics = Topics(hub_settings.topic_prefix)
    session, device = session_with_device(hub_campus)
    enrolled = student(hub_campus, session.enrolled[0])
    other_session = hub_campus.sessions[1]
    outsider = next(s for s in hub_campus.students if s.student_id not in session.enrolled)
    up = topics.uplink(device.device_id)
    now = time.time()
    token = issue_checkin_token(enrolled.student_id, enrolled.token_secret, now)
    second = student(hub_campus, session.enrolled[1])
    second_token_now = issue_checkin_token(second.student_id, second.token_secret, now)
    second_token_later = issue_checkin_token(second.student_id, second.token_secret, now + TOKEN_WINDOW_SECONDS)
    forged_device = dataclasses.replace(device, signing_key=b"not-the-device-key-at-all-000000")

    hostile = [
        (up, b"\xc1\xff\x00garbage", "malformed"),
        (up, msgspec.msgpack.encode([b"x", "hmac-sha256"]), "schema"),
        (up, b"\x00" * (MAX_MESSAGE_BYTES + 1), "oversize"),
        (topics.uplink("no-such-device"),
         signed_scan(dataclasses.replace(device, device_id="no-such-device"), "x", seq=1), "unknown_device"),
        (up, signed_scan(forged_device, token, seq=2), "bad_signature"),
        (up, signed_scan(device, issue_checkin_token(enrolled.student_id, enrolled.token_secret, now - 120), seq=3),
         "expired_token"),
        (up, signed_scan(device, issue_checkin_token(outsider.student_id, outsider.token_secret, now), seq=4),
         "not_enrolled"),
        (up, signed_scan(device, "https://example.com/not-a-token", seq=5), "invalid_token"),
    ]
    for topic, payload, _ in hostile:
        await publisher.publish(topic, payload, qos=1, wait_for_ack=True)
    # Check-ins that are fine once, then replayed or duplicated.
    await publisher.publish(up, signed_scan(device, token, seq=10), qos=1, wait_for_ack=True)
    await eventually(lambda: test_db.fetchval(
        "SELECT count(*) FROM attendance WHERE student_id = $1", enrolled.student_id))
    await publisher.publish(up, signed_scan(device, token, seq=11), qos=1, wait_for_ack=True)
    await publisher.publish(up, signed_scan(device, second_token_now, seq=12), qos=1, wait_for_ack=True)
    await eventually(lambda: test_db.fetchval(
        "SELECT count(*) FROM attendance WHERE student_id = $1", second.student_id))
    await publisher.publish(up, signed_scan(device, second_token_later, seq=13, at=now + TOKEN_WINDOW_SECONDS),
                            qos=1, wait_for_ack=True)

    expected = {reason for _, _, reason in hostile} | {"replayed_token", "duplicate_checkin"}

    async def all_reasons_stored():
        found = await _reasons(test_db)
        return found if expected <= set(found) else None

    found = await eventually(all_reasons_stored)
    for reason in expected:
        assert found[reason] == 1, (reason, found)
    # Nothing that should not be stored was stored.
    assert await test_db.fetchval("SELECT count(*) FROM attendance") == 2
    assert await test_db.fetchval("SELECT count(*) FROM events WHERE kind = 'qr_scan'") == 2
    # The raw payload is kept for inspection.
    kept = await test_db.fetchval("SELECT payload FROM rejected_events WHERE reason = 'malformed'")
    assert bytes(kept) == b"\xc1\xff\x00garbage"
    # Counted in the metrics.
    metrics = hub.metrics.render()
    for reason in expected:
        assert f'campushub_events_rejected_total{{reason="{reason}"}} 1.0' in metrics
    # And the hub still serves: a good check-in in another room is accepted.
    _, other_device = session_with_device(hub_campus, 1)
    fresh = student(hub_campus, other_session.enrolled[-1])
    await publisher.publish(
        topics.uplink(other_device.device_id),
        signed_scan(other_device, issue_checkin_token(fresh.student_id, fresh.token_secret, time.time()), seq=1),
        qos=1, wait_for_ack=True)
    await eventually(lambda: test_db.fetchval(
        "SELECT status FROM attendance WHERE student_id = $1 AND session_id = $2",
        fresh.student_id, other_session.session_id))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.web_port}") as http:
        health = (await http.get("/healthz")).json()
    # The public body is the status alone; "ok" means the database and the broker answer (Hub.health).
    assert health == {"status": "ok"}
