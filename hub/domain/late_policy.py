"""Late work: when a student may still submit, and what a late submission costs. Pure.

An assignment has a due date and an optional cut-off; a student's extension
replaces both for that student (:func:`deadline_for`). Lateness is counted
in whole minutes after the student's due date, a started minute counting
whole (:func:`late_minutes`).

The penalty (:func:`late_penalty`), in the order it is applied:

1. *Grace*: lateness up to ``grace_minutes`` costs nothing. Beyond it the
   whole lateness counts, from the due date (grace forgives a slow upload,
   it does not move the deadline).
2. *Rate*: ``penalty_percent`` of the maximum marks per 24 h late: pro rata
   (``period="day"``: 36 h late is 1.5 periods) or per started 24 h
   (``period="started_day"``: 1 minute late is one whole period).
3. *Cap*: the deduction is at most ``cap_percent`` of the maximum marks.
4. *Floor*: never below zero; and with ``pass_percent`` set, work whose raw
   marks passed never drops below the pass mark (City, University of
   London's rule: "never below the pass mark").

Arithmetic is exact (:class:`fractions.Fraction`); only :func:`hundredths`
rounds, for storage in ``numeric(8,2)`` and for display, half up (in the
student's favour at a tie).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

PERIODS = ("day", "started_day")
#: Minutes in one penalty period.
PERIOD_MINUTES = 24 * 60

#: Why a submission is refused now (API error codes; words in web/wording.py).
NOT_OPEN = "assignment_not_open"
CLOSED = "assignment_closed"
ATTEMPTS_USED = "attempts_used"
RESUBMIT_AFTER_DUE = "resubmission_after_due"


@dataclass(frozen=True)
class LatePolicy:
    grace_minutes: int = 0
    penalty_percent: Decimal | Fraction | int = 0
    period: str = "started_day"
    cap_percent: Decimal | Fraction | int = 100
    pass_percent: Decimal | Fraction | int | None = None

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise ValueError(f"period must be one of {PERIODS}")
        if self.grace_minutes < 0:
            raise ValueError("grace_minutes must not be negative")
        for name in ("penalty_percent", "cap_percent", "pass_percent"):
            value = getattr(self, name)
            if value is not None and not 0 <= Fraction(value) <= 100:
                raise ValueError(f"{name} must be between 0 and 100")


@dataclass(frozen=True)
class Deadline:
    """A student's own dates: the due date and the cut-off (None: no cut-off)."""

    due_at: datetime
    cut_off_at: datetime | None
    extended: bool = False


@dataclass(frozen=True)
class Penalty:
    """The outcome for one piece of work: exact ``marks`` after the penalty and what was ``deducted``."""

    raw: Fraction
    marks: Fraction
    deducted: Fraction
    late_minutes: int
    floored: bool
    capped: bool

    @property
    def applied(self) -> bool:
        return self.deducted > 0

    def note(self, max_marks: Decimal | Fraction | int, policy: LatePolicy) -> str | None:
        """Plain words for the student and the grader (``penalty_note``); None when nothing was taken."""
        if self.late_minutes == 0:
            return None
        late = describe_lateness(self.late_minutes)
        if not self.applied:
            if self.late_minutes <= policy.grace_minutes:
                return f"Submitted {late} late, within the {policy.grace_minutes} min grace: no penalty."
            if self.floored:
                return f"Submitted {late} late; the work passed, so it keeps the pass mark: no penalty."
            return f"Submitted {late} late: no penalty under this assignment's policy."
        rate = f"{_num(policy.penalty_percent)} % of {_num(max_marks)} marks per " + (
            "day late, pro rata" if policy.period == "day" else "started day late")
        words = f"Submitted {late} late: {rate}"
        if self.capped:
            words += f", at most {_num(policy.cap_percent)} %"
        words += f"; {hundredths(self.deducted)} marks taken off"
        if self.floored:
            words += ", down to the pass mark and no lower"
        return words + "."


