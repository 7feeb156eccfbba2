"""Live rosters follow enrolment and account changes: the web tells each affected session actor.

After an enrolment import or a (de)activation commits, :func:`rosters_changed`
finds the sessions whose roster may change (hub/db/session_snapshots.py
``sessions_enrolling``), asks each live one to rebuild its roster
(:class:`~hub.domain.session_messages.ReloadRoster`), and publishes what
changed as a :class:`~hub.core.bus.LiveRoster` on the session's topic, so
every open faculty roster adds or drops the rows at once.

Concurrency contract: called from a web request task after the commit; one
session at a time, each ask bounded by ``WebContext.session_call`` (10 s).
A session without an actor is skipped: it loads its roster when it opens.
"""
from __future__ import annotations

from typing import Sequence

from hub.core.bus import LiveRoster, session_topic
from hub.db.rosters import session_roster
from hub.db.session_snapshots import sessions_enrolling
from hub.domain.session_messages import ReloadRoster, RosterChange, SessionNotLive

from .context import WebContext
from .feeds import roster_json, utc_now


async def rosters_changed(ctx: WebContext, *, student_ids: Sequence[str] = (),
                          roll_numbers: Sequence[str] = (), session_ids: Sequence[str] = ()) -> dict[str, RosterChange]:
    """Reload the rosters of the live sessions these students are enrolled in; returns the changes by session.

    ``session_ids``: sessions to reload as well, found before the change (an unenrolment: once
    committed, the student is no longer enrolled in them).
    """
    if not student_ids and not roll_numbers and not session_ids:
        return {}
    now = utc_now(ctx)
    changes: dict[str, RosterChange] = {}
    found = await sessions_enrolling(ctx.db, now, student_ids=student_ids, roll_numbers=roll_numbers)
    for session_id in sorted(set(found) | set(session_ids)):
        try:
            change = await ctx.session_call(session_id, ReloadRoster())
        except SessionNotLive:
            continue
        assert isinstance(change, RosterChange)  # the session actor's answer to ReloadRoster
        if not change.added and not change.removed:
            continue
        changes[session_id] = change
        roster = await session_roster(ctx.db, session_id)
        if roster is None:
            continue  # deleted meanwhile
        students = roster_json(roster, now)["students"]
        joined = set(change.added)
        added = tuple(s for s in students if s["student_id"] in joined)
        # A leaver with a record stays on the page (records are kept), off the actor's roster.
        shown = {s["student_id"] for s in students}
        removed = tuple(s for s in change.removed if s not in shown)
        if added or removed:
            ctx.bus.publish(session_topic(session_id), LiveRoster(session_id, added, removed))
    return changes
