"""Login form, logout, and the role-based landing redirect.

The login form is the app's only form POST (see the CSRF notes in web/auth.py).
"""
from __future__ import annotations

from urllib.parse import urlsplit

from quart import Blueprint, redirect, render_template, request
from werkzeug.wrappers.response import Response  # what quart's redirect() builds

from .. import auth
from ..auth import current_principal, origin_allowed, require
from ..context import current_context
from ..cookies import REFRESH_COOKIE, clear_auth_cookies, set_auth_cookies
from ..errors import WebError, forbidden

bp = Blueprint("account", __name__)

HOME_BY_ROLE = {"admin": "/admin", "faculty": "/faculty", "student": "/student", "ops": "/ops"}


def _safe_next(target: str | None) -> str | None:
    """Only same-site absolute paths: ``next`` must not become an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target


@bp.route("/login", methods=["GET", "POST"])
async def login() -> Response | str | tuple[str, int]:
    next_url = _safe_next(request.args.get("next"))
    if request.method == "GET":
        return await render_template("login.html", next_url=next_url, error=None, username="")
    if not origin_allowed():
        raise forbidden("Cross-origin login refused.")
    form = await request.form
    username = form.get("username", "").strip()
    try:
        pair = await auth.login(current_context(), username, form.get("password", ""))
    except WebError as error:
        if error.code != "invalid_credentials":
            raise
        html = await render_template("login.html", next_url=next_url, error=error.message, username=username)
        return html, 401
    response = redirect(next_url or HOME_BY_ROLE[pair.user.role], 303)
    set_auth_cookies(response, pair)
    return response


@bp.get("/logout")
async def logout() -> Response:
    """A GET so it works as a plain link; cross-site, the worst it can do is log the user out."""
    refresh_token = request.cookies.get(REFRESH_COOKIE)
    if refresh_token:
        await auth.logout(current_context(), refresh_token)
    response = redirect("/login", 303)
    clear_auth_cookies(response)
    return response


@bp.get("/")
@require()
async def home() -> Response:
    return redirect(HOME_BY_ROLE[current_principal().role])
