"""Presenters of the chart aggregates (hub/db/charts.py): the JSON web/static/charts.js draws.

Percentages are JSON numbers with two decimals rounded down (as every percentage the insights show,
``web.insights.pct_number``), or null where nothing is known (a day before the device's first record,
a week without tickets).
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from fractions import Fraction
from itertools import groupby
from typing import Sequence

from hub.db.charts import ArrivalCurve, SlaWeek, UptimeDay
from hub.domain.timetable import zone

from .insights import pct_number


def arrival_json(curve: ArrivalCurve) -> dict:
    """Cumulative arrivals: one point per minute in which someone arrived (minute, arrivals so far)."""
    points: list[dict] = []
    arrived = 0
    for minute, group in groupby(curve.minutes):
        arrived += len(list(group))
        points.append({"minute": minute, "checked_in": arrived})
    within_grace = sum(m < curve.grace_minutes for m in curve.minutes)
    return {
        "session_id": curve.session_id, "starts_at": curve.starts_at, "ends_at": curve.ends_at,
        "grace_minutes": curve.grace_minutes, "enrolled": curve.enrolled,
        "checked_in": len(curve.minutes), "before_start": sum(m < 0 for m in curve.minutes),
        "within_grace": within_grace, "points": points,
    }


def _ratio(part: float, whole: float) -> float | None:
    return None if whole <= 0 else pct_number(Fraction(part) / Fraction(whole) * 100)


def uptime_json(device_id: str, days: Sequence[UptimeDay], timezone: str) -> dict:
    """% of each day's known time online, and over the whole period."""
    online, known = sum(d.online_s for d in days), sum(d.known_s for d in days)
    return {
        "device_id": device_id, "timezone": timezone,
        "online_pct": _ratio(online, known),
        "days": [{"day": d.day.isoformat(), "online_s": round(d.online_s), "known_s": round(d.known_s),
                  "online_pct": _ratio(d.online_s, d.known_s)} for d in days],
    }


def sla_json(rows: Sequence[SlaWeek], timezone: str) -> dict:
    """Per week: totals, % on time of those decided (on time + breached), and the same per priority."""
    weeks = []
    for week, group in groupby(rows, key=lambda r: r.week):
        items = list(group)
        on_time, breached = sum(r.on_time for r in items), sum(r.breached for r in items)
        weeks.append({
            "week": week.isoformat(), "on_time": on_time, "breached": breached,
            "pending": sum(r.pending for r in items), "on_time_pct": _ratio(on_time, on_time + breached),
            "by_priority": {r.priority: {"on_time": r.on_time, "breached": r.breached, "pending": r.pending}
                            for r in items},
        })
    on_time, breached = sum(w["on_time"] for w in weeks), sum(w["breached"] for w in weeks)
    return {"timezone": timezone, "on_time": on_time, "breached": breached,
            "on_time_pct": _ratio(on_time, on_time + breached), "weeks": weeks}


def day_range(today: date, days: int) -> tuple[date, date]:
    """The last ``days`` days, today included."""
    return today - timedelta(days=days - 1), today


def week_range(today: date, weeks: int) -> tuple[date, date]:
    """Mondays of the last ``weeks`` weeks, this week included."""
    this_monday = today - timedelta(days=today.weekday())
    return this_monday - timedelta(weeks=weeks - 1), this_monday


def local_today(now: datetime, zone_name: str) -> date:
    """The date at ``now`` in the IANA timezone ``zone_name``."""
    return now.astimezone(zone(zone_name)).date()
