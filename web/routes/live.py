"""Websockets: a live roster, the device grid, a student's own attendance.

Each handshake is authenticated (cookies or Bearer, never refreshed; see
web/auth.py), origin-checked and authorised *before* it is accepted, so a
refusal is a plain HTTP 401/403/404. Then web/ws.py serves it.
"""
from __future__ import annotations

from quart import Blueprint

from ..access import authorize_session
from ..auth import current_principal, origin_allowed, require
from ..context import current_context
from ..errors import forbidden
from ..feeds import devices_feed, session_feed, student_feed
from ..ws import run_connection

bp = Blueprint("live", __name__)


@bp.before_websocket
async def same_origin_only() -> None:
    # Cross-site websocket hijacking: SameSite=Lax keeps cookies off other sites'
    # handshakes, and this also refuses same-site, cross-origin pages.
    if not origin_allowed():
        raise forbidden("Cross-origin websocket refused.")


@bp.websocket("/ws/sessions/<session_id>")
@require("faculty", "admin")
async def session_ws(session_id: str) -> None:
    ctx, principal = current_context(), current_principal()
    await authorize_session(ctx, principal, session_id)
    await run_connection(ctx, session_feed(ctx, session_id), principal)


@bp.websocket("/ws/devices")
@require("ops", "admin")
async def devices_ws() -> None:
    ctx = current_context()
    await run_connection(ctx, devices_feed(ctx), current_principal())


@bp.websocket("/ws/student")
@require("student")
async def student_ws() -> None:
    ctx, principal = current_context(), current_principal()
    await run_connection(ctx, student_feed(ctx, principal.user_id), principal)
