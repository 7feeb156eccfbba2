"""The OpenAPI 3.1 description of the JSON API, ``/healthz`` and ``/metrics``; served at ``GET /api/v1/openapi.json``.

Written beside the routes, so it says what they really promise: route modules
document their own operations (``OPENAPI_PATHS``, see web/apidoc.py) and are
merged here from ``DOCUMENTED_MODULES``. Request bodies are the msgspec
structs the routes read them with (web/request.py); their schemas are
generated here into ``#/components/schemas``. Core routes: web/routes/auth_api.py,
attendance_api.py, ingest_api.py, system.py, and web/errors.py. ``tests/hostile/test_hostile_openapi.py``
compares its paths with the app's URL map, and
``tests/hostile/test_hostile_schemathesis.py`` fuzzes every operation against
a running hub and checks each response against it: change a route, change
this document.
"""
from __future__ import annotations

from typing import Any

import msgspec
from quart import Blueprint, Response, jsonify

from .apidoc import (
    BAD_URL,
    BEARER,
    BOOL,
    FORBIDDEN,
    INT,
    NOT_JSON,
    RATE_LIMITED,
    STR,
    TIME,
    TOO_LARGE,
    UNAUTHENTICATED,
    error,
    json_request,
    json_response,
    nullable,
    obj,
    path_param,
    ref,
)
from .auth import ACCESS_TTL_S, MFA_PENDING_TTL_S, REFRESH_TTL_S, ROLES
from .feeds import STATUSES
from .paging import page_of, page_params
from .request import schema_hook
from .routes import (
    academic,
    accounts_api,
    anomaly_api,
    assessments_api,
    assignments_api,
    audit,
    charts_api,
    checkin,
    checkin_networks_api,
    consent_api,
    corrections,
    devices_api,
    grades_api,
    insights,
    leave,
    mfa_api,
    notifications_api,
    privacy_api,
    provisioning,
    quarantine_api,
    risk_api,
    sessions_api,
    syllabus_api,
    terminal_roster_api,
    threshold_preview,
    tickets_api,
    users_api,
)
from .routes.auth_api import Credentials, RefreshToken, SecondFactor

bp = Blueprint("openapi", __name__)

OPENAPI_PATH = "/api/v1/openapi.json"

_BEARER = BEARER
_ref, _json, _error, _nullable, _object = ref, json_response, error, nullable, obj
_STR, _INT, _BOOL, _TIME = STR, INT, BOOL, TIME
_UNAUTHENTICATED, _FORBIDDEN, _BAD_URL, _TOO_LARGE, _NOT_JSON = (
    UNAUTHENTICATED, FORBIDDEN, BAD_URL, TOO_LARGE, NOT_JSON)


