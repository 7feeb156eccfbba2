"""Ownership rules: who may see which session and which student's attendance.

Roles gate routes (``web.auth.require``); these checks gate *records*:
admin sees everything, faculty only sessions (and students) of the courses
they teach, a student only themself. Each is one or two queries, made before
any data is loaded or any bus topic subscribed.
"""
from __future__ import annotations

from hub.db.academic import NotFound, may_manage_course
from hub.db.class_sessions import session_course
from hub.db.students import student_profile, teaches_student

from .auth import Principal
from .context import WebContext
from .errors import forbidden, not_found


async def authorize_session(ctx: WebContext, principal: Principal, session_id: str) -> None:
    """404 if there is no such session, 403 unless the principal may see it: admin, or faculty who
    manage its course (coordinator or assigned, ``hub.db.academic.manages_sql``)."""
    try:
        course_id = await session_course(ctx.db, session_id)
    except NotFound:
        raise not_found("No such session.") from None
    if principal.role == "admin":
        return
    if principal.role != "faculty" or not await may_manage_course(ctx.db, principal.user_id, course_id):
        raise forbidden("You do not teach this session's course.")


async def attendance_scope(ctx: WebContext, principal: Principal, student_id: str) -> str | None:
    """Authorise reading ``student_id``'s attendance; returns the faculty filter to apply.

    A student: only their own (403 otherwise, without revealing whether the
    other id exists). Faculty: only students enrolled in a course they teach,
    limited to those courses. Admin: anyone (404 for an unknown student).
    """
    if principal.role == "student":
        if principal.user_id != student_id:
            raise forbidden("You can only see your own attendance.")
        return None
    if principal.role == "faculty":
        if not await teaches_student(ctx.db, principal.user_id, student_id):
            raise forbidden("This student is not enrolled in any course you teach.")
        return principal.user_id
    if principal.role == "admin":
        if await student_profile(ctx.db, student_id) is None:
            raise not_found("No such student.")
        return None
    raise forbidden()
