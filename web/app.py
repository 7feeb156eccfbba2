"""The quart-trio app factory and its hypercorn (trio worker) server.

Concurrency contract: :func:`create_app` is synchronous and does no I/O.
:func:`serve` runs until cancelled; every request and websocket is a task of
hypercorn's nursery inside the caller's trio run (so they share the
caller's trio-asyncio loop, which ``ctx.db`` needs).
"""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Sequence

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from quart import Response, g, has_websocket_context, request, websocket
from quart_trio import QuartTrio

from hub.core import passwords
from hub.core.config import Settings
from hub.domain.checkin_network import parse_ranges

from . import errors, openapi, templating, wording
from .auth import BrowserRefreshes
from .context import WebContext
from .cookies import set_auth_cookies
from .errors import invalid
from .routes import (
    _pages,
    academic,
    academic_pages,
    account,
    account_pages,
    accounts_api,
    anomaly_api,
    assessments_api,
    assignment_pages,
    assignments_api,
    attendance_api,
    audit,
    audit_pages,
    auth_api,
    charts_api,
    checkin,
    checkin_networks_api,
    consent_api,
    corrections,
    devices_api,
    faculty,
    gradebook_pages,
    grades_api,
    grades_pages,
    ingest_api,
    insights,
    insights_pages,
    leave,
    live,
    mfa_api,
    mfa_pages,
    notifications_api,
    ops,
    people_pages,
    privacy_api,
    provisioning,
    quarantine_api,
    risk_api,
    risk_pages,
    sessions_api,
    settings_pages,
    student,
    syllabus_api,
    syllabus_pages,
    system,
    terminal_roster_api,
    threshold_preview,
    tickets_api,
    users_api,
)
from .serialize import IsoJSONProvider
from .uploads import SizedRequest

#: Request bodies are tiny (a login form, a refresh token); refuse anything bigger.
MAX_BODY_BYTES = 64 * 1024
WEBSOCKET_MAX_MESSAGE_BYTES = 4 * 1024
WEBSOCKET_PING_INTERVAL_S = 20.0
#: A connection that sends nothing for this long is closed by hypercorn. Every live websocket
#: client answers the pings above, so only a client that stopped reading (or is gone) stays
#: silent. This is what frees a stuck websocket: hypercorn shields its socket writes from
#: cancellation, so ConnectionActor's SEND_TIMEOUT_S cannot interrupt a send to a client that
#: never reads; closing the stream here can (tests/faults/test_faults_slow_websocket.py).
#: It also cuts an HTTP request whose answer takes longer, hence more than the database's
#: 60 s command timeout (and more than three ping intervals).
READ_TIMEOUT_S = 65
#: A client that opens a TLS connection and never completes the handshake is dropped after this long
#: (as soon as an idle one would be; tests shorten it through ``Settings.tls_handshake_timeout_s``).
TLS_HANDSHAKE_TIMEOUT_S = Settings.tls_handshake_timeout_s

_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


#: Browsers that saw the hub over HTTPS once refuse plain HTTP to it for a year (RFC 6797).
HSTS = "max-age=31536000"


def create_app(
    ctx: WebContext, *, secure_cookies: bool = False, metrics_token: str | None = None, serve_metrics: bool = True,
    trusted_proxies: Sequence[str] = (),
) -> QuartTrio:
    """Build the web app around ``ctx``.

    ``secure_cookies`` marks the auth cookies ``Secure`` and sends HSTS on every
    response: turn it on whenever the app is reached over HTTPS, its own TLS or
    a TLS-terminating proxy's (it is off for plain-http demos and tests).
    ``metrics_token``, when set, is the bearer token ``/metrics`` (and the
    detailed ``/healthz``) need; ``serve_metrics=False`` leaves ``/metrics`` to
    the listener of :func:`create_metrics_app` (404 here). ``trusted_proxies`` (CIDR ranges,
    ``Settings.trusted_proxies``): peers whose ``X-Forwarded-For`` names the client
    (web/auth.py ``request_client_address``; the login limiter keys on it too).
    """
    app = QuartTrio(__name__, static_folder="static", template_folder="templates")
    app.request_class = SizedRequest  # a larger body limit on upload routes (web/uploads.py)
    app.json = IsoJSONProvider(app)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        CAMPUSHUB_SECURE_COOKIES=secure_cookies,
        CAMPUSHUB_METRICS_TOKEN=metrics_token,
        CAMPUSHUB_SERVE_METRICS=serve_metrics,
        CAMPUSHUB_TRUSTED_PROXIES=parse_ranges(trusted_proxies),
        # Errors become JSON / error pages (web/errors.py) rather than propagating to the server.
        PROPAGATE_EXCEPTIONS=False,
    )
    app.extensions["campushub"] = ctx
    app.extensions["campushub.refreshes"] = BrowserRefreshes()
    errors.register(app, page_user=_pages.page_user)
    templating.register(app)
    wording.register(app)
    for module in (account, faculty, student, ops, auth_api, attendance_api, ingest_api, live, system, openapi,
                   provisioning, devices_api, insights, insights_pages, notifications_api, checkin, tickets_api,
                   leave, corrections, audit, audit_pages, syllabus_api, syllabus_pages,
                   academic, academic_pages, sessions_api, users_api, people_pages, mfa_api, mfa_pages,
                   accounts_api, account_pages, terminal_roster_api, checkin_networks_api, quarantine_api,
                   privacy_api, consent_api, charts_api, settings_pages, threshold_preview,
                   assessments_api, gradebook_pages, assignments_api, assignment_pages, risk_api, risk_pages):
        app.register_blueprint(module.bp)
    for module in (grades_api, grades_pages):  # issue 16: grades and GPA
        app.register_blueprint(module.bp)
    app.register_blueprint(anomaly_api.bp)  # issue 16: predictive maintenance

    @app.before_serving
    async def warm_password_check() -> None:
        # The unknown-user check's dummy hash, made now: the first unknown user must not cost two hashes.
        await trio.to_thread.run_sync(passwords.warm_up)

    @app.before_request
    @app.before_websocket
    async def refuse_nul_in_url() -> None:
        # PostgreSQL text cannot hold NUL: refuse it at the door, not as a 500 from a query.
        connection = websocket if has_websocket_context() else request
        if "\x00" in connection.path or any("\x00" in k + v for k, v in connection.args.items(multi=True)):
            raise invalid("The URL must not contain NUL characters.")

    @app.after_request
    async def finish_response(response: Response) -> Response:
        issued = g.get("issued_tokens")
        if issued is not None:  # the browser session was refreshed during this request
            set_auth_cookies(response, issued)
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if secure_cookies:
            response.headers["Strict-Transport-Security"] = HSTS
        if response.status_code == 413 or (response.status_code in _REFUSED_BEFORE_BODY and _has_body()):
            # The rest of the body (oversized, or refused before it was read) is never read:
            # a client reusing this connection would hang until the read timeout
            # (tests/web/test_keepalive.py). Close it instead of draining an untrusted body.
            response.headers["Connection"] = "close"
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


