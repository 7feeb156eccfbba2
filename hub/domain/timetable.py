"""Weekly timetable slots × term dates − holidays → class-session occurrences. Pure.

Two steps, both free of I/O and clock reads (``now`` is passed in):

- :func:`occurrences` expands recurring weekly slots over a term into
  concrete instants, skipping holidays. Wall-clock slot times are turned into
  instants in the term's IANA timezone with :mod:`zoneinfo`, so a 09:00 slot
  stays at 09:00 local time across DST changes. A slot time that does not
  exist on a spring-forward day (e.g. 02:30) lands on the first valid instant
  after the gap (zoneinfo's ``fold=0`` rule: 03:30); an ambiguous one on a
  fall-back day is the first of the two (``fold=0``).
- :func:`plan_regeneration` compares the wanted occurrences with the sessions
  that already exist and says what to create, update, delete and cancel, so
  regenerating is idempotent. An occurrence is identified by
  ``(slot_id, occurrence_at)``, where ``occurrence_at`` is the start the slot
  gave it (a rescheduled session keeps its original start there), so
  regeneration never duplicates a session, never touches the past, and never
  deletes a session that has history (attendance, events, faculty actions):
  such a session is cancelled instead. A future session that a regeneration
  cancelled (not a person) and whose occurrence is wanted again (the holiday
  was deleted, the slot moved back) is restored to ``scheduled``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: Why regeneration cancels (rather than deletes) a session with history.
REMOVED_REASON = "Removed from the timetable"


@dataclass(frozen=True)
class Term:
    term_id: str
    starts_on: date
    ends_on: date
    timezone: str


@dataclass(frozen=True)
class Holiday:
    starts_on: date
    ends_on: date
    name: str

    def covers(self, day: date) -> bool:
        return self.starts_on <= day <= self.ends_on


@dataclass(frozen=True)
class WeeklySlot:
    """A recurring class: ``weekday`` 0 = Monday, times are wall-clock in the term's timezone."""

    slot_id: str
    section_id: str
    course_id: str
    room_id: str
    weekday: int
    starts_time: time
    ends_time: time
    valid_from: date | None = None
    valid_until: date | None = None


@dataclass(frozen=True)
class Occurrence:
    slot_id: str
    section_id: str
    course_id: str
    room_id: str
    starts_at: datetime  # UTC
    ends_at: datetime  # UTC

    @property
    def key(self) -> tuple[str, datetime]:
        return (self.slot_id, self.starts_at)


@dataclass(frozen=True)
class ExistingSession:
    """A timetable-generated session already stored (``slot_id`` is ``None`` once its slot was deleted)."""

    session_id: str
    slot_id: str | None
    #: The start its slot gave it: ``coalesce(rescheduled_from, starts_at)``.
    occurrence_at: datetime
    starts_at: datetime
    ends_at: datetime
    room_id: str
    status: str
    rescheduled: bool
    #: Attendance, events, token uses or faculty actions refer to it: never delete it.
    has_history: bool
    #: Cancelled by a regeneration and not acted on since: may come back when wanted again.
    restorable: bool = False


@dataclass(frozen=True)
class SessionUpdate:
    """A future, untouched session whose slot moved room or changed its end time."""

    session_id: str
    room_id: str
    ends_at: datetime


@dataclass(frozen=True)
class RegenerationPlan:
    create: tuple[Occurrence, ...] = ()
    update: tuple[SessionUpdate, ...] = ()
    delete: tuple[str, ...] = ()
    cancel: tuple[str, ...] = ()
    kept: int = 0
    skipped_holidays: int = 0
    #: Back to ``scheduled``, with the room and end time they should have.
    restore: tuple[SessionUpdate, ...] = ()

    @property
    def changed_session_ids(self) -> list[str]:
        return [*(u.session_id for u in self.update), *self.delete, *self.cancel,
                *(u.session_id for u in self.restore)]


class InvalidTimezone(ValueError):
    pass


