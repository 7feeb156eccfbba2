"""Wire structures: the signed frame, the event envelope and its bodies.

Every struct is frozen and rejects unknown fields, so a decoded value is
exactly what the protocol allows and nothing else.
"""
from __future__ import annotations

import sys
from typing import Annotated, Literal, Union

import msgspec

PROTOCOL_VERSION = 1
#: Hard cap on one MQTT payload; checked before any decoding work.
MAX_MESSAGE_BYTES = 8 * 1024

DeviceId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
EventId = Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
#: Milliseconds since the Unix epoch, UTC, as the device's clock saw it.
Millis = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
#: Strings the hub stores never contain NUL (PostgreSQL text and jsonb cannot hold it).
_NO_NUL = r"^[^\x00]*$"
ShortText = Annotated[str, msgspec.Meta(max_length=128, pattern=_NO_NUL)]
#: Finite: NaN and ±Infinity have no JSON form (the event ledger's body is jsonb).
FiniteFloat = Annotated[float, msgspec.Meta(ge=-sys.float_info.max, le=sys.float_info.max)]


class QrScan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]


class BiometricMatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_NO_NUL)]
    score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class SensorReading(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    metric: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    value: FiniteFloat
    unit: Annotated[str, msgspec.Meta(max_length=16, pattern=_NO_NUL)]


class Heartbeat(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    uptime_s: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]  # PostgreSQL bigint
    firmware: ShortText
    outbox_depth: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]  # PostgreSQL integer
    # Optional (older agents omit them): None means "this device cannot tell".
    battery_pct: Annotated[float, msgspec.Meta(ge=0.0, le=100.0)] | None = None
    signal_dbm: Annotated[int, msgspec.Meta(ge=-150, le=0)] | None = None
    #: Errors the agent counted since it started (driver faults, publish failures).
    error_count: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0


CommandStatus = Literal["ok", "failed", "expired", "unsupported"]


class CommandAck(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A device's answer to a :class:`Command`, sent as an uplink event."""

    command_id: EventId
    status: CommandStatus
    detail: Annotated[str, msgspec.Meta(max_length=512, pattern=_NO_NUL)] = ""


class _Envelope(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="kind"
):
    v: Annotated[int, msgspec.Meta(ge=1, le=PROTOCOL_VERSION)]
    id: EventId
    device: DeviceId
    ts: Millis
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]

    @property
    def kind(self) -> str:
        """The event kind; on the wire it is the envelope's ``kind`` tag."""
        tag = self.__struct_config__.tag
        assert isinstance(tag, str)  # every event class declares a string tag
        return tag


class QrScanEvent(_Envelope, frozen=True, tag="qr_scan"):
    body: QrScan


class BiometricMatchEvent(_Envelope, frozen=True, tag="biometric_match"):
    body: BiometricMatch


class SensorReadingEvent(_Envelope, frozen=True, tag="sensor_reading"):
    body: SensorReading


class HeartbeatEvent(_Envelope, frozen=True, tag="heartbeat"):
    body: Heartbeat


class CommandAckEvent(_Envelope, frozen=True, tag="command_ack"):
    body: CommandAck


Event = Union[QrScanEvent, BiometricMatchEvent, SensorReadingEvent, HeartbeatEvent, CommandAckEvent]
EVENT_KINDS: tuple[str, ...] = ("qr_scan", "biometric_match", "sensor_reading", "heartbeat", "command_ack")

SignatureAlgorithm = Literal["hmac-sha256", "ed25519"]


class Frame(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """What travels on the uplink topic: the envelope's exact bytes and a signature over them.

    Signing the bytes (not a re-encoding) means sender and receiver never have
    to agree on a canonical form.
    """

    payload: Annotated[bytes, msgspec.Meta(max_length=MAX_MESSAGE_BYTES)]
    alg: SignatureAlgorithm
    sig: Annotated[bytes, msgspec.Meta(min_length=32, max_length=64)]


#: Status text reaches the console and the hub's log: no control characters (a newline in a
#: reason could forge a log line), no NUL, no Unicode line or paragraph separators.
_NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
StatusText = Annotated[str, msgspec.Meta(max_length=128, pattern=_NO_CONTROL)]


class DeviceStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A device's connection state, signed in a :class:`Frame` like events (docs/protocol.md).

    Retained on the status topic; also the device's Last Will (state offline),
    signed when the connection is made. ``ts`` (milliseconds) identifies and
    orders the device's statuses: a connection's online status carries the
    connection's ``ts``, its Will ``ts + 1``, and every later status a larger
    one. The hub applies a status only if its ``ts`` is larger than that of the
    last one it applied, so a replayed old status (or the Will of an ended
    connection) changes nothing.
    """

    device: DeviceId
    state: Literal["online", "offline"]
    ts: Millis
    reason: StatusText = ""


CommandName = Literal["config_push", "time_sync", "reboot", "roster_sync", "template_sync"]
#: Argument values a command may carry (msgspec checks the shape, the device checks the meaning).
CommandArg = Union[str, int, float, bool, None]


#: The sealed part of a command's arguments may take most of a frame; the frame cap still applies.
MAX_SEALED_BYTES = 7 * 1024


class SealedArgs(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """Command arguments sealed to the target device with AES-256-GCM (see schemas/_sealed.py).

    ``scheme`` names how the key was agreed: ``hkdf-sha256`` (HKDF of the
    ``hmac-sha256`` device key) or ``x25519`` (the hub's one-time key
    ``ephemeral_key`` with the ``ed25519`` device's key, converted). The
    associated data (not sent) binds the ciphertext to the device id, the
    command id and the command name.
    """

    scheme: Literal["hkdf-sha256", "x25519"]
    nonce: Annotated[bytes, msgspec.Meta(min_length=12, max_length=12)]
    ciphertext: Annotated[bytes, msgspec.Meta(min_length=16, max_length=MAX_SEALED_BYTES)]
    ephemeral_key: Annotated[bytes, msgspec.Meta(max_length=32)] = b""


class Command(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Hub → device, on the downlink topic, wrapped in a signed :class:`Frame` like events.

    The hub signs with the device's own key material for ``hmac-sha256``
    devices; the broker's topic ACL (only the hub may publish to ``.../down``)
    is the second guard. ``expires_ts`` travels too (MQTT 5 Message Expiry
    covers the broker; this covers a device that receives it late from its
    own buffers): a device must answer ``expired`` instead of running a
    command past it. ``hub_ts`` is the hub's clock when sent, which
    ``time_sync`` uses.
    """

    v: Annotated[int, msgspec.Meta(ge=1, le=PROTOCOL_VERSION)]
    id: EventId
    device: DeviceId
    name: CommandName
    hub_ts: Millis
    expires_ts: Millis
    args: Annotated[dict[Annotated[str, msgspec.Meta(max_length=64)], CommandArg], msgspec.Meta(max_length=64)] = {}
    #: Arguments that carry personal or biometric data, sealed to this device; the device
    #: opens them and merges them into ``args`` before running the command.
    sealed: SealedArgs | None = None
