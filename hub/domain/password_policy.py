"""The password policy: long enough, not common, not close to who the person is. Pure (no I/O).

zxcvbn estimates how many guesses a password needs, against dictionaries of
common passwords, names and words, keyboard patterns, dates and l33t
spellings, and against the person's own inputs (username, name, email). The
policy refuses a password that is

- shorter than :data:`MIN_LENGTH` characters (or longer than :data:`MAX_LENGTH`,
  a bound on the work zxcvbn does and on what we hash);
- estimated weak (a zxcvbn score below :data:`MIN_SCORE`), e.g. a common
  password with a few digits added;
- built on the person's username, name or email (any such part of four or
  more characters), however strong the rest.

Each refusal carries one plain reason to show beside the field, plus zxcvbn's
suggestions. zxcvbn takes a few milliseconds on :data:`MAX_LENGTH` characters:
callers on an event loop may call it directly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from zxcvbn import zxcvbn

MIN_LENGTH = 12
#: Beyond this, zxcvbn's matching is slow and argon2 hashes needless bytes; no pass phrase needs more.
MAX_LENGTH = 128
#: zxcvbn's 0..4 scale: 3 means "safely unguessable" (~10^8 guesses), enough behind a login limit and argon2.
MIN_SCORE = 3
#: A part of the username, name or email shorter than this is not a resemblance ("al" in "always").
_MIN_PERSONAL_PART = 4


@dataclass(frozen=True)
class PasswordVerdict:
    """``ok``, or the first ``reason`` it is refused; ``score`` is zxcvbn's 0..4 (0 when not estimated)."""

    ok: bool
    reason: str | None
    score: int
    suggestions: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "reason": self.reason, "score": self.score, "suggestions": list(self.suggestions)}


def personal_inputs(*values: str) -> list[str]:
    """The parts of a username, name or email zxcvbn should treat as known to an attacker."""
    parts: list[str] = []
    for value in values:
        value = value.strip().lower()
        if not value:
            continue
        parts.append(value)
        parts.extend(p for p in re.split(r"[\s@._+\-]+", value) if len(p) >= _MIN_PERSONAL_PART)
    return parts


def check_password(password: str, *, username: str = "", display_name: str = "", email: str = "") -> PasswordVerdict:
    """Judge ``password`` for the person named by ``username``, ``display_name`` and ``email``."""
    if len(password) < MIN_LENGTH:
        return PasswordVerdict(False, f"Use at least {MIN_LENGTH} characters ({len(password)} so far).", 0)
    if len(password) > MAX_LENGTH:
        return PasswordVerdict(False, f"Use at most {MAX_LENGTH} characters.", 0)
    if "\x00" in password:
        return PasswordVerdict(False, "The password must not contain NUL characters.", 0)
    inputs = personal_inputs(username, display_name, email)
    result = zxcvbn(password, user_inputs=inputs)
    score = int(result["score"])
    feedback = result.get("feedback") or {}
    suggestions = tuple(str(s) for s in feedback.get("suggestions") or ())
    personal = [m for m in result["sequence"]
                if m.get("dictionary_name") == "user_inputs" and len(m["token"]) >= _MIN_PERSONAL_PART]
    if personal:
        return PasswordVerdict(False, "The password is too close to your username, name or email.", score,
                               suggestions)
    if score < MIN_SCORE:
        warning = str(feedback.get("warning") or "").strip()
        reason = "Too easy to guess" + (f": {warning.rstrip('.')}." if warning else
                                        "; add more unrelated words or characters.")
        return PasswordVerdict(False, reason, score, suggestions)
    return PasswordVerdict(True, None, score, suggestions)
