"""Course grades, grade scales, GPA and the what-if calculator.

Pure: no I/O and no clock. Everything is exact rational arithmetic
(``Fraction``, from the ``Decimal`` values PostgreSQL stores), as in
hub/domain/eligibility.py, so a band boundary such as 90% is met exactly at 90
and a GPA is never off by a rounding error. Rounding happens only for display
(:func:`shown_percent`, :func:`shown_gpa`: two decimals, rounded DOWN, so a
shown 90.00 always means "at least 90" and a shown 3.50 "at least 3.5").
See docs/academics.md, "Grades and GPA".

Course percentage over a course-term's assessments (each with a ``weight``, its
share of the course grade, and ``max_marks``):

- a graded mark counts ``marks / max_marks`` of its weight; ``absent`` counts 0;
  ``exempt`` is left out (its weight leaves the student's denominator);
- the *running* grade (:func:`running_percent`) counts only what has a mark so
  far and divides by those weights, so it reads as a percentage at any point of
  the term;
- the *final* grade (:func:`final_percent`) divides by every non-exempt weight:
  work still without a mark counts 0.

GPA (:func:`gpa`) is credit-weighted: ``sum(points * credits) / sum(credits)``
over passed and failed courses; a failed course counts with 0 points, a
withdrawn one does not count; ``None`` when nothing counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Iterable, Mapping, Sequence

GRADED, ABSENT, EXEMPT = "graded", "absent", "exempt"
MARK_STATUSES = (GRADED, ABSENT, EXEMPT)
PASSED, FAILED, WITHDRAWN = "passed", "failed", "withdrawn"
OUTCOMES = (PASSED, FAILED, WITHDRAWN)
SCALE_KINDS = ("letter", "points", "percentage")
#: The most points a band may carry (a 10-point scale is the largest in use).
MAX_POINTS = Decimal(10)
MAX_BANDS = 30

_HUNDRED = Fraction(100)


class InvalidScale(ValueError):
    """A grade scale that cannot be used; ``field`` names the offending part (``bands[2].min_percent``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Band:
    """One grade: percentages from ``min_percent`` up to the next band's minimum earn ``letter`` and ``points``."""

    letter: str
    min_percent: Decimal
    points: Decimal
    is_pass: bool


@dataclass(frozen=True)
class Scale:
    """A checked grade scale; ``bands`` highest first. Build it with :func:`make_scale`."""

    name: str
    kind: str
    bands: tuple[Band, ...]

    @property
    def max_points(self) -> Decimal:
        return self.bands[0].points

    def band_for(self, percent: Fraction) -> Band:
        """The band ``percent`` (exact, 0-100) falls in: the highest whose minimum it reaches."""
        for band in self.bands:
            if percent >= Fraction(band.min_percent):
                return band
        return self.bands[-1]  # unreachable for 0 <= percent: the lowest band starts at 0


def make_scale(name: str, kind: str, bands: Iterable[Band]) -> Scale:
    """Check and order a scale. Raises :class:`InvalidScale` (``field`` as given, in input order).

    Rules: 1-30 bands; distinct letters and distinct minimums (no overlap); minimums
    0-100 with at most 3 decimals and points 0-10 with at most 2 (as stored); the
    lowest band starts at 0 (no gap at the bottom; each band ends where the next
    higher one starts, so there is none elsewhere);
    a higher band never has fewer points; passing bands are the top ones
    (at least one passes, and no failing band sits above a passing one).
    """
    given = list(bands)
    if not name.strip():
        raise InvalidScale("Give the scale a name.", "name")
    if kind not in SCALE_KINDS:
        raise InvalidScale(f"The kind must be one of {', '.join(SCALE_KINDS)}.", "kind")
    if not 1 <= len(given) <= MAX_BANDS:
        raise InvalidScale(f"A scale has 1 to {MAX_BANDS} bands.", "bands")
    letters: set[str] = set()
    minimums: dict[Decimal, int] = {}
    for i, b in enumerate(given):
        if not b.letter.strip():
            raise InvalidScale("Every band needs a grade name.", f"bands[{i}].letter")
        if b.letter in letters:
            raise InvalidScale(f"The grade {b.letter} appears twice.", f"bands[{i}].letter")
        letters.add(b.letter)
        if not 0 <= b.min_percent <= 100 or _decimals(b.min_percent) > 3:
            raise InvalidScale("A band's minimum is a percentage from 0 to 100 (at most 3 decimals).",
                               f"bands[{i}].min_percent")
        if b.min_percent in minimums:
            raise InvalidScale(f"Two bands start at {b.min_percent}%: they would overlap.", f"bands[{i}].min_percent")
        minimums[b.min_percent] = i
        if not 0 <= b.points <= MAX_POINTS or _decimals(b.points) > 2:
            raise InvalidScale(f"Points are from 0 to {MAX_POINTS} (at most 2 decimals).", f"bands[{i}].points")
    if 0 not in minimums:
        raise InvalidScale("The lowest band must start at 0%, or some percentages would have no grade.", "bands")
    ordered = sorted(given, key=lambda b: b.min_percent, reverse=True)
    for higher, lower in zip(ordered, ordered[1:]):
        at = f"bands[{minimums[lower.min_percent]}]"
        if lower.points > higher.points:
            raise InvalidScale(f"{lower.letter} would earn more points than the higher {higher.letter}.",
                               f"{at}.points")
        if lower.is_pass and not higher.is_pass:
            raise InvalidScale(f"{lower.letter} passes but the higher {higher.letter} does not.", f"{at}.is_pass")
    if not ordered[0].is_pass:
        raise InvalidScale("At least the highest band must pass.", f"bands[{minimums[ordered[0].min_percent]}].is_pass")
    return Scale(name.strip(), kind, tuple(ordered))


def _decimals(value: Decimal) -> int:
    """How many decimals ``value`` needs (what the database's numeric columns keep)."""
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _band(letter: str, minimum: int, points: str, is_pass: bool = True) -> Band:
    return Band(letter, Decimal(minimum), Decimal(points), is_pass)


#: The campus default (migration 0031 seeds the same bands): 4.0 letter scale, pass from D.
DEFAULT_SCALE = make_scale("4.0 letter scale", "letter", (
    _band("A", 90, "4.0"), _band("A-", 85, "3.7"), _band("B+", 80, "3.3"), _band("B", 75, "3.0"),
    _band("B-", 70, "2.7"), _band("C+", 65, "2.3"), _band("C", 60, "2.0"), _band("D", 50, "1.0"),
    _band("F", 0, "0", False),
))


# --- course percentage ------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """One assessment for one student: its weight and maximum, and the student's mark if any.

    ``status`` ``None``: no mark yet. ``marks`` is set for ``graded`` (may exceed
    ``max_marks`` with bonus marks; the course percentage is capped at 100).
    """

    assessment_id: int
    weight: Decimal
    max_marks: Decimal
    status: str | None = None
    marks: Decimal | None = None

    def __post_init__(self) -> None:
        if self.weight < 0 or self.max_marks <= 0:
            raise ValueError("weight must be >= 0 and max_marks > 0")
        if self.status is not None and self.status not in MARK_STATUSES:
            raise ValueError(f"unknown mark status {self.status!r}")
        if self.status == GRADED and (self.marks is None or self.marks < 0):
            raise ValueError("a graded mark needs marks >= 0")

    @property
    def earned(self) -> Fraction:
        """The share of its weight earned (0 for absent or no mark)."""
        if self.status != GRADED or self.marks is None:
            return Fraction(0)
        return Fraction(self.weight) * Fraction(self.marks) / Fraction(self.max_marks)


def _percent(earned: Fraction, weights: Fraction) -> Fraction | None:
    if weights == 0:
        return None
    return min(_HUNDRED, _HUNDRED * earned / weights)


def running_percent(items: Iterable[Item]) -> Fraction | None:
    """The grade so far: marked work (graded or absent) over its own weights; ``None`` before any counts."""
    marked = [i for i in items if i.status in (GRADED, ABSENT)]
    return _percent(sum((i.earned for i in marked), Fraction(0)), sum((Fraction(i.weight) for i in marked), Fraction(0)))


def final_percent(items: Iterable[Item]) -> Fraction | None:
    """The final grade: every non-exempt weight counts, work without a mark counts 0; ``None`` if no weight."""
    counted = [i for i in items if i.status != EXEMPT]
    return _percent(sum((i.earned for i in counted), Fraction(0)),
                    sum((Fraction(i.weight) for i in counted), Fraction(0)))


def missing_marks(items: Iterable[Item]) -> int:
    """How many assessments (with weight) have no mark yet: they count 0 in the final grade."""
    return sum(1 for i in items if i.status is None and i.weight > 0)


# --- results and GPA ---------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    """A finished (or projected) course for GPA: its credits, the band's points and the outcome."""

    term_id: str
    course_id: str
    credits: Decimal
    points: Decimal | None
    outcome: str

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}")
        if self.credits < 0:
            raise ValueError("credits must be >= 0")
        if self.outcome != WITHDRAWN and self.points is None:
            raise ValueError("a passed or failed result needs points")


