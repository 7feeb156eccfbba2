"""Plain data types of the MQTT adapter (no I/O, no paho)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One PUBLISH received from the broker.

    ``mid`` is only meaningful together with ``generation``: packet ids are
    per connection, so ``TrioMqttClient.ack`` ignores a message whose
    generation is not the current one (the broker redelivers it anyway).
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int
    generation: int
    received_at: float  # time.time() when read from the socket
    #: The ``TrioMqttClient`` that read it: acks go back to it (several clients may feed one
    #: consumer, e.g. a worker's partition sessions, hub/app/partition_sessions.py). ``None``
    #: for messages made by hand (tests).
    client: Any = None


@dataclass(slots=True)
class MqttStats:
    """Counters of one ``TrioMqttClient``; plain ints, read them any time."""

    received: int = 0  # PUBLISH packets read from the socket
    published: int = 0  # publish() calls accepted by paho (queued or sent)
    reconnects: int = 0  # successful connections after the first one
    acked: int = 0  # PUBACK/PUBCOMP handed to paho by ack()
    connect_failures: int = 0  # attempts that ended before a successful CONNACK
    queue_full_waits: int = 0  # times publish() had to wait for room
    dropped_qos0: int = 0  # QoS 0 publishes dropped because not connected
    window_waits: int = 0  # times the reader stopped reading at max_unacked unacked messages


class MqttError(Exception):
    """An MQTT operation failed (refused by the broker, or a bad reason code)."""


class MqttNotConnected(MqttError):
    """The operation needs a live connection and there is none (or it was lost
    while waiting)."""


class MqttSubscribeRefused(MqttError):
    """The broker refused some filters of a SUBSCRIBE or UNSUBSCRIBE (reason codes >= 0x80); the others took effect.

    ``refused`` maps each refused filter to the reason code's value (e.g. 0x87
    "Not authorized" from an ACL; MQTT 3.1.1 only says 0x80 "Failure").
    """

    def __init__(self, message: str, refused: dict[str, int]) -> None:
        super().__init__(message)
        self.refused = refused
