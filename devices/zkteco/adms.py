"""ZKTeco push protocol ("ADMS" / iclock), pure parsing and formatting. No I/O.

The terminal always opens the HTTP connection (it sits behind NAT):

=================================================  ==========================================
terminal → server                                   server → terminal
=================================================  ==========================================
``GET /iclock/cdata?SN=…&options=all``              options (:func:`handshake_response`)
``POST /iclock/cdata?SN=…&table=ATTLOG&Stamp=…``    ``OK`` once stored (:func:`parse_attlog`)
``GET /iclock/getrequest?SN=…``                     ``OK`` or ``C:<id>:<cmd>`` lines
``POST /iclock/devicecmd?SN=…``                     ``OK`` (:func:`parse_devicecmd`)
=================================================  ==========================================

ATTLOG lines are tab-separated ``PIN, YYYY-MM-DD HH:MM:SS, status,
verify-mode, workcode[, reserved…]`` in the terminal's *local* time; the
``TimeZone`` option we send (hours from UTC) is how that time is converted.
The stamps we send (``ATTLOGStamp``) tell the terminal what the server
already has, so it re-sends only newer records after an outage.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping
from urllib.parse import parse_qs

#: Verify modes a terminal reports (subset; others are kept as numbers).
VERIFY_MODES = {0: "password", 1: "fingerprint", 2: "card", 9: "card", 15: "face", 25: "palm"}
_SN_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_PIN_RE = re.compile(r"^[A-Za-z0-9_-]{1,24}$")
_CMD_SAFE_RE = re.compile(r"^[^\r\n]*$")


class AdmsError(ValueError):
    """A request that does not follow the protocol (the server answers 400)."""


@dataclass(frozen=True)
class AttlogRecord:
    pin: str
    local_time: datetime          # naive: the terminal's wall clock
    status: int                   # 0 check-in, 1 check-out, 2 break-out, …
    verify_mode: int              # see VERIFY_MODES
    workcode: str

    def utc(self, tz_hours: float) -> datetime:
        """The punch time in UTC, given the terminal's ``TimeZone`` (hours east of UTC)."""
        return local_to_utc(self.local_time, tz_hours)

    @property
    def key(self) -> str:
        """Identity of a punch on one terminal (re-sent records repeat it)."""
        return f"{self.pin}|{self.local_time:%Y-%m-%d %H:%M:%S}"


@dataclass(frozen=True)
class DeviceCmdResult:
    """A terminal's report on one command: ``return_code`` 0 = success, negative = error."""

    command_id: int
    return_code: int
    cmd: str


def serial_number(query: Mapping[str, str]) -> str:
    sn = query.get("SN", "")
    if not _SN_RE.match(sn):
        raise AdmsError("SN: missing or not a terminal serial number")
    return sn


def parse_query(query_string: str) -> dict[str, str]:
    """``SN=…&table=…`` → dict (first value of each key; blank values kept)."""
    return {k: v[0] for k, v in parse_qs(query_string, keep_blank_values=True).items()}


def check_timezone(tz_hours: float) -> float:
    if not -12 <= tz_hours <= 14 or (tz_hours * 4) != int(tz_hours * 4):
        raise ValueError(f"TimeZone {tz_hours!r}: hours from UTC, -12..14 in quarter hours")
    return tz_hours


def local_to_utc(local: datetime, tz_hours: float) -> datetime:
    return (local - timedelta(hours=tz_hours)).replace(tzinfo=timezone.utc)


def _fmt_tz(tz_hours: float) -> str:
    return str(int(tz_hours)) if tz_hours == int(tz_hours) else str(tz_hours)


def handshake_response(
    sn: str,
    *,
    attlog_stamp: str | None,
    tz_hours: float,
    delay_s: int = 10,
    error_delay_s: int = 30,
    realtime: bool = True,
) -> str:
    """The options answered to ``GET /iclock/cdata?SN=…&options=all``.

    Only attendance logs are requested (``TransFlag``): user, fingerprint and
    photo uploads are switched off, so templates stay on the terminal.
    ``ATTLOGStamp=None`` asks for everything the terminal holds.
    """
    lines = [
        f"GET OPTION FROM: {sn}",
        f"ATTLOGStamp={attlog_stamp or 'None'}",
        "OPERLOGStamp=9999",
        "ATTPHOTOStamp=9999",
        f"ErrorDelay={error_delay_s}",
        f"Delay={delay_s}",
        "TransTimes=00:00;14:05",
        "TransInterval=1",
        "TransFlag=TransData AttLog",
        f"TimeZone={_fmt_tz(check_timezone(tz_hours))}",
        f"Realtime={1 if realtime else 0}",
        "Encrypt=None",
    ]
    return "\n".join(lines) + "\n"


def parse_attlog(body: str) -> tuple[list[AttlogRecord], list[str]]:
    """Records of an ATTLOG upload and the lines that could not be parsed (kept for logs)."""
    records: list[AttlogRecord] = []
    bad: list[str] = []
    for line in body.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            pin = fields[0].strip()
            if not _PIN_RE.match(pin):
                raise ValueError("bad PIN")
            local = datetime.strptime(fields[1].strip(), "%Y-%m-%d %H:%M:%S")
            status = int(fields[2]) if len(fields) > 2 and fields[2].strip() else 0
            verify = int(fields[3]) if len(fields) > 3 and fields[3].strip() else 0
            workcode = fields[4].strip() if len(fields) > 4 else ""
        except (IndexError, ValueError):
            bad.append(line[:200])
            continue
        records.append(AttlogRecord(pin, local, status, verify, workcode[:32]))
    return records, bad


def format_commands(commands: Iterable[tuple[int, str]]) -> str:
    """The answer to ``GET /iclock/getrequest``: ``C:<id>:<command>`` lines, or ``OK`` when none."""
    lines = []
    for command_id, text in commands:
        if not _CMD_SAFE_RE.match(text):
            raise ValueError("a command is one line")
        lines.append(f"C:{command_id}:{text}")
    return "\n".join(lines) + "\n" if lines else "OK"


def user_info_command(pin: str, *, name: str = "", privilege: int = 0, card: str = "") -> str:
    """Create or update a user on the terminal (no password, no name unless given)."""
    if not _PIN_RE.match(pin):
        raise ValueError(f"PIN {pin!r}")
    for text in (name, card):
        if "\t" in text or not _CMD_SAFE_RE.match(text):
            raise ValueError("name/card must not contain tabs or newlines")
    return f"DATA UPDATE USERINFO PIN={pin}\tName={name}\tPri={privilege}\tPasswd=\tCard={card}\tGrp=1\tTZ="


def delete_user_command(pin: str) -> str:
    if not _PIN_RE.match(pin):
        raise ValueError(f"PIN {pin!r}")
    return f"DATA DELETE USERINFO PIN={pin}"


def parse_devicecmd(body: str) -> list[DeviceCmdResult]:
    """``ID=1&Return=0&CMD=DATA`` lines → results. Raises :class:`AdmsError` for a malformed line."""
    results = []
    for line in body.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        fields = {k: v[0] for k, v in parse_qs(line.strip(), keep_blank_values=True).items()}
        try:
            results.append(DeviceCmdResult(int(fields["ID"]), int(fields["Return"]), fields.get("CMD", "")))
        except (KeyError, ValueError):
            raise AdmsError(f"devicecmd line {line[:80]!r}: expected ID=<n>&Return=<n>&CMD=<name>") from None
    return results