def result_from_percent(term_id: str, course_id: str, credits: Decimal, percent: Fraction,
                        scale: Scale) -> tuple[Result, Band]:
    """The result a final percentage earns on ``scale`` (a failed course is stored with 0 points)."""
    band = scale.band_for(percent)
    outcome = PASSED if band.is_pass else FAILED
    return Result(term_id, course_id, credits, band.points if band.is_pass else Decimal(0), outcome), band


def gpa(results: Iterable[Result]) -> Fraction | None:
    """Credit-weighted GPA: passed courses with their points, failed with 0, withdrawn left out.

    ``None`` when no credits count (nothing finished yet, or only 0-credit courses).
    """
    weighted, credits = Fraction(0), Fraction(0)
    for r in results:
        if r.outcome == WITHDRAWN:
            continue
        points = Fraction(r.points) if r.outcome == PASSED and r.points is not None else Fraction(0)
        weighted += points * Fraction(r.credits)
        credits += Fraction(r.credits)
    return weighted / credits if credits else None


def credits_earned(results: Iterable[Result]) -> Decimal:
    return sum((r.credits for r in results if r.outcome == PASSED), Decimal(0))


@dataclass(frozen=True)
class TermGpa:
    term_id: str
    term_gpa: Fraction | None
    cumulative_gpa: Fraction | None
    credits_attempted: Decimal
    credits_earned: Decimal


