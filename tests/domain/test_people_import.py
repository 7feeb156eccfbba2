"""The people CSV parser (hub/domain/people_import.py): every bad row with its line, field and reason."""
from __future__ import annotations

import pytest

from hub.domain.people_import import MAX_ROWS, parse_people_bytes, parse_people_csv

HEADER = "role,name,username,email,roll_number,program,section\n"


def test_a_sis_export_with_bom_aliases_extra_columns_and_blank_lines() -> None:
    parsed = parse_people_csv(
        "\ufeff Role ,Display_Name,Username,Email,Roll_Number,Program,Section,Batch\n"
        "student,Asha Rao,,asha@campus.example,21CS001,B.Tech CSE,A,2021\n"
        "\n"
        "Faculty,Dr. Meera Iyer,miyer,meera@campus.example,,,,\n")
    assert parsed.ok, parsed.errors
    student, faculty = parsed.rows
    assert (student.line, student.role, student.username, student.roll_number, student.program, student.section) == (
        2, "student", "21CS001", "21CS001", "B.Tech CSE", "A")
    assert (faculty.line, faculty.role, faculty.username, faculty.email, faculty.roll_number) == (
        4, "faculty", "miyer", "meera@campus.example", None)


def test_header_problems_are_reported_on_line_1() -> None:
    assert [(e.line, e.reason) for e in parse_people_csv("").errors] == [(1, "the file is empty: expected a header row")]
    errors = parse_people_csv("username,email\nx,y\n").errors
    assert {(e.line, e.field) for e in errors} == {(1, "role"), (1, "name")}
    assert "more than once" in parse_people_csv("role,name,name\n").errors[0].reason
    assert parse_people_csv(HEADER).errors[0].reason == "the file has a header but no rows"


def test_every_bad_row_is_reported_at_once_with_line_field_and_reason() -> None:
    parsed = parse_people_csv(
        HEADER
        + "student,Asha Rao,,,21CS001,,\n"           # 2 ok
        + "wizard,Merlin,merlin,,,,\n"               # 3 unknown role
        + "faculty,Ravi Kumar,,,,,\n"                # 4 staff without username
        + "student,No Roll,noroll,,,,\n"             # 5 student without roll number
        + "ops,Olu,olu,not-an-email,,,\n"            # 6 bad email
        + "ops,Olu Two,olu2,,R9,,\n"                 # 7 staff with a roll number
        + "student,Asha Again,,,21CS001,,\n"         # 8 duplicate roll number
        + "faculty,Short,x\n"                        # 9 field count
        + "faculty,,nameless,,,,\n")                 # 10 empty name
    assert [(e.line, e.field) for e in parsed.errors] == [
        (3, "role"), (4, "username"), (5, "roll_number"), (6, "email"), (7, "roll_number"),
        (8, "username"), (9, None), (10, "name")]
    assert "duplicate username of line 2" in parsed.errors[5].reason
    assert [r.line for r in parsed.rows] == [2]


def test_duplicates_ignore_case_for_usernames_and_emails() -> None:
    parsed = parse_people_csv(HEADER + "faculty,A,amy,amy@x.example,,,\nfaculty,B,AMY,,,,\n"
                              + "faculty,C,cat,AMY@X.EXAMPLE,,,\n")
    assert [(e.line, e.field) for e in parsed.errors] == [(3, "username"), (4, "email")]


@pytest.mark.parametrize("cell", ["=HYPERLINK(A1)", "+1+2", "-2+3", "@SUM(A1)", "\t=1", " =1"])
def test_formula_injection_is_refused_in_any_column(cell: str) -> None:
    parsed = parse_people_csv(HEADER + f'faculty,"{cell}",fac1,,,,\nstudent,Asha,,,"{cell}",,\n')
    assert [(e.line, e.field) for e in parsed.errors] == [(2, "name"), (3, "roll_number")]
    assert all("formula" in e.reason for e in parsed.errors) and not parsed.rows


def test_wrong_encoding_names_the_line_and_the_fix() -> None:
    latin1 = (HEADER + "faculty,Ana,ana,,,,\nfaculty,José,jose,,,,\n").encode("latin-1")
    parsed = parse_people_bytes(latin1)
    assert [(e.line, e.field) for e in parsed.errors] == [(3, None)]
    assert "not UTF-8" in parsed.errors[0].reason and "CSV UTF-8" in parsed.errors[0].reason
    utf16 = parse_people_bytes((HEADER + "faculty,Ana,ana,,,,\n").encode("utf-16"))
    assert "UTF-16" in utf16.errors[0].reason
    assert parse_people_bytes((HEADER + "faculty,José,jose,,,,\n").encode()).ok


def test_nul_and_surrogates_are_refused_with_their_line() -> None:
    assert [(e.line, e.reason[:30]) for e in parse_people_csv(HEADER + "faculty,A\x00,a1a,,,,\n").errors] == [
        (2, "the file contains NUL characte")]
    assert parse_people_csv(HEADER + "faculty,A\ud800,a1a,,,,\n").errors[0].line == 2


def test_an_unclosed_quote_is_reported_not_raised() -> None:
    parsed = parse_people_csv(HEADER + 'faculty,"Ana,ana,,,,\n')
    assert parsed.errors and parsed.errors[0].line == 2 and "malformed" in parsed.errors[0].reason


def test_row_and_cell_bounds() -> None:
    big = parse_people_csv(HEADER + "faculty,A,aaa,,,,\n" * (MAX_ROWS + 5))
    assert big.errors[-1].reason == f"too many rows: at most {MAX_ROWS} per import"
    long_cell = parse_people_csv(HEADER + f"faculty,{'n' * 400},aaa,,,,\n")
    assert "longer than" in long_cell.errors[0].reason
