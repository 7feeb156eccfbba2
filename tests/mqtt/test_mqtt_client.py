"""TrioMqttClient against a real Mosquitto broker (no mocks).

Broker address: CAMPUSHUB_TEST_MQTT_HOST / CAMPUSHUB_TEST_MQTT_PORT
(default 127.0.0.1:1883); with CAMPUSHUB_TEST_BROKER=secure the run's secure
broker (``CAMPUSHUB_TEST_MQTT_URL``, set by tests/conftest.py: credentials and
TLS). Every test uses its own topic prefix and client ids.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest
import trio
from mqtt_helpers import assert_nothing, drop_socket, receive, start, subscriber, wait_until
from support.tcp_proxy import TcpProxy

from hub.core.config import MqttUrl
from hub.mqtt import MqttNotConnected, TrioMqttClient, client_tls_context

HOST = os.environ.get("CAMPUSHUB_TEST_MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("CAMPUSHUB_TEST_MQTT_PORT", "1883"))


def _broker() -> MqttUrl:
    """Read at call time: in secure mode the root conftest sets ``CAMPUSHUB_TEST_MQTT_URL`` before any test runs."""
    return MqttUrl.parse(os.environ["CAMPUSHUB_TEST_MQTT_URL"] if os.environ.get("CAMPUSHUB_TEST_BROKER") == "secure" else f"mqtt://{HOST}:{PORT}")

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def _broker_reachable() -> None:
    # A fixture, not an import-time check: `-m "not integration"` then
    # deselects these tests cleanly instead of erroring at collection.
    try:
        socket.create_connection((_broker().host, _broker().port), timeout=1).close()
    except OSError as exc:
        pytest.fail(f"MQTT broker not reachable at {_broker()}: {exc}", pytrace=False)


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def make_client(cid: str, cls: type[TrioMqttClient] = TrioMqttClient, **kw) -> TrioMqttClient:
    broker = _broker()
    kw.setdefault("host", broker.host)
    kw.setdefault("port", broker.port)
    kw.setdefault("username", broker.username)
    kw.setdefault("password", broker.password)
    kw.setdefault("tls", client_tls_context() if broker.tls else None)
    kw.setdefault("session_expiry_s", 30)  # don't leave sessions behind for long
    return cls(client_id=cid, **kw)




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------- tests


async def test_publish_receive_roundtrip(prefix: str) -> None:
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            c = await start(n, make_client(f"{prefix}-a", clean_start=True), subscriber(f"{prefix}/#"))
            assert c.connected and c.generation == 1
            before = time.time()
            await c.publish(f"{prefix}/x", b"hello", wait_for_ack=True)
            await c.publish(f"{prefix}/y", b"zero", qos=0, message_expiry_s=60, wait_for_ack=True)
            m1 = await receive(c)
            m2 = await receive(c)
            assert (m1.topic, m1.payload, m1.qos, m1.retain) == (f"{prefix}/x", b"hello", 1, False)
            assert (m2.topic, m2.payload, m2.qos) == (f"{prefix}/y", b"zero", 0)
            assert m1.generation == c.generation == 1
            assert before <= m1.received_at <= time.time()
            c.ack(m1)
            c.ack(m2)  # QoS 0: no-op
            assert c.stats.acked == 1
            assert c.stats.received == 2 and c.stats.published == 2
            n.cancel_scope.cancel()
    # run() ended: the channel is closed for consumers
    with pytest.raises(trio.EndOfChannel):
        await c.messages.receive()


async def test_unacked_message_redelivered_with_persistent_session(prefix: str) -> None:
    cid = f"{prefix}-persist"
    with trio.fail_after(6):
        async with trio.open_nursery() as n:
            c1 = await start(n, make_client(cid, clean_start=True), subscriber(f"{prefix}/#"))
            await c1.publish(f"{prefix}/t", b"acked", wait_for_ack=True)
            await c1.publish(f"{prefix}/t", b"unacked", wait_for_ack=True)
            acked, unacked = await receive(c1), await receive(c1)
            assert (acked.payload, unacked.payload) == (b"acked", b"unacked")
            c1.ack(acked)
            # The broker handles our packets in order: once this round trip is
            # done, the PUBACK above has been processed.
            await c1.publish(f"{prefix}/other", b"sync", qos=1, wait_for_ack=True)
            c1.ack(await receive(c1))
            n.cancel_scope.cancel()  # graceful DISCONNECT; session kept

        async with trio.open_nursery() as n:
            # No subscribe: the subscription lives in the broker-side session.
            c2 = await start(n, make_client(cid, clean_start=False))
            again = await receive(c2)
            assert again.payload == b"unacked" and again.generation == 1
            c2.ack(again)
            await assert_nothing(c2, 0.5)
            n.cancel_scope.cancel()


async def test_drop_connection_acks_nothing_and_waits_as_asked(prefix: str) -> None:
    """The hub's step away from a foreign session: no ack leaves, the broker redelivers, the wait is the one asked."""
    with trio.fail_after(8):
        async with trio.open_nursery() as n:
            c = await start(n, make_client(f"{prefix}-drop", clean_start=True), subscriber(f"{prefix}/#"))
            await c.publish(f"{prefix}/t", b"kept for its owner", wait_for_ack=True)
            held = await receive(c)
            dropped_at = trio.current_time()
            c.drop_connection("test", reconnect_after_s=1.0)
            c.ack(held)  # stale: the connection it came from is gone
            again = await receive(c, timeout=4.0)
            # Jitter is 0.8-1.0x of the asked wait; the usual backoff would have been 0.1 s.
            assert trio.current_time() - dropped_at >= 0.8
            assert again.payload == b"kept for its owner" and again.generation == 2
            assert c.stats.acked == 0
            c.ack(again)
            n.cancel_scope.cancel()


