"""Faculty pages: today's sessions, and one session's live roster."""
from __future__ import annotations

from quart import Blueprint

from hub.db.web_queries import sessions_for_faculty

from ..access import may_see_session
from ..auth import current_principal, require
from ..context import current_context
from ..errors import forbidden
from ..feeds import load_roster, roster_json, session_json, utc_now
from ._pages import local_now, render_page

bp = Blueprint("faculty", __name__)


@bp.get("/faculty")
@require("faculty", "admin")
async def today() -> str:
    ctx, principal = current_context(), current_principal()
    now = local_now()
    faculty_id = None if principal.role == "admin" else principal.user_id
    sessions = await sessions_for_faculty(ctx.db, faculty_id, now.date(), now.tzinfo)
    utc = utc_now(ctx)
    return await render_page(
        "faculty.html", day=now.date(), all_courses=faculty_id is None,
        sessions=[{**session_json(s, utc), "enrolled": s.enrolled, "present": s.present, "late": s.late}
                  for s in sessions],
    )


@bp.get("/faculty/sessions/<session_id>")
@require("faculty", "admin")
async def session_roster(session_id: str) -> str:
    ctx, principal = current_context(), current_principal()
    roster = await load_roster(ctx, session_id)
    if not may_see_session(principal, roster.session.faculty_id):
        raise forbidden("You do not teach this session's course.")
    return await render_page("faculty_session.html", roster=roster_json(roster, utc_now(ctx)))
