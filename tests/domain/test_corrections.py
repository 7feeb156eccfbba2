"""Correction rules (pure): what a student may ask, and the request's life."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hub.domain.corrections import (
    MAX_REASON_CHARS,
    WINDOW,
    CorrectionRuleError,
    next_status,
    validate_note,
    validate_request,
)

NOW = datetime(2025, 3, 10, 12, tzinfo=timezone.utc)


def ask(**overrides):
    args = dict(requested_status="present", reason=" scanner down ", current_status="absent",
                session_status="closed", session_starts_at=NOW - timedelta(days=1), now=NOW)
    return validate_request(**{**args, **overrides})


def test_a_valid_request() -> None:
    assert ask() == ("present", "scanner down")
    assert ask(current_status=None) == ("present", "scanner down")  # no record yet
    assert ask(session_starts_at=NOW - WINDOW) == ("present", "scanner down")


@pytest.mark.parametrize("overrides, field, code", [
    ({"requested_status": "here"}, "requested_status", "invalid_request"),
    ({"requested_status": None}, "requested_status", "invalid_request"),
    ({"reason": "  "}, "reason", "invalid_request"),
    ({"reason": 5}, "reason", "invalid_request"),
    ({"reason": "x" * (MAX_REASON_CHARS + 1)}, "reason", "invalid_request"),
    ({"session_status": "cancelled"}, "session_id", "conflict"),
    ({"session_starts_at": NOW + timedelta(minutes=1)}, "session_id", "conflict"),
    ({"session_starts_at": NOW - WINDOW - timedelta(seconds=1)}, "session_id", "conflict"),
    ({"current_status": "present"}, "requested_status", "conflict"),
])
def test_refusals(overrides, field, code) -> None:
    with pytest.raises(CorrectionRuleError) as refused:
        ask(**overrides)
    assert (refused.value.field, refused.value.code) == (field, code)


def test_notes_and_transitions() -> None:
    assert validate_note(None) == "" and validate_note("  ok ") == "ok"
    with pytest.raises(CorrectionRuleError):
        validate_note(3)
    with pytest.raises(CorrectionRuleError):
        validate_note("x" * 1001)
    assert next_status("pending", "approve") == "approved"
    assert next_status("pending", "reject") == "rejected"
    assert next_status("pending", "withdraw") == "withdrawn"
    for current in ("approved", "rejected", "withdrawn"):
        with pytest.raises(CorrectionRuleError):
            next_status(current, "approve")
