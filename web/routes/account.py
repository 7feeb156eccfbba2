"""Login form, logout, and the role-based landing redirect.

The login and logout forms are the app's only form POSTs, both checked for a
same-origin ``Origin`` (see the CSRF notes in web/auth.py).
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
from ..mfa import MAX_CODE_CHARS

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
        outcome = await auth.login(current_context(), username, form.get("password", ""))
    except WebError as error:
        if error.code != "invalid_credentials":
            raise
        html = await render_template("login.html", next_url=next_url, error=error.message, username=username)
        return html, 401
    if isinstance(outcome, auth.SecondFactorRequired):
        return await _code_step(outcome.mfa_token, next_url, error=None)
    return _logged_in(outcome, next_url)


@bp.post("/login/mfa")
async def login_second_factor() -> Response | str | tuple[str, int]:
    """The login form's second step (accounts with two-factor authentication): the pending login and a code."""
    next_url = _safe_next(request.args.get("next"))
    if not origin_allowed():
        raise forbidden("Cross-origin login refused.")
    form = await request.form
    mfa_token = form.get("mfa_token", "")
    try:
        pair = await auth.complete_login(current_context(), mfa_token, form.get("code", "")[:MAX_CODE_CHARS + 1])
    except WebError as error:
        if error.code == "invalid_mfa_token":
            html = await render_template("login.html", next_url=next_url, error=error.message, username="")
            return html, 401
        if error.code not in ("invalid_code", "too_many_codes"):
            raise
        return await _code_step(mfa_token, next_url, error=error.message), error.status
    return _logged_in(pair, next_url)


async def _code_step(mfa_token: str, next_url: str | None, error: str | None) -> str:
    return await render_template("login.html", step="code", mfa_token=mfa_token, next_url=next_url, error=error,
                                 username="")


def _logged_in(pair: auth.TokenPair, next_url: str | None) -> Response:
    """Cookies and the way on: the requested page, the role's home, or (a role that must have a
    second factor and has none yet) the enrolment page."""
    if pair.user.role in current_context().mfa_required_roles and not pair.principal.mfa:
        target = "/account/mfa"
    else:
        target = next_url or HOME_BY_ROLE[pair.user.role]
    response = redirect(target, 303)
    set_auth_cookies(response, pair)
    return response


@bp.get("/logout")
async def confirm_logout() -> str:
    """A page with the logout button: a GET changes nothing, so another site cannot log the user out with a link."""
    return await render_template("logout.html")


@bp.post("/logout")
async def logout() -> Response:
    """Revoke the browser's refresh token and clear both cookies (the pages' "Log out" button posts here).

    Same-origin form POSTs only, like ``/login``: SameSite=Lax already keeps
    the cookies off other sites' POSTs, and the Origin check also refuses a
    sibling subdomain's form.
    """
    if not origin_allowed():
        raise forbidden("Cross-origin logout refused.")
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