async def test_ack_many_acknowledges_a_batch_in_one_write(prefix: str) -> None:
    """Every message of a batch acked with one ack_many() is gone from the persistent session; the rest come back."""
    cid = f"{prefix}-batch"
    with trio.fail_after(8):
        async with trio.open_nursery() as n:
            c1 = await start(n, make_client(cid, clean_start=True), subscriber(f"{prefix}/#"))
            for i in range(40):
                await c1.publish(f"{prefix}/t", b"%d" % i, wait_for_ack=True)
            got = [await receive(c1) for _ in range(40)]
            assert [m.payload for m in got] == [b"%d" % i for i in range(40)]
            await c1.publish(f"{prefix}/q0", b"zero", qos=0, wait_for_ack=True)
            qos0 = await receive(c1)
            c1.ack_many([*got[:30], qos0])  # QoS 0 is skipped, not counted
            assert c1.stats.acked == 30
            await c1.publish(f"{prefix}/other", b"sync", qos=1, wait_for_ack=True)
            c1.ack_many([await receive(c1)])
            n.cancel_scope.cancel()

        async with trio.open_nursery() as n:
            c2 = await start(n, make_client(cid, clean_start=False))
            again = [await receive(c2) for _ in range(10)]
            assert sorted(m.payload for m in again) == sorted(b"%d" % i for i in range(30, 40))
            c2.ack_many(again)
            await assert_nothing(c2, 0.5)
            n.cancel_scope.cancel()


async def test_ack_of_old_generation_is_noop(prefix: str) -> None:
    with trio.fail_after(6):
        async with trio.open_nursery() as n:
            c = await start(n, make_client(f"{prefix}-gen", clean_start=True), subscriber(f"{prefix}/#"))
            await c.publish(f"{prefix}/t", b"m", wait_for_ack=True)
            old = await receive(c)
            assert old.generation == 1

            drop_socket(c)
            await wait_until(lambda: c.generation == 2 and c.connected)
            new = await receive(c)  # the broker redelivers the unacked message
            assert (new.payload, new.generation) == (b"m", 2)

            c.ack(old)  # mid belongs to the dead connection: must not be sent
            assert c.stats.acked == 0
            c.ack(new)
            assert c.stats.acked == 1
            await c.publish(f"{prefix}/sync", b"s", wait_for_ack=True)
            c.ack(await receive(c))

            # Acked for real: not redelivered after yet another reconnect.
            drop_socket(c)
            await wait_until(lambda: c.generation == 3 and c.connected)
            await assert_nothing(c, 0.5)
            assert c.stats.reconnects == 2
            n.cancel_scope.cancel()


async def test_backpressure_stops_reading_and_loses_nothing(prefix: str) -> None:
    count, capacity = 500, 4
    with trio.fail_after(8):
        async with trio.open_nursery() as n:
            rx = await start(n, make_client(f"{prefix}-rx", clean_start=True, inbound_capacity=capacity),
                             subscriber(f"{prefix}/#"))
            tx = await start(n, make_client(f"{prefix}-tx", clean_start=True))
            for i in range(count):
                await tx.publish(f"{prefix}/bp", str(i).encode())
            await tx.publish(f"{prefix}/end", b"", wait_for_ack=True)

            # Nobody consumes: the reader fills the channel plus one drain
            # batch (capped at the capacity) and then leaves the socket unread.
            await trio.sleep(0.3)
            assert rx.stats.received <= 2 * capacity + 1
            assert rx._stalled

            got = []
            while len(got) < count + 1:
                m = await receive(rx)
                got.append(m.payload)
                rx.ack(m)
            assert got == [str(i).encode() for i in range(count)] + [b""]
            assert rx.stats.received == count + 1 and rx.generation == 1
            n.cancel_scope.cancel()