def deadline_for(due_at: datetime, cut_off_at: datetime | None,
                 extension: tuple[datetime, datetime | None] | None = None) -> Deadline:
    """The student's dates. An extension ``(due, cut_off)`` replaces the due date; its own cut-off, else
    the later of the assignment's cut-off and the new due date (None stays None: no cut-off)."""
    if extension is None:
        return Deadline(due_at, cut_off_at)
    new_due, new_cut = extension
    if new_cut is None and cut_off_at is not None:
        new_cut = max(cut_off_at, new_due)
    return Deadline(new_due, new_cut, extended=True)


def late_minutes(submitted_at: datetime, due_at: datetime) -> int:
    """Whole minutes after the due date, a started minute counting whole; 0 when on time."""
    late = submitted_at - due_at
    if late <= timedelta(0):
        return 0
    micro = late // timedelta(microseconds=1)
    return -(-micro // 60_000_000)


def submission_problem(now: datetime, deadline: Deadline, *, opens_at: datetime | None, published: bool,
                       attempts_so_far: int, max_attempts: int) -> str | None:
    """Why a student may not submit now (a code above), or None.

    Before the due date: up to ``max_attempts`` attempts (the latest counts).
    After it: only a first submission (late), and only until the cut-off.
    """
    if not published or (opens_at is not None and now < opens_at):
        return NOT_OPEN
    if deadline.cut_off_at is not None and now > deadline.cut_off_at:
        return CLOSED
    if attempts_so_far >= max_attempts:
        return ATTEMPTS_USED
    if attempts_so_far > 0 and now > deadline.due_at:
        return RESUBMIT_AFTER_DUE
    return None


def late_penalty(policy: LatePolicy, raw: Decimal | Fraction | int, max_marks: Decimal | Fraction | int,
                 minutes_late: int) -> Penalty:
    """The marks after the late penalty (module docstring). ``raw`` must lie in [0, max_marks]."""
    raw_f, max_f = Fraction(raw), Fraction(max_marks)
    if max_f <= 0 or not 0 <= raw_f <= max_f:
        raise ValueError("raw marks must lie between 0 and the maximum marks")
    if minutes_late < 0:
        raise ValueError("minutes_late must not be negative")
    if minutes_late <= policy.grace_minutes:
        return Penalty(raw_f, raw_f, Fraction(0), minutes_late, floored=False, capped=False)
    if policy.period == "day":
        periods = Fraction(minutes_late, PERIOD_MINUTES)
    else:
        periods = Fraction(math.ceil(Fraction(minutes_late, PERIOD_MINUTES)))
    percent = Fraction(policy.penalty_percent) * periods
    cap = Fraction(policy.cap_percent)
    capped = percent > cap
    percent = min(percent, cap)
    marks = max(Fraction(0), raw_f - max_f * percent / 100)
    floored = False
    if policy.pass_percent is not None:
        pass_mark = max_f * Fraction(policy.pass_percent) / 100
        if raw_f >= pass_mark and marks < pass_mark:
            marks, floored = pass_mark, True
    return Penalty(raw_f, marks, raw_f - marks, minutes_late, floored=floored, capped=capped)


def hundredths(value: Decimal | Fraction | int) -> Decimal:
    """``value`` rounded to 0.01, half up: the stored ``numeric(8,2)`` and the shown figure."""
    scaled = Fraction(value) * 100
    cents = math.floor(scaled + Fraction(1, 2)) if scaled >= 0 else -math.floor(-scaled + Fraction(1, 2))
    return Decimal(cents).scaleb(-2)


def describe_lateness(minutes: int) -> str:
    """``2 days 3 h``, ``5 h 10 min``, ``12 min``: a lateness in words with units."""
    days, rest = divmod(minutes, PERIOD_MINUTES)
    hours, mins = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days} day" + ("s" if days != 1 else ""))
    if hours:
        parts.append(f"{hours} h")
    if mins and not days:
        parts.append(f"{mins} min")
    return " ".join(parts) or "0 min"


def _num(value: Decimal | Fraction | int) -> str:
    shown = hundredths(value).normalize()
    return f"{shown:f}"
