"""web.serve: hypercorn's trio worker on a real socket, port 0, stopped by cancellation."""
from __future__ import annotations

import json

import trio

from web import create_app, serve

METRICS_TOKEN = "serve-test-metrics-token"


async def http_get(port: int, path: str, extra_headers: str = "") -> tuple[int, dict[str, str], bytes]:
    """A minimal HTTP/1.1 GET; reads exactly Content-Length bytes of body."""
    with trio.fail_after(5):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra_headers}\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some()
            head, _, body = data.partition(b"\r\n\r\n")
            status_line, *header_lines = head.decode().split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
            while len(body) < int(headers["content-length"]):
                body += await stream.receive_some()
    return int(status_line.split()[1]), headers, body


async def test_serve_on_port_zero_reports_the_port_and_stops_on_cancel(ctx):
    app = create_app(ctx, metrics_token=METRICS_TOKEN)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve(app, host="127.0.0.1", port=0, task_status=task_status))
        assert port > 0
        status, headers, body = await http_get(port, "/healthz", f"Authorization: Bearer {METRICS_TOKEN}\r\n")
        assert status == 200 and json.loads(body) == {"status": "ok", "database": "ok"}
        status, headers, _ = await http_get(port, "/metrics", f"Authorization: Bearer {METRICS_TOKEN}\r\n")
        assert headers["content-type"].startswith("text/plain; version=0.0.4")
        nursery.cancel_scope.cancel()
    try:
        await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        pass
    else:
        raise AssertionError("still listening after cancellation")
