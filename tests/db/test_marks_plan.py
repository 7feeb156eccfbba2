"""Faculty marks' plan (hub/db/marks.py): judged once, the same records and live updates for both paths."""
from __future__ import annotations

import pytest

from hub.core.bus import LiveAttendance
from hub.core.records import AttendanceMark
from hub.db.marks import plan_marks
from hub.domain.checkin import InvalidMarks, Mark, MarkChange
from hub.domain.session_messages import ManualMarks

ROSTER = {"s1", "s2", "s3"}
RECORDS = {"s1": Mark("present", "qr"), "s2": Mark("absent", "auto_absent")}


def test_a_plan_holds_only_the_marks_that_change_a_record():
    request = ManualMarks((("s1", "present"), ("s2", "excused"), ("s3", "late")), "fac1", "", "bulk")
    plan = plan_marks("sess", ROSTER, RECORDS, request)
    assert plan.changes == (MarkChange("s2", "excused", "absent"), MarkChange("s3", "late", None))
    assert plan.effects == (
        AttendanceMark("sess", "s2", "excused", None, "bulk", None, "fac1", "bulk"),  # no reason given: the source
        AttendanceMark("sess", "s3", "late", None, "bulk", None, "fac1", "bulk"),
    )
    assert plan.live == (*LiveAttendance("sess", "s2", "excused", None, "bulk").updates(),
                         *LiveAttendance("sess", "s3", "late", None, "bulk").updates())


def test_the_faculty_reason_is_audited():
    plan = plan_marks("sess", ROSTER, RECORDS, ManualMarks((("s3", "excused"),), "fac1", "medical"))
    assert [(e.actor, e.reason, e.source) for e in plan.effects] == [("fac1", "medical", "manual")]


@pytest.mark.parametrize(("marks", "field"), [
    ((("s1", "here"),), "marks[0].status"),
    ((("s9", "present"),), "marks[0].student_id"),
    ((("s3", "present"), ("s3", "late")), "marks[1].student_id"),
])
def test_an_invalid_mark_refuses_the_whole_request(marks, field):
    with pytest.raises(InvalidMarks) as refused:
        plan_marks("sess", ROSTER, RECORDS, ManualMarks(marks, "fac1", ""))
    assert refused.value.field == field