_SCHEMAS: dict[str, Any] = {
    "Error": _object({
        "error": _object({
            "code": {**_STR, "description": "Stable machine code, e.g. `invalid_request`, `not_found`."},
            "message": {**_STR, "description": "For humans."},
            "field": {**_STR, "description": "The offending field or parameter, when there is one."},
        }, required=["code", "message"]),
        # Only on a refused import (422 `import_rejected`): every bad row of the file.
        "errors": {"type": "array", "items": _object({
            "line": _INT, "field": _nullable(_STR), "reason": _STR,
        })},
        # Only on a refused exam sitting (409 `exam_clash`, web/routes/assessments_api.py): what is in the way.
        "clashes": {"type": "array", "items": _ref("ExamClash")},
    }, required=["error"]),
    "User": _object({
        "id": _STR, "username": _STR, "display_name": _STR, "role": {"type": "string", "enum": list(ROLES)},
    }),
    "Tokens": _object({
        "token_type": {"const": "Bearer"},
        "access_token": {**_STR, "description": f"HS256 JWT, valid {ACCESS_TTL_S} s."},
        "expires_in": _INT,
        "refresh_token": {**_STR, "description": f"Single use (rotated), valid {REFRESH_TTL_S} s."},
        "refresh_expires_in": _INT,
        "user": _ref("User"),
    }),
    "MfaRequired": _object({
        "mfa_required": {"const": True},
        "mfa_token": {**_STR, "description": f"Pending login (not an access token), valid {MFA_PENDING_TTL_S} s."},
        "expires_in": _INT,
        "methods": {"type": "array", "items": {"type": "string", "enum": ["totp", "recovery_code"]}},
    }),
    "Session": _object({
        "session_id": _STR, "course_id": _STR, "course_code": _STR, "course_title": _STR,
        "room_id": _STR, "room_name": _STR, "starts_at": _TIME, "ends_at": _TIME, "opens_at": _TIME,
        "grace_minutes": _INT,
        "status": {"type": "string", "enum": ["scheduled", "open", "closed", "cancelled"]},
        "live": _BOOL, "ended": _BOOL,
    }),
    "Roster": _object({
        "session": _ref("Session"),
        "students": {"type": "array", "items": _object({
            "student_id": _STR, "name": _STR, "roll_number": _STR,
            "status": {"type": "string", "enum": list(STATUSES)},
            "checked_in_at": _nullable(_TIME),
        })},
        "counts": _object({name: _INT for name in (*(s.replace("-", "_") for s in STATUSES), "enrolled")}),
    }),
    "Attendance": _object({
        "student": _object({"student_id": _STR, "name": _STR, "roll_number": _STR}),
        "courses": {"type": "array", "items": _object({
            "course_id": _STR, "course_code": _STR, "course_title": _STR,
            "sessions": {"type": "array", "items": _object({
                "session_id": _STR, "starts_at": _nullable(_TIME), "ends_at": _nullable(_TIME),
                "status": {"type": "string", "enum": list(STATUSES)}, "checked_in_at": _nullable(_TIME),
            })},
            "attended": _INT, "total": _INT,
        })},
    }),
    "Device": _object({
        "device_id": _STR, "room_id": _STR, "room_name": _STR, "kind": _STR, "model": _STR,
        "revoked": _BOOL, "online": _BOOL, "last_seen": _nullable(_TIME), "firmware": _STR,
        "outbox_depth": _INT, "reason": _STR, **devices_api.DEVICE_HEALTH_PROPERTIES,
    }),
    "Devices": _object({"devices": {"type": "array", "items": _ref("Device")}, "online": _INT}),
    "Rejection": _object({
        "id": _INT, "received_at": _TIME, "reason": _STR, "detail": _STR, "topic": _STR,
        "device_id": _nullable(_STR), "kind": _nullable(_STR), "session_id": _nullable(_STR),
        "event_id": _nullable({"type": "string", "format": "uuid"}), "payload_bytes": _INT,
        "payload_sha256": {"type": "string", "description": "SHA-256 (hex) of the whole payload; the hub keeps"
                                                           " only its size, this hash and its first 256 bytes."},
    }),
    "RejectionPage": page_of(_ref("Rejection"), reason=_nullable(_STR)),
    "Health": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded", "unavailable", "starting"],
                       "description": "`starting` until every actor is up and the broker subscriptions are made; "
                                      "`unavailable` while the database or the broker cannot be reached (503); "
                                      "`degraded`: serving (200), with `problems` an operator must fix."},
            "problems": {"type": "array", "items": _STR,
                         "description": "Why the status is `degraded`, e.g. a broker open to anonymous clients."},
            "database": {"type": "object", "properties": {"ok": _BOOL}, "required": ["ok"]},
            "broker": {"type": "object", "properties": {"ok": _BOOL, "reconnects": _INT, "client_id": _STR},
                       "required": ["ok"]},
            "actors": {"type": "object", "additionalProperties": _INT},
        },
        "required": ["status"],
    },
}


_path_param = path_param


def _auth_post(summary: str, body: dict[str, Any], ok: dict, refused: dict) -> dict:
    return {"post": {
        "summary": summary, "tags": ["auth"], "security": [], "x-roles": [], "requestBody": body,
        "responses": {**ok, "400": _error("`invalid_request`: not a JSON object, or a field missing."),
                      **refused, "413": _TOO_LARGE, "415": _NOT_JSON},
    }}


