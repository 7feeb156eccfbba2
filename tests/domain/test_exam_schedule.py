"""The exam clash rules, pure: rooms, students, half-open overlaps, a sitting never clashing with
itself, a student's own sitting replacing their section's, and reasons in plain words."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.domain.exam_schedule import (
    Booking,
    InvalidSitting,
    Proposed,
    find_clashes,
    overlaps,
    section_sitters,
)

UTC = timezone.utc
T0 = datetime(2026, 12, 14, 9, 0, tzinfo=UTC)
ZONE = ZoneInfo("Asia/Kolkata")


def booking(kind="class", id="s1", room="R1", start=T0, minutes=60, students=()) -> Booking:
    return Booking(kind, id, f"CS101 {kind}", room, f"Room {room}", start, start + timedelta(minutes=minutes),
                   frozenset(students))


def proposed(room="R1", start=T0, minutes=120, students=("a", "b"), sitting_id=None) -> Proposed:
    return Proposed(room, start, start + timedelta(minutes=minutes), frozenset(students), sitting_id)


def test_a_class_in_the_same_room_at_the_same_time_clashes_on_the_room() -> None:
    [clash] = find_clashes(proposed(students=()), [booking(room="R1")], zone=ZONE)
    assert (clash.kind, clash.with_kind, clash.with_id, clash.students) == ("room", "class", "s1", ())
    # The reason says where and when, in the term's local time (09:00 UTC is 14:30 in Kolkata).
    assert clash.reason == "Room R1 is taken by CS101 class on Mon 14 Dec 2026, 14:30–15:30."


def test_students_busy_in_another_room_clash_with_their_names() -> None:
    clashes = find_clashes(proposed(students=("a", "b", "c")),
                           [booking(room="R2", students=("b", "c", "z"))], zone=ZONE,
                           names={"b": "Bea", "c": "Cid"})
    [clash] = clashes
    assert clash.kind == "students" and clash.students == ("b", "c")
    assert clash.reason.startswith("2 students (Bea, Cid) have CS101 class in Room R2 on ")


def test_one_busy_student_reads_in_the_singular_and_long_lists_are_cut() -> None:
    [one] = find_clashes(proposed(students=("a",)), [booking(kind="sitting", room="R2", students=("a",))],
                         zone=UTC)
    assert one.reason.startswith("1 student (a) sits CS101 sitting in Room R2")
    many = [f"s{i}" for i in range(6)]
    [clash] = find_clashes(proposed(students=many), [booking(room="R2", students=many)], zone=UTC)
    assert "(s0, s1, s2 and 3 others)" in clash.reason


def test_same_room_and_same_students_clash_twice_room_first() -> None:
    clashes = find_clashes(proposed(students=("a",)), [booking(room="R1", students=("a",))], zone=UTC)
    assert [c.kind for c in clashes] == ["room", "students"]


def test_back_to_back_is_not_a_clash_but_one_minute_of_overlap_is() -> None:
    before = booking(start=T0 - timedelta(minutes=60), minutes=60, students=("a",))
    after = booking(id="s2", start=T0 + timedelta(minutes=120), students=("a",))
    assert find_clashes(proposed(), [before, after], zone=UTC) == []
    late = booking(start=T0 - timedelta(minutes=60), minutes=61, students=("a",))
    assert [c.kind for c in find_clashes(proposed(), [late], zone=UTC)] == ["room", "students"]


def test_unrelated_bookings_do_not_clash() -> None:
    other_room_other_people = booking(room="R9", students=("x", "y"))
    assert find_clashes(proposed(), [other_room_other_people], zone=UTC) == []


def test_a_sitting_being_moved_never_clashes_with_itself() -> None:
    itself = booking(kind="sitting", id="7", room="R1", students=("a", "b"))
    assert find_clashes(proposed(sitting_id="7"), [itself], zone=UTC) == []
    # ... but a class with the same id text is another thing.
    assert find_clashes(proposed(sitting_id="7"), [booking(kind="class", id="7")], zone=UTC)


def test_clashes_come_in_time_order_within_their_kind() -> None:
    later = booking(id="late", room="R1", start=T0 + timedelta(minutes=60))
    earlier = booking(id="early", room="R1", start=T0)
    assert [c.with_id for c in find_clashes(proposed(students=()), [later, earlier], zone=UTC)] == ["early", "late"]


def test_own_sittings_leave_the_section_sitting() -> None:
    assert section_sitters(["a", "b", "c"], ["b"]) == frozenset({"a", "c"})
    assert section_sitters(["a"], []) == frozenset({"a"})


def test_a_sitting_must_end_after_it_starts_and_carry_a_timezone() -> None:
    with pytest.raises(InvalidSitting):
        proposed(minutes=0)
    with pytest.raises(InvalidSitting):
        Proposed("R1", datetime(2026, 1, 1, 9), datetime(2026, 1, 1, 10), frozenset())


minutes = st.integers(min_value=-300, max_value=300)
lengths = st.integers(min_value=1, max_value=300)


@given(minutes, lengths, minutes, lengths)
def test_overlap_is_symmetric_and_matches_shared_minutes(a0: int, al: int, b0: int, bl: int) -> None:
    a_start, b_start = T0 + timedelta(minutes=a0), T0 + timedelta(minutes=b0)
    a_end, b_end = a_start + timedelta(minutes=al), b_start + timedelta(minutes=bl)
    shared = set(range(a0, a0 + al)) & set(range(b0, b0 + bl))
    assert overlaps(a_start, a_end, b_start, b_end) == overlaps(b_start, b_end, a_start, a_end) == bool(shared)


@given(minutes, lengths, st.sets(st.sampled_from("abcdef")), st.sets(st.sampled_from("abcdef")),
       st.sampled_from(["R1", "R2"]))
def test_a_clash_exists_exactly_when_time_overlaps_and_room_or_people_are_shared(
        b0: int, bl: int, mine: set, theirs: set, room: str) -> None:
    b = booking(room=room, start=T0 + timedelta(minutes=b0), minutes=bl, students=theirs)
    clashes = find_clashes(proposed(students=mine), [b], zone=UTC)
    in_time = overlaps(T0, T0 + timedelta(minutes=120), b.starts_at, b.ends_at)
    assert bool(clashes) == (in_time and (room == "R1" or bool(mine & theirs)))
    for c in clashes:
        assert set(c.students) <= mine & theirs
