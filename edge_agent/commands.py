"""Hub → device commands on the edge side: verify, check expiry, execute once, acknowledge.

A downlink message goes through, in order:

1. :func:`schemas.decode_command` (size, shape): undecodable → counted (``invalid``), dropped;
2. addressed to this agent's device id, else counted (``misaddressed``), dropped;
3. :func:`schemas.verify`: HMAC with the device key for ``hmac-sha256`` devices,
   the configured ``hub_public_key`` for ``ed25519`` ones. A forged or
   unverifiable frame is counted (``forged``) and ignored: no answer at all, so a
   forger learns nothing;
4. already executed (same command id, e.g. a QoS 1 redelivery) → not run again;
5. expired (device clock + measured offset past ``expires_ts``) → answered ``expired``;
6. sealed arguments (``command.sealed``, schemas/_sealed.py) opened with this
   device's own key and merged into ``args``. One that does not open (sealed
   to another device or command, tampered, or with a key since rotated) is
   answered ``failed`` with the reason and never run; the plaintext lives
   only in memory, for the call (enrolment.py seals what it keeps);
7. executed; answered ``ok`` / ``failed`` (detail says why) / ``unsupported``.

Answers are :class:`schemas.CommandAckEvent` events submitted to the outbox,
so they survive a disconnect like any event. Argument formats are in
docs/drivers.md ("Commands").
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Protocol

from schemas import (
    Command,
    CommandStatus,
    SealError,
    WireError,
    decode_command,
    open_args,
    sealed_arg_names,
    verify,
)

log = logging.getLogger(__name__)

_STUDENT_RE = re.compile(r"^[^\x00=;\n]{1,64}$")
_PIN_RE = re.compile(r"^[A-Za-z0-9_-]{1,24}$")
MAX_TEMPLATE = 4096


class CommandFailed(Exception):
    """The command was understood but could not be carried out (answered ``failed``)."""


class Unsupported(Exception):
    """This agent cannot do that (answered ``unsupported``)."""


@dataclass(frozen=True)
class Outcome:
    status: CommandStatus
    detail: str


class CommandHost(Protocol):
    """What the executor needs from the agent."""

    @property
    def device_id(self) -> str: ...

    def verify_key(self, alg: str) -> bytes | None: ...
    def own_key(self) -> tuple[str, bytes]:
        """This device's signing algorithm and key: what opens arguments sealed to it."""
        ...
    def now_ms(self) -> int: ...
    async def submit_ack(self, command_id: bytes, status: CommandStatus, detail: str) -> None: ...
    async def apply_config(self, overrides: dict[str, Any]) -> str: ...
    async def time_sync(self, hub_ts: int, local_ms: int) -> str: ...
    async def reboot(self) -> str: ...
    async def roster_sync(self, pins: dict[str, str], pages: dict[int, str], remove_pins: tuple[str, ...],
                          remove_pages: tuple[int, ...], replace: bool, terminals: bool) -> str: ...
    async def template_sync(self, page: int, student: str | None, template: bytes | None,
                            device: str | None) -> str: ...
    def done_command(self, command_id: bytes) -> Outcome | None: ...
    async def record_command(self, command_id: bytes, name: str, outcome: Outcome) -> None: ...