async def test_publish_waits_for_queue_room(prefix: str) -> None:
    class SmallQueue(TrioMqttClient):
        MAX_QUEUED_MESSAGES = 5

    count = 200
    with trio.fail_after(6):
        async with trio.open_nursery() as n:
            c = await start(n, make_client(f"{prefix}-q", SmallQueue, clean_start=True, max_inflight=2),
                            subscriber(f"{prefix}/#"))
            received: list[bytes] = []

            async def consume() -> None:
                async for m in c.messages:
                    received.append(m.payload)
                    c.ack(m)

            n.start_soon(consume)
            # Sequential publishes: in order, never beyond the queue bound. (Whether
            # the queue fills here depends on how fast PUBACKs come back.)
            for i in range(count):
                await c.publish(f"{prefix}/q", str(i).encode())
                assert len(c._paho._out_messages) <= 5
            await wait_until(lambda: len(received) == count)
            assert received == [str(i).encode() for i in range(count)]
            # A burst from many tasks at once fills the queue within one scheduling
            # batch, before any PUBACK can be read: the rest must wait for room.
            burst = [f"b{i}".encode() for i in range(count)]

            async def publish_one(payload: bytes) -> None:
                await c.publish(f"{prefix}/q", payload)
                assert len(c._paho._out_messages) <= 5

            async with trio.open_nursery() as publishers:
                for payload in burst:
                    publishers.start_soon(publish_one, payload)
            assert c.stats.queue_full_waits > 0
            await wait_until(lambda: len(received) == 2 * count)
            assert sorted(received[count:]) == sorted(burst)
            n.cancel_scope.cancel()


async def test_reconnects_and_resubscribes_after_socket_dropped(prefix: str) -> None:
    connects = 0

    async def on_connect(c: TrioMqttClient) -> None:
        nonlocal connects
        connects += 1
        # A topic only the n-th on_connect subscribes: receiving on it proves
        # the subscription was (re)made after the reconnect.
        await c.subscribe(f"{prefix}/conn{connects}", qos=1)

    with trio.fail_after(6):
        async with trio.open_nursery() as n:
            c = await start(n, make_client(f"{prefix}-re", clean_start=True), on_connect)
            assert connects == 1
            drop_socket(c)
            # Published while the connection is dying/dead: paho keeps QoS 1
            # messages and resends them after the next CONNACK.
            await c.publish(f"{prefix}/conn1", b"during-outage")
            await wait_until(lambda: connects == 2 and c.connected)
            assert c.generation == 2 and c.stats.reconnects == 1
            await c.publish(f"{prefix}/conn2", b"after", wait_for_ack=True)
            payloads = {(await receive(c)).payload for _ in range(2)}
            assert payloads == {b"during-outage", b"after"}
            n.cancel_scope.cancel()


async def test_reconnects_after_socket_closed_behind_paho(prefix: str) -> None:
    class FastMisc(TrioMqttClient):
        MISC_INTERVAL_S = 0.1

    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            c = await start(n, make_client(f"{prefix}-cl", FastMisc, clean_start=True), subscriber(f"{prefix}/#"))
            c._paho.socket().close()  # trio is not told: the watchdog must notice
            await wait_until(lambda: c.generation == 2 and c.connected)
            await c.publish(f"{prefix}/x", b"ok", wait_for_ack=True)
            assert (await receive(c)).payload == b"ok"
            n.cancel_scope.cancel()


async def test_last_will_on_dead_socket_but_not_on_clean_stop(prefix: str) -> None:
    will_topic = f"{prefix}/status"
    with trio.fail_after(6):
        async with trio.open_nursery() as n:
            obs = await start(n, make_client(f"{prefix}-obs", clean_start=True), subscriber(will_topic))
            async with trio.open_nursery() as dev_nursery:
                dev = await start(dev_nursery, make_client(
                    f"{prefix}-dev", clean_start=True, will=(will_topic, b"offline", 1, False)))
                drop_socket(dev)
                m = await receive(obs)
                assert (m.topic, m.payload, m.qos) == (will_topic, b"offline", 1)
                obs.ack(m)
                await wait_until(lambda: dev.generation == 2 and dev.connected)
                dev_nursery.cancel_scope.cancel()  # DISCONNECT 0x00: no Will
            await assert_nothing(obs, 0.5)
            n.cancel_scope.cancel()


