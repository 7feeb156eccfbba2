"""Presenters of the insights figures: one function per figure, shared by the API, the pages and the CSV.

Every percentage shown anywhere comes from :func:`standing_json` (or the
series functions below), which apply :mod:`hub.domain.eligibility` to the
counts of :mod:`hub.db.insights`; percentages are shown with two decimals
rounded *down* (``shown``), so "75.00" always means eligible at a 75% line.
"""
from __future__ import annotations

import csv
import io
from datetime import datetime, time
from decimal import Decimal
from fractions import Fraction
from typing import Iterable, Sequence

from hub.core.bus import user_topic
from hub.db.academic import TermRow
from hub.db.insights import DaySession, SeriesPoint, StandingRow
from hub.db.notifications import list_notifications
from hub.domain.eligibility import BANDS, Rules, Tally, percentage, shown
from hub.domain.timetable import local_instant, zone

from .context import WebContext
from .feeds import Feed, effective_status


def pct_number(value: Fraction | None) -> float | None:
    """A percentage as a JSON number with two decimals (rounded down), or None."""
    return None if value is None else float(shown(value))


def _number(value: Decimal) -> float:
    return float(value)


def rules_json(rules: Rules) -> dict:
    return {
        "late_weight": _number(rules.late_weight), "warning_pct": _number(rules.warning_pct),
        "eligible_pct": _number(rules.eligible_pct), "condonable_pct": _number(rules.condonable_pct),
        "excused_counts": rules.excused_counts,
    }


def standing_json(row: StandingRow) -> dict:
    """One student in one course: counts, percentage, maximum reachable, band and eligibility."""
    st = row.standing()
    t = st.tally
    return {
        "student_id": row.student_id, "student_name": row.student_name, "roll_number": row.roll_number,
        "course_id": row.course_id, "course_code": row.course_code, "course_title": row.course_title,
        "section_id": row.section_id, "section_name": row.section_name,
        "counts": {"present": t.present, "late": t.late, "absent": t.absent, "excused": t.excused,
                   "held": t.held, "remaining": t.remaining},
        "percentage": pct_number(st.percentage),
        "max_reachable": pct_number(st.max_reachable),
        "band": st.band,
        "best_band": st.best_band,
        "eligibility": st.eligibility,
        "below_warning": st.below_warning,
        "needed_for_eligible": st.needed_for_eligible,
        "rules": rules_json(st.rules),
        "condonation": (None if row.condonation_id is None
                        else {"id": row.condonation_id, "state": row.condonation_state}),
    }


def report_summary(items: Sequence[dict], sessions_held: int) -> dict:
    """Class-level figures over a report's rows (the average is of the students' shown percentages)."""
    shown_pcts = [i["percentage"] for i in items if i["percentage"] is not None]
    bands = {band: 0 for band in BANDS}
    for i in items:
        bands[i["band"]] += 1
    return {
        "students": len(items),
        "sessions_held": sessions_held,
        "average_percentage": round(sum(shown_pcts) / len(shown_pcts), 2) if shown_pcts else None,
        "bands": bands,
        "condoned": sum(i["eligibility"] == "condoned" for i in items),
        "below_warning": sum(i["below_warning"] for i in items),
    }


CSV_COLUMNS = (
    "roll_number", "student_name", "student_id", "section", "present", "late", "absent", "excused",
    "held", "remaining", "percentage", "max_reachable", "band", "eligibility", "condonation",
)


