"""Grade arithmetic (hub/domain/grades.py): course percentages, bands, GPA, what-if, display rounding."""
from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.domain.grades import (
    ABSENT,
    DEFAULT_SCALE,
    EXEMPT,
    FAILED,
    GRADED,
    PASSED,
    WITHDRAWN,
    Band,
    InvalidScale,
    Item,
    Result,
    final_percent,
    gpa,
    make_scale,
    missing_marks,
    projected_results,
    result_from_percent,
    running_percent,
    shown_gpa,
    shown_percent,
    term_gpas,
    what_if,
)

D = Decimal

# --- strategies --------------------------------------------------------------------------

weights = st.decimals(min_value=0, max_value=100, places=3)
maxima = st.decimals(min_value=D("0.5"), max_value=200, places=2)


@st.composite
def items(draw: st.DrawFn, *, allow_unmarked: bool = True) -> Item:
    max_marks = draw(maxima)
    statuses = [GRADED, ABSENT, EXEMPT] + ([None] if allow_unmarked else [])
    status = draw(st.sampled_from(statuses))
    marks = draw(st.decimals(min_value=0, max_value=max_marks, places=2)) if status == GRADED else None
    return Item(draw(st.integers(1, 10**6)), draw(weights), max_marks, status, marks)


credits = st.decimals(min_value=0, max_value=40, places=1)
points = st.sampled_from([b.points for b in DEFAULT_SCALE.bands])


@st.composite
def results(draw: st.DrawFn) -> Result:
    outcome = draw(st.sampled_from([PASSED, FAILED, WITHDRAWN]))
    p = None if outcome == WITHDRAWN else (D(0) if outcome == FAILED else draw(points))
    return Result(draw(st.sampled_from(["t1", "t2", "t3"])), f"c{draw(st.integers(0, 99))}", draw(credits), p, outcome)


# --- course percentage ---------------------------------------------------------------------

def test_weighted_percentage_worked_example() -> None:
    # 40% quiz at 8/10, 60% exam at 45/60: 0.4*80 + 0.6*75 = 77
    got = final_percent([Item(1, D(40), D(10), GRADED, D(8)), Item(2, D(60), D(60), GRADED, D(45))])
    assert got == Fraction(77)
    assert DEFAULT_SCALE.band_for(got).letter == "B"


def test_running_grade_normalises_over_graded_weights_final_counts_missing_as_zero() -> None:
    marked = Item(1, D(30), D(20), GRADED, D(18))  # 90% of its 30
    pending = Item(2, D(70), D(100))
    assert running_percent([marked, pending]) == Fraction(90)
    assert final_percent([marked, pending]) == Fraction(27)
    assert missing_marks([marked, pending]) == 1


def test_absent_counts_zero_exempt_is_left_out() -> None:
    a = Item(1, D(50), D(10), GRADED, D(10))
    absent = Item(2, D(50), D(10), ABSENT)
    exempt = Item(3, D(50), D(10), EXEMPT)
    assert final_percent([a, absent]) == Fraction(50)
    assert final_percent([a, exempt]) == Fraction(100)
    assert running_percent([exempt]) is None
    assert final_percent([exempt]) is None


def test_bonus_marks_are_capped_at_one_hundred_percent() -> None:
    assert final_percent([Item(1, D(100), D(10), GRADED, D(12))]) == Fraction(100)


@given(st.lists(items(), max_size=12))
def test_percentages_are_bounded_and_order_independent(its: list[Item]) -> None:
    for compute in (running_percent, final_percent):
        pct = compute(its)
        assert pct is None or 0 <= pct <= 100
        assert compute(list(reversed(its))) == pct


@given(st.lists(items(), max_size=12))
def test_final_never_exceeds_running_and_equals_it_when_everything_is_marked(its: list[Item]) -> None:
    running, final = running_percent(its), final_percent(its)
    if running is not None and final is not None:
        assert final <= running
    if missing_marks(its) == 0 and all(i.status is not None or i.weight == 0 for i in its):
        marked_weight = sum(i.weight for i in its if i.status in (GRADED, ABSENT))
        if marked_weight > 0:
            assert running == final


@given(st.lists(items(allow_unmarked=False), min_size=1, max_size=8), st.integers(1, 5))
def test_scaling_all_weights_changes_nothing(its: list[Item], k: int) -> None:
    scaled = [Item(i.assessment_id, i.weight * k, i.max_marks, i.status, i.marks) for i in its]
    assert final_percent(scaled) == final_percent(its)


