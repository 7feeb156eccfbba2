"""A trio TCP proxy the tests put between a client and a real server, to make that server
fail on demand: refuse connections, drop live ones from the server side, come back."""
from __future__ import annotations

import trio


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``.

    Run :meth:`serve` with ``nursery.start``; it reports the port it listens on.
    :meth:`drop_all` closes every live connection (as a server crash would);
    :meth:`cut` also refuses new ones until :meth:`restore`.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._up = True
        self._scopes: set[trio.CancelScope] = set()

    async def serve(self, port: int = 0, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            if not self._up:
                return
            try:
                server = await trio.open_tcp_stream(*self._target)
            except OSError:
                return
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    async with server, trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
                        nursery.start_soon(self._pump, server, client, nursery.cancel_scope)
                finally:
                    self._scopes.discard(scope)

    @staticmethod
    async def _pump(source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope) -> None:
        try:
            async for chunk in source:
                await sink.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        done.cancel()  # one side closed: close the other

    def drop_all(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()

    def cut(self) -> None:
        self._up = False
        self.drop_all()

    def restore(self) -> None:
        self._up = True
