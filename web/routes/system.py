"""Health and metrics for load balancers and Prometheus; the hub supplies both bodies.

- ``/healthz`` answers everyone with ``{"status": ...}`` and nothing more: 200
  for ``ok`` and ``degraded`` (the hub serves, but ``problems`` need an
  operator: an open broker, a foreign MQTT session; a load balancer must not
  drop it for that), 503 for ``starting`` and ``unavailable`` (database or
  broker unreachable). The detailed body (problems, database, broker, actors)
  is for an admin or ops session, a caller with the metrics token, and the
  private metrics listener: the public never learns what is weak.
- ``/metrics`` is public unless the operator sets ``CAMPUSHUB_METRICS_TOKEN``
  (then ``Authorization: Bearer <token>``, 401 otherwise) or moves it to a
  listener of its own with ``CAMPUSHUB_METRICS_BIND`` (then it is 404 on the
  main port). docs/deployment.md, "Metrics".
"""
from __future__ import annotations

import hmac

from quart import Blueprint, Response, current_app, jsonify, request

from ..auth import authenticate
from ..context import current_context
from ..errors import WebError, not_found, unauthenticated

bp = Blueprint("system", __name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Statuses answered 200: the hub serves (``degraded`` lists what an operator must fix).
SERVING_STATUSES = frozenset({"ok", "degraded"})
#: Roles that see the detailed health body with their ordinary session.
HEALTH_DETAIL_ROLES = frozenset({"admin", "ops"})
#: An Authorization header longer than this is not a metrics token (nor a JWT of ours).
MAX_AUTHORIZATION_CHARS = 4096


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or len(header) > MAX_AUTHORIZATION_CHARS:
        return None
    return token.strip() or None


def _has_metrics_token() -> bool:
    expected: str | None = current_app.config.get("CAMPUSHUB_METRICS_TOKEN")
    given = _bearer_token()
    if not expected or given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


async def _may_see_health_detail() -> bool:
    if current_app.config.get("CAMPUSHUB_DETAILED_HEALTH") or _has_metrics_token():
        return True
    if "Authorization" not in request.headers and not request.cookies:
        return False
    try:
        principal = await authenticate(current_context())
    except WebError:
        return False
    return principal.role in HEALTH_DETAIL_ROLES


def _refusal(error: WebError) -> Response:
    # The API's JSON error body, answered here rather than raised: /metrics is not under /api/, so the
    # app's error handler would treat a scraper as a browser and redirect a 401 to the login page.
    response = jsonify(error.body())
    response.status_code = error.status
    return response


@bp.get("/healthz")
async def healthz() -> Response:
    body = await current_context().health()
    response = jsonify(body if await _may_see_health_detail() else {"status": body.get("status")})
    response.status_code = 200 if body.get("status") in SERVING_STATUSES else 503
    return response


@bp.get("/metrics")
async def metrics() -> Response:
    if not current_app.config.get("CAMPUSHUB_SERVE_METRICS", True):
        return _refusal(not_found("Metrics are served on their own listener (CAMPUSHUB_METRICS_BIND)."))
    if current_app.config.get("CAMPUSHUB_METRICS_TOKEN") and not _has_metrics_token():
        refused = _refusal(unauthenticated("Send 'Authorization: Bearer <CAMPUSHUB_METRICS_TOKEN>'."))
        refused.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refused
    return Response(current_context().metrics_text(), content_type=PROMETHEUS_CONTENT_TYPE)
