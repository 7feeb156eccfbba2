"""The pure early-warning features: the vector from a student-course's facts, the rule, levels, and
the words of reasons and actions."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hub.domain.risk_features import (
    FEATURES,
    CaseFacts,
    MarkFact,
    SessionMark,
    WorkFact,
    absence_streak,
    action_sentence,
    attendance_drop,
    attendance_rate,
    feature_vector,
    improvements,
    level_of,
    marks_so_far,
    reasons,
    rule_flag,
    rule_level,
)

START = datetime(2026, 9, 1, tzinfo=timezone.utc)
END = START + timedelta(days=84)


def facts(statuses: str, *, cutoff_day: int = 42, **more) -> CaseFacts:
    """One class every other day up to the cutoff: p present, l late, a absent, e excused."""
    words = {"p": "present", "l": "late", "a": "absent", "e": "excused"}
    cutoff = START + timedelta(days=cutoff_day)
    step = timedelta(days=cutoff_day / (len(statuses) + 1)) if statuses else timedelta(days=1)
    sessions = tuple(SessionMark(START + step * (i + 1), words[c]) for i, c in enumerate(statuses))
    return CaseFacts(cutoff=cutoff, term_start=START, term_end=END, sessions=sessions, **more)


def test_attendance_rate_leaves_excused_classes_out_and_counts_late_as_attended():
    f = facts("pplaae")
    assert attendance_rate(f) == 3 / 5
    assert attendance_rate(facts("")) is None
    assert feature_vector(facts(""))[0] == 1.0  # before any class: no shortfall


def test_streak_counts_the_trailing_absences_and_skips_excused():
    assert absence_streak(facts("ppaa")) == 2
    assert absence_streak(facts("ppaea")) == 2
    assert absence_streak(facts("aap")) == 0


def test_drop_compares_the_last_three_weeks_with_the_weeks_before():
    # 12 classes over 42 days: the last 3 weeks hold the second half.
    falling = facts("pppppp" + "paaaaa")
    assert attendance_drop(falling) > 0.6
    assert attendance_drop(facts("aaaaaa" + "pppppp")) == 0.0  # rising is not a risk signal


def test_marks_are_weighted_and_an_absence_counts_zero():
    f = facts("pp", marks=(MarkFact(0.8, 10), MarkFact(None, 30, absent=True), MarkFact(None, 10)))
    assert marks_so_far(f) == 0.8 * 10 / 40  # the exempt one (fraction None, not absent) is left out
    assert marks_so_far(facts("pp")) is None


def test_vector_has_every_feature_in_order():
    f = facts("plaa", flags=2, marks=(MarkFact(0.5, 20),), work=(WorkFact(True, 0), WorkFact(True, 90),
                                                                 WorkFact(False)),
              topics_taught=4, topics_missed=1, understanding=2.0)
    v = dict(zip(FEATURES, feature_vector(f)))
    assert len(v) == len(FEATURES)
    assert v["attendance_rate"] == 0.5 and v["absence_streak"] == 2 and v["late_share"] == 0.5
    assert v["flags"] == 2 and v["marks_shortfall"] == 0.5 and v["no_marks_yet"] == 0
    assert v["missing_work"] == 1 / 3 and v["late_work"] == 1 / 3
    assert v["topics_missed_share"] == 0.25 and v["low_understanding"] == 1.0
    assert v["term_elapsed"] == 0.5


def test_the_rule_and_the_levels():
    assert rule_flag(facts("pppa")) is False  # exactly 75 %: not below
    assert rule_flag(facts("ppaa")) is True
    assert rule_flag(facts("")) is False
    assert rule_level(facts("pppppppa")) == "low" and rule_level(facts("ppppa")) == "medium"
    assert rule_level(facts("ppaa")) == "high"
    assert [level_of(p) for p in (0.1, 0.25, 0.49, 0.5)] == ["low", "medium", "medium", "high"]


def test_reasons_become_plain_sentences_largest_first_and_merge_attendance():
    f = facts("pppppp" + "ppaaaa", marks=(MarkFact(0.4, 10),))
    found = reasons(f, {"attendance_rate": 0.9, "absence_streak": 0.5, "marks_shortfall": 0.7, "flags": -1.0,
                        "late_share": 0.2, "excused_share": 0.05})
    assert [r.sentence for r in found] == [
        "Attended 67 % of 12 classes so far, falling over the last 3 weeks; missed the last 4 classes in a row",
        "Marks so far average 40 %",
    ]  # late_share says nothing (no late arrival); flags pull the risk down and 0.05 is too small to name
    assert found[0].weight == 1.4


def test_a_short_streak_or_a_small_drop_is_not_a_reason():
    steady = facts("pppapppppp")  # 90 %, one early absence: no drop, no streak
    assert reasons(steady, {"absence_streak": 0.3, "attendance_drop": 0.2}) == []
    assert [r.code for r in reasons(steady, {"attendance_rate": 0.3})] == ["attendance_rate"]


def test_improvements_re_score_attending_the_next_classes_and_handing_in_work():
    f = facts("paaa", remaining=10, work=(WorkFact(False), WorkFact(True)))
    steps = {s.code: s for s in improvements(f)}
    attend = steps["attend_next"]
    assert attendance_rate(attend.facts) == 5 / 8 and attend.facts.remaining == 6
    assert attend.facts.cutoff > f.cutoff
    assert action_sentence(attend, "high", "medium") == "Attending the next 4 classes would bring your risk from high to medium."
    hand_in = steps["hand_in_work"]
    assert all(w.submitted for w in hand_in.facts.work)
    assert action_sentence(hand_in, "medium", "low") == (
        "Handing in the 1 missing assignment, even late, would bring your risk from medium to low.")
    assert action_sentence(attend, "medium", "medium") == (
        "Attending the next 4 classes would lower your risk (it would stay medium).")
    assert [s.code for s in improvements(facts("pa", remaining=0))] == []
