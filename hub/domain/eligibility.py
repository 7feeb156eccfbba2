"""Attendance percentage, maximum still reachable, exam-eligibility bands and warning crossings.

Pure: no I/O and no clock. The caller counts a student's sessions in a course
(a :class:`Tally`) and passes the course's :class:`Rules`; everything here is
exact rational arithmetic (``Fraction``), so a band boundary such as 75% is
met exactly at 75 and never missed by a rounding error. See docs/eligibility.md.

Weights of a counted session: present 1, late ``late_weight`` (default 0.8),
absent 0. Excused sessions are left out of the denominator altogether (by
default; ``Rules.excused_counts=True`` counts them as present instead).
A session *counts* for a student once it is held (has ended), whatever
records it already has; the rest of the term's scheduled, not-cancelled
sessions are ``remaining`` (a future session excused ahead by approved leave
among them). The caller counts that way (``hub.db.insights``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import cached_property

ELIGIBLE, CONDONABLE, BARRED = "eligible", "condonable", "barred"
BANDS = (ELIGIBLE, CONDONABLE, BARRED)
#: Final exam eligibility: a band, with "condoned" for a condonable student whose application was approved.
CONDONED = "condoned"

_HUNDRED = Fraction(100)


@dataclass(frozen=True)
class Rules:
    """A course's thresholds (percent) and late weight; the defaults are the campus defaults."""

    late_weight: Decimal = Decimal("0.8")
    warning_pct: Decimal = Decimal("75")
    eligible_pct: Decimal = Decimal("75")
    condonable_pct: Decimal = Decimal("65")
    excused_counts: bool = False

    # Exact Fractions of the Decimal fields, computed once per Rules: the warnings
    # actor recomputes standings on every attendance change, and Fraction(Decimal)
    # was a third of a standing's cost.
    @cached_property
    def late_fraction(self) -> Fraction:
        return Fraction(self.late_weight)

    @cached_property
    def warning_fraction(self) -> Fraction:
        return Fraction(self.warning_pct)

    @cached_property
    def eligible_fraction(self) -> Fraction:
        return Fraction(self.eligible_pct)

    @cached_property
    def condonable_fraction(self) -> Fraction:
        return Fraction(self.condonable_pct)

    def __post_init__(self) -> None:
        if not 0 <= self.late_weight <= 1:
            raise ValueError("late_weight must be between 0 and 1")
        for name in ("warning_pct", "eligible_pct", "condonable_pct"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"{name} must be between 0 and 100")


@dataclass(frozen=True)
class Tally:
    """One student's sessions in one course: counted ones by status, and those still to come."""

    present: int = 0
    late: int = 0
    absent: int = 0
    excused: int = 0
    remaining: int = 0

    def __post_init__(self) -> None:
        if min(self.present, self.late, self.absent, self.excused, self.remaining) < 0:
            raise ValueError("counts must not be negative")

    @property
    def held(self) -> int:
        """Sessions held so far (ended), whatever the student's status in them: the course's held
        sessions of the student's scope, the same number the course report shows."""
        return self.present + self.late + self.absent + self.excused


def _weights(tally: Tally, rules: Rules) -> tuple[Fraction, int]:
    """(attended weight, denominator) of the sessions counted so far."""
    attended = tally.present + rules.late_fraction * tally.late
    denominator = tally.present + tally.late + tally.absent
    if rules.excused_counts:
        attended += tally.excused
        denominator += tally.excused
    return attended, denominator


def percentage(tally: Tally, rules: Rules) -> Fraction | None:
    """The exact percentage so far; ``None`` while no session counts (nothing to judge yet)."""
    attended, denominator = _weights(tally, rules)
    if denominator == 0:
        return None
    return _HUNDRED * attended / denominator


def max_reachable(tally: Tally, rules: Rules) -> Fraction:
    """The percentage at the end of term if the student is present at every remaining session."""
    attended, denominator = _weights(tally, rules)
    total = denominator + tally.remaining
    if total == 0:
        return _HUNDRED
    return _HUNDRED * (attended + tally.remaining) / total


def band(pct: Fraction | None, rules: Rules) -> str:
    """eligible (≥ eligible_pct), condonable (≥ condonable_pct), else barred; nothing counted yet is eligible."""
    if pct is None or pct >= rules.eligible_fraction:
        return ELIGIBLE
    if pct >= rules.condonable_fraction:
        return CONDONABLE
    return BARRED


def eligibility(current_band: str, condonation_state: str | None) -> str:
    """Final eligibility: a condonable student with an approved condonation is ``condoned``."""
    if current_band == CONDONABLE and condonation_state == "approved":
        return CONDONED
    return current_band


def is_below_warning(pct: Fraction | None, rules: Rules) -> bool:
    return pct is not None and pct < rules.warning_fraction


def warning_due(was_below: bool, pct: Fraction | None, rules: Rules) -> bool:
    """True exactly on a downward crossing of the warning line (once per crossing, not per change)."""
    return not was_below and is_below_warning(pct, rules)


def sessions_needed(tally: Tally, rules: Rules, target_pct: Decimal) -> int | None:
    """How many of the remaining sessions the student must attend (present) to end at ``target_pct`` or more.

    0 if missing every remaining session still ends at or above the target;
    ``None`` if even attending all of them cannot reach it.
    """
    attended, denominator = _weights(tally, rules)
    total = denominator + tally.remaining
    target = Fraction(target_pct) / 100
    if total == 0:
        return 0
    # The least whole ``needed`` with attended + needed >= target * total (exact: Fractions).
    needed = max(0, math.ceil(target * total - attended))
    return needed if needed <= tally.remaining else None


def shown(pct: Fraction) -> Decimal:
    """Two decimals, rounded DOWN, so a shown 75.00 always means "at least 75" (thresholds have two decimals)."""
    return Decimal(math.floor(pct * 100)).scaleb(-2)  # integer floor: exact, unlike a 28-digit division


@dataclass(frozen=True)
class Standing:
    """Everything shown about one student in one course (one presenter per figure: web.insights_present)."""

    tally: Tally
    rules: Rules
    percentage: Fraction | None
    max_reachable: Fraction
    band: str
    #: The best band still reachable by the end of term.
    best_band: str
    eligibility: str
    below_warning: bool
    #: Remaining sessions to attend to end eligible (None: no longer possible).
    needed_for_eligible: int | None


def standing(tally: Tally, rules: Rules, condonation_state: str | None = None) -> Standing:
    pct = percentage(tally, rules)
    current = band(pct, rules)
    best = max_reachable(tally, rules)
    return Standing(
        tally=tally,
        rules=rules,
        percentage=pct,
        max_reachable=best,
        band=current,
        best_band=band(best, rules),
        eligibility=eligibility(current, condonation_state),
        below_warning=is_below_warning(pct, rules),
        needed_for_eligible=sessions_needed(tally, rules, rules.eligible_pct),
    )
