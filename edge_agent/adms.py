"""The ZKTeco ADMS ("iclock") endpoint the agent serves to commercial terminals.

Terminals are configured with this agent's address as their "cloud server"
(see docs/drivers.md). For every ATTLOG punch:

1. dedup: a punch (terminal SN, PIN, local time) already taken is skipped,
   so punches a terminal re-sends after an outage are not duplicated;
2. the PIN is mapped to a student through the enrolment map (``roster_sync``);
   a PIN not enrolled yet is parked, and replayed when a roster names it;
3. the terminal's local time becomes UTC through the ``TimeZone`` we sent it;
4. it is stored in the outbox as a ``biometric_match`` (score 1.0: the
   terminal matched), with an event id derived from (agent, SN, PIN, time),
   so even a punch taken twice (crash between outbox and dedup table) is one
   event at the hub, which deduplicates by event id.

The terminal gets ``OK`` only after all that is on disk; an error makes it
keep the punches and send them again.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Awaitable, Callable, Mapping

from devices.zkteco.adms import (
    AdmsError,
    format_commands,
    handshake_response,
    parse_attlog,
    parse_devicecmd,
    parse_query,
    serial_number,
)

from .enrolment import Enrolment
from .http_server import HttpServer, Request, Response
from .state import AgentState, Unmapped

log = logging.getLogger(__name__)

#: uuid5 namespace of punch event ids (fixed forever: changing it would break dedup).
PUNCH_NAMESPACE = uuid.UUID("6f1c1c0e-3c52-4c3e-9f43-2d7f3b0a1d11")

#: ``submit(student_id, score, unix_time, event_id)``: store one match in the outbox.
SubmitMatch = Callable[[str, float, float, bytes], Awaitable[Any]]


def punch_event_id(device_id: str, sn: str, key: str) -> bytes:
    return uuid.uuid5(PUNCH_NAMESPACE, f"{device_id}|{sn}|{key}").bytes


class AdmsEndpoint:
    """One listening address for any number of terminals (``serial_numbers`` lists the
    allowed ones; empty = any). ``faults`` counts refused and malformed requests.

    Concurrency: :meth:`run` serves until cancelled. Handlers run on the event
    loop; SQLite work goes to a thread.
    """

    def __init__(self, name: str, options: Mapping[str, Any], *, device_id: str, state: AgentState,
                 enrolment: Enrolment, submit: SubmitMatch) -> None:
        self.name = name
        self.device_id = device_id
        self.tz_hours = float(options["timezone"])
        self.delay_s = int(options["delay_s"])
        self.allowed = frozenset(options["serial_numbers"])
        self.state = state
        self.enrolment = enrolment
        self._submit = submit
        self.server = HttpServer(self.handle, options["listen"], int(options["listen_port"]))
        self.punches = 0
        self.duplicates = 0
        self.parked = 0
        self.bad_lines = 0
        self.refused = 0

    @property
    def faults(self) -> int:
        return self.server.bad_requests + self.refused + self.bad_lines

    async def run(self) -> None:
        await self.server.serve()

    async def handle(self, req: Request) -> Response:
        query = parse_query(req.query)
        try:
            sn = serial_number(query)
        except AdmsError as exc:
            self.refused += 1
            return Response(400, f"{exc}\n")
        if self.allowed and sn not in self.allowed:
            self.refused += 1
            log.warning("%s: refused terminal %s (not in serial_numbers)", self.name, sn)
            return Response(403, "unknown terminal\n")
        route = (req.method, req.path.rstrip("/"))
        if route == ("GET", "/iclock/cdata"):
            await asyncio.to_thread(self.state.note_terminal, sn)
            if "options" not in query:
                return Response()
            stamp = await asyncio.to_thread(self.state.attlog_stamp, sn)
            return Response(body=handshake_response(sn, attlog_stamp=stamp, tz_hours=self.tz_hours,
                                                    delay_s=self.delay_s))
        if route == ("POST", "/iclock/cdata"):
            if query.get("table") != "ATTLOG":
                return Response()  # OPERLOG and the like: acknowledged, not needed
            return await self._attlog(sn, req.body.decode("utf-8", "replace"), query.get("Stamp"))
        if route == ("GET", "/iclock/getrequest"):
            commands = await asyncio.to_thread(self.state.take_terminal_commands, sn)
            return Response(body=format_commands(commands))
        if route == ("POST", "/iclock/devicecmd"):
            try:
                results = parse_devicecmd(req.body.decode("utf-8", "replace"))
            except AdmsError as exc:
                self.refused += 1
                return Response(400, f"{exc}\n")
            await asyncio.to_thread(self.state.finish_terminal_commands, sn,
                                    [(r.command_id, r.return_code) for r in results])
            return Response()
        if req.path.startswith("/iclock/"):
            return Response(405 if req.method not in ("GET", "POST") else 404, "not supported\n")
        return Response(404, "not found\n")

    async def _attlog(self, sn: str, body: str, stamp: str | None) -> Response:
        records, bad = parse_attlog(body)
        if bad:
            self.bad_lines += len(bad)
            log.warning("%s: %s sent %d unreadable ATTLOG lines, e.g. %r", self.name, sn, len(bad), bad[0])
        fresh = await asyncio.to_thread(self.state.new_punch_keys, sn, [r.key for r in records])
        taken: list[str] = []
        parked: list[Unmapped] = []
        for record in records:
            if record.key not in fresh:
                self.duplicates += 1
                continue
            fresh.discard(record.key)  # the same punch twice in one upload
            at = record.utc(self.tz_hours).timestamp()
            student = self.enrolment.student_for_pin(record.pin)
            if student is None:
                parked.append(Unmapped(sn, record.key, record.pin, int(at * 1000)))
            else:
                await self._submit(student, 1.0, at, punch_event_id(self.device_id, sn, record.key))
                self.punches += 1
            taken.append(record.key)
        self.parked += len(parked)
        await asyncio.to_thread(self.state.record_punches, sn, taken, stamp, parked)
        return Response()


async def replay_parked(state: AgentState, enrolment: Enrolment, device_id: str, submit: SubmitMatch,
                        pins: list[str]) -> int:
    """Submit parked punches whose PIN is now enrolled (after a roster_sync); returns how many."""
    waiting = await asyncio.to_thread(state.unmapped_punches, pins)
    done: list[Unmapped] = []
    for item in waiting:
        student = enrolment.student_for_pin(item.pin)
        if student is None:
            continue
        await submit(student, 1.0, item.ts_ms / 1000, punch_event_id(device_id, item.sn, item.key))
        done.append(item)
    await asyncio.to_thread(state.forget_unmapped, done)
    return len(done)
