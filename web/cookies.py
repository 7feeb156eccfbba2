"""The two auth cookies of browser sessions.

Both are HttpOnly (page scripts never see a token) and SameSite=Lax (other
sites' forms, fetches and websockets do not carry them; see web/auth.py for
the CSRF reasoning). ``Secure`` follows the app's ``CAMPUSHUB_SECURE_COOKIES``
setting: on when the hub serves HTTPS itself or ``CAMPUSHUB_SECURE_COOKIES=1`` says a
TLS-terminating proxy does (web/app.py then also sends HSTS), off for plain-http demos and
the test client.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from quart import current_app
from werkzeug.sansio.response import Response

if TYPE_CHECKING:
    from .auth import TokenPair

# Typed with werkzeug's base response: both quart's responses and the werkzeug ones
# ``redirect()`` builds carry cookies.

ACCESS_COOKIE = "ch_access"
REFRESH_COOKIE = "ch_refresh"


def set_auth_cookies(response: Response, pair: "TokenPair") -> None:
    secure = bool(current_app.config.get("CAMPUSHUB_SECURE_COOKIES", False))
    for name, value, expires_at in (
        (ACCESS_COOKIE, pair.access_token, pair.access_expires_at),
        (REFRESH_COOKIE, pair.refresh_token, pair.refresh_expires_at),
    ):
        response.set_cookie(
            name, value, max_age=max(0, int(expires_at - pair.issued_at)),
            path="/", httponly=True, samesite="Lax", secure=secure,
        )


def clear_auth_cookies(response: Response) -> None:
    # With the same attributes they were set with: a browser matches the cookie to replace by them.
    secure = bool(current_app.config.get("CAMPUSHUB_SECURE_COOKIES", False))
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        response.delete_cookie(name, path="/", httponly=True, samesite="Lax", secure=secure)
