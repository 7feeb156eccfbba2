"""The enrolment CSV parser: every bad row with its line and reason."""
from __future__ import annotations

from hub.domain.enrolment_import import one_section_per_course, parse_enrolment_csv


def test_good_file_by_section_id_with_bom_blank_lines_and_extra_columns():
    parsed = parse_enrolment_csv("\ufeffStudent_ID , section_id,note\nstu-1,sec-a,x\n\nstu-2,sec-a,\n")
    assert parsed.ok
    assert [(r.line, r.student_id, r.section_id) for r in parsed.rows] == [(2, "stu-1", "sec-a"), (4, "stu-2", "sec-a")]


def test_course_code_and_section_name_by_roll_number():
    parsed = parse_enrolment_csv("roll_number,course_code,section\nR1,CS101,A\n")
    assert parsed.ok
    row = parsed.rows[0]
    assert row.student_key == ("roll_number", "R1") and row.section_key == ("course_section", "CS101", "A")


def test_header_problems_are_reported_on_line_1():
    assert [e.line for e in parse_enrolment_csv("").errors] == [1]
    errors = parse_enrolment_csv("name,course\nx,y\n").errors
    assert {e.field for e in errors} == {"student_id", "section_id"} and {e.line for e in errors} == {1}
    assert "more than once" in parse_enrolment_csv("student_id,student_id,section_id\n").errors[0].reason


def test_every_bad_row_is_reported_with_its_line():
    text = ("student_id,section_id\n"
            "stu-1,sec-a\n"
            ",sec-a\n"            # line 3: empty student
            "stu-2\n"             # line 4: too few fields
            "stu-1,sec-a\n"       # line 5: duplicate of 2
            '"stu-\n3",sec-b\n'   # lines 6-7: one quoted record spanning two lines
            "stu-4,\n")           # line 8: empty section
    parsed = parse_enrolment_csv(text)
    assert [(e.line, e.field) for e in parsed.errors] == [(3, "student_id"), (4, None), (5, None), (8, "section_id")]
    assert "duplicate of line 2" in parsed.errors[2].reason
    assert [r.line for r in parsed.rows] == [2, 6]


def test_header_only_and_nul_bytes_are_refused():
    assert "no rows" in parse_enrolment_csv("student_id,section_id\n").errors[0].reason
    assert "NUL" in parse_enrolment_csv("student_id,section_id\nstu\x00,a\n").errors[0].reason


def test_one_section_per_course_after_resolution():
    errors = one_section_per_course([(2, "s1", "c1", "a"), (3, "s1", "c1", "b"), (4, "s1", "c1", "a"),
                                     (5, "s1", "c2", "a")])
    assert [(e.line, "another section" in e.reason) for e in errors] == [(3, True), (4, False)]
