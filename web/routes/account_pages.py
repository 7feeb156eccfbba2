"""The pages where people choose passwords: ``/activate`` (with a one-time code, no session) and
``/account/password`` (change your own).

Both are shells: web/static/password.js explains the policy as the person
types (``POST /api/v1/password-check``, debounced) and submits to
web/routes/accounts_api.py.
"""
from __future__ import annotations

from quart import Blueprint, render_template, request

from hub.db.accounts import MAX_CODE_INPUT, must_change_password
from hub.domain.password_policy import MAX_LENGTH, MIN_LENGTH

from ..auth import current_principal, require
from ..context import current_context
from ._pages import render_page

bp = Blueprint("account_pages", __name__)


@bp.get("/activate")
async def activate_page() -> str:
    """Code (prefilled from ``?code=``, e.g. a link in the activation mail) and the new password."""
    code = (request.args.get("code") or "")[:MAX_CODE_INPUT]
    return await render_template("activate.html", code=code, min_length=MIN_LENGTH, max_length=MAX_LENGTH)


@bp.get("/account/password")
@require(during_mfa_enrolment=True)
async def password_page() -> str:
    forced = await must_change_password(current_context().db, current_principal().user_id)
    return await render_page("password.html", forced=forced, min_length=MIN_LENGTH, max_length=MAX_LENGTH)
