"""Shared bits of the server-rendered pages."""
from __future__ import annotations

from datetime import datetime

from quart import g, render_template

from hub.db.users import UserRecord, get_user

from ..auth import authenticate, current_principal
from ..context import current_context
from ..errors import unauthenticated


async def current_user() -> UserRecord:
    """The logged-in user's record (for names in the page); 401 if the account is gone."""
    user = await get_user(current_context().db, current_principal().user_id)
    if user is None:
        raise unauthenticated("Your account no longer exists.")
    return user


async def render_page(template: str, **values) -> str:
    return await render_template(template, user=await current_user(), **values)


def local_now() -> datetime:
    """The app clock in the server's time zone ("today" for faculty pages)."""
    return datetime.fromtimestamp(current_context().now()).astimezone()


async def page_user() -> UserRecord | None:
    """The signed-in user for an error page's navigation, or ``None`` (anonymous, or it cannot be told).

    Used by web/errors.py through ``register(app, page_user=...)``: the error may
    come before any ``require`` ran (an unknown path), so this authenticates
    itself; it never raises, since it runs while an error is being rendered.
    """
    ctx = current_context()
    try:
        principal = g.get("principal") or await authenticate(ctx)
        return await get_user(ctx.db, principal.user_id)
    except Exception:  # noqa: BLE001 - an error page must render even when the user cannot be told
        return None
