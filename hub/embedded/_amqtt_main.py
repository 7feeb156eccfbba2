"""Run an amqtt broker until SIGTERM/SIGINT: ``python _amqtt_main.py CONFIG.json``.

Started as a script (not ``-m``) by :mod:`hub.embedded.broker`, so it needs
nothing of ours on ``sys.path``. The config is amqtt's broker config as JSON.
Shuts the broker down cleanly on SIGTERM so its clients see a disconnect.
"""
from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from dataclasses import dataclass

from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session


class OpenAuthPlugin(BaseAuthPlugin):
    """Admit every client without marking it anonymous (config key ``__main__.OpenAuthPlugin``).

    amqtt's ``AnonymousAuthPlugin`` flags each client it lets in without a
    username as anonymous, and amqtt then treats its session as clean
    whatever the client asked: no messages queued while it is offline, session
    dropped on disconnect. Called by amqtt on its event loop; no state.
    """

    @dataclass
    class Config:
        """No options (a dataclass keeps amqtt from warning about a missing 'auth' section)."""

    async def authenticate(self, *, session: Session) -> bool:
        return True


async def _serve(config: dict) -> None:
    from amqtt.broker import Broker

    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await broker.shutdown()


def main() -> None:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    # amqtt logs every connection at INFO; keep the log for problems.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_serve(config))


if __name__ == "__main__":
    main()
