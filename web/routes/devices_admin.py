"""Device provisioning for admins and ops: register, rotate, revoke, send commands; the registration page.

Credentials are generated here (``hub.domain.credentials``), stored by
``hub.db.devices_admin`` and shown exactly once, in the response that
created them; the hub keeps only what it verifies with (an HMAC secret, an
Ed25519 public key, a Mosquitto password hash). After each committed change
the running hub is told (``WebContext.devices_changed`` / ``send_command``).
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

import msgspec
from quart import Blueprint, Response, jsonify, request

from hub.db.device_commands import COMMAND_STATUSES, command_json, create_command, list_commands
from hub.db.devices_admin import (
    DEVICE_KINDS,
    DeviceAdminRow,
    RegistryError,
    get_device_admin,
    hub_signing_key,
    register_device,
    revoke_device,
    room_ids,
    rotate_credentials,
)
from hub.domain.credentials import (
    ALGORITHMS,
    DeviceCredentials,
    edge_agent_toml,
    new_device_credentials,
    new_signing_keys,
)

from ..apidoc import (
    BAD_BODY,
    BAD_URL,
    BEARER,
    BOOL,
    CONFLICT,
    FORBIDDEN,
    INT,
    NOT_JSON,
    STR,
    TIME,
    TOO_LARGE,
    UNAUTHENTICATED,
    enum,
    json_request,
    json_response,
    not_found,
    nullable,
    obj,
    page_of,
    page_params,
    path_param,
    query_str,
    ref,
)
from ..auth import current_principal, require
from ..context import current_context
from ..errors import WebError, invalid
from ._pages import render_page
from .api import DEFAULT_PAGE, MAX_PAGE, _int_arg, _json_body

bp = Blueprint("devices_admin", __name__)

#: As the wire format's DeviceId (schemas/_envelope.py); also safe in Mosquitto's files.
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
COMMAND_NAMES = ("config_push", "time_sync", "reboot", "roster_sync", "template_sync")
DEFAULT_TTL_S = 60
MAX_TTL_S = 86400
#: The ack deadline defaults to the expiry plus this: a device that gets the command at the
#: last moment of its TTL still has time to answer.
ACK_MARGIN_S = 30
MAX_ACK_TIMEOUT_S = 172800
MAX_ARGS = 64
#: The command frame must fit the 8 KiB message cap with its envelope and signature.
MAX_ARGS_BYTES = 6 * 1024
_INT64 = 2**63


def _registry_error(exc: RegistryError) -> WebError:
    status = {"not_found": 404, "conflict": 409}.get(exc.code, 400)
    return WebError(status, exc.code, exc.message, exc.field)


def device_admin_json(row: DeviceAdminRow) -> dict:
    return {
        "device_id": row.device_id, "room_id": row.room_id, "kind": row.kind, "model": row.model, "alg": row.alg,
        "mqtt_username": row.mqtt_username, "credential_version": row.credential_version,
        "created_at": row.created_at, "registered_by": row.registered_by,
        "rotated_at": row.rotated_at, "rotated_by": row.rotated_by,
        "revoked": row.revoked_at is not None, "revoked_at": row.revoked_at, "revoked_by": row.revoked_by,
        "revoked_reason": row.revoked_reason,
    }


def _text(body: dict, name: str, *, default: str, max_length: int) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or len(value) > max_length or "\x00" in value:
        raise invalid(f"'{name}' must be a string of at most {max_length} characters.", field=name)
    return value


def _choice(body: dict, name: str, choices: tuple[str, ...], default: str | None = None) -> str:
    value = body.get(name, default)
    if value not in choices:
        raise invalid(f"'{name}' must be one of: {', '.join(choices)}.", field=name)
    return value


async def _credentials_json(row: DeviceAdminRow, credentials: DeviceCredentials) -> dict:
    ctx = current_context()
    hub_public: bytes | None = None
    if credentials.keys.alg == "ed25519":
        candidate = new_signing_keys("ed25519")
        _, hub_public = await hub_signing_key(ctx.db, candidate.device_key, candidate.stored_key)
    return {
        "device": device_admin_json(row),
        "credentials": {
            "alg": credentials.keys.alg,
            "signing_key": credentials.keys.device_key.hex(),
            "mqtt_username": credentials.mqtt.username,
            "mqtt_password": credentials.mqtt.password,
            "hub_public_key": hub_public.hex() if hub_public else None,
        },
        "edge_agent_toml": edge_agent_toml(
            device_id=row.device_id, room_id=row.room_id, credentials=credentials,
            mqtt_url=ctx.device_mqtt_url, topic_prefix=ctx.topic_prefix, hub_public_key=hub_public,
        ),
    }


# --- registry -----------------------------------------------------------------------

@bp.post("/api/v1/devices")
@require("admin", "ops")
async def register() -> Response:
    body = await _json_body("device_id", "room_id", "kind")
    device_id = body["device_id"]
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise invalid("'device_id': 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit.",
                      field="device_id")
    kind = _choice(body, "kind", DEVICE_KINDS)
    alg = _choice(body, "alg", ALGORITHMS, "hmac-sha256")
    model = _text(body, "model", default="", max_length=128)
    room_id = _text(body, "room_id", default="", max_length=128)
    credentials = new_device_credentials(device_id, alg)
    ctx = current_context()
    try:
        row = await register_device(
            ctx.db, device_id=device_id, room_id=room_id, kind=kind, model=model, alg=alg,
            key=credentials.keys.stored_key, mqtt_username=credentials.mqtt.username,
            mqtt_password_hash=credentials.mqtt.password_hash, actor=current_principal().user_id,
        )
    except RegistryError as exc:
        raise _registry_error(exc) from None
    await ctx.devices_changed([device_id])
    response = jsonify(await _credentials_json(row, credentials))
    response.status_code = 201
    return response


@bp.post("/api/v1/devices/<device_id>/credentials/rotate")
@require("admin", "ops")
async def rotate(device_id: str) -> Response:
    await _json_body()
    ctx = current_context()
    current = await get_device_admin(ctx.db, device_id)
    if current is None:
        raise WebError(404, "not_found", f"No device {device_id!r}.")
    credentials = new_device_credentials(current.mqtt_username or device_id, current.alg)
    try:
        row = await rotate_credentials(
            ctx.db, device_id, key=credentials.keys.stored_key, mqtt_password_hash=credentials.mqtt.password_hash,
            mqtt_username=credentials.mqtt.username, actor=current_principal().user_id,
        )
    except RegistryError as exc:
        raise _registry_error(exc) from None
    await ctx.devices_changed([device_id])
    return jsonify(await _credentials_json(row, credentials))


@bp.post("/api/v1/devices/<device_id>/revoke")
@require("admin", "ops")
async def revoke(device_id: str) -> Response:
    body = await _json_body()
    reason = _text(body, "reason", default="", max_length=500)
    ctx = current_context()
    try:
        row = await revoke_device(ctx.db, device_id, actor=current_principal().user_id, reason=reason)
    except RegistryError as exc:
        raise _registry_error(exc) from None
    await ctx.devices_changed([device_id])
    return jsonify({"device": device_admin_json(row)})


# --- commands -----------------------------------------------------------------------

def _int_field(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if type(value) is not int or not low <= value <= high:  # bool is an int subclass: not a count
        raise invalid(f"'{name}' must be an integer between {low} and {high}.", field=name)
    return value


def _command_args(body: dict) -> dict[str, Any]:
    args = body.get("args", {})
    if not isinstance(args, dict) or len(args) > MAX_ARGS:
        raise invalid(f"'args' must be an object with at most {MAX_ARGS} entries.", field="args")
    for key, value in args.items():
        if len(key) > 64 or "\x00" in key:
            raise invalid("'args' keys are at most 64 characters, without NUL.", field="args")
        if isinstance(value, str):
            ok = "\x00" not in value
        elif isinstance(value, bool) or value is None:
            ok = True
        elif isinstance(value, int):
            ok = -_INT64 <= value < _INT64
        elif isinstance(value, float):
            ok = math.isfinite(value)
        else:
            ok = False
        if not ok:
            raise invalid(f"'args.{key}' must be a string (no NUL), a 64-bit integer, a finite number, "
                          "a boolean or null.", field="args")
    if len(msgspec.msgpack.encode(args)) > MAX_ARGS_BYTES:
        raise invalid(f"'args' is too large (over {MAX_ARGS_BYTES} bytes encoded).", field="args")
    return args


@bp.post("/api/v1/devices/<device_id>/commands")
@require("admin", "ops")
async def send_command(device_id: str) -> Response:
    body = await _json_body("name")
    name = _choice(body, "name", COMMAND_NAMES)
    args = _command_args(body)
    ttl_s = _int_field(body, "ttl_s", DEFAULT_TTL_S, 1, MAX_TTL_S)
    ack_timeout_s = _int_field(body, "ack_timeout_s", ttl_s + ACK_MARGIN_S, 1, MAX_ACK_TIMEOUT_S)
    ctx = current_context()
    try:
        row = await create_command(
            ctx.db, device_id=device_id, name=name, args=args, ttl_s=ttl_s, ack_timeout_s=ack_timeout_s,
            issued_by=current_principal().user_id, now=datetime.fromtimestamp(ctx.now(), timezone.utc),
        )
    except RegistryError as exc:
        raise _registry_error(exc) from None
    await ctx.send_command(row.command_id)
    response = jsonify(command_json(row))
    response.status_code = 202
    return response


@bp.get("/api/v1/devices/<device_id>/commands")
@require("admin", "ops")
async def commands(device_id: str) -> Response:
    limit = _int_arg("limit", DEFAULT_PAGE, 1, MAX_PAGE)
    offset = _int_arg("offset", 0, 0, 10**9)
    status = request.args.get("status") or None
    if status is not None and status not in COMMAND_STATUSES:
        raise invalid(f"'status' must be one of: {', '.join(COMMAND_STATUSES)}.", field="status")
    ctx = current_context()
    if await get_device_admin(ctx.db, device_id) is None:
        raise WebError(404, "not_found", f"No device {device_id!r}.")
    rows, total = await list_commands(ctx.db, device_id, limit, offset, status)
    return jsonify({"items": [command_json(r) for r in rows], "total": total, "limit": limit, "offset": offset})


# --- page ---------------------------------------------------------------------------

@bp.get("/devices/register")
@require("admin", "ops")
async def register_page() -> str:
    return await render_page(
        "device_register.html", rooms=await room_ids(current_context().db), kinds=DEVICE_KINDS,
        algorithms=ALGORITHMS,
    )


# --- OpenAPI ------------------------------------------------------------------------

_ROLES = {"x-roles": ["admin", "ops"]}
_DEVICE_PARAM = path_param("device_id", "Device id.")
_NO_DEVICE = not_found("device")

OPENAPI_SCHEMAS: dict[str, Any] = {
    "DeviceAdmin": obj({
        "device_id": STR, "room_id": STR, "kind": enum(*DEVICE_KINDS), "model": STR, "alg": enum(*ALGORITHMS),
        "mqtt_username": nullable(STR), "credential_version": INT, "created_at": TIME,
        "registered_by": nullable(STR), "rotated_at": nullable(TIME), "rotated_by": nullable(STR),
        "revoked": BOOL, "revoked_at": nullable(TIME), "revoked_by": nullable(STR), "revoked_reason": nullable(STR),
    }),
    "DeviceCredentials": obj({
        "device": ref("DeviceAdmin"),
        "credentials": obj({
            "alg": enum(*ALGORITHMS),
            "signing_key": {**STR, "description": "Hex. The HMAC secret, or the Ed25519 private seed. Shown once."},
            "mqtt_username": STR,
            "mqtt_password": {**STR, "description": "Shown once; the hub keeps only Mosquitto's hash."},
            "hub_public_key": {**nullable(STR), "description":
                               "Hex Ed25519 key the hub signs this device's commands with (ed25519 devices)."},
        }),
        "edge_agent_toml": {**STR, "description": "A ready-to-use edge-agent config file."},
    }),
    "DeviceCommand": obj({
        "command_id": {"type": "string", "format": "uuid"}, "device_id": STR, "name": enum(*COMMAND_NAMES),
        "args": {"type": "object"}, "status": enum(*COMMAND_STATUSES), "ttl_s": INT, "ack_timeout_s": INT,
        "issued_by": STR, "created_at": TIME, "sent_at": nullable(TIME), "expires_at": TIME,
        "ack_deadline": {**nullable(TIME), "description": "sent_at + ack_timeout_s: timed_out after it."},
        "acked_at": nullable(TIME), "detail": STR,
    }),
}

_ARG_VALUE = {"anyOf": [STR, INT, {"type": "number"}, BOOL, {"type": "null"}]}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/devices": {"post": {
        "summary": "Register a device; its credentials are in this response only (admin, ops)", **_ROLES,
        "tags": ["provisioning"], "security": BEARER,
        "requestBody": json_request(obj({
            "device_id": {"type": "string", "pattern": DEVICE_ID_RE.pattern},
            "room_id": {"type": "string", "minLength": 1, "maxLength": 128},
            "kind": enum(*DEVICE_KINDS),
            "model": {"type": "string", "maxLength": 128},
            "alg": enum(*ALGORITHMS),
        }, required=["device_id", "room_id", "kind"], closed=False), "The device. Other fields are ignored."),
        "responses": {"201": json_response(ref("DeviceCredentials"), "Registered."), "400": BAD_BODY,
                      "401": UNAUTHENTICATED, "403": FORBIDDEN,
                      "409": CONFLICT, "413": TOO_LARGE, "415": NOT_JSON},
    }},
    "/api/v1/devices/{device_id}/credentials/rotate": {"post": {
        "summary": "New key and broker password; the old ones stop working at once (admin, ops)", **_ROLES,
        "tags": ["provisioning"], "security": BEARER, "parameters": [_DEVICE_PARAM],
        "requestBody": json_request({"type": "object"}, "An empty object (fields are ignored)."),
        "responses": {"200": json_response(ref("DeviceCredentials"), "Rotated."), "400": BAD_BODY,
                      "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": _NO_DEVICE,
                      "409": CONFLICT,
                      "413": TOO_LARGE, "415": NOT_JSON},
    }},
    "/api/v1/devices/{device_id}/revoke": {"post": {
        "summary": "Revoke a device for good; its events are rejected from now on (admin, ops)", **_ROLES,
        "tags": ["provisioning"], "security": BEARER, "parameters": [_DEVICE_PARAM],
        "requestBody": json_request(obj({"reason": {"type": "string", "maxLength": 500}}, required=[],
                                        closed=False), "Why (optional). Other fields are ignored."),
        "responses": {"200": json_response(obj({"device": ref("DeviceAdmin")}), "Revoked (or already was)."),
                      "400": BAD_BODY, "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": _NO_DEVICE,
                      "413": TOO_LARGE, "415": NOT_JSON},
    }},
    "/api/v1/devices/{device_id}/commands": {
        "post": {
            "summary": "Send a command; it is published with a message expiry and waits for the device's ack "
                       "(admin, ops)", **_ROLES,
            "tags": ["provisioning"], "security": BEARER, "parameters": [_DEVICE_PARAM],
            "requestBody": json_request(obj({
                "name": enum(*COMMAND_NAMES),
                "args": {"type": "object", "maxProperties": MAX_ARGS, "additionalProperties": _ARG_VALUE},
                "ttl_s": {"type": "integer", "minimum": 1, "maximum": MAX_TTL_S, "default": DEFAULT_TTL_S,
                          "description": "Message expiry: the broker and the device drop it after this."},
                "ack_timeout_s": {"type": "integer", "minimum": 1, "maximum": MAX_ACK_TIMEOUT_S,
                                  "description": f"timed_out this long after sending (default ttl_s + {ACK_MARGIN_S})."},
            }, required=["name"], closed=False), "The command. Other fields are ignored."),
            "responses": {"202": json_response(ref("DeviceCommand"), "Recorded (pending) and being sent."),
                          "400": BAD_BODY, "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": _NO_DEVICE,
                          "409": CONFLICT, "413": TOO_LARGE, "415": NOT_JSON},
        },
        "get": {
            "summary": "A device's commands, newest first, with their status (admin, ops)", **_ROLES,
            "tags": ["provisioning"], "security": BEARER,
            "parameters": [_DEVICE_PARAM, *page_params(MAX_PAGE, DEFAULT_PAGE),
                           query_str("status", "Only commands in this status.", enum(*COMMAND_STATUSES))],
            "responses": {"200": json_response(page_of(ref("DeviceCommand")), "One page."), "400": BAD_URL,
                          "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": _NO_DEVICE},
        },
    },
}
