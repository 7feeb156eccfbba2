"""ZKTeco ADMS: the pure protocol module, and the agent's HTTP endpoint fed requests in the documented format."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

import pytest

from devices.zkteco.adms import (
    AdmsError,
    AttlogRecord,
    DeviceCmdResult,
    delete_user_command,
    format_commands,
    handshake_response,
    parse_attlog,
    parse_devicecmd,
    user_info_command,
)
from edge_agent.adms import AdmsEndpoint, punch_event_id
from edge_agent.enrolment import Enrolment
from edge_agent.state import AgentState

SN = "CKJF201260057"


def run(coro):
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(coro)


# ------------------------------------------------------------------ pure


def test_handshake_lists_the_options_and_switches_template_upload_off() -> None:
    text = handshake_response(SN, attlog_stamp=None, tz_hours=5.5, delay_s=10)
    lines = text.splitlines()
    assert lines[0] == f"GET OPTION FROM: {SN}"
    opts = dict(line.split("=", 1) for line in lines[1:])
    assert opts["ATTLOGStamp"] == "None" and opts["TimeZone"] == "5.5" and opts["Realtime"] == "1"
    assert opts["Delay"] == "10" and opts["TransFlag"] == "TransData AttLog"  # no EnrollFP / UserPic
    assert "ATTLOGStamp=9876" in handshake_response(SN, attlog_stamp="9876", tz_hours=0)
    with pytest.raises(ValueError, match="TimeZone"):
        handshake_response(SN, attlog_stamp=None, tz_hours=20)


def test_attlog_lines_parse_and_convert_to_utc() -> None:
    body = ("1001\t2024-09-02 09:05:33\t0\t1\t0\t0\t0\n"
            "1002\t2024-09-02 09:06:01\t0\t15\t\t0\t0\r\n"
            "\n"
            "not a punch line\n"
            "1003\t2024-13-45 99:00:00\t0\t1\n")
    records, bad = parse_attlog(body)
    assert records == [
        AttlogRecord("1001", datetime(2024, 9, 2, 9, 5, 33), 0, 1, "0"),
        AttlogRecord("1002", datetime(2024, 9, 2, 9, 6, 1), 0, 15, ""),
    ]
    assert len(bad) == 2
    assert records[0].utc(5.5) == datetime(2024, 9, 2, 3, 35, 33, tzinfo=timezone.utc)
    assert records[0].utc(-3) == datetime(2024, 9, 2, 12, 5, 33, tzinfo=timezone.utc)


def test_getrequest_command_lines() -> None:
    assert format_commands([]) == "OK"
    text = format_commands([(7, user_info_command("1001")), (8, delete_user_command("1002"))])
    assert text == ("C:7:DATA UPDATE USERINFO PIN=1001\tName=\tPri=0\tPasswd=\tCard=\tGrp=1\tTZ=\n"
                    "C:8:DATA DELETE USERINFO PIN=1002\n")
    with pytest.raises(ValueError):
        format_commands([(1, "REBOOT\nC:2:CLEAR DATA")])  # no smuggled second command
    with pytest.raises(ValueError):
        user_info_command("10 01")


def test_devicecmd_results() -> None:
    assert parse_devicecmd("ID=7&Return=0&CMD=DATA\nID=8&Return=-1002&CMD=DATA\n") == [
        DeviceCmdResult(7, 0, "DATA"), DeviceCmdResult(8, -1002, "DATA")]
    with pytest.raises(AdmsError):
        parse_devicecmd("Return=0&CMD=DATA")


# -------------------------------------------------------------- endpoint


class Terminal:
    """Speaks raw HTTP/1.1 to the endpoint, on one keep-alive connection, as a terminal does."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, target: str, body: str = "", extra: str = "") -> tuple[int, str]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        data = body.encode()
        head = (f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: iClock Proxy/1.09\r\n"
                f"Content-Length: {len(data)}\r\n{extra}\r\n")
        self.writer.write(head.encode() + data)
        status_line = await self.reader.readline()
        headers = {}
        while (line := await self.reader.readline()) != b"\r\n":
            k, _, v = line.decode().partition(":")
            headers[k.lower()] = v.strip()
        payload = await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("connection") == "close":
            self.writer.close()
            self.writer = None
        return int(status_line.split()[1]), payload.decode()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Harness:
    def __init__(self, tmp_path: Path, **options: object) -> None:
        self.state = AgentState(tmp_path / "state.sqlite")
        self.enrolment = Enrolment(self.state, tmp_path / "keys.json")
        self.submitted: list[tuple[str, float, float, bytes]] = []
        opts: dict[str, object] = dict(listen="127.0.0.1", listen_port=0, timezone=5.5,
                                       serial_numbers=[SN], delay_s=10)
        opts.update(options)
        self.endpoint = AdmsEndpoint("gate", opts, device_id="room-1-edge", state=self.state,
                                     enrolment=self.enrolment, submit=self._submit)

    async def _submit(self, student: str, score: float, at: float, event_id: bytes) -> None:
        self.submitted.append((student, score, at, event_id))

    async def __aenter__(self) -> Terminal:
        self.task = asyncio.create_task(self.endpoint.run())
        await asyncio.wait_for(self.endpoint.server.bound.wait(), 2)
        self.terminal = Terminal(self.endpoint.server.bound_port)
        return self.terminal

    async def __aexit__(self, *exc: object) -> None:
        self.terminal.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.state.close()


