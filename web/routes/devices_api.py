"""Device health, telemetry, alarms and threshold rules: the JSON API the ops console is built on.

Reads come straight from PostgreSQL. Alarm acknowledgements and manual
clears go through the device's actor (``WebContext.ask_device``), which owns
its alarms: it applies the lifecycle step, commits it, publishes it on the
live bus (``{"type": "alarm", ...}`` on ``DEVICES_TOPIC``) and only then
answers, so the response, the table and the live feed agree. Threshold
rule writes commit first, then tell the hub (``WebContext.thresholds_changed``)
so every device actor adopts them. See docs/device-health.md.
"""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

import asyncpg
import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify, request

from actors import ActorError
from hub.db.alarms import STATE_GROUPS, RoomAlarm, alarms_by_id, device_active_alarms, get_alarm, list_alarms
from hub.db.console_overview import room_tiles
from hub.db.device_health import device_exists, device_health_history, device_overview
from hub.db.telemetry import device_metrics, hourly_series, raw_series
from hub.db.thresholds import EDITABLE, create_rule, delete_rule, get_rule, list_rules, room_exists, update_rule
from hub.domain.alarms import SEVERITIES, STATES, AckAlarm, AlarmResult, ClearAlarm
from hub.domain.thresholds import OPS, rule_problem

from ..apidoc import (
    BAD_BODY,
    BAD_URL,
    BEARER,
    BOOL,
    FORBIDDEN,
    INT,
    NOT_JSON,
    NUMBER,
    STR,
    TIME,
    TOO_LARGE,
    UNAUTHENTICATED,
    array,
    enum,
    error,
    json_request,
    json_response,
    nullable,
    obj,
    path_param,
    query_str,
    ref,
)
from ..apidoc import (
    not_found as doc_not_found,
)
from ..auth import current_principal, require
from ..console import (
    HEALTH_ORDER,
    TILE_STATES,
    alarm_record_json,
    device_json,
    health_history_json,
    room_alarm_json,
    series_point_json,
    tile_json,
)
from ..context import current_context
from ..errors import WebError, invalid, not_found
from ..feeds import utc_now
from ..paging import page_json, page_of, page_params, page_request
from ..request import EmptyBody, json_body, one_of, whole

bp = Blueprint("devices_api", __name__, url_prefix="/api/v1")

_INT64_MAX = 2**63 - 1
_NAME_MAX = 64
#: A metric name: lower-case letters, digits and underscores, at most 32 (as schemas/ declares it).
_METRIC = r"[a-z][a-z0-9_]{0,31}"
#: The longest a value may stay past a rule's trip level before it trips (7 days; hub/domain/thresholds.py).
MAX_RULE_DURATION_S = 7 * 86400
#: range → (span, bucket seconds, source). Raw readings for a day or less, hourly aggregates beyond.
RANGES: dict[str, tuple[timedelta, int, str]] = {
    "1h": (timedelta(hours=1), 60, "raw"),
    "24h": (timedelta(hours=24), 900, "raw"),
    "7d": (timedelta(days=7), 3600, "hourly"),
    "30d": (timedelta(days=30), 3600, "hourly"),
}


def _path_id(raw: int, what: str) -> int:
    if not 1 <= raw <= _INT64_MAX:
        raise not_found(f"No such {what}.")
    return raw


async def _device_or_404(device_id: str) -> None:
    if not await device_exists(current_context().db, device_id):
        raise not_found("No such device.")


# --- devices -----------------------------------------------------------------------------------


@bp.get("/devices/<device_id>")
@require("ops", "admin")
async def device_detail(device_id: str) -> Response:
    ctx = current_context()
    device = await device_overview(ctx.db, device_id)
    if device is None:
        raise not_found("No such device.")
    return jsonify({
        "device": device_json(device),
        "alarms": [room_alarm_json(a) for a in await device_active_alarms(ctx.db, device_id)],
        "metrics": await device_metrics(ctx.db, device_id, utc_now(ctx)),
    })