_PATHS: dict[str, Any] = {
    "/api/v1/auth/login": _auth_post(
        "Log in; returns an access and a refresh token, or asks for a second factor",
        json_request(Credentials, "Credentials."),
        {"200": _json({"oneOf": [_ref("Tokens"), _ref("MfaRequired")]},
                      "Logged in (`Tokens`), or, for an account with two-factor authentication, the password"
                      " was right and a code is needed (`MfaRequired`: send its `mfa_token` and a code to"
                      " /api/v1/auth/login/mfa).")},
        {"401": _error("`invalid_credentials`."),
         "429": _error("`rate_limited`: too many failed logins for this account or address (`Retry-After`).")}),
    "/api/v1/auth/login/mfa": _auth_post(
        "The second step of a login: the pending `mfa_token` and a TOTP or recovery code; returns the tokens",
        json_request(SecondFactor, "The pending login and a code."),
        {"200": _json(_ref("Tokens"), "Logged in.")},
        {"400": _error("`invalid_code`: wrong code, or one already used (a TOTP code works once);"
                       " `invalid_request`: a malformed body."),
         "401": _error("`invalid_mfa_token`: unknown or expired pending login (log in again)."),
         "429": _error("`too_many_codes`: 10 wrong codes within 15 minutes; `Retry-After` says when to retry.")}),
    "/api/v1/auth/refresh": _auth_post(
        "Rotate a refresh token; returns a new pair (reusing a rotated token revokes them all)",
        json_request(RefreshToken, "The current refresh token."),
        {"200": _json(_ref("Tokens"), "Rotated.")},
        {"401": _error("`invalid_refresh_token`: unknown, expired, revoked or already used.")}),
    "/api/v1/auth/logout": _auth_post(
        "Revoke a refresh token (idempotent)",
        json_request(RefreshToken, "The refresh token to revoke."),
        {"204": {"description": "Revoked (or already unusable)."}},
        {}),
    "/api/v1/me": {"get": {
        "summary": "The calling user", "tags": ["users"], "security": _BEARER, "x-roles": list(ROLES),
        "responses": {"200": _json(_ref("User"), "The user."), "401": _UNAUTHENTICATED},
    }},
    "/api/v1/sessions/{session_id}/roster": {"get": {
        "summary": "A class session's roster with live statuses (faculty teaching it, admin)", "tags": ["sessions"],
        "security": _BEARER, "x-roles": ["faculty", "admin"], "parameters": [_path_param("session_id", "Class session id.")],
        "responses": {"200": _json(_ref("Roster"), "The roster."), "400": _BAD_URL, "401": _UNAUTHENTICATED,
                      "403": _FORBIDDEN, "404": _error("`not_found`: no such session.")},
    }},
    "/api/v1/students/{student_id}/attendance": {"get": {
        "summary": "A student's attendance per course (the student, their faculty, admin)", "tags": ["students"],
        "security": _BEARER, "x-roles": ["student", "faculty", "admin"],
        "parameters": [_path_param("student_id", "Student (user) id.")],
        "responses": {"200": _json(_ref("Attendance"), "Attendance."), "400": _BAD_URL,
                      "401": _UNAUTHENTICATED, "403": _FORBIDDEN, "404": _error("`not_found`: no such student.")},
    }},
    "/api/v1/devices": {"get": {
        "summary": "Every device with its health (ops, admin)", "tags": ["devices"], "security": _BEARER,
        "x-roles": ["ops", "admin"],
        "responses": {"200": _json(_ref("Devices"), "Devices."), "401": _UNAUTHENTICATED, "403": _FORBIDDEN},
    }},
    "/api/v1/rejections": {"get": {
        "summary": "Rejected messages, newest first (admin, ops)", "tags": ["rejections"], "security": _BEARER,
        "x-roles": ["admin", "ops"],
        "parameters": [
            *page_params(),
            {"name": "reason", "in": "query", "required": False, "schema": _STR,
             "description": "Only this rejection reason (e.g. `bad_signature`)."},
        ],
        "responses": {"200": _json(_ref("RejectionPage"), "One page."), "400": _BAD_URL,
                      "401": _UNAUTHENTICATED, "403": _FORBIDDEN},
    }},
    OPENAPI_PATH: {"get": {
        "summary": "This document", "tags": ["system"], "security": [], "x-roles": [],
        "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")},
    }},
    "/healthz": {"get": {
        "summary": "Liveness and readiness (database, broker, actors)", "tags": ["system"], "security": [],
        "x-roles": [],
        "description": "Anyone gets `{\"status\"}` alone; admin and ops sessions, callers with the metrics "
                       "token and the metrics listener (`CAMPUSHUB_METRICS_BIND`) get the details.",
        "responses": {"200": _json(_ref("Health"), "Serving: `ok` or `degraded`."),
                      "503": _json(_ref("Health"), "Not serving: `starting` or `unavailable`.")},
    }},
    "/metrics": {"get": {
        "summary": "Prometheus metrics", "tags": ["system"], "security": [], "x-roles": [],
        "description": "Public unless the operator sets `CAMPUSHUB_METRICS_TOKEN` (then `Authorization: Bearer "
                       "<token>`) or `CAMPUSHUB_METRICS_BIND` (then served only there; docs/deployment.md).",
        "responses": {"200": {"description": "Prometheus text format 0.0.4.",
                              "content": {"text/plain": {"schema": _STR}}},
                      "401": error("`unauthenticated`: a metrics token is configured and was not sent."),
                      "404": error("`not_found`: metrics are served on their own listener.")},
    }},
}