async def test_broker_down_at_start_then_up_then_server_drop(prefix: str) -> None:
    port = free_port()
    proxy = TcpProxy(_broker().host, _broker().port)
    with trio.fail_after(6):
        async with trio.open_nursery() as n:
            c = make_client(f"{prefix}-down", clean_start=True, port=port)
            started = trio.Event()

            async def run_client() -> None:
                await start(n, c, subscriber(f"{prefix}/#"))
                started.set()

            n.start_soon(run_client)
            # Nothing listens yet: run() must log, back off and keep trying.
            await wait_until(lambda: c.stats.connect_failures >= 3)
            assert not started.is_set() and not c.connected

            await n.start(proxy.serve, port)
            with trio.fail_after(2):  # backoff is still small after ~3 tries
                await started.wait()
            assert c.generation == 1

            proxy.drop_all()  # server side closes the TCP connection
            await wait_until(lambda: c.generation == 2 and c.connected)
            await c.publish(f"{prefix}/x", b"back", wait_for_ack=True)
            assert (await receive(c)).payload == b"back"
            n.cancel_scope.cancel()


async def test_connect_timeout_when_broker_never_answers(prefix: str) -> None:
    class QuickTimeout(TrioMqttClient):
        CONNECT_TIMEOUT_S = 0.2

    async def silent(stream: trio.SocketStream) -> None:
        async with stream:
            async for _ in stream:  # swallow CONNECT, never send CONNACK
                pass

    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            listeners = await n.start(trio.serve_tcp, silent, 0)
            port = listeners[0].socket.getsockname()[1]
            c = make_client(f"{prefix}-silent", QuickTimeout, port=port)
            n.start_soon(c.run)
            await wait_until(lambda: c.stats.connect_failures >= 2)
            assert not c.connected and c.generation == 0
            n.cancel_scope.cancel()


async def test_subscribe_and_qos0_need_connection(prefix: str) -> None:
    c = make_client(f"{prefix}-idle")
    with pytest.raises(MqttNotConnected):
        await c.subscribe(f"{prefix}/#")
    await c.publish(f"{prefix}/x", b"", qos=0)  # dropped, counted
    assert c.stats.dropped_qos0 == 1
    with pytest.raises(MqttNotConnected):
        await c.publish(f"{prefix}/x", b"", qos=0, wait_for_ack=True)


async def test_stalled_reader_survives_keepalive(prefix: str) -> None:
    """Backpressure must not be mistaken for a dead broker (no PINGRESP read)."""

    class FastMisc(TrioMqttClient):
        MISC_INTERVAL_S = 0.1

    with trio.fail_after(6):
        async with trio.open_nursery() as n:
            rx = await start(n, make_client(f"{prefix}-ka", FastMisc, clean_start=True, keepalive=1,
                                            inbound_capacity=1), subscriber(f"{prefix}/#"))
            # A separate publisher: rx cannot read its own PUBACKs while stalled.
            tx = await start(n, make_client(f"{prefix}-ka-tx", clean_start=True))
            for i in range(10):
                await tx.publish(f"{prefix}/k", str(i).encode(), wait_for_ack=True)
            await trio.sleep(3)  # several keepalive periods with the socket unread
            got = []
            for _ in range(10):
                m = await receive(rx)
                got.append(m.payload)
                rx.ack(m)
            assert got == [str(i).encode() for i in range(10)]
            assert rx.generation == 1 and rx.connected
            n.cancel_scope.cancel()


async def test_unacked_window_stops_reading_until_acks_make_room(prefix: str) -> None:
    """``max_unacked``: the reader holds at most that many unacknowledged messages, whatever the broker sends.

    The channel (1,024) and Receive Maximum (1,000) would both let 300 in; the
    window lets in 10, and every ack lets in as many more. Nothing is lost or
    reordered, and the window survives keepalives with the socket unread.
    """

    class FastMisc(TrioMqttClient):
        MISC_INTERVAL_S = 0.1

    count, window = 300, 10
    with trio.fail_after(15):
        async with trio.open_nursery() as n:
            rx = await start(n, make_client(f"{prefix}-win", FastMisc, clean_start=True, keepalive=1,
                                            max_unacked=window), subscriber(f"{prefix}/#"))
            tx = await start(n, make_client(f"{prefix}-win-tx", clean_start=True))
            for i in range(count):
                await tx.publish(f"{prefix}/w", str(i).encode())
            await tx.publish(f"{prefix}/end", b"", wait_for_ack=True)

            await trio.sleep(1.5)  # keepalive periods with the window shut and the socket unread
            assert (rx.stats.received, rx.unacked) == (window, window)
            assert rx.stats.window_waits >= 1 and rx.connected and rx.generation == 1

            got: list[bytes] = []
            held = []
            while len(got) < count + 1:
                m = await receive(rx)
                got.append(m.payload)
                held.append(m)
                assert rx.stats.received - rx.stats.acked <= window
                if len(held) == 4:  # acks in batches, as the hub's writer does
                    rx.ack_many(held)
                    held = []
            rx.ack_many(held)
            assert got == [str(i).encode() for i in range(count)] + [b""]
            assert rx.unacked == 0 and rx.generation == 1
            n.cancel_scope.cancel()


