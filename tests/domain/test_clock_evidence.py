"""ClockEvidence: a device's clock offset from its recent heartbeats, kept by its device actor."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hub.domain.device_health import CLOCK_SAMPLES_KEPT, SKEW_EVIDENCE_WINDOW, ClockEvidence

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)


def test_the_offset_is_the_smallest_sample_of_the_window() -> None:
    evidence = ClockEvidence()
    assert evidence.offset_at(T0) is None
    evidence.add(T0, timedelta(seconds=95))  # waited somewhere on its way: larger
    evidence.add(T0 + timedelta(seconds=30), timedelta(seconds=90))
    evidence.add(T0 + timedelta(seconds=60), timedelta(seconds=91))
    assert evidence.offset_at(T0 + timedelta(seconds=61)) == timedelta(seconds=90)


def test_samples_older_than_the_window_no_longer_count() -> None:
    evidence = ClockEvidence()
    evidence.add(T0, timedelta(seconds=90))
    evidence.add(T0 + timedelta(minutes=10), timedelta(seconds=120))
    assert evidence.offset_at(T0 + timedelta(minutes=10)) == timedelta(seconds=90)
    assert evidence.offset_at(T0 + SKEW_EVIDENCE_WINDOW + timedelta(seconds=1)) == timedelta(seconds=120)
    assert evidence.offset_at(T0 + timedelta(minutes=10) + SKEW_EVIDENCE_WINDOW + timedelta(seconds=1)) is None


def test_stored_samples_merge_once_and_in_order() -> None:
    evidence = ClockEvidence()
    evidence.add(T0 + timedelta(minutes=5), timedelta(seconds=40))
    assert not evidence.loaded
    # What PostgreSQL holds from before the actor started (and one it has seen too: counted once).
    evidence.merge_stored([(T0, timedelta(seconds=35)), (T0 + timedelta(minutes=5), timedelta(seconds=40))])
    assert evidence.loaded
    assert evidence.offset_at(T0 + timedelta(minutes=6)) == timedelta(seconds=35)
    # A later heartbeat prunes by time from the oldest end, the merged samples included.
    evidence.add(T0 + SKEW_EVIDENCE_WINDOW + timedelta(minutes=1), timedelta(seconds=50))
    assert evidence.offset_at(T0 + SKEW_EVIDENCE_WINDOW + timedelta(minutes=1)) == timedelta(seconds=40)


def test_memory_is_bounded_whatever_the_heartbeat_rate() -> None:
    evidence = ClockEvidence()
    for n in range(CLOCK_SAMPLES_KEPT * 3):
        evidence.add(T0 + timedelta(milliseconds=n), timedelta(seconds=1 + n))
    # The oldest went first: the smallest left is the first of the last CLOCK_SAMPLES_KEPT.
    assert evidence.offset_at(T0 + timedelta(seconds=5)) == timedelta(seconds=1 + CLOCK_SAMPLES_KEPT * 2)
    evidence.merge_stored([(T0 - timedelta(seconds=1), timedelta(0))] * 10)
    assert evidence.offset_at(T0 + timedelta(seconds=5)) == timedelta(seconds=1 + CLOCK_SAMPLES_KEPT * 2)
