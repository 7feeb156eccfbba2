"""Check-in rules for one class session. Pure: no I/O, no clock, no trio.

The session actor owns one :class:`SessionState` and feeds it every channel's
check-ins (edge QR, biometric, classroom display, manual marks); the state
is rebuilt from PostgreSQL with :meth:`SessionState.restore`. Nothing here
changes state while judging: ``judge_*`` decide, ``apply*`` record.

Timing (per session, copied from the course's rules when it is generated):

- ``opens_before`` before the start, check-in opens; a scan up to
  ``early`` before that is still counted (present), never locked out;
- up to ``grace`` after the start: present; then late until ``late_cutoff``
  after the start (capped by the end); after the cut-off: refused
  (``after_late_cutoff``), the student is marked absent at close;
- at close, everyone on the roster without a record is marked absent
  (``auto_absent``); a check-in that happened in time but arrives later
  (buffered at the edge) still turns that absent into present or late.

Proxy-attendance signals never decide alone: they raise a :class:`Flag`
for faculty review next to the decision.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Collection, Literal, Mapping, Sequence

from schemas import CheckinToken, parse_checkin_token, token_is_authentic, token_is_fresh

from .checkin_network import MANY_NETWORKS, ClientNetwork, networks_reached

CheckinStatus = Literal["present", "late"]
Status = Literal["present", "late", "absent", "excused"]
STATUSES: tuple[str, ...] = ("present", "late", "absent", "excused")
FlagKind = Literal["shared_device", "wrong_room", "token_reuse", "clock_skew", "outside_network", "many_networks"]
FLAG_KINDS: tuple[str, ...] = ("shared_device", "wrong_room", "token_reuse", "clock_skew", "outside_network",
                               "many_networks")
#: Each flag kind in plain words, for people (review list, notifications); the codes stay in the API.
FLAG_LABELS: dict[str, str] = {
    "shared_device": "One phone checked in several students",
    "wrong_room": "Scanned in the wrong room",
    "token_reuse": "Check-in code used twice",
    "clock_skew": "Scanner's clock is off",
    "outside_network": "Checked in from outside the room's network",
    "many_networks": "Same code used from many networks",
}

#: One phone checking in two students within this is flagged ``shared_device``.
SHARED_DEVICE_WINDOW = timedelta(minutes=1)
#: A device clock off by more than this (either way) is flagged ``clock_skew``.
MAX_CLOCK_SKEW = timedelta(seconds=30)
#: Default early horizon: scans this long before check-in opens are still counted.
EARLY_HORIZON = timedelta(minutes=30)
AUTO_ABSENT_SOURCE = "auto_absent"


@dataclass(frozen=True)
class SessionWindow:
    starts_at: datetime
    ends_at: datetime
    grace: timedelta
    opens_before: timedelta
    late_cutoff: timedelta = timedelta(minutes=30)
    #: How long before ``opens_at`` a scan is still held for this session (see module docstring).
    early: timedelta = timedelta(0)

    @property
    def opens_at(self) -> datetime:
        return self.starts_at - self.opens_before

    @property
    def cutoff_at(self) -> datetime:
        """Last instant a check-in counts: the late cut-off (never before the grace ends), capped by the end."""
        return min(self.ends_at, self.starts_at + max(self.late_cutoff, self.grace))

    def refusal(self, at: datetime) -> "Rejected | None":
        """Why a check-in at ``at`` does not count, or ``None`` if it does."""
        if at < self.opens_at - self.early or at > self.ends_at:
            return Rejected("outside_session_window", f"scan at {at.isoformat()}")
        if at > self.cutoff_at:
            return Rejected("after_late_cutoff", f"scan at {at.isoformat()} is after {self.cutoff_at.isoformat()}")
        return None

    def status_at(self, at: datetime) -> CheckinStatus:
        return "present" if at <= self.starts_at + self.grace else "late"


@dataclass(frozen=True)
class Flag:
    """A proxy-attendance signal on ``student_id``'s check-in, for faculty review."""

    kind: FlagKind
    student_id: str
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Accepted:
    student_id: str
    status: CheckinStatus
    at: datetime
    token_window: int | None
    flags: tuple[Flag, ...] = ()
    #: The status this check-in replaces (an ``auto_absent`` written at close), if any.
    replaces: str | None = None


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str = ""
    flags: tuple[Flag, ...] = ()


