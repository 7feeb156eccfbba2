"""The pure check-in rules: no trio, no database, no clock."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.domain.checkin import Accepted, Rejected, SessionState, SessionWindow
from schemas import TOKEN_WINDOW_SECONDS, issue_checkin_token, parse_checkin_token

START = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
SECRETS = {"stu-1": b"a" * 32, "stu-2": b"b" * 32}


def state() -> SessionState:
    window = SessionWindow(START, START + timedelta(hours=1), timedelta(minutes=10), timedelta(minutes=10))
    return SessionState("ses-1", "room-1", window, dict(SECRETS))


def token(student: str, at: datetime, secret: bytes | None = None) -> str:
    return issue_checkin_token(student, secret or SECRETS[student], at.timestamp())


def test_on_time_scan_is_present_and_applied():
    s = state()
    at = START + timedelta(minutes=3)
    decision = s.judge_qr(token("stu-1", at), at)
    assert isinstance(decision, Accepted) and decision.status == "present" and decision.student_id == "stu-1"
    s.apply(decision)
    assert s.checked_in == {"stu-1": "present"}


def test_scan_after_grace_is_late():
    at = START + timedelta(minutes=11)
    decision = state().judge_qr(token("stu-1", at), at)
    assert isinstance(decision, Accepted) and decision.status == "late"


def test_early_scan_inside_the_opening_window_counts_as_present():
    at = START - timedelta(minutes=5)
    decision = state().judge_qr(token("stu-1", at), at)
    assert isinstance(decision, Accepted) and decision.status == "present"


@pytest.mark.parametrize("offset", [timedelta(minutes=-11), timedelta(hours=1, seconds=1)])
def test_scan_outside_the_session_window_is_rejected(offset):
    at = START + offset
    assert state().judge_qr(token("stu-1", at), at) == Rejected(
        "outside_session_window", f"scan at {at.isoformat()}")


def test_token_one_step_old_is_accepted_two_steps_old_is_expired():
    at = START + timedelta(minutes=1)
    one_back = token("stu-1", at - timedelta(seconds=TOKEN_WINDOW_SECONDS))
    two_back = token("stu-1", at - timedelta(seconds=2 * TOKEN_WINDOW_SECONDS))
    assert isinstance(state().judge_qr(one_back, at), Accepted)
    assert state().judge_qr(two_back, at).reason == "expired_token"


def test_token_from_the_future_is_not_fresh():
    at = START + timedelta(minutes=1)
    ahead = token("stu-1", at + timedelta(seconds=2 * TOKEN_WINDOW_SECONDS))
    assert state().judge_qr(ahead, at).reason == "expired_token"


def test_forged_mac_and_garbage_are_invalid():
    at = START + timedelta(minutes=1)
    assert state().judge_qr(token("stu-1", at, secret=b"x" * 32), at).reason == "invalid_token"
    assert state().judge_qr("hello", at).reason == "invalid_token"
    assert state().judge_qr("CH1.stu-1.1.AAAA", at).reason == "invalid_token"


def test_student_not_on_roster_is_not_enrolled():
    at = START + timedelta(minutes=1)
    assert state().judge_qr(token("stu-9", at, secret=b"z" * 32), at).reason == "not_enrolled"
    assert state().judge_biometric("stu-9", at).reason == "not_enrolled"


def test_same_token_twice_is_a_replay_and_a_new_token_is_a_duplicate():
    s = state()
    at = START + timedelta(minutes=1)
    first = token("stu-1", at)
    s.apply(s.judge_qr(first, at))
    assert s.judge_qr(first, at).reason == "replayed_token"
    later = at + timedelta(seconds=TOKEN_WINDOW_SECONDS)
    assert s.judge_qr(token("stu-1", later), later).reason == "duplicate_checkin"


def test_restore_rebuilds_what_the_database_holds():
    s = state()
    at = START + timedelta(minutes=1)
    tok = parse_checkin_token(token("stu-1", at))
    s.restore({"stu-1": "present"}, {(tok.student_id, tok.window)})
    assert s.judge_qr(token("stu-1", at), at).reason == "replayed_token"
    assert s.judge_biometric("stu-1", at).reason == "duplicate_checkin"
    assert isinstance(s.judge_biometric("stu-2", at), Accepted)


def test_judging_does_not_change_state():
    s = state()
    at = START + timedelta(minutes=1)
    s.judge_qr(token("stu-1", at), at)
    assert s.checked_in == {} and s.used_tokens == set()


@given(st.integers(min_value=0, max_value=4_000_000_000), st.text(alphabet="abcdefghij0123456789-_", min_size=1,
                                                                  max_size=64))
def test_every_issued_token_parses_back_and_is_fresh_when_issued(unix_seconds, student_id):
    from schemas import token_is_authentic, token_is_fresh

    text = issue_checkin_token(student_id, b"k" * 32, unix_seconds)
    parsed = parse_checkin_token(text)
    assert parsed is not None and parsed.student_id == student_id
    assert token_is_authentic(parsed, b"k" * 32) and not token_is_authentic(parsed, b"j" * 32)
    # Fresh from the start of its window until two windows later (current + one step back), never outside.
    window_start = parsed.window * TOKEN_WINDOW_SECONDS
    assert token_is_fresh(parsed, unix_seconds)
    assert token_is_fresh(parsed, window_start + 2 * TOKEN_WINDOW_SECONDS - 0.001)
    assert not token_is_fresh(parsed, window_start + 2 * TOKEN_WINDOW_SECONDS)
    assert not token_is_fresh(parsed, window_start - 0.001)
