"""Insights pages: the notification centre (every role), faculty course reports, and the live ``/ws/me`` feed.

The pages render with the same presenters as the API (web/insights.py), and
web/static/insights.js keeps them current (badge, new notifications, charts).
"""
from __future__ import annotations

from quart import Blueprint, request

from hub.db.condonation import list_applications
from hub.db.insights import course_rules, course_sections, course_timeline, faculty_courses
from hub.db.notifications import list_notifications

from ..auth import current_principal, origin_allowed, require
from ..context import current_context
from ..errors import forbidden, invalid, not_found
from ..feeds import utc_now
from ..insights import PAGE_HELPERS, course_series_json, notifications_feed, report_summary
from ..ws import run_connection
from ._pages import render_page
from .insights import application_json, course_report_items

bp = Blueprint("insights_pages", __name__)

PAGE_SIZE = 50


@bp.before_websocket
async def same_origin_only() -> None:
    if not origin_allowed():  # as web/routes/live.py: no cross-site websocket hijacking
        raise forbidden("Cross-origin websocket refused.")


@bp.websocket("/ws/me")
@require()
async def me_ws() -> None:
    """The caller's own notifications (any role): snapshot ``{"unread", "items"}``, then each new one."""
    ctx, principal = current_context(), current_principal()
    await run_connection(ctx, notifications_feed(ctx, principal.user_id), principal)


@bp.get("/notifications")
@require()
async def notifications_page() -> str:
    ctx, principal = current_context(), current_principal()
    raw = request.args.get("page", "1")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 10**6:
        raise invalid("'page' must be a number from 1.", field="page")
    page = int(raw)
    items, total, unread = await list_notifications(
        ctx.db, principal.user_id, unread_only=False, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return await render_page("notifications.html", items=items, total=total, unread=unread, page=page,
                             pages=max(1, -(-total // PAGE_SIZE)))


@bp.get("/faculty/reports")
@require("faculty", "admin")
async def reports_page() -> str:
    ctx, principal = current_context(), current_principal()
    courses = await faculty_courses(ctx.db, None if principal.role == "admin" else principal.user_id)
    course_id = request.args.get("course_id") or (courses[0].course_id if courses else None)
    if course_id is None:
        return await render_page("faculty_reports.html", courses=[], course=None, **PAGE_HELPERS)
    course = next((c for c in courses if c.course_id == course_id), None)
    if course is None:
        raise not_found("No such course among those you teach.")
    sections = await course_sections(ctx.db, course_id)
    section_id = request.args.get("section_id") or None
    if section_id is not None and section_id not in {s[0] for s in sections}:
        raise not_found("No such section in this course.")
    now = utc_now(ctx)
    items = await course_report_items(course_id, section_id)
    series = course_series_json(await course_timeline(ctx.db, course_id, now, section_id),
                                await course_rules(ctx.db, course_id))
    pending, _ = await list_applications(
        ctx.db, student_id=None, faculty_id=None, course_id=course_id, state="pending", limit=200, offset=0)
    return await render_page(
        "faculty_reports.html", courses=courses, course=course, sections=sections, section_id=section_id,
        items=items, summary=report_summary(items, len(series)), series=series,
        pending=[application_json(a) for a in pending], **PAGE_HELPERS,
    )
