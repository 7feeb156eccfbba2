"""Correction-request rules (pure): what a student may ask to change, and what a decision may do.

No I/O and no clock: "now" is passed in. A student asks for one record of
their own to get another status, with a reason; the faculty of the session's
course (or an admin) approves or rejects it. Approval writes the requested
status through the attendance primitive (source ``correction``), whatever the
record holds by then: the request shows the faculty what it held when asked.
"""
from __future__ import annotations

from datetime import datetime, timedelta

STATUSES = ("present", "late", "absent", "excused")
REQUEST_STATUSES = ("pending", "approved", "rejected", "withdrawn")
CORRECTION_SOURCE = "correction"
#: A record older than this can no longer be disputed.
WINDOW = timedelta(days=30)
MAX_REASON_CHARS = 1000
MAX_NOTE_CHARS = 1000


class CorrectionRuleError(ValueError):
    """A request or decision the rules refuse; ``code`` is the API's error code."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


def validate_request(
    *,
    requested_status: object,
    reason: object,
    current_status: str | None,
    session_status: str,
    session_starts_at: datetime,
    now: datetime,
) -> tuple[str, str]:
    """``(requested_status, trimmed reason)`` of an acceptable request, else :class:`CorrectionRuleError`."""
    if not isinstance(requested_status, str) or requested_status not in STATUSES:
        raise CorrectionRuleError(f"'requested_status' must be one of {', '.join(STATUSES)}.",
                                  field="requested_status")
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise CorrectionRuleError("Say why the record is wrong ('reason').", field="reason")
    if len(text) > MAX_REASON_CHARS:
        raise CorrectionRuleError(f"'reason' may be at most {MAX_REASON_CHARS} characters.", field="reason")
    if session_status == "cancelled":
        raise CorrectionRuleError("The session was cancelled: it has no attendance to correct.",
                                  field="session_id", code="conflict")
    if session_starts_at > now:
        raise CorrectionRuleError("The session has not started yet.", field="session_id", code="conflict")
    if now - session_starts_at > WINDOW:
        raise CorrectionRuleError(f"Records older than {WINDOW.days} days can no longer be corrected.",
                                  field="session_id", code="conflict")
    if requested_status == current_status:
        raise CorrectionRuleError(f"The record already says {current_status}.", field="requested_status",
                                  code="conflict")
    return requested_status, text


def validate_note(note: object) -> str:
    """A decision's optional note, trimmed."""
    if note is None:
        return ""
    if not isinstance(note, str):
        raise CorrectionRuleError("'note' must be a string.", field="note")
    text = note.strip()
    if len(text) > MAX_NOTE_CHARS:
        raise CorrectionRuleError(f"'note' may be at most {MAX_NOTE_CHARS} characters.", field="note")
    return text


def next_status(current: str, action: str) -> str:
    """pending → approved | rejected | withdrawn (by its student); every other status is final."""
    allowed = {("pending", "approve"): "approved", ("pending", "reject"): "rejected",
               ("pending", "withdraw"): "withdrawn"}
    try:
        return allowed[(current, action)]
    except KeyError:
        raise CorrectionRuleError(f"This request is already {current}.", code="conflict") from None
