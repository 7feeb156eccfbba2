"""Embedded PostgreSQL and MQTT broker, for the demo and the tests when no real service is configured.

- :func:`start_embedded_postgres` -- PostgreSQL 16 from the ``pgserver`` wheel.
- :func:`start_embedded_broker` -- Mosquitto as a child process if installed, else amqtt.
- :func:`probe_postgres`, :func:`probe_mqtt` -- cheap checks to decide whether
  a configured or local service answers before starting an embedded one.

Everything here is synchronous and blocking (see each module's contract);
from trio, call through ``trio.to_thread.run_sync``. Nothing here imports
the rest of the hub.
"""
from ._common import EmbeddedServiceError
from .broker import EmbeddedBroker, mosquitto_path, start_embedded_broker
from .postgres import EmbeddedPostgres, client_tools_dir, start_embedded_postgres
from .probe import probe_mqtt, probe_postgres

__all__ = [
    "EmbeddedBroker",
    "EmbeddedPostgres",
    "EmbeddedServiceError",
    "client_tools_dir",
    "mosquitto_path",
    "probe_mqtt",
    "probe_postgres",
    "start_embedded_broker",
    "start_embedded_postgres",
]
