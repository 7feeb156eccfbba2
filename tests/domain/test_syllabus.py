"""The syllabus and topic-progress rules (hub/domain/syllabus.py): prerequisites, suggestions, progress, pace, CSV."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.domain.syllabus import (
    MASTERY_COMPETENCY,
    Coverage,
    Observation,
    SyllabusProblem,
    TopicRef,
    check_levels,
    check_order,
    check_prerequisites,
    competency,
    find_cycle,
    level_competency,
    mark_level,
    pace_ratio,
    parse_duration,
    parse_syllabus_csv,
    planned_curve,
    suggest_topics,
    topic_progress,
)

T0 = datetime(2030, 9, 1, 9, tzinfo=timezone.utc)


def at(day: int) -> datetime:
    return T0 + timedelta(days=day)


# --- prerequisites ---------------------------------------------------------------------------------

def test_a_cycle_is_refused_and_named():
    titles = {1: "Sets", 2: "Relations", 3: "Functions"}
    with pytest.raises(SyllabusProblem) as refused:
        check_prerequisites(titles, {2: [1], 3: [2], 1: [3]})
    assert refused.value.field == "prerequisites"
    assert "circle" in refused.value.message and "“Sets”" in refused.value.message


def test_a_prerequisite_of_another_course_or_itself_is_refused():
    with pytest.raises(SyllabusProblem, match="not a topic of this course"):
        check_prerequisites({1: "A", 2: "B"}, {2: [99]})
    with pytest.raises(SyllabusProblem, match="its own prerequisite"):
        check_prerequisites({1: "A"}, {1: [1]})


def test_a_chain_and_a_diamond_are_fine():
    check_prerequisites({1: "a", 2: "b", 3: "c", 4: "d"}, {2: [1], 3: [1], 4: [2, 3]})


@given(st.dictionaries(st.integers(0, 8), st.sets(st.integers(0, 8), max_size=3), max_size=9))
def test_find_cycle_returns_a_real_cycle_or_the_graph_has_a_topological_order(graph):
    cycle = find_cycle(graph)
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        for a, b in zip(cycle, cycle[1:]):
            assert b in graph.get(a, set())
    else:  # Kahn's algorithm empties an acyclic graph
        nodes = set(graph) | {n for needs in graph.values() for n in needs}
        remaining = {n: set(graph.get(n, ())) for n in nodes}
        while remaining:
            ready = [n for n, needs in remaining.items() if not needs & set(remaining)]
            assert ready, "no cycle reported but no topological order exists"
            for n in ready:
                del remaining[n]


def test_a_new_order_must_name_every_topic_once():
    check_order([1, 2, 3], [3, 1, 2])
    with pytest.raises(SyllabusProblem):
        check_order([1, 2, 3], [3, 1])
    with pytest.raises(SyllabusProblem):
        check_order([1, 2, 3], [3, 1, 1, 2])


# --- suggestions -----------------------------------------------------------------------------------

def test_suggestions_start_after_what_was_covered_last_time():
    topics = [TopicRef(i, i) for i in range(1, 8)]
    got = suggest_topics(topics, covered={1, 2, 4}, last_time={4})
    # Next uncovered after topic 4, then the skipped topic 3, then last time's topic to continue it.
    assert [(s.topic_id, s.why) for s in got] == [(5, "next"), (6, "next"), (7, "next"), (3, "skipped"),
                                                  (4, "continue")]


def test_suggestions_put_topics_whose_prerequisites_are_covered_first():
    topics = [TopicRef(1, 1), TopicRef(2, 2, frozenset({9})), TopicRef(3, 3)]
    got = suggest_topics(topics, covered=set(), last_time=set())
    assert [s.topic_id for s in got] == [1, 3, 2]


def test_a_first_session_gets_the_syllabus_from_the_top():
    topics = [TopicRef(i, i) for i in range(1, 10)]
    assert [s.topic_id for s in suggest_topics(topics, covered=(), last_time=())] == [1, 2, 3, 4, 5]
    # A chain of prerequisites keeps its order: each needs the one suggested just before it.
    chain = [TopicRef(1, 1), *(TopicRef(i, i, frozenset({i - 1})) for i in range(2, 8))]
    assert [s.topic_id for s in suggest_topics(chain, covered=(), last_time=())] == [1, 2, 3, 4, 5]


# --- progress --------------------------------------------------------------------------------------

def test_absent_from_the_covering_session_stays_not_started_and_needs_catching_up():
    p = topic_progress(60, [Coverage(at(0), 60, attended=False)], [])
    assert (p.status, p.missed, p.minutes_spent, p.competency) == ("not_started", True, 0, 0.0)
    assert topic_progress(60, [], []).missed is False


def test_covered_and_attended_is_in_progress_then_completed_when_the_time_is_spent():
    assert topic_progress(90, [Coverage(at(0), 60, True)], []).status == "in_progress"
    done = topic_progress(90, [Coverage(at(0), 60, True), Coverage(at(2), 30, True)], [])
    assert (done.status, done.minutes_spent) == ("completed", 90)


def test_a_low_latest_level_needs_review_even_after_good_ones():
    obs = [Observation(at(0), 5), Observation(at(1), 5), Observation(at(2), 2)]
    assert topic_progress(60, [Coverage(at(2), 60, True)], obs).status == "needs_review"


def test_mastered_needs_two_observations():
    one = topic_progress(60, [Coverage(at(0), 60, True)], [Observation(at(0), 5)])
    assert (one.status, one.competency) == ("completed", 5.0)
    two = topic_progress(60, [Coverage(at(0), 60, True)], [Observation(at(0), 5), Observation(at(1), 5)])
    assert two.status == "mastered" and two.observations == 2


def test_competency_weighs_recent_levels_more():
    rising = competency([Observation(at(0), 1), Observation(at(1), 5)])
    falling = competency([Observation(at(0), 5), Observation(at(1), 1)])
    assert rising > 2.5 > falling
    # 1 -> 0, 5 -> 5; weights 1 (newest) and 0.6: (5 * 1 + 0 * 0.6) / 1.6
    assert rising == round(5 / 1.6, 2)


def test_an_assessment_mark_is_a_level():
    assert mark_level(0, 20) == 1 and mark_level(20, 20) == 5 and mark_level(10, 20) == 3
    assert level_competency(mark_level(10, 20)) == 2.5


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(1, 5)), max_size=12),
       st.lists(st.tuples(st.integers(0, 60), st.floats(1, 240), st.booleans()), max_size=6),
       st.integers(1, 600))
def test_progress_is_always_within_its_bounds(levels, sessions, est):
    obs = [Observation(at(d), level) for d, level in levels]
    cov = [Coverage(at(d), minutes, attended) for d, minutes, attended in sessions]
    p = topic_progress(est, cov, obs)
    assert 0 <= p.competency <= 5
    assert p.observations == len(obs)
    assert p.minutes_spent == round(sum(c.minutes for c in cov if c.attended))
    if p.status == "mastered":
        assert p.competency >= MASTERY_COMPETENCY and len(obs) >= 2
    if obs:
        latest = max(obs, key=lambda o: o.at).level  # ties: sorted() keeps input order
        if all(o.level == latest for o in obs if o.at == max(x.at for x in obs)) and latest <= 2:
            assert p.status == "needs_review"
    if not obs and not any(c.attended for c in cov):
        assert p.status == "not_started"


# --- pace --------------------------------------------------------------------------------------------

def test_the_plan_spreads_the_syllabus_over_the_scheduled_minutes():
    assert planned_curve(600, [60, 60, 120]) == [150.0, 300.0, 600.0]
    assert planned_curve(600, []) == []
    assert pace_ratio(150, 300) == 0.5 and pace_ratio(10, 0) is None


@given(st.integers(0, 10_000), st.lists(st.floats(1, 300), min_size=1, max_size=40))
def test_the_plan_is_monotonic_and_ends_at_the_total(total, minutes):
    curve = planned_curve(total, minutes)
    assert all(a <= b + 1e-9 for a, b in zip(curve, curve[1:]))
    assert curve[-1] == pytest.approx(total)


# --- levels and CSV ----------------------------------------------------------------------------------

def test_levels_are_checked_against_the_roster():
    check_levels({"a", "b"}, [("a", 3), ("b", 5)])
    with pytest.raises(SyllabusProblem) as refused:
        check_levels({"a"}, [("a", 3), ("z", 4)])
    assert refused.value.field == "levels[1].student_id"
    with pytest.raises(SyllabusProblem):
        check_levels({"a"}, [("a", 6)])
    with pytest.raises(SyllabusProblem):
        check_levels({"a"}, [("a", 3), ("a", 4)])


def test_durations():
    assert parse_duration("90") == 90 and parse_duration("1.5h") == 90 and parse_duration("2 hours") == 120
    with pytest.raises(SyllabusProblem):
        parse_duration("soon")
    with pytest.raises(SyllabusProblem):
        parse_duration("0")


def test_the_csv_reports_every_bad_line():
    parsed = parse_syllabus_csv(
        "Title,Duration,Unit,Prerequisites\n"
        "Sets,60,Unit 1,\n"
        "Relations,1.5h,Unit 1,Sets\n"
        ",30,,\n"
        "Functions,later,,\n"
        "sets,45,,\n"
        "=cmd(),45,,\n")
    assert [r.title for r in parsed.rows] == ["Sets", "Relations"]
    assert parsed.rows[1].est_minutes == 90 and parsed.rows[1].prerequisites == ("Sets",)
    assert [(e.line, e.field) for e in parsed.errors] == [(4, "title"), (5, "est_minutes"), (6, "title"),
                                                        (7, "title")]


def test_a_csv_without_the_needed_columns_says_so():
    parsed = parse_syllabus_csv("name,unit\nx,y\n")
    assert {e.field for e in parsed.errors} == {"title", "duration"}
