"""Terminal rosters: what each terminal must be told so its PIN/page → student map follows the hub. Pure.

A *terminal* is a roster-capable device (a fingerprint module, or an edge
agent that serves ZKTeco terminals over ADMS). The hub records what it has
queued for each terminal (``hub/db/terminal_roster.py``); :func:`plan_roster`
compares that with what the terminal should hold and says, per terminal,
which PINs and pages to add and remove, and which registry rows to write.
:func:`roster_sync_args` turns one terminal's change into the arguments of as
few ``roster_sync`` commands as fit the command frame (edge_agent/commands.py
``parse_roster_args``: ``pins="1001=S1;1002=S2"``, ``remove_pins``, ``pages``,
``remove_pages``, ``replace``).

Who goes where (docs/people.md, "Terminal rosters"): an active student's PIN is
on the terminals of the rooms where a course they are enrolled in still has a
session (not cancelled, ending no earlier than a day ago: punches buffered at
the edge are still judged). A page stays while the student is active and
consents to biometric enrolment (hub/domain/biometric_consent.py), since the
finger is enrolled on that terminal; deactivation, deletion or the lack of
consent removes it (a PIN does not need consent: it is no biometric).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

#: A PIN as ZKTeco terminals and the edge agent accept it (letters and digits, at most 24).
PIN_RE = re.compile(r"^[A-Za-z0-9]{1,24}$")
#: The highest fingerprint page (R30x modules and the edge agent's map).
MAX_PAGE = 65535
#: The device kinds that hold a roster.
ROSTER_KINDS = ("fingerprint", "edge_agent")
#: Bytes of ``roster_sync`` argument text per command: the command frame is capped at 8 KiB and
#: its arguments may be sealed to the device (base64 of ciphertext: about 4/3 the size).
MAX_ARGS_TEXT = 3000


def pin_problem(pin: str) -> str | None:
    """Why ``pin`` cannot be a terminal PIN, or None."""
    if not PIN_RE.match(pin):
        return "a PIN is 1 to 24 letters or digits"
    return None


@dataclass(frozen=True)
class RosterEntry:
    """One registry row: what ``device_id`` was told about ``student_id``."""

    device_id: str
    student_id: str
    pin: str | None
    page: int | None = None
    page_source: str | None = None


@dataclass(frozen=True)
class TerminalChange:
    """What one terminal must add and remove; entries sorted, so plans compare equal."""

    device_id: str
    pins: tuple[tuple[str, str], ...] = ()
    remove_pins: tuple[str, ...] = ()
    pages: tuple[tuple[int, str], ...] = ()
    remove_pages: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.pins or self.remove_pins or self.pages or self.remove_pages)


@dataclass(frozen=True)
class RosterPlan:
    """The commands' content per terminal, and the registry rows to write and delete."""

    changes: tuple[TerminalChange, ...]
    upserts: tuple[RosterEntry, ...] = ()
    deletes: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.changes


@dataclass
class _Delta:
    pins: dict[str, str] = field(default_factory=dict)
    remove_pins: set[str] = field(default_factory=set)
    pages: dict[int, str] = field(default_factory=dict)
    remove_pages: set[int] = field(default_factory=set)


