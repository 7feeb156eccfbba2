"""The hub's own HTTPS, its metrics listener and its generated JWT secret (run_hub, real PostgreSQL and broker)."""
from __future__ import annotations

import dataclasses
import os
import socket
import ssl
import stat
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
import trustme

from hub.app.supervision import load_jwt_secret, run_hub
from hub.core.config import Settings
from web.app import HSTS

METRICS_TOKEN = "hub-metrics-token-0123456789"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_hub_serves_https_and_metrics_on_their_own_listener(hub_settings: Settings, hub_campus, tmp_path: Path,
                                                                  aio_loop):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    metrics_port = _free_port()
    settings = dataclasses.replace(hub_settings, tls_cert=certfile, tls_key=keyfile, metrics_token=METRICS_TOKEN,
                                   metrics_bind=f"127.0.0.1:{metrics_port}")
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, settings, port=0))
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{hub.web_port}", verify=client_tls) as https:
            health = await https.get("/healthz")
            assert health.json() == {"status": "ok"} and health.headers["Strict-Transport-Security"] == HSTS
            assert (await https.get("/metrics")).status_code == 404  # served on the metrics listener instead
            login = await https.post("/api/v1/auth/login", json={"username": "faculty1", "password": "campushub"})
            assert login.status_code == 200, login.text
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{metrics_port}") as private:
            assert (await private.get("/metrics")).status_code == 401
            metrics = await private.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            assert metrics.status_code == 200 and "campushub_actor_restarts_total" in metrics.text
            assert (await private.get("/healthz")).json()["database"] == {"ok": True}
        nursery.cancel_scope.cancel()


def test_generatedload_jwt_secret_is_created_0600_whatever_the_umask(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data")
    previous = os.umask(0)  # a permissive umask must not widen it, not even for a moment
    try:
        secret = load_jwt_secret(settings)
    finally:
        os.umask(previous)
    path = tmp_path / "data" / "jwt_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(secret) == 32 and path.read_bytes() == secret
    assert load_jwt_secret(settings) == secret  # kept across restarts


def testload_jwt_secret_creation_uses_o_excl_so_a_racing_hub_keeps_the_first(tmp_path: Path, monkeypatch):
    settings = Settings(data_dir=tmp_path)
    (tmp_path / "jwt_secret").write_bytes(b"f" * 32)  # another hub won the race
    opened: list[int] = []
    real_open = os.open

    def spy(path, flags, *args):
        opened.append(flags)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", spy)
    assert load_jwt_secret(settings) == b"f" * 32
    assert opened and opened[0] & os.O_EXCL and opened[0] & os.O_CREAT


def test_settings_read_tls_proxy_and_metrics_variables(tmp_path: Path):
    on = Settings.from_env({"CAMPUSHUB_TLS_CERT": "/etc/c.pem", "CAMPUSHUB_TLS_KEY": "/etc/k.pem",
                            "CAMPUSHUB_METRICS_TOKEN": METRICS_TOKEN, "CAMPUSHUB_METRICS_BIND": "[::1]:9100"})
    assert on.tls and on.cookies_secure and on.tls_cert == Path("/etc/c.pem") and on.metrics_bind == "[::1]:9100"
    proxied = Settings.from_env({"CAMPUSHUB_SECURE_COOKIES": "1"})
    assert not proxied.tls and proxied.cookies_secure
    assert not Settings.from_env({}).cookies_secure and Settings.from_env({}).metrics_token is None
    for bad, message in (({"CAMPUSHUB_TLS_CERT": "/etc/c.pem"}, "both a certificate and a key"),
                         ({"CAMPUSHUB_SECURE_COOKIES": "yes please"}, "must be 1 or 0"),
                         ({"CAMPUSHUB_METRICS_TOKEN": "short"}, "at least 16"),
                         ({"CAMPUSHUB_METRICS_BIND": "127.0.0.1:99999"}, "host:port"),
                         ({"CAMPUSHUB_METRICS_BIND": ":9100"}, "host:port"),
                         ({"CAMPUSHUB_METRICS_BIND": "x" * 10_000 + ":1"}, "host:port")):
        with pytest.raises(ValueError, match=message):
            Settings.from_env(bad)
