"""People CSV, as a student-information system exports it: parse and validate the file. Pure (no I/O).

The file is UTF-8 (a byte-order mark is tolerated) with a header row naming
its columns, in any order, case and surrounding spaces ignored:

- ``role``: ``student``, ``faculty``, ``ops`` or ``admin`` (required);
- ``name`` (or ``display_name``): the person's name (required);
- ``username``: the login name; a student's defaults to their roll number;
- ``email``: optional;
- ``roll_number``, ``program``, ``section``: a student's (roll number required),
  empty for staff;
- ``pin``: a student's campus-wide terminal PIN (1 to 24 letters or digits, as
  ZKTeco terminals know users); optional, the hub assigns one when empty
  (docs/people.md, "Terminal rosters").

Other columns are ignored. Blank lines are skipped. The contract is the
enrolment import's (:mod:`hub.domain.enrolment_import`): every problem is a
:class:`RowError` with the line a spreadsheet shows, the column and a reason,
all reported at once. Each value is checked by :mod:`hub.domain.people`, the
one home of an account's rules. Refused here as well:

- a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
  return: a spreadsheet opening a later export would run it as a formula
  (CSV injection), so it is never stored;
- a file that is not UTF-8 (the line of the first bad byte, and how to save
  it as UTF-8), or that holds NUL characters;
- two rows for one username, roll number or email (case ignored).

Checks that need the database (is the username taken by someone else?) are
made by ``hub.db.people_import`` and reported the same way.
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass

from .enrolment_import import RowError, csv_records
from .people import account_problem
from .roles import STUDENT, is_role
from .terminal_roster import pin_problem

#: Rows per import; the route also bounds the body (2 MiB).
MAX_ROWS = 20_000
#: Characters per cell, before any field's own bound (a name is at most 200).
MAX_CELL = 300
#: What a spreadsheet treats as the start of a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

COLUMNS = ("role", "name", "username", "email", "roll_number", "program", "section", "pin")
_ALIASES = {"display_name": "name"}


@dataclass(frozen=True)
class PersonRow:
    """One person to import; empty optional cells are None."""

    line: int
    role: str
    username: str
    display_name: str
    email: str | None
    roll_number: str | None
    program: str | None
    section: str | None
    #: A student's terminal PIN from the file; None: the hub assigns one.
    pin: str | None = None


@dataclass(frozen=True)
class ParsedPeople:
    rows: tuple[PersonRow, ...]
    errors: tuple[RowError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def decode_people_csv(data: bytes) -> tuple[str | None, RowError | None]:
    """The file's text, or why it is not UTF-8 text (with the line of the first bad byte)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None, RowError(1, None, "the file is UTF-16; save it as 'CSV UTF-8' and import it again")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, RowError(line, None, "the file is not UTF-8 text (a byte that is not UTF-8 on this line); "
                                          "save it as 'CSV UTF-8' and import it again")
    return text, None


def parse_people_bytes(data: bytes) -> ParsedPeople:
    """:func:`parse_people_csv` on an uploaded file's bytes."""
    text, problem = decode_people_csv(data)
    if problem is not None:
        return ParsedPeople((), (problem,))
    assert text is not None
    return parse_people_csv(text)