@bp.get("/devices/<device_id>/health-history")
@require("ops", "admin")
async def health_history(device_id: str) -> Response:
    paging = page_request()
    await _device_or_404(device_id)
    page = await device_health_history(current_context().db, device_id, paging.limit, paging.offset)
    return jsonify(page_json([health_history_json(e) for e in page.items], page.total, paging))


@bp.get("/devices/<device_id>/telemetry")
@require("ops", "admin")
async def telemetry(device_id: str) -> Response:
    ctx = current_context()
    span_name = request.args.get("range", "1h")
    if span_name not in RANGES:
        raise invalid(f"'range' must be one of {', '.join(RANGES)}.", field="range")
    metric = request.args.get("metric") or None
    if metric is not None and not _valid_metric(metric):
        raise invalid("'metric' must be lower-case letters, digits and underscores (at most 32).", field="metric")
    await _device_or_404(device_id)
    now = utc_now(ctx)
    metrics = await device_metrics(ctx.db, device_id, now)
    if metric is None and metrics:
        metric = metrics[0]
    span, bucket_s, source = RANGES[span_name]
    start = now - span
    unit, points = None, []
    if metric is not None:
        if source == "raw":
            series = await raw_series(ctx.db, device_id, metric, start, now, bucket_s)
        else:
            series = await hourly_series(ctx.db, device_id, metric, start, now)
        unit, points = series.unit, [series_point_json(p) for p in series.points]
    return jsonify({
        "device_id": device_id, "metric": metric, "unit": unit, "range": span_name, "bucket_s": bucket_s,
        "source": source, "from": start, "to": now, "points": points, "metrics": metrics,
    })


def _valid_metric(metric: str) -> bool:
    return re.fullmatch(_METRIC, metric) is not None


# --- the console's room overview -----------------------------------------------------------------


@bp.get("/console/rooms")
@require("ops", "admin")
async def console_rooms() -> Response:
    """Every room's tile (the overview page's data; it re-reads this for readings, which are not on the bus)."""
    ctx = current_context()
    return jsonify({"rooms": [tile_json(t) for t in await room_tiles(ctx.db, utc_now(ctx))]})


# --- alarms ------------------------------------------------------------------------------------


@bp.get("/alarms")
@require("ops", "admin")
async def alarms() -> Response:
    paging = page_request()
    state = request.args.get("state", "open")
    if state not in STATE_GROUPS:
        raise invalid(f"'state' must be one of {', '.join(STATE_GROUPS)}.", field="state")
    severity = request.args.get("severity") or None
    if severity is not None and severity not in SEVERITIES:
        raise invalid(f"'severity' must be one of {', '.join(SEVERITIES)}.", field="severity")
    page = await list_alarms(
        current_context().db, paging.limit, paging.offset, states=STATE_GROUPS[state], severity=severity,
        device_id=request.args.get("device_id") or None, room_id=request.args.get("room_id") or None,
        alarm_type=request.args.get("type") or None)
    return jsonify(page_json([room_alarm_json(a) for a in page.items], page.total, paging))


@bp.get("/alarms/<int:alarm_id>")
@require("ops", "admin")
async def alarm_detail(alarm_id: int) -> Response:
    alarm = await get_alarm(current_context().db, _path_id(alarm_id, "alarm"))
    if alarm is None:
        raise not_found("No such alarm.")
    return jsonify(room_alarm_json(alarm))


@bp.post("/alarms/<int:alarm_id>/ack")
@require("ops", "admin")
async def ack_alarm(alarm_id: int) -> Response:
    return await _alarm_step(alarm_id, AckAlarm)


@bp.post("/alarms/<int:alarm_id>/clear")
@require("ops", "admin")
async def clear_alarm(alarm_id: int) -> Response:
    return await _alarm_step(alarm_id, ClearAlarm)


