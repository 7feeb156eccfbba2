"""The one place that touches paho-mqtt internals.

paho 2.x has no public way to hand it an already connected socket, and its own
``reconnect()`` does a *blocking* DNS lookup + TCP connect. We do the connect
with trio instead (cancellable, with a timeout, no thread touching paho state)
and inject the socket by overriding ``_create_socket``; ``ack_many`` queues
many acknowledgements as one write with ``_packet_queue``.

The receive path overrides two more internals, for cost (docs/performance.md,
"Drain of a backlog"): ``_sock_recv`` serves paho's small reads (1 byte of
command, 1 per remaining-length byte, then the rest: three ``recv()`` system
calls per packet) from one ``recv(RECV_CHUNK)`` buffer, and
``_handle_publish`` parses a QoS 0/1 PUBLISH itself and hands (topic,
payload, qos, retain, mid) to ``on_fast_publish``, skipping paho's
``MQTTMessage``, MQTT 5 ``Properties`` object, logging and topic-callback
matching (the properties are skipped unread: the hub uses none on inbound
messages, and declares no Topic Alias Maximum, so the broker sends no alias).
QoS 2 still goes through paho's own handler (its PUBREC/PUBREL state).
Everything else the adapter does goes through paho's public external-loop
API. paho is pinned ``<3`` in pyproject; these hooks exist unchanged in
2.0–2.2.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Callable, Iterable

import paho.mqtt.client as mqtt
import trio
from paho.mqtt.client import PUBACK, PUBCOMP
from paho.mqtt.exception import MalformedPacket

# PUBACK / PUBCOMP with remaining length 2: packet id only, which MQTT 3.1.1
# and MQTT 5 (reason code 0 "success" omitted) both read as success. The same
# bytes paho's own ack() sends.
_ACK_PACKET = struct.Struct("!BBH")


#: Bytes asked of the kernel per ``recv()``: a few hundred small PUBLISH packets.
RECV_CHUNK = 65536

#: ``on_fast_publish(topic, payload, qos, retain, mid)``: topic as the raw UTF-8 bytes.
FastPublish = Callable[[bytes, bytes, int, bool, int], None]


class PahoClient(mqtt.Client):
    _injected_sock: socket.socket | None = None
    #: Set: QoS 0/1 PUBLISH packets go here instead of paho's on_message (see the module docstring).
    on_fast_publish: FastPublish | None = None
    # What one recv() read beyond what paho has asked for yet; per connection.
    _rbuf: bytes = b""
    _rpos: int = 0
    #: The last TLS error a read or write died of (paho only says "connection lost");
    #: e.g. the broker's "certificate required" alert, which TLS 1.3 delivers after
    #: the handshake, on the first read. Cleared by ``reconnect_with``.
    last_tls_error: ssl.SSLError | None = None

    def reconnect_with(self, sock: socket.socket) -> mqtt.MQTTErrorCode:
        """Run paho's ``reconnect()`` (state reset + CONNECT) on ``sock``."""
        self._injected_sock = sock
        self.last_tls_error = None
        self._rbuf, self._rpos = b"", 0  # bytes of the previous connection mean nothing here
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
        """Up to ``bufsize`` bytes: from the buffer, else from one ``recv(RECV_CHUNK)``.

        Same contract as paho's (``BlockingIOError`` when nothing is there,
        ``b""`` at EOF), so its packet state machine is unchanged. What is
        buffered is invisible to ``poll()``: see :meth:`buffered`.
        """
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            try:
                buf = super()._sock_recv(max(bufsize, RECV_CHUNK))
            except ssl.SSLError as exc:  # the "want read/write" ones arrive as BlockingIOError
                self.last_tls_error = exc
                raise
            if len(buf) <= bufsize:
                self._rbuf, self._rpos = b"", 0
                return buf
            pos = 0
            self._rbuf = buf
        end = min(pos + bufsize, len(buf))  # a short read, as recv() may give: paho asks again
        self._rpos = end
        return buf[pos:end]

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """Read at most ONE packet (paho's reads as many as it has QoS>0 messages in flight either way).

        The reader counts messages per call to stop exactly at its batch and
        ``max_unacked`` bounds; with a thousand commands in flight paho's own
        would read up to a thousand PUBLISHes past them in one call.
        """
        if self._sock is None:
            return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
        rc = self._packet_read()
        if rc > 0:
            return self._loop_rc_handle(rc)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def buffered(self) -> int:
        """Bytes read from the socket that paho has not consumed yet (the socket may poll unreadable)."""
        return len(self._rbuf) - self._rpos

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        """A QoS 0/1 PUBLISH to ``on_fast_publish``, parsed here; anything else the paho way."""
        hook = self.on_fast_publish
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if hook is None or qos == 2:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        try:
            end = 2 + (packet[0] << 8 | packet[1])
            if end > len(packet):
                raise MalformedPacket("PUBLISH topic longer than the packet")
            topic = bytes(packet[2:end])
            mid = 0
            if qos:
                mid = packet[end] << 8 | packet[end + 1]
                end += 2
            if self._protocol == mqtt.MQTTv5:  # skip the properties: a variable byte integer, then that many bytes
                length, shift = 0, 0
                while True:
                    byte = packet[end]
                    end += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise MalformedPacket("PUBLISH properties length longer than 4 bytes")
                end += length
            if end > len(packet):
                raise MalformedPacket("PUBLISH shorter than its headers")
        except IndexError:
            raise MalformedPacket("PUBLISH shorter than its headers") from None
        hook(topic, bytes(packet[end:]), qos, bool(header & 0x01), mid)
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

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
