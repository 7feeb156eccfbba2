"""Attendance reads: a session's live roster and a student's attendance per course (``/api/v1``).

Documented in web/openapi.py's core paths.
"""
from __future__ import annotations

from quart import Blueprint, Response, jsonify

from ..access import attendance_scope, authorize_session
from ..auth import current_principal, require
from ..context import current_context
from ..feeds import load_attendance, load_roster, roster_json, utc_now

bp = Blueprint("attendance_api", __name__, url_prefix="/api/v1")


@bp.get("/sessions/<session_id>/roster")
@require("faculty", "admin")
async def session_roster(session_id: str) -> Response:
    ctx = current_context()
    await authorize_session(ctx, current_principal(), session_id)  # coordinator or assigned faculty
    roster = await load_roster(ctx, session_id)
    return jsonify(roster_json(roster, utc_now(ctx)))


@bp.get("/students/<student_id>/attendance")
@require("student", "faculty", "admin")
async def student_attendance(student_id: str) -> Response:
    ctx = current_context()
    faculty_id = await attendance_scope(ctx, current_principal(), student_id)
    return jsonify(await load_attendance(ctx, student_id, faculty_id))
