"""Ops' device grid and the admin overview."""
from __future__ import annotations

from quart import Blueprint

from hub.db.web_queries import devices_overview, list_rejections, overview_counts, rejection_counts

from ..auth import require
from ..context import current_context
from ..feeds import devices_json
from ._pages import render_page

bp = Blueprint("ops", __name__)

RECENT_REJECTIONS = 20


@bp.get("/ops")
@require("ops", "admin")
async def devices() -> str:
    return await render_page("ops.html", devices=devices_json(await devices_overview(current_context().db)))


@bp.get("/admin")
@require("admin")
async def overview() -> str:
    db = current_context().db
    return await render_page(
        "admin.html",
        counts=await overview_counts(db),
        by_reason=await rejection_counts(db),
        recent=(await list_rejections(db, RECENT_REJECTIONS, 0)).items,
    )