def plan_roster(desired: Mapping[tuple[str, str], str], current: Iterable[RosterEntry],
                page_holders: Iterable[str]) -> RosterPlan:
    """Bring ``current`` (registry rows in scope) to ``desired`` ((device, student) → PIN).

    ``page_holders``: the students in scope who may hold a fingerprint page,
    active with an active biometric consent
    (``hub.domain.biometric_consent.may_hold_page``); the pages of anyone else
    are removed. A row with a page stays (without its PIN) while its student
    may hold it, even where the PIN is no longer wanted.
    """
    active = set(page_holders)
    deltas: dict[str, _Delta] = {}
    upserts: list[RosterEntry] = []
    deletes: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for row in current:
        key = (row.device_id, row.student_id)
        seen.add(key)
        want_pin = desired.get(key)
        keep_page = row.page if row.student_id in active else None
        delta = deltas.setdefault(row.device_id, _Delta())
        if row.pin != want_pin:
            if row.pin is not None:
                delta.remove_pins.add(row.pin)
            if want_pin is not None:
                delta.pins[want_pin] = row.student_id
        if row.page is not None and keep_page is None:
            delta.remove_pages.add(row.page)
        if want_pin is None and keep_page is None:
            deletes.append(key)
        elif want_pin != row.pin or keep_page != row.page:
            upserts.append(RosterEntry(row.device_id, row.student_id, want_pin, keep_page,
                                       row.page_source if keep_page is not None else None))
    for (device_id, student_id), pin in desired.items():
        if (device_id, student_id) not in seen:
            deltas.setdefault(device_id, _Delta()).pins[pin] = student_id
            upserts.append(RosterEntry(device_id, student_id, pin))
    changes = []
    for device_id in sorted(deltas):
        delta = deltas[device_id]
        # A PIN moving from one student to another on the same terminal is an update, not a removal.
        remove_pins = delta.remove_pins - set(delta.pins)
        change = TerminalChange(device_id, tuple(sorted(delta.pins.items())), tuple(sorted(remove_pins)),
                                tuple(sorted(delta.pages.items())), tuple(sorted(delta.remove_pages)))
        if not change.empty:
            changes.append(change)
    return RosterPlan(tuple(changes), tuple(upserts), tuple(sorted(deletes)))


def full_roster(device_id: str, entries: Iterable[RosterEntry]) -> TerminalChange:
    """Everything ``device_id`` should hold, for a ``replace`` resync."""
    pins: dict[str, str] = {}
    pages: dict[int, str] = {}
    for row in entries:
        if row.pin is not None:
            pins[row.pin] = row.student_id
        if row.page is not None:
            pages[row.page] = row.student_id
    return TerminalChange(device_id, tuple(sorted(pins.items())), (), tuple(sorted(pages.items())), ())


def roster_sync_args(change: TerminalChange, *, replace: bool = False,
                     max_text: int = MAX_ARGS_TEXT) -> list[dict[str, str | bool]]:
    """The ``roster_sync`` arguments that carry ``change``, each at most ``max_text`` bytes of entries.

    Removals come first (a PIN freed by one student may be given to another).
    With ``replace`` only the first command replaces the terminal's map and
    the rest add to it, so a roster of any size arrives whole. A replace of
    an empty roster is one command that empties the map.
    """
    entries: list[tuple[str, str]] = (
        [("remove_pins", pin) for pin in change.remove_pins]
        + [("remove_pages", str(page)) for page in change.remove_pages]
        + [("pins", f"{pin}={student}") for pin, student in change.pins]
        + [("pages", f"{page}={student}") for page, student in change.pages]
    )
    commands: list[dict[str, list[str]]] = []
    size = max_text + 1
    for name, entry in entries:
        if size + len(entry) + 1 > max_text:
            commands.append({})
            size = 0
        commands[-1].setdefault(name, []).append(entry)
        size += len(entry) + 1
    result: list[dict[str, str | bool]] = [{name: ";".join(items) for name, items in c.items()} for c in commands]
    if replace:
        if not result:
            result.append({})
        result[0]["replace"] = True
    return result


def template_delete_args(page: int) -> dict[str, int | bool]:
    """The ``template_sync`` arguments that delete the template on ``page`` (edge_agent/commands.py)."""
    return {"page": page, "delete": True}


def change_commands(change: TerminalChange, *, replace: bool = False
                    ) -> list[tuple[str, dict[str, str | bool | int]]]:
    """Every command (name, arguments) that carries ``change`` to its terminal, in order.

    A removed page is a finger that must not stay enrolled: its template is
    deleted first (``template_sync`` ``delete``, one per page; an agent with
    no fingerprint module answers ``unsupported``: it holds none), then the
    map follows (:func:`roster_sync_args`).
    """
    commands: list[tuple[str, dict[str, str | bool | int]]] = [
        ("template_sync", dict(template_delete_args(page))) for page in change.remove_pages]
    commands += [("roster_sync", dict(args)) for args in roster_sync_args(change, replace=replace)]
    return commands
