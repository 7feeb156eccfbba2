"""One error type for the web app, rendered for whoever asked.

Every refusal is a :class:`WebError`; :func:`register` installs the handlers
that turn it (and werkzeug's own HTTP errors) into:

- JSON ``{"error": {"code", "message", "field"?}}`` under ``/api/``,
- an HTTP refusal of the websocket handshake (same JSON body) for websockets,
- for pages, a redirect to ``/login`` on 401 and an HTML error page otherwise: the signed-in
  user's navigation stays (``page_user``, given by the app), and the page says what happened
  in words (web/wording.py ``status_heading``) with the message; the code stays in the JSON.

The academic db layer's refusals (:class:`hub.db.academic.AcademicError`, with
their own status, code and field) are rendered the same way.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Literal
from urllib.parse import urlencode

from quart import Quart, Response, has_websocket_context, jsonify, redirect, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers.response import Response as WerkzeugResponse

from hub.db.academic import AcademicError

from .cookies import clear_auth_cookies

ClientKind = Literal["api", "page", "websocket"]


class WebError(Exception):
    """A refusal with an HTTP status, a stable machine ``code`` and a human ``message``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        #: Seconds after which a 429 may be retried: sent as ``Retry-After``.
        self.retry_after: int | None = None

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


def unauthenticated(message: str = "Log in first.", code: str = "unauthenticated") -> WebError:
    return WebError(401, code, message)


def forbidden(message: str = "You may not see this.") -> WebError:
    return WebError(403, "forbidden", message)


def not_found(message: str = "Not found.") -> WebError:
    return WebError(404, "not_found", message)


def invalid(message: str, field: str | None = None) -> WebError:
    return WebError(400, "invalid_request", message, field)


def client_kind() -> ClientKind:
    """Who is asking: decides how errors (and authentication) are handled."""
    if has_websocket_context():
        return "websocket"
    return "api" if request.path.startswith("/api/") else "page"


def _http_code(error: HTTPException) -> str:
    return (error.name or "error").lower().replace(" ", "_")


#: The signed-in user of an error page (for its navigation), or ``None``; set by :func:`register`.
PageUser = Callable[[], Awaitable[Any]]


async def _no_user() -> None:
    return None


async def _render_for(error: WebError, page_user: PageUser = _no_user) -> Response | WerkzeugResponse:
    """The refusal as the client wants it (a ``redirect()`` is werkzeug's response type)."""
    kind = client_kind()
    response: Response | WerkzeugResponse
    if kind == "page":
        if error.status == 401:
            target = "/login"
            if request.method == "GET" and request.path not in ("/", "/login"):
                target += "?" + urlencode({"next": request.full_path.rstrip("?")})
            response = redirect(target)
        else:
            html = await render_template("error.html", error=error, user=await page_user())
            response = Response(html, status=error.status, content_type="text/html; charset=utf-8")
    else:
        response = jsonify(error.body())
        response.status_code = error.status
    if error.status == 401:
        # Stale or forged credentials: make the browser forget them.
        clear_auth_cookies(response)
    if error.retry_after is not None:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def register(app: Quart, *, page_user: PageUser = _no_user) -> None:
    """Install the handlers; ``page_user`` tells an error page whose menu to show (it must not raise)."""
    def _render(error: WebError) -> Awaitable[Response | WerkzeugResponse]:
        return _render_for(error, page_user)

    @app.errorhandler(WebError)
    async def on_web_error(error: WebError) -> Response | WerkzeugResponse:
        return await _render(error)

    @app.errorhandler(AcademicError)
    async def on_academic_error(error: AcademicError) -> Response | WerkzeugResponse:
        return await _render(WebError(error.status, error.code, error.message, error.field))

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException) -> Response | WerkzeugResponse:
        status = error.code or 500
        if status >= 500:  # quart has already logged the original exception
            return await _render(WebError(status, "internal", "Something went wrong on our side."))
        return await _render(WebError(status, _http_code(error), error.description or error.name))
