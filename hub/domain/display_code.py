"""The classroom display's rotating session code. Pure: no I/O, no clock (time is passed in).

RFC 6238-style: ``code = truncated HMAC-SHA256(session secret, "CHD1.<session>.<window>")``
with ``window = floor(unix_s / DISPLAY_WINDOW_SECONDS)`` of the HUB's clock.
Nothing is stored per code (no batch of codes, unlike Moodle's), so reloading
the display page can never invalidate a code, and the display never consults
its own clock: the hub tells it which window to show and when to ask again.
A scan is accepted for the current window and one step back (RFC 6238 §5.2),
so a code is usable for between one and two windows (10-20 s).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

#: Windows of at most ~15 s are the advice after proxy-attendance misconduct (10 s or less at Indiana).
DISPLAY_WINDOW_SECONDS = 10
DISPLAY_STEPS_BACK = 1
#: Code length in base32 characters (10 HMAC bytes = 80 bits, 16 characters).
CODE_LENGTH = 16

CodeCheck = Literal["ok", "expired", "invalid"]


def display_window(unix_seconds: float) -> int:
    return int(unix_seconds // DISPLAY_WINDOW_SECONDS)


def display_code(secret: bytes, session_id: str, window: int) -> str:
    """The code of ``session_id`` for ``window`` (lowercase base32, no padding)."""
    digest = hmac.new(secret, f"CHD1.{session_id}.{window}".encode(), hashlib.sha256).digest()[:10]
    return base64.b32encode(digest).decode().lower()


def check_display_code(secret: bytes, session_id: str, window: int, code: str, at_unix: float) -> CodeCheck:
    """Judge a scanned ``(window, code)`` at hub time ``at_unix``.

    ``invalid`` when the MAC does not match (a forged or mistyped code), else
    ``expired`` unless ``window`` is the current one or one step back.
    """
    if len(code) != CODE_LENGTH or not hmac.compare_digest(code, display_code(secret, session_id, window)):
        return "invalid"
    current = display_window(at_unix)
    if not current - DISPLAY_STEPS_BACK <= window <= current:
        return "expired"
    return "ok"


@dataclass(frozen=True)
class DisplayFrame:
    """What the display shows now, and when to ask the hub again (a duration, not a time)."""

    window: int
    code: str
    #: Milliseconds until this window ends, by the hub's clock.
    refresh_in_ms: int


def current_frame(secret: bytes, session_id: str, at_unix: float) -> DisplayFrame:
    window = display_window(at_unix)
    ends = (window + 1) * DISPLAY_WINDOW_SECONDS
    # At least 200 ms so a display right at a boundary does not spin.
    return DisplayFrame(window, display_code(secret, session_id, window), max(200, int((ends - at_unix) * 1000)))
