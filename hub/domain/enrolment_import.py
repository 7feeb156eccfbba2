"""Enrolment CSV: parse and validate the file itself. Pure (no I/O).

The file has a header row naming its columns, in any order, case and
surrounding spaces ignored:

- the student: ``student_id`` or ``roll_number`` (one of them, or both, in
  which case both must be filled in on every row);
- the section: ``section_id``, or ``course_code`` together with ``section``
  (the section's name within the term the import is for).

Other columns are ignored. Blank lines are skipped. A UTF-8 byte-order mark is
tolerated. Every problem is reported as a :class:`RowError` with the line
number a spreadsheet would show (the header is line 1; a quoted field spanning
lines counts them all), the column, and a reason. Checks that need the
database (does the student exist? the section?) are made by
``hub.db.academic`` and reported the same way.
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterator

#: A sane upper bound on rows per import (the route also limits the body to ~2 MB).
MAX_ROWS = 20_000
MAX_FIELD = 200

STUDENT_COLUMNS = ("student_id", "roll_number")


@dataclass(frozen=True)
class RowError:
    line: int
    field: str | None
    reason: str

    def as_dict(self) -> dict:
        return {"line": self.line, "field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class EnrolmentRow:
    line: int
    student_id: str | None
    roll_number: str | None
    section_id: str | None
    course_code: str | None
    section_name: str | None

    @property
    def student_key(self) -> tuple[str, str]:
        """``("student_id", id)`` or ``("roll_number", number)``: how to find the student."""
        if self.student_id is not None:
            return ("student_id", self.student_id)
        return ("roll_number", self.roll_number or "")

    @property
    def section_key(self) -> tuple[str, ...]:
        if self.section_id is not None:
            return ("section_id", self.section_id)
        return ("course_section", self.course_code or "", self.section_name or "")


@dataclass(frozen=True)
class ParsedImport:
    rows: tuple[EnrolmentRow, ...]
    errors: tuple[RowError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_enrolment_csv(text: str) -> ParsedImport:
    """Parse ``text``; every bad row is reported, good rows are returned either way."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        return ParsedImport((), (RowError(line, None, "the file contains NUL characters; is it really CSV?"),))
    try:
        text.encode()
    except UnicodeEncodeError as exc:  # an unpaired surrogate (JSON "\ud800"): no database text can hold it
        line = text.count("\n", 0, exc.start) + 1
        return ParsedImport((), (RowError(line, None, "the file is not valid Unicode text (an unpaired surrogate)"),))
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        return ParsedImport((), (RowError(1, None, f"unreadable header: {exc}"),))
    if header is None or not any(cell.strip() for cell in header):
        return ParsedImport((), (RowError(1, None, "the file is empty: expected a header row"),))
    columns = [cell.strip().lower() for cell in header]
    header_errors = _check_header(columns)
    if header_errors:
        return ParsedImport((), tuple(header_errors))
    # Each name's first column, in one pass: a header may have ~100k columns (list.index per name
    # would be quadratic and hold the hub's event loop for minutes).
    index: dict[str, int] = {}
    for i, name in enumerate(columns):
        index.setdefault(name, i)
    uses_section_id = "section_id" in index
    rows: list[EnrolmentRow] = []
    errors: list[RowError] = []
    seen_student_section: dict[tuple, int] = {}
    for start_line, record in csv_records(reader, len(columns), errors, lambda: len(rows) + len(errors)):
        values = {name: record[i].strip() for name, i in index.items()}
        row_errors = []
        for name in (*(c for c in STUDENT_COLUMNS if c in index),
                     *(("section_id",) if uses_section_id else ("course_code", "section"))):
            if not values[name]:
                row_errors.append(RowError(start_line, name, f"'{name}' is empty"))
            elif len(values[name]) > MAX_FIELD:
                row_errors.append(RowError(start_line, name, f"'{name}' is longer than {MAX_FIELD} characters"))
        if row_errors:
            errors.extend(row_errors)
            continue
        row = EnrolmentRow(
            line=start_line,
            student_id=values.get("student_id"),
            roll_number=values.get("roll_number"),
            section_id=values.get("section_id") if uses_section_id else None,
            course_code=None if uses_section_id else values["course_code"],
            section_name=None if uses_section_id else values["section"],
        )
        key = (row.student_key, row.section_key)
        if key in seen_student_section:
            errors.append(RowError(start_line, None,
                                   f"duplicate of line {seen_student_section[key]}"))
            continue
        seen_student_section[key] = start_line
        rows.append(row)
    if not rows and not errors:
        errors.append(RowError(1, None, "the file has a header but no rows"))
    return ParsedImport(tuple(rows), tuple(errors))


def _check_header(columns: list[str]) -> list[RowError]:
    errors = []
    counts = Counter(columns)  # not columns.count per column: quadratic on a 100k-column header
    duplicated = sorted(c for c, n in counts.items() if c and n > 1)
    if duplicated:
        errors.append(RowError(1, duplicated[0], f"column '{duplicated[0]}' appears more than once"))
    if not any(c in columns for c in STUDENT_COLUMNS):
        errors.append(RowError(1, "student_id", "the header needs a 'student_id' or a 'roll_number' column"))
    if "section_id" not in columns and not ("course_code" in columns and "section" in columns):
        errors.append(RowError(1, "section_id",
                               "the header needs a 'section_id' column, or 'course_code' and 'section' columns"))
    return errors


def one_section_per_course(rows: list[tuple[int, str, str, str]]) -> list[RowError]:
    """Rows resolved to ``(line, student_id, course_id, section_id)``: a student may be in one section per course.

    Run after the database resolved names to ids (two rows may name the same
    student differently, by id and by roll number).
    """
    errors = []
    first: dict[tuple[str, str], tuple[int, str]] = {}
    for line, student, course, section in rows:
        seen = first.get((student, course))
        if seen is None:
            first[(student, course)] = (line, section)
        elif seen[1] == section:
            errors.append(RowError(line, None, f"duplicate of line {seen[0]}"))
        else:
            errors.append(RowError(line, None,
                                   f"the student is already put in another section of this course on line {seen[0]}"))
    return errors


def csv_records(reader: Iterator[list[str]], width: int, errors: list[RowError],
                taken: Callable[[], int]) -> Iterator[tuple[int, list[str]]]:
    """The data records of a ``csv.reader`` past its header, each with the line it starts on.

    Shared by the CSV imports. Blank records are skipped. A malformed CSV ends the reading, a record
    whose field count differs from the header's (``width``) is skipped, and reading stops once
    ``taken()`` (the caller's rows plus errors) reaches :data:`MAX_ROWS`; each is reported in ``errors``.
    """
    line = reader.line_num  # type: ignore[attr-defined]  # csv.reader objects have line_num
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The bad record starts on the line after the previous one ended (an unclosed quote
            # is only noticed at the end of the file).
            errors.append(RowError(line + 1, None, f"malformed CSV: {exc}"))
            return
        start_line, line = line + 1, reader.line_num  # type: ignore[attr-defined]
        if not any(cell.strip() for cell in record):
            continue
        if taken() >= MAX_ROWS:
            errors.append(RowError(start_line, None, f"too many rows: at most {MAX_ROWS} per import"))
            return
        if len(record) != width:
            errors.append(RowError(start_line, None, f"expected {width} fields like the header, found {len(record)}"))
            continue
        yield start_line, record
