"""``POST /api/v1/thresholds/preview``: what a candidate threshold rule would have fired on the last 24 h.

The alarm-rules page (web/routes/settings_pages.py) calls it while a rule is
being written or edited. Nothing is stored and nothing is told to the hub: the
candidate is placed among the stored rules (replacing the one being edited,
``rule_id``) and the domain's :class:`~hub.domain.thresholds.RuleBook` decides
which rooms it governs (a room's own rule overrides its room type's, which
overrides a campus-wide one), then each device's raw readings of the last
24 h in those rooms are replayed through the same pure step the device actors
use (:func:`hub.domain.thresholds.replay`), from a clear state. A disabled
candidate is previewed as if enabled. See docs/device-health.md.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Annotated, Any

from msgspec import Meta
from quart import Blueprint, Response, jsonify

from hub.db.rooms import rooms
from hub.db.thresholds import load_rule_set, preview_readings, room_exists
from hub.domain.thresholds import ThresholdRule, describe, replay, rule_problem

from ..apidoc import (
    BAD_BODY,
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
    json_request,
    json_response,
    nullable,
    obj,
    ref,
)
from ..auth import require
from ..context import current_context
from ..errors import invalid
from ..feeds import utc_now
from ..request import json_body
from .devices_api import ThresholdRuleBody, rule_json

bp = Blueprint("threshold_preview", __name__, url_prefix="/api/v1")

#: How far back a preview looks (raw readings are kept at least this long: docs/data-lifecycle.md).
PREVIEW_SPAN = timedelta(hours=24)
_INT64_MAX = 2**63 - 1


class ThresholdPreviewBody(ThresholdRuleBody, kw_only=True):
    """A candidate rule (the fields of ``POST /thresholds``) and, when an existing rule is being
    edited, its id: the candidate then stands in for it."""

    rule_id: Annotated[int, Meta(ge=1, le=_INT64_MAX, description=(
        "The stored rule this candidate would replace (omit for a new rule)."))] | None = None


@bp.post("/thresholds/preview")
@require("ops", "admin")
async def preview_threshold() -> Response:
    ctx = current_context()
    body = await json_body(ThresholdPreviewBody)
    problem = rule_problem(body.op, body.value, body.clear_value, body.duration_s, body.severity,
                           body.room_type, body.room_id)
    if problem is not None:
        raise invalid(problem[1] + ".", field=problem[0])
    if body.room_id is not None and not await room_exists(ctx.db, body.room_id):
        raise invalid("No such room.", field="room_id")
    candidate = ThresholdRule(body.rule_id or 0, body.metric, body.op, body.value, body.clear_value,
                              body.duration_s, body.severity, body.room_type, body.room_id, enabled=True)
    stored = (await load_rule_set(ctx.db)).book()
    book = replace(stored, rules=(*(r for r in stored.rules if r.id != candidate.id), candidate))
    governed = sorted(room for room in book.room_types
                      if candidate in book.for_room(room).get(candidate.metric, ()))
    now = utc_now(ctx)
    start = now - PREVIEW_SPAN
    devices, truncated = await preview_readings(ctx.db, candidate.metric, governed, start, now)
    names = {r.room_id: r.name for r in await rooms(ctx.db)}
    by_room: dict[str, list[dict[str, Any]]] = {}
    readings = 0
    for device in devices:
        readings += len(device.readings)
        for trip in replay(candidate, device.readings):
            by_room.setdefault(device.room_id, []).append({
                "device_id": device.device_id, "since": trip.since, "tripped_at": trip.tripped_at,
                "cleared_at": trip.cleared_at, "peak": trip.peak, "unit": device.unit,
                "message": describe(candidate, trip.peak, device.unit),
            })
    return jsonify({
        "rule": rule_json(_rule_dict(candidate)),
        "from": start, "to": now, "source": "raw", "unit": devices[0].unit if devices else None,
        "rooms_governed": len(governed), "devices_checked": len(devices), "readings_checked": readings,
        "truncated": truncated,
        "trips": sum(len(t) for t in by_room.values()),
        "rooms": [{"room_id": room, "room_name": names.get(room), "trips": sorted(trips, key=lambda t: t["tripped_at"])}
                  for room, trips in sorted(by_room.items(), key=lambda item: (names.get(item[0]) or item[0]))],
    })


def _rule_dict(rule: ThresholdRule) -> dict[str, Any]:
    return {"id": rule.id or None, "metric": rule.metric, "op": rule.op, "value": rule.value,
            "clear_value": rule.clear_value, "duration_s": rule.duration_s, "severity": rule.severity,
            "room_type": rule.room_type, "room_id": rule.room_id}


# --- OpenAPI ---------------------------------------------------------------------------------------

OPENAPI_SCHEMAS: dict[str, Any] = {
    "ThresholdPreview": obj({
        "rule": {**obj({"id": nullable(INT), "metric": STR, "op": STR, "value": NUMBER, "clear_value": NUMBER,
                        "duration_s": INT, "severity": STR, "room_type": nullable(STR), "room_id": nullable(STR),
                        "scope": STR}),
                 "description": "The candidate as previewed (`id`: the rule it replaces, or null)."},
        "from": TIME, "to": TIME, "source": {**STR, "description": "`raw`: raw readings were replayed."},
        "unit": {**nullable(STR), "description": "The unit of the readings checked (null: none were found)."},
        "rooms_governed": {**INT, "description": "Rooms where the candidate would be in force (scope and overrides)."},
        "devices_checked": INT, "readings_checked": INT,
        "truncated": {**BOOL, "description": "The day held more readings than one preview replays; the last "
                                             "devices (by id) were left out."},
        "trips": {**INT, "description": "How many times it would have fired."},
        "rooms": {**array(obj({
            "room_id": STR, "room_name": nullable(STR),
            "trips": array(obj({
                "device_id": STR, "since": TIME, "tripped_at": TIME, "cleared_at": nullable(TIME),
                "peak": NUMBER, "unit": STR, "message": STR,
            })),
        })), "description": "Only rooms where it would have fired; empty: it would not have fired."},
    }),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/thresholds/preview": {"post": {
        "summary": "What a candidate rule would have fired on the last 24 h of readings; nothing is stored "
                   "(ops, admin)", "x-roles": ["ops", "admin"], "tags": ["thresholds"], "security": BEARER,
        "requestBody": json_request(ThresholdPreviewBody, "A candidate rule, and the id of the rule it replaces."),
        "responses": {"200": json_response(ref("ThresholdPreview"), "The preview."), "400": BAD_BODY,
                      "401": UNAUTHENTICATED, "403": FORBIDDEN, "413": TOO_LARGE, "415": NOT_JSON},
    }},
}
