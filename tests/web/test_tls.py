"""HTTPS: web.serve with a certificate made at test time (trustme), HSTS, Secure cookies, plain HTTP on the TLS port."""
from __future__ import annotations

import ssl
import time
from pathlib import Path

import httpx
import pytest
import trio
import trustme
from web_helpers import PASSWORD

from web import create_app, serve
from web.app import HSTS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pem_files(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))  # key + chain: hypercorn takes it as the chain
    cert.private_key_pem.write_to_path(str(keyfile))
    return certfile, keyfile


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_https_sends_hsts_and_secure_cookies(ctx, world, ca, pem_files):
    certfile, keyfile = pem_files
    app = create_app(ctx, secure_cookies=True)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve(
            app, host="127.0.0.1", port=0, certfile=certfile, keyfile=keyfile, task_status=task_status))
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=_client_context(ca)) as https:
            page = await https.get("/login")
            assert page.status_code == 200 and page.headers["Strict-Transport-Security"] == HSTS
            login = await https.post("/login", data={"username": world.username("ops"), "password": PASSWORD})
            assert login.status_code == 303 and login.headers["Strict-Transport-Security"] == HSTS
            cookies = login.headers.get_list("Set-Cookie")
            assert len(cookies) == 2 and all("; Secure" in c and "HttpOnly" in c for c in cookies), cookies
            assert (await https.get("/healthz")).headers["Strict-Transport-Security"] == HSTS
        nursery.cancel_scope.cancel()


async def test_plain_http_on_the_https_port_fails_fast_and_the_server_keeps_serving(ctx, ca, pem_files):
    certfile, keyfile = pem_files
    app = create_app(ctx, secure_cookies=True)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve(
            app, host="127.0.0.1", port=0, certfile=certfile, keyfile=keyfile, task_status=task_status))
        for _ in range(3):
            started = time.monotonic()
            with trio.fail_after(5):  # closed at once, not after a read timeout
                async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                    await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    received = b""
                    try:
                        while chunk := await stream.receive_some():
                            received += chunk
                    except trio.BrokenResourceError:
                        pass  # reset by the server: also a clean refusal
            assert time.monotonic() - started < 5
            assert b"HTTP/1.1 200" not in received  # nothing is served in the clear
        async with httpx.AsyncClient(verify=_client_context(ca)) as https:
            response = await https.get(f"https://127.0.0.1:{port}/healthz")
            assert response.status_code == 200
        with pytest.raises(httpx.HTTPError):  # an HTTP client gets an error, not a hang
            async with httpx.AsyncClient(timeout=5) as http:
                await http.get(f"http://127.0.0.1:{port}/healthz")
        nursery.cancel_scope.cancel()


async def test_plain_http_app_sends_no_hsts_and_no_secure_cookies(client, world):
    page = await client.get("/login")
    assert "Strict-Transport-Security" not in page.headers
    login = await client.post("/login", form={"username": world.username("ops"), "password": PASSWORD})
    assert all("Secure" not in c for c in login.headers.getlist("Set-Cookie"))


async def test_behind_a_tls_proxy_secure_cookies_alone_turn_both_on(ctx, world):
    client = create_app(ctx, secure_cookies=True).test_client()
    login = await client.post("/login", form={"username": world.username("ops"), "password": PASSWORD})
    assert login.headers["Strict-Transport-Security"] == HSTS
    assert all("; Secure" in c for c in login.headers.getlist("Set-Cookie"))
    logout = await client.post("/logout")
    cleared = logout.headers.getlist("Set-Cookie")
    assert len(cleared) == 2 and all("; Secure" in c and "Max-Age=0" in c for c in cleared), cleared
