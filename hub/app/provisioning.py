"""How the web's provisioning calls reach the running hub (wired by hub/app/supervision.py into WebContext).

The provisioning use case (hub/db/provisioning.py) calls ``devices_changed``
after each committed register, rotate or revoke made through the web.

- ``devices_changed(ids)``: the ingress reloads those devices' records (a
  rotated key works at once, a revoked device is refused at once) and, when
  ``CAMPUSHUB_MOSQUITTO_*`` names the broker's files, they are regenerated
  and the broker signalled (hub/adapters/mosquitto_auth.py).
- ``send_command(id)``: the CommandDispatcher publishes a recorded command.

Both are for trio tasks of the hub's run (web requests), called after the
caller's transaction committed. They block only while the target mailbox is
full (backpressure) and, for devices_changed, while the files are written.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Sequence

from actors import ActorRef, Supervisor
from actors.delivery import deliver
from hub.adapters.mosquitto_auth import MosquittoSync
from hub.pipeline.commands import Dispatch
from hub.pipeline.ingress import RegistryChanged

log = logging.getLogger("hub.app.provisioning")


@dataclass
class ProvisioningLinks:
    root: Supervisor
    mosquitto: MosquittoSync | None = None

    def _actor(self, child_id: str) -> ActorRef | None:
        ref = self.root.lookup(child_id)
        return ref if isinstance(ref, ActorRef) else None

    async def devices_changed(self, device_ids: Sequence[str]) -> None:
        ingress = self._actor("ingress")
        if ingress is not None:
            await deliver(ingress, RegistryChanged(tuple(device_ids)))
        if self.mosquitto is not None:
            try:
                result = await self.mosquitto.sync()
            except (OSError, ValueError):
                # The registry change is committed and the hub already enforces it; the broker's
                # files catch up on the next change or `campushub devices export-mosquitto`.
                log.exception("could not regenerate the Mosquitto password/ACL files")
            else:
                log.info("Mosquitto files regenerated: %d device accounts, broker %s",
                         result.devices, "reloaded" if result.reloaded else "not signalled")

    async def send_command(self, command_id: uuid.UUID) -> None:
        commands = self._actor("commands")
        if commands is not None:
            await deliver(commands, Dispatch(command_id))
