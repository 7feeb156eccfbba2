"""Grades pages: the student's grades, GPA, what-if and transcript (/student/grades), the faculty
grade sheet with the release control (/faculty/grades), and the admin's grade scale and course
credits (/admin/grading).

They render with the API's presenters (web/routes/grades_api.py); web/static/grades.js does the
changing actions through the same API (what-if as the student types, release, scale and credits).
"""
from __future__ import annotations

from quart import Blueprint, request

from hub.db.grades import active_scale, course_credits, course_terms, grade_sheet, student_courses, transcript

from ..auth import current_principal, require
from ..context import current_context
from ..errors import not_found
from ._pages import render_page
from ._records import campus_today
from .grades_api import scale_info_json, scale_json, sheet_json, student_course_json, transcript_json

bp = Blueprint("grades_pages", __name__)


@bp.get("/student/grades")
@require("student")
async def student_grades() -> str:
    ctx, principal = current_context(), current_principal()
    courses, scale = await student_courses(ctx.db, principal.user_id)
    shown = [student_course_json(sc) for sc in courses]
    # What-if: courses whose grade can still change (not final), newest term first.
    open_courses = [c for c in reversed(shown) if c["result"] is None]
    return await render_page(
        "student_grades.html", courses=shown, open_courses=open_courses,
        transcript=transcript_json(await transcript(ctx.db, principal.user_id)), scale=scale_json(scale))


@bp.get("/faculty/grades")
@require("faculty", "admin")
async def faculty_grades() -> str:
    ctx, principal = current_context(), current_principal()
    terms = await course_terms(ctx.db, None if principal.role == "admin" else principal.user_id)
    if not terms:
        return await render_page("faculty_grades.html", course_terms=[], sheet=None, chosen=None)
    wanted = (request.args.get("course_id"), request.args.get("term_id"))
    # A course alone (the links between a course's pages) shows its first listed term.
    chosen = terms[0] if wanted == (None, None) else next(
        (ct for ct in terms if ct.course_id == wanted[0] and wanted[1] in (None, ct.term_id)), None)
    if chosen is None:
        raise not_found("No such course and term among those you teach.")
    sheet = await grade_sheet(ctx.db, chosen.course_id, chosen.term_id, campus_today(ctx))
    return await render_page("faculty_grades.html", course_terms=terms, chosen=chosen, sheet=sheet_json(sheet))


@bp.get("/admin/grading")
@require("admin")
async def admin_grading() -> str:
    db = current_context().db
    credits = [{"course_id": i, "code": c, "title": t, "credits": float(cr)} for i, c, t, cr in await course_credits(db)]
    return await render_page("admin_grading.html", scale=scale_info_json(await active_scale(db)), credits=credits)
