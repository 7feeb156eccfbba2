"""The pure device-health rules: status, Last Will, heartbeats, the timeout, flapping."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hub.domain.device_health import DeviceHealth
from schemas import DeviceStatus, Heartbeat

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_online_status_then_its_last_will_goes_offline():
    h = DeviceHealth("d").on_status(DeviceStatus("online", 1000, "connected"), at(0))
    assert h.online and h.reason == "connected" and h.last_change == at(0)
    h = h.on_status(DeviceStatus("offline", 1000, "connection lost"), at(5))
    assert not h.online and h.reason == "connection lost" and h.last_change == at(5)


def test_a_stale_last_will_after_a_newer_connection_changes_nothing():
    h = DeviceHealth("d").on_status(DeviceStatus("online", 2000, "connected"), at(0))
    assert h.on_status(DeviceStatus("offline", 1000, "connection lost"), at(1)) == h


def test_heartbeat_records_telemetry_and_is_proof_of_life():
    h = DeviceHealth("d").on_heartbeat(Heartbeat(uptime_s=60, firmware="fw", outbox_depth=2), at(3))
    assert h.online and h.reason == "traffic" and h.last_seen == at(3)
    assert (h.firmware, h.uptime_s, h.outbox_depth) == ("fw", 60, 2)


def test_timeout_only_takes_an_online_device_offline():
    offline = DeviceHealth("d")
    assert offline.on_heartbeat_timeout(at(1)) == offline
    h = DeviceHealth("d").on_event(at(0)).on_heartbeat_timeout(at(90))
    assert not h.online and h.reason == "heartbeat timeout" and h.last_change == at(90)


def test_flapping_device_records_every_transition_and_ends_in_the_last_state():
    h = DeviceHealth("d")
    changes = []
    for i in range(10):
        state = "online" if i % 2 == 0 else "offline"
        new = h.on_status(DeviceStatus(state, 1000 + i, state), at(i))
        if new.online != h.online:
            changes.append(new.last_change)
        h = new
    assert len(changes) == 10 and not h.online and h.last_change == at(9)


def test_events_update_last_seen_without_a_state_change():
    h = DeviceHealth("d").on_event(at(0))
    again = h.on_event(at(7))
    assert again.last_seen == at(7) and again.last_change == at(0)
