"""The student's page: their rotating check-in QR code and their attendance."""
from __future__ import annotations

import io
from datetime import timedelta

import segno
from quart import Blueprint, Response

from hub.db.insights import student_sessions_between
from hub.db.students import student_token_secret
from schemas import TOKEN_WINDOW_SECONDS, issue_checkin_token

from ..auth import current_principal, require
from ..context import current_context
from ..errors import not_found
from ..feeds import load_attendance, utc_now
from ..insights import PAGE_HELPERS, today_json
from ._pages import local_now, render_page
from .insights import student_standings

bp = Blueprint("student", __name__)

#: The page reloads the QR this often: a few times per token window, so a
#: freshly shown code always has most of its window (plus one step back) left.
QR_REFRESH_MS = TOKEN_WINDOW_SECONDS * 1000 // 3


def render_qr_svg(token: str) -> bytes:
    """The token as a standalone SVG QR code (deterministic for a given token)."""
    out = io.BytesIO()
    segno.make(token, error="m", micro=False).save(
        out, kind="svg", scale=8, border=4, xmldecl=False, dark="#000", light="#fff",
    )
    return out.getvalue()


@bp.get("/student")
@require("student")
async def home() -> str:
    ctx, principal = current_context(), current_principal()
    attendance = await load_attendance(ctx, principal.user_id)
    midnight = local_now().replace(hour=0, minute=0, second=0, microsecond=0)
    day = await student_sessions_between(ctx.db, principal.user_id, midnight, midnight + timedelta(days=1))
    return await render_page(
        "student.html", attendance=attendance, qr_refresh_ms=QR_REFRESH_MS,
        standings=await student_standings(principal.user_id), today=today_json(day, utc_now(ctx)),
        **PAGE_HELPERS,
    )


@bp.get("/student/qr.svg")
@require("student")
async def qr_svg() -> Response:
    """Only ever the caller's own code: the student id comes from the token, never the URL."""
    ctx, principal = current_context(), current_principal()
    secret = await student_token_secret(ctx.db, principal.user_id)
    if secret is None:
        raise not_found("No student record for this account.")
    token = issue_checkin_token(principal.user_id, secret, ctx.now())
    return Response(render_qr_svg(token), content_type="image/svg+xml", headers={"Cache-Control": "no-store"})