ATTLOG = ("1001\t2024-09-02 09:05:33\t0\t1\t0\t0\t0\n"
          "1002\t2024-09-02 09:06:01\t0\t1\t0\t0\t0\n"
          "9999\t2024-09-02 09:07:00\t0\t1\t0\t0\t0\n")


def test_terminal_session_handshake_punches_commands_results(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.enrolment.update_roster(pins={"1001": "s-001", "1002": "s-002"})

    async def main() -> None:
        async with h as t:
            status, body = await t.request("GET", f"/iclock/cdata?SN={SN}&options=all&pushver=2.4.1")
            assert status == 200 and body.startswith(f"GET OPTION FROM: {SN}\n")
            assert "ATTLOGStamp=None" in body and "TimeZone=5.5" in body

            assert await t.request("POST", f"/iclock/cdata?SN={SN}&table=ATTLOG&Stamp=9999",
                                   ATTLOG) == (200, "OK")
            # Two students mapped, PIN 9999 is not enrolled yet: parked, not sent.
            assert [(s, score) for s, score, _, _ in h.submitted] == [("s-001", 1.0), ("s-002", 1.0)]
            assert h.submitted[0][2] == datetime(2024, 9, 2, 3, 35, 33, tzinfo=timezone.utc).timestamp()
            assert h.submitted[0][3] == punch_event_id("room-1-edge", SN, "1001|2024-09-02 09:05:33")
            assert h.state.count_unmapped() == 1

            # The terminal lost our OK and sends the same records again (plus one new).
            again = ATTLOG + "1001\t2024-09-02 10:00:00\t1\t1\t0\t0\t0\n"
            assert await t.request("POST", f"/iclock/cdata?SN={SN}&table=ATTLOG&Stamp=10000",
                                   again) == (200, "OK")
            assert len(h.submitted) == 3 and h.endpoint.duplicates == 3

            # Next handshake tells the terminal what we already have.
            _, body = await t.request("GET", f"/iclock/cdata?SN={SN}&options=all")
            assert "ATTLOGStamp=10000" in body

            # Commands queued for the terminal go out once, then results come back.
            h.state.queue_terminal_commands([SN], [user_info_command("1003")])
            status, body = await t.request("GET", f"/iclock/getrequest?SN={SN}")
            assert status == 200 and body.startswith("C:1:DATA UPDATE USERINFO PIN=1003\t")
            assert await t.request("GET", f"/iclock/getrequest?SN={SN}") == (200, "OK")
            assert await t.request("POST", f"/iclock/devicecmd?SN={SN}", "ID=1&Return=0&CMD=DATA\n") == (200, "OK")
            assert h.state.terminal_commands(SN)[0][2:] == ("ok", 0)

            # OPERLOG uploads are acknowledged and ignored.
            assert await t.request("POST", f"/iclock/cdata?SN={SN}&table=OPERLOG&Stamp=1", "OPLOG 4\t0\n") == (200, "OK")

    run(main())


def test_unknown_terminals_and_malformed_requests_are_refused(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def main() -> None:
        async with h as t:
            assert (await t.request("GET", "/iclock/cdata?SN=INTRUDER1&options=all"))[0] == 403
            assert (await t.request("GET", "/iclock/cdata?options=all"))[0] == 400
            assert (await t.request("POST", f"/iclock/devicecmd?SN={SN}", "garbage"))[0] == 400
            assert (await t.request("GET", f"/other?SN={SN}"))[0] == 404
            status, _ = await t.request("POST", f"/iclock/cdata?SN={SN}&table=ATTLOG", "x",
                                        extra="Transfer-Encoding: chunked\r\n")
            assert status == 411
            # Raw garbage instead of HTTP: a 400 and the connection is closed.
            r, w = await asyncio.open_connection("127.0.0.1", h.endpoint.server.bound_port)
            w.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
            assert (await r.read(100)).startswith(b"HTTP/1.1 400")
            w.close()
            # Still serving.
            assert (await t.request("GET", f"/iclock/cdata?SN={SN}&options=all"))[0] == 200
        assert h.endpoint.faults >= 5 and h.submitted == []

    run(main())


def test_oversized_bodies_are_refused(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    async def main() -> None:
        async with h as t:
            r, w = await asyncio.open_connection("127.0.0.1", h.endpoint.server.bound_port)
            w.write(f"POST /iclock/cdata?SN={SN}&table=ATTLOG HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n".encode())
            assert (await r.read(100)).startswith(b"HTTP/1.1 413")
            w.close()
            t.close()

    run(main())
