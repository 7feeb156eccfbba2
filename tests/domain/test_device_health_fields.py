"""The health state machine's newer fields: connects and disconnects with reasons, heartbeat
telemetry, clock skew, history, and a flapping device (hub/domain/device_health.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hub.domain.device_health import DeviceHealth, history_change, skew_sample_ms
from schemas import DeviceStatus, Heartbeat

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_connect_and_disconnect_are_recorded_with_their_reasons():
    h = DeviceHealth("d").on_status(DeviceStatus("d", "online", 1000, "connected"), at(0))
    assert (h.last_connect_at, h.last_connect_reason) == (at(0), "connected")
    assert h.last_disconnect_at is None
    h = h.on_status(DeviceStatus("d", "offline", 1001, "connection lost"), at(10))  # the Last Will: ts + 1
    assert (h.last_disconnect_at, h.last_disconnect_reason) == (at(10), "connection lost")
    assert h.last_connect_at == at(0)
    h = h.on_event(at(20))  # heard from without a status: back by its traffic
    assert h.online and (h.last_connect_at, h.last_connect_reason) == (at(20), "traffic")
    h = h.on_heartbeat_timeout(at(120))
    assert (h.last_disconnect_at, h.last_disconnect_reason) == (at(120), "heartbeat timeout")


def test_the_retained_status_seen_again_after_a_hub_restart_changes_nothing():
    h = DeviceHealth("d").on_status(DeviceStatus("d", "online", 5000, "connected"), at(0))
    assert h.on_status(DeviceStatus("d", "online", 5000, "connected"), at(300)) is h


def test_a_reconnect_while_believed_online_counts_as_a_connect():
    h = DeviceHealth("d").on_status(DeviceStatus("d", "online", 1000, "connected"), at(0))
    again = h.on_status(DeviceStatus("d", "online", 2000, "connected"), at(60))
    assert again.online and again.last_connect_at == at(60) and again.last_change == at(0)


def test_heartbeat_records_battery_signal_errors_and_clock_skew():
    hb = Heartbeat(uptime_s=10, firmware="2.1", outbox_depth=0, battery_pct=81.5, signal_dbm=-67, error_count=3)
    h = DeviceHealth("d").on_heartbeat(hb, at(0), clock_skew_ms=1500)
    assert (h.battery_pct, h.signal_dbm, h.error_count, h.clock_skew_ms) == (81.5, -67, 3, 1500)
    # No trustworthy sample: the last estimate stands.
    assert h.on_heartbeat(hb, at(30), None).clock_skew_ms == 1500


def test_clock_skew_samples_only_heartbeats_sent_from_an_empty_outbox():
    assert skew_sample_ms(10_000, 9.0, outbox_depth=0) == 1000
    assert skew_sample_ms(10_000, 9.0, outbox_depth=12) is None


def test_history_records_transitions_and_firmware_changes_only():
    off = DeviceHealth("d")
    on = off.on_event(at(0))
    assert history_change(off, on) == "online"
    assert history_change(on, on.on_event(at(5))) is None
    upgraded = on.on_heartbeat(Heartbeat(uptime_s=1, firmware="3.0", outbox_depth=0), at(6))
    assert history_change(on, upgraded) == "firmware"
    assert history_change(upgraded, upgraded.on_heartbeat_timeout(at(100))) == "offline"


def test_flapping_device_counts_every_connect_and_disconnect_and_ignores_stale_wills():
    """A device whose link drops every few seconds: each connection's Last Will carries that
    connection's timestamp + 1, so a Will delivered late (after the next connect) changes nothing."""
    h = DeviceHealth("d")
    connects = disconnects = 0
    for i in range(20):
        conn_ts = 1000 + i * 10
        new = h.on_status(DeviceStatus("d", "online", conn_ts, "connected"), at(i * 10))
        connects += new.last_connect_at != h.last_connect_at
        h = new
        if i % 4 == 3:
            # The Will of the previous connection arrives late: stale, ignored.
            assert h.on_status(DeviceStatus("d", "offline", conn_ts - 9, "connection lost"), at(i * 10 + 1)) is h
            continue
        new = h.on_status(DeviceStatus("d", "offline", conn_ts + 1, "connection lost"), at(i * 10 + 5))
        disconnects += new.last_disconnect_at != h.last_disconnect_at
        h = new
    assert connects == 20 and disconnects == 15
    # The last round's Will was the stale one: the device ends online on its last connection.
    assert h.online and h.last_connect_at == at(190) and h.last_disconnect_at == at(185)
