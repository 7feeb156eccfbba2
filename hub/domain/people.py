"""The fields of a person's account, and what makes them valid: one home for every form of it.

The API's request structs (web/routes/users_api.py), the CLI
(hub/app/users_cli.py) and the CSV import all check an account against these
bounds, so a name the page accepts is one the CLI and the import accept too.

Pure: no I/O.
"""
from __future__ import annotations

import re

from .roles import STUDENT, is_role

#: A login name: starts with a letter or digit; letters, digits, ``._-@``; 3 to 64 characters.
USERNAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._@-]{2,63}"
USERNAME_MAX = 64
DISPLAY_NAME_MAX = 200
#: A deliberately loose address check (one ``@``, a dot in the domain, no spaces); delivery proves the rest.
EMAIL_PATTERN = r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+"
EMAIL_MAX = 254
#: A roll number as student-information systems print them: letters, digits, ``/-._``.
ROLL_NUMBER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9/._-]{0,31}"
ROLL_NUMBER_MAX = 32
PROGRAM_MAX = 100
SECTION_MAX = 32

_USERNAME = re.compile(USERNAME_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)
_ROLL_NUMBER = re.compile(ROLL_NUMBER_PATTERN)

#: (field, message) of the first thing wrong with an account.
Problem = tuple[str, str]


def _bad_text(value: str) -> bool:
    # PostgreSQL text cannot hold NUL; other control characters only hide mischief in a name.
    return any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in value)


def username_problem(username: str) -> Problem | None:
    if _USERNAME.fullmatch(username) is None:
        return ("username", "A username is 3 to 64 letters, digits, '.', '_', '-' or '@', "
                            "starting with a letter or digit.")
    return None


def display_name_problem(display_name: str) -> Problem | None:
    if not display_name.strip():
        return ("display_name", "A name is required.")
    if len(display_name) > DISPLAY_NAME_MAX:
        return ("display_name", f"A name is at most {DISPLAY_NAME_MAX} characters.")
    if _bad_text(display_name):
        return ("display_name", "A name may not contain control characters.")
    return None


def email_problem(email: str | None) -> Problem | None:
    if email is None:
        return None
    if len(email) > EMAIL_MAX or _EMAIL.fullmatch(email) is None:
        return ("email", "Not an email address (name@example.edu).")
    return None


def student_fields_problem(
    role: str, roll_number: str | None, program: str | None, section: str | None
) -> Problem | None:
    """A student needs a roll number; other roles carry no student fields."""
    if role == STUDENT:
        if roll_number is None:
            return ("roll_number", "A student needs a roll number.")
        if _ROLL_NUMBER.fullmatch(roll_number) is None:
            return ("roll_number", "A roll number is 1 to 32 letters, digits, '/', '.', '_' or '-'.")
        for name, value, limit in (("program", program, PROGRAM_MAX), ("section", section, SECTION_MAX)):
            if value is not None and (len(value) > limit or _bad_text(value) or not value.strip()):
                return (name, f"A {name} is 1 to {limit} characters, no control characters.")
        return None
    for name, value in (("roll_number", roll_number), ("program", program), ("section", section)):
        if value is not None:
            return (name, f"Only a student has a {name.replace('_', ' ')}.")
    return None


def account_problem(
    *, username: str, display_name: str, role: str, email: str | None = None,
    roll_number: str | None = None, program: str | None = None, section: str | None = None,
) -> Problem | None:
    """The first thing wrong with a new account, or None."""
    if not is_role(role):
        return ("role", "Unknown role.")
    return (username_problem(username) or display_name_problem(display_name) or email_problem(email)
            or student_fields_problem(role, roll_number, program, section))
