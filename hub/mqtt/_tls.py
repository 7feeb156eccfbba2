"""TLS for the MQTT adapter: the client context, and a handshake that never blocks trio.

paho's own TLS path (``tls_set_context`` + ``reconnect()``) wraps the socket
and then calls ``do_handshake()`` with a *blocking* timeout
(``_ssl_wrap_socket``): up to ``connect_timeout`` seconds with the trio thread
stuck. So, as for the TCP connect (``open_tcp_socket``), we do the handshake
ourselves on a non-blocking socket, waiting with trio between the
``SSLWantRead``/``SSLWantWrite`` steps, and hand paho the finished
``ssl.SSLSocket``. paho reads and writes it like a plain socket (its
``_sock_recv``/``_sock_send`` map the SSL "want" errors to ``BlockingIOError``).
"""

from __future__ import annotations

import socket
import ssl
from os import PathLike

import trio

StrPath = str | PathLike[str]


def client_tls_context(
    cafile: StrPath | None = None,
    certfile: StrPath | None = None,
    keyfile: StrPath | None = None,
) -> ssl.SSLContext:
    """A client context that verifies the broker: certificate chain *and* host name.

    ``cafile``: PEM bundle of the CA(s) that signed the broker's certificate;
    ``None`` trusts the system store. ``certfile``/``keyfile``: this client's
    certificate and key, for a listener with ``require_certificate true``
    (``keyfile`` may be omitted when ``certfile`` holds the key too).
    Reads the files now; raises ``OSError``/``ssl.SSLError`` for unreadable or
    malformed ones, so a bad setting fails at startup, not at every reconnect.
    """
    if keyfile is not None and certfile is None:
        raise ValueError("a client key needs its certificate (certfile)")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    # Mosquitto 2 speaks TLS 1.2 and 1.3; nothing older is acceptable.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


async def start_tls(sock: socket.socket, context: ssl.SSLContext, server_hostname: str) -> ssl.SSLSocket:
    """Run the TLS handshake on the connected ``sock`` without blocking; return the TLS socket.

    ``sock`` is consumed (the returned object owns its file descriptor, also
    on failure: then it is closed). Cancellable between handshake steps; the
    caller bounds the time (the adapter's ``CONNECT_TIMEOUT_S``). Raises
    ``ssl.SSLError`` (e.g. ``SSLCertVerificationError``) or ``OSError``.
    """
    sock.setblocking(False)
    try:
        tls = context.wrap_socket(sock, server_hostname=server_hostname, do_handshake_on_connect=False)
    except BaseException:
        sock.close()
        raise
    try:
        while True:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                await trio.lowlevel.wait_readable(tls)
            except ssl.SSLWantWriteError:
                await trio.lowlevel.wait_writable(tls)
            else:
                return tls
    except BaseException:
        tls.close()
        raise


#: Appended when a TLS connection ends before the CONNACK for no reason TLS can name.
NO_CLIENT_CERT_HINT = "does its listener require a client certificate (require_certificate)?"


def describe_tls_error(exc: BaseException) -> str:
    """One line an operator can act on, e.g. the certificate check that failed."""
    # ``reason`` is set by OpenSSL-raised errors only.
    reason = getattr(exc, "reason", None)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"broker certificate not trusted: {exc.verify_message} (check the CA file and the host name)"
    if isinstance(exc, ssl.SSLEOFError):
        # Mosquitto's answer to a missing client certificate: it closes without an alert.
        return f"TLS connection closed by the broker ({reason or exc}); {NO_CLIENT_CERT_HINT}"
    if isinstance(exc, ssl.SSLError) and "CERTIFICATE_REQUIRED" in str(reason):
        # With TLS 1.3 the same mistake may instead arrive as an alert, after the handshake
        # looked done: which one the client sees depends on timing.
        return f"TLS error: {reason}; {NO_CLIENT_CERT_HINT}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {reason or exc}"
    return f"TLS handshake failed: {exc!r}"