async def _alarm_step(alarm_id: int, step: type[AckAlarm] | type[ClearAlarm]) -> Response:
    await json_body(EmptyBody)  # a JSON object (may be empty): the CSRF rule of every state-changing POST
    ctx = current_context()
    alarm = await get_alarm(ctx.db, _path_id(alarm_id, "alarm"))
    if alarm is None:
        raise not_found("No such alarm.")
    result = await _ask_step(alarm, step)
    if result.error is not None:
        raise WebError(409, result.error, result.message)
    assert result.alarm is not None  # _ask_step answers 404 otherwise
    return jsonify(alarm_record_json(result.alarm, alarm.room_name))


async def _ask_step(alarm: RoomAlarm, step: type[AckAlarm] | type[ClearAlarm]) -> AlarmResult:
    """The device actor applies ``step`` to ``alarm`` (it commits and publishes before answering).
    Raises 503 if the actor cannot be reached, 404 if it no longer knows the alarm; a refused
    step comes back as the result's ``error`` (``already_acked``, ``already_cleared``)."""
    ctx = current_context()
    try:
        result = await ctx.ask_device(alarm.alarm.device_id,
                                      step(alarm.alarm.id, current_principal().user_id, utc_now(ctx)))
    except (LookupError, ActorError) as exc:
        raise WebError(503, "unavailable", f"The device's actor could not be reached: {exc}") from None
    if not isinstance(result, AlarmResult):  # pragma: no cover - a wiring error
        raise WebError(503, "unavailable", "The device's actor gave no answer.")
    if result.error == "not_found" or result.alarm is None:
        raise not_found("No such alarm.")
    return result


#: The most alarms one "acknowledge selected" may name (a page of the console's list is 50).
ACK_MANY_MAX = 500


class AckAlarmsBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /api/v1/alarms/ack``: the alarms to acknowledge, each at most once."""

    alarm_ids: Annotated[list[Annotated[int, Meta(ge=1, le=_INT64_MAX)]], Meta(min_length=1, max_length=ACK_MANY_MAX)]


@bp.post("/alarms/ack")
@require("ops", "admin")
async def ack_alarms() -> Response:
    """Acknowledge many alarms in one call ("acknowledge selected"). Each goes through its device's
    actor like a single ack (committed and published before the answer), one after another; one
    alarm's refusal does not stop the others, and the answer says what happened to each, in order."""
    body = await json_body(AckAlarmsBody)
    if len(set(body.alarm_ids)) != len(body.alarm_ids):
        raise invalid("Each alarm may be named once.", field="alarm_ids")
    known = await alarms_by_id(current_context().db, body.alarm_ids)
    results: list[dict[str, Any]] = []
    for alarm_id in body.alarm_ids:
        alarm = known.get(alarm_id)
        try:
            if alarm is None:
                raise not_found("No such alarm.")
            result = await _ask_step(alarm, AckAlarm)
        except WebError as exc:
            if exc.status == 503:
                raise
            results.append({"alarm_id": alarm_id, "acked": False, "error": exc.code, "message": exc.message})
            continue
        if result.error is not None:
            results.append({"alarm_id": alarm_id, "acked": False, "error": result.error, "message": result.message})
        else:
            assert result.alarm is not None and alarm is not None
            results.append({"alarm_id": alarm_id, "acked": True,
                            "alarm": alarm_record_json(result.alarm, alarm.room_name)})
    return jsonify({"results": results, "acked": sum(r["acked"] for r in results)})


# --- thresholds --------------------------------------------------------------------------------


def rule_json(rule: dict[str, Any]) -> dict[str, Any]:
    return {**rule, "scope": "room" if rule["room_id"] else "room_type" if rule["room_type"] else "campus"}


@bp.get("/thresholds")
@require("ops", "admin")
async def thresholds() -> Response:
    paging = page_request()
    page = await list_rules(current_context().db, paging.limit, paging.offset, metric=request.args.get("metric") or None,
                            room_id=request.args.get("room_id") or None,
                            room_type=request.args.get("room_type") or None)
    return jsonify(page_json([rule_json(r) for r in page.items], page.total, paging))


