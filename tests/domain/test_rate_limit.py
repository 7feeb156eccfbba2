"""The per-device token bucket and the rate-limit alarm's lifecycle (pure: time is passed in)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hub.domain.alarms import RATE_LIMIT_ALARM, rate_limit_change
from hub.domain.rate_limit import DeviceLimiter, FloodDetector, RateLimit, TokenBucket, Verdict

AT = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def test_a_full_bucket_allows_its_burst_then_the_rate():
    bucket = TokenBucket(RateLimit(rate=10, burst=5), now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert bucket.take(0.05) is False  # half a token has flowed back
    assert bucket.take(0.1) is True  # one token after 1/rate seconds
    assert bucket.take(0.1) is False


def test_a_steady_sender_at_the_rate_is_never_refused_and_a_faster_one_is():
    steady = TokenBucket(RateLimit(rate=10, burst=2), now=0.0)
    assert all(steady.take(i * 0.1) for i in range(1000))
    fast = TokenBucket(RateLimit(rate=10, burst=2), now=0.0)
    allowed = sum(fast.take(i * 0.05) for i in range(1000))  # 20/s for 50 s
    assert allowed == pytest.approx(2 + 10 * 50, abs=2)


def test_the_bucket_refills_only_up_to_its_burst_and_tells_when_full():
    bucket = TokenBucket(RateLimit(rate=1, burst=3), now=0.0)
    for _ in range(3):
        assert bucket.take(0.0)
    assert not bucket.full(2.0)
    assert bucket.full(3.0)
    assert [bucket.take(1000.0) for _ in range(4)] == [True, True, True, False]  # no hoarding


def test_a_clock_going_backwards_adds_no_tokens():
    bucket = TokenBucket(RateLimit(rate=100, burst=1), now=10.0)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)


@pytest.mark.parametrize("rate, burst", [(0, 10), (-1, 10), (1, 0.5)])
def test_a_limit_that_would_refuse_everything_is_refused(rate, burst):
    with pytest.raises(ValueError):
        RateLimit(rate=rate, burst=burst)


def test_the_rate_limit_alarm_is_raised_once_per_episode_and_cleared_when_back_within_rate():
    raised = rate_limit_change(None, tripped=True, at=AT, device_id="d1", room_id="r1", detail="over 50/s")
    assert raised is not None and raised.kind == "raised"
    alarm = raised.alarm
    assert (alarm.type, alarm.severity, alarm.state) == (RATE_LIMIT_ALARM, "minor", "active_unacked")
    assert rate_limit_change(alarm, tripped=True, at=AT, device_id="d1", room_id="r1", detail="x") is None
    cleared = rate_limit_change(alarm, tripped=False, at=AT + timedelta(minutes=1), device_id="d1",
                                room_id="r1", detail="x")
    assert cleared is not None and cleared.kind == "cleared"
    assert cleared.alarm.state == "cleared_unacked" and cleared.alarm.cleared_by == "system"
    assert rate_limit_change(None, tripped=False, at=AT, device_id="d1", room_id="r1", detail="x") is None


# --- the flood detector: density of the device's own timestamps --------------------------------

SECOND = 1_700_000_000_000  # a device-clock second's start, ms


@pytest.mark.parametrize("name, stamps, admitted", [
    ("a busy door, 2 scans/s for a minute", [SECOND + 500 * i for i in range(120)], 120),
    ("exactly the threshold within one second", [SECOND + i for i in range(5)], 5),
    ("one beyond it", [SECOND + i for i in range(6)], 5),
    ("a flood stamped in one millisecond", [SECOND] * 100, 5),
    ("the threshold in each of ten seconds", [SECOND + 1000 * s + i for s in range(10) for i in range(5)], 50),
    ("an outage's outbox drained in capture order (1 every 2 s)", [SECOND + 2000 * i for i in range(10_000)],
     10_000),
    ("two seconds interleaved still count each", [SECOND + 1000 * (i % 2) for i in range(20)], 10),
    ("a late event of an overwritten second starts it afresh",
     [SECOND] * 5 + [SECOND + 1000 * s for s in range(1, 5)] + [SECOND], 10),
])
def test_the_flood_detector_refuses_events_beyond_its_density_of_device_clock_seconds(name, stamps, admitted):
    detector = FloodDetector(events_per_s=5)
    verdicts = [detector.admit(ts) for ts in stamps]
    assert sum(verdicts) == admitted, name
    # Refusals come only after the threshold was reached in a second (never earlier events).
    assert verdicts[:min(5, len(verdicts))] == [True] * min(5, len(verdicts))


def test_a_window_boundary_and_negative_clocks_are_seconds_like_any_other():
    detector = FloodDetector(events_per_s=2)
    assert [detector.admit(ts) for ts in (999, 999, 999, 1000, 1000, 1000)] == [True, True, False] * 2
    assert [detector.admit(ts) for ts in (-1, -1000, -1)] == [True, True, False]  # -1 and -1000: second -1


def test_a_flood_threshold_below_one_is_refused():
    with pytest.raises(ValueError):
        FloodDetector(events_per_s=0)


def test_the_limiter_refuses_a_dense_flood_at_once_but_admits_a_full_outbox_of_spread_stamps():
    burst = 1000
    outbox = DeviceLimiter(RateLimit(rate=50, burst=burst), flood_events_per_s=20, now=0.0)
    # Drained at the hub's speed (all at hub time 0), stamped at capture (one every 5 s, hours ago).
    verdicts = [outbox.admit(0.0, SECOND + 5000 * i) for i in range(burst)]
    assert all(v.admitted for v in verdicts)
    assert outbox.admit(0.0, SECOND + 5000 * burst) is Verdict.REFUSED_RATE  # the bucket still caps it

    flood = DeviceLimiter(RateLimit(rate=50, burst=burst), flood_events_per_s=20, now=0.0)
    verdicts = [flood.admit(0.0, SECOND + i // 10) for i in range(100)]  # 100 events within 10 ms
    assert [v.admitted for v in verdicts] == [True] * 20 + [False] * 80
    assert set(verdicts[20:]) == {Verdict.REFUSED_FLOOD}


def test_the_limiter_settles_only_with_a_full_bucket_and_an_event_within_the_density():
    limiter = DeviceLimiter(RateLimit(rate=10, burst=2), flood_events_per_s=3, now=0.0)
    assert limiter.admit(0.0, SECOND) is Verdict.ADMITTED_SETTLED  # a full bucket before it
    assert limiter.admit(0.0, SECOND) is Verdict.ADMITTED
    assert limiter.admit(0.0, SECOND) is Verdict.REFUSED_RATE
    assert limiter.admit(10.0, SECOND) is Verdict.REFUSED_FLOOD  # bucket full again, but still beyond the density
    # A refused flood event takes no token: the bucket is full for the next event of a new second.
    assert limiter.admit(10.0, SECOND + 1000) is Verdict.ADMITTED_SETTLED
