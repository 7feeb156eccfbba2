"""Academic pages: the admin's academic console (``/admin/academic``).

Server-rendered shell; web/static/admin.js fills it from the JSON API
(web/routes/academic.py), so the page and the API enforce the same rules.
"""
from __future__ import annotations

from quart import Blueprint, Response, jsonify

from hub.db.academic import ROOM_TYPES, SLOT_KINDS
from hub.domain.timetable import WEEKDAYS

from ..auth import require
from ..context import current_context
from ..wording import wording_json
from ._pages import render_page

bp = Blueprint("academic_pages", __name__)


@bp.get("/admin/academic")
@require("admin")
async def academic_console() -> str:
    return await render_page(
        "admin_academic.html", weekdays=WEEKDAYS, room_types=ROOM_TYPES, slot_kinds=SLOT_KINDS,
        campus_timezone=current_context().campus_timezone,
    )


@bp.get("/wording.json")
async def wording() -> Response:
    """The one mapping of codes to words (web/wording.py), for scripts; public: it holds no data."""
    return jsonify(wording_json())
