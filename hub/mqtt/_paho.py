"""The one place that touches paho-mqtt internals.

paho 2.x has no public way to hand it an already connected socket, and its own
``reconnect()`` does a *blocking* DNS lookup + TCP connect. We do the connect
with trio instead (cancellable, with a timeout, no thread touching paho state)
and inject the socket by overriding ``_create_socket``; ``ack_many`` queues
many acknowledgements as one write with ``_packet_queue``. Everything else
the adapter does goes through paho's public external-loop API. paho is pinned
``<3`` in pyproject; these hooks exist unchanged in 2.0–2.2.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Iterable

import paho.mqtt.client as mqtt
import trio
from paho.mqtt.client import PUBACK, PUBCOMP

# PUBACK / PUBCOMP with remaining length 2: packet id only, which MQTT 3.1.1
# and MQTT 5 (reason code 0 "success" omitted) both read as success. The same
# bytes paho's own ack() sends.
_ACK_PACKET = struct.Struct("!BBH")


class PahoClient(mqtt.Client):
    _injected_sock: socket.socket | None = None
    #: The last TLS error a read or write died of (paho only says "connection lost");
    #: e.g. the broker's "certificate required" alert, which TLS 1.3 delivers after
    #: the handshake, on the first read. Cleared by ``reconnect_with``.
    last_tls_error: ssl.SSLError | None = None

    def reconnect_with(self, sock: socket.socket) -> mqtt.MQTTErrorCode:
        """Run paho's ``reconnect()`` (state reset + CONNECT) on ``sock``."""
        self._injected_sock = sock
        self.last_tls_error = None
        try:
            return self.reconnect()
        finally:
            self._injected_sock = None

    def _create_socket(self) -> socket.socket:
        sock = self._injected_sock
        if sock is None:
            # Someone called connect()/reconnect() directly: that would block
            # the trio thread, so refuse rather than silently do it.
            raise ConnectionError("TrioMqttClient opens sockets itself")
        return sock

    def _sock_recv(self, bufsize: int) -> bytes:
        try:
            return super()._sock_recv(bufsize)
        except ssl.SSLError as exc:  # the "want read/write" ones arrive as BlockingIOError
            self.last_tls_error = exc
            raise

    def _sock_send(self, buf: bytes | bytearray) -> int:
        try:
            return super()._sock_send(buf)
        except ssl.SSLError as exc:
            self.last_tls_error = exc
            raise

    def ack_many(self, acks: Iterable[tuple[int, int]]) -> int:
        """Queue the acknowledgements of many ``(mid, qos)`` as ONE write; return how many.

        paho's ``ack()`` queues and ``send()``s one 4-byte packet per message:
        at thousands of messages/s that was 6-9 % of the hub's CPU (profile in
        docs/performance.md). Concatenated packets are one buffer in paho's
        own output queue, so ordering with everything else paho sends and its
        partial-write handling are unchanged. QoS 0 entries are skipped.
        """
        packets = [_ACK_PACKET.pack(PUBACK if qos == 1 else PUBCOMP, 2, mid) for mid, qos in acks if qos]
        if packets:
            self._packet_queue(PUBACK, b"".join(packets), 0, 0)
        return len(packets)

    def force_close(self) -> None:
        """Close the socket the paho way (fires on_socket_close/notify_closing)."""
        self._sock_close()

    def forget_pending_ping(self) -> None:
        """Stop paho treating an unanswered PINGREQ as a dead connection.

        Used only while *we* deliberately leave the socket unread
        (backpressure): the PINGRESP is sitting in the kernel buffer behind
        the PUBLISHes we refuse to read, so its absence proves nothing.
        """
        self._ping_t = 0


async def open_tcp_socket(host: str, port: int) -> socket.socket:
    """Connect with trio (happy eyeballs, DNS in a worker thread, cancellable)
    and return a plain stdlib socket for paho."""
    stream = await trio.open_tcp_stream(host, port)
    # detach() hands us the fd; the trio wrapper no longer owns or closes it.
    fd = stream.socket.detach()
    return socket.socket(fileno=fd)
