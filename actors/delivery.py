"""Hot-path message delivery between the hub's actors."""
from __future__ import annotations

from typing import Any

from actors import ActorRef


async def deliver(ref: ActorRef, message: Any) -> None:
    """Enqueue ``message`` for ``ref``; wait only when its mailbox is full (backpressure).

    ``ActorRef.tell`` is always a checkpoint; on the per-event path that
    scheduling round cost about one task wake-up per message per hop
    (docs/performance.md). With room in the mailbox this returns without one,
    so messages travel in batches between the actors; a full mailbox still
    blocks the sender exactly as ``tell`` does. Not a checkpoint when it does
    not block: callers that loop must reach a checkpoint elsewhere.
    """
    if not ref.try_tell(message):
        await ref.tell(message)
