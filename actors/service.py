"""An actor whose work is one long-running loop rather than a stream of messages."""
from __future__ import annotations

from actors import Actor


class ServiceActor(Actor):
    """Runs :meth:`serve` in the actor's own nursery, under supervision.

    If :meth:`serve` raises, the actor crashes and its supervisor restarts
    it like any other; stopping the actor cancels :meth:`serve`. It takes no
    messages.
    """

    async def started(self) -> None:
        self.nursery.start_soon(self.serve)

    async def handle(self, message: object) -> None:
        raise TypeError(f"{type(self).__name__} takes no messages, got {message!r}")

    async def serve(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
