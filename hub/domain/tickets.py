"""Maintenance tickets: the workflow, who may move a ticket, SLA due times, and the auto-close rule.

Pure: no I/O, no clock reads (every time is passed in). The web layer asks
these rules before it writes; the hub's ticket actor uses them for its timers.

Workflow::

    open ──assign──► assigned ──start──► in_progress ──resolve──► resolved ──close──► closed
      ▲                 │  ▲                  │                      │                 │
      └────unassign─────┘  └──(re)assign──────┘      ◄──reopen───────┘                 │
      ▲                                                                                │
      └──────────────────────────────────reopen────────────────────────────────────────┘
    open / assigned / in_progress ──cancel (staff, with a reason)──► closed
    any state but closed ──auto-close (the hub: its alarm cleared and stayed clear)──► closed

"Staff" are ops and admin users. Tickets are assigned to staff only.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping

PRIORITIES = ("P0", "P1", "P2", "P3", "P4")
STATES = ("open", "assigned", "in_progress", "resolved", "closed")
STAFF_ROLES = ("ops", "admin")
#: Priorities a non-staff reporter may choose (P0/P1 are for staff to decide).
REPORTER_PRIORITIES = ("P2", "P3", "P4")
DEFAULT_REPORT_PRIORITY = "P3"

# The ticket policy's defaults: their only home. The database (ticket_sla_policy,
# ticket_settings) keeps only what an admin changed; hub/db/tickets.py fills in the rest.
#: Resolve-within time per priority.
DEFAULT_SLA: Mapping[str, timedelta] = {
    "P0": timedelta(hours=4),
    "P1": timedelta(hours=24),
    "P2": timedelta(days=3),
    "P3": timedelta(days=7),
    "P4": timedelta(days=14),
}
#: How long an alarm must stay clear before its ticket closes by itself (every priority).
DEFAULT_AUTO_CLOSE_AFTER = timedelta(minutes=30)
#: Alarm severities for which the hub raises a ticket by itself.
DEFAULT_AUTO_RAISE: tuple[str, ...] = ("critical",)
ALARM_SEVERITIES = ("critical", "major", "minor", "warning")
SEVERITY_PRIORITY: Mapping[str, str] = {"critical": "P1", "major": "P2", "minor": "P3", "warning": "P4"}
CLEARED_ALARM_STATES = ("cleared_unacked", "cleared_acked")
#: Bounds of a configurable duration (seconds): 1 minute .. 365 days.
MIN_SLA_S, MAX_SLA_S = 60, 365 * 24 * 3600
MAX_AUTO_CLOSE_S = 30 * 24 * 3600
MAX_TITLE, MAX_TEXT = 200, 4000

SYSTEM_USER = "system"


@dataclass(frozen=True)
class Caller:
    """Who asks for a change: a user (their id and role), or the hub itself (role ``system``)."""

    user_id: str
    role: str

    @property
    def staff(self) -> bool:
        return self.role in STAFF_ROLES


SYSTEM = Caller(SYSTEM_USER, "system")


@dataclass(frozen=True)
class TicketFacts:
    """What the rules need to know about a ticket."""

    state: str
    assignee: str | None
    reported_by: str | None


class Refused(Exception):
    """A change the rules do not allow. ``code``: ``forbidden``, ``invalid_transition`` or ``invalid_request``."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def _forbidden(message: str) -> Refused:
    return Refused("forbidden", message)


def may_view(ticket: TicketFacts, caller: Caller) -> bool:
    """Staff see every ticket; anyone else only the tickets they reported."""
    return caller.staff or (ticket.reported_by is not None and ticket.reported_by == caller.user_id)


#: (from, to) -> the name of the move, for the history and error messages.
MOVES: Mapping[tuple[str, str], str] = {
    ("assigned", "open"): "unassign",
    ("assigned", "in_progress"): "start",
    ("in_progress", "resolved"): "resolve",
    ("resolved", "in_progress"): "reopen",
    ("resolved", "closed"): "close",
    ("closed", "open"): "reopen",
    ("open", "closed"): "cancel",
    ("assigned", "closed"): "cancel",
    ("in_progress", "closed"): "cancel",
}


def check_transition(ticket: TicketFacts, to: str, caller: Caller, *, comment: str = "") -> str:
    """Allow moving ``ticket`` to state ``to`` for ``caller``, or raise :class:`Refused`; returns the move's name.

    Moving to ``assigned`` is not a transition: it is :func:`check_assign`.
    """
    if to not in STATES:
        raise Refused("invalid_request", f"'to' must be one of {', '.join(STATES)}.", "to")
    if to == "assigned":
        raise Refused("invalid_transition", "Assign the ticket to someone instead (POST .../assign).", "to")
    move = MOVES.get((ticket.state, to))
    if caller.role == "system":
        if to != "closed" or ticket.state == "closed":
            raise Refused("invalid_transition", f"The hub only closes open tickets, not {ticket.state} → {to}.")
        return "auto_close"
    if move is None:
        raise Refused("invalid_transition", f"A ticket cannot go from {ticket.state} to {to}.", "to")
    is_assignee = ticket.assignee is not None and ticket.assignee == caller.user_id
    is_reporter = ticket.reported_by is not None and ticket.reported_by == caller.user_id
    if move in ("start", "resolve"):
        if not (is_assignee or caller.role == "admin"):
            raise _forbidden(f"Only the assignee (or an admin) may {move} this ticket.")
    elif move == "unassign":
        if not caller.staff:
            raise _forbidden("Only ops staff may unassign a ticket.")
    elif move in ("close", "reopen") and ticket.state == "resolved":
        if not (caller.staff or is_reporter):
            raise _forbidden(f"Only ops staff or the reporter may {move} a resolved ticket.")
    elif move == "reopen":  # closed -> open
        if not caller.staff:
            raise _forbidden("Only ops staff may reopen a closed ticket.")
    elif move == "cancel":
        if not caller.staff:
            raise _forbidden("Only ops staff may cancel a ticket.")
        if not comment.strip():
            raise Refused("invalid_request", "Say why the ticket is closed without a fix.", "comment")
    return move


