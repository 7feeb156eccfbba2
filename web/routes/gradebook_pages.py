"""Gradebook pages: the faculty gradebook (assessments as columns, students as rows, marks edited in
place, exam sittings with their clash check and eligibility roster) and the student's exam timetable.

The pages render with the API's presenters (web/routes/assessments_api.py); web/static/gradebook.js
edits through the same JSON API.
"""
from __future__ import annotations

from quart import Blueprint, request

from hub.db import assessments as db_assessments
from hub.db import exams as db_exams
from hub.db.academic import list_rooms
from hub.db.insights import course_sections, faculty_courses

from ..auth import current_principal, require
from ..context import current_context
from ..errors import not_found
from ..insights import PAGE_HELPERS
from ._pages import render_page
from .assessments_api import gradebook_json, sitting_json, sitting_roster, student_exam_items

bp = Blueprint("gradebook_pages", __name__)

KIND_LABELS = {"assignment": "Assignment", "quiz": "Quiz", "practical": "Practical", "midterm": "Midterm",
               "exam": "Exam", "project": "Project"}
STATUS_LABELS = {"graded": "Graded", "absent": "Absent (counts 0)", "exempt": "Exempt (left out)"}


@bp.get("/faculty/gradebook")
@require("faculty", "admin")
async def gradebook_page() -> str:
    ctx, principal = current_context(), current_principal()
    courses = await faculty_courses(ctx.db, None if principal.role == "admin" else principal.user_id)
    course_id = request.args.get("course_id") or (courses[0].course_id if courses else None)
    helpers = {"KIND_LABELS": KIND_LABELS, "STATUS_LABELS": STATUS_LABELS, **PAGE_HELPERS}
    if course_id is None:
        return await render_page("faculty_gradebook.html", courses=[], course=None, **helpers)
    course = next((c for c in courses if c.course_id == course_id), None)
    if course is None:
        raise not_found("No such course among those you teach.")
    terms = await db_assessments.course_terms(ctx.db, course_id)
    term_id = request.args.get("term_id") or (terms[0] if terms else None)
    if term_id is not None and term_id not in terms:
        raise not_found("The course has no section in that term.")
    sections = [(sid, name) for sid, name in await course_sections(ctx.db, course_id)]
    book = None if term_id is None else gradebook_json(await db_assessments.gradebook(ctx.db, course_id, term_id))
    sittings = [] if term_id is None else await db_exams.list_sittings(ctx.db, course_id=course_id, term_id=term_id)
    rosters = {s.id: await sitting_roster(s) for s in sittings}
    rooms = (await list_rooms(ctx.db, 500, 0)).items
    return await render_page(
        "faculty_gradebook.html", courses=courses, course=course, terms=terms, term_id=term_id, sections=sections,
        book=book, sittings=[sitting_json(s) for s in sittings], rosters=rosters, rooms=rooms,
        sitting_kinds=db_exams.SITTING_KINDS, other_kinds=db_assessments.OTHER_KINDS, **helpers)


@bp.get("/student/exams")
@require("student")
async def student_exams_page() -> str:
    items = await student_exam_items(current_principal().user_id)
    return await render_page("student_exams.html", items=items, **PAGE_HELPERS)
