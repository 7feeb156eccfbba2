"""Early warning, the pure part: a student-course's facts as of a cutoff, its feature vector, the
attendance rule, risk levels, and the words of reasons and actions (docs/analytics.md).

The same :func:`feature_vector` serves training (finished terms, facts as of a cutoff inside the
term) and live scoring (running courses, facts as of now), so the model sees one definition.
Nothing here knows scikit-learn: the service (hub/services/risk_model.py) turns vectors into
probabilities and hands back each feature's contribution; :func:`reasons` and
:func:`improvements` turn those into sentences. No I/O, no trio.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Sequence

#: The rule the model must beat: attendance below this share of held classes.
RULE_LINE = 0.75
#: Probability at or above which a student is in high / medium risk.
HIGH_AT = 0.5
MEDIUM_AT = 0.25
#: The rule's levels by attendance: below RULE_LINE high, below this medium.
RULE_MEDIUM_LINE = 0.85
#: "Falling" compares the last this-many days with the weeks before.
TREND_WINDOW = timedelta(days=21)
#: The action "attend the next N classes" uses at most this many classes.
NEXT_CLASSES = 4
#: Training rows are taken at these points of each finished term (share of the term elapsed).
TRAINING_CUTOFFS = (0.3, 0.5, 0.7)

ATTENDED = ("present", "late")


@dataclass(frozen=True)
class SessionMark:
    """One held class: its start and the student's status (``absent`` when there is no record)."""

    starts_at: datetime
    status: str


@dataclass(frozen=True)
class MarkFact:
    """One assessment held before the cutoff: the mark's share of the maximum (0..1; ``None``: exempt),
    its weight, and whether the student was absent from it."""

    fraction: float | None
    weight: float
    absent: bool = False


@dataclass(frozen=True)
class WorkFact:
    """One published assignment due before the cutoff: handed in or not, and how late (minutes)."""

    submitted: bool
    late_minutes: int = 0


@dataclass(frozen=True)
class CaseFacts:
    """What the hub knows about one student in one course of a term, as of ``cutoff``."""

    cutoff: datetime
    term_start: datetime
    term_end: datetime
    sessions: tuple[SessionMark, ...] = ()
    #: Classes of the course still to come before the term ends.
    remaining: int = 0
    flags: int = 0
    marks: tuple[MarkFact, ...] = ()
    work: tuple[WorkFact, ...] = ()
    #: Syllabus topics taught (tagged on a held class) and how many of those the student missed.
    topics_taught: int = 0
    topics_missed: int = 0
    #: Mean understanding level (1..5) faculty recorded for the student; None: none recorded.
    understanding: float | None = None


FEATURES: tuple[str, ...] = (
    "attendance_rate", "attendance_drop", "absence_streak", "late_share", "excused_share", "flags",
    "marks_shortfall", "no_marks_yet", "missed_assessments", "missing_work", "late_work",
    "topics_missed_share", "low_understanding", "term_elapsed",
)


def _attendance(sessions: Sequence[SessionMark]) -> float | None:
    counted = [s for s in sessions if s.status != "excused"]
    if not counted:
        return None
    return sum(1 for s in counted if s.status in ATTENDED) / len(counted)


def attendance_rate(facts: CaseFacts) -> float | None:
    """Share of held classes attended (present or late), excused ones left out; None before any class."""
    return _attendance(facts.sessions)


def attendance_drop(facts: CaseFacts) -> float:
    """How much attendance fell: the rate before the last three weeks minus the rate within them (0 if rising)."""
    edge = facts.cutoff - TREND_WINDOW
    before = _attendance([s for s in facts.sessions if s.starts_at < edge])
    recent = _attendance([s for s in facts.sessions if s.starts_at >= edge])
    if before is None or recent is None:
        return 0.0
    return max(0.0, before - recent)


def absence_streak(facts: CaseFacts) -> int:
    """Classes missed in a row up to the cutoff (excused ones neither break nor extend it)."""
    streak = 0
    for s in reversed(facts.sessions):
        if s.status == "excused":
            continue
        if s.status in ATTENDED:
            break
        streak += 1
    return streak


def marks_so_far(facts: CaseFacts) -> float | None:
    """Weighted mean share of the maximum over assessments so far (absent counts 0); None without any."""
    counted = [m for m in facts.marks if m.fraction is not None or m.absent]
    total = sum(m.weight for m in counted)
    if not counted:
        return None
    if total <= 0:
        return sum((m.fraction or 0.0) for m in counted) / len(counted)
    return sum((m.fraction or 0.0) * m.weight for m in counted) / total


