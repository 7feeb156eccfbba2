"""The pure device-health rules: status, Last Will, heartbeats, the timeout, flapping, and status order."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.domain.device_health import STATUS_MAX_AHEAD_MS, DeviceHealth, judge_status
from schemas import DeviceStatus, Heartbeat

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
#: The hub's clock (ms) in the order tests: statuses are stamped around it.
NOW_MS = 1_795_000_000_000


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def status(state: str, ts: int, reason: str = "") -> DeviceStatus:
    return DeviceStatus(device="d", state=state, ts=ts, reason=reason)  # type: ignore[arg-type]


def test_online_status_then_its_last_will_goes_offline():
    h = DeviceHealth("d").on_status(status("online", 1000, "connected"), at(0))
    assert h.online and h.reason == "connected" and h.last_change == at(0)
    h = h.on_status(status("offline", 1001, "connection lost"), at(5))  # the Will: the connection's ts + 1
    assert not h.online and h.reason == "connection lost" and h.last_change == at(5)


def test_a_stale_last_will_after_a_newer_connection_changes_nothing():
    h = DeviceHealth("d").on_status(status("online", 2000, "connected"), at(0))
    assert h.on_status(status("offline", 1001, "connection lost"), at(1)) is h


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
        new = h.on_status(status(state, 1000 + i, state), at(i))
        if new.online != h.online:
            changes.append(new.last_change)
        h = new
    assert len(changes) == 10 and not h.online and h.last_change == at(9)


def test_events_update_last_seen_without_a_state_change():
    h = DeviceHealth("d").on_event(at(0))
    again = h.on_event(at(7))
    assert again.last_seen == at(7) and again.last_change == at(0)


# --- the order of statuses (issue 12 §2: statuses and Wills you can trust) -------------------

@pytest.mark.parametrize(("held", "ts", "verdict"), [
    (0, NOW_MS, "newer"),                                   # the first status of a device
    (NOW_MS, NOW_MS + 1, "newer"),                          # the Will of the connection held online
    (NOW_MS, NOW_MS, "same"),                               # the retained status re-sent on a hub restart
    (NOW_MS + 1, NOW_MS, "older"),                          # the online status replayed after its Will
    (NOW_MS, NOW_MS - 5_000, "older"),                      # the Will of an earlier connection
    (NOW_MS, NOW_MS + STATUS_MAX_AHEAD_MS, "newer"),        # ahead, but within the margin
    (NOW_MS, NOW_MS + STATUS_MAX_AHEAD_MS + 1, "ahead"),    # past the margin: refused
    (NOW_MS, NOW_MS + 110_000, "ahead"),                    # the pin: 110 s ahead
    (NOW_MS + 200_000, NOW_MS + 300_000, "ahead"),          # ahead is judged before newer
])
def test_status_order_table(held, ts, verdict):
    assert judge_status(held, ts, NOW_MS) == verdict


def test_a_replayed_online_status_cannot_show_a_dead_device_online():
    """Online, then silent (heartbeat timeout): the same online status seen again changes nothing."""
    online = status("online", NOW_MS, "connected")
    h = DeviceHealth("d").on_status(online, at(0)).on_heartbeat_timeout(at(90))
    assert h.judge_status(online, NOW_MS + 90_000) == "same"
    assert h.on_status(online, at(100)) is h and not h.online
    # After the connection's Will, its online status is older still.
    ended = DeviceHealth("d").on_status(online, at(0)).on_status(status("offline", NOW_MS + 1), at(5))
    assert ended.judge_status(online, NOW_MS + 10_000) == "older" and not ended.on_status(online, at(10)).online


def test_the_devices_own_later_messages_win_over_a_status_at_the_margin():
    """A fast clock (at the margin) holds an offline state against the device's next status
    for at most the margin, and its next signed event brings it back at once."""
    pinned_ts = NOW_MS + STATUS_MAX_AHEAD_MS
    h = DeviceHealth("d").on_status(status("offline", pinned_ts, "shutdown"), at(0))
    reconnect = status("online", NOW_MS + 1_000, "connected")  # the clock was corrected meanwhile
    assert h.judge_status(reconnect, NOW_MS + 1_000) == "older"
    assert h.on_event(at(1)).online  # any signed event: online (traffic)
    later = status("online", pinned_ts + 1, "connected")  # once the margin has passed, its statuses apply
    assert h.judge_status(later, pinned_ts + 1) == "newer" and h.on_status(later, at(11)).online


_STATES = st.sampled_from(["online", "offline"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_STATES, st.integers(0, 50)), max_size=30), st.integers(0, 50))
def test_property_no_status_at_or_below_the_held_ts_changes_anything(steps, probe_ts):
    """Whatever came before, a status whose ts is not above ``status_ts`` (a replay) leaves the health as is,
    and ``status_ts`` never goes down."""
    h = DeviceHealth("d")
    for i, (state, ts) in enumerate(steps):
        before = h.status_ts
        h = h.on_status(status(state, ts), at(i))
        assert h.status_ts >= before
    replay = status("online", min(probe_ts, h.status_ts))
    assert h.on_status(replay, at(99)) is h
    assert h.judge_status(replay, NOW_MS) in ("same", "older")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_STATES, st.integers(0, 50)), max_size=30))
def test_property_the_state_is_that_of_the_highest_ts_status_applied(steps):
    """Order-insensitive where it matters: the final state is set by the status of the largest ts
    (its first arrival), whatever order the others came in."""
    h = DeviceHealth("d")
    for i, (state, ts) in enumerate(steps):
        h = h.on_status(status(state, ts), at(i))
    newest = [(ts, state) for state, ts in steps if ts > 0]
    if newest:
        top = max(ts for ts, _ in newest)
        first_state = next(state for ts, state in newest if ts == top)
        assert h.status_ts == top and h.online == (first_state == "online")
    else:
        assert h == DeviceHealth("d")