Decision = Accepted | Rejected


@dataclass(frozen=True)
class Mark:
    """A student's current record in this session."""

    status: str
    source: str


@dataclass(frozen=True)
class DisplayUse:
    """One accepted display-mode check-in: which phone, which pending token, when; and which display
    code window it scanned from which kept network (``None``: unknown; check-ins stored before 0021)."""

    student_id: str
    device_hash: bytes
    nonce: bytes
    at: datetime
    code_window: int | None = None
    network: str | None = None
    #: Inside the network restriction (``None``: none applied).
    inside: bool | None = None


@dataclass(frozen=True)
class MarkChange:
    """A manual mark that changes a record: ``before`` is ``None`` when there was none."""

    student_id: str
    status: Status
    before: str | None


class InvalidMarks(ValueError):
    """A manual mark that cannot be applied; ``field`` names the offending input."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def judge_marks(
    roster: Collection[str], records: Mapping[str, Mark], marks: Sequence[tuple[str, str]],
) -> list[MarkChange]:
    """Validate faculty marks ``(student_id, status)`` against a session's roster and current
    records; return only those that change a record. The one rule for a session with a live
    actor (its in-memory state) and without one (its records read from PostgreSQL).

    Raises :class:`InvalidMarks` (nothing applied) for an unknown status,
    a student not on the roster, or a student marked twice.
    """
    seen: set[str] = set()
    changes = []
    for index, (student_id, status) in enumerate(marks):
        if status not in STATUSES:
            raise InvalidMarks(f"status must be one of {', '.join(STATUSES)}", f"marks[{index}].status")
        if student_id not in roster:
            raise InvalidMarks(f"{student_id} is not enrolled in this session", f"marks[{index}].student_id")
        if student_id in seen:
            raise InvalidMarks(f"{student_id} is marked twice", f"marks[{index}].student_id")
        seen.add(student_id)
        before = records.get(student_id)
        if before is None or before.status != status:
            changes.append(MarkChange(student_id, status, before.status if before else None))  # type: ignore[arg-type]
    return changes


def clock_skew_flag(student_id: str, device_ts: datetime, received_at: datetime,
                    device_offset: timedelta | None) -> Flag | None:
    """The ``clock_skew`` signal for a check-in stamped ``device_ts`` by a device and received at ``received_at``.

    ``device_offset`` is the device's clock offset measured from its other,
    promptly delivered traffic (hub receive time minus device time; the
    smallest recent value: buffering only ever makes it larger), or ``None``
    when there is none. A device more than :data:`MAX_CLOCK_SKEW` ahead is
    visible on the scan itself; a device behind looks exactly like an
    offline-buffered one, so only its live offset can tell them apart.
    """
    ahead = device_ts - received_at
    if ahead > MAX_CLOCK_SKEW:
        return Flag("clock_skew", student_id, f"device clock {ahead.total_seconds():.0f}s ahead of the hub",
                    {"offset_s": -ahead.total_seconds()})
    if device_offset is not None and device_offset > MAX_CLOCK_SKEW and received_at - device_ts > MAX_CLOCK_SKEW:
        return Flag("clock_skew", student_id,
                    f"device clock {device_offset.total_seconds():.0f}s behind the hub",
                    {"offset_s": device_offset.total_seconds()})
    return None


@dataclass
class SessionState:
    """Roster and records of one session. Owned by exactly one actor."""

    session_id: str
    room_id: str
    window: SessionWindow
    #: student id → token secret, for every enrolled student.
    roster: dict[str, bytes]
    records: dict[str, Mark] = field(default_factory=dict)
    used_tokens: set[tuple[str, int]] = field(default_factory=set)
    display_uses: list[DisplayUse] = field(default_factory=list)
    #: Auto-absent has been written: the session is over.
    closed: bool = False

    @property
    def checked_in(self) -> dict[str, str]:
        """``{student_id: status}`` of every record."""
        return {student: mark.status for student, mark in self.records.items()}

    def restore(self, records: dict[str, Mark] | dict[str, str], used_tokens: set[tuple[str, int]],
                display_uses: Sequence[DisplayUse] = (), closed: bool = False) -> None:
        self.records = {s: m if isinstance(m, Mark) else Mark(m, "qr") for s, m in records.items()}
        self.used_tokens = set(used_tokens)
        self.display_uses = list(display_uses)
        self.closed = closed

    def reload(self, records: dict[str, Mark | None]) -> None:
        """Replace these students' records (``None``: no record) after a change made elsewhere."""
        for student, mark in records.items():
            if mark is None:
                self.records.pop(student, None)
            else:
                self.records[student] = mark

    # --- judging ----------------------------------------------------------------

    def judge_qr(self, text: str, scanned_at: datetime) -> Decision:
        """Decide a QR scan taken at ``scanned_at`` (device time). Does not change state."""
        token = parse_checkin_token(text)
        if token is None:
            return Rejected("invalid_token", "not a CampusHub check-in token")
        secret = self.roster.get(token.student_id)
        if secret is None:
            return Rejected("not_enrolled", f"{token.student_id} is not on the roster")
        if not token_is_authentic(token, secret):
            return Rejected("invalid_token", "MAC does not verify")
        if not token_is_fresh(token, scanned_at.timestamp()):
            return Rejected("expired_token", f"window {token.window} is not current at scan time")
        if (token.student_id, token.window) in self.used_tokens:
            # The same personal code presented twice: a screenshot passed around, say.
            flag = Flag("token_reuse", token.student_id, f"personal code of window {token.window} presented again",
                        {"token_window": token.window, "at": scanned_at.isoformat()})
            return Rejected("replayed_token", "this token was already used", (flag,))
        return self._judge_student(token.student_id, scanned_at, token)

    def judge_biometric(self, student_id: str, scanned_at: datetime) -> Decision:
        if student_id not in self.roster:
            return Rejected("not_enrolled", f"{student_id} is not on the roster")
        return self._judge_student(student_id, scanned_at, None)

    def judge_display(self, student_id: str, scanned_at: datetime, device_hash: bytes, nonce: bytes,
                      client: ClientNetwork | None = None, code_window: int | None = None) -> Decision:
        """Decide a display-mode check-in scanned (by hub time) at ``scanned_at`` on phone ``device_hash``,
        from ``client`` (hub.domain.checkin_network.place_client) with the display code of ``code_window``.

        Network signals flag an accepted check-in only (never refuse it): see :meth:`network_flags`.
        """
        if student_id not in self.roster:
            return Rejected("not_enrolled", f"{student_id} is not on the roster")
        flags: list[Flag] = []
        reused = [u.student_id for u in self.display_uses if u.nonce == nonce and u.student_id != student_id]
        if reused:
            flags.append(Flag("token_reuse", student_id, "a check-in link already used by another student",
                              {"other_students": reused}))
        shared = sorted({
            u.student_id for u in self.display_uses
            if u.device_hash == device_hash and u.student_id != student_id
            and abs(u.at - scanned_at) <= SHARED_DEVICE_WINDOW
        })
        if shared:
            flags.append(Flag("shared_device", student_id,
                              f"the same phone checked in {', '.join(shared)} within a minute",
                              {"other_students": shared}))
        decision = self._judge_student(student_id, scanned_at, None)
        if isinstance(decision, Accepted):
            if client is not None:
                flags += self.network_flags(student_id, client, code_window)
            return Accepted(decision.student_id, decision.status, decision.at, None, tuple(flags), decision.replaces)
        # A refused attempt from a shared phone is a signal too (never silently dropped).
        return Rejected(decision.reason, decision.detail, tuple(flags))

    def network_flags(self, student_id: str, client: ClientNetwork, code_window: int | None) -> list[Flag]:
        """The network signals of ``student_id``'s accepted display check-in from ``client``.

        - ``outside_network``: outside the room's (or campus's) allowed ranges;
        - ``many_networks``: with this check-in, the check-ins of ``code_window``
          come from :data:`~hub.domain.checkin_network.MANY_NETWORKS` or more distinct
          networks (a forwarded photo of the display). This check-in is flagged, and,
          the moment the count reaches the threshold, every earlier check-in of that
          window too (each student once). Check-ins inside a configured restriction are
          never flagged ``many_networks``: the restriction already vouches for them.
        The flags of earlier check-ins name their own students.
        """
        flags: list[Flag] = []
        if client.inside is False:
            where = "the room's" if client.scope == "room" else "the campus's"
            source = f"network {client.network}" if client.network else "an unknown address"
            flags.append(Flag("outside_network", student_id,
                              f"checked in from {source}, outside {where} allowed networks",
                              {"network": client.network, "restriction": client.scope}))
        if code_window is None or client.network is None:
            return flags
        same_window = [u for u in self.display_uses if u.code_window == code_window and u.student_id != student_id]
        before = networks_reached(u.network for u in same_window)
        reached = before | {client.network}
        if len(reached) < MANY_NETWORKS:
            return flags
        detail = f"the code on the display was used from {len(reached)} different networks within seconds"
        if client.inside is not True:
            flags.append(Flag("many_networks", student_id, detail,
                              {"code_window": code_window, "network": client.network,
                               "network_count": len(reached)}))
        if len(before) < MANY_NETWORKS:  # the threshold is crossed now: the earlier ones join
            earlier = {u.student_id: u for u in same_window if u.inside is not True}
            flags += [Flag("many_networks", other, detail,
                           {"code_window": code_window, "network": use.network, "network_count": len(reached)})
                      for other, use in sorted(earlier.items())]
        return flags

    def _judge_student(self, student_id: str, at: datetime, token: CheckinToken | None) -> Decision:
        existing = self.records.get(student_id)
        replaces = None
        if existing is not None:
            if existing.source != AUTO_ABSENT_SOURCE:
                return Rejected("duplicate_checkin", f"already {existing.status}")
            replaces = existing.status  # a late-arriving check-in overturns the automatic absent
        refusal = self.window.refusal(at)
        if refusal is not None:
            return refusal
        return Accepted(student_id, self.window.status_at(at), at, token.window if token else None, (), replaces)

    def judge_marks(self, marks: Sequence[tuple[str, str]]) -> list[MarkChange]:
        """:func:`judge_marks` against this session's roster and records."""
        return judge_marks(self.roster, self.records, marks)

    def unmarked(self) -> list[str]:
        """Roster students without any record, in id order."""
        return sorted(s for s in self.roster if s not in self.records)

    def absentees_at_close(self) -> list[str]:
        """Who :meth:`close` marks absent: everyone on the roster without a record."""
        return self.unmarked()

    # --- recording -----------------------------------------------------------------

    def apply(self, decision: Accepted, source: str = "qr") -> None:
        """Record an accepted check-in so later scans see it."""
        self.records[decision.student_id] = Mark(decision.status, source)
        if decision.token_window is not None:
            self.used_tokens.add((decision.student_id, decision.token_window))

    def apply_display(self, use: DisplayUse) -> None:
        self.display_uses.append(use)

    def apply_marks(self, changes: Sequence[MarkChange], source: str) -> None:
        for change in changes:
            self.records[change.student_id] = Mark(change.status, source)

    def close(self) -> list[str]:
        """Mark every unrecorded student absent (source ``auto_absent``); return who."""
        absent = self.absentees_at_close()
        for student in absent:
            self.records[student] = Mark("absent", AUTO_ABSENT_SOURCE)
        self.closed = True
        return absent

    def note_token_use(self, student_id: str, window: int) -> None:
        """Remember a token seen in a rejected scan too, so its reuse counts as a replay."""
        self.used_tokens.add((student_id, window))
