"""The hub's side of its broker session: its client id, and stepping away from a foreign session.

- :func:`hub_client_id`: ``Settings.hub_client_id`` if set, else the id
  derived from the deployment identity kept in PostgreSQL.
- :class:`SessionGuardEffects`: what the foreign-session guard's verdicts do
  (hub/pipeline/session_guard.py decides): count, log one CRITICAL line per
  trip, step away.
"""
from __future__ import annotations

import logging

from hub.core.config import Settings
from hub.core.metrics import HubMetrics
from hub.db import Database
from hub.db.deployment import deployment_identity, derived_hub_client_id
from hub.mqtt import TrioMqttClient
from hub.pipeline.session_guard import StepAway

log = logging.getLogger("hub.session_guard")


async def hub_client_id(settings: Settings, db: Database) -> str:
    """The hub's MQTT client id: the configured one, else derived from this database's deployment identity."""
    if settings.hub_client_id:
        return settings.hub_client_id
    deployment = await deployment_identity(db)
    return derived_hub_client_id(deployment.id, settings.topic_prefix)


class SessionGuardEffects:
    """:class:`~hub.pipeline.session_guard.GuardEffects` of the running hub; called from the ingress' task."""

    def __init__(self, client: TrioMqttClient, metrics: HubMetrics) -> None:
        self._client = client
        self._metrics = metrics

    def foreign_message(self, topic: str) -> None:
        self._metrics.foreign_session_messages.inc()

    def step_away(self, verdict: StepAway) -> None:
        self._metrics.foreign_session_trips.inc()
        log.critical("foreign MQTT session: not acknowledging, disconnecting for %.0f s (trip %d): %s",
                     verdict.hold_off_s, verdict.trips, verdict.reason)
        # Acknowledging nothing more: the broker keeps the session's messages for their owner.
        self._client.drop_connection("foreign session", reconnect_after_s=verdict.hold_off_s)
