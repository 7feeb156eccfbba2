"""The two-factor authentication page: enrol TOTP (QR and secret), recovery codes, turn it off.

The page is a shell; web/static/mfa.js drives web/routes/mfa_api.py. Roles
that require MFA reach it before enrolling (their login sends them here).
"""
from __future__ import annotations

from quart import Blueprint

from hub.db.mfa import get_mfa

from ..auth import current_principal, require
from ..context import current_context
from ._pages import render_page

bp = Blueprint("mfa_pages", __name__)


@bp.get("/account/mfa")
@require(during_mfa_enrolment=True)
async def mfa_page() -> str:
    ctx = current_context()
    principal = current_principal()
    record = await get_mfa(ctx.db, principal.user_id)
    return await render_page(
        "mfa.html", enabled=record is not None and record.enabled,
        required=principal.role in ctx.mfa_required_roles,
        recovery_codes_left=record.recovery_codes_left if record is not None else 0)