def check_assign(ticket: TicketFacts, caller: Caller, assignee_role: str | None) -> str:
    """Allow assigning ``ticket`` to a user whose role is ``assignee_role`` (None: no such user).

    Returns the state the ticket moves to (always ``assigned``).
    """
    if not caller.staff:
        raise _forbidden("Only ops staff may assign tickets.")
    if ticket.state in ("resolved", "closed"):
        raise Refused("invalid_transition", f"A {ticket.state} ticket cannot be assigned; reopen it first.")
    if assignee_role is None:
        raise Refused("invalid_request", "No such user.", "assignee")
    if assignee_role not in STAFF_ROLES:
        raise Refused("invalid_request", "Tickets are assigned to ops staff only.", "assignee")
    return "assigned"


def check_new_priority(priority: object, caller: Caller) -> str:
    """The priority of a new ticket (a default when ``priority`` is None), or :class:`Refused`."""
    if priority is None:
        return DEFAULT_REPORT_PRIORITY
    if not isinstance(priority, str) or priority not in PRIORITIES:
        raise Refused("invalid_request", f"'priority' must be one of {', '.join(PRIORITIES)}.", "priority")
    if not caller.staff and priority not in REPORTER_PRIORITIES:
        raise Refused("invalid_request",
                      f"Reporters may choose {', '.join(REPORTER_PRIORITIES)}; ops staff set higher priorities.",
                      "priority")
    return priority


# --- SLA -----------------------------------------------------------------------------------------

def sla_due(created_at: datetime, priority: str, resolve_within: Mapping[str, timedelta]) -> datetime:
    """When a ticket of ``priority`` created at ``created_at`` must be resolved by."""
    return created_at + resolve_within.get(priority, DEFAULT_SLA[priority])


def sla_breached(due: datetime, now: datetime, finished_at: datetime | None) -> bool:
    """Was (or is) the SLA missed? ``finished_at``: when it was resolved (or closed), None while it is not.

    Resolved by the due time is within it; still unresolved at the due time is a breach.
    """
    if finished_at is not None:
        return finished_at > due
    return now >= due


# --- auto-close --------------------------------------------------------------------------------

@dataclass(frozen=True)
class AlarmWatch:
    """The latest alarm of a ticket's (device, alarm type): a re-raise is a new alarm of the same pair."""

    active: bool
    cleared_at: datetime | None


def alarm_watch(state: str, cleared_at: datetime | None) -> AlarmWatch:
    cleared = state in CLEARED_ALARM_STATES
    return AlarmWatch(active=not cleared, cleared_at=cleared_at if cleared else None)


def auto_close_at(state: str, after: timedelta | None, watch: AlarmWatch | None) -> datetime | None:
    """When the ticket closes by itself, or None.

    Only a ticket watching an alarm, with auto-close on (``after`` not None),
    not closed yet, whose latest alarm has cleared: it closes ``after`` that
    clear. A re-raise (a newer active alarm of the same device and type)
    makes this None again, cancelling the countdown; the next clear restarts it.
    """
    if state == "closed" or after is None or watch is None or watch.active or watch.cleared_at is None:
        return None
    return watch.cleared_at + after


def priority_for_severity(severity: str) -> str:
    return SEVERITY_PRIORITY.get(severity, "P3")


def should_auto_raise(severity: str, state: str, auto_raise: tuple[str, ...] | list[str]) -> bool:
    """Raise a ticket by itself for a newly active alarm of one of the configured severities."""
    return state not in CLEARED_ALARM_STATES and severity in auto_raise


# --- validation of free text and policy --------------------------------------------------------

def storable(text: str) -> bool:
    """Text PostgreSQL can store: no NUL, no unpaired surrogate (JSON's ``\\ud800`` escapes make those)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(value: object, field: str, *, required: bool, limit: int) -> str:
    """Trimmed text of at most ``limit`` characters; :class:`Refused` otherwise."""
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not storable(value):
        raise Refused("invalid_request", f"'{field}' must be text (no NUL or unpaired surrogates).", field)
    text = value.strip()
    if required and not text:
        raise Refused("invalid_request", f"'{field}' is required.", field)
    if len(text) > limit:
        raise Refused("invalid_request", f"'{field}' is longer than {limit} characters.", field)
    return text


def check_duration(value: object, field: str, low: int, high: int, *, nullable: bool) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused("invalid_request", f"'{field}' must be an integer between {low} and {high}"
                      + (" (or null)." if nullable else "."), field)
    return value
