"""Aggregates drawn as charts: a session's arrival curve, a device's uptime per day, ticket SLA compliance
per week. Each is one SQL round trip returning plain records; the percentages and the JSON are the
presenters' (web/charts.py).

The definitions are the ones used elsewhere, not new ones:

- an *arrival* is an attendance row with a scan time (``checked_in_at``; faculty marks and leave write
  none) whose status is present or late, placed at whole minutes from the session's start (rounded
  down: a scan 90 s before the start is minute −2, 30 s after it minute 0); "enrolled" is the roster's
  (the course's enrolments, ``hub.db.rosters``);
- *uptime* is time online over time known, from ``device_health_history`` (each row carries the
  device's ``online`` state from that moment until the next row; the last state lasts until ``now``).
  Time before the device's first row, and after ``now``, is not known and counts for neither;
- *SLA*: a ticket counts in the week its due time falls in (``sla_due_at``, weeks from Monday in the
  given timezone): on time if finished (resolved, or closed) by its due time, breached if finished
  after it or still unfinished at ``now`` past it (``hub.domain.tickets.sla_breached``), pending
  otherwise.

Concurrency contract: every function is one round trip on the shared :class:`~hub.db.Database`, reads
only, and may be called from any trio task. ``now`` is passed in so the web app and the tests share one
clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from hub.domain.tickets import PRIORITIES

from ._pool import Database


@dataclass(frozen=True)
class ArrivalCurve:
    """A session's scans, as whole minutes from its start, in scan order."""

    session_id: str
    starts_at: datetime
    ends_at: datetime
    grace_minutes: int
    enrolled: int
    minutes: tuple[int, ...]


_ARRIVALS = """
SELECT cs.id AS session_id, cs.starts_at, cs.ends_at, cs.grace_minutes,
       (SELECT count(*) FROM enrolments e WHERE e.course_id = cs.course_id) AS enrolled,
       coalesce((SELECT array_agg(floor(extract(epoch FROM a.checked_in_at - cs.starts_at) / 60)::int
                                  ORDER BY a.checked_in_at, a.student_id)
                 FROM attendance a
                 WHERE a.session_id = cs.id AND a.checked_in_at IS NOT NULL AND a.status IN ('present', 'late')),
                '{}') AS minutes
FROM class_sessions cs WHERE cs.id = $1
"""


async def arrival_curve(db: Database, session_id: str) -> ArrivalCurve | None:
    """The session's arrivals (``None``: no such session)."""
    row = await db.fetchrow(_ARRIVALS, session_id)
    if row is None:
        return None
    return ArrivalCurve(row["session_id"], row["starts_at"], row["ends_at"], row["grace_minutes"],
                        row["enrolled"], tuple(row["minutes"]))


@dataclass(frozen=True)
class UptimeDay:
    """One local day of a device: seconds online, and seconds whose state is known."""

    day: date
    online_s: float
    known_s: float


_UPTIME = """
WITH bounds AS (
    SELECT ($3::date::timestamp AT TIME ZONE $2) AS window_start,
           least((($4::date + 1)::timestamp AT TIME ZONE $2), $5) AS window_end
), rows AS (
    -- The window's rows, and the last one before it (the state the window starts in).
    SELECT h.id, h.at, h.online FROM device_health_history h, bounds b
    WHERE h.device_id = $1 AND h.at < b.window_end AND h.at >= coalesce(
        (SELECT max(p.at) FROM device_health_history p WHERE p.device_id = $1 AND p.at <= b.window_start),
        '-infinity')
), spans AS (
    -- Each row's state lasts until the next row (the last until now), clipped to the window.
    SELECT r.online, greatest(r.at, b.window_start) AS s,
           least(coalesce(lead(r.at) OVER (ORDER BY r.at, r.id), $5), b.window_end) AS e
    FROM rows r, bounds b
), pieces AS (
    -- A span cut at each local midnight it crosses: one piece per (span, day), so the cost follows the
    -- number of rows, not rows x days.
    SELECT d::date AS day, sp.online,
           extract(epoch FROM least(sp.e, (d + interval '1 day') AT TIME ZONE $2)
                              - greatest(sp.s, d AT TIME ZONE $2)) AS seconds
    FROM spans sp,
         generate_series(date_trunc('day', sp.s AT TIME ZONE $2), date_trunc('day', sp.e AT TIME ZONE $2),
                         interval '1 day') AS d
    WHERE sp.e > sp.s
)
SELECT g.d::date AS day,
       coalesce(sum(p.seconds) FILTER (WHERE p.online), 0)::float8 AS online_s,
       coalesce(sum(p.seconds), 0)::float8 AS known_s
FROM generate_series($3::date, $4::date, interval '1 day') AS g(d)
LEFT JOIN pieces p ON p.day = g.d::date AND p.seconds > 0
GROUP BY g.d ORDER BY g.d
"""


async def device_uptime(db: Database, device_id: str, first_day: date, last_day: date, timezone: str,
                        now: datetime) -> list[UptimeDay]:
    """Each day from ``first_day`` to ``last_day`` (inclusive, days in ``timezone``), oldest first."""
    rows = await db.fetch(_UPTIME, device_id, timezone, first_day, last_day, now)
    return [UptimeDay(r["day"], r["online_s"], r["known_s"]) for r in rows]


@dataclass(frozen=True)
class SlaWeek:
    """Tickets of one priority due in one week (``week``: its Monday)."""

    week: date
    priority: str
    on_time: int
    breached: int
    pending: int


_SLA = """
WITH counted AS (
    -- One pass over the tickets due in the weeks asked for, grouped by (week, priority).
    SELECT date_trunc('week', t.sla_due_at AT TIME ZONE $1)::date AS week, t.priority,
           count(*) FILTER (WHERE coalesce(t.resolved_at, t.closed_at) <= t.sla_due_at) AS on_time,
           count(*) FILTER (WHERE coalesce(t.resolved_at, t.closed_at) > t.sla_due_at
                             OR (coalesce(t.resolved_at, t.closed_at) IS NULL AND $4 >= t.sla_due_at)) AS breached,
           count(*) FILTER (WHERE coalesce(t.resolved_at, t.closed_at) IS NULL AND $4 < t.sla_due_at) AS pending
    FROM tickets t
    WHERE t.sla_due_at >= ($2::date::timestamp AT TIME ZONE $1)
      AND t.sla_due_at < (($3::date + 7)::timestamp AT TIME ZONE $1)
      AND t.priority = ANY($5::text[])
    GROUP BY 1, 2
)
SELECT w.week::date AS week, p.priority, coalesce(c.on_time, 0) AS on_time, coalesce(c.breached, 0) AS breached,
       coalesce(c.pending, 0) AS pending
FROM generate_series($2::date, $3::date, interval '7 days') AS w(week)
CROSS JOIN unnest($5::text[]) AS p(priority)
LEFT JOIN counted c ON c.week = w.week::date AND c.priority = p.priority
ORDER BY w.week, p.priority
"""


async def sla_compliance(db: Database, first_monday: date, last_monday: date, timezone: str, now: datetime,
                         priorities: tuple[str, ...] = PRIORITIES) -> list[SlaWeek]:
    """Every (week, priority) from ``first_monday`` to ``last_monday`` (inclusive, both Mondays), zero rows
    included."""
    if first_monday.weekday() or last_monday.weekday():
        raise ValueError("weeks are given by their Mondays")
    rows = await db.fetch(_SLA, timezone, first_monday, last_monday, now, list(priorities))
    return [SlaWeek(r["week"], r["priority"], r["on_time"], r["breached"], r["pending"]) for r in rows]