#: Route modules that document their own operations (``OPENAPI_PATHS``, optional
#: ``OPENAPI_SCHEMAS``; see web/apidoc.py). Add a module here when you add one.
DOCUMENTED_MODULES: tuple = (provisioning, insights, notifications_api, checkin, tickets_api, leave, corrections, audit,
                              academic, sessions_api, devices_api, users_api, mfa_api,
                              accounts_api, terminal_roster_api, checkin_networks_api, quarantine_api,
                              privacy_api, consent_api, threshold_preview, charts_api, syllabus_api,
                              assessments_api, assignments_api, risk_api, grades_api, anomaly_api)


def _with_generated_schemas(paths: dict[str, Any], schemas: dict[str, Any]) -> tuple[dict, dict]:
    """``paths`` with each msgspec struct (a request body, see web/apidoc.py's ``json_request``)
    replaced by a reference, and ``schemas`` plus the components generated from those structs."""
    shapes: list[type[msgspec.Struct]] = []

    def resolve(node: Any) -> Any:
        if isinstance(node, type) and issubclass(node, msgspec.Struct):
            shapes.append(node)
            return ref(node.__name__)
        if isinstance(node, dict):
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved = resolve(paths)
    by_name: dict[str, set[type]] = {}
    for shape in shapes:
        by_name.setdefault(shape.__name__, set()).add(shape)
    clashing = sorted(name for name, found in by_name.items() if len(found) > 1)
    if clashing:
        # A reference names the struct alone; two structs of one name would leave it dangling.
        raise RuntimeError(f"request structs of the same name in two modules: {clashing}")
    _, generated = msgspec.json.schema_components(
        dict.fromkeys(shapes), schema_hook=schema_hook, ref_template="#/components/schemas/{name}")
    for name in generated:
        if name in schemas:
            raise RuntimeError(f"the request struct {name} clashes with the hand-written schema {name!r}")
    return resolved, {**schemas, **generated}


def _merged(base: dict[str, Any], attribute: str) -> dict[str, Any]:
    merged = dict(base)
    for module in DOCUMENTED_MODULES:
        for key, value in getattr(module, attribute, {}).items():
            if key in merged and attribute == "OPENAPI_PATHS" and not set(merged[key]) & set(value):
                # Another method on a path documented elsewhere (e.g. POST beside a GET).
                merged[key] = {**merged[key], **value}
                continue
            if key in merged:
                raise RuntimeError(f"{module.__name__} documents {key!r} twice")
            merged[key] = value
    return merged


def _with_rate_limits(paths: dict[str, Any]) -> dict[str, Any]:
    """Every signed-in operation may answer 429 (the per-user request limits, web/protection.py)."""
    for methods in paths.values():
        for op in methods.values():
            if op.get("security") != [] and "429" not in op["responses"]:
                op["responses"]["429"] = RATE_LIMITED
    return paths


_DOCUMENTED_PATHS, _DOCUMENTED_SCHEMAS = _with_generated_schemas(
    _with_rate_limits(_merged(_PATHS, "OPENAPI_PATHS")), _merged(_SCHEMAS, "OPENAPI_SCHEMAS"))

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "CampusHub API", "version": "1",
        "description": "JSON API of the CampusHub web app. Every error is "
                       '`{"error": {"code", "message", "field"?}}`. POST bodies must be `application/json`.',
    },
    "servers": [{"url": "/"}],
    "security": _BEARER,
    "paths": _DOCUMENTED_PATHS,
    "components": {
        "schemas": _DOCUMENTED_SCHEMAS,
        "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "An access token from /api/v1/auth/login (browsers use HttpOnly cookies instead).",
        }},
    },
}


@bp.get(OPENAPI_PATH)
async def openapi_document() -> Response:
    return jsonify(DOCUMENT)