class CommandExecutor:
    """Counters are plain ints read by stats/heartbeats. Use from the event loop only."""

    def __init__(self, host: CommandHost) -> None:
        self.host = host
        self.executed = 0
        self.duplicates = 0
        self.invalid = 0
        self.misaddressed = 0
        self.forged = 0
        self.expired = 0
        #: Sealed arguments that would not open (answered ``failed``).
        self.unsealable = 0

    async def handle(self, payload: bytes) -> Outcome | None:
        """Process one downlink payload; returns the answer sent (``None``: ignored)."""
        local_ms = int(time.time() * 1000)
        try:
            frame, command = decode_command(payload)
        except WireError as exc:
            self.invalid += 1
            log.warning("%s: undecodable command dropped: %s", self.host.device_id, exc)
            return None
        if command.device != self.host.device_id:
            self.misaddressed += 1
            log.warning("%s: command for %r dropped", self.host.device_id, command.device)
            return None
        key = self.host.verify_key(frame.alg)
        try:
            if key is None:
                raise WireError("bad_signature", f"no key to verify {frame.alg} commands")
            verify(frame, key)
        except (WireError, ValueError) as exc:
            self.forged += 1
            log.warning("%s: command %s with a bad signature ignored: %s",
                        self.host.device_id, command.id.hex(), exc)
            return None
        if self.host.done_command(command.id) is not None:
            self.duplicates += 1
            return None  # its answer is already in the outbox
        now = self.host.now_ms()
        if now > command.expires_ts:
            self.expired += 1
            outcome = Outcome("expired", f"device clock {now} ms > expires_ts {command.expires_ts} ms")
        else:
            try:
                args = self._open(command)
            except SealError as exc:
                self.unsealable += 1
                outcome = Outcome("failed", f"sealed arguments: {exc}")
            else:
                outcome = await self._execute(command, args, local_ms)
                self.executed += 1
        await self.host.submit_ack(command.id, outcome.status, outcome.detail[:512])
        await self.host.record_command(command.id, command.name, outcome)
        log.info("%s: command %s %s → %s %s", self.host.device_id, command.name, command.id.hex(),
                 outcome.status, outcome.detail)
        return outcome

    def _open(self, command: Command) -> dict[str, Any]:
        """``args`` with the sealed ones opened and merged in; raises :class:`SealError`.

        Arguments that must travel sealed (``schemas.sealed_arg_names``: rosters,
        templates, secrets) are refused in clear: the hub always seals them, so
        clear ones mean a hub or tool that leaked them to every subscriber.
        """
        in_clear = sealed_arg_names(command.name, command.args)
        if in_clear:
            raise SealError(f"argument {in_clear[0]!r} carries personal data or a secret and must be sealed")
        if command.sealed is None:
            return dict(command.args)
        alg, key = self.host.own_key()
        opened = open_args(command.sealed, device_id=self.host.device_id, command_id=command.id,
                           name=command.name, alg=alg, device_key=key)
        clash = sorted(set(opened) & set(command.args))
        if clash:
            raise SealError(f"argument {clash[0]!r} is both sealed and in clear")
        return {**command.args, **opened}

    async def _execute(self, command: Command, args: Mapping[str, Any], local_ms: int) -> Outcome:
        try:
            if command.name == "config_push":
                detail = await self.host.apply_config(dict(args))
            elif command.name == "time_sync":
                _only(args, set())
                detail = await self.host.time_sync(command.hub_ts, local_ms)
            elif command.name == "reboot":
                _only(args, set())
                detail = await self.host.reboot()
            elif command.name == "roster_sync":
                detail = await self.host.roster_sync(**parse_roster_args(args))
            elif command.name == "template_sync":
                detail = await self.host.template_sync(**parse_template_args(args))
            else:  # the schema only lets known names through; a newer hub may add some
                raise Unsupported(f"command {command.name!r}")
        except Unsupported as exc:
            return Outcome("unsupported", str(exc))
        except (CommandFailed, ValueError) as exc:
            return Outcome("failed", str(exc))
        except Exception as exc:  # a bug must still be answered, or the hub waits for a timeout
            log.exception("%s: command %s crashed", self.host.device_id, command.name)
            return Outcome("failed", f"internal error: {type(exc).__name__}")
        return Outcome("ok", detail)


def _only(args: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(args) - allowed)
    if extra:
        raise CommandFailed(f"unknown argument {extra[0]!r}")


def _entries(text: Any, name: str) -> list[str]:
    if not isinstance(text, str):
        raise CommandFailed(f"{name}: expected a string of entries separated by ';'")
    return [e.strip() for e in re.split(r"[;\n]", text) if e.strip()]


