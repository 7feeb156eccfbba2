"""Leave rules (pure): periods, overlap, coverage, excuse and revert plans, documents, transitions."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from hub.domain.leave import (
    MAX_DOCUMENT_BYTES,
    LeaveEntry,
    LeavePeriod,
    LeaveRuleError,
    RecordValue,
    Restore,
    SessionSlot,
    clean_filename,
    covered_sessions,
    excuse_plan,
    find_overlap,
    next_status,
    revert_plan,
    sniff_document,
    validate_document,
    validate_period,
    validate_text,
)

TODAY = date(2025, 3, 10)
D = date


def test_period_rules() -> None:
    validate_period(D(2025, 3, 10), D(2025, 3, 10), TODAY)
    validate_period(D(2025, 2, 8), D(2025, 2, 9), TODAY)  # 30 days back: a late sick note
    for starts, ends, field in [
        (D(2025, 3, 12), D(2025, 3, 11), "ends_on"),
        (D(2025, 3, 10), D(2025, 5, 9), "ends_on"),   # 61 days
        (D(2025, 2, 7), D(2025, 2, 8), "starts_on"),  # 31 days back
        (D(2026, 3, 11), D(2026, 3, 12), "starts_on"),
    ]:
        with pytest.raises(LeaveRuleError) as refused:
            validate_period(starts, ends, TODAY)
        assert refused.value.field == field


def test_text() -> None:
    assert validate_text("  fever \n", field="reason", limit=10, required=True) == "fever"
    assert validate_text("", field="note", limit=10, required=False) == ""
    with pytest.raises(LeaveRuleError):
        validate_text("   ", field="reason", limit=10, required=True)
    with pytest.raises(LeaveRuleError):
        validate_text("x" * 11, field="reason", limit=10, required=True)


def test_overlap_only_with_active_applications() -> None:
    existing = [LeavePeriod(1, D(2025, 3, 1), D(2025, 3, 5), "approved"),
                LeavePeriod(2, D(2025, 3, 10), D(2025, 3, 12), "rejected"),
                LeavePeriod(3, D(2025, 3, 20), D(2025, 3, 20), "applied"),
                LeavePeriod(4, D(2025, 3, 6), D(2025, 3, 8), "cancelled")]
    assert find_overlap(D(2025, 3, 5), D(2025, 3, 6), existing).id == 1  # touching a shared day
    assert find_overlap(D(2025, 3, 6), D(2025, 3, 19), existing) is None
    assert find_overlap(D(2025, 3, 15), D(2025, 3, 25), existing).id == 3
    assert find_overlap(D(2025, 2, 1), D(2025, 4, 1), existing).id == 1  # the earliest clash


def slot(sid: str, day: int, course: str = "c1", section: str | None = None, status: str = "scheduled") -> SessionSlot:
    return SessionSlot(sid, course, section, D(2025, 3, day), status)


def test_coverage() -> None:
    sessions = [slot("a", 9), slot("b", 10), slot("c", 11, status="cancelled"), slot("d", 12),
                slot("e", 13, course="c9"), slot("f", 14, section="s2"), slot("g", 14, section="s1"),
                slot("h", 15), slot("i", 16)]
    enrolments = {"c1": "s1"}
    holidays = [(D(2025, 3, 12), D(2025, 3, 12))]
    assert covered_sessions(D(2025, 3, 10), D(2025, 3, 15), sessions, enrolments, holidays) == ["b", "g", "h"]
    # Without a section, every section's session of the course counts.
    assert covered_sessions(D(2025, 3, 14), D(2025, 3, 14), sessions, {"c1": None}, []) == ["f", "g"]


T = datetime(2025, 3, 10, 9, tzinfo=timezone.utc)


def test_excuse_plan_excuses_only_absences() -> None:
    current = {"b": RecordValue("present", T, "qr"), "c": RecordValue("absent", None, "auto_absent"),
               "d": RecordValue("late", T, "qr"), "e": RecordValue("excused", None, "correction")}
    assert excuse_plan(["a", "b", "c", "d", "e"], current) == ["a", "c"]


def test_revert_plan_restores_exactly_and_respects_later_changes() -> None:
    leave = RecordValue("excused", None, "leave")
    entries = [LeaveEntry("absent-before", RecordValue("absent", None, "auto_absent")),
               LeaveEntry("none-before-future", None),
               LeaveEntry("none-before-ended", None),
               LeaveEntry("checked-in-since", None),
               LeaveEntry("corrected-since", RecordValue("absent", None, "manual"))]
    current = {"absent-before": leave, "none-before-future": leave, "none-before-ended": leave,
               "checked-in-since": RecordValue("present", T, "qr"),
               "corrected-since": RecordValue("excused", None, "correction")}
    ended = {"absent-before": True, "none-before-future": False, "none-before-ended": True}
    assert revert_plan(entries, current, ended) == [
        Restore("absent-before", "absent", None, "auto_absent"),
        Restore("none-before-future", None, None, "leave"),
        Restore("none-before-ended", "absent", None, "leave"),
    ]


def test_documents() -> None:
    assert sniff_document(b"%PDF-1.7...") == "application/pdf"
    assert sniff_document(b"\xff\xd8\xff\xe0JFIF") == "image/jpeg"
    assert sniff_document(b"\x89PNG\r\n\x1a\nxxxx") == "image/png"
    assert sniff_document(b"GIF89a") is None
    assert validate_document(b"%PDF-1.4", None, "C:\\Users\\me\\sick note.pdf") == ("application/pdf", "sick note.pdf")
    assert validate_document(b"%PDF-1.4", "application/pdf", "")[1] == "document.pdf"
    for data, declared, code in [(b"", None, "invalid_request"), (b"MZ\x90", None, "unsupported_document"),
                                 (b"%PDF-1.4", "image/png", "unsupported_document"),
                                 (b"%PDF-" + b"0" * MAX_DOCUMENT_BYTES, None, "document_too_large")]:
        with pytest.raises(LeaveRuleError) as refused:
            validate_document(data, declared, "x")
        assert refused.value.code == code
    assert clean_filename('a"b<c>;\x00d.png', "image/png") == "abcd.png"
    assert clean_filename("..", "image/png") == "document.png"
    assert len(clean_filename("x" * 500, "image/png")) == 200


def test_transitions() -> None:
    assert next_status("applied", "approve") == "approved"
    assert next_status("applied", "reject") == "rejected"
    assert next_status("applied", "cancel") == "cancelled"
    assert next_status("approved", "cancel") == "cancelled"
    for current, action in [("approved", "approve"), ("approved", "reject"), ("rejected", "cancel"),
                            ("cancelled", "cancel"), ("cancelled", "approve")]:
        with pytest.raises(LeaveRuleError) as refused:
            next_status(current, action)
        assert refused.value.code == "conflict"
