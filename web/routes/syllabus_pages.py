"""Syllabus pages: the course's syllabus with its coverage and pace (faculty, admin), and a student's
own topic progress. They render the API's presenters (web/routes/syllabus_api.py); web/static/syllabus.js
edits through the API, and the live roster's tagging panel is web/static/roster.js.
"""
from __future__ import annotations

from quart import Blueprint, request

from hub.db import syllabus as db_syllabus
from hub.db.insights import course_sections, faculty_courses

from ..auth import current_principal, require
from ..context import current_context
from ..errors import not_found
from ..feeds import utc_now
from ._pages import render_page
from .syllabus_api import course_pace_json, progress_json, syllabus_json

bp = Blueprint("syllabus_pages", __name__)

@bp.get("/faculty/syllabus")
@require("faculty", "admin")
async def syllabus_page() -> str:
    ctx, principal = current_context(), current_principal()
    courses = await faculty_courses(ctx.db, None if principal.role == "admin" else principal.user_id)
    course_id = request.args.get("course_id") or (courses[0].course_id if courses else None)
    if course_id is None:
        return await render_page("syllabus.html", courses=[], course=None)
    course = next((c for c in courses if c.course_id == course_id), None)
    if course is None:
        raise not_found("No such course among those you teach.")
    sections = await course_sections(ctx.db, course_id)
    section_id = request.args.get("section_id") or None
    if section_id is not None and section_id not in {s[0] for s in sections}:
        raise not_found("No such section in this course.")
    topics = await db_syllabus.list_topics(ctx.db, course_id)
    pace = await db_syllabus.course_pace(ctx.db, course_id, section_id=section_id, as_of=utc_now(ctx))
    return await render_page("syllabus.html", courses=courses, course=course, sections=sections,
                             section_id=section_id, syllabus=syllabus_json(course_id, topics),
                             coverage=course_pace_json(pace, topics))


@bp.get("/student/progress")
@require("student")
async def progress_page() -> str:
    ctx, principal = current_context(), current_principal()
    courses = await db_syllabus.student_progress(ctx.db, principal.user_id, now=utc_now(ctx))
    return await render_page("student_progress.html", courses=[progress_json(c) for c in courses])