def parse_people_csv(text: str) -> ParsedPeople:
    """Parse ``text``; every bad row is reported, good rows are returned either way."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        return ParsedPeople((), (RowError(line, None, "the file contains NUL characters; is it really CSV?"),))
    try:
        text.encode()
    except UnicodeEncodeError as exc:  # an unpaired surrogate (JSON "\ud800")
        line = text.count("\n", 0, exc.start) + 1
        return ParsedPeople((), (RowError(line, None, "the file is not valid Unicode text (an unpaired surrogate)"),))
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        return ParsedPeople((), (RowError(1, None, f"unreadable header: {exc}"),))
    if header is None or not any(cell.strip() for cell in header):
        return ParsedPeople((), (RowError(1, None, "the file is empty: expected a header row"),))
    columns = [_ALIASES.get(name, name) for name in (cell.strip().lower() for cell in header)]
    header_errors = _check_header(columns)
    if header_errors:
        return ParsedPeople((), tuple(header_errors))
    index: dict[str, int] = {}
    for i, name in enumerate(columns):
        if name in COLUMNS:
            index.setdefault(name, i)
    rows: list[PersonRow] = []
    errors: list[RowError] = []
    first_seen: dict[tuple[str, str], int] = {}
    for start_line, record in csv_records(reader, len(columns), errors, lambda: len(rows) + len(errors)):
        row_errors, row = _person(start_line, {name: record[i] for name, i in index.items()})
        if row is None:
            errors.extend(row_errors)
            continue
        duplicate = _duplicate(row, first_seen)
        if duplicate is not None:
            errors.append(duplicate)
            continue
        rows.append(row)
    if not rows and not errors:
        errors.append(RowError(1, None, "the file has a header but no rows"))
    return ParsedPeople(tuple(rows), tuple(errors))


def _check_header(columns: list[str]) -> list[RowError]:
    errors = []
    counts = Counter(c for c in columns if c in COLUMNS)
    duplicated = sorted(c for c, n in counts.items() if n > 1)
    if duplicated:
        errors.append(RowError(1, duplicated[0], f"column '{duplicated[0]}' appears more than once"))
    for required in ("role", "name"):
        if required not in counts:
            errors.append(RowError(1, required, f"the header needs a '{required}' column"))
    return errors


def _person(line: int, cells: dict[str, str]) -> tuple[list[RowError], PersonRow | None]:
    errors: list[RowError] = []
    values: dict[str, str | None] = {}
    for name, raw in cells.items():
        if raw.startswith(FORMULA_STARTS) or raw.strip().startswith(FORMULA_STARTS):
            errors.append(RowError(line, name, f"'{name}' starts with '{raw.strip()[:1] or raw[:1]!s}', which a "
                                               "spreadsheet would run as a formula; remove it"))
            continue
        if len(raw) > MAX_CELL:
            errors.append(RowError(line, name, f"'{name}' is longer than {MAX_CELL} characters"))
            continue
        values[name] = raw.strip() or None
    if errors:
        return errors, None
    role = (values.get("role") or "").lower()
    if not role:
        return [RowError(line, "role", "'role' is empty")], None
    if not is_role(role):
        return [RowError(line, "role", f"unknown role {role!r}: one of student, faculty, ops, admin")], None
    roll_number = values.get("roll_number")
    username = values.get("username") or (roll_number if role == STUDENT else None)
    if username is None:
        return [RowError(line, "username", "'username' is empty (only a student's defaults to the roll number)")], None
    display_name = values.get("name") or ""
    email = values.get("email")
    problem = account_problem(username=username, display_name=display_name, role=role, email=email,
                              roll_number=roll_number, program=values.get("program"), section=values.get("section"))
    if problem is not None:
        field, message = problem
        return [RowError(line, "name" if field == "display_name" else field, message)], None
    pin = values.get("pin")
    if pin is not None:
        if role != STUDENT:
            return [RowError(line, "pin", "only students have a terminal PIN")], None
        pin_error = pin_problem(pin)
        if pin_error is not None:
            return [RowError(line, "pin", pin_error)], None
    return [], PersonRow(line, role, username, display_name, email, roll_number,
                         values.get("program"), values.get("section"), pin)


def _duplicate(row: PersonRow, first_seen: dict[tuple[str, str], int]) -> RowError | None:
    keys = [("username", row.username.lower())]
    if row.roll_number is not None:
        keys.append(("roll_number", row.roll_number))
    if row.email is not None:
        keys.append(("email", row.email.lower()))
    if row.pin is not None:
        keys.append(("pin", row.pin))
    for field, value in keys:
        earlier = first_seen.get((field, value))
        if earlier is not None:
            return RowError(row.line, field, f"duplicate {field.replace('_', ' ')} of line {earlier}")
    for key in keys:
        first_seen[key] = row.line
    return None
