"""Device provisioning for admins and ops: register, rotate, revoke, send commands; the registration page.

Register, rotate and revoke are the provisioning use case (hub/db/provisioning.py,
shared with ``campushub devices``): this module parses the request, passes
``WebContext.devices_changed`` (the running hub's ingress and the broker's
files) and presents the result. Credentials are shown exactly once, in the
response that created them; the hub keeps only what it verifies with (an
HMAC secret, an Ed25519 public key, a Mosquitto password hash). A recorded
command is handed to the hub with ``WebContext.send_command``.
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Annotated, Any

import msgspec
from msgspec import Meta
from quart import Blueprint, Response, jsonify, request

from hub.db import provisioning
from hub.db.biometric_consent import without_consent
from hub.db.device_commands import COMMAND_NAMES, COMMAND_STATUSES, command_json, create_command, list_commands
from hub.db.provisioning import (
    DEVICE_ID_RE,
    DEVICE_KINDS,
    MAX_MODEL,
    MAX_REASON,
    MAX_ROOM_ID,
    DeviceRegistryRow,
    EdgeAgentSetup,
    IssuedCredentials,
    RegistryError,
    get_registered_device,
    room_ids,
)
from hub.domain.biometric_consent import fingerprint_students
from hub.domain.credentials import ALGORITHMS

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
    path_param,
    query_str,
    ref,
)
from ..auth import current_principal, require
from ..context import current_context
from ..errors import WebError, invalid
from ..paging import page_json, page_of, page_params, page_request
from ..request import EmptyBody, json_body, one_of
from ._pages import render_page

bp = Blueprint("provisioning", __name__)

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

#: A command argument, as the device's msgpack frame carries it: a 64-bit integer, a finite number
#: (the bounds refuse infinities and NaN, which Python's JSON reads from 1e999 and NaN), a string,
#: a boolean or null.
CommandArg = (Annotated[int, Meta(ge=-_INT64, le=_INT64 - 1)]
              | Annotated[float, Meta(ge=-sys.float_info.max, le=sys.float_info.max)] | str | bool | None)


class DeviceRegistration(msgspec.Struct):
    """The body of ``POST /api/v1/devices``; the provisioning use case checks the same rules for the CLI."""

    device_id: Annotated[str, Meta(pattern=DEVICE_ID_RE.pattern, description=(
        "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit. Never reused."))]
    room_id: Annotated[str, Meta(min_length=1, max_length=MAX_ROOM_ID)]
    kind: Annotated[str, one_of(DEVICE_KINDS)]
    model: Annotated[str, Meta(max_length=MAX_MODEL)] = ""
    alg: Annotated[str, one_of(ALGORITHMS)] = "hmac-sha256"


class DeviceRevocation(msgspec.Struct):
    reason: Annotated[str, Meta(max_length=MAX_REASON, description="Why (optional).")] = ""


class DeviceCommandRequest(msgspec.Struct):
    name: Annotated[str, one_of(COMMAND_NAMES)]
    args: Annotated[dict[Annotated[str, Meta(max_length=64)], CommandArg], Meta(max_length=MAX_ARGS)] = {}
    ttl_s: Annotated[int, Meta(ge=1, le=MAX_TTL_S, description=(
        "Message expiry: the broker and the device drop it after this."))] = DEFAULT_TTL_S
    ack_timeout_s: Annotated[int, Meta(ge=1, le=MAX_ACK_TIMEOUT_S, description=(
        f"timed_out this long after sending (default ttl_s + {ACK_MARGIN_S})."))] | msgspec.UnsetType = msgspec.UNSET


def _registry_error(exc: RegistryError) -> WebError:
    status = {"not_found": 404, "conflict": 409}.get(exc.code, 400)
    return WebError(status, exc.code, exc.message, exc.field)


def device_registry_json(row: DeviceRegistryRow) -> dict:
    return {
        "device_id": row.device_id, "room_id": row.room_id, "kind": row.kind, "model": row.model, "alg": row.alg,
        "mqtt_username": row.mqtt_username, "credential_version": row.credential_version,
        "created_at": row.created_at, "registered_by": row.registered_by,
        "rotated_at": row.rotated_at, "rotated_by": row.rotated_by,
        "revoked": row.revoked_at is not None, "revoked_at": row.revoked_at, "revoked_by": row.revoked_by,
        "revoked_reason": row.revoked_reason,
    }


def credentials_json(issued: IssuedCredentials) -> dict:
    credentials = issued.credentials
    return {
        "device": device_registry_json(issued.device),
        "credentials": {
            "alg": credentials.keys.alg,
            "signing_key": credentials.keys.device_key.hex(),
            "mqtt_username": credentials.mqtt.username,
            "mqtt_password": credentials.mqtt.password,
            "hub_public_key": issued.hub_public_key.hex() if issued.hub_public_key else None,
        },
        "edge_agent_toml": issued.edge_agent_toml,
    }


def _edge_agent_setup() -> EdgeAgentSetup:
    ctx = current_context()
    return EdgeAgentSetup(ctx.device_mqtt_url, ctx.topic_prefix)


# --- registry -----------------------------------------------------------------------

@bp.post("/api/v1/devices")
@require("admin", "ops")
async def register() -> Response:
    body = await json_body(DeviceRegistration)
    ctx = current_context()
    try:
        issued = await provisioning.register(
            ctx.db, device_id=body.device_id, room_id=body.room_id, kind=body.kind, model=body.model, alg=body.alg,
            actor=current_principal().user_id, setup=_edge_agent_setup(), devices_changed=ctx.devices_changed,
        )
    except RegistryError as exc:
        raise _registry_error(exc) from None
    response = jsonify(credentials_json(issued))
    response.status_code = 201
    return response


@bp.post("/api/v1/devices/<device_id>/credentials/rotate")
@require("admin", "ops")
async def rotate(device_id: str) -> Response:
    await json_body(EmptyBody)
    ctx = current_context()
    try:
        issued = await provisioning.rotate(ctx.db, device_id, actor=current_principal().user_id,
                                           setup=_edge_agent_setup(), devices_changed=ctx.devices_changed)
    except RegistryError as exc:
        raise _registry_error(exc) from None
    return jsonify(credentials_json(issued))


@bp.post("/api/v1/devices/<device_id>/revoke")
@require("admin", "ops")
async def revoke(device_id: str) -> Response:
    body = await json_body(DeviceRevocation)
    ctx = current_context()
    try:
        row = await provisioning.revoke(ctx.db, device_id, actor=current_principal().user_id, reason=body.reason,
                                        devices_changed=ctx.devices_changed)
    except RegistryError as exc:
        raise _registry_error(exc) from None
    return jsonify({"device": device_registry_json(row)})


# --- commands -----------------------------------------------------------------------

@bp.post("/api/v1/devices/<device_id>/commands")
@require("admin", "ops")
async def send_command(device_id: str) -> Response:
    body = await json_body(DeviceCommandRequest)
    if len(msgspec.msgpack.encode(body.args)) > MAX_ARGS_BYTES:
        raise invalid(f"'args' is too large (over {MAX_ARGS_BYTES} bytes encoded).", field="args")
    ack_timeout_s = body.ttl_s + ACK_MARGIN_S if body.ack_timeout_s is msgspec.UNSET else body.ack_timeout_s
    ctx = current_context()
    # A fingerprint page needs consent on every path (hub/domain/biometric_consent.py), raw commands included.
    refused = await without_consent(ctx.db, sorted(fingerprint_students(body.name, body.args)))
    if refused:
        raise WebError(409, "conflict", f"No active biometric consent for {', '.join(refused)}: they check in "
                       "by QR code.", "args")
    try:
        row = await create_command(
            ctx.db, device_id=device_id, name=body.name, args=body.args, ttl_s=body.ttl_s, ack_timeout_s=ack_timeout_s,
            issued_by=current_principal().user_id, now=datetime.fromtimestamp(ctx.now(), timezone.utc),
            device_offline_after_s=ctx.device_offline_after_s,
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
    paging = page_request()
    status = request.args.get("status") or None
    if status is not None and status not in COMMAND_STATUSES:
        raise invalid(f"'status' must be one of: {', '.join(COMMAND_STATUSES)}.", field="status")
    ctx = current_context()
    if await get_registered_device(ctx.db, device_id) is None:
        raise WebError(404, "not_found", f"No device {device_id!r}.")
    rows, total = await list_commands(ctx.db, device_id, paging.limit, paging.offset, status)
    return jsonify(page_json([command_json(r) for r in rows], total, paging))


# --- page ---------------------------------------------------------------------------

@bp.get("/devices/register")
@require("admin", "ops")
async def register_page() -> str:
    return await render_page(
        "provisioning.html", rooms=await room_ids(current_context().db), kinds=DEVICE_KINDS,
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
        "args": {"type": "object", "description":
                 "Arguments in clear; sealed ones (roster, template, pushed secrets) only as"
                 " 'sealed': {sealed, size, keys, purged}, never their content."},
        "status": enum(*COMMAND_STATUSES), "ttl_s": INT, "ack_timeout_s": INT,
        "issued_by": STR, "created_at": TIME, "sent_at": nullable(TIME), "expires_at": TIME,
        "ack_deadline": {**nullable(TIME), "description": "sent_at + ack_timeout_s: timed_out after it."},
        "acked_at": nullable(TIME), "detail": STR,
    }),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/devices": {"post": {
        "summary": "Register a device; its credentials are in this response only (admin, ops)", **_ROLES,
        "tags": ["provisioning"], "security": BEARER,
        "requestBody": json_request(DeviceRegistration, "The device."),
        "responses": {"201": json_response(ref("DeviceCredentials"), "Registered."), "400": BAD_BODY,
                      "401": UNAUTHENTICATED, "403": FORBIDDEN,
                      "409": CONFLICT, "413": TOO_LARGE, "415": NOT_JSON},
    }},
    "/api/v1/devices/{device_id}/credentials/rotate": {"post": {
        "summary": "New key and broker password; the old ones stop working at once (admin, ops)", **_ROLES,
        "tags": ["provisioning"], "security": BEARER, "parameters": [_DEVICE_PARAM],
        "requestBody": json_request(EmptyBody, "An empty object."),
        "responses": {"200": json_response(ref("DeviceCredentials"), "Rotated."), "400": BAD_BODY,
                      "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": _NO_DEVICE,
                      "409": CONFLICT,
                      "413": TOO_LARGE, "415": NOT_JSON},
    }},
    "/api/v1/devices/{device_id}/revoke": {"post": {
        "summary": "Revoke a device for good; its events are rejected from now on (admin, ops)", **_ROLES,
        "tags": ["provisioning"], "security": BEARER, "parameters": [_DEVICE_PARAM],
        "requestBody": json_request(DeviceRevocation, "Why (optional)."),
        "responses": {"200": json_response(obj({"device": ref("DeviceAdmin")}), "Revoked (or already was)."),
                      "400": BAD_BODY, "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": _NO_DEVICE,
                      "413": TOO_LARGE, "415": NOT_JSON},
    }},
    "/api/v1/devices/{device_id}/commands": {
        "post": {
            "summary": "Send a command; it is published with a message expiry and waits for the device's ack "
                       "(admin, ops)", **_ROLES,
            "tags": ["provisioning"], "security": BEARER, "parameters": [_DEVICE_PARAM],
            "requestBody": json_request(DeviceCommandRequest, "The command."),
            "responses": {"202": json_response(ref("DeviceCommand"), "Recorded (pending) and being sent."),
                          "400": BAD_BODY, "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": _NO_DEVICE,
                          "409": CONFLICT, "413": TOO_LARGE, "415": NOT_JSON},
        },
        "get": {
            "summary": "A device's commands, newest first, with their status (admin, ops)", **_ROLES,
            "tags": ["provisioning"], "security": BEARER,
            "parameters": [_DEVICE_PARAM, *page_params(),
                           query_str("status", "Only commands in this status.", enum(*COMMAND_STATUSES))],
            "responses": {"200": json_response(page_of(ref("DeviceCommand")), "One page."), "400": BAD_URL,
                          "401": UNAUTHENTICATED, "403": FORBIDDEN, "404": _NO_DEVICE},
        },
    },
}
