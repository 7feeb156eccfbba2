"""The pure terminal-roster plan: registry rows vs what terminals should hold, and command sizing."""
from __future__ import annotations

from edge_agent.commands import parse_roster_args
from hub.domain.terminal_roster import (
    RosterEntry,
    TerminalChange,
    full_roster,
    pin_problem,
    plan_roster,
    roster_sync_args,
)


def test_new_students_are_added_and_recorded():
    plan = plan_roster({("t1", "s1"): "1001", ("t1", "s2"): "1002", ("t2", "s1"): "1001"}, [], ["s1", "s2"])
    assert plan.changes == (TerminalChange("t1", pins=(("1001", "s1"), ("1002", "s2"))),
                            TerminalChange("t2", pins=(("1001", "s1"),)))
    assert set(plan.upserts) == {RosterEntry("t1", "s1", "1001"), RosterEntry("t1", "s2", "1002"),
                                 RosterEntry("t2", "s1", "1001")}
    assert plan.deletes == ()


def test_nothing_changes_when_the_registry_already_matches():
    current = [RosterEntry("t1", "s1", "1001"), RosterEntry("t1", "s2", "1002", 7, "ops")]
    plan = plan_roster({("t1", "s1"): "1001", ("t1", "s2"): "1002"}, current, ["s1", "s2"])
    assert plan.empty and plan.upserts == () and plan.deletes == ()


def test_a_deactivated_student_loses_pin_and_page_everywhere():
    current = [RosterEntry("t1", "s1", "1001", 7, "ops"), RosterEntry("t2", "s1", "1001"),
               RosterEntry("t1", "s2", "1002")]
    plan = plan_roster({("t1", "s2"): "1002"}, current, ["s2"])
    assert plan.changes == (TerminalChange("t1", remove_pins=("1001",), remove_pages=(7,)),
                            TerminalChange("t2", remove_pins=("1001",)))
    assert plan.deletes == (("t1", "s1"), ("t2", "s1"))


def test_an_active_student_leaving_a_room_keeps_their_enrolled_page_but_not_their_pin():
    plan = plan_roster({}, [RosterEntry("t1", "s1", "1001", 7, "ops")], ["s1"])
    assert plan.changes == (TerminalChange("t1", remove_pins=("1001",)),)
    assert plan.upserts == (RosterEntry("t1", "s1", None, 7, "ops"),) and plan.deletes == ()


def test_a_changed_pin_is_replaced_and_a_pin_passed_on_is_not_removed():
    current = [RosterEntry("t1", "s1", "1001"), RosterEntry("t1", "s2", "1002")]
    # s1 gets a new PIN; s2's old PIN goes to s3 (s2 left the room).
    plan = plan_roster({("t1", "s1"): "2001", ("t1", "s3"): "1002"}, current, ["s1", "s2", "s3"])
    [change] = plan.changes
    assert change.pins == (("1002", "s3"), ("2001", "s1")) and change.remove_pins == ("1001",)


def test_args_are_what_the_edge_agent_parses_and_split_to_fit_a_frame():
    change = TerminalChange("t1", pins=tuple((str(100000 + i), f"stu-{i:016x}") for i in range(300)),
                            remove_pins=("999",), remove_pages=(3,), pages=((4, "stu-a"),))
    commands = roster_sync_args(change, max_text=3000)
    assert 2 <= len(commands) <= 4
    pins: dict[str, str] = {}
    pages: dict[int, str] = {}
    removed: list[str] = []
    for args in commands:
        assert sum(len(str(v)) for v in args.values()) <= 3000
        parsed = parse_roster_args(args)
        assert parsed["replace"] is False
        pins.update(parsed["pins"])
        pages.update(parsed["pages"])
        removed += parsed["remove_pins"]
    assert pins == dict(change.pins) and pages == {4: "stu-a"} and removed == ["999"]
    # Removals travel first: a PIN freed by one student may be given to another.
    assert "remove_pins" in commands[0] and "remove_pages" in commands[0]


def test_a_replace_resync_replaces_only_with_its_first_command():
    entries = [RosterEntry("t1", f"s{i}", str(5000 + i), i if i % 2 else None, "ops" if i % 2 else None)
               for i in range(400)]
    commands = roster_sync_args(full_roster("t1", entries), replace=True, max_text=3000)
    assert [c.get("replace", False) for c in commands] == [True] + [False] * (len(commands) - 1)
    assert sum(len(parse_roster_args(c)["pins"]) for c in commands) == 400
    assert roster_sync_args(full_roster("t1", []), replace=True) == [{"replace": True}]
    assert parse_roster_args({"replace": True})["replace"] is True  # an empty roster empties the terminal


def test_pin_rules():
    assert pin_problem("100001") is None and pin_problem("A7") is None
    assert pin_problem("") and pin_problem("12 34") and pin_problem("1" * 25) and pin_problem("=1+1")
