"""Biometric consent rules (pure): the notice, who may hold a fingerprint page, each terminal's state."""
from __future__ import annotations

import pytest

from hub.domain.biometric_consent import (
    CURRENT_NOTICE_VERSION,
    NOTICES,
    CommandOutcome,
    enrolment_problem,
    fingerprint_students,
    may_hold_page,
    notice_problem,
    reason_problem,
    terminal_state,
)
from hub.domain.terminal_roster import RosterEntry, TerminalChange, change_commands, plan_roster


def test_only_the_current_published_notice_can_be_consented_to():
    assert CURRENT_NOTICE_VERSION in NOTICES and NOTICES[CURRENT_NOTICE_VERSION].strip()
    assert notice_problem(CURRENT_NOTICE_VERSION) is None
    assert "unknown" in (notice_problem("1999-01") or "")
    assert reason_problem("x" * 500) is None
    assert "at most 500" in (reason_problem("x" * 501) or "")


def test_a_page_needs_an_active_account_and_an_active_consent():
    assert may_hold_page(active=True, consented=True)
    assert not may_hold_page(active=True, consented=False)
    assert not may_hold_page(active=False, consented=True)
    assert enrolment_problem(active=True, consented=True) is None
    assert "no such student" == enrolment_problem(active=None, consented=False)
    assert "deactivated" in (enrolment_problem(active=False, consented=True) or "")
    assert "consent" in (enrolment_problem(active=True, consented=False) or "")


def test_the_planner_removes_the_page_of_a_student_without_consent_but_keeps_their_pin():
    current = [RosterEntry("t1", "s1", "1001", 7, "ops"), RosterEntry("t1", "s2", "1002", 8, "ops")]
    desired = {("t1", "s1"): "1001", ("t1", "s2"): "1002"}
    # s1 consents, s2 does not: only s2's page goes; both PINs stay (a PIN is no biometric).
    plan = plan_roster(desired, current, ["s1"])
    assert plan.changes == (TerminalChange("t1", remove_pages=(8,)),)
    assert plan.upserts == (RosterEntry("t1", "s2", "1002", None, None),)
    assert plan.deletes == ()


def test_a_removed_page_deletes_the_template_before_the_map_changes():
    commands = change_commands(TerminalChange("t1", pages=((3, "s1"),), remove_pages=(7, 9)))
    assert commands == [("template_sync", {"page": 7, "delete": True}), ("template_sync", {"page": 9, "delete": True}),
                        ("roster_sync", {"remove_pages": "7;9", "pages": "3=s1"})]
    assert change_commands(TerminalChange("t1", pins=(("1001", "s1"),))) == [("roster_sync", {"pins": "1001=s1"})]


@pytest.mark.parametrize(("removal", "statuses", "expected"), [
    (False, [("template_sync", "acked"), ("roster_sync", "acked")], "confirmed"),
    (False, [("template_sync", "sent"), ("roster_sync", "acked")], "pending"),
    (False, [("template_sync", "unsupported"), ("roster_sync", "acked")], "failed"),
    (False, [("roster_sync", "expired")], "failed"),
    (False, [("roster_sync", None)], "failed"),
    (True, [("template_sync", "acked"), ("roster_sync", "acked")], "removed"),
    # An agent without a fingerprint module holds no template: nothing was there to delete.
    (True, [("template_sync", "unsupported"), ("roster_sync", "acked")], "removed"),
    (True, [("template_sync", "pending"), ("roster_sync", "pending")], "removal_pending"),
    (True, [("template_sync", "acked"), ("roster_sync", "timed_out")], "removal_failed"),
    (True, [("template_sync", None), ("roster_sync", None)], "removal_failed"),
])
def test_terminal_state_follows_the_acks_of_the_latest_change(removal, statuses, expected):
    outcomes = [CommandOutcome(name, status) for name, status in statuses]
    assert terminal_state(removal=removal, commands=outcomes) == expected


def test_a_page_the_terminal_reported_is_confirmed_by_that_report():
    assert terminal_state(removal=False, commands=[], page_source="terminal") == "confirmed"
    assert terminal_state(removal=False, commands=[], page_source="ops") == "failed"
    assert terminal_state(removal=True, commands=[]) == "removal_failed"


def test_raw_commands_that_would_put_a_student_on_a_fingerprint_page_are_recognised():
    assert fingerprint_students("template_sync", {"page": 1, "student": "s1", "template": "QUJD"}) == {"s1"}
    assert fingerprint_students("template_sync", {"page": 1, "delete": True}) == set()
    assert fingerprint_students("roster_sync", {"pins": "1=s9", "pages": "3=s1; 4=s2;bad"}) == {"s1", "s2"}
    assert fingerprint_students("roster_sync", {"remove_pages": "3"}) == set()
    assert fingerprint_students("reboot", {}) == set()
