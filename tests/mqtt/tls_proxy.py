"""A TLS-terminating proxy in front of the real (plaintext) Mosquitto, as a load balancer or
stunnel would be, that can pack many MQTT packets into one TLS record.

Mosquitto itself writes one TLS record per MQTT packet, which hides the "decrypted bytes
waiting inside the SSL object" case; a terminating proxy re-encrypts whatever it read from
the broker in one go, so one record holds a CONNACK and a burst of PUBLISHes. With
``coalesce_s`` set, the broker->client direction gathers bytes for that long and sends them
with one ``send_all`` (one TLS record per 16 KiB).
"""
from __future__ import annotations

import ssl

import trio
from support.tcp_proxy import TcpProxy


class TlsTerminatingProxy(TcpProxy):
    """``TcpProxy`` whose client side speaks TLS with ``server_context``.

    ``handshake_failures`` counts clients whose handshake failed (e.g. untrusted
    or missing client certificate).
    """

    def __init__(self, target_host: str, target_port: int, server_context: ssl.SSLContext,
                 *, coalesce_s: float = 0.0) -> None:
        super().__init__(target_host, target_port)
        self._context = server_context
        self._coalesce_s = coalesce_s
        self.handshake_failures = 0

    async def _handle(self, client: trio.SocketStream) -> None:  # type: ignore[override]
        tls = trio.SSLStream(client, self._context, server_side=True)
        try:
            with trio.fail_after(5):
                await tls.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError):
            self.handshake_failures += 1
            await trio.aclose_forcefully(client)
            return
        await super()._handle(tls)  # type: ignore[arg-type]

    async def _pump(self, source, sink, done: trio.CancelScope) -> None:  # type: ignore[override]
        if not (self._coalesce_s and isinstance(sink, trio.SSLStream)):
            await TcpProxy._pump(source, sink, done)
            return
        try:
            while True:
                chunk = bytearray(await source.receive_some())
                if not chunk:
                    break
                with trio.move_on_after(self._coalesce_s):
                    while len(chunk) < 64 * 1024:
                        more = await source.receive_some()
                        if not more:
                            break
                        chunk += more
                await sink.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()
