"""Exam sittings: who sits them, and what a proposed sitting clashes with.

Pure: no I/O and no clock. The database adapter (hub/db/exams.py) loads what
already occupies the proposed time (class sessions and other sittings, each a
:class:`Booking` with its room and the students it holds) and asks
:func:`find_clashes`; a non-empty answer is a refusal (HTTP 409) or, for the
faculty's "check before saving", the list shown. Each :class:`Clash` carries a
plain sentence (``reason``) saying what is in the way.

The rules:

- **Room**: a room holds one thing at a time. A class session or another
  sitting in the same room whose time overlaps the proposed one clashes.
- **Students**: nobody sits two things at once. A class session the
  concerned students attend, or another sitting they sit (their section's or
  one of their own), clashes when the times overlap; the clash names how many
  of them and which.
- Times overlap when one starts before the other ends (``[starts, ends)``:
  a sitting may start the minute a class ends).
- A student with a sitting of their own for an assessment (a make-up or an
  accommodation) does not sit their section's sitting of it
  (:func:`section_sitters`), so neither clashes for them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Iterable, Literal

BookingKind = Literal["class", "sitting"]
ClashKind = Literal["room", "students"]

#: How many students a reason names before it says "and N others".
NAMED_IN_REASON = 3


class InvalidSitting(ValueError):
    """A sitting that can never be scheduled (it ends before it starts)."""


@dataclass(frozen=True)
class Booking:
    """Something that already occupies a room and some students for a while."""

    kind: BookingKind
    #: The class session's id, or the sitting's id as text.
    id: str
    #: What it is, in words: "CS101 lecture (section A)", "MA201 midterm (make-up)".
    label: str
    room_id: str
    room_name: str
    starts_at: datetime
    ends_at: datetime
    #: The students it holds (attending the class, or sitting the sitting).
    students: frozenset[str]


@dataclass(frozen=True)
class Proposed:
    """The sitting being scheduled (``sitting_id`` when an existing one is moved: it never clashes with itself)."""

    room_id: str
    starts_at: datetime
    ends_at: datetime
    students: frozenset[str]
    sitting_id: str | None = None

    def __post_init__(self) -> None:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise InvalidSitting("a sitting's times must carry a timezone")
        if self.ends_at <= self.starts_at:
            raise InvalidSitting("a sitting must end after it starts")


@dataclass(frozen=True)
class Clash:
    """One thing in the way of a proposed sitting, and why, in plain words."""

    kind: ClashKind
    with_kind: BookingKind
    with_id: str
    label: str
    room_id: str
    room_name: str
    starts_at: datetime
    ends_at: datetime
    #: The concerned students who are busy then (empty for a room clash), sorted.
    students: tuple[str, ...]
    reason: str


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    """Whether two half-open intervals ``[start, end)`` share an instant."""
    return a_start < b_end and b_start < a_end


def section_sitters(section_students: Iterable[str], own_sitting: Iterable[str]) -> frozenset[str]:
    """Who sits a section's sitting: its students, except those with a sitting of their own for the assessment."""
    return frozenset(section_students) - frozenset(own_sitting)


def _when(starts: datetime, ends: datetime, zone: tzinfo) -> str:
    s, e = starts.astimezone(zone), ends.astimezone(zone)
    day = s.strftime("%a %d %b %Y")
    if s.date() == e.date():
        return f"{day}, {s:%H:%M}–{e:%H:%M}"
    return f"{day} {s:%H:%M} to {e:%a %d %b %Y} {e:%H:%M}"


def _who(students: tuple[str, ...], names: dict[str, str]) -> str:
    shown = [names.get(s, s) for s in students[:NAMED_IN_REASON]]
    rest = len(students) - len(shown)
    listed = ", ".join(shown) + (f" and {rest} other{'s' if rest != 1 else ''}" if rest else "")
    count = f"{len(students)} student{'s' if len(students) != 1 else ''}"
    return f"{count} ({listed})"


def find_clashes(
    proposed: Proposed, bookings: Iterable[Booking], *, zone: tzinfo, names: dict[str, str] | None = None,
) -> list[Clash]:
    """Every booking in the way of ``proposed``: room clashes first, then students', each in time order.

    ``zone`` is the term's timezone (reasons say local times); ``names`` maps
    student ids to the names a reason uses (an id without one is shown as is).
    A booking can clash twice (same room and same students): both are listed.
    """
    names = names or {}
    room: list[Clash] = []
    people: list[Clash] = []
    for b in sorted(bookings, key=lambda b: (b.starts_at, b.kind, b.id)):
        if b.kind == "sitting" and b.id == proposed.sitting_id:
            continue
        if not overlaps(proposed.starts_at, proposed.ends_at, b.starts_at, b.ends_at):
            continue
        when = _when(b.starts_at, b.ends_at, zone)
        if b.room_id == proposed.room_id:
            room.append(Clash("room", b.kind, b.id, b.label, b.room_id, b.room_name, b.starts_at, b.ends_at, (),
                              f"{b.room_name} is taken by {b.label} on {when}."))
        busy = tuple(sorted(proposed.students & b.students))
        if busy:
            one = len(busy) == 1
            doing = ("has" if one else "have") if b.kind == "class" else ("sits" if one else "sit")
            people.append(Clash("students", b.kind, b.id, b.label, b.room_id, b.room_name, b.starts_at, b.ends_at,
                                busy, f"{_who(busy, names)} {doing} {b.label} in {b.room_name} on {when}."))
    return room + people