@bp.get("/thresholds/<int:rule_id>")
@require("ops", "admin")
async def threshold_detail(rule_id: int) -> Response:
    rule = await get_rule(current_context().db, _path_id(rule_id, "threshold rule"))
    if rule is None:
        raise not_found("No such threshold rule.")
    return jsonify(rule_json(rule))


@bp.post("/thresholds")
@require("ops", "admin")
async def create_threshold() -> tuple[Response, int]:
    ctx = current_context()
    fields = await _rule_fields()
    try:
        rule = await create_rule(ctx.db, fields, current_principal().user_id)
    except asyncpg.ForeignKeyViolationError:  # the room went away since it was checked
        raise invalid("No such room.", field="room_id") from None
    await ctx.thresholds_changed()
    return jsonify(rule_json(rule)), 201


@bp.put("/thresholds/<int:rule_id>")
@require("ops", "admin")
async def replace_threshold(rule_id: int) -> Response:
    ctx = current_context()
    rule_id = _path_id(rule_id, "threshold rule")
    fields = await _rule_fields()
    try:
        rule = await update_rule(ctx.db, rule_id, fields, current_principal().user_id)
    except asyncpg.ForeignKeyViolationError:
        raise invalid("No such room.", field="room_id") from None
    if rule is None:
        raise not_found("No such threshold rule.")
    await ctx.thresholds_changed()
    return jsonify(rule_json(rule))


@bp.delete("/thresholds/<int:rule_id>")
@require("ops", "admin")
async def delete_threshold(rule_id: int) -> Response:
    ctx = current_context()
    if not await delete_rule(ctx.db, _path_id(rule_id, "threshold rule"), by=current_principal().user_id):
        raise not_found("No such threshold rule.")
    await ctx.thresholds_changed()
    return Response(b"", status=204)


#: A rule's trip or clear level: a number (an integer is read as one), finite and at most 1e15 either way.
RuleLevel = Annotated[float, Meta(ge=-1e15, le=1e15)]
#: A room type or room id a rule is scoped to.
ScopeName = Annotated[str, Meta(min_length=1, max_length=_NAME_MAX)]


class ThresholdRuleBody(msgspec.Struct):
    """A threshold rule as POST and PUT take it; ``rule_problem`` (hub/domain/thresholds.py) adds the
    rules across fields (hysteresis direction, one scope)."""

    metric: Annotated[str, whole(_METRIC, description="Lower-case letters, digits, '_'.")]
    op: Annotated[str, one_of(OPS)]
    value: Annotated[RuleLevel, Meta(description="The trip level.")]
    clear_value: Annotated[RuleLevel, Meta(description=(
        "Hysteresis: the alarm clears once the value is back past it (≤ value for above, ≥ value for below)."))]
    severity: Annotated[str, one_of(SEVERITIES)]
    duration_s: Annotated[int, Meta(ge=0, le=MAX_RULE_DURATION_S, description=(
        "How long the value must stay past the trip level."))] = 0
    room_type: Annotated[ScopeName | None, Meta(description="Scope: every room of this type.")] = None
    room_id: Annotated[ScopeName | None, Meta(description=(
        "Scope: this room (not with room_type). Neither: campus-wide."))] = None
    enabled: bool = True


async def _rule_fields() -> dict[str, Any]:
    body = await json_body(ThresholdRuleBody)
    fields = msgspec.structs.asdict(body)
    problem = rule_problem(body.op, body.value, body.clear_value, body.duration_s, body.severity,
                           body.room_type, body.room_id)
    if problem is not None:
        raise invalid(problem[1] + ".", field=problem[0])
    if fields["room_id"] is not None and not await room_exists(current_context().db, fields["room_id"]):
        raise invalid("No such room.", field="room_id")
    assert set(fields) == set(EDITABLE)
    return fields


# --- OpenAPI ---------------------------------------------------------------------------------------

