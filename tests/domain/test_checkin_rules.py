"""Per-session timing, auto-absent, late arrivals, manual marks and proxy-attendance flags (pure rules)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.domain.checkin import (
    AUTO_ABSENT_SOURCE,
    Accepted,
    DisplayUse,
    InvalidMarks,
    Mark,
    Rejected,
    SessionState,
    SessionWindow,
    clock_skew_flag,
)
from hub.domain.display_code import (
    DISPLAY_WINDOW_SECONDS,
    check_display_code,
    current_frame,
    display_code,
    display_window,
)
from schemas import issue_checkin_token

START = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
END = START + timedelta(hours=1)
SECRETS = {"stu-1": b"a" * 32, "stu-2": b"b" * 32, "stu-3": b"c" * 32}
MIN = timedelta(minutes=1)


def state(grace=10, cutoff=30, opens=15, early=30) -> SessionState:
    window = SessionWindow(START, END, grace * MIN, opens * MIN, cutoff * MIN, early * MIN)
    return SessionState("ses-1", "room-1", window, dict(SECRETS))


def qr(student: str, at: datetime) -> str:
    return issue_checkin_token(student, SECRETS[student], at.timestamp())


def test_grace_then_late_then_cutoff():
    s = state(grace=5, cutoff=20)
    assert s.judge_biometric("stu-1", START + 5 * MIN).status == "present"
    assert s.judge_biometric("stu-1", START + 6 * MIN).status == "late"
    assert s.judge_biometric("stu-1", START + 20 * MIN).status == "late"
    refused = s.judge_biometric("stu-1", START + 21 * MIN)
    assert isinstance(refused, Rejected) and refused.reason == "after_late_cutoff"


def test_cutoff_never_before_grace_and_never_after_the_end():
    assert state(grace=10, cutoff=5).window.cutoff_at == START + 10 * MIN
    assert state(cutoff=600).window.cutoff_at == END


def test_early_scan_is_counted_present_not_locked_out():
    s = state(opens=15, early=30)
    early = START - 40 * MIN  # 25 min before check-in opens
    decision = s.judge_qr(qr("stu-1", early), early)
    assert isinstance(decision, Accepted) and decision.status == "present"
    too_early = START - 46 * MIN
    assert s.judge_biometric("stu-2", too_early).reason == "outside_session_window"


def test_close_marks_the_unrecorded_absent_and_a_late_arrival_overturns_it():
    s = state()
    s.apply(s.judge_biometric("stu-1", START + MIN), "biometric")
    s.apply_marks(s.judge_marks([("stu-2", "excused")]), "manual")
    assert s.close() == ["stu-3"]
    assert s.records["stu-3"] == Mark("absent", AUTO_ABSENT_SOURCE) and s.closed
    # Buffered at the edge: it happened at 09:12 (late), arrives after close.
    late = s.judge_biometric("stu-3", START + 12 * MIN)
    assert isinstance(late, Accepted) and late.status == "late" and late.replaces == "absent"
    # A faculty's own marks are never overturned by a scan.
    assert s.judge_biometric("stu-2", START + MIN).reason == "duplicate_checkin"


def test_a_late_arrival_outside_the_window_keeps_the_absent():
    s = state()
    s.close()
    assert s.judge_biometric("stu-1", END + MIN).reason == "outside_session_window"


def test_replayed_token_is_rejected_and_flagged():
    s = state()
    at = START + MIN
    text = qr("stu-1", at)
    s.apply(s.judge_qr(text, at))
    again = s.judge_qr(text, at + timedelta(seconds=3))
    assert again.reason == "replayed_token"
    assert [(f.kind, f.student_id) for f in again.flags] == [("token_reuse", "stu-1")]


def test_one_phone_checking_in_two_students_within_a_minute_is_flagged():
    s = state()
    phone, other_phone = b"p" * 32, b"q" * 32
    first = s.judge_display("stu-1", START + MIN, phone, b"n1")
    assert isinstance(first, Accepted) and first.flags == ()
    s.apply(first, "display")
    s.apply_display(DisplayUse("stu-1", phone, b"n1", START + MIN))
    second = s.judge_display("stu-2", START + MIN + timedelta(seconds=40), phone, b"n2")
    assert isinstance(second, Accepted)  # counted, but not silently
    assert [(f.kind, f.evidence["other_students"]) for f in second.flags] == [("shared_device", ["stu-1"])]
    later = s.judge_display("stu-2", START + 3 * MIN, phone, b"n3")
    assert later.flags == ()
    assert s.judge_display("stu-3", START + MIN, other_phone, b"n4").flags == ()


def test_a_check_in_link_used_by_a_second_student_is_flagged():
    s = state()
    s.apply_display(DisplayUse("stu-1", b"p" * 32, b"nonce", START + MIN))
    decision = s.judge_display("stu-2", START + 5 * MIN, b"x" * 32, b"nonce")
    assert [f.kind for f in decision.flags] == ["token_reuse"]


def test_manual_marks_validate_everything_before_applying():
    s = state()
    s.apply(s.judge_biometric("stu-1", START + MIN), "biometric")
    with pytest.raises(InvalidMarks) as bad:
        s.judge_marks([("stu-2", "present"), ("stu-9", "present")])
    assert bad.value.field == "marks[1].student_id"
    with pytest.raises(InvalidMarks):
        s.judge_marks([("stu-2", "here")])
    with pytest.raises(InvalidMarks):
        s.judge_marks([("stu-2", "late"), ("stu-2", "present")])
    changes = s.judge_marks([("stu-1", "present"), ("stu-2", "excused")])
    assert [(c.student_id, c.status, c.before) for c in changes] == [("stu-2", "excused", None)]


def test_clock_skew_flags():
    now = START + 5 * MIN
    assert clock_skew_flag("s", now + 45 * timedelta(seconds=1), now, None).kind == "clock_skew"
    # Late by 10 min with a live offset of ~0: buffered offline, believed.
    assert clock_skew_flag("s", now - 10 * MIN, now, timedelta(seconds=1)) is None
    # Late by 10 min and the device's prompt heartbeats are 10 min behind too: a slow clock.
    assert clock_skew_flag("s", now - 10 * MIN, now, 10 * MIN).kind == "clock_skew"
    assert clock_skew_flag("s", now - 10 * MIN, now, None) is None


@given(st.integers(min_value=-120, max_value=120), st.integers(min_value=0, max_value=60),
       st.integers(min_value=0, max_value=90))
def test_status_never_improves_as_time_passes(minute, grace, cutoff):
    s = state(grace=grace, cutoff=cutoff)
    rank = {"present": 0, "late": 1}
    previous = -1
    for step in range(minute, minute + 30):
        decision = s.judge_biometric("stu-1", START + step * MIN)
        if isinstance(decision, Accepted):
            assert rank[decision.status] >= previous
            previous = rank[decision.status]
            assert s.window.opens_at - s.window.early <= decision.at <= s.window.cutoff_at


@given(st.floats(min_value=0, max_value=4e9), st.binary(min_size=16, max_size=32))
def test_display_code_valid_for_current_and_one_back_only(now, secret):
    frame = current_frame(secret, "ses-1", now)
    assert frame.window == display_window(now) and 0 < frame.refresh_in_ms <= DISPLAY_WINDOW_SECONDS * 1000 + 200
    assert check_display_code(secret, "ses-1", frame.window, frame.code, now) == "ok"
    assert check_display_code(secret, "ses-1", frame.window, frame.code, now + DISPLAY_WINDOW_SECONDS) == "ok"
    assert check_display_code(secret, "ses-1", frame.window, frame.code,
                              now + 2 * DISPLAY_WINDOW_SECONDS) == "expired"
    assert check_display_code(secret, "ses-2", frame.window, frame.code, now) == "invalid"
    assert check_display_code(b"other" * 4, "ses-1", frame.window, frame.code, now) == "invalid"
    assert display_code(secret, "ses-1", frame.window) == frame.code  # stateless: a reload shows the same code