def report_csv(items: Iterable[dict]) -> str:
    """The report as CSV, from the same JSON rows the API returns (so the figures cannot differ)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for i in items:
        c = i["counts"]
        writer.writerow([
            _csv_safe(i["roll_number"]), _csv_safe(i["student_name"]), _csv_safe(i["student_id"]),
            _csv_safe(i["section_name"] or ""), c["present"], c["late"], c["absent"], c["excused"], c["held"],
            c["remaining"], _fmt(i["percentage"]), _fmt(i["max_reachable"]), i["band"], i["eligibility"],
            (i["condonation"] or {}).get("state", ""),
        ])
    return out.getvalue()


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _csv_safe(text: str) -> str:
    # A cell starting with = + - @ is a formula to spreadsheet programs (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --- series (charts) ----------------------------------------------------------------------

def student_series_json(timeline: Sequence[tuple[str, datetime, str]], rules: Rules) -> list[dict]:
    """The student's cumulative percentage after each counted session, oldest first."""
    counts = {"present": 0, "late": 0, "absent": 0, "excused": 0}
    points = []
    for session_id, starts_at, status in timeline:
        counts[status] = counts.get(status, 0) + 1
        pct = percentage(Tally(**counts), rules)
        points.append({"session_id": session_id, "starts_at": starts_at, "status": status,
                       "percentage": pct_number(pct)})
    return points


def term_json(term: TermRow | None) -> dict | None:
    """The term a chart covers; ``starts_at`` (midnight of its first day where the term is) is the
    chart's first point, so the chart never starts before the term does."""
    if term is None:
        return None
    return {"term_id": term.id, "name": term.name, "starts_on": term.starts_on.isoformat(),
            "ends_on": term.ends_on.isoformat(), "starts_at": local_instant(term.starts_on, time(0), zone(term.timezone))}


def course_series_json(points: Sequence[SeriesPoint], rules: Rules) -> list[dict]:
    """Each ended session's attendance rate (the same weights as a student's percentage)."""
    return [
        {"session_id": p.session_id, "starts_at": p.starts_at, "present": p.present, "late": p.late,
         "absent": p.absent, "excused": p.excused,
         "percentage": pct_number(percentage(Tally(p.present, p.late, p.absent, p.excused), rules))}
        for p in points
    ]


# --- the notification feed and the student's "today" ------------------------------------------

def today_json(sessions: Sequence[DaySession], now: datetime) -> list[dict]:
    """The student's sessions of the day with the same effective status as everywhere else."""
    return [
        {"session_id": s.session_id, "course_code": s.course_code, "course_title": s.course_title,
         "room_name": s.room_name, "starts_at": s.starts_at, "ends_at": s.ends_at,
         "status": effective_status(s.status, s.session_status == "closed" or now > s.ends_at)}
        for s in sessions
    ]


LATEST_IN_SNAPSHOT = 20


def notifications_feed(ctx: WebContext, user_id: str) -> Feed:
    """A user's own notifications: snapshot = unread count + the latest ones; then each new one live."""

    async def snapshot() -> dict:
        items, _total, unread = await list_notifications(
            ctx.db, user_id, unread_only=False, limit=LATEST_IN_SNAPSHOT, offset=0)
        return {"unread": unread, "items": items}

    return Feed("notifications", (user_topic(user_id),), snapshot)


# --- page helpers (the pages show exactly the API's figures) ------------------------------------

ELIGIBILITY_LABELS = {"eligible": "Eligible", "condoned": "Eligible (condoned)",
                      "condonable": "Condonable", "barred": "Barred"}


def pct_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}%"


def advice_text(st: dict) -> str:
    """One sentence on what the student can still do (from the standing's own figures)."""
    needed, remaining = st["needed_for_eligible"], st["counts"]["remaining"]
    eligible = f"{st['rules']['eligible_pct']:g}%"
    if st["percentage"] is None:
        return "No sessions counted yet."
    if needed is None:
        return f"Even attending all {remaining} remaining sessions cannot bring you to {eligible}."
    if needed == 0:
        return f"You stay at or above {eligible} whatever happens in the remaining {remaining} sessions."
    return f"Attend at least {needed} of the remaining {remaining} sessions to end at {eligible} or more."


PAGE_HELPERS = {"pct": pct_text, "advice": advice_text, "ELIGIBILITY_LABELS": ELIGIBILITY_LABELS}
