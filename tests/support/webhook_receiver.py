"""A real local HTTP receiver for webhook tests: a raw trio socket server speaking just enough HTTP/1.1.

Start it with ``await nursery.start(partial(trio.serve_tcp, receiver.handle, 0, host="127.0.0.1"))``
and set ``receiver.port`` from the listener (tests/hub/test_webhooks.py, tests/web/test_webhook_test_delivery.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import trio


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each request with the next scripted status (the last one repeats)."""

    statuses: list[int]
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)

    async def handle(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            body += await stream.receive_some(65536)
        self.requests.append(Received(headers, body))
        status = self.statuses[min(len(self.requests), len(self.statuses)) - 1]
        await stream.send_all(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await stream.aclose()
        self.arrived.set()
        self.arrived = trio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"