def _page(text: str, name: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise CommandFailed(f"{name}: page {text!r} is not 0..65535")
    return int(text)


def parse_roster_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """``pins="1001=S1;1002=S2"``, ``pages="5=S1"``, ``remove_pins="1003"``, ``remove_pages="7"``,
    ``replace=false``, ``terminals=true``."""
    _only(args, {"pins", "pages", "remove_pins", "remove_pages", "replace", "terminals"})
    pins: dict[str, str] = {}
    pages: dict[int, str] = {}
    for name, target in (("pins", pins), ("pages", pages)):
        for entry in _entries(args.get(name, ""), name):
            key, sep, student = entry.partition("=")
            key, student = key.strip(), student.strip()
            if not sep or not _STUDENT_RE.match(student):
                raise CommandFailed(f"{name}: entry {entry[:40]!r} is not <id>=<student id>")
            if name == "pins":
                if not _PIN_RE.match(key):
                    raise CommandFailed(f"pins: PIN {key!r} is not 1..24 letters/digits")
                target[key] = student  # type: ignore[index]
            else:
                target[_page(key, name)] = student  # type: ignore[index]
    remove_pins = tuple(_entries(args.get("remove_pins", ""), "remove_pins"))
    for pin in remove_pins:
        if not _PIN_RE.match(pin):
            raise CommandFailed(f"remove_pins: PIN {pin!r} is not 1..24 letters/digits")
    remove_pages = tuple(_page(p, "remove_pages") for p in _entries(args.get("remove_pages", ""), "remove_pages"))
    flags = {}
    for flag, default in (("replace", False), ("terminals", True)):
        value = args.get(flag, default)
        if not isinstance(value, bool):
            raise CommandFailed(f"{flag}: expected true or false")
        flags[flag] = value
    if not (pins or pages or remove_pins or remove_pages or flags["replace"]):
        raise CommandFailed("nothing to do: give pins, pages, remove_pins or remove_pages")
    return dict(pins=pins, pages=pages, remove_pins=remove_pins, remove_pages=remove_pages, **flags)


def parse_template_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """``page``, then ``student`` + ``template`` (base64) to enrol, or ``delete=true``; optional ``device``."""
    _only(args, {"page", "student", "template", "delete", "device"})
    page = args.get("page")
    if not isinstance(page, int) or isinstance(page, bool) or not 0 <= page <= 65535:
        raise CommandFailed("page: expected an integer 0..65535")
    device = args.get("device")
    if device is not None and not isinstance(device, str):
        raise CommandFailed("device: expected a device name")
    if args.get("delete") is True:
        if "template" in args or "student" in args:
            raise CommandFailed("delete: give only page (and device)")
        return dict(page=page, student=None, template=None, device=device)
    student = args.get("student")
    if not isinstance(student, str) or not _STUDENT_RE.match(student):
        raise CommandFailed("student: expected a student id")
    text = args.get("template")
    if not isinstance(text, str):
        raise CommandFailed("template: expected base64 text")
    try:
        template = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CommandFailed("template: not valid base64") from None
    if not 0 < len(template) <= MAX_TEMPLATE:
        raise CommandFailed(f"template: 1..{MAX_TEMPLATE} bytes, got {len(template)}")
    return dict(page=page, student=student, template=template, device=device)


async def run_commands(queue: "asyncio.Queue[bytes]", executor: CommandExecutor,
                       on_error: Callable[[], Awaitable[None]] | None = None) -> None:
    """Execute queued downlink payloads one at a time, in arrival order, until cancelled."""
    while True:
        payload = await queue.get()
        try:
            await executor.handle(payload)
        except asyncio.CancelledError:
            raise
        except Exception:
            # e.g. the outbox is full: the ack could not be stored; the hub times the command out.
            log.exception("%s: command handling failed", executor.host.device_id)
            if on_error is not None:
                await on_error()
