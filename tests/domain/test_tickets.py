"""The pure ticket rules: workflow and who may move a ticket, SLA due and breach, auto-close, auto-raise."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hub.domain.tickets import (
    DEFAULT_AUTO_CLOSE_AFTER,
    DEFAULT_AUTO_RAISE,
    DEFAULT_SLA,
    PRIORITIES,
    SYSTEM,
    AlarmWatch,
    Caller,
    Refused,
    TicketFacts,
    alarm_watch,
    auto_close_at,
    check_assign,
    check_new_priority,
    check_transition,
    clean_text,
    may_view,
    priority_for_severity,
    should_auto_raise,
    sla_breached,
    sla_due,
)

T0 = datetime(2030, 3, 4, 9, 0, tzinfo=timezone.utc)
OPS, OPS2, ADMIN = Caller("ops1", "ops"), Caller("ops2", "ops"), Caller("adm", "admin")
REPORTER, STRANGER = Caller("stu1", "student"), Caller("fac9", "faculty")


def facts(state: str, assignee: str | None = "ops1", reporter: str | None = "stu1") -> TicketFacts:
    return TicketFacts(state, assignee if state not in ("open",) else None, reporter)


@pytest.mark.parametrize("state, to, caller, move", [
    ("assigned", "in_progress", OPS, "start"),
    ("assigned", "in_progress", ADMIN, "start"),
    ("in_progress", "resolved", OPS, "resolve"),
    ("assigned", "open", OPS2, "unassign"),
    ("resolved", "closed", REPORTER, "close"),
    ("resolved", "closed", OPS2, "close"),
    ("resolved", "in_progress", REPORTER, "reopen"),
    ("closed", "open", OPS2, "reopen"),
])
def test_allowed_moves(state, to, caller, move):
    assert check_transition(facts(state), to, caller) == move


@pytest.mark.parametrize("state, to, caller, code", [
    ("assigned", "in_progress", OPS2, "forbidden"),       # not the assignee
    ("in_progress", "resolved", REPORTER, "forbidden"),
    ("assigned", "open", REPORTER, "forbidden"),
    ("resolved", "closed", STRANGER, "forbidden"),
    ("closed", "open", REPORTER, "forbidden"),             # only staff reopen a closed ticket
    ("open", "resolved", OPS, "invalid_transition"),       # skips the work
    ("open", "in_progress", OPS, "invalid_transition"),
    ("closed", "resolved", ADMIN, "invalid_transition"),
    ("open", "assigned", OPS, "invalid_transition"),       # that is an assignment
    ("open", "done", OPS, "invalid_request"),
])
def test_refused_moves(state, to, caller, code):
    with pytest.raises(Refused) as refused:
        check_transition(facts(state), to, caller)
    assert refused.value.code == code


def test_cancel_needs_staff_and_a_reason():
    with pytest.raises(Refused) as no_reason:
        check_transition(facts("open"), "closed", OPS)
    assert (no_reason.value.code, no_reason.value.field) == ("invalid_request", "comment")
    assert check_transition(facts("in_progress"), "closed", OPS, comment="duplicate") == "cancel"
    with pytest.raises(Refused):
        check_transition(facts("open"), "closed", REPORTER, comment="never mind")


def test_the_hub_only_closes():
    assert check_transition(facts("in_progress"), "closed", SYSTEM) == "auto_close"
    with pytest.raises(Refused):
        check_transition(facts("closed"), "closed", SYSTEM)
    with pytest.raises(Refused):
        check_transition(facts("open"), "resolved", SYSTEM)


def test_assignment_rules():
    assert check_assign(facts("open"), OPS, "ops") == "assigned"
    assert check_assign(facts("in_progress"), ADMIN, "admin") == "assigned"
    for ticket, caller, role, code in [(facts("open"), REPORTER, "ops", "forbidden"),
                                       (facts("open"), OPS, "student", "invalid_request"),
                                       (facts("open"), OPS, None, "invalid_request"),
                                       (facts("resolved"), OPS, "ops", "invalid_transition")]:
        with pytest.raises(Refused) as refused:
            check_assign(ticket, caller, role)
        assert refused.value.code == code


def test_visibility():
    ticket = facts("open")
    assert may_view(ticket, OPS) and may_view(ticket, ADMIN) and may_view(ticket, REPORTER)
    assert not may_view(ticket, STRANGER)
    assert not may_view(TicketFacts("open", None, None), REPORTER)  # raised by the hub


def test_priorities_of_new_tickets():
    assert check_new_priority(None, REPORTER) == "P3"
    assert check_new_priority("P2", REPORTER) == "P2"
    assert check_new_priority("P0", OPS) == "P0"
    for bad in ("P0", "P5", 3):
        with pytest.raises(Refused):
            check_new_priority(bad, REPORTER)
    assert [priority_for_severity(s) for s in ("critical", "major", "minor", "warning")] == ["P1", "P2", "P3", "P4"]



def test_the_policy_defaults():
    """The ticket policy's defaults, declared only in hub/domain/tickets.py (the database keeps what admins change)."""
    assert DEFAULT_SLA == {"P0": timedelta(hours=4), "P1": timedelta(hours=24), "P2": timedelta(days=3),
                           "P3": timedelta(days=7), "P4": timedelta(days=14)}
    assert tuple(DEFAULT_SLA) == PRIORITIES
    assert DEFAULT_AUTO_CLOSE_AFTER == timedelta(minutes=30)
    assert DEFAULT_AUTO_RAISE == ("critical",)

def test_sla_due_and_breach():
    assert sla_due(T0, "P0", DEFAULT_SLA) == T0 + timedelta(hours=4)
    assert sla_due(T0, "P4", {"P4": timedelta(hours=1)}) == T0 + timedelta(hours=1)
    due = T0 + timedelta(hours=4)
    assert not sla_breached(due, due - timedelta(seconds=1), None)
    assert sla_breached(due, due, None)                      # still unresolved at the due time
    assert not sla_breached(due, due + timedelta(days=9), due)  # resolved exactly on time
    assert sla_breached(due, due, due + timedelta(seconds=1))


def test_auto_close_needs_a_clear_that_stays_clear():
    after = timedelta(minutes=30)
    cleared = alarm_watch("cleared_unacked", T0)
    assert cleared == AlarmWatch(active=False, cleared_at=T0)
    assert auto_close_at("in_progress", after, cleared) == T0 + after
    assert auto_close_at("open", after, alarm_watch("active_acked", None)) is None    # re-raised or still on
    assert auto_close_at("closed", after, cleared) is None
    assert auto_close_at("open", None, cleared) is None                                # auto-close off
    assert auto_close_at("open", after, None) is None                                  # no alarm watched


def test_auto_raise_and_text():
    assert should_auto_raise("critical", "active_unacked", ("critical",))
    assert not should_auto_raise("major", "active_unacked", ("critical",))
    assert not should_auto_raise("critical", "cleared_unacked", ("critical",))
    assert clean_text("  hi  ", "title", required=True, limit=5) == "hi"
    for value in ("", "toolong", "nul\x00", "\ud800", 7):
        with pytest.raises(Refused):
            clean_text(value, "title", required=True, limit=5)
