"""Early-warning pages: the faculty's at-risk list per course, a student's own risk, and the admin's
model figures (docs/analytics.md). They render the same JSON as web/routes/risk_api.py;
web/static/risk.js runs the admin's actions (train now, pin, unpin)."""
from __future__ import annotations

from quart import Blueprint, request

from hub.db.insights import faculty_courses
from hub.db.risk import course_predictions, latest_training, list_models, student_predictions

from ..auth import current_principal, require
from ..context import current_context
from ..errors import not_found
from ..feeds import utc_now
from ._pages import render_page
from .risk_api import basis_json, model_json, prediction_json

bp = Blueprint("risk_pages", __name__)


@bp.get("/faculty/risk")
@require("faculty", "admin")
async def faculty_risk_page() -> str:
    ctx, principal = current_context(), current_principal()
    courses = await faculty_courses(ctx.db, None if principal.role == "admin" else principal.user_id)
    course_id = request.args.get("course_id") or (courses[0].course_id if courses else None)
    course = next((c for c in courses if c.course_id == course_id), None)
    if course_id is not None and course is None:
        raise not_found("No such course among those you teach.")
    items = ([prediction_json(p) for p in await course_predictions(ctx.db, course.course_id, utc_now(ctx))]
             if course is not None else [])
    return await render_page("faculty_risk.html", courses=courses, course=course, items=items,
                             basis=await basis_json())


@bp.get("/student/risk")
@require("student")
async def student_risk_page() -> str:
    ctx, principal = current_context(), current_principal()
    items = [prediction_json(p, for_student=True)
             for p in await student_predictions(ctx.db, principal.user_id, utc_now(ctx))]
    return await render_page("student_risk.html", items=items, basis=await basis_json())


@bp.get("/admin/models")
@require("admin")
async def admin_models_page() -> str:
    db = current_context().db
    models = [model_json(m) for m in await list_models(db)]
    return await render_page("admin_models.html", models=models, basis=await basis_json(),
                             latest=await latest_training(db))
