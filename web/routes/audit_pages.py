"""The audit log page ``/audit``: search, page through, export and (admin) verify the chain.

The page is a shell (an admin's search form also filters security entries by entity
and action); ``web/static/audit.js`` drives it through the audit API
(``web/routes/audit.py``), so it shows exactly what the API scopes: an admin the
whole log, a faculty member their courses' entries.
"""
from __future__ import annotations

from quart import Blueprint

from hub.db.audit import search_choices
from hub.db.security_audit import KNOWN_ACTIONS

from ..auth import require
from ..context import current_context
from ..paging import DEFAULT_PAGE
from ._pages import render_page
from .audit import scope_course_ids

bp = Blueprint("audit_pages", __name__)


@bp.get("/audit")
@require("admin", "faculty")
async def audit_page() -> str:
    courses, students, more = await search_choices(current_context().db, await scope_course_ids())
    actions = sorted({a for names in KNOWN_ACTIONS.values() for a in names})
    return await render_page("audit.html", courses=courses, students=students, more_students=more,
                             page_size=DEFAULT_PAGE, entities=["attendance", *KNOWN_ACTIONS], actions=actions)