def term_gpas(results: Sequence[Result], term_order: Sequence[str]) -> list[TermGpa]:
    """Each term's GPA and the cumulative GPA up to and including it, terms in ``term_order``
    (oldest first; terms with no results are skipped)."""
    out: list[TermGpa] = []
    so_far: list[Result] = []
    for term_id in term_order:
        these = [r for r in results if r.term_id == term_id]
        if not these:
            continue
        so_far.extend(these)
        attempted = sum((r.credits for r in these if r.outcome != WITHDRAWN), Decimal(0))
        out.append(TermGpa(term_id, gpa(these), gpa(so_far), attempted, credits_earned(these)))
    return out


# --- what-if -------------------------------------------------------------------------

@dataclass(frozen=True)
class WhatIf:
    """The outcome of hoped-for marks in one course, and the GPAs it would give."""

    course_id: str
    percent: Fraction | None
    band: Band | None
    #: Assessments (with weight) left out because they have neither a mark nor a hoped-for one.
    left_out: int


def with_hopes(items: Sequence[Item], hopes: Mapping[int, Decimal]) -> list[Item]:
    """``items`` with a hoped-for mark filled in where an assessment has none (a known mark wins).

    Raises ``ValueError`` for a hope on an unknown assessment, below 0 or above its maximum.
    """
    by_id = {i.assessment_id: i for i in items}
    for aid, hope in hopes.items():
        item = by_id.get(aid)
        if item is None:
            raise ValueError(f"assessment {aid} is not part of this course")
        if not 0 <= hope <= item.max_marks:
            raise ValueError(f"a hoped-for mark is from 0 to {item.max_marks}")
    return [Item(i.assessment_id, i.weight, i.max_marks, GRADED, hopes[i.assessment_id])
            if i.status is None and i.assessment_id in hopes else i for i in items]


def what_if(course_id: str, items: Sequence[Item], hopes: Mapping[int, Decimal], scale: Scale) -> WhatIf:
    """The course grade if the hoped-for marks came true.

    Work with neither a mark nor a hope is left out (the running rule), so a
    student can try one assessment at a time; ``left_out`` says how many.
    """
    filled = with_hopes(items, hopes)
    pct = running_percent(filled)
    return WhatIf(course_id, pct, scale.band_for(pct) if pct is not None else None, missing_marks(filled))


def projected_results(term_id: str, projections: Iterable[tuple[WhatIf, Decimal]]) -> list[Result]:
    """The projected results of what-if courses (with their credits), for :func:`gpa` beside real ones."""
    out = []
    for w, credits in projections:
        if w.band is None:
            continue
        outcome = PASSED if w.band.is_pass else FAILED
        out.append(Result(term_id, w.course_id, credits, w.band.points if w.band.is_pass else Decimal(0), outcome))
    return out


# --- display --------------------------------------------------------------------------

def shown_percent(pct: Fraction) -> Decimal:
    """Two decimals, rounded DOWN, so a shown 90.00 always means "at least 90" (the letter agrees)."""
    return Decimal(math.floor(pct * 100)).scaleb(-2)


def shown_gpa(value: Fraction) -> Decimal:
    """Two decimals, rounded DOWN, so a shown 3.50 always means "at least 3.5"."""
    return Decimal(math.floor(value * 100)).scaleb(-2)