def zone(name: str) -> ZoneInfo:
    """The IANA timezone ``name``; :class:`InvalidTimezone` if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidTimezone(f"unknown timezone {name!r}") from exc


def local_instant(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """``wall`` on ``day`` in ``tz`` as a UTC instant (gap times move forward, ambiguous ones take the first)."""
    return datetime.combine(day, wall, tzinfo=tz).astimezone(timezone.utc)


@dataclass
class _Expansion:
    found: list[Occurrence] = field(default_factory=list)
    skipped_holidays: int = 0


def occurrences(
    term: Term,
    slots: list[WeeklySlot],
    holidays: list[Holiday],
    *,
    from_day: date | None = None,
    to_day: date | None = None,
) -> tuple[list[Occurrence], int]:
    """Every slot occurrence on the term's days in ``[from_day, to_day]`` except holidays.

    Returns the occurrences (sorted by start, then slot id) and how many were
    skipped because of a holiday. Each slot is further limited to its own
    ``valid_from``/``valid_until``.
    """
    tz = zone(term.timezone)
    first = max(term.starts_on, from_day) if from_day else term.starts_on
    last = min(term.ends_on, to_day) if to_day else term.ends_on
    result = _Expansion()
    by_weekday: dict[int, list[WeeklySlot]] = {}
    for slot in slots:
        by_weekday.setdefault(slot.weekday, []).append(slot)
    day = first
    while day <= last:
        for slot in by_weekday.get(day.weekday(), ()):
            if (slot.valid_from and day < slot.valid_from) or (slot.valid_until and day > slot.valid_until):
                continue
            if any(h.covers(day) for h in holidays):
                result.skipped_holidays += 1
                continue
            starts = local_instant(day, slot.starts_time, tz)
            ends = local_instant(day, slot.ends_time, tz)
            if ends <= starts:  # the end fell into a DST gap the start did not: keep the slot's length
                ends = starts + (datetime.combine(day, slot.ends_time) - datetime.combine(day, slot.starts_time))
            result.found.append(Occurrence(slot.slot_id, slot.section_id, slot.course_id, slot.room_id, starts, ends))
        day += timedelta(days=1)
    result.found.sort(key=lambda o: (o.starts_at, o.slot_id))
    return result.found, result.skipped_holidays


def plan_regeneration(
    wanted: list[Occurrence], existing: list[ExistingSession], *, now: datetime, skipped_holidays: int = 0
) -> RegenerationPlan:
    """What to change so the stored generated sessions match ``wanted`` from ``now`` on.

    - an occurrence starting after ``now`` with no session of its key: create;
    - a session of a wanted key: keep; if it is still ``scheduled``, in the
      future and not rescheduled by hand, follow its slot's room and end time;
      if a regeneration cancelled it (``restorable``) and it is in the future,
      restore it (a rescheduled one keeps its own room and end);
    - a session starting after ``now``, still ``scheduled``, whose key is no
      longer wanted (slot deleted or moved, holiday added): delete it, or
      cancel it when it has history;
    - anything that started already, is open, closed or cancelled: untouched.
    """
    by_key = {(s.slot_id, s.occurrence_at): s for s in existing if s.slot_id is not None}
    wanted_keys = set()
    create, update, restore = [], [], []
    kept = 0
    for occurrence in wanted:
        wanted_keys.add(occurrence.key)
        session = by_key.get(occurrence.key)
        if session is None:
            if occurrence.starts_at > now:
                create.append(occurrence)
            continue
        kept += 1
        if session.status == "cancelled" and session.restorable and session.starts_at > now:
            restore.append(SessionUpdate(session.session_id, session.room_id, session.ends_at) if session.rescheduled
                           else SessionUpdate(session.session_id, occurrence.room_id, occurrence.ends_at))
        elif (session.status == "scheduled" and not session.rescheduled and session.starts_at > now
                and (session.room_id, session.ends_at) != (occurrence.room_id, occurrence.ends_at)):
            update.append(SessionUpdate(session.session_id, occurrence.room_id, occurrence.ends_at))
    delete: list[str] = []
    cancel: list[str] = []
    for session in existing:
        if session.slot_id is not None and (session.slot_id, session.occurrence_at) in wanted_keys:
            continue
        if session.status != "scheduled" or session.starts_at <= now:
            continue
        (cancel if session.has_history else delete).append(session.session_id)
    return RegenerationPlan(tuple(create), tuple(update), tuple(delete), tuple(cancel), kept, skipped_holidays,
                            tuple(restore))
