"""Syllabus and topic progress: pure rules (no I/O, no trio).

- **A syllabus** is a course's ordered topics (position 1..n), each with an
  estimated duration and optional prerequisites among the same course's
  topics. :func:`check_prerequisites` refuses a prerequisite on itself, on a
  topic of another course (unknown here) and any cycle, naming the cycle.
- **Suggestions** for tagging a session (:func:`suggest_topics`): the next
  uncovered topics after the furthest one covered last time, in syllabus
  order (those whose prerequisites are covered, or suggested before them,
  first), then earlier
  topics still uncovered, then last time's topics (to continue them).
- **Progress** of one student in one topic (:func:`topic_progress`) from the
  sessions that covered it (attended or not), the understanding levels
  faculty recorded and released assessment marks. The rules are in
  docs/academics.md ("Syllabus and topic progress"); the constants below are
  their defaults.
- **Pace** (:func:`planned_curve`, :func:`pace_ratio`): the plan spreads the
  syllabus's estimated minutes over the term's scheduled class minutes; the
  covered minutes are the estimates of the topics tagged so far.

The CSV import of a syllabus is parsed here too (:func:`parse_syllabus_csv`),
on the contract of the other imports (``hub.domain.enrolment_import.RowError``:
every bad line reported at once, nothing applied).
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Hashable, Iterable, Mapping, Sequence, TypeVar

from .enrolment_import import RowError, csv_records

STATUSES = ("not_started", "in_progress", "completed", "mastered", "needs_review")
LEVELS = (1, 2, 3, 4, 5)
MAX_TOPICS = 200
MAX_TITLE = 200
MAX_UNIT = 120
MAX_EST_MINUTES = 6000
#: Each older observation weighs this much of the next newer one (recency weighting).
RECENCY_DECAY = 0.6
#: The latest level at or below this asks for review.
REVIEW_AT_OR_BELOW = 2
#: Mastered: competency at least this, over at least MASTERY_OBSERVATIONS observations.
MASTERY_COMPETENCY = 4.5
MASTERY_OBSERVATIONS = 2
#: Completed without the full estimated time: the latest level at least this.
UNDERSTOOD_LEVEL = 3
#: Attendance statuses that count as being there.
ATTENDED = frozenset({"present", "late"})
#: Suggestions offered for tagging a session.
SUGGESTIONS = 5

K = TypeVar("K", bound=Hashable)


class SyllabusProblem(ValueError):
    """A refused syllabus change; ``field`` names the offending input."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


# --- the syllabus itself ---------------------------------------------------------------------------

def find_cycle(requires: Mapping[K, Iterable[K]]) -> list[K] | None:
    """A prerequisite cycle ``[a, b, ..., a]`` (a requires b requires ... a), or ``None``."""
    state: dict[K, int] = {}  # 1: on the current path, 2: done
    for start in requires:
        if state.get(start):
            continue
        path: list[K] = []
        stack: list[tuple[K, Iterable[K]]] = [(start, iter(requires.get(start, ())))]
        state[start] = 1
        path.append(start)
        while stack:
            node, children = stack[-1]
            for child in children:
                seen = state.get(child)
                if seen == 1:
                    return path[path.index(child):] + [child]
                if seen is None:
                    state[child] = 1
                    path.append(child)
                    stack.append((child, iter(requires.get(child, ()))))
                    break
            else:
                state[node] = 2
                path.pop()
                stack.pop()
    return None


def check_prerequisites(titles: Mapping[K, str], requires: Mapping[K, Iterable[K]]) -> None:
    """Refuse prerequisites that are not among ``titles`` (the course's topics), on the topic itself,
    or that make a cycle. Raises :class:`SyllabusProblem` (``field="prerequisites"``)."""
    for topic, needs in requires.items():
        for need in needs:
            if need == topic:
                raise SyllabusProblem(f"“{titles.get(topic, topic)}” cannot be its own prerequisite.",
                                      "prerequisites")
            if need not in titles:
                raise SyllabusProblem(
                    f"A prerequisite of “{titles.get(topic, topic)}” is not a topic of this course’s syllabus.",
                    "prerequisites")
    cycle = find_cycle(requires)
    if cycle is not None:
        names = " → ".join(f"“{titles.get(t, t)}”" for t in cycle)
        raise SyllabusProblem(f"These prerequisites go round in a circle: {names}. Remove one of them.",
                              "prerequisites")


