"""MQTT adapter of the hub: paho-mqtt 2.x (MQTT 5) driven by trio socket waits.

Imports nothing else of the project. See ``TrioMqttClient`` for the
concurrency contract.
"""

from ._batches import receive_batches
from ._client import TrioMqttClient
from ._tls import client_tls_context
from ._types import (
    InboundMessage,
    MqttError,
    MqttNotConnected,
    MqttStats,
    MqttSubscribeRefused,
)

__all__ = [
    "InboundMessage",
    "MqttError",
    "MqttNotConnected",
    "MqttStats",
    "MqttSubscribeRefused",
    "TrioMqttClient",
    "client_tls_context",
    "receive_batches",
]
