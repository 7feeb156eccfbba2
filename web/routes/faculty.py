"""Faculty pages: today's sessions, and one session's live roster."""
from __future__ import annotations

from quart import Blueprint, Response, request

from hub.db.rosters import sessions_for_faculty
from hub.domain.display_code import DISPLAY_STEPS_BACK, display_window

from ..access import authorize_session
from ..auth import current_principal, require
from ..context import current_context
from ..errors import WebError, invalid
from ..feeds import load_roster, roster_json, session_json, utc_now
from ._pages import local_now, render_page
from .checkin import display_code_json, display_url, own_display_session
from .student import render_qr_svg

bp = Blueprint("faculty", __name__)


@bp.get("/faculty")
@require("faculty", "admin")
async def today() -> str:
    ctx, principal = current_context(), current_principal()
    now = local_now()
    faculty_id = None if principal.role == "admin" else principal.user_id
    assert now.tzinfo is not None  # local_now() is aware (astimezone)
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
    ctx = current_context()
    await authorize_session(ctx, current_principal(), session_id)  # coordinator or assigned faculty
    roster = await load_roster(ctx, session_id)
    return await render_page("faculty_session.html", roster=roster_json(roster, utc_now(ctx)))


@bp.get("/faculty/sessions/<session_id>/display")
@require("faculty", "admin")
async def display(session_id: str) -> str:
    """The projector page: the session's rotating QR code, refreshed from the hub."""
    session = await own_display_session(session_id)
    return await render_page("display.html", session=session,
                             code=display_code_json(session, current_context().now()))


@bp.get("/faculty/sessions/<session_id>/display.svg")
@require("faculty", "admin")
async def display_svg(session_id: str) -> Response:
    """The QR code of ``?window=`` if the HUB says that window is current (or one back); 410 otherwise.

    The display asks for the window the hub told it (web/routes/checkin.py
    ``display-code``), so a wrong clock on the display never matters.
    """
    ctx = current_context()
    session = await own_display_session(session_id)
    raw = request.args.get("window", "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 15:  # isdigit() alone takes "²"
        raise invalid("'window' must be a code window number.", field="window")
    window, now = int(raw), ctx.now()
    current = display_window(now)
    if not session.takes_checkins(utc_now(ctx)) or not current - DISPLAY_STEPS_BACK <= window <= current:
        raise WebError(410, "gone", "That code window is over; ask for the current one.")
    url = display_url(session_id, window, session.code(window))
    return Response(render_qr_svg(url), content_type="image/svg+xml", headers={"Cache-Control": "no-store"})