# --- scale and bands -----------------------------------------------------------------------

@pytest.mark.parametrize(("pct", "letter"), [
    (Fraction(100), "A"), (Fraction(90), "A"), (Fraction(8999, 100), "A-"), (Fraction(85), "A-"),
    (Fraction(80), "B+"), (Fraction(75), "B"), (Fraction(70), "B-"), (Fraction(65), "C+"), (Fraction(60), "C"),
    (Fraction(50), "D"), (Fraction(4999999, 100000), "F"), (Fraction(0), "F"),
])
def test_default_scale_bands_meet_their_boundaries_exactly(pct: Fraction, letter: str) -> None:
    assert DEFAULT_SCALE.band_for(pct).letter == letter


@given(st.fractions(min_value=0, max_value=100))
def test_every_percentage_falls_in_exactly_one_band(pct: Fraction) -> None:
    band = DEFAULT_SCALE.band_for(pct)
    assert Fraction(band.min_percent) <= pct
    higher = [b for b in DEFAULT_SCALE.bands if b.min_percent > band.min_percent]
    assert all(pct < Fraction(b.min_percent) for b in higher)
    assert band.is_pass == (pct >= 50)


def _b(letter: str, minimum: str, pts: str, is_pass: bool = True) -> Band:
    return Band(letter, D(minimum), D(pts), is_pass)


@pytest.mark.parametrize(("bands", "field"), [
    ([], "bands"),
    ([_b("A", "50", "4")], "bands"),  # gap: nothing below 50
    ([_b("A", "50", "4"), _b("B", "50", "3"), _b("F", "0", "0", False)], "bands[1].min_percent"),  # overlap
    ([_b("A", "50", "4"), _b("A", "0", "0", False)], "bands[1].letter"),
    ([_b("A", "50", "3"), _b("F", "0", "4", False)], "bands[1].points"),  # lower earns more
    ([_b("A", "50", "4", False), _b("D", "0", "1")], "bands[1].is_pass"),  # pass below a fail
    ([_b("A", "101", "4"), _b("F", "0", "0", False)], "bands[0].min_percent"),
    ([_b("A", "50", "11"), _b("F", "0", "0", False)], "bands[0].points"),
    ([_b("F", "0", "0", False)], "bands[0].is_pass"),
])
def test_bad_scales_are_refused_naming_the_field(bands: list[Band], field: str) -> None:
    with pytest.raises(InvalidScale) as caught:
        make_scale("x", "letter", bands)
    assert caught.value.field == field


def test_a_ten_point_scale_is_accepted_and_ordered() -> None:
    scale = make_scale("10-point", "points", [_b("P", "40", "4"), _b("O", "90", "10"), _b("F", "0", "0", False)])
    assert [b.letter for b in scale.bands] == ["O", "P", "F"]
    assert scale.band_for(Fraction(95)).points == 10


# --- GPA ---------------------------------------------------------------------------------

def test_gpa_worked_example_is_credit_weighted() -> None:
    rs = [Result("t", "a", D(4), D("4.0"), PASSED), Result("t", "b", D(2), D("2.0"), PASSED),
          Result("t", "c", D(3), D(0), FAILED), Result("t", "d", D(3), None, WITHDRAWN)]
    # (16 + 4 + 0) / 9; the withdrawal does not count
    assert gpa(rs) == Fraction(20, 9)
    assert shown_gpa(Fraction(20, 9)) == D("2.22")


def test_a_failed_course_counts_with_zero_points_whatever_its_band_says() -> None:
    assert gpa([Result("t", "a", D(3), D("1.0"), FAILED), Result("t", "b", D(3), D("4.0"), PASSED)]) == 2


@given(st.lists(results(), max_size=15))
def test_gpa_is_bounded_and_order_independent(rs: list[Result]) -> None:
    value = gpa(rs)
    assert gpa(list(reversed(rs))) == value
    counted = [r for r in rs if r.outcome != WITHDRAWN and r.credits > 0]
    if not counted:
        assert value is None
    else:
        assert value is not None
        assert 0 <= value <= DEFAULT_SCALE.max_points
        assert min(r.points or 0 for r in counted) <= value <= max(r.points or 0 for r in counted)


