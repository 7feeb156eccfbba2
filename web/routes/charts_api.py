"""Chart data: a session's arrival curve, a device's uptime per day, ticket SLA compliance per week.

All under ``/api/v1``; each answer is one query of hub/db/charts.py presented by web/charts.py, drawn
by web/static/charts.js. Who may read: the arrival curve, faculty teaching the session's course and
admin (``web.access.authorize_session``); uptime and SLA compliance, ops and admin (as the device and
ticket pages). Days and weeks are the campus timezone's (``WebContext.campus_timezone``).
"""
from __future__ import annotations

from quart import Blueprint, Response, jsonify

from hub.db.charts import arrival_curve, device_uptime, sla_compliance
from hub.db.device_health import device_exists
from hub.domain.tickets import PRIORITIES

from ..access import authorize_session
from ..apidoc import (
    BAD_URL,
    DATE,
    INT,
    NUMBER,
    STR,
    TIME,
    array,
    json_response,
    nullable,
    obj,
    operation,
    path_param,
    query_int,
    query_str,
)
from ..apidoc import enum as doc_enum
from ..apidoc import not_found as doc_not_found
from ..auth import current_principal, require
from ..charts import arrival_json, day_range, local_today, sla_json, uptime_json, week_range
from ..context import current_context
from ..errors import not_found
from ..feeds import utc_now
from ..request import choice_arg, int_arg

bp = Blueprint("charts", __name__, url_prefix="/api/v1")

MAX_DAYS, DEFAULT_DAYS = 90, 14
MAX_WEEKS, DEFAULT_WEEKS = 52, 8


@bp.get("/sessions/<session_id>/arrivals")
@require("faculty", "admin")
async def session_arrivals(session_id: str) -> Response:
    ctx = current_context()
    await authorize_session(ctx, current_principal(), session_id)
    curve = await arrival_curve(ctx.db, session_id)
    if curve is None:  # deleted between the check and the read
        raise not_found("No such session.")
    return jsonify(arrival_json(curve))


@bp.get("/devices/<device_id>/uptime")
@require("ops", "admin")
async def uptime(device_id: str) -> Response:
    ctx = current_context()
    days = int_arg("days", DEFAULT_DAYS, 1, MAX_DAYS)
    if not await device_exists(ctx.db, device_id):
        raise not_found("No such device.")
    now = utc_now(ctx)
    first, last = day_range(local_today(now, ctx.campus_timezone), days)
    rows = await device_uptime(ctx.db, device_id, first, last, ctx.campus_timezone, now)
    return jsonify(uptime_json(device_id, rows, ctx.campus_timezone))


@bp.get("/tickets/sla-compliance")
@require("ops", "admin")
async def ticket_sla_compliance() -> Response:
    ctx = current_context()
    weeks = int_arg("weeks", DEFAULT_WEEKS, 1, MAX_WEEKS)
    priority = choice_arg("priority", PRIORITIES)
    now = utc_now(ctx)
    first, last = week_range(local_today(now, ctx.campus_timezone), weeks)
    rows = await sla_compliance(ctx.db, first, last, ctx.campus_timezone, now,
                                PRIORITIES if priority is None else (priority,))
    return jsonify(sla_json(rows, ctx.campus_timezone))


# --- OpenAPI ----------------------------------------------------------------------------------------

_PCT = nullable(NUMBER)
_COUNTS = {"on_time": INT, "breached": INT, "pending": INT}

_ARRIVALS = obj({
    "session_id": STR, "starts_at": TIME, "ends_at": TIME, "grace_minutes": INT, "enrolled": INT,
    "checked_in": {**INT, "description": "Scans (present or late) so far."},
    "before_start": {**INT, "description": "Scans before the start (minute < 0)."},
    "within_grace": {**INT, "description": "Scans before the grace period ended (minute < grace_minutes)."},
    "points": array(obj({
        "minute": {**INT, "description": "Whole minutes from the start, rounded down (-2: from 2 to 1 minutes "
                                         "before it)."},
        "checked_in": {**INT, "description": "Scans up to the end of this minute."}})),
})
_UPTIME = obj({
    "device_id": STR, "timezone": {**STR, "description": "The campus timezone the days are in."},
    "online_pct": {**_PCT, "description": "Over the whole period; null when nothing is known."},
    "days": array(obj({
        "day": DATE, "online_s": INT,
        "known_s": {**INT, "description": "Seconds of the day whose state is known (not before the device's "
                                          "first record, not after now)."},
        "online_pct": {**_PCT, "description": "online_s / known_s, two decimals rounded down; null when nothing "
                                              "is known."}})),
})
_SLA = obj({
    "timezone": STR, "on_time": INT, "breached": INT,
    "on_time_pct": {**_PCT, "description": "on_time / (on_time + breached); null when there are none."},
    "weeks": array(obj({
        "week": {**DATE, "description": "The Monday the week starts on (campus timezone)."},
        **_COUNTS, "on_time_pct": _PCT,
        "by_priority": obj({p: obj(_COUNTS) for p in PRIORITIES}, required=[])})),
})

OPENAPI_PATHS: dict = {
    "/api/v1/sessions/{session_id}/arrivals": {"get": operation(
        "When students arrived relative to the session's start: cumulative scans per minute (faculty teaching "
        "it, admin)", "sessions", ["faculty", "admin"], {
            "200": json_response(_ARRIVALS, "The arrival curve."),
            "400": BAD_URL, "404": doc_not_found("session")},
        params=[path_param("session_id", "Class session id.")])},
    "/api/v1/devices/{device_id}/uptime": {"get": operation(
        "A device's % of each day online, from its health history (ops, admin)", "devices", ["ops", "admin"], {
            "200": json_response(_UPTIME, "Uptime per day, oldest first."),
            "400": BAD_URL, "404": doc_not_found("device")},
        params=[path_param("device_id", "Device id."),
                query_int("days", 1, MAX_DAYS, DEFAULT_DAYS, "The last N days, today included.")])},
    "/api/v1/tickets/sla-compliance": {"get": operation(
        "Tickets per week of their due time: resolved on time, breached, pending (ops, admin)", "tickets",
        ["ops", "admin"], {
            "200": json_response(_SLA, "Weeks (their Mondays) oldest first."),
            "400": BAD_URL},
        params=[query_int("weeks", 1, MAX_WEEKS, DEFAULT_WEEKS, "The last N weeks, this week included."),
                query_str("priority", "Only this priority.", doc_enum(*PRIORITIES))])},
}
