"""Weekly slots × term − holidays → occurrences, and idempotent regeneration plans."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pytest

from hub.domain.timetable import (
    ExistingSession,
    Holiday,
    InvalidTimezone,
    Term,
    WeeklySlot,
    occurrences,
    plan_regeneration,
    zone,
)

UTC = timezone.utc
TERM = Term("t1", date(2025, 3, 3), date(2025, 3, 30), "Europe/Berlin")  # Mon 3 Mar .. Sun 30 Mar
MONDAY_9 = WeeklySlot("s-mon", "sec", "c", "r1", 0, time(9), time(10, 30))
WEDNESDAY_14 = WeeklySlot("s-wed", "sec", "c", "r2", 2, time(14), time(15))


def test_every_weekly_occurrence_of_the_term_in_order():
    found, skipped = occurrences(TERM, [WEDNESDAY_14, MONDAY_9], [])
    assert skipped == 0
    assert len(found) == 8
    assert [o.slot_id for o in found[:2]] == ["s-mon", "s-wed"]
    assert found[0].starts_at == datetime(2025, 3, 3, 8, 0, tzinfo=UTC)  # 09:00 CET
    assert found[0].ends_at - found[0].starts_at == timedelta(minutes=90)


def test_wall_clock_time_is_kept_across_dst():
    # Europe/Berlin springs forward on Sunday 30 March 2025: Monday 31st is CEST.
    term = Term("t", date(2025, 3, 24), date(2025, 4, 6), "Europe/Berlin")
    found, _ = occurrences(term, [MONDAY_9], [])
    assert [o.starts_at.hour for o in found] == [8, 7]  # 09:00 local both weeks


def test_a_slot_in_the_dst_gap_moves_forward():
    term = Term("t", date(2025, 3, 30), date(2025, 3, 30), "Europe/Berlin")
    gap = WeeklySlot("gap", "sec", "c", "r", 6, time(2, 30), time(3, 30))
    (found,), _ = occurrences(term, [gap], [])
    assert found.starts_at == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)  # = 03:30 CEST
    assert found.ends_at > found.starts_at


def test_holidays_and_slot_validity_are_skipped():
    holidays = [Holiday(date(2025, 3, 10), date(2025, 3, 12), "Spring break")]
    limited = WeeklySlot("lim", "sec", "c", "r3", 0, time(11), time(12), valid_from=date(2025, 3, 17))
    found, skipped = occurrences(TERM, [MONDAY_9, WEDNESDAY_14, limited], holidays)
    assert skipped == 2  # Monday 10th and Wednesday 12th
    assert date(2025, 3, 10) not in {o.starts_at.date() for o in found}
    assert [o.starts_at.date() for o in found if o.slot_id == "lim"] == [date(2025, 3, 17), date(2025, 3, 24)]


def test_from_day_limits_the_expansion():
    found, _ = occurrences(TERM, [MONDAY_9], [], from_day=date(2025, 3, 20))
    assert [o.starts_at.date() for o in found] == [date(2025, 3, 24)]


def test_unknown_timezone_is_refused():
    with pytest.raises(InvalidTimezone):
        zone("Mars/Olympus")


def _existing(o, **changes) -> ExistingSession:
    values = dict(session_id=f"ses-{o.slot_id}-{o.starts_at:%d}", slot_id=o.slot_id, occurrence_at=o.starts_at,
                  starts_at=o.starts_at, ends_at=o.ends_at, room_id=o.room_id, status="scheduled",
                  rescheduled=False, has_history=False)
    values.update(changes)
    return ExistingSession(**values)


def test_regeneration_is_idempotent_and_never_touches_the_past():
    found, _ = occurrences(TERM, [MONDAY_9], [])
    now = datetime(2025, 3, 12, tzinfo=UTC)
    first = plan_regeneration(found, [], now=now)
    assert [o.starts_at.day for o in first.create] == [17, 24]  # the 3rd and 10th are past
    again = plan_regeneration(found, [_existing(o) for o in first.create], now=now)
    assert again.create == () and again.delete == () and again.cancel == () and again.kept == 2


def test_a_rescheduled_session_is_still_its_occurrence():
    found, _ = occurrences(TERM, [MONDAY_9], [], from_day=date(2025, 3, 17))
    now = datetime(2025, 3, 12, tzinfo=UTC)
    moved = _existing(found[0], starts_at=found[0].starts_at + timedelta(days=1), rescheduled=True)
    plan = plan_regeneration(found, [moved, _existing(found[1])], now=now)
    assert plan.create == () and plan.update == () and plan.delete == ()


def test_removed_occurrences_are_deleted_or_cancelled_when_they_have_history():
    found, _ = occurrences(TERM, [MONDAY_9], [], from_day=date(2025, 3, 17))
    now = datetime(2025, 3, 12, tzinfo=UTC)
    existing = [_existing(found[0]), _existing(found[1], has_history=True),
                _existing(found[0], session_id="past", starts_at=now - timedelta(days=1)),
                _existing(found[1], session_id="open", status="open", slot_id=None)]
    plan = plan_regeneration([], existing, now=now)
    assert plan.delete == (existing[0].session_id,)
    assert plan.cancel == (existing[1].session_id,)


def test_a_future_session_follows_its_slots_room():
    found, _ = occurrences(TERM, [MONDAY_9], [], from_day=date(2025, 3, 17))
    now = datetime(2025, 3, 12, tzinfo=UTC)
    plan = plan_regeneration(found, [_existing(found[0], room_id="old"), _existing(found[1])], now=now)
    assert [(u.session_id, u.room_id) for u in plan.update] == [(_existing(found[0]).session_id, "r1")]


def test_a_session_the_timetable_cancelled_comes_back_when_wanted_again():
    found, _ = occurrences(TERM, [MONDAY_9], [], from_day=date(2025, 3, 17))
    now = datetime(2025, 3, 12, tzinfo=UTC)
    by_regeneration = _existing(found[0], status="cancelled", has_history=True, restorable=True, room_id="old")
    by_a_person = _existing(found[1], status="cancelled", has_history=True)
    plan = plan_regeneration(found, [by_regeneration, by_a_person], now=now)
    assert [(u.session_id, u.room_id) for u in plan.restore] == [(by_regeneration.session_id, "r1")]
    assert plan.create == () and plan.update == () and plan.kept == 2
    assert plan.changed_session_ids == [by_regeneration.session_id]
    # Not in the past, and a rescheduled one keeps its own room and time.
    assert plan_regeneration(found, [by_regeneration], now=found[0].starts_at).restore == ()
    moved = _existing(found[0], status="cancelled", restorable=True, rescheduled=True, room_id="elsewhere",
                      starts_at=found[0].starts_at + timedelta(hours=2), ends_at=found[0].ends_at + timedelta(hours=2))
    (restored,) = plan_regeneration(found, [moved], now=now).restore
    assert (restored.room_id, restored.ends_at) == ("elsewhere", moved.ends_at)
