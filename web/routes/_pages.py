"""Shared bits of the server-rendered pages."""
from __future__ import annotations

from datetime import datetime

from quart import render_template

from hub.db.users import UserRecord, get_user

from ..auth import current_principal
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
