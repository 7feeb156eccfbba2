"""TrioMqttClient over TLS (mqtts://) and its Maximum Packet Size, against the real Mosquitto.

TLS comes from ``TlsTerminatingProxy`` in front of the shared broker (certificates made
with trustme at test time): it can pack a CONNACK and a burst of PUBLISHes into one TLS
record, which Mosquitto's own listener never does (one record per packet), and which is
exactly what stalls a reader that waits for socket readability. The hub and the edge agent
against Mosquitto's own TLS listener: tests/hub/test_hub_mqtt_tls.py.
"""
from __future__ import annotations

import logging
import os
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import trustme
from mqtt_helpers import receive, start, subscriber, wait_until
from tls_proxy import TlsTerminatingProxy

from hub.mqtt import TrioMqttClient, client_tls_context

HOST = os.environ.get("CAMPUSHUB_TEST_MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("CAMPUSHUB_TEST_MQTT_PORT", "1883"))

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix() -> str:
    return f"test-tls-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA, *, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(context)
    return context


@pytest.fixture
async def proxies(ca: trustme.CA) -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """``await proxies(**options)``: start a TLS-terminating proxy to the shared broker, get its port."""
    async with trio.open_nursery() as nursery:
        async def start_proxy(*, require_client_cert: bool = False, coalesce_s: float = 0.0) -> int:
            context = server_context(ca, require_client_cert=require_client_cert)
            return await nursery.start(TlsTerminatingProxy(HOST, PORT, context, coalesce_s=coalesce_s).serve)

        yield start_proxy
        nursery.cancel_scope.cancel()


def tls_client(cid: str, port: int, context: ssl.SSLContext, **kw) -> TrioMqttClient:
    kw.setdefault("session_expiry_s", 30)  # don't leave sessions behind for long
    client = TrioMqttClient(host="127.0.0.1", port=port, client_id=cid, tls=context, **kw)
    client.BACKOFF_MIN_S = client.BACKOFF_MAX_S = 0.05
    return client


async def test_reader_drains_decrypted_bytes_held_in_the_ssl_object(prefix: str, proxies, ca_file: str) -> None:
    """A backlog arrives as a few 16 KiB records, each holding ~300 PUBLISHes, the first also
    the CONNACK. A reader that waits for readability after the CONNACK, or after a
    ``MAX_DRAIN_BATCH`` of 16, finds the socket empty and everything else inside the SSL
    object: it would wait for the next PINGRESP (keepalive 60 s here). All must arrive in 10 s."""
    cid, total = f"{prefix}-sub", 600
    # 1. a persistent session subscribed to the topic, then offline
    first = TrioMqttClient(host=HOST, port=PORT, client_id=cid, clean_start=True, session_expiry_s=60)
    async with trio.open_nursery() as nursery:
        await start(nursery, first, subscriber(f"{prefix}/#"))
        nursery.cancel_scope.cancel()
    # 2. a backlog queued for it by the broker
    publisher = TrioMqttClient(host=HOST, port=PORT, client_id=f"{prefix}-pub", clean_start=True)
    async with trio.open_nursery() as nursery:
        await start(nursery, publisher)
        for i in range(total):
            await publisher.publish(f"{prefix}/m", str(i).encode(), qos=1)
        await publisher.publish(f"{prefix}/m", b"last", qos=1, wait_for_ack=True)
        nursery.cancel_scope.cancel()
    # 3. the session resumed over TLS: CONNACK + backlog in a few coalesced records
    proxy_port = await proxies(coalesce_s=0.05)
    client = tls_client(cid, proxy_port, client_tls_context(ca_file), keepalive=60, session_expiry_s=0)
    client.MAX_DRAIN_BATCH = 16
    got: list[bytes] = []
    async with trio.open_nursery() as nursery:
        await start(nursery, client)
        with trio.fail_after(10):
            while len(got) < total + 1:
                message = await client.messages.receive()
                client.ack(message)
                got.append(message.payload)
        nursery.cancel_scope.cancel()
    assert got == [str(i).encode() for i in range(total)] + [b"last"]
    assert client.stats.reconnects == 0


async def test_roundtrip_over_tls_with_many_small_messages_both_ways(prefix: str, proxies, ca_file: str) -> None:
    client = tls_client(f"{prefix}-c", await proxies(coalesce_s=0.02), client_tls_context(ca_file), clean_start=True)
    async with trio.open_nursery() as nursery:
        await start(nursery, client, subscriber(f"{prefix}/#"))
        for i in range(300):
            await client.publish(f"{prefix}/x", b"%d" % i, qos=1)
        with trio.fail_after(10):
            payloads = []
            for _ in range(300):
                message = await client.messages.receive()
                client.ack(message)
                payloads.append(message.payload)
        assert payloads == [b"%d" % i for i in range(300)]
        nursery.cancel_scope.cancel()


async def test_untrusted_broker_certificate_is_refused_with_a_clear_reason(
        prefix: str, proxies, caplog: pytest.LogCaptureFixture) -> None:
    proxy_port = await proxies()
    other_ca = trustme.CA()  # the client trusts a CA that did not sign the broker's certificate
    context = ssl.create_default_context()
    other_ca.configure_trust(context)
    client = tls_client(f"{prefix}-c", proxy_port, context, clean_start=True)
    with caplog.at_level(logging.WARNING, logger="hub.mqtt"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run)  # never "started": it keeps retrying
            await wait_until(lambda: client.stats.connect_failures >= 2, timeout=5)
            assert not client.connected
            nursery.cancel_scope.cancel()
    reasons = [r.getMessage() for r in caplog.records if "broker certificate not trusted" in r.getMessage()]
    assert reasons and "retrying" in reasons[0], caplog.text
    assert "unable to get local issuer certificate" in reasons[0]


async def test_wrong_host_name_is_refused(prefix: str, ca: trustme.CA, ca_file: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("broker.elsewhere.example").configure_cert(context)  # valid chain, other name
    proxy = TlsTerminatingProxy(HOST, PORT, context)
    client_context = client_tls_context(ca_file)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(proxy.serve)
        client = tls_client(f"{prefix}-c", port, client_context, clean_start=True)
        with caplog.at_level(logging.WARNING, logger="hub.mqtt"):
            nursery.start_soon(client.run)
            await wait_until(lambda: client.stats.connect_failures >= 1, timeout=5)
        nursery.cancel_scope.cancel()
    assert "IP address mismatch" in caplog.text or "hostname mismatch" in caplog.text, caplog.text


async def test_client_certificate_required_then_given(prefix: str, proxies, ca: trustme.CA,
                                                      ca_file: str, tmp_path, caplog) -> None:
    proxy_port = await proxies(require_client_cert=True)
    # Without a certificate: TLS 1.3 finishes the client's handshake first; the server then
    # closes (Mosquitto without an alert): the log says what to check.
    bare = tls_client(f"{prefix}-bare", proxy_port, client_tls_context(ca_file), clean_start=True)
    with caplog.at_level(logging.WARNING, logger="hub.mqtt"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bare.run)
            await wait_until(lambda: bare.stats.connect_failures >= 2, timeout=5)
            assert not bare.connected
            nursery.cancel_scope.cancel()
    assert "require a client certificate" in caplog.text, caplog.text

    issued = ca.issue_cert("campushub-hub")
    certfile, keyfile = tmp_path / "hub.crt", tmp_path / "hub.key"
    issued.cert_chain_pems[0].write_to_path(str(certfile))
    issued.private_key_pem.write_to_path(str(keyfile))
    client = tls_client(f"{prefix}-cert", proxy_port, client_tls_context(ca_file, certfile, keyfile),
                        clean_start=True)
    async with trio.open_nursery() as nursery:
        await start(nursery, client, subscriber(f"{prefix}/#"))
        await client.publish(f"{prefix}/a", b"hello", qos=1, wait_for_ack=True)
        message = await receive(client)
        assert message.payload == b"hello"
        nursery.cancel_scope.cancel()


async def test_handshake_does_not_block_the_trio_loop(prefix: str, ca_file: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A listener that accepts TCP and never answers the ClientHello: paho's own TLS path
    would block in do_handshake(); ours waits with trio, so other tasks keep running."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.01)
            ticks += 1

    client = tls_client(f"{prefix}-c", silent.getsockname()[1], client_tls_context(ca_file), clean_start=True)
    client.CONNECT_TIMEOUT_S = 0.5
    try:
        with caplog.at_level(logging.WARNING, logger="hub.mqtt"):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker)
                nursery.start_soon(client.run)
                await wait_until(lambda: client.stats.connect_failures >= 1, timeout=5)
                nursery.cancel_scope.cancel()
    finally:
        silent.close()
    assert ticks >= 30  # ~50 expected in 0.5 s; a blocked loop would show ~0
    assert "TLS handshake failed: TooSlowError" in caplog.text, caplog.text


async def test_message_over_max_packet_size_is_dropped_by_mosquitto_even_at_qos1(prefix: str) -> None:
    """What Mosquitto 2.0 does with MQTT 5 Maximum Packet Size (recorded in docs/mqtt-tls.md):
    the publisher gets a successful PUBACK, the subscriber never gets the message, its
    connection stays up, and the next message arrives. So a packet limit on the hub alone
    loses QoS 1 messages silently: the broker's own max_packet_size must refuse them at
    the source (tests/hub/test_hub_mqtt_tls.py)."""
    sub = TrioMqttClient(host=HOST, port=PORT, client_id=f"{prefix}-sub", clean_start=True,
                         session_expiry_s=10, max_packet_size=1000)
    pub = TrioMqttClient(host=HOST, port=PORT, client_id=f"{prefix}-pub", clean_start=True)
    async with trio.open_nursery() as nursery:
        await start(nursery, sub, subscriber(f"{prefix}/#"))
        await start(nursery, pub)
        await pub.publish(f"{prefix}/small", b"a" * 100, qos=1, wait_for_ack=True)
        await pub.publish(f"{prefix}/big", b"b" * 2000, qos=1, wait_for_ack=True)  # PUBACK: success
        await pub.publish(f"{prefix}/small", b"c" * 100, qos=1, wait_for_ack=True)
        first, second = await receive(sub), await receive(sub)
        assert (first.payload, second.payload) == (b"a" * 100, b"c" * 100)
        assert sub.generation == 1 and sub.connected and sub.stats.received == 2
        nursery.cancel_scope.cancel()


def test_max_packet_size_must_be_a_valid_mqtt_size() -> None:
    with pytest.raises(ValueError, match="max_packet_size"):
        TrioMqttClient(host="127.0.0.1", client_id="x", max_packet_size=0)