async def test_unacked_window_starts_again_on_a_new_connection(prefix: str) -> None:
    """Messages left unacked by a dropped connection are the broker's to redeliver: the count starts at 0."""
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            rx = await start(n, make_client(f"{prefix}-win2", clean_start=True, max_unacked=3),
                             subscriber(f"{prefix}/#"))
            tx = await start(n, make_client(f"{prefix}-win2-tx", clean_start=True))
            for i in range(5):
                await tx.publish(f"{prefix}/w", str(i).encode(), wait_for_ack=True)
            await wait_until(lambda: rx.unacked == 3)
            drop_socket(rx)
            await wait_until(lambda: rx.generation == 2 and rx.connected)
            got = []
            while len(got) < 5:
                m = await receive(rx)
                if m.generation == 2:  # the first connection's three are stale: redelivered here
                    got.append(m.payload)
                    rx.ack(m)
            assert sorted(got) == [str(i).encode() for i in range(5)]
            await wait_until(lambda: rx.unacked == 0)
            n.cancel_scope.cancel()


def test_max_unacked_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_unacked"):
        TrioMqttClient(host="127.0.0.1", client_id="x", max_unacked=0)


async def test_publish_with_mqtt5_properties_arrives_whole(prefix: str) -> None:
    """The receive path skips a PUBLISH's properties unread (here the Message Expiry the broker forwards)."""
    with trio.fail_after(6):
        async with trio.open_nursery() as n:
            rx = await start(n, make_client(f"{prefix}-props", clean_start=True), subscriber(f"{prefix}/#"))
            tx = await start(n, make_client(f"{prefix}-props-tx", clean_start=True))
            await tx.publish(f"{prefix}/é", b"\x00payload\xff", message_expiry_s=60, wait_for_ack=True)
            m = await receive(rx)
            assert (m.topic, m.payload, m.qos, m.retain) == (f"{prefix}/é", b"\x00payload\xff", 1, False)
            rx.ack(m)
            n.cancel_scope.cancel()


@pytest.mark.parametrize("packet", [b"\x00", b"\x00\x09abc", b"\x00\x01a", b"\x00\x01a\x00\x01\x05"],
                         ids=["no topic length", "topic past the end", "no packet id", "properties past the end"])
def test_a_truncated_publish_is_a_protocol_error(packet: bytes) -> None:
    """PahoClient's own PUBLISH parser refuses what does not fit (paho then drops the connection)."""
    import paho.mqtt.client as paho_mqtt

    from hub.mqtt._paho import PahoClient

    client = PahoClient(paho_mqtt.CallbackAPIVersion.VERSION2, client_id="x", protocol=paho_mqtt.MQTTv5)
    got: list[tuple] = []
    client.on_fast_publish = lambda *args: got.append(args)
    client._in_packet = {**client._in_packet, "command": 0x32, "packet": bytearray(packet)}  # QoS 1 PUBLISH
    with pytest.raises(paho_mqtt.MalformedPacket):
        client._handle_publish()
    assert got == []


def test_buffered_reads_give_short_reads_and_never_count_below_zero() -> None:
    """PahoClient serves paho's reads from one recv(); a read past what is buffered is short, as recv()'s are.

    (A read past the end once left the count negative: "data in hand" forever,
    and the reader spun without yielding once the stream stopped.)
    """
    import paho.mqtt.client as paho_mqtt

    from hub.mqtt._paho import PahoClient

    client = PahoClient(paho_mqtt.CallbackAPIVersion.VERSION2, client_id="x", protocol=paho_mqtt.MQTTv5)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        client._sock = ours
        theirs.sendall(b"0123456789")
        assert client._sock_recv(4) == b"0123" and client.buffered() == 6
        assert client._sock_recv(100) == b"456789" and client.buffered() == 0
        with pytest.raises(BlockingIOError):
            client._sock_recv(1)
        assert client.buffered() == 0
        client._sock = None
