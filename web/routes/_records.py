"""Shared bits of the records routes (leave, corrections, audit)."""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Mapping, Sequence
from zoneinfo import ZoneInfo

from hub.db.notifications import publish_notifications

from ..apidoc import INT
from ..context import WebContext

#: Largest id a bigserial can hold: bigger ones cannot exist (and would overflow the query).
MAX_ID = 2**63 - 1


def now_utc(ctx: WebContext) -> datetime:
    return datetime.fromtimestamp(ctx.now(), timezone.utc)


def campus_today(ctx: WebContext) -> date:
    """Today on the campus's calendar (leave dates are campus days)."""
    try:
        zone = ZoneInfo(ctx.campus_timezone)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.fromtimestamp(ctx.now(), zone).date()


async def after_commit(ctx: WebContext, affected: Mapping[str, Sequence[str]], notifications: list[dict]) -> None:
    """Once a records transaction has committed: live session actors reload the records it
    changed, and its notifications are pushed live. Blocks only as long as those calls do."""
    for session_id, students in affected.items():
        await ctx.attendance_changed(session_id, list(students))
    publish_notifications(ctx.bus, notifications)


ID_SCHEMA = {**INT, "minimum": 1, "maximum": MAX_ID}