_STAFF = {"x-roles": ["ops", "admin"]}
#: Health fields of each device in GET /api/v1/devices (web/openapi.py's ``Device`` schema adds them).
DEVICE_HEALTH_PROPERTIES: dict[str, Any] = {
    "last_change": nullable(TIME), "uptime_s": INT,
    "last_connect_at": nullable(TIME), "last_connect_reason": STR,
    "last_disconnect_at": nullable(TIME), "last_disconnect_reason": STR,
    "battery_pct": nullable(NUMBER), "signal_dbm": nullable(INT),
    "clock_skew_ms": {**nullable(INT), "description": "Device clock minus hub clock (ms), estimated."},
    "error_count": {**INT, "description": "Errors the edge agent counted since it started."},
    "active_alarms": INT, "alarm_severity": nullable(enum(*SEVERITIES)),
}
_DEVICE_PARAM = path_param("device_id", "The device's id.")
_ALARM_PARAM = path_param("alarm_id", "The alarm's id.", {"type": "integer", "minimum": 1})
_RULE_PARAM = path_param("rule_id", "The threshold rule's id.", {"type": "integer", "minimum": 1})
_READ_ERRORS = {"400": BAD_URL, "401": UNAUTHENTICATED, "403": FORBIDDEN}
_WRITE_ERRORS = {"400": BAD_BODY, "401": UNAUTHENTICATED, "403": FORBIDDEN, "413": TOO_LARGE, "415": NOT_JSON}
_UNAVAILABLE = error("`unavailable`: the hub's device actor could not be reached (or the hub is not running).")
_EMPTY_BODY = json_request(EmptyBody, "A JSON object; `{}` will do (no field is read).")
_RULE_BODY = json_request(ThresholdRuleBody, "A threshold rule.")

