"""Keep-alive after a POST refused before its body was read (401, 403, 415): the next request must not hang.

hypercorn would otherwise keep a connection whose request body the app never
read; the client's next request on it could wait for the 65 s read timeout.
The app closes such connections (``Connection: close``, web/app.py).
"""
from __future__ import annotations

import pytest
import trio
from web_helpers import api_login

from web import create_app, serve

BODY = b'{"name": "' + b"x" * 2000 + b'"}'


async def _read_response(stream: trio.SocketStream) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some()
        if not chunk:
            raise EOFError
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        body += await stream.receive_some()
    return int(status_line.split()[1]), headers, body


async def _closed(stream: trio.SocketStream) -> bool:
    """The server closed the connection (EOF or reset) rather than waiting for more."""
    try:
        return await stream.receive_some() == b""
    except trio.BrokenResourceError:
        return True


def _post(port: int, path: str, content_type: str, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n{auth}"
            f"Content-Length: {len(BODY)}\r\n\r\n").encode() + BODY


@pytest.mark.parametrize("case", ["401", "403", "415"])
async def test_next_request_after_an_early_refusal_does_not_hang(client, ctx, world, case):
    token = None
    if case != "401":
        token = (await api_login(client, world.username("stu1" if case == "403" else "fac1")))["access_token"]
    content_type = "text/plain" if case == "415" else "application/json"
    path = "/api/v1/rooms" if case != "415" else "/api/v1/auth/logout"
    app = create_app(ctx)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve(app, host="127.0.0.1", port=0, task_status=task_status))
        for _ in range(20):  # the hang was intermittent (7 of 114): repeat
            with trio.fail_after(5):
                async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                    await stream.send_all(_post(port, path, content_type, token))
                    status, headers, _ = await _read_response(stream)
                    assert status == int(case)
                    assert headers.get("connection", "").lower() == "close"
                    # A client that still reuses the connection is told at once that it is gone.
                    try:
                        await stream.send_all(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                    except trio.BrokenResourceError:
                        continue
                    assert await _closed(stream)
        nursery.cancel_scope.cancel()


async def test_a_request_without_a_body_keeps_its_connection(ctx):
    app = create_app(ctx)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve(app, host="127.0.0.1", port=0, task_status=task_status))
        with trio.fail_after(5):
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                for _ in range(2):
                    await stream.send_all(f"GET /api/v1/me HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                    status, headers, _ = await _read_response(stream)
                    assert status == 401 and headers.get("connection", "").lower() != "close"
        nursery.cancel_scope.cancel()
