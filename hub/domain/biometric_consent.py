"""Biometric consent: the notice, who may hold a fingerprint page, and what each terminal confirmed. Pure.

A student's fingerprint is enrolled on a terminal only while they have an
active consent (given by themself on their privacy page, or recorded by an
admin from a paper form), to a published version of the notice below. The
rules here are the one place that says so: the roster planner
(``hub.domain.terminal_roster.plan_roster``'s ``page_holders``) and every
enrolment path (hub/db/biometric_consent.py, hub/db/terminal_roster.py
``assign_page``) ask :func:`may_hold_page` / :func:`enrolment_problem`.

Without consent a student keeps their campus-wide PIN on the terminals of
their rooms (a number like a card number, no biometric data: PIN-only punches
on ZKTeco terminals, docs/people.md) and checks in with their QR code; the hub
never sends a page or template for them.

The state of one student on one terminal comes from the acks of the commands
that carried its latest change (:func:`terminal_state`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Mapping

#: Every published notice, by version: a consent records the version the student saw, so no
#: published text is ever changed or removed; a new text is a new version.
NOTICES: dict[str, str] = {
    "2026-12": (
        "Fingerprint check-in is optional. If you agree, your fingerprint is enrolled on the "
        "fingerprint terminals of your classrooms and is used only to record your attendance. "
        "The fingerprint template stays on those terminals (sealed at rest on the classroom "
        "computer); the hub keeps only which terminal page is yours, and never your fingerprint "
        "(while a template travels to a terminal it is encrypted to that terminal's key and deleted "
        "from the hub as soon as it is delivered or expires). "
        "You can withdraw at any time on this page: your fingerprint is then deleted from every "
        "terminal, and you check in with your QR code instead. Refusing or withdrawing has no other "
        "consequence. The record of your consent (when, which notice, who recorded it, and its "
        "withdrawal) is kept as evidence."
    ),
}
#: The version a new consent is given to.
CURRENT_NOTICE_VERSION = "2026-12"
#: Largest template a terminal takes (the edge agent's ``template_sync`` limit, edge_agent/commands.py).
MAX_TEMPLATE_BYTES = 4096
#: Longest withdrawal reason kept (the column's CHECK too).
MAX_REASON_CHARS = 500

TerminalState = Literal["pending", "confirmed", "failed", "removal_pending", "removed", "removal_failed"]
#: Command statuses that settle nothing yet.
_OUTSTANDING = frozenset({"pending", "sent"})


def notice_problem(version: str) -> str | None:
    """Why ``version`` cannot be consented to, or None (only the current version is offered)."""
    if version not in NOTICES:
        return f"unknown notice version {version!r}"
    if version != CURRENT_NOTICE_VERSION:
        return f"notice {version!r} is superseded by {CURRENT_NOTICE_VERSION!r}: read the current notice"
    return None


def reason_problem(reason: str) -> str | None:
    """Why a withdrawal reason cannot be kept, or None."""
    if len(reason) > MAX_REASON_CHARS:
        return f"a reason is at most {MAX_REASON_CHARS} characters"
    return None


def may_hold_page(*, active: bool, consented: bool) -> bool:
    """A student may be enrolled (hold a fingerprint page) on a terminal: an active account with active consent."""
    return active and consented


def enrolment_problem(*, active: bool | None, consented: bool) -> str | None:
    """Why this student cannot be enrolled on a fingerprint page, or None. ``active``: None for no such student."""
    if active is None:
        return "no such student"
    if not active:
        return "this student is deactivated"
    if not consented:
        return "this student has no active biometric consent (they check in with their QR code)"
    return None


@dataclass(frozen=True)
class CommandOutcome:
    """One command that carried a page change, as the hub knows it (``status`` None: the command was never created)."""

    name: str
    status: str | None


def _settled_ok(outcome: CommandOutcome, *, removal: bool) -> bool:
    if outcome.status == "acked":
        return True
    # An agent without a fingerprint module holds no template to delete: nothing was there.
    return removal and outcome.name == "template_sync" and outcome.status == "unsupported"


def terminal_state(*, removal: bool, commands: Iterable[CommandOutcome], page_source: str | None = None
                   ) -> TerminalState:
    """Where one student's page on one terminal stands, from its latest change's commands.

    An enrolment is ``confirmed`` once every command is acknowledged (a page the
    terminal itself reported, with no command, is confirmed by that report),
    ``pending`` while any is outstanding, ``failed`` when any ended otherwise
    (expired, failed, timed out, unsupported, never created). A removal reads
    the same as ``removed`` / ``removal_pending`` / ``removal_failed``.
    """
    outcomes = list(commands)
    if not outcomes:
        if removal:
            return "removal_failed"
        return "confirmed" if page_source == "terminal" else "failed"
    if all(_settled_ok(o, removal=removal) for o in outcomes):
        return "removed" if removal else "confirmed"
    if any(o.status in _OUTSTANDING for o in outcomes):
        return "removal_pending" if removal else "pending"
    return "removal_failed" if removal else "failed"


def fingerprint_students(name: str, args: Mapping[str, Any]) -> set[str]:
    """The students a raw command would put on a fingerprint page (``template_sync`` with a template,
    ``roster_sync`` ``pages``): each needs an active consent like any enrolment. Malformed entries are
    left to the device's parser (edge_agent/commands.py), which refuses them."""
    if name == "template_sync" and isinstance(args.get("student"), str) and "template" in args:
        return {args["student"]}
    if name == "roster_sync" and isinstance(args.get("pages"), str):
        return {student.strip() for entry in re.split(r"[;\n]", args["pages"])
                for _, sep, student in [entry.partition("=")] if sep and student.strip()}
    return set()
