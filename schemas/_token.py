"""The student's rotating check-in token (what the personal QR code encodes).

Format: ``CH1.<student_id>.<window>.<mac>`` where ``window = floor(unix_s / 15)``
and ``mac`` is the first 10 bytes of HMAC-SHA256(student_secret,
``"CH1.<student_id>.<window>"``) in lowercase base32 without padding. The
current window and one step back are accepted (RFC 6238 §5.2).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

TOKEN_PREFIX = "CH1"
TOKEN_WINDOW_SECONDS = 15
TOKEN_STEPS_BACK = 1
_TOKEN_RE = re.compile(r"^CH1\.([A-Za-z0-9_-]{1,64})\.(\d{1,12})\.([a-z2-7]{16})$")


@dataclass(frozen=True)
class CheckinToken:
    student_id: str
    window: int
    mac: str


def token_window(unix_seconds: float) -> int:
    return int(unix_seconds // TOKEN_WINDOW_SECONDS)


def _mac(secret: bytes, student_id: str, window: int) -> str:
    msg = f"{TOKEN_PREFIX}.{student_id}.{window}".encode()
    digest = hmac.new(secret, msg, hashlib.sha256).digest()[:10]
    return base64.b32encode(digest).decode().lower()


def issue_checkin_token(student_id: str, secret: bytes, unix_seconds: float) -> str:
    """The token text for ``student_id`` in the window containing ``unix_seconds``."""
    window = token_window(unix_seconds)
    return f"{TOKEN_PREFIX}.{student_id}.{window}.{_mac(secret, student_id, window)}"


def parse_checkin_token(text: str) -> CheckinToken | None:
    """Split token text into its parts, or ``None`` if it is not a check-in token."""
    match = _TOKEN_RE.match(text)
    if match is None:
        return None
    return CheckinToken(match.group(1), int(match.group(2)), match.group(3))


def token_is_authentic(token: CheckinToken, secret: bytes) -> bool:
    return hmac.compare_digest(token.mac, _mac(secret, token.student_id, token.window))


def token_is_fresh(token: CheckinToken, at_unix_seconds: float) -> bool:
    """True if the token's window is the one at ``at_unix_seconds`` or up to one step back."""
    now = token_window(at_unix_seconds)
    return now - TOKEN_STEPS_BACK <= token.window <= now
