"""The webhook dispatcher's HTTP transport: connects only to addresses the policy allows.

A webhook URL is checked when it is registered, but a host name can resolve
to anything later (``hooks.example.org`` → 169.254.169.254, or DNS
rebinding between a check and the connect). So the transport resolves the
host itself (:data:`Resolver`, trio's ``getaddrinfo`` by default), checks
**every** address with :func:`hub.domain.webhook_policy.address_problem`
(one forbidden address refuses the whole host), and then opens the TCP
connection to one of exactly those checked addresses: there is no second
lookup, so no check-then-connect gap. TLS still verifies the certificate
against the URL's host name (httpcore passes it as SNI / server_hostname).

Environment proxies are ignored (a proxy would make the connection, and its
own target checks, not ours).
"""
from __future__ import annotations

import typing
from typing import Awaitable, Callable, Sequence

import httpcore
import httpx
import trio

from hub.domain.webhook_policy import address_problem

#: ``await resolver(host, port)`` → the IP addresses (as strings) the host name stands for.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


class ForbiddenTarget(Exception):
    """The webhook's host resolved to an address the policy refuses (``str(exc)`` says which, why)."""


async def getaddrinfo_resolver(host: str, port: int) -> list[str]:
    """trio's ``getaddrinfo`` (runs in a worker thread; cancellation abandons the lookup)."""
    infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks, then connects to a checked address through httpcore's trio backend.

    Called by httpcore from the dispatcher's trio tasks, once per new
    connection. Raises :class:`ForbiddenTarget` (not retried by httpx, passed
    through to the caller) or ``httpcore.ConnectError`` / ``ConnectTimeout``
    (which httpx maps to its own errors). Cancellation propagates.
    """

    def __init__(self, resolver: Resolver = getaddrinfo_resolver,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._resolver = resolver
        self._inner = inner or httpcore.TrioBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            try:
                addresses = await self._resolver(host, port)
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        if scope.cancelled_caught:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out")
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            problem = address_problem(address)
            if problem is not None:
                raise ForbiddenTarget(
                    problem if host == address else f"{host} resolves to a forbidden address: {problem}")
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc  # try the host's next address, as a resolver-driven connect would
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[typing.Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise ForbiddenTarget("webhooks are never delivered over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(resolver: Resolver = getaddrinfo_resolver) -> httpx.AsyncBaseTransport:
    """An httpx transport whose every connection goes through :class:`GuardedBackend`."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx does not take a network backend, so swap in a pool built with ours. The pool is
    # what AsyncHTTPTransport drives (httpx 0.28); tests/hub/test_webhooks.py pins this.
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("this httpx version has no AsyncHTTPTransport._pool connection pool")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(), network_backend=GuardedBackend(resolver))
    return transport
