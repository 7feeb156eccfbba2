"""A deliberately small HTTP/1.1 server on ``asyncio.start_server`` (for the ADMS endpoint).

Why not aiohttp: terminals send a handful of plain requests (request line,
a few headers, a ``Content-Length`` body), and this agent must stay small
on a classroom PC; docs/dependencies.md has the reasoning. What it accepts:

* request line ``METHOD target HTTP/1.x``; headers up to 8 KiB in total;
* a body only with ``Content-Length`` (at most ``max_body``; chunked → 411);
* keep-alive (HTTP/1.1 default, ``Connection: close`` honoured);
* a client idle for ``idle_timeout_s`` is disconnected.

Anything else gets a 4xx answer and the connection is closed; the handler
never sees a malformed request.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Awaitable, Callable

log = logging.getLogger(__name__)

MAX_HEAD = 8192
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 411: "Length Required", 413: "Payload Too Large", 500: "Internal Server Error"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    peer: str


@dataclass
class Response:
    status: int = 200
    body: str = "OK"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _read_request(reader: asyncio.StreamReader, peer: str, max_body: int) -> Request | None:
    """The next request, ``None`` at a clean end of stream; raises :class:`BadRequest`."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest(400, "incomplete request head") from None
    except asyncio.LimitOverrunError:
        raise BadRequest(400, "request head too large") from None
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text[:-4].split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        raise BadRequest(400, "malformed request line") from None
    if not version.startswith("HTTP/1.") or not method.isalpha():
        raise BadRequest(400, "not HTTP/1.x")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, f"malformed header {line[:40]!r}")
        headers[name.lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise BadRequest(411, "chunked bodies are not supported; send Content-Length")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise BadRequest(400, "bad Content-Length")
    length = int(length_text)
    if length > max_body:
        raise BadRequest(413, f"body over {max_body} bytes")
    try:
        body = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError:
        raise BadRequest(400, "body shorter than Content-Length") from None
    path, _, query = target.partition("?")
    keep = headers.get("connection", "").lower()
    if version == "HTTP/1.0" and keep != "keep-alive":
        headers["connection"] = "close"
    return Request(method.upper(), path, query, headers, body, peer)


def _encode(resp: Response, close: bool) -> bytes:
    body = resp.body.encode("utf-8")
    lines = [f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Error')}",
             "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(body)}",
             f"Date: {formatdate(usegmt=True)}",
             "Connection: close" if close else "Connection: keep-alive",
             *(f"{k}: {v}" for k, v in resp.headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HttpServer:
    """Serve ``handler`` on ``host:port``. ``bad_requests`` counts refused requests.

    Concurrency: :meth:`serve` runs until cancelled (then closes the listener
    and every connection). The handler runs on the event loop; one request per
    connection at a time (HTTP/1.1 without pipelining reordering).
    """

    def __init__(self, handler: Handler, host: str, port: int, *, max_body: int = 1 << 20,
                 idle_timeout_s: float = 60.0) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.max_body = max_body
        self.idle_timeout_s = idle_timeout_s
        self.bad_requests = 0
        self.requests = 0
        self.bound = asyncio.Event()
        self._server: asyncio.Server | None = None

    @property
    def bound_port(self) -> int:
        assert self._server is not None and self._server.sockets
        return self._server.sockets[0].getsockname()[1]

    async def serve(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port, limit=MAX_HEAD)
        self.bound.set()
        try:
            async with self._server:
                await self._server.serve_forever()
        finally:
            self.bound.clear()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername"))
        try:
            while True:
                try:
                    request = await asyncio.wait_for(_read_request(reader, peer, self.max_body),
                                                     self.idle_timeout_s)
                except BadRequest as exc:
                    self.bad_requests += 1
                    writer.write(_encode(Response(exc.status, f"{exc}\n"), close=True))
                    await writer.drain()
                    return
                except asyncio.TimeoutError:
                    return
                if request is None:
                    return
                self.requests += 1
                try:
                    response = await self.handler(request)
                except Exception:
                    log.exception("http: handler failed for %s %s", request.method, request.path)
                    response = Response(500, "internal error\n")
                close = request.headers.get("connection", "").lower() == "close"
                writer.write(_encode(response, close))
                await writer.drain()
                if close:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()