def feature_vector(facts: CaseFacts) -> tuple[float, ...]:
    """The model's inputs, in :data:`FEATURES` order. Missing facts get a neutral value (full attendance,
    no shortfall) and, for marks, an indicator, so a course without assessments is not penalised."""
    rate = attendance_rate(facts)
    counted = [s for s in facts.sessions if s.status != "excused"]
    attended = [s for s in counted if s.status in ATTENDED]
    late_share = sum(1 for s in attended if s.status == "late") / len(attended) if attended else 0.0
    excused_share = (sum(1 for s in facts.sessions if s.status == "excused") / len(facts.sessions)
                     if facts.sessions else 0.0)
    marks = marks_so_far(facts)
    due = len(facts.work)
    missing = sum(1 for w in facts.work if not w.submitted)
    late = sum(1 for w in facts.work if w.submitted and w.late_minutes > 0)
    span = (facts.term_end - facts.term_start).total_seconds()
    elapsed = (facts.cutoff - facts.term_start).total_seconds() / span if span > 0 else 1.0
    return (
        1.0 if rate is None else rate,
        attendance_drop(facts),
        float(absence_streak(facts)),
        late_share,
        excused_share,
        float(facts.flags),
        0.0 if marks is None else 1.0 - marks,
        1.0 if marks is None else 0.0,
        float(sum(1 for m in facts.marks if m.absent)),
        missing / due if due else 0.0,
        late / due if due else 0.0,
        facts.topics_missed / facts.topics_taught if facts.topics_taught else 0.0,
        0.0 if facts.understanding is None else max(0.0, 3.0 - facts.understanding),
        min(1.0, max(0.0, elapsed)),
    )


# --- levels and the rule --------------------------------------------------------------------

def level_of(probability: float) -> str:
    """``high``, ``medium`` or ``low`` for a model's probability."""
    if probability >= HIGH_AT:
        return "high"
    return "medium" if probability >= MEDIUM_AT else "low"


def rule_flag(facts: CaseFacts) -> bool:
    """The baseline rule: attendance below 75 % of held classes (nobody is flagged before any class)."""
    rate = attendance_rate(facts)
    return rate is not None and rate < RULE_LINE


def rule_score(vector: Sequence[float]) -> float:
    """The rule's ranking score on a vector: the attendance shortfall (1 - rate)."""
    return 1.0 - vector[0]


def rule_level(facts: CaseFacts) -> str:
    rate = attendance_rate(facts)
    if rate is None:
        return "low"
    if rate < RULE_LINE:
        return "high"
    return "medium" if rate < RULE_MEDIUM_LINE else "low"


# --- words ----------------------------------------------------------------------------------

LEVEL_WORDS = {"low": "low", "medium": "medium", "high": "high"}


def _pct(x: float) -> str:
    return f"{round(x * 100)} %"


def _classes(n: int) -> str:
    return f"{n} class" if n == 1 else f"{n} classes"


@dataclass(frozen=True)
class Reason:
    code: str
    sentence: str
    weight: float


def describe(feature: str, facts: CaseFacts) -> str | None:
    """The plain sentence behind a feature's contribution (None: nothing worth saying)."""
    if feature in ("attendance_rate", "attendance_drop", "absence_streak"):
        rate = attendance_rate(facts)
        if rate is None:
            return None
        # A drop or a streak is only a reason when there is one worth naming.
        if (feature == "attendance_drop" and attendance_drop(facts) < 0.1) or (
                feature == "absence_streak" and absence_streak(facts) < 2):
            return None
        held = len([s for s in facts.sessions if s.status != "excused"])
        words = f"attended {_pct(rate)} of {_classes(held)} so far"
        drop = attendance_drop(facts)
        if drop >= 0.1:
            words += f", falling over the last {TREND_WINDOW.days // 7} weeks"
        streak = absence_streak(facts)
        if streak >= 2:
            words += f"; missed the last {_classes(streak)} in a row"
        return words[0].upper() + words[1:]
    if feature == "late_share":
        attended = [s for s in facts.sessions if s.status in ATTENDED]
        late = sum(1 for s in attended if s.status == "late")
        return f"Arrived late to {late} of {_classes(len(attended))} attended" if late else None
    if feature == "flags":
        return f"{facts.flags} check-in{'s' if facts.flags != 1 else ''} needed a second look" if facts.flags else None
    if feature in ("marks_shortfall", "missed_assessments"):
        marks = marks_so_far(facts)
        if marks is None:
            return None
        missed = sum(1 for m in facts.marks if m.absent)
        words = f"Marks so far average {_pct(marks)}"
        if missed:
            words += f", with {missed} assessment{'s' if missed != 1 else ''} missed"
        return words
    if feature in ("missing_work", "late_work"):
        due = len(facts.work)
        missing = sum(1 for w in facts.work if not w.submitted)
        late = sum(1 for w in facts.work if w.submitted and w.late_minutes > 0)
        parts = []
        if missing:
            parts.append(f"{missing} of {due} assignment{'s' if due != 1 else ''} not handed in")
        if late:
            parts.append(f"{late} handed in late")
        return ("; ".join(parts)[0].upper() + "; ".join(parts)[1:]) if parts else None
    if feature == "topics_missed_share":
        if not facts.topics_missed:
            return None
        return f"Missed the classes of {facts.topics_missed} of {facts.topics_taught} topics taught so far"
    if feature == "low_understanding":
        if facts.understanding is None or facts.understanding >= 3:
            return None
        return f"Understanding recorded in class averages {facts.understanding:.1f} of 5"
    return None


