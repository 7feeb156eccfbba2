"""Taking a channel's messages in batches: one scheduler tick per batch, not per message."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import trio

T = TypeVar("T")


async def receive_batches(channel: trio.MemoryReceiveChannel[T], max_batch: int) -> AsyncIterator[list[T]]:
    """Each batch: one awaited message, then what the channel already holds, at most ``max_batch`` in all.

    Ends when the channel closes. For a consumer that handles each batch without
    awaiting per message (a bridge, a dispatcher): every ``await receive()`` is a
    trio scheduler tick, which costs about as much as decoding a message.
    Concurrency contract: one consumer task per generator.
    """
    async for first in channel:
        batch = [first]
        while len(batch) < max_batch:
            try:
                batch.append(channel.receive_nowait())
            except trio.WouldBlock:
                break
        yield batch
