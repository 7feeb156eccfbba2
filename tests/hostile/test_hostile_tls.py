"""Hostile clients on the hub's HTTPS port: plain HTTP, garbage, a torn handshake, a silent connection.

Each is refused cleanly (the connection closes, nothing is served in the clear) and
the hub keeps serving HTTPS to everyone else meanwhile.
"""
from __future__ import annotations

import dataclasses
import ssl
import time
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
import trustme

from hub.app.supervision import run_hub

pytestmark = pytest.mark.integration

#: What each probe sends on the TLS port before reading until the server closes.
PROBES = {
    "plain_http_get": b"GET /api/v1/me HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "plain_http_login": (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 43\r\n\r\n{\"username\":\"admin\",\"password\":\"campushub\"}"),
    "garbage": b"\x00\xff" * 4096,
}
#: Probes that stop half-way through a record: the server waits for the rest, at most its
#: handshake timeout (:data:`HANDSHAKE_TIMEOUT_S`), then closes; the client gives up first here.
TORN = {
    "torn_client_hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 16,
    "torn_ssl2_hello": b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10",
}
#: The hub's TLS handshake timeout here (the default is 10 s): still well beyond the probes and the
#: HTTPS requests that run while the silent connection is held, so the test waits less for its close.
HANDSHAKE_TIMEOUT_S = 4.0


async def _probe(port: int, data: bytes, *, give_up_after: float | None = None) -> bytes:
    received = b""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(data)
        if give_up_after is not None:  # a torn handshake: the client goes quiet, then gives up
            with trio.move_on_after(give_up_after):
                received += await stream.receive_some()
            return received
        try:
            while chunk := await stream.receive_some():
                received += chunk
        except trio.BrokenResourceError:
            pass
    return received


async def test_hostile_clients_on_the_https_port(hub_settings, hub_campus, tmp_path: Path, aio_loop):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    settings = dataclasses.replace(hub_settings, tls_cert=certfile, tls_key=keyfile,
                                   tls_handshake_timeout_s=HANDSHAKE_TIMEOUT_S)
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, settings, port=0))
        port = hub.web_port
        silent = await trio.open_tcp_stream("127.0.0.1", port)  # opens a connection and never speaks
        for name, data in PROBES.items():
            started = time.monotonic()
            with trio.fail_after(5):
                received = await _probe(port, data)
            assert b"HTTP/1.1 200" not in received and b"access_token" not in received, name
            assert time.monotonic() - started < 5, name
        for name, data in TORN.items():
            assert await _probe(port, data, give_up_after=0.5) == b"", name
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=client_tls, timeout=5) as https:
            assert (await https.get("/healthz")).json() == {"status": "ok"}
            login = await https.post("/api/v1/auth/login", json={"username": "faculty1", "password": "campushub"})
            assert login.status_code == 200
        assert hub.metrics.actor_restarts._value.get() == 0  # no probe crashed the web actor
        # The silent connection is closed by the server's handshake timeout: nobody holds a slot for ever.
        with trio.fail_after(15):
            try:
                assert await silent.receive_some() == b""
            except trio.BrokenResourceError:
                pass
        await silent.aclose()
        nursery.cancel_scope.cancel()
