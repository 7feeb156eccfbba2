"""hub.app.simulator drives real edge agents: a tiny campus for 3 seconds."""
from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from edge_helpers import RUNNERS, Collector, new_prefix

from hub.app.simulator import pick_device, plan_session, run_simulation
from hub.core.campus import Campus, DeviceCredentials, LiveSession, StudentCredentials
from schemas import parse_checkin_token, token_is_authentic, verify


def tiny_campus() -> Campus:
    rng = random.Random(5)
    students = tuple(StudentCredentials(f"s-{i:03d}", f"user{i}", rng.randbytes(32)) for i in range(10))
    now = datetime.now(timezone.utc)
    sessions = tuple(
        LiveSession(f"sess-{r}", f"course-{r}", f"room-{r}", now - timedelta(minutes=5),
                    now + timedelta(hours=1), 10, tuple(s.student_id for s in students[r * 5:(r + 1) * 5]))
        for r in range(2))
    devices = (
        DeviceCredentials("room-0-sensor", "room-0", "sensor", "hmac-sha256", rng.randbytes(32)),
        DeviceCredentials("room-0-edge", "room-0", "edge_agent", "hmac-sha256", rng.randbytes(32)),
        DeviceCredentials("room-1-edge", "room-1", "edge_agent", "ed25519", rng.randbytes(32)),
    )
    return Campus(devices=devices, students=students, sessions=sessions, logins=())


def public_key(device: DeviceCredentials) -> bytes:
    if device.alg == "hmac-sha256":
        return device.signing_key
    return Ed25519PrivateKey.from_private_bytes(device.signing_key).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def test_plan_has_the_right_shape() -> None:
    campus = tiny_campus()
    assert pick_device(campus, "room-0").device_id == "room-0-edge"  # edge agent before a sensor
    big = LiveSession("s", "c", "room-0", datetime.now(timezone.utc), datetime.now(timezone.utc), 10,
                      tuple(s.student_id for s in campus.students))
    scans, planned = plan_session(big, campus, random.Random(1), window_s=100.0, deadline_s=40.0)
    assert planned["absent"] == 1 and planned["late"] == 2 and planned["on_time"] == 7
    checkins = [s for s in scans if s.label == "checkin"]
    assert len(checkins) == 9
    assert sorted(s.at_s for s in checkins)[6] < 40.0 < sorted(s.at_s for s in checkins)[7]  # deadline split
    assert all(0 <= s.at_s <= 100.0 for s in scans)
    assert planned["not_enrolled"] == 1 and any(s.student_id.startswith("visitor") for s in scans)


@pytest.mark.parametrize("loop", sorted(RUNNERS))  # trio_asyncio: how the hub CLI runs it
def test_simulation_publishes_what_it_reports(tmp_path: Path, loop: str, open_mqtt_server_url: str) -> None:
    # The simulator logs in as each seeded device's own account (never the URL's), which only a broker exported
    # from a seeded registry has: on an open broker here (tests/hub/test_broker_config.py covers those accounts).
    campus = tiny_campus()
    prefix = new_prefix()
    keys = {d.device_id: public_key(d) for d in campus.devices}
    secrets = {s.student_id: s.token_secret for s in campus.students}
    reports: list[dict[str, int]] = []

    async def main() -> tuple[dict[str, int], Collector]:
        async with Collector(prefix, open_mqtt_server_url) as col:
            counts = await run_simulation(campus, mqtt_url=open_mqtt_server_url, topic_prefix=prefix, duration_s=3.0,
                                          outbox_dir=tmp_path / "outbox", seed=7, progress=reports.append)
            await col.wait_for(lambda: len(col.of_kind("qr_scan")) >= counts["qr_scan"]
                               and len(col.statuses("room-1-edge")) >= 2)
        return counts, col

    counts, col = RUNNERS[loop](main())

    assert counts["rooms"] == 2 and counts["outbox_pending"] == 0
    assert counts["invalid_token"] == 4 and counts["replayed_token"] == 2 and counts["not_enrolled"] == 2
    assert counts["checkin"] == counts["on_time"] + counts["late"] == 10 - counts["absent"]
    assert counts["qr_scan"] == (counts["checkin"] + counts["replayed_token"] + counts["invalid_token"]
                                 + counts["not_enrolled"])
    assert counts["heartbeat"] >= 4 and counts["sensor_reading"] >= 2 * 3 * 4
    assert 2 <= len(reports) <= 6 and reports[-1] == counts

    received = Counter(type(e).__struct_config__.tag for _, e in col.events())
    for kind in ("qr_scan", "sensor_reading", "heartbeat"):
        assert received[kind] == counts[kind], kind
    for frame, event in col.events():
        verify(frame, keys[event.device])
    assert {e.device for _, e in col.events()} == {"room-0-edge", "room-1-edge"}
    for device in ("room-0-edge", "room-1-edge"):
        assert [(s.state, s.reason) for s in col.statuses(device)] == [("online", "connected"), ("offline", "shutdown")]

    # Classify what went over the wire the way the hub will.
    # (An outsider's token may equal the text they scan in their own room: count per device.)
    texts = Counter((e.device, e.body.text) for e in col.of_kind("qr_scan"))
    replays = [t for t, n in texts.items() if n == 2]
    assert len(replays) == 2
    authentic = not_authentic = outsiders = garbage = 0
    roster = {"room-0-edge": {f"s-{i:03d}" for i in range(5)}, "room-1-edge": {f"s-{i:03d}" for i in range(5, 10)}}
    for event in col.of_kind("qr_scan"):
        token = parse_checkin_token(event.body.text)
        if token is None:
            garbage += 1
        elif token.student_id not in roster[event.device]:
            outsiders += 1
        elif token_is_authentic(token, secrets[token.student_id]):
            authentic += 1
        else:
            not_authentic += 1
    assert (garbage + not_authentic, outsiders) == (4, 2)
    assert authentic == counts["checkin"] + counts["replayed_token"]