OPENAPI_SCHEMAS: dict[str, Any] = {
    "DeviceDetail": obj({
        "device": ref("Device"), "alarms": {**array(ref("Alarm")), "description": "Its active alarms."},
        "metrics": {**array(STR), "description": "Every metric it reported (last day, or kept aggregates)."},
    }),
    "HealthHistoryEntry": obj({
        "id": INT, "at": TIME, "change": enum("online", "offline", "firmware"), "online": BOOL, "reason": STR,
        "firmware": STR, "uptime_s": INT, "outbox_depth": INT, "battery_pct": nullable(NUMBER),
        "signal_dbm": nullable(INT), "clock_skew_ms": nullable(INT), "error_count": INT,
    }),
    "Alarm": obj({
        "alarm_id": INT, "device_id": STR, "room_id": nullable(STR), "room_name": nullable(STR),
        "alarm_type": {**STR, "description": "`device_offline`, or `<metric>_high` / `<metric>_low`."},
        "severity": enum(*SEVERITIES), "state": enum(*STATES), "raised_at": TIME, "acked_at": nullable(TIME),
        "acked_by": nullable(STR), "cleared_at": nullable(TIME), "cleared_by": nullable(STR),
        "value": nullable(NUMBER), "message": STR, "details": {"type": "object"}, "updated_at": TIME,
    }),
    "RoomTile": obj({
        "room_id": STR, "name": STR, "building": STR,
        "floor": {**STR, "description": "From the room's number: `G` (below 100), the digits before the last two, "
                  "or empty when the name has no number."},
        "health": {**enum(*TILE_STATES), "description": "The worst health of its devices (`empty`: none)."},
        "devices": array(obj({"device_id": STR, "kind": STR, "revoked": BOOL, "online": BOOL, "outbox_depth": INT,
                              "error_count": INT, "severities": array(enum(*SEVERITIES)),
                              "health": enum(*HEALTH_ORDER)})),
        "readings": {"type": "object", "description": "metric → its latest reading of the last hour.",
                     "additionalProperties": obj({"value": NUMBER, "unit": STR, "at": TIME})},
        "sparks": {"type": "object", "description": "metric → hourly averages of the last 24 h, oldest first.",
                   "additionalProperties": array(NUMBER)},
        "occupancy": {**nullable(INT), "description": "Students present or late in the session under way "
                      "(null: no session under way)."},
    }),
    "AlarmAcks": obj({
        "acked": {**INT, "description": "How many were acknowledged by this call."},
        "results": array(obj({
            "alarm_id": INT, "acked": BOOL,
            "alarm": {**ref("Alarm"), "description": "The alarm after its acknowledgement (when `acked`)."},
            "error": {**STR, "description": "Why not (when not `acked`): `already_acked` or `not_found`."},
            "message": STR,
        }, required=["alarm_id", "acked"])),
    }),
    "Telemetry": obj({
        "device_id": STR, "metric": nullable(STR), "unit": nullable(STR), "range": enum(*RANGES),
        "bucket_s": INT, "source": enum("raw", "hourly"), "from": TIME, "to": TIME,
        "points": array(obj({"t": TIME, "avg": NUMBER, "min": NUMBER, "max": NUMBER})),
        "metrics": {**array(STR), "description": "Every metric the device reported (last day, or kept aggregates)."},
    }),
    "ThresholdRule": obj({
        "id": INT, "metric": STR, "op": enum(*OPS), "value": NUMBER, "clear_value": NUMBER, "duration_s": INT,
        "severity": enum(*SEVERITIES), "room_type": nullable(STR), "room_id": nullable(STR), "enabled": BOOL,
        "scope": enum("campus", "room_type", "room"), "created_at": TIME, "updated_at": TIME,
        "updated_by": nullable(STR),
    }),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/devices/{device_id}": {"get": {
        "summary": "A device with every health field, its active alarms and its metrics (ops, admin)", **_STAFF,
        "tags": ["devices"], "security": BEARER, "parameters": [_DEVICE_PARAM],
        "responses": {"200": json_response(ref("DeviceDetail"), "The device."), **_READ_ERRORS,
                      "404": doc_not_found("device")},
    }},
    "/api/v1/devices/{device_id}/health-history": {"get": {
        "summary": "A device's health transitions, newest first (ops, admin)", **_STAFF, "tags": ["devices"],
        "security": BEARER, "parameters": [_DEVICE_PARAM, *page_params()],
        "responses": {"200": json_response(page_of(ref("HealthHistoryEntry")), "One page."), **_READ_ERRORS,
                      "404": doc_not_found("device")},
    }},
    "/api/v1/devices/{device_id}/telemetry": {"get": {
        "summary": "A metric's recent values, bucketed: avg/min/max per bucket (ops, admin)", **_STAFF,
        "tags": ["devices"], "security": BEARER,
        "parameters": [
            _DEVICE_PARAM,
            query_str("metric", "The metric (default: the first of `metrics`).",
                      {"type": "string", "pattern": f"^{_METRIC}$"}),
            query_str("range", "1h (1-min buckets) and 24h (15-min) from raw readings; 7d and 30d from hourly "
                      "aggregates. Default 1h.", enum(*RANGES)),
        ],
        "responses": {"200": json_response(ref("Telemetry"), "The series."), **_READ_ERRORS,
                      "404": doc_not_found("device")},
    }},
    "/api/v1/console/rooms": {"get": {
        "summary": "Every room as the console's overview tile: health, key readings, sparklines (ops, admin)",
        **_STAFF, "tags": ["devices"], "security": BEARER,
        "responses": {"200": json_response(obj({"rooms": array(ref("RoomTile"))}), "Rooms by building, then name."),
                      **_READ_ERRORS},
    }},
    "/api/v1/alarms": {"get": {
        "summary": "Alarms, newest first (ops, admin)", **_STAFF, "tags": ["alarms"], "security": BEARER,
        "parameters": [
            *page_params(),
            query_str("state", "open (default: not yet cleared-and-acknowledged), active, unacked, cleared, "
                      "all, or one state.", enum(*STATE_GROUPS)),
            query_str("severity", "Only this severity.", enum(*SEVERITIES)),
            query_str("device_id", "Only this device's."), query_str("room_id", "Only this room's."),
            query_str("type", "Only this alarm type (e.g. `device_offline`, `temperature_high`)."),
        ],
        "responses": {"200": json_response(page_of(ref("Alarm")), "One page."), **_READ_ERRORS},
    }},
    "/api/v1/alarms/{alarm_id}": {"get": {
        "summary": "One alarm (ops, admin)", **_STAFF, "tags": ["alarms"], "security": BEARER,
        "parameters": [_ALARM_PARAM],
        "responses": {"200": json_response(ref("Alarm"), "The alarm."), **_READ_ERRORS,
                      "404": doc_not_found("alarm")},
    }},
    "/api/v1/alarms/ack": {"post": {
        "summary": "Acknowledge several alarms at once (ops, admin)", **_STAFF, "tags": ["alarms"],
        "security": BEARER, "requestBody": json_request(AckAlarmsBody, "The alarms to acknowledge (1–500, each once)."),
        "responses": {"200": json_response(ref("AlarmAcks"), "What happened to each, in the order named; "
                                           "an alarm already acknowledged or unknown does not stop the others."),
                      **_WRITE_ERRORS, "503": _UNAVAILABLE},
    }},
    **{
        f"/api/v1/alarms/{{alarm_id}}/{step}": {"post": {
            "summary": summary, **_STAFF, "tags": ["alarms"], "security": BEARER,
            "parameters": [_ALARM_PARAM], "requestBody": _EMPTY_BODY,
            "responses": {"200": json_response(ref("Alarm"), "The alarm after the step (committed)."),
                          **_WRITE_ERRORS, "404": doc_not_found("alarm"), "409": error(conflict),
                          "503": _UNAVAILABLE},
        }}
        for step, summary, conflict in (
            ("ack", "Acknowledge an alarm (active or cleared) (ops, admin)",
             "`already_acked`: the alarm is already acknowledged."),
            ("clear", "Clear an active alarm by hand; its rules must trip again in full (ops, admin)",
             "`already_cleared`: the alarm is already cleared."),
        )
    },
    "/api/v1/thresholds": {
        "get": {
            "summary": "Threshold rules (ops, admin)", **_STAFF, "tags": ["thresholds"], "security": BEARER,
            "parameters": [
                *page_params(), query_str("metric", "Only this metric's."),
                query_str("room_id", "Only rules of this room."), query_str("room_type", "Only rules of this room type."),
            ],
            "responses": {"200": json_response(page_of(ref("ThresholdRule")), "One page."), **_READ_ERRORS},
        },
        "post": {
            "summary": "Add a threshold rule; device actors adopt it at once (ops, admin)", **_STAFF,
            "tags": ["thresholds"], "security": BEARER, "requestBody": _RULE_BODY,
            "responses": {"201": json_response(ref("ThresholdRule"), "Created."), **_WRITE_ERRORS},
        },
    },
    "/api/v1/thresholds/{rule_id}": {
        "get": {
            "summary": "One threshold rule (ops, admin)", **_STAFF, "tags": ["thresholds"], "security": BEARER,
            "parameters": [_RULE_PARAM],
            "responses": {"200": json_response(ref("ThresholdRule"), "The rule."), **_READ_ERRORS,
                          "404": doc_not_found("threshold rule")},
        },
        "put": {
            "summary": "Replace a threshold rule (ops, admin)", **_STAFF, "tags": ["thresholds"],
            "security": BEARER, "parameters": [_RULE_PARAM], "requestBody": _RULE_BODY,
            "responses": {"200": json_response(ref("ThresholdRule"), "Replaced."), **_WRITE_ERRORS,
                          "404": doc_not_found("threshold rule")},
        },
        "delete": {
            "summary": "Delete a threshold rule; alarms it alone kept active clear (ops, admin)", **_STAFF,
            "tags": ["thresholds"], "security": BEARER, "parameters": [_RULE_PARAM],
            "responses": {"204": {"description": "Deleted."}, **_READ_ERRORS,
                          "404": doc_not_found("threshold rule")},
        },
    },
}