def check_order(current: Iterable[K], order: Sequence[K]) -> None:
    """``order`` must name every topic of the syllabus exactly once."""
    have = set(current)
    if len(set(order)) != len(order):
        raise SyllabusProblem("The new order names a topic twice.", "order")
    if set(order) != have:
        raise SyllabusProblem("The new order must list every topic of the syllabus exactly once.", "order")


def clean_title(title: str) -> str:
    """A topic's title as stored: spaces collapsed; refuses empty and too long ones."""
    cleaned = " ".join(title.split())
    if not cleaned:
        raise SyllabusProblem("A topic needs a title.", "title")
    if len(cleaned) > MAX_TITLE:
        raise SyllabusProblem(f"A topic's title is at most {MAX_TITLE} characters.", "title")
    return cleaned


def clean_unit(unit: str | None) -> str | None:
    cleaned = " ".join((unit or "").split())
    if len(cleaned) > MAX_UNIT:
        raise SyllabusProblem(f"A unit's name is at most {MAX_UNIT} characters.", "unit")
    return cleaned or None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|mins|minutes?|h|hr|hrs|hours?)?\s*$", re.IGNORECASE)


def parse_duration(text: str) -> int:
    """Minutes from ``"90"``, ``"90 min"``, ``"1.5h"`` or ``"2 hours"``; a bare number is minutes."""
    match = _DURATION.match(text)
    if match is None:
        raise SyllabusProblem(f"“{text.strip()}” is not a duration: write minutes (90) or hours (1.5h).",
                              "est_minutes")
    value = float(match.group(1))
    unit = (match.group(2) or "m").lower()
    minutes = round(value * 60) if unit.startswith("h") else round(value)
    if not 1 <= minutes <= MAX_EST_MINUTES:
        raise SyllabusProblem(f"A topic's estimated time is between 1 and {MAX_EST_MINUTES} minutes.",
                              "est_minutes")
    return minutes


# --- CSV import ------------------------------------------------------------------------------------

