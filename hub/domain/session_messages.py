"""Messages a live session actor answers, shared by the hub and the web (pure frozen dataclasses).

The web reaches a live session's actor only through
``WebContext.session_call(session_id, message)``, which raises
:class:`SessionNotLive` when that session has no running actor.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Awaitable, Callable

from .checkin import MarkChange
from .checkin_network import ClientNetwork


class SessionNotLive(LookupError):
    """The session has no running actor (not open yet, or over)."""


@dataclass(frozen=True)
class DisplayCheckin:
    """Ask: a student's display-mode check-in, scanned (by hub time) at ``scanned_at``. Answers a :class:`Receipt`."""

    student_id: str
    scanned_at: datetime
    code_window: int
    #: SHA-256 of the phone's device cookie, and the pending token's nonce.
    device_hash: bytes
    nonce: bytes
    user_agent: str = ""
    #: Where the scan came from (kept network, inside the restriction?); ``None``: not judged.
    client: ClientNetwork | None = None


@dataclass(frozen=True)
class ManualMarks:
    """Ask: faculty marks ``(student_id, status)``; answers a :class:`Receipt` with the ``changes``
    (only records whose status really changes), or, with nothing applied, one with
    ``reason="invalid_request"`` and ``field`` naming the offending mark."""

    marks: tuple[tuple[str, str], ...]
    actor: str
    reason: str
    source: str = "manual"  # manual | bulk | flag_review


@dataclass(frozen=True)
class ReloadStudents:
    """Ask: these students' records changed in PostgreSQL (leave, corrections); reload them."""

    student_ids: tuple[str, ...]


@dataclass(frozen=True)
class ReloadRoster:
    """Ask: enrolments in this session's course, or the state of enrolled accounts, changed in PostgreSQL.

    The actor rebuilds its roster (enrolled students with an active account) and
    answers a :class:`RosterChange`. Records already written stay as they are:
    a student who leaves the roster keeps theirs, and is no longer judged or
    marked absent at close.
    """


@dataclass(frozen=True)
class RosterChange:
    """The answer to :class:`ReloadRoster`: who joined and who left the roster (sorted student ids)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class CloseSession:
    """Ask (the scheduler, at close): mark everyone without a record absent; answers once committed."""


@dataclass(frozen=True)
class Receipt:
    """A live session actor's answer: the decision now, the commit later.

    ``committed()`` waits until the writer has committed the effects
    (``True``), or stored them as a ``persistence_error`` (``False``).
    """

    accepted: bool
    reason: str = ""
    detail: str = ""
    status: str | None = None
    at: datetime | None = None
    flags: tuple[str, ...] = ()
    changes: tuple[MarkChange, ...] = ()
    field: str | None = None
    committed: Callable[[], Awaitable[bool]] | None = None
