"""TrioMqttClient: one paho-mqtt 2.x client driven from trio socket waits.

Why this shape (prototype measurements that preceded this module): waking
on ``trio.lowlevel.wait_readable`` and calling ``loop_read()`` until the
socket is drained reached 50-68k msg/s; handing work across threads
(loop_start, aiomqtt-style bridges) was 2-7x slower. With MQTT 5 decoding and
a PUBACK per message, bench/mqtt_receive.py is on par with plain paho's own
loop() on the same box: paho's decode, not the trio driving, was the floor.
So PahoClient (hub/mqtt/_paho.py) now reads 64 KiB per recv() and parses QoS
0/1 PUBLISH packets itself: 52-55 -> 18 us of CPU per received and acked
message (docs/performance.md). So everything -- paho calls, paho
callbacks, our bookkeeping -- runs on the trio thread, and paho's internal
locks are never contended.

Concurrency model: all public methods are for trio tasks of the trio run that
runs ``run()``; none is thread-safe. paho callbacks only fire synchronously
inside our own paho calls, so they never interleave with other trio code.
"""

from __future__ import annotations

import logging
import random
import select
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

import paho.mqtt.client as mqtt
import trio
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ._paho import PahoClient, open_tcp_socket
from ._tls import NO_CLIENT_CERT_HINT, describe_tls_error, start_tls
from ._types import (
    InboundMessage,
    MqttError,
    MqttNotConnected,
    MqttStats,
    MqttSubscribeRefused,
)

log = logging.getLogger("hub.mqtt")

_OK = mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
_QUEUE_FULL = mqtt.MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
_NO_CONN = mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
# The peer closed (or reset) the connection; POLLRDHUP is Linux's "peer shut down writing".
_HANGUP = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)
#: Bytes of a SUBSCRIBE/UNSUBSCRIBE besides its filters: fixed header (at most 5), packet id (2),
#: empty MQTT 5 properties (1).
_SUBSCRIBE_HEADER_BYTES = 8

OnConnect = Callable[["TrioMqttClient"], Awaitable[None]]


def _chunk_filters(filters: list[str], bytes_per_filter: int, max_filters: int, max_bytes: int) -> list[list[str]]:
    """Consecutive runs of ``filters``, each at most ``max_filters`` long and ``max_bytes`` as a packet.

    A single filter over ``max_bytes`` still gets a packet of its own: the broker judges it.
    """
    chunks: list[list[str]] = []
    chunk: list[str] = []
    size = _SUBSCRIBE_HEADER_BYTES
    for topic_filter in filters:
        n = len(topic_filter.encode()) + bytes_per_filter
        if chunk and (len(chunk) >= max_filters or size + n > max_bytes):
            chunks.append(chunk)
            chunk, size = [], _SUBSCRIBE_HEADER_BYTES
        chunk.append(topic_filter)
        size += n
    if chunk:
        chunks.append(chunk)
    return chunks


class _ConnectionEnded(Exception):
    """Internal: the current connection attempt or connection is over; retry."""


class _Waiter:
    """A one-shot result slot for a task waiting on a paho callback."""

    __slots__ = ("event", "qos", "error", "reason_codes")

    def __init__(self, qos: int = 1) -> None:
        self.event = trio.Event()
        self.qos = qos
        self.error: BaseException | None = None
        self.reason_codes: list[ReasonCode] = []

    def fail(self, error: BaseException) -> None:
        if not self.event.is_set():
            self.error = error
            self.event.set()


