"""Health and metrics, unauthenticated (load balancers and Prometheus scrape them); the hub supplies both bodies."""
from __future__ import annotations

from quart import Blueprint, Response, jsonify

from ..context import current_context

bp = Blueprint("system", __name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@bp.get("/healthz")
async def healthz() -> Response:
    body = await current_context().health()
    response = jsonify(body)
    response.status_code = 200 if body.get("status") == "ok" else 503
    return response


@bp.get("/metrics")
async def metrics() -> Response:
    return Response(current_context().metrics_text(), content_type=PROMETHEUS_CONTENT_TYPE)