def create_metrics_app(ctx: WebContext, *, metrics_token: str | None = None) -> QuartTrio:
    """The app of the metrics listener (``CAMPUSHUB_METRICS_BIND``): ``/metrics`` and ``/healthz`` only.

    It is meant for a private address, so its ``/healthz`` is the detailed one;
    ``metrics_token`` still applies to ``/metrics`` when set.
    """
    app = QuartTrio(__name__, static_folder=None, template_folder=None)
    app.json = IsoJSONProvider(app)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, PROPAGATE_EXCEPTIONS=False,
                      CAMPUSHUB_METRICS_TOKEN=metrics_token, CAMPUSHUB_SERVE_METRICS=True,
                      CAMPUSHUB_DETAILED_HEALTH=True)
    app.extensions["campushub"] = ctx
    app.register_blueprint(system.bp)  # no pages here: quart's own plain error responses suffice
    return app


#: Refusals that come before the body is read (authentication, role, content type, rate limit).
_REFUSED_BEFORE_BODY = frozenset({401, 403, 413, 415, 429})


def _has_body() -> bool:
    """The request announced a body (a length or chunked transfer)."""
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _port_of(bind: str) -> int:
    # hypercorn reports binds as "http://127.0.0.1:8080" or "http://[::1]:8080".
    return int(bind.rsplit(":", 1)[1])


async def serve(
    app: QuartTrio, *, host: str, port: int, certfile: Path | None = None, keyfile: Path | None = None,
    handshake_timeout_s: float = TLS_HANDSHAKE_TIMEOUT_S, socket_fd: int | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` with hypercorn's trio worker until cancelled.

    ``port=0`` picks a free port; ``task_status.started(port)`` reports the
    port actually bound, once the socket is listening. Cancelling this task
    closes the listener and every open connection. With ``certfile`` and
    ``keyfile`` (PEM) it speaks HTTPS only (TLS 1.2+, HTTP/1.1 and h2 by ALPN):
    a plain-HTTP client on that port fails its TLS handshake and hypercorn
    closes the connection (tests/web/test_tls.py); a client that never completes the handshake
    is dropped after ``handshake_timeout_s``. ``socket_fd``: serve on that listening socket,
    inherited from ``serve --workers`` (hub/app/workers.py), instead of binding ``host:port``.
    """
    config = Config()
    if certfile is not None and keyfile is not None:
        config.certfile, config.keyfile = str(certfile), str(keyfile)
        config.ssl_handshake_timeout = handshake_timeout_s
    if socket_fd is not None:
        config.bind = [f"fd://{socket_fd}"]
    else:
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    # hypercorn's default error log has a handler of its own, which would bypass the hub's
    # escaping formatter (hub/core/log_format.py); a Logger instance is used as it is, so
    # its records go to the root handler like every other.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.websocket_ping_interval = WEBSOCKET_PING_INTERVAL_S
    config.read_timeout = READ_TIMEOUT_S
    config.websocket_max_message_size = WEBSOCKET_MAX_MESSAGE_BYTES
    config.graceful_timeout = 1.0
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(hypercorn_serve, app, config))
        task_status.started(_port_of(binds[0]))
