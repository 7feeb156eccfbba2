"""Check-in rules for one class session. Pure: no I/O, no clock, no trio.

The session actor owns one :class:`SessionState` and feeds it scans; the
state is rebuilt from PostgreSQL with :meth:`SessionState.restore`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from schemas import CheckinToken, parse_checkin_token, token_is_authentic, token_is_fresh

CheckinStatus = Literal["present", "late"]


@dataclass(frozen=True)
class SessionWindow:
    starts_at: datetime
    ends_at: datetime
    grace: timedelta
    opens_before: timedelta

    def accepts(self, at: datetime) -> bool:
        return self.starts_at - self.opens_before <= at <= self.ends_at

    def status_at(self, at: datetime) -> CheckinStatus:
        return "present" if at <= self.starts_at + self.grace else "late"


@dataclass(frozen=True)
class Accepted:
    student_id: str
    status: CheckinStatus
    at: datetime
    token_window: int | None


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str = ""


Decision = Accepted | Rejected


@dataclass
class SessionState:
    """Roster and check-ins of one live session. Owned by exactly one actor."""

    session_id: str
    room_id: str
    window: SessionWindow
    #: student id → token secret, for every enrolled student.
    roster: dict[str, bytes]
    checked_in: dict[str, CheckinStatus] = field(default_factory=dict)
    used_tokens: set[tuple[str, int]] = field(default_factory=set)

    def restore(self, checked_in: dict[str, CheckinStatus], used_tokens: set[tuple[str, int]]) -> None:
        self.checked_in = dict(checked_in)
        self.used_tokens = set(used_tokens)

    def judge_qr(self, text: str, scanned_at: datetime) -> Decision:
        """Decide a QR scan taken at ``scanned_at`` (device time). Does not change state."""
        token = parse_checkin_token(text)
        if token is None:
            return Rejected("invalid_token", "not a CampusHub check-in token")
        secret = self.roster.get(token.student_id)
        if secret is None:
            return Rejected("not_enrolled", f"{token.student_id} is not on the roster")
        if not token_is_authentic(token, secret):
            return Rejected("invalid_token", "MAC does not verify")
        if not token_is_fresh(token, scanned_at.timestamp()):
            return Rejected("expired_token", f"window {token.window} is not current at scan time")
        if (token.student_id, token.window) in self.used_tokens:
            return Rejected("replayed_token", "this token was already used")
        return self._judge_student(token.student_id, scanned_at, token)

    def judge_biometric(self, student_id: str, scanned_at: datetime) -> Decision:
        if student_id not in self.roster:
            return Rejected("not_enrolled", f"{student_id} is not on the roster")
        return self._judge_student(student_id, scanned_at, None)

    def _judge_student(self, student_id: str, at: datetime, token: CheckinToken | None) -> Decision:
        if student_id in self.checked_in:
            return Rejected("duplicate_checkin", f"already {self.checked_in[student_id]}")
        if not self.window.accepts(at):
            return Rejected("outside_session_window", f"scan at {at.isoformat()}")
        return Accepted(student_id, self.window.status_at(at), at, token.window if token else None)

    def apply(self, decision: Accepted) -> None:
        """Record an accepted check-in so later scans see it."""
        self.checked_in[decision.student_id] = decision.status
        if decision.token_window is not None:
            self.used_tokens.add((decision.student_id, decision.token_window))

    def note_token_use(self, student_id: str, window: int) -> None:
        """Remember a token seen in a rejected scan too, so its reuse counts as a replay."""
        self.used_tokens.add((student_id, window))
