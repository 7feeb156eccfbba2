"""The per-device token bucket and the rate-limit alarm's lifecycle (pure: time is passed in)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hub.domain.alarms import RATE_LIMIT_ALARM, rate_limit_change
from hub.domain.rate_limit import RateLimit, TokenBucket

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
