"""Predictive maintenance API (docs/analytics.md, "Predictive maintenance"), under ``/api/v1/anomalies``.

Ops and admins read the unusual hours the anomaly actor found in each room's
hourly telemetry (hub/services/anomaly.py), the fitted detectors with their
figures, and may ask for a fit now. The alarms those hours raised are ordinary
alarms (``telemetry_anomaly``): acknowledged and cleared through
``/api/v1/alarms`` like any other.

Concurrency contract: each read is one query; ``POST /fit`` records the request
(at most one waits), tells this process's actor and answers at once (the fit
runs in the actor after the answer; any hub's actor takes a request its own
web could not pass on at its next pass).
"""
from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify

from hub.db.anomalies import AnomalyRecord, ModelRecord, list_anomalies, list_models, request_fit
from hub.domain.anomaly import KINDS, SEVERITY_STEPS, THRESHOLD

from ..apidoc import (
    BAD_BODY,
    BAD_URL,
    BEARER,
    BOOL,
    INT,
    NUMBER,
    STR,
    TIME,
    array,
    enum,
    error,
    json_request,
    json_response,
    nullable,
    obj,
    operation,
    query_str,
    ref,
)
from ..auth import current_principal, require
from ..context import current_context
from ..errors import WebError
from ..paging import page_json, page_of, page_params, page_request
from ..request import EmptyBody, flag_arg, instant_arg, json_body, text_arg

bp = Blueprint("anomaly_api", __name__, url_prefix="/api/v1")
ROLES = ("admin", "ops")


def anomaly_json(a: AnomalyRecord) -> dict[str, Any]:
    return {
        "id": a.id, "device_id": a.device_id, "room_id": a.room_id, "room_name": a.room_name, "metric": a.metric,
        "unit": a.unit, "hour": a.hour.isoformat(), "kind": a.kind, "value": a.value, "expected": a.expected,
        "readings": a.readings, "score": round(a.score, 2), "severity": a.severity, "model_id": a.model_id,
        "alarm_id": a.alarm_id, "alarm_state": a.alarm_state, "detected_at": a.detected_at.isoformat(),
    }


def model_json(m: ModelRecord) -> dict[str, Any]:
    return {
        "id": m.id, "metric": m.metric, "room_type": m.room_type, "detector": m.detector,
        "fitted_at": m.fitted_at.isoformat(), "trained_from": m.trained_from.isoformat(),
        "trained_to": m.trained_to.isoformat(), "series": m.series, "hours": m.hours, "active": m.active,
        "metrics": m.metrics,
    }


@bp.get("/anomalies")
@require("admin", "ops")
async def anomalies() -> Response:
    """Unusual hours, newest first; filter by device, room, metric, since."""
    page = page_request()
    found = await list_anomalies(
        current_context().db, page.limit, page.offset, device_id=text_arg("device_id", 128),
        room_id=text_arg("room_id", 128), metric=text_arg("metric", 32), since=instant_arg("since"))
    return jsonify(page_json([anomaly_json(a) for a in found.items], found.total, page))


@bp.get("/anomalies/models")
@require("admin", "ops")
async def models() -> Response:
    """The detectors in use (``history=true``: earlier fits too), with how unusual hours are judged."""
    rows = await list_models(current_context().db, include_history=flag_arg("history"))
    return jsonify({
        "items": [model_json(m) for m in rows],
        "threshold": THRESHOLD,
        # The least score of each severity.
        "severities": {severity: multiple * THRESHOLD for multiple, severity in SEVERITY_STEPS},
    })


@bp.post("/anomalies/fit")
@require("admin", "ops")
async def fit_now() -> Response:
    """Fit the detectors now on the last four weeks of hourly telemetry."""
    await json_body(EmptyBody)
    ctx, by = current_context(), current_principal().user_id
    if not await request_fit(ctx.db, by):
        raise WebError(409, "fit_already_queued", "A fit is already waiting; its detectors appear here when it ends.")
    try:
        answer = await ctx.anomaly_fit(by)
    except LookupError:  # no actor in this process now: any hub's actor takes the request at its next pass
        answer = {"started": False}
    response = jsonify({"started": bool(answer.get("started"))})
    response.status_code = 202
    return response


OPENAPI_SCHEMAS: dict[str, Any] = {
    "TelemetryAnomaly": obj({
        "id": INT, "device_id": STR, "room_id": nullable(STR), "room_name": nullable(STR), "metric": STR,
        "unit": STR, "hour": {**TIME, "description": "Start of the unusual hour (UTC)."},
        "kind": enum(*KINDS), "value": {**nullable(NUMBER), "description": "The hour's mean; null: no readings."},
        "expected": {**NUMBER, "description": "The usual mean of this hour of the week."},
        "readings": INT, "score": {**NUMBER, "description": "Robust z-score; unusual from the model's threshold."},
        "severity": enum("critical", "major", "minor", "warning"), "model_id": nullable(INT),
        "alarm_id": nullable(INT), "alarm_state": nullable(STR), "detected_at": TIME,
    }),
    "AnomalyModel": obj({
        "id": INT, "metric": STR, "room_type": STR, "detector": enum("baseline", "isolation_forest"),
        "fitted_at": TIME, "trained_from": TIME, "trained_to": TIME, "series": INT, "hours": INT, "active": BOOL,
        "metrics": {"type": "object", "description": "The fit's figures (share of training hours unusual, seconds)."},
    }),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/anomalies": {"get": {**operation(
        "Unusual hours of telemetry (admin, ops)", "devices", ROLES,
        {"200": json_response(page_of(ref("TelemetryAnomaly")), "A page of unusual hours, newest first."),
         "400": BAD_URL},
        params=[*page_params(), query_str("device_id", "Only this device."), query_str("room_id", "Only this room."),
                query_str("metric", "Only this metric."),
                query_str("since", "Only hours from this instant (ISO 8601).", TIME)]), "security": BEARER}},
    "/api/v1/anomalies/models": {"get": {**operation(
        "Fitted anomaly detectors and their figures (admin, ops)", "devices", ROLES,
        {"200": json_response(obj({"items": array(ref("AnomalyModel")), "threshold": NUMBER,
                                   "severities": {"type": "object"}}), "The detectors."), "400": BAD_URL},
        params=[query_str("history", "`true`: earlier fits too.")]), "security": BEARER}},
    "/api/v1/anomalies/fit": {"post": {**operation(
        "Fit the anomaly detectors now (admin, ops)", "devices", ROLES,
        {"202": json_response(obj({"started": {**BOOL, "description": "false: this process's anomaly actor is not"
                                               " running now; a hub's actor takes the request at its next pass."}}),
                              "The fit is asked for."), "400": BAD_BODY,
         "409": error("`fit_already_queued`: a fit is waiting already.")},
        body=json_request(EmptyBody, "`{}`.")), "security": BEARER}},
}
