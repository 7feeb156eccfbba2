"""The admin's people page (``/admin/people``).

Server-rendered shell; web/static/people.js fills it from the people API
(web/routes/users_api.py), the accounts API (web/routes/accounts_api.py: CSV import,
password reset) and the MFA API (web/routes/mfa_api.py: MFA reset), so the page
and the API enforce the same rules.
"""
from __future__ import annotations

from quart import Blueprint

from hub.domain.people import (
    DISPLAY_NAME_MAX,
    EMAIL_MAX,
    PROGRAM_MAX,
    ROLL_NUMBER_MAX,
    SECTION_MAX,
    USERNAME_MAX,
)
from hub.domain.roles import ROLE_DESCRIPTIONS, ROLES

from ..auth import require
from ..people import IMPORT_MAX_BYTES
from ._pages import render_page

bp = Blueprint("people_pages", __name__)


@bp.get("/admin/people")
@require("admin")
async def people_page() -> str:
    return await render_page(
        "people.html", roles=ROLES, role_descriptions=ROLE_DESCRIPTIONS,
        limits={"username": USERNAME_MAX, "display_name": DISPLAY_NAME_MAX, "email": EMAIL_MAX,
                "roll_number": ROLL_NUMBER_MAX, "program": PROGRAM_MAX, "section": SECTION_MAX},
        import_max_bytes=IMPORT_MAX_BYTES,
    )
