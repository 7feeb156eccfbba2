"""The eligibility rules, pure: exact percentages, max reachable, bands at their boundaries, warning crossings."""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hub.domain.eligibility import (
    BARRED,
    CONDONABLE,
    CONDONED,
    ELIGIBLE,
    Rules,
    Tally,
    band,
    eligibility,
    is_below_warning,
    max_reachable,
    percentage,
    sessions_needed,
    shown,
    standing,
    warning_due,
)

counts = st.integers(min_value=0, max_value=60)
tallies = st.builds(Tally, counts, counts, counts, counts, counts)
weights = st.decimals(min_value=0, max_value=1, places=3)
thresholds = st.decimals(min_value=0, max_value=100, places=2)


@st.composite
def rules(draw) -> Rules:
    low, high = sorted((draw(thresholds), draw(thresholds)))
    return Rules(late_weight=draw(weights), warning_pct=draw(thresholds), eligible_pct=high, condonable_pct=low,
                 excused_counts=draw(st.booleans()))


# --- examples ----------------------------------------------------------------------------------

def test_weights_present_one_late_point_eight_absent_zero_excused_left_out():
    t = Tally(present=6, late=2, absent=1, excused=3)
    assert percentage(t, Rules()) == Fraction(100) * (6 + Fraction(8, 10) * 2) / 9


def test_excused_can_count_as_present_instead():
    t = Tally(present=6, absent=2, excused=2)
    assert percentage(t, Rules(excused_counts=True)) == 80


def test_nothing_counted_yet_has_no_percentage_and_is_eligible():
    t = Tally(remaining=30)
    assert percentage(t, Rules()) is None
    assert band(None, Rules()) == ELIGIBLE
    assert max_reachable(t, Rules()) == 100
    assert not is_below_warning(None, Rules())


def test_only_excused_sessions_also_have_no_percentage():
    assert percentage(Tally(excused=4), Rules()) is None


def test_max_reachable_assumes_every_remaining_session_attended():
    t = Tally(present=5, absent=5, remaining=10)
    assert max_reachable(t, Rules()) == 75
    assert sessions_needed(t, Rules(), Decimal(75)) == 10
    assert sessions_needed(Tally(present=5, absent=5, remaining=9), Rules(), Decimal(75)) is None


def test_band_boundaries_are_exact():
    r = Rules()
    assert band(Fraction(75), r) == ELIGIBLE
    assert band(Fraction(75) - Fraction(1, 10**9), r) == CONDONABLE
    assert band(Fraction(65), r) == CONDONABLE
    assert band(Fraction(65) - Fraction(1, 10**9), r) == BARRED
    # Decimal thresholds are exact too: 74.50 is met at 74.5, not at 74.4999...
    half = Rules(eligible_pct=Decimal("74.50"), condonable_pct=Decimal("64.25"))
    assert band(Fraction(149, 2), half) == ELIGIBLE
    assert band(Fraction(257, 4), half) == CONDONABLE


def test_three_of_four_is_exactly_seventy_five_and_eligible():
    t = Tally(present=3, absent=1)
    assert percentage(t, Rules()) == 75
    assert band(percentage(t, Rules()), Rules()) == ELIGIBLE
    assert shown(percentage(t, Rules())) == Decimal("75.00")


def test_shown_rounds_down_so_a_shown_threshold_is_really_met():
    assert shown(Fraction(2, 3) * 100) == Decimal("66.66")
    assert shown(Fraction(7499999, 100000)) == Decimal("74.99")  # never displayed as 75.00


def test_condonation_approved_makes_a_condonable_student_condoned_but_not_a_barred_one():
    assert eligibility(CONDONABLE, "approved") == CONDONED
    assert eligibility(CONDONABLE, "pending") == CONDONABLE
    assert eligibility(BARRED, "approved") == BARRED
    assert eligibility(ELIGIBLE, None) == ELIGIBLE


def test_warning_is_due_once_per_downward_crossing():
    r = Rules()
    assert warning_due(False, Fraction(74), r)
    assert not warning_due(True, Fraction(70), r)      # still below: no repeat
    assert not warning_due(False, Fraction(80), r)     # above
    assert not warning_due(False, Fraction(75), r)     # at the line is not below it
    assert warning_due(False, Fraction(60), r)         # came back up, then down again: a new crossing