#: A feature must add at least this much to the log-odds to be named as a reason (smaller pushes
#: are noise: an attendance of 92 % against a campus mean of 93 % is no reason to worry).
MIN_REASON_WEIGHT = 0.1


def reasons(facts: CaseFacts, contributions: dict[str, float], *, top: int = 3) -> list[Reason]:
    """The main reasons behind a risk: the features pushing it up most (contribution at least
    :data:`MIN_REASON_WEIGHT`), merged when they say the same thing (attendance rate, drop and streak
    are one sentence), largest first."""
    merged: dict[str, Reason] = {}
    for feature, weight in sorted(contributions.items(), key=lambda kv: -kv[1]):
        if weight < MIN_REASON_WEIGHT:
            break
        sentence = describe(feature, facts)
        if sentence is None:
            continue
        if sentence in merged:
            old = merged[sentence]
            merged[sentence] = Reason(old.code, sentence, old.weight + weight)
        else:
            merged[sentence] = Reason(feature, sentence, weight)
    return sorted(merged.values(), key=lambda r: -r.weight)[:top]


def rule_reasons(facts: CaseFacts) -> list[Reason]:
    """The rule's one reason (its attendance), when it flags or nearly flags."""
    sentence = describe("attendance_rate", facts)
    rate = attendance_rate(facts)
    if sentence is None or rate is None or rate >= RULE_MEDIUM_LINE:
        return []
    return [Reason("attendance_rate", sentence, 1.0 - rate)]


@dataclass(frozen=True)
class Improvement:
    """A concrete step and the facts as they would be after it (the service re-scores them)."""

    code: str
    #: Sentence with ``{change}`` for the levels before and after (filled in by :func:`action_sentence`).
    template: str
    facts: CaseFacts


def improvements(facts: CaseFacts) -> list[Improvement]:
    """Steps a student can still take: attend the next classes; hand in missing work (late is better
    than never). Each comes with the facts as they would be, to be re-scored by the same model."""
    found = []
    n = min(NEXT_CLASSES, facts.remaining)
    if n > 0:
        step = (facts.term_end - facts.cutoff) / (facts.remaining + 1)
        extra = tuple(SessionMark(facts.cutoff + step * (k + 1), "present") for k in range(n))
        later = facts.cutoff + step * n
        found.append(Improvement(
            "attend_next",
            f"Attending the next {_classes(n)} would {{change}}.",
            replace(facts, sessions=facts.sessions + extra, remaining=facts.remaining - n, cutoff=later)))
    missing = sum(1 for w in facts.work if not w.submitted)
    if missing:
        handed = tuple(w if w.submitted else WorkFact(True, 24 * 60) for w in facts.work)
        found.append(Improvement(
            "hand_in_work",
            f"Handing in the {missing} missing assignment{'s' if missing != 1 else ''}, even late,"
            " would {change}.",
            replace(facts, work=handed)))
    return found


def action_sentence(improvement: Improvement, before: str, after: str) -> str:
    """The step in words: "... would bring your risk from high to medium", or, when the level stays,
    "... would lower your risk (it would stay medium)"."""
    if before == after:
        change = f"lower your risk (it would stay {LEVEL_WORDS[before]})"
    else:
        change = f"bring your risk from {LEVEL_WORDS[before]} to {LEVEL_WORDS[after]}"
    return improvement.template.format(change=change)


def is_finite_vector(vector: Sequence[float]) -> bool:
    return all(math.isfinite(v) for v in vector)