@given(st.lists(results(), max_size=15), results())
def test_withdrawals_never_change_the_gpa(rs: list[Result], extra: Result) -> None:
    w = Result(extra.term_id, extra.course_id, extra.credits, None, WITHDRAWN)
    assert gpa(rs + [w]) == gpa(rs)


@given(st.lists(results(), min_size=1, max_size=6))
def test_gpa_is_the_credit_weighted_mean(rs: list[Result]) -> None:
    counted = [r for r in rs if r.outcome != WITHDRAWN]
    total = sum(Fraction(r.credits) for r in counted)
    expected = (sum(Fraction(r.points or 0) * Fraction(r.credits) for r in counted) / total) if total else None
    assert gpa(rs) == expected


@given(st.lists(results(), max_size=15))
def test_cumulative_gpa_of_the_last_term_is_the_gpa_of_everything(rs: list[Result]) -> None:
    rows = term_gpas(rs, ["t1", "t2", "t3"])
    assert [r.term_id for r in rows] == [t for t in ("t1", "t2", "t3") if any(x.term_id == t for x in rs)]
    if rows:
        assert rows[-1].cumulative_gpa == gpa(rs)
        assert rows[0].cumulative_gpa == rows[0].term_gpa


# --- final results and what-if -------------------------------------------------------------

def test_result_from_percent_fails_with_zero_points() -> None:
    r, band = result_from_percent("t", "c", D(3), Fraction(49), DEFAULT_SCALE)
    assert (band.letter, r.outcome, r.points) == ("F", FAILED, 0)
    r, band = result_from_percent("t", "c", D(3), Fraction(50), DEFAULT_SCALE)
    assert (band.letter, r.outcome, r.points) == ("D", PASSED, 1)


def test_what_if_fills_only_unmarked_work_and_reports_what_is_left_out() -> None:
    its = [Item(1, D(30), D(20), GRADED, D(18)), Item(2, D(50), D(100)), Item(3, D(20), D(10))]
    w = what_if("c", its, {2: D(80)}, DEFAULT_SCALE)
    # (27 + 40) / 80 = 83.75 -> B+; assessment 3 left out
    assert w.percent == Fraction(335, 4)
    assert w.band is not None and w.band.letter == "B+"
    assert w.left_out == 1
    full = what_if("c", its, {2: D(80), 3: D(10)}, DEFAULT_SCALE)
    assert full.percent == Fraction(87) and full.left_out == 0


def test_what_if_refuses_a_hope_above_the_maximum_or_on_an_unknown_assessment() -> None:
    its = [Item(1, D(100), D(20))]
    with pytest.raises(ValueError):
        what_if("c", its, {1: D(21)}, DEFAULT_SCALE)
    with pytest.raises(ValueError):
        what_if("c", its, {9: D(1)}, DEFAULT_SCALE)


@given(st.lists(items(), min_size=1, max_size=8), st.data())
def test_hoping_for_more_never_lowers_the_grade(its: list[Item], data: st.DataObject) -> None:
    unique = list({i.assessment_id: i for i in its}.values())
    open_ = [i for i in unique if i.status is None]
    low = {i.assessment_id: data.draw(st.decimals(min_value=0, max_value=i.max_marks, places=2)) for i in open_}
    high = {k: min(v + 1, next(i.max_marks for i in open_ if i.assessment_id == k)) for k, v in low.items()}
    lo, hi = what_if("c", unique, low, DEFAULT_SCALE), what_if("c", unique, high, DEFAULT_SCALE)
    if lo.percent is not None and hi.percent is not None:
        assert hi.percent >= lo.percent


def test_projected_results_count_a_failing_projection_with_zero_points() -> None:
    w = what_if("c", [Item(1, D(100), D(10))], {1: D(3)}, DEFAULT_SCALE)
    [r] = projected_results("t", [(w, D(4))])
    assert (r.outcome, r.points, r.credits) == (FAILED, 0, 4)


# --- display ---------------------------------------------------------------------------------

@given(st.fractions(min_value=0, max_value=100))
def test_shown_percent_rounds_down_so_the_letter_agrees(pct: Fraction) -> None:
    shown = shown_percent(pct)
    assert shown <= pct < shown + D("0.01")
    assert DEFAULT_SCALE.band_for(Fraction(shown)).letter == DEFAULT_SCALE.band_for(pct).letter