def test_standing_bundles_the_figures():
    s = standing(Tally(present=7, late=1, absent=2, remaining=5), Rules())
    assert s.percentage == 78 and s.band == ELIGIBLE and s.best_band == ELIGIBLE
    assert s.needed_for_eligible == 4 and not s.below_warning


def test_rules_refuse_nonsense():
    with pytest.raises(ValueError):
        Rules(late_weight=Decimal("1.5"))
    with pytest.raises(ValueError):
        Rules(eligible_pct=Decimal("101"))
    with pytest.raises(ValueError):
        Tally(present=-1)


# --- properties ----------------------------------------------------------------------------------

@given(tallies, rules())
def test_percentage_is_between_zero_and_max_reachable_and_max_reachable_at_most_100(t, r):
    pct = percentage(t, r)
    best = max_reachable(t, r)
    assert 0 <= best <= 100
    if pct is not None:
        assert 0 <= pct <= best <= 100


@given(tallies, rules())
def test_with_nothing_remaining_max_reachable_is_the_percentage(t, r):
    t = Tally(t.present, t.late, t.absent, t.excused, 0)
    pct = percentage(t, r)
    assert max_reachable(t, r) == (100 if pct is None else pct)


@given(tallies, rules())
def test_one_more_present_never_lowers_and_one_more_absent_never_raises(t, r):
    pct = percentage(t, r)
    up = percentage(Tally(t.present + 1, t.late, t.absent, t.excused, t.remaining), r)
    down = percentage(Tally(t.present, t.late, t.absent + 1, t.excused, t.remaining), r)
    assert up is not None and down is not None
    if pct is not None:
        assert up >= pct >= down


@given(tallies, rules())
def test_missing_a_remaining_session_never_raises_max_reachable(t, r):
    assume(t.remaining > 0)
    missed = Tally(t.present, t.late, t.absent + 1, t.excused, t.remaining - 1)
    attended = Tally(t.present + 1, t.late, t.absent, t.excused, t.remaining - 1)
    assert max_reachable(missed, r) <= max_reachable(t, r)
    assert max_reachable(attended, r) == max_reachable(t, r)


@given(tallies, rules())
def test_band_is_monotonic_in_the_percentage(t, r):
    assume(percentage(t, r) is not None)
    order = {ELIGIBLE: 2, CONDONABLE: 1, BARRED: 0}
    better = Tally(t.present + 1, t.late, t.absent, t.excused, t.remaining)
    worse = Tally(t.present, t.late, t.absent + 1, t.excused, t.remaining)
    assert order[band(percentage(better, r), r)] >= order[band(percentage(t, r), r)] >= \
        order[band(percentage(worse, r), r)]


@given(st.fractions(min_value=0, max_value=100), rules())
def test_band_matches_the_thresholds_exactly(pct, r):
    expected = ELIGIBLE if pct >= r.eligible_pct else CONDONABLE if pct >= r.condonable_pct else BARRED
    assert band(pct, r) == expected


@given(st.fractions(min_value=0, max_value=100), rules())
def test_the_shown_two_decimals_agree_with_the_band(pct, r):
    # Thresholds have two decimals; the shown value is rounded down, so comparing the
    # shown value with a threshold gives the same band as the exact value.
    s = shown(pct)
    assert s <= Decimal(pct.numerator) / Decimal(pct.denominator) + Decimal("1e-20")
    assert band(Fraction(s), r) == band(pct, r)


@given(tallies, rules())
def test_sessions_needed_is_the_least_number_that_reaches_eligibility(t, r):
    needed = sessions_needed(t, r, r.eligible_pct)
    if needed is None:
        assert max_reachable(t, r) < r.eligible_pct
        return
    assert 0 <= needed <= t.remaining
    reach = Tally(t.present + needed, t.late, t.absent + t.remaining - needed, t.excused, 0)
    assert max_reachable(reach, r) >= r.eligible_pct or (needed == 0 and percentage(reach, r) is None)
    if needed > 0:
        short = Tally(t.present + needed - 1, t.late, t.absent + t.remaining - needed + 1, t.excused, 0)
        assert percentage(short, r) is not None and percentage(short, r) < r.eligible_pct
