"""Assignment pages: the faculty's assignments and grading queue (``/faculty/assignments``) and the
student's assignments (``/student/assignments``).

Server-rendered shells; web/static/assignments.js fills them from the JSON API
(web/routes/assignments_api.py), so the pages and the API enforce the same rules.
"""
from __future__ import annotations

from quart import Blueprint

from hub.db.academic import list_courses, list_sections, list_terms
from hub.domain.leave import MAX_DOCUMENT_BYTES

from ..auth import current_principal, require
from ..context import current_context
from ._pages import render_page

bp = Blueprint("assignment_pages", __name__)


@bp.get("/faculty/assignments")
@require("faculty", "admin")
async def faculty_assignments() -> str:
    ctx, principal = current_context(), current_principal()
    faculty_id = None if principal.role == "admin" else principal.user_id
    courses = await list_courses(ctx.db, 500, 0, faculty_id=faculty_id)
    terms = await list_terms(ctx.db, 100, 0)
    sections = await list_sections(ctx.db, 500, 0, faculty_id=faculty_id)
    return await render_page("faculty_assignments.html", courses=courses.items, terms=terms.items,
                             sections=sections.items)


@bp.get("/student/assignments")
@require("student")
async def student_assignments() -> str:
    return await render_page("student_assignments.html", max_mb=MAX_DOCUMENT_BYTES // (1024 * 1024))
