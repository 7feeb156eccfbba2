"""The late-penalty rules, pure: grace, per-day rates, the cap, the pass-mark floor, cut-off and extensions."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hub.domain.late_policy import (
    ATTEMPTS_USED,
    CLOSED,
    NOT_OPEN,
    RESUBMIT_AFTER_DUE,
    LatePolicy,
    deadline_for,
    describe_lateness,
    hundredths,
    late_minutes,
    late_penalty,
    submission_problem,
)

percents = st.decimals(min_value=0, max_value=100, places=3)
maxima = st.decimals(min_value=Decimal("0.01"), max_value=1000, places=2)
minutes = st.integers(min_value=0, max_value=60 * 24 * 30)


@st.composite
def policies(draw) -> LatePolicy:
    return LatePolicy(grace_minutes=draw(st.integers(0, 600)), penalty_percent=draw(percents),
                      period=draw(st.sampled_from(["day", "started_day"])), cap_percent=draw(percents),
                      pass_percent=draw(st.none() | percents))


@st.composite
def marked(draw) -> tuple[Decimal, Decimal]:
    top = draw(maxima)
    raw = draw(st.decimals(min_value=0, max_value=top, places=2))
    return raw, top


@given(policies(), marked(), minutes)
def test_penalty_bounds(policy: LatePolicy, raw_max: tuple[Decimal, Decimal], late: int) -> None:
    raw, top = raw_max
    result = late_penalty(policy, raw, top, late)
    assert 0 <= result.marks <= Fraction(raw)
    assert result.deducted == Fraction(raw) - result.marks
    # The cap bounds the deduction.
    assert result.deducted <= Fraction(top) * Fraction(policy.cap_percent) / 100
    # The floor: work that passed keeps at least the pass mark.
    if policy.pass_percent is not None:
        pass_mark = Fraction(top) * Fraction(policy.pass_percent) / 100
        if Fraction(raw) >= pass_mark:
            assert result.marks >= pass_mark


@given(policies(), marked(), minutes, minutes)
def test_later_never_costs_less(policy: LatePolicy, raw_max: tuple[Decimal, Decimal], a: int, b: int) -> None:
    raw, top = raw_max
    early, late = sorted((a, b))
    assert late_penalty(policy, raw, top, late).marks <= late_penalty(policy, raw, top, early).marks


@given(policies(), marked(), st.integers(0, 600))
def test_within_grace_is_free(policy: LatePolicy, raw_max: tuple[Decimal, Decimal], late: int) -> None:
    assume(late <= policy.grace_minutes)
    raw, top = raw_max
    result = late_penalty(policy, raw, top, late)
    assert result.marks == Fraction(raw) and not result.applied


@given(marked(), st.integers(1, 60 * 24 * 10), percents)
def test_started_day_is_whole_days_and_pro_rata_is_exact(raw_max: tuple[Decimal, Decimal], late: int,
                                                        rate: Decimal) -> None:
    raw, top = raw_max
    whole = late_penalty(LatePolicy(penalty_percent=rate, period="started_day"), raw, top, late)
    pro_rata = late_penalty(LatePolicy(penalty_percent=rate, period="day"), raw, top, late)
    days_started = -(-late // 1440)
    expected_whole = max(Fraction(0), Fraction(raw) - Fraction(top) * min(Fraction(rate) * days_started, 100) / 100)
    expected_rata = max(Fraction(0), Fraction(raw) - Fraction(top) * min(Fraction(rate) * late / 1440, 100) / 100)
    assert whole.marks == expected_whole
    assert pro_rata.marks == expected_rata
    assert pro_rata.marks >= whole.marks


def test_city_policy_example() -> None:
    """10 percentage points per started day, never below the pass mark (50 %), out of 20 marks."""
    policy = LatePolicy(penalty_percent=10, period="started_day", pass_percent=50)
    assert late_penalty(policy, 18, 20, 1).marks == 16           # 1 min late: one started day, -2
    assert late_penalty(policy, 18, 20, 24 * 60 + 1).marks == 14  # two started days, -4
    passed = late_penalty(policy, 11, 20, 24 * 60 * 3)
    assert passed.marks == 10 and passed.floored                 # 11 - 6 = 5 < 10: kept at the pass mark
    failed = late_penalty(policy, 8, 20, 24 * 60 * 3)
    assert failed.marks == 2 and not failed.floored              # had not passed: no floor


def test_grace_forgives_then_counts_from_the_due_date() -> None:
    policy = LatePolicy(grace_minutes=15, penalty_percent=10, period="day")
    assert late_penalty(policy, 10, 10, 15).marks == 10
    # 16 min late: the whole 16 min count, pro rata of a day.
    assert late_penalty(policy, 10, 10, 16).marks == 10 - Fraction(10 * 10 * 16, 100 * 1440)


def test_cap() -> None:
    result = late_penalty(LatePolicy(penalty_percent=25, cap_percent=30), 20, 20, 24 * 60 * 5)
    assert result.marks == 14 and result.capped


def test_note_words() -> None:
    policy = LatePolicy(grace_minutes=10, penalty_percent=10, cap_percent=30, pass_percent=50)
    assert late_penalty(policy, 5, 10, 0).note(10, policy) is None
    assert "grace" in (late_penalty(policy, 5, 10, 5).note(10, policy) or "")
    note = late_penalty(policy, 9, 10, 24 * 60 * 5).note(10, policy) or ""
    assert "5 days" in note and "at most 30 %" in note and "3.00 marks" in note


def test_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        LatePolicy(period="week")
    with pytest.raises(ValueError):
        LatePolicy(penalty_percent=101)
    with pytest.raises(ValueError):
        late_penalty(LatePolicy(), 11, 10, 0)


T0 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def test_late_minutes_counts_started_minutes() -> None:
    assert late_minutes(T0, T0) == 0
    assert late_minutes(T0 - timedelta(hours=1), T0) == 0
    assert late_minutes(T0 + timedelta(seconds=1), T0) == 1
    assert late_minutes(T0 + timedelta(minutes=60), T0) == 60
    assert late_minutes(T0 + timedelta(minutes=60, microseconds=1), T0) == 61


def test_extension_moves_due_and_cut_off() -> None:
    cut = T0 + timedelta(days=2)
    assert deadline_for(T0, cut) == deadline_for(T0, cut, None)
    later = deadline_for(T0, cut, (T0 + timedelta(days=7), None))
    assert later.due_at == T0 + timedelta(days=7) and later.cut_off_at == T0 + timedelta(days=7) and later.extended
    own = deadline_for(T0, cut, (T0 + timedelta(days=1), T0 + timedelta(days=3)))
    assert own.cut_off_at == T0 + timedelta(days=3)
    assert deadline_for(T0, None, (T0 + timedelta(days=1), None)).cut_off_at is None


def test_submission_problems() -> None:
    deadline = deadline_for(T0, T0 + timedelta(days=1))
    ask = dict(opens_at=T0 - timedelta(days=7), published=True, max_attempts=2)
    assert submission_problem(T0 - timedelta(days=8), deadline, attempts_so_far=0, **ask) == NOT_OPEN
    assert submission_problem(T0, deadline, attempts_so_far=0, opens_at=None, published=False,
                              max_attempts=2) == NOT_OPEN
    assert submission_problem(T0 - timedelta(hours=1), deadline, attempts_so_far=1, **ask) is None
    assert submission_problem(T0 - timedelta(hours=1), deadline, attempts_so_far=2, **ask) == ATTEMPTS_USED
    assert submission_problem(T0 + timedelta(hours=1), deadline, attempts_so_far=0, **ask) is None  # late, allowed
    assert submission_problem(T0 + timedelta(hours=1), deadline, attempts_so_far=1, **ask) == RESUBMIT_AFTER_DUE
    assert submission_problem(T0 + timedelta(days=2), deadline, attempts_so_far=0, **ask) == CLOSED
    extended = deadline_for(T0, T0 + timedelta(days=1), (T0 + timedelta(days=3), None))
    assert submission_problem(T0 + timedelta(days=2), extended, attempts_so_far=1, **ask) is None


def test_display_helpers() -> None:
    assert hundredths(Fraction(1, 200)) == Decimal("0.01")   # half up
    assert hundredths(Fraction(1, 3)) == Decimal("0.33")
    assert describe_lateness(5) == "5 min"
    assert describe_lateness(24 * 60 * 2 + 61) == "2 days 1 h"