#: Columns of a syllabus CSV (header row, any order, case ignored).
CSV_COLUMNS = ("title", "unit", "duration", "prerequisites")
_CSV_ALIASES = {"topic": "title", "minutes": "duration", "est_minutes": "duration", "estimated": "duration",
                "module": "unit", "requires": "prerequisites", "prerequisite": "prerequisites"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class CsvTopic:
    """One topic of a syllabus file, in file order; prerequisites by title (of this file or the syllabus)."""

    line: int
    title: str
    unit: str | None
    est_minutes: int
    prerequisites: tuple[str, ...]


@dataclass(frozen=True)
class ParsedSyllabus:
    rows: tuple[CsvTopic, ...]
    errors: tuple[RowError, ...]


def parse_syllabus_csv(text: str) -> ParsedSyllabus:
    """Parse a syllabus file: ``title`` and ``duration`` required, ``unit`` and ``prerequisites``
    (titles separated by ``;``) optional. Every bad line is reported; good rows are returned either way."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        return ParsedSyllabus((), (RowError(line, None, "the file contains NUL characters; is it really CSV?"),))
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        line = text.count("\n", 0, exc.start) + 1
        return ParsedSyllabus((), (RowError(line, None, "the file is not valid Unicode text"),))
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        return ParsedSyllabus((), (RowError(1, None, f"unreadable header: {exc}"),))
    if header is None or not any(cell.strip() for cell in header):
        return ParsedSyllabus((), (RowError(1, None, "the file is empty: expected a header row"),))
    columns = [_CSV_ALIASES.get(name, name) for name in (cell.strip().lower() for cell in header)]
    missing = [c for c in ("title", "duration") if c not in columns]
    if missing:
        return ParsedSyllabus((), tuple(RowError(1, c, f"the header needs a '{c}' column") for c in missing))
    index: dict[str, int] = {}
    for i, name in enumerate(columns):
        if name in CSV_COLUMNS:
            index.setdefault(name, i)
    rows: list[CsvTopic] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for line, record in csv_records(reader, len(columns), errors, lambda: len(rows) + len(errors)):
        cells = {name: record[i] for name, i in index.items()}
        bad = [name for name, raw in cells.items() if raw.strip().startswith(FORMULA_STARTS)]
        if bad:
            errors.append(RowError(line, bad[0], f"'{bad[0]}' starts with a character a spreadsheet would run "
                                                 "as a formula; remove it"))
            continue
        try:
            title = clean_title(cells["title"])
            unit = clean_unit(cells.get("unit"))
            minutes = parse_duration(cells["duration"])
        except SyllabusProblem as problem:
            errors.append(RowError(line, problem.field, problem.message))
            continue
        key = title.casefold()
        if key in seen:
            errors.append(RowError(line, "title", f"“{title}” is already on line {seen[key]}"))
            continue
        seen[key] = line
        needs = tuple(dict.fromkeys(" ".join(p.split()) for p in cells.get("prerequisites", "").split(";")
                                    if p.strip()))
        rows.append(CsvTopic(line, title, unit, minutes, needs))
    if len(rows) > MAX_TOPICS:
        errors.append(RowError(rows[MAX_TOPICS].line, None, f"a syllabus has at most {MAX_TOPICS} topics"))
    if not rows and not errors:
        errors.append(RowError(1, None, "the file has a header but no rows"))
    return ParsedSyllabus(tuple(rows), tuple(errors))


# --- suggestions for tagging a session --------------------------------------------------------------

@dataclass(frozen=True)
class TopicRef:
    """What suggestions need of a topic."""

    topic_id: int
    position: int
    prerequisites: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Suggestion:
    topic_id: int
    #: ``next`` (after last time's), ``skipped`` (earlier, never covered) or ``continue`` (covered last time).
    why: str


def suggest_topics(topics: Sequence[TopicRef], covered: Iterable[int], last_time: Iterable[int],
                   limit: int = SUGGESTIONS) -> list[Suggestion]:
    """Topics to offer first when tagging a session: see the module doc. ``covered``: topics tagged in
    any earlier session of the course; ``last_time``: those of the latest earlier tagged session."""
    covered_set, last = set(covered), set(last_time)
    ordered = sorted(topics, key=lambda t: (t.position, t.topic_id))
    furthest = max((t.position for t in ordered if t.topic_id in last), default=0)
    uncovered = [t for t in ordered if t.topic_id not in covered_set]

    after = [t for t in uncovered if t.position > furthest]
    before = [t for t in uncovered if t.position <= furthest]
    # In syllabus order, a topic is ready when what it needs is covered or suggested before it;
    # the others follow.
    assumed, ready, waiting = set(covered_set), [], []
    for t in after:
        if t.prerequisites <= assumed:
            ready.append(t)
            assumed.add(t.topic_id)
        else:
            waiting.append(t)
    out = [Suggestion(t.topic_id, "next") for t in ready + waiting]
    out += [Suggestion(t.topic_id, "skipped") for t in before]
    out += [Suggestion(t.topic_id, "continue") for t in ordered if t.topic_id in last]
    return out[:limit]


# --- progress --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Coverage:
    """A session that covered the topic, as one student saw it."""

    at: datetime
    #: This topic's share of the session: its minutes divided among the topics it covered.
    minutes: float
    #: The student's record in it: present/late count as attended.
    attended: bool


@dataclass(frozen=True)
class Observation:
    """Evidence of understanding: a faculty's level (1-5) or a released assessment mark mapped to 1-5."""

    at: datetime
    level: float
    source: str = "understanding"  # understanding | assessment


@dataclass(frozen=True)
class Progress:
    status: str
    competency: float
    observations: int
    last_level: int | None
    minutes_spent: int
    #: Covered while the student was not there, and never attended since: needs catching up.
    missed: bool


def level_competency(level: float) -> float:
    """A level 1..5 on the competency scale 0..5 (1 -> 0, 3 -> 2.5, 5 -> 5)."""
    return (min(5.0, max(1.0, level)) - 1.0) * 5.0 / 4.0


def mark_level(marks: float, max_marks: float) -> float:
    """An assessment mark as an understanding level: 0 % -> 1, 100 % -> 5 (linear)."""
    share = min(1.0, max(0.0, marks / max_marks)) if max_marks > 0 else 0.0
    return 1.0 + 4.0 * share


def competency(observations: Sequence[Observation]) -> float:
    """Recency-weighted mean on 0..5: the newest counts 1, each older one RECENCY_DECAY of the next."""
    if not observations:
        return 0.0
    ordered = sorted(observations, key=lambda o: o.at)
    weight, total, weights = 1.0, 0.0, 0.0
    for o in reversed(ordered):
        total += weight * level_competency(o.level)
        weights += weight
        weight *= RECENCY_DECAY
    return round(total / weights, 2)


def topic_progress(est_minutes: int, coverage: Sequence[Coverage], observations: Sequence[Observation]) -> Progress:
    """One student's progress in one topic (docs/academics.md has the rules in words).

    In order: nothing attended and nothing observed -> ``not_started`` (``missed`` when a covering
    session went by without them); the latest level at or below 2 -> ``needs_review``; competency
    at least 4.5 over 2+ observations -> ``mastered``; the time spent reached the estimate, or the
    latest level is 3+ -> ``completed``; else ``in_progress``.
    """
    spent = round(sum(c.minutes for c in coverage if c.attended))
    attended = any(c.attended for c in coverage)
    ordered = sorted(observations, key=lambda o: o.at)
    last = ordered[-1].level if ordered else None
    last_level = round(last) if last is not None else None
    score = competency(ordered)
    if not attended and not ordered:
        return Progress("not_started", 0.0, 0, None, 0, missed=bool(coverage))
    if last is not None and last <= REVIEW_AT_OR_BELOW:
        status = "needs_review"
    elif len(ordered) >= MASTERY_OBSERVATIONS and score >= MASTERY_COMPETENCY:
        status = "mastered"
    elif spent >= est_minutes or (last is not None and last >= UNDERSTOOD_LEVEL):
        status = "completed"
    else:
        status = "in_progress"
    return Progress(status, score, len(ordered), last_level, spent, missed=False)


def done(status: str) -> bool:
    """Completed or better (counts towards the student's pace)."""
    return status in ("completed", "mastered")


# --- pace against the plan ------------------------------------------------------------------------

def planned_curve(total_minutes: int, session_minutes: Sequence[float]) -> list[float]:
    """Planned cumulative syllabus minutes after each session: the syllabus's estimated minutes
    spread over the term's scheduled class minutes in proportion (the plan finishes with the term)."""
    scheduled = sum(session_minutes)
    if scheduled <= 0:
        return [0.0 for _ in session_minutes]
    out, running = [], 0.0
    for minutes in session_minutes:
        running += minutes
        out.append(total_minutes * running / scheduled)
    return out


def pace_ratio(done_minutes: float, planned_minutes: float) -> float | None:
    """Covered (or done) minutes over planned minutes; ``None`` while nothing is planned yet."""
    if planned_minutes <= 0:
        return None
    return round(done_minutes / planned_minutes, 3)


# --- asks of a live session actor (like hub.domain.session_messages.ManualMarks) --------------------

@dataclass(frozen=True)
class TagTopics:
    """Ask: the syllabus topics this session covered (the whole set; the web has checked that they are
    the course's). Answers a ``hub.domain.session_messages.Receipt``."""

    topic_ids: tuple[int, ...]
    actor: str
    at: datetime


@dataclass(frozen=True)
class RecordUnderstanding:
    """Ask: understanding levels ``(student_id, level)`` of one topic (``topic_id``) or of the whole
    session (``None``). Answers a ``Receipt``; refused (nothing applied) for a student not on the
    roster, a student named twice or a level outside 1-5."""

    levels: tuple[tuple[str, int], ...]
    topic_id: int | None
    actor: str
    at: datetime


def check_levels(roster: Iterable[str], levels: Sequence[tuple[str, int]]) -> None:
    """Refuse (``SyllabusProblem`` naming the entry) levels outside 1-5, students not on the roster
    and a student named twice."""
    on_roster = set(roster)
    seen: set[str] = set()
    for i, (student_id, level) in enumerate(levels):
        if level not in LEVELS:
            raise SyllabusProblem("An understanding level is 1, 2, 3, 4 or 5.", f"levels[{i}].level")
        if student_id not in on_roster:
            raise SyllabusProblem("This student is not on the session's roster.", f"levels[{i}].student_id")
        if student_id in seen:
            raise SyllabusProblem("A student appears twice.", f"levels[{i}].student_id")
        seen.add(student_id)
