"""What the devices sent: every device with its health, and the rejected messages (``/api/v1``).

Documented in web/openapi.py's core paths.
"""
from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from hub.db.device_health import devices_overview
from hub.db.rejections import list_rejections

from ..auth import require
from ..console import devices_json
from ..context import current_context
from ..paging import page_json, page_request

bp = Blueprint("ingest_api", __name__, url_prefix="/api/v1")


@bp.get("/devices")
@require("ops", "admin")
async def devices() -> Response:
    return jsonify(devices_json(await devices_overview(current_context().db)))


@bp.get("/rejections")
@require("admin", "ops")
async def rejections() -> Response:
    asked = page_request()
    reason = request.args.get("reason") or None
    page = await list_rejections(current_context().db, asked.limit, asked.offset, reason)
    return jsonify(page_json((
        {
            "id": r.id, "received_at": r.received_at, "reason": r.reason, "detail": r.detail,
            "topic": r.topic, "device_id": r.device_id, "kind": r.kind, "session_id": r.session_id,
            "event_id": r.event_id, "payload_bytes": r.payload_bytes, "payload_sha256": r.payload_sha256.hex(),
        }
        for r in page.items
    ), page.total, asked, reason=reason))
