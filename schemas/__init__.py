"""CampusHub wire format: MessagePack frames, envelopes, topics and check-in tokens.

Imports nothing from the rest of the project, so the edge agent, the hub and
the tests share one decoder.
"""
from ._codec import (
    WireError,
    decode_command,
    decode_frame,
    decode_status,
    encode_command,
    encode_event,
    encode_status,
    new_event_id,
    sign,
    verify,
)
from ._envelope import (
    EVENT_KINDS,
    MAX_MESSAGE_BYTES,
    MAX_SEALED_BYTES,
    PROTOCOL_VERSION,
    BiometricMatch,
    BiometricMatchEvent,
    Command,
    CommandAck,
    CommandAckEvent,
    CommandName,
    CommandStatus,
    DeviceStatus,
    Event,
    Frame,
    Heartbeat,
    HeartbeatEvent,
    QrScan,
    QrScanEvent,
    SealedArgs,
    SensorReading,
    SensorReadingEvent,
    SignatureAlgorithm,
)
from ._sealed import SealError, decode_sealed, encode_sealed, open_args, seal_args, sealed_arg_names, x25519_private_key
from ._token import (
    TOKEN_WINDOW_SECONDS,
    CheckinToken,
    issue_checkin_token,
    parse_checkin_token,
    token_is_authentic,
    token_is_fresh,
    token_window,
)
from ._topics import Topics

__all__ = [
    "EVENT_KINDS", "MAX_MESSAGE_BYTES", "PROTOCOL_VERSION", "TOKEN_WINDOW_SECONDS",
    "BiometricMatch", "BiometricMatchEvent", "Command", "CommandAck", "CommandAckEvent",
    "CommandName", "CommandStatus", "CheckinToken", "DeviceStatus", "Event",
    "Frame", "Heartbeat", "HeartbeatEvent", "QrScan", "QrScanEvent", "SensorReading",
    "SensorReadingEvent", "SignatureAlgorithm", "Topics", "WireError",
    "decode_command", "decode_frame", "encode_command", "decode_status", "encode_event", "encode_status", "issue_checkin_token",
    "new_event_id", "parse_checkin_token", "sign", "token_is_authentic", "token_is_fresh",
    "token_window", "verify",
    "MAX_SEALED_BYTES", "SealError", "SealedArgs", "decode_sealed", "encode_sealed", "open_args", "seal_args",
    "sealed_arg_names", "x25519_private_key",
]
