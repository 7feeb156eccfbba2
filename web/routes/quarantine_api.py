"""Ops end a device's broker quarantine: ``POST /api/v1/devices/{id}/release`` (admin, ops).

A device whose rate limit tripped is kept off the broker for a cool-down
(hub/pipeline/quarantine.py, docs/reliability.md "Fairness"); ops may end that
early, e.g. once the device's configuration is fixed. The hub's quarantine
keeper ends it (audit-logged as ``device``/``released`` by the caller), rewrites
the broker's files and signals the broker; the device's agent then reconnects and
delivers what its outbox kept.

Concurrency contract: one ask of the keeper from the request's task (it waits
while the keeper renders the files, at most ~15 s).
"""
from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify

from hub.db.provisioning import get_registered_device
from hub.db.quarantine import Quarantine

from ..apidoc import (
    BAD_BODY,
    BEARER,
    INT,
    STR,
    error,
    json_request,
    json_response,
    not_found,
    nullable,
    obj,
    operation,
    path_param,
    ref,
)
from ..auth import current_principal, require
from ..context import current_context
from ..errors import WebError
from ..request import EmptyBody, json_body

bp = Blueprint("quarantine_api", __name__, url_prefix="/api/v1")


@bp.post("/devices/<device_id>/release")
@require("admin", "ops")
async def release_device(device_id: str) -> Response:
    """End the device's broker quarantine now."""
    await json_body(EmptyBody)
    ctx = current_context()
    if await get_registered_device(ctx.db, device_id) is None:
        raise WebError(404, "not_found", f"No device {device_id!r}.")
    try:
        ended = await ctx.release_quarantine(device_id, current_principal().user_id)
    except LookupError:
        raise WebError(503, "unavailable", "The hub's quarantine keeper is not running.") from None
    except (OSError, ValueError) as exc:
        raise WebError(502, "broker_files", f"Released, but the broker's files could not be rewritten: {exc}") \
            from None
    if ended is None:
        raise WebError(409, "not_quarantined", f"Device {device_id!r} is not quarantined.")
    assert isinstance(ended, Quarantine)
    return jsonify({"device_id": device_id, "quarantine": ended.json()})


_DEVICE = path_param("device_id", "Device id.")

OPENAPI_SCHEMAS: dict[str, Any] = {
    "DeviceQuarantine": obj({
        "device_id": STR, "reason": STR, "since": STR, "until": STR, "cooldown_s": {"type": "number"},
        "strikes": {**INT, "description": "Quarantines within the repeat window; each doubles the cool-down."},
        "released_at": nullable(STR), "released_by": nullable(STR),
    }),
}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/devices/{device_id}/release": {"post": {**operation(
        "End a device's broker quarantine now (admin, ops)", "devices", ("admin", "ops"),
        {"200": json_response(obj({"device_id": STR, "quarantine": ref("DeviceQuarantine")}), "Released."),
         "400": BAD_BODY, "404": not_found("device"),
         "409": error("`not_quarantined`: the device has no quarantine in force."),
         "502": error("`broker_files`: released, but the broker's files could not be rewritten."),
         "503": error("`unavailable`: no hub running.")},
        params=[_DEVICE], body=json_request(EmptyBody, "`{}`.")), "security": BEARER}},
}
