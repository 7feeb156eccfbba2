"""The roles an account may hold, declared once.

A role decides which pages and API operations an account may use (web/auth.py
``require``) and where it lands after login. Adding one (e.g. a counselor)
means adding it here and one migration extending the ``users.role`` CHECK
constraint (hub/db/migrations/0001_initial.sql declares it); every list of
roles in the web app and the CLI is read from :data:`ROLES`.

Pure: no I/O.
"""
from __future__ import annotations

from typing import Literal, TypeGuard

Role = Literal["admin", "faculty", "student", "ops"]
#: Every role, in the order forms and documents list them.
ROLES: tuple[Role, ...] = ("admin", "faculty", "student", "ops")
#: What each role is for, as the people page and the docs explain it.
ROLE_DESCRIPTIONS: dict[Role, str] = {
    "admin": "Manages people, the academic model, devices and every record.",
    "faculty": "Teaches courses: live rosters, marks, leave and correction decisions.",
    "student": "Checks in with a personal rotating QR; sees their own attendance.",
    "ops": "Operations staff: device health, alarms, tickets, provisioning.",
}
#: The role that manages people; at least one active account must keep it.
ADMIN: Role = "admin"
#: Roles that must use a second factor (they can change people, devices and commands); others may.
MFA_REQUIRED_ROLES: frozenset[Role] = frozenset({"admin", "ops"})
#: The role that carries a student record (roll number, check-in token secret).
STUDENT: Role = "student"


def is_role(value: object) -> TypeGuard[Role]:
    """Whether ``value`` is one of :data:`ROLES`."""
    return isinstance(value, str) and value in ROLES
