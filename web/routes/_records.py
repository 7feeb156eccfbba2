"""Shared bits of the records routes (leave, corrections, audit)."""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Mapping, Sequence
from zoneinfo import ZoneInfo

from quart import request

from hub.db.notifications import publish_notifications

from ..apidoc import INT, STR, obj
from ..context import WebContext
from ..errors import invalid

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


def status_arg(allowed: Sequence[str]) -> str | None:
    """The optional ``status`` query filter, one of ``allowed``."""
    value = request.args.get("status")
    if value in (None, ""):
        return None
    if value not in allowed:
        raise invalid(f"'status' must be one of {', '.join(allowed)}.", field="status")
    return value


def date_field(body: dict, name: str) -> date:
    value = body.get(name)
    if not isinstance(value, str):
        raise invalid(f"'{name}' is required (a date, YYYY-MM-DD).", field=name)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise invalid(f"'{name}' must be a date, YYYY-MM-DD.", field=name) from None


def optional_note(body: dict) -> str:
    note = body.get("note", "")
    if note is None:
        return ""
    if not isinstance(note, str):
        raise invalid("'note' must be a string.", field="note")
    return no_nul(note, "note")


def no_nul(value: str, field: str) -> str:
    """Text PostgreSQL can store: no NUL, no unpaired surrogate (JSON's \\ud800 escapes) -- refused
    as bad input here rather than failing as a 500 in the query."""
    if "\x00" in value:
        raise invalid(f"'{field}' must not contain NUL characters.", field=field)
    try:
        value.encode()
    except UnicodeEncodeError:
        raise invalid(f"'{field}' is not valid Unicode text.", field=field) from None
    return value


NOTE_BODY = obj({"note": {**STR, "maxLength": 1000, "description": "Optional, shown to the student."}},
                required=[], closed=False)
ID_SCHEMA = {**INT, "minimum": 1, "maximum": MAX_ID}