class TrioMqttClient:
    """An MQTT 5 client for trio: persistent session, manual acks, backpressure.

    ``protocol="3.1.1"`` speaks MQTT 3.1.1 instead, for brokers without MQTT 5
    (the embedded amqtt fallback). Same contract -- persistent session
    (Clean Session 0), manual acks, Last Will, backpressure,
    generation-tagged acks -- minus what only MQTT 5 can say:

    - no ReceiveMaximum: how many unacked QoS 1 messages the broker sends us
      at once is the broker's own inflight limit, not ``receive_maximum``
      (our backpressure still holds: a full ``messages`` channel stops
      reading the socket, and TCP slows the broker);
    - no Session Expiry Interval: ``session_expiry_s`` is not sent; the
      session persists until the broker forgets it (for amqtt: its restart);
    - no properties or PUBACK reason codes: ``message_expiry_s`` of
      ``publish()`` is ignored, and a broker cannot refuse one publish
      (``MqttError``), only drop it or disconnect;
    - no "clean on the first connect only": a 3.1.1 Clean Session 1 session
      ends with its connection. So ``clean_start=True`` sends Clean Session 1
      on every connect and nothing survives a reconnect (unacked messages
      are not redelivered) -- fine for short-lived clients (tools, tests),
      which then leave no never-expiring session behind in the broker. The
      hub uses the default ``clean_start=False``: Clean Session 0 always.
    - no Maximum Packet Size: ``max_packet_size`` is not sent, so only the
      broker's own limit (Mosquitto ``max_packet_size``) bounds what we read.

    ``tls``: an ``ssl.SSLContext`` (``client_tls_context()``) makes every
    connection TLS (``mqtts://``, usually port 8883); the broker's certificate
    must match ``host``. The handshake runs on the trio loop, non-blocking,
    inside ``CONNECT_TIMEOUT_S``; a failed one (untrusted certificate, wrong
    host name, client certificate refused) is logged with its reason and
    retried like any connection failure.

    ``max_unacked``: at most this many QoS 1/2 messages of the connection
    read and not yet acknowledged; at the limit the reader stops reading the
    socket until ``ack``/``ack_many`` makes room, so TCP pushes back on the
    broker. Unlike Receive Maximum (which Mosquitto 2.0 stops honouring after
    the first PUBACK, and which 3.1.1 cannot say) it holds whatever the broker
    does, and it bounds what a consumer holds: the channel, and every queue
    behind it until the ack. A consumer that never acks a message must drop
    the connection (a reconnect starts the count again), or the window
    closes for good. ``None``: no such bound.

    ``max_packet_size`` (MQTT 5): the Maximum Packet Size sent in CONNECT.
    The broker must not send us a larger packet; Mosquitto drops such a
    message for this client (QoS 1 included: the publisher got its PUBACK,
    we get nothing, see docs/mqtt-tls.md), so size it above any legitimate
    message and let the broker refuse oversize publishes at the source.

    ``inbound``: a send channel shared by several clients (a worker's partition
    sessions feed one ingress): the messages go there instead of to ``messages``,
    each with ``InboundMessage.client`` naming the client that must ack it. Every
    client still stops reading at a full channel and at its own ``max_unacked``.

    A session may move to another process (a partition's session, to its
    new owner): the broker then closes this connection, with DISCONNECT 0x8E
    only from Mosquitto 2.0.15 on; before, it looks like any loss, and reconnecting would take the session back (two such
    clients fight over it for as long as both run). ``run(before_reconnect=...)``
    is where the owner asks whether it still holds the session.

    Lifecycle: construct, then run ``run()`` in a nursery (usually via
    ``await nursery.start(client.run, on_connect=...)``); cancel it to stop.
    The object is single-use: ``run()`` may be called once; when it ends the
    ``messages`` channel is closed so consumers see ``EndOfChannel``.

    Tunables that are not part of the constructor contract are class
    attributes; override them on a subclass or on the instance before
    ``run()`` (``MAX_QUEUED_MESSAGES`` before construction, i.e. subclass).
    """

    CONNECT_TIMEOUT_S: float = 10.0  # TCP connect + CONNACK
    DISCONNECT_TIMEOUT_S: float = 1.0  # shielded DISCONNECT on shutdown
    BACKOFF_MIN_S: float = 0.1
    BACKOFF_MAX_S: float = 5.0
    MISC_INTERVAL_S: float = 1.0  # loop_misc cadence (keepalive)
    MAX_DRAIN_BATCH: int = 256  # bounds memory held outside the channel
    # paho counts in-flight *and* waiting QoS>0 messages against this; beyond
    # it publish() waits instead of growing an unbounded queue.
    MAX_QUEUED_MESSAGES: int = 1000
    # subscribe_many/unsubscribe_many: filters per packet, and bytes per packet -- a broker drops a
    # client whose packet exceeds its limit (Mosquitto max_packet_size; the hub's generated config:
    # hub.core.config.MQTT_MAX_PACKET_SIZE, 18 KiB). 8 KiB: about 80 of the longest device topics.
    MAX_FILTERS_PER_PACKET: int = 200
    MAX_SUBSCRIBE_PACKET_BYTES: int = 8192

    def __init__(
        self,
        *,
        host: str,
        port: int = 1883,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 30,
        session_expiry_s: int = 3600,
        receive_maximum: int = 1000,
        max_inflight: int = 50,
        inbound_capacity: int = 1024,
        clean_start: bool = False,
        will: tuple[str, bytes, int, bool] | None = None,
        protocol: str = "5",
        tls: ssl.SSLContext | None = None,
        max_packet_size: int | None = None,
        max_unacked: int | None = None,
        inbound: trio.MemorySendChannel[InboundMessage] | None = None,
    ) -> None:
        if max_unacked is not None and max_unacked < 1:
            raise ValueError(f"max_unacked must be at least 1, got {max_unacked}")
        if max_packet_size is not None and not 0 < max_packet_size <= 268_435_460:
            raise ValueError(f"max_packet_size must be 1..268435460 (MQTT's own limit), got {max_packet_size}")
        if protocol not in ("5", "3.1.1"):
            raise ValueError(f"protocol must be '5' or '3.1.1', got {protocol!r}")
        if not client_id:
            # A persistent session is keyed by client id; an empty one would
            # get a fresh broker-assigned id (and session) on every connect.
            raise ValueError("client_id is required")
        self._host = host
        self._port = port
        self._tls = tls
        self.client_id = client_id
        #: "5" or "3.1.1", as given to the constructor.
        self.protocol = protocol
        self._v5 = protocol == "5"

        paho = PahoClient(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            # paho 2.x: MQTT 3.1.1 takes Clean Session here, sent on every
            # CONNECT (MQTT 5 must not: it gets clean_start in connect_async).
            clean_session=None if self._v5 else clean_start,
            manual_ack=True,
            # we own reconnection; paho must not try anything on its own
            reconnect_on_failure=False,
        )
        # Must happen while paho's connection is "closed" (before connect_async).
        paho.max_inflight_messages_set(max_inflight)
        paho.max_queued_messages_set(max(self.MAX_QUEUED_MESSAGES, max_inflight))
        if username is not None:
            paho.username_pw_set(username, password)
        if will is not None:
            w_topic, w_payload, w_qos, w_retain = will
            paho.will_set(w_topic, w_payload, w_qos, w_retain)
        paho.enable_logger(logging.getLogger("hub.mqtt.paho"))

        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry_s
            props.ReceiveMaximum = receive_maximum
            if max_packet_size is not None:
                props.MaximumPacketSize = max_packet_size
            # clean_start=True means "start this client with an empty session",
            # not "throw the session away on every reconnect": a reconnect must
            # keep unacked QoS 1 messages, so later connects never clean-start.
            paho.connect_async(
                host,
                port,
                keepalive=keepalive,
                clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY if clean_start else False,
                properties=props,
            )
        else:
            # MQTT 3.1.1 CONNECT has no properties (paho raises if given any);
            # session_expiry_s, receive_maximum and max_packet_size do not apply.
            paho.connect_async(host, port, keepalive=keepalive)

        paho.on_connect = self._on_paho_connect
        paho.on_disconnect = self._on_paho_disconnect
        paho.on_message = self._on_paho_message  # QoS 2 only: QoS 0/1 take on_fast_publish
        paho.on_fast_publish = self._on_fast_publish
        paho.on_publish = self._on_paho_publish
        paho.on_subscribe = self._on_paho_subscribe
        paho.on_unsubscribe = self._on_paho_subscribe  # same shape: (mid, reason codes); UNSUBACK's mids are unique too
        paho.on_socket_close = self._on_paho_socket_close
        self._paho = paho
        self._max_inflight = max_inflight

        self._inbound_capacity = inbound_capacity
        self._max_unacked = max_unacked
        #: QoS>0 messages of the current connection read from the socket and not yet acked.
        self._unacked = 0
        #: Set by ack_many() when the unacked window has room again (the reader waits on it).
        self._window_open: trio.Event | None = None
        self._receive_channel: trio.MemoryReceiveChannel[InboundMessage] | None
        if inbound is not None:
            # A channel shared with other clients (one consumer for several sessions): this client
            # closes only its own clone when run() ends. Its capacity is the caller's.
            self._send_channel = inbound.clone()
            self._receive_channel = None
        else:
            self._send_channel, self._receive_channel = trio.open_memory_channel[InboundMessage](
                inbound_capacity
            )
        self._connected = False
        self._generation = 0
        self.stats = MqttStats()
        self._started = False

        #: The wait before the next connection attempt that drop_connection() asked for, once.
        self._reconnect_after_s: float | None = None
        #: hold_reads() was called: the reader reads nothing more (until the next connection).
        self._reads_held = False
        #: Set by ack_many() when nothing read is unacked, and when the connection is lost (wait_all_acked).
        self._all_acked: trio.Event | None = None

        # per-connection state, replaced on every attempt
        self._lost = trio.Event()
        self._connack = trio.Event()
        self._connack_reason: ReasonCode | None = None
        self._session_present = False
        self._stalled = False  # reader is blocked on a full channel
        self._had_connack_this_round = False
        self._lost_reason = ""

        self._batch: list[InboundMessage] = []
        self._write_wakeup: trio.Event | None = None
        self._room: trio.Event | None = None  # set when a PUBACK frees queue room
        #: SUBACK and UNSUBACK waiters by packet id (one id space: paho's per-client counter).
        self._suback_waiters: dict[int, _Waiter] = {}
        self._puback_waiters: dict[int, _Waiter] = {}

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and the loss of that connection."""
        return self._connected

    @property
    def unacked(self) -> int:
        """QoS 1/2 messages of the current connection read and not yet acknowledged."""
        return self._unacked

    @property
    def session_present(self) -> bool:
        """The last CONNACK's Session Present flag: the broker resumed a session of this client id
        (its subscriptions, queued and unacknowledged messages). False before the first CONNACK."""
        return self._session_present

    @property
    def generation(self) -> int:
        """Number of successful connections so far (0 before the first)."""
        return self._generation

    @property
    def messages(self) -> trio.MemoryReceiveChannel[InboundMessage]:
        """Bounded channel (``inbound_capacity``) of received messages.

        Consume from any number of trio tasks (``clone()`` it if several tasks
        should each be able to close their end). While it is full the reader
        stops reading the socket (so it does with ``max_unacked`` messages
        unacknowledged), so the broker is slowed by TCP (keepalive
        and writes, e.g. acks, carry on meanwhile). QoS 1 messages must be
        ``ack()``-ed; unacked ones are redelivered after a reconnect
        (at-least-once: expect duplicates). Closed when ``run()`` ends.

        For throughput, after one ``await receive()`` take what is already
        buffered with ``receive_nowait()``: every ``await`` is a trio scheduler
        tick, which costs about as much as decoding the message.

        A client built with ``inbound=`` has no channel of its own (``RuntimeError``):
        its messages go to that shared channel, each carrying its client for the ack.
        """
        if self._receive_channel is None:
            raise RuntimeError(f"mqtt {self.client_id}: messages go to the shared inbound channel")
        return self._receive_channel

    # -------------------------------------------------------------- main loop

    async def run(
        self,
        *,
        on_connect: OnConnect | None = None,
        before_reconnect: OnConnect | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Connect, drive I/O and reconnect forever; cancel to stop.

        Call once, from the task (or ``nursery.start``) that owns the client.
        ``task_status.started()`` fires after the first successful CONNACK and
        the first ``on_connect`` -- so ``await nursery.start(client.run, ...)``
        blocks until the client is subscribed, however long the broker takes
        to come up. ``on_connect(client)`` runs after *every* CONNACK (the
        place to subscribe); if it fails because the connection dropped, that
        is handled like any connection loss; any other exception propagates
        out of ``run()``.

        ``before_reconnect(client)`` is awaited before every attempt but the
        first, after the backoff wait; an exception from it propagates out of
        ``run()`` (the connection is already closed). The place to ask whether
        this process should still hold the session: a taken-over connection
        looks like any other loss on a broker that does not send DISCONNECT
        0x8E (Mosquitto before 2.0.15), and reconnecting would take the
        session back from its new owner.

        Connection failures never escape: they are logged on ``hub.mqtt`` and
        retried with exponential backoff (``BACKOFF_MIN_S`` doubling to
        ``BACKOFF_MAX_S``, reset by a successful connection).

        Cancellation: sends DISCONNECT (shielded, at most
        ``DISCONNECT_TIMEOUT_S``) so the broker does not publish the Will,
        closes the socket and the ``messages`` channel, then re-raises.
        """
        if self._started:
            raise RuntimeError("TrioMqttClient.run() may only be called once")
        self._started = True

        started = False

        def mark_started() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        delay = self.BACKOFF_MIN_S
        try:
            while True:
                try:
                    await self._one_connection(on_connect, mark_started)
                except _ConnectionEnded as exc:
                    if self._had_connack_this_round:
                        delay = self.BACKOFF_MIN_S
                    log.warning(
                        "mqtt %s@%s:%s: %s; retrying in %.1fs",
                        self.client_id, self._host, self._port, exc, delay,
                    )
                if self._reconnect_after_s is not None:
                    # drop_connection() asked for this wait instead of the backoff's.
                    delay, self._reconnect_after_s = self._reconnect_after_s, None
                # Jitter so many clients do not stampede a restarted broker.
                await trio.sleep(delay * random.uniform(0.8, 1.0))
                if before_reconnect is not None:
                    await before_reconnect(self)
                delay = min(delay * 2, self.BACKOFF_MAX_S)
        finally:
            self._send_channel.close()

    async def _one_connection(self, on_connect: OnConnect | None, mark_started: Callable[[], None]) -> None:
        """One attempt: connect, serve until lost. Always raises _ConnectionEnded
        (or Cancelled / a user exception from on_connect)."""
        self._had_connack_this_round = False
        self._lost = trio.Event()
        self._connack = trio.Event()
        self._connack_reason = None
        # Packet ids are per connection: what the last one left unacked is the broker's to redeliver.
        self._unacked = 0
        self._window_open = None
        self._reads_held = False
        deadline = trio.current_time() + self.CONNECT_TIMEOUT_S

        try:
            with trio.fail_after(self.CONNECT_TIMEOUT_S):
                sock = await open_tcp_socket(self._host, self._port)
        except (OSError, trio.TooSlowError) as exc:
            self.stats.connect_failures += 1
            raise _ConnectionEnded(f"TCP connect failed: {exc!r}") from None
        if self._tls is not None:
            try:
                with trio.fail_at(deadline):
                    sock = await start_tls(sock, self._tls, self._host)
            except (OSError, trio.TooSlowError) as exc:  # ssl.SSLError is an OSError
                self.stats.connect_failures += 1
                raise _ConnectionEnded(describe_tls_error(exc)) from None

        graceful = True
        try:
            rc = self._paho.reconnect_with(sock)  # queues + writes CONNECT
            if rc != _OK:
                self.stats.connect_failures += 1
                raise _ConnectionEnded(self._read_error(rc, "sending CONNECT"))

            user_error: BaseException | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, sock)
                nursery.start_soon(self._writer, sock)
                nursery.start_soon(self._misc, sock)

                with trio.move_on_at(deadline):
                    await self._connack.wait()
                if not self._connected:
                    nursery.cancel_scope.cancel()
                else:
                    self._had_connack_this_round = True
                    try:
                        if on_connect is not None:
                            await on_connect(self)
                    except Exception as exc:
                        if not self._lost.is_set():
                            user_error = exc
                            graceful = False
                        else:
                            log.info("on_connect interrupted by connection loss: %r", exc)
                    else:
                        mark_started()
                    if user_error is None:
                        await self._lost.wait()
                    nursery.cancel_scope.cancel()

            if user_error is not None:
                raise user_error
            if not self._had_connack_this_round:
                self.stats.connect_failures += 1
                if self._connack_reason is not None:
                    raise _ConnectionEnded(f"broker refused connection: {self._connack_reason}")
                if self._lost.is_set():
                    hint = f"; {NO_CLIENT_CERT_HINT}" if self._tls and "TLS" not in self._lost_reason else ""
                    raise _ConnectionEnded(f"connection closed before CONNACK ({self._lost_reason}{hint})")
                raise _ConnectionEnded("no CONNACK within timeout")
            raise _ConnectionEnded(f"connection lost: {self._lost_reason}")
        except BaseException as exc:
            # Bugs in our own tasks arrive as ExceptionGroups: let the broker
            # publish the Will for those too.
            if not isinstance(exc, (_ConnectionEnded, trio.Cancelled)) and not (
                isinstance(exc, BaseExceptionGroup)
                and exc.split(trio.Cancelled)[1] is None
            ):
                graceful = False
            raise
        finally:
            await self._teardown(graceful)

    async def _teardown(self, graceful: bool) -> None:
        """Say goodbye if still connected, then make sure the socket is closed."""
        paho = self._paho
        # A 3.1.1 DISCONNECT always discards the Will (there is no reason
        # code 0x04): after a crash just close the socket, so the broker
        # publishes the Will as for a dead link.
        say_goodbye = self._connected and (graceful or self._v5)
        with trio.CancelScope(shield=True), trio.move_on_after(self.DISCONNECT_TIMEOUT_S):
            if say_goodbye and paho.socket() is not None:
                # Reason 0x04 keeps the Will: after a crash the devices/UI
                # should learn we are gone, as if the socket had died.
                reason = ReasonCode(PacketTypes.DISCONNECT, identifier=0 if graceful else 4)
                paho.disconnect(reasoncode=reason)  # writes directly if it can
                while (sock := paho.socket()) is not None and paho.want_write():
                    try:
                        await trio.lowlevel.wait_writable(sock)
                    except (trio.ClosedResourceError, OSError, ValueError):
                        break
                    if paho.loop_write() != _OK:
                        break
        if paho.socket() is not None:
            paho.force_close()
        self._mark_lost("closed")

    # ------------------------------------------------------- per-connection tasks

    async def _reader(self, sock: socket.socket) -> None:
        """Read until drained, then hand the batch to the channel.

        paho's loop_read() returns SUCCESS both on EAGAIN and after its
        max_packets, so "drained" is decided here: a call that delivered a
        message means "maybe more, call again"; a call that delivered nothing
        (EAGAIN, or a non-PUBLISH packet such as PUBACK/PINGRESP) is followed
        by a zero-timeout poll(). The kernel's readability is not the whole
        story: PahoClient reads up to RECV_CHUNK bytes per recv() and serves
        paho's small reads from them, so packets may sit in its buffer
        (``buffered()``) while the socket polls unreadable; "drained" requires
        that buffer empty, and while it is not the next drain starts without
        waiting (the same holds when the drain stopped at ``max_batch`` or the
        ``max_unacked`` window).

        Under TLS the same happens one layer down: OpenSSL pulls a whole record (up to 16 KiB) out of
        the kernel and hands paho only the few bytes it asks for, so the rest
        of the record -- often many small MQTT packets, when the broker or a
        TLS-terminating proxy coalesces its writes -- sits decrypted inside the
        SSL object while the socket polls unreadable. Waiting for readability
        then stalls with data in hand until the broker happens to send more (a
        PINGRESP: up to a keepalive). So "drained" also requires
        ``SSLSocket.pending() == 0``, and while it is not, the next drain
        starts without waiting. (Python leaves OpenSSL's read-ahead off, so no
        undecrypted record can hide there: ``pending()`` is the whole story.)
        """
        paho = self._paho
        batch = self._batch
        batch.clear()
        send_nowait = self._send_channel.send_nowait
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        # Bytes in hand that poll() cannot see: what PahoClient read ahead (one recv() of
        # RECV_CHUNK serves many packets) and, under TLS, decrypted bytes held by the SSL object.
        buffered = paho.buffered
        tls_pending: Callable[[], int] = (
            (lambda: buffered() or sock.pending()) if isinstance(sock, ssl.SSLSocket) else buffered)
        # Holding more outside the channel than the channel itself holds
        # would just move the buffer from the kernel into our heap.
        max_batch = max(1, min(self.MAX_DRAIN_BATCH, self._inbound_capacity))
        window = self._max_unacked
        try:
            while True:
                if paho.socket() is not sock:
                    # paho closed it (error inside some other paho call);
                    # waiting on a closed fd is invalid.
                    self._mark_lost("socket closed by paho")
                    return
                if self._reads_held:
                    # hold_reads(): nothing more is read on this connection; acks still go out.
                    self._stalled = True  # a PINGRESP may sit unread: see _misc
                    await trio.sleep_forever()
                if tls_pending():
                    # Data already in hand (the last drain stopped at max_batch):
                    # no wait, but still one checkpoint per drain.
                    await trio.lowlevel.checkpoint()
                else:
                    await trio.lowlevel.wait_readable(sock)
                while True:
                    before = len(batch)
                    rc = paho.loop_read()
                    if rc != _OK:
                        self._mark_lost(self._read_error(rc))
                        return
                    n = len(batch)
                    if n >= max_batch or (window is not None and self._unacked >= window):
                        break
                    if n == before and not tls_pending() and not poller.poll(0):
                        break
                self._kick_writer()  # loop_read may have queued PUBREC/PINGRESP
                if _QUICKACK is not None:
                    # Mosquitto does not set TCP_NODELAY: a PUBACK followed by
                    # a small PUBLISH to us is held by its Nagle until our
                    # (delayed, ~40 ms) TCP ACK. Linux drops quick-ack mode
                    # again by itself, hence per drain (measured 44 ms -> 0.4 ms
                    # per publish+receive round trip).
                    sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
                if batch:
                    # send_nowait first: one checkpoint per drain instead of
                    # one per message while the consumer keeps up.
                    for i, msg in enumerate(batch):
                        try:
                            send_nowait(msg)
                        except trio.WouldBlock:
                            self._stalled = True
                            try:
                                for m in batch[i:]:
                                    await self._send_channel.send(m)
                            finally:
                                self._stalled = False
                            break
                    batch.clear()
                if window is not None and self._unacked >= window:
                    await self._wait_for_window(window)
        except (trio.ClosedResourceError, OSError, ValueError) as exc:
            # ValueError: fd already -1 (closed behind our back)
            self._mark_lost(f"read: {exc!r}")
        except trio.BrokenResourceError:
            # Every consumer closed its end: nothing will ever ack, so keep
            # nothing; the broker keeps the unacked messages for later.
            log.error("mqtt %s: messages channel closed by consumers; dropping connection", self.client_id)
            self._mark_lost("consumers gone")

    async def _wait_for_window(self, window: int) -> None:
        """Leave the socket unread while ``window`` messages are unacked (``max_unacked``).

        This is what bounds the hub's memory whatever the broker does:
        Mosquitto 2.0 honours Receive Maximum only until the first PUBACK,
        then sends a whole backlog. Unread, the kernel's receive buffer fills
        and TCP slows the broker. ``ack_many`` opens the window again.
        """
        self._stalled = True  # a PINGRESP may sit unread behind the PUBLISHes: see _misc
        self.stats.window_waits += 1
        try:
            while self._unacked >= window:
                self._window_open = trio.Event()
                await self._window_open.wait()
        finally:
            self._window_open = None
            self._stalled = False

    async def _writer(self, sock: socket.socket) -> None:
        """Flush what paho could not write directly (socket buffer full).

        paho writes packets immediately from publish()/ack() when the socket
        accepts them; only leftovers wait here for writability.
        """
        paho = self._paho
        try:
            while True:
                self._write_wakeup = trio.Event()
                if not paho.want_write():
                    await self._write_wakeup.wait()
                    continue
                if paho.socket() is not sock:
                    # paho closed it while a packet was pending: e.g. a direct
                    # write from publish() hit EPIPE.
                    self._mark_lost("socket closed by paho")
                    return
                await trio.lowlevel.wait_writable(sock)
                rc = paho.loop_write()
                if rc != _OK:
                    self._mark_lost(self._read_error(rc, "write"))
                    return
        except (trio.ClosedResourceError, OSError, ValueError) as exc:
            self._mark_lost(f"write: {exc!r}")
        finally:
            self._write_wakeup = None

    async def _misc(self, sock: socket.socket) -> None:
        """Keepalive (PINGREQ / PINGRESP timeout) via paho's loop_misc(); a hang-up seen while stalled."""
        paho = self._paho
        hangup = select.poll()
        hangup.register(sock.fileno(), _HANGUP)
        while True:
            await trio.sleep(self.MISC_INTERVAL_S)
            if sock.fileno() == -1:
                # Closed behind paho's back (not through paho): trio was not
                # told, so the reader may never wake up. Treat it as lost.
                self._mark_lost("socket closed externally")
                return
            if self._stalled:
                paho.forget_pending_ping()
                # Not reading, we would not see the connection end (EOF sits behind the
                # unread PUBLISHes): ask the kernel whether the peer hung up.
                if hangup.poll(0):
                    self._mark_lost("connection closed by the peer while not reading")
                    return
            rc = paho.loop_misc()
            if rc != _OK:
                self._mark_lost(f"keepalive: {mqtt.error_string(rc)}")
                return
            self._kick_writer()

    def _read_error(self, rc: mqtt.MQTTErrorCode, what: str = "read") -> str:
        tls_error = self._paho.last_tls_error
        if tls_error is not None:
            # e.g. "tlsv13 alert certificate required": the broker wants a client certificate.
            return f"{what}: {describe_tls_error(tls_error)}"
        return f"{what}: {mqtt.error_string(rc)}"

    def _kick_writer(self) -> None:
        if self._write_wakeup is not None and self._paho.want_write():
            self._write_wakeup.set()

    def _mark_lost(self, reason: str) -> None:
        if self._lost.is_set():
            return
        self._lost_reason = reason
        self._connected = False
        self._lost.set()
        self._connack.set()
        if self._all_acked is not None:
            self._all_acked.set()  # wait_all_acked: nothing more can be acked on this connection
        err = MqttNotConnected(f"connection lost: {reason}")
        for w in self._suback_waiters.values():
            w.fail(err)
        self._suback_waiters.clear()
        # QoS>0 publishes survive: paho resends them after the reconnect. A
        # QoS 0 one not yet written is gone (paho drops it in reconnect()).
        for mid, w in list(self._puback_waiters.items()):
            if w.qos == 0:
                w.fail(err)
                del self._puback_waiters[mid]

    # --------------------------------------------------------- paho callbacks
    # Called synchronously inside our paho calls, on the trio thread. They
    # must not block or await; they only record results and set events.

    def _on_paho_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._connack_reason = reason_code
            self._connack.set()
            return
        self._generation += 1
        if self._generation > 1:
            self.stats.reconnects += 1
        self._connected = True
        self._session_present = bool(flags.session_present)
        server_rm = getattr(properties, "ReceiveMaximum", None)
        log.info(
            "mqtt %s connected to %s:%s (generation %d, session_present=%s)",
            self.client_id, self._host, self._port, self._generation, self._session_present,
        )
        if server_rm is not None and server_rm < self._max_inflight:
            log.debug("broker ReceiveMaximum %s < max_inflight %s", server_rm, self._max_inflight)
        self._connack.set()

    def _on_paho_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        tls_error = self._paho.last_tls_error
        # paho reports a TLS alert (e.g. "certificate required") as "Unspecified error".
        self._mark_lost(describe_tls_error(tls_error) if tls_error is not None else str(reason_code))

    def _on_paho_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            # Cannot be routed; ack it so it does not come back forever.
            log.warning("mqtt: dropping message with non-UTF-8 topic")
            if message.qos:
                client.ack(message.mid, message.qos)
            return
        self.stats.received += 1
        if message.qos:
            self._unacked += 1
        self._batch.append(
            InboundMessage(
                # paho types payload bytes | bytearray for outgoing messages; an inbound one
                # comes from struct.unpack, always bytes. No cast: this runs per message.
                topic, message.payload, message.qos, bool(message.retain),  # type: ignore[arg-type]
                message.mid, self._generation, time.time(), self,
            )
        )

    def _on_fast_publish(self, topic: bytes, payload: bytes, qos: int, retain: bool, mid: int) -> None:
        # The per-message path (a QoS 0/1 PUBLISH parsed by PahoClient): as _on_paho_message, minus paho's objects.
        try:
            text = topic.decode()
        except UnicodeDecodeError:
            log.warning("mqtt: dropping message with non-UTF-8 topic")
            if qos:
                self._paho.ack(mid, qos)
            return
        self.stats.received += 1
        if qos:
            self._unacked += 1
        self._batch.append(InboundMessage(text, payload, qos, retain, mid, self._generation, time.time(), self))

    def _on_paho_publish(self, client, userdata, mid, reason_code, properties) -> None:
        room = self._room
        if room is not None:
            self._room = None
            room.set()
        w = self._puback_waiters.pop(mid, None)
        if w is not None:
            if reason_code.is_failure:
                w.error = MqttError(f"publish refused by broker: {reason_code}")
            w.event.set()
        elif reason_code.is_failure:
            log.warning("mqtt: publish mid %s refused by broker: %s", mid, reason_code)

    def _on_paho_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        w = self._suback_waiters.pop(mid, None)
        if w is not None:
            w.reason_codes = list(reason_codes)
            w.event.set()

    def _on_paho_socket_close(self, client, userdata, sock) -> None:
        # paho closes the socket itself on errors; tell trio first so tasks
        # parked in wait_readable/wait_writable wake with ClosedResourceError
        # instead of waiting on a dead (and soon reused) fd number.
        if sock.fileno() != -1:
            try:
                trio.lowlevel.notify_closing(sock)
            except RuntimeError:
                pass  # outside trio (paho's __del__): nobody can be waiting

    # ------------------------------------------------------------- public ops

    async def subscribe(self, topic_filter: str, qos: int = 1) -> None:
        """Subscribe and wait for the SUBACK: ``subscribe_many([topic_filter], qos)``.

        Any trio task of the run; usually called from ``on_connect``. Blocks
        until the SUBACK arrives. Raises ``MqttNotConnected`` if there is no
        connection or it is lost before the SUBACK, ``MqttSubscribeRefused``
        (an ``MqttError``) if the broker refuses the filter. Cancelling stops
        the wait only: the SUBSCRIBE may already be on the wire and take effect.
        """
        await self.subscribe_many([topic_filter], qos)

    async def subscribe_many(self, topic_filters: Sequence[str], qos: int = 1) -> None:
        """Subscribe to every filter, many per SUBSCRIBE packet, and wait for every SUBACK.

        Any trio task of the run; same contract as ``subscribe``. The filters
        go out in as few packets as ``MAX_FILTERS_PER_PACKET`` and
        ``MAX_SUBSCRIBE_PACKET_BYTES`` allow (a broker drops a client whose
        packet is over its limit), all written before the first SUBACK is
        awaited: one round trip for the lot. If the broker refuses some
        filters (reason code >= 0x80, e.g. 0x87 from an ACL), the others are
        still in force and ``MqttSubscribeRefused`` names the refused ones.
        ``MqttNotConnected``: no connection, or lost before every SUBACK came
        back (then some filters may be in force: subscribe again, it is
        idempotent). An empty ``topic_filters`` does nothing. ``ValueError``
        (from paho): a malformed filter; the packets before its own may have
        gone out. Cancelling stops the wait only.
        """
        # (filter, qos) pairs: paho makes them SubscribeOptions(qos=qos) for MQTT 5, plain QoS bytes for 3.1.1.
        await self._send_and_confirm(
            "subscribe", topic_filters, 3,
            lambda chunk: self._paho.subscribe([(f, qos) for f in chunk]))

    async def unsubscribe_many(self, topic_filters: Sequence[str]) -> None:
        """Unsubscribe from every filter, many per UNSUBSCRIBE packet, and wait for every UNSUBACK.

        Any trio task of the run; packets and errors as ``subscribe_many``.
        Messages already queued for the session under these filters may still
        arrive afterwards. A filter that was not subscribed is no error (MQTT
        5 answers 0x11 "No subscription existed"; 3.1.1 says nothing per
        filter).
        """
        await self._send_and_confirm(
            "unsubscribe", topic_filters, 2, lambda chunk: self._paho.unsubscribe(chunk))

    async def _send_and_confirm(
        self,
        what: str,
        topic_filters: Sequence[str],
        bytes_per_filter: int,
        send: Callable[[list[str]], tuple[mqtt.MQTTErrorCode, int | None]],
    ) -> None:
        """SUBSCRIBE/UNSUBSCRIBE ``topic_filters`` in chunks, then wait for each chunk's ack and judge it.

        ``bytes_per_filter``: what a filter adds to the packet besides its
        UTF-8 (the 2-byte length, and for SUBSCRIBE the options byte).
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        filters = list(topic_filters)
        if not filters:
            return
        if not self._connected:
            raise MqttNotConnected(f"cannot {what} {len(filters)} filter(s): not connected")
        chunks = _chunk_filters(filters, bytes_per_filter, self.MAX_FILTERS_PER_PACKET,
                                self.MAX_SUBSCRIBE_PACKET_BYTES)
        pending: list[tuple[list[str], int, _Waiter]] = []
        try:
            # No checkpoint in this loop: the connection cannot change under it, except by a
            # direct write failing inside paho, which fails the waiters already registered.
            for chunk in chunks:
                rc, mid = send(chunk)
                if rc != _OK or mid is None:
                    raise MqttNotConnected(f"{what} {chunk[0]!r}...: {mqtt.error_string(rc)}")
                w = self._suback_waiters[mid] = _Waiter()
                pending.append((chunk, mid, w))
            self._kick_writer()
            for _, _, w in pending:
                await w.event.wait()
        finally:
            for _, mid, _ in pending:
                self._suback_waiters.pop(mid, None)
        refused: dict[str, int] = {}
        for chunk, _, w in pending:
            if w.error is not None:
                raise w.error
            codes = w.reason_codes
            if what == "subscribe" or self._v5:  # a 3.1.1 UNSUBACK carries no codes
                if len(codes) != len(chunk):
                    raise MqttError(f"{what}: the broker answered {len(codes)} reason codes for {len(chunk)} filters")
                refused.update((f, rc.value) for f, rc in zip(chunk, codes) if rc.is_failure)
        if refused:
            shown = ", ".join(f"{f!r} (0x{code:02X})" for f, code in list(refused.items())[:5])
            more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
            raise MqttSubscribeRefused(
                f"{what} refused by the broker for {len(refused)} of {len(filters)} filter(s): {shown}{more}",
                refused)

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        message_expiry_s: int | None = None,
        wait_for_ack: bool = False,
    ) -> None:
        """Publish a message.

        Any trio task of the run; also allowed while disconnected: QoS 1/2
        messages are queued and sent after the next CONNACK (paho keeps them
        in order and resends unacknowledged ones with DUP). QoS 0 while
        disconnected is dropped (counted in ``stats.dropped_qos0``), or raises
        ``MqttNotConnected`` with ``wait_for_ack``.

        Blocks only while paho's queue is full (``MAX_QUEUED_MESSAGES``
        unacknowledged QoS>0 messages) until a PUBACK frees room (which
        needs ``run()`` to be connected), and, with
        ``wait_for_ack``, until the PUBACK (QoS 2: PUBCOMP; QoS 0: until
        written to the socket).
        Raises ``MqttError`` if the broker's PUBACK carries a failure reason.
        ``message_expiry_s`` is MQTT 5 only (ignored with ``protocol="3.1.1"``).
        Cancellation while waiting for room publishes nothing; cancellation
        while waiting for the ack does not withdraw the message.
        """
        await trio.lowlevel.checkpoint()
        props = None
        if message_expiry_s is not None and self._v5:  # 3.1.1 has no expiry
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = message_expiry_s
        paho = self._paho
        while True:
            info = paho.publish(topic, payload, qos, retain, props)
            if info.rc != _QUEUE_FULL:
                break
            self.stats.queue_full_waits += 1
            if self._room is None:
                self._room = trio.Event()
            await self._room.wait()
        self._kick_writer()

        if qos == 0:
            if info.rc == _NO_CONN:
                if wait_for_ack:
                    raise MqttNotConnected(f"QoS 0 publish to {topic!r}: not connected")
                self.stats.dropped_qos0 += 1
                return
            if info.rc not in (_OK, mqtt.MQTTErrorCode.MQTT_ERR_AGAIN):
                # the direct write failed: connection is being torn down
                if wait_for_ack:
                    raise MqttNotConnected(f"QoS 0 publish to {topic!r}: {mqtt.error_string(info.rc)}")
                self.stats.dropped_qos0 += 1
                return
            self.stats.published += 1
            if not wait_for_ack or info.is_published():
                return
        else:
            # rc may be NO_CONN / CONN_LOST: the message is still in paho's
            # queue and will be (re)sent after the next CONNACK.
            self.stats.published += 1
            if not wait_for_ack:
                return

        # No checkpoint since paho.publish(): the ack cannot have been read yet.
        w = self._puback_waiters[info.mid] = _Waiter(qos)
        try:
            await w.event.wait()
        finally:
            if self._puback_waiters.get(info.mid) is w:
                del self._puback_waiters[info.mid]
        if w.error is not None:
            raise w.error

    def ack(self, message: InboundMessage) -> None:
        """Acknowledge one received QoS 1/2 message: ``ack_many((message,))``."""
        self.ack_many((message,))

    def hold_reads(self) -> None:
        """Read nothing more on the current connection; keep sending (acks, pings) until it closes.

        For handing a session over without redeliveries: hold the reads, wait
        until :attr:`unacked` is 0 (:meth:`wait_all_acked`), then close.
        Whatever the broker sends meanwhile stays in the socket and the
        session. A message already read but not yet in the channel still
        goes there. The next connection reads again. Synchronous; any task.
        """
        self._reads_held = True

    async def wait_all_acked(self, timeout_s: float) -> bool:
        """Wait until every message read on this connection is acknowledged (or the connection is
        gone), at most ``timeout_s``; whether it got there. Meant for a hand-over (``hold_reads``)."""
        with trio.move_on_after(timeout_s):
            while self._connected and self._unacked:
                self._all_acked = trio.Event()
                await self._all_acked.wait()
            return True
        return False

    def drop_connection(self, reason: str, *, reconnect_after_s: float | None = None) -> None:
        """Close the current connection now, without DISCONNECT and without acknowledging anything more.

        The broker keeps every unacknowledged message of the session for
        whoever resumes it next (acks attempted meanwhile are no-ops, and stale
        after the reconnect: another generation). ``run()`` reconnects after
        ``reconnect_after_s`` (with its usual 0.8-1.0x jitter), or after its
        usual backoff when ``None``; a successful connection resets the backoff.
        Synchronous, never blocks; any trio task of the run. A no-op while
        not connected, except that the next wait is still the one asked for.
        """
        self._reconnect_after_s = reconnect_after_s
        self._mark_lost(f"dropped: {reason}")

    def ack_many(self, messages: Iterable[InboundMessage]) -> None:
        """Acknowledge received QoS 1/2 messages (PUBACK/PUBCOMP), in one socket write.

        Synchronous and non-blocking; any trio task of the run. Skips QoS 0
        messages and those of an older connection generation (their mid may
        now name a different message; the broker redelivers the old one
        anyway), and does nothing while disconnected. Do not ack the same
        message twice. What the socket does not take now, the writer task
        sends when it is writable.
        """
        if not self._connected:
            return
        generation = self._generation
        sent = self._paho.ack_many(
            (m.mid, m.qos) for m in messages if m.qos and m.generation == generation)
        if sent:
            self.stats.acked += sent
            self._unacked = max(0, self._unacked - sent)
            window_open = self._window_open
            if window_open is not None and self._max_unacked is not None and self._unacked < self._max_unacked:
                window_open.set()
            if self._all_acked is not None and not self._unacked:
                self._all_acked.set()
            self._kick_writer()
