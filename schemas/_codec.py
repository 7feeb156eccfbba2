"""Encode, sign, decode and verify uplink frames.

One decoder serves the hub, the edge agent and the tests. Decoding is pure
and synchronous; it never blocks and may be called from any thread or task.
"""
from __future__ import annotations

import hmac
import uuid

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._envelope import MAX_MESSAGE_BYTES, Command, DeviceStatus, Event, Frame, SignatureAlgorithm


class WireError(ValueError):
    """A message that cannot be accepted. ``reason`` is a stable machine code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


#: What msgspec raises for bytes it cannot decode, besides DecodeError: a str that is not
#: UTF-8 (UnicodeDecodeError) and nesting deeper than the interpreter's recursion limit,
#: which msgspec meets while skipping a value (e.g. an unknown field before the ``kind`` tag).
_UNDECODABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)

_frame_decoder = msgspec.msgpack.Decoder(Frame)
_event_decoder = msgspec.msgpack.Decoder(Event)
_command_decoder = msgspec.msgpack.Decoder(Command)
_status_decoder = msgspec.msgpack.Decoder(DeviceStatus)
_encoder = msgspec.msgpack.Encoder()


def new_event_id() -> bytes:
    """A fresh 16-byte event id (UUIDv4 bytes); ids are never integers on the wire."""
    return uuid.uuid4().bytes


def sign(payload: bytes, alg: SignatureAlgorithm, key: bytes) -> bytes:
    """Sign ``payload``. ``key`` is the HMAC secret, or the 32-byte Ed25519 private seed."""
    if alg == "hmac-sha256":
        return hmac.digest(key, payload, "sha256")
    if alg == "ed25519":
        return Ed25519PrivateKey.from_private_bytes(key).sign(payload)
    raise WireError("bad_algorithm", alg)


def verify(frame: Frame, key: bytes) -> None:
    """Raise ``WireError('bad_signature')`` unless ``frame.sig`` is valid under ``key``.

    ``key`` is the HMAC secret, or the 32-byte Ed25519 public key.
    """
    if frame.alg == "hmac-sha256":
        expected = hmac.digest(key, frame.payload, "sha256")
        if not hmac.compare_digest(expected, frame.sig):
            raise WireError("bad_signature", "HMAC mismatch")
        return
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(frame.sig, frame.payload)
    except (InvalidSignature, ValueError) as exc:
        raise WireError("bad_signature", "Ed25519 verification failed") from exc


def _signed_frame(payload: bytes, alg: SignatureAlgorithm, key: bytes) -> bytes:
    """The frame around ``payload`` signed with ``key``: what events, statuses and commands travel in."""
    data = _encoder.encode(Frame(payload=payload, alg=alg, sig=sign(payload, alg, key)))
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError("oversize", f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    return data


def encode_event(event: Event, alg: SignatureAlgorithm, key: bytes) -> bytes:
    """Encode and sign ``event`` into the bytes published on the uplink topic."""
    payload = _encoder.encode(event)
    return _signed_frame(payload, alg, key)


def decode_frame(data: bytes) -> tuple[Frame, Event]:
    """Check size, decode and validate a frame and its envelope. Does not verify the signature.

    The caller looks up the key of ``event.device`` and calls :func:`verify`.
    Raises :class:`WireError` with reason ``oversize``, ``malformed`` or ``schema``.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError("oversize", f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        frame = _frame_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise WireError("schema", f"frame: {exc}") from exc
    except _UNDECODABLE as exc:
        raise WireError("malformed", f"frame: {exc}") from exc
    try:
        event = _event_decoder.decode(frame.payload)
    except msgspec.ValidationError as exc:
        raise WireError("schema", f"envelope: {exc}") from exc
    except _UNDECODABLE as exc:
        raise WireError("malformed", f"envelope: {exc}") from exc
    return frame, event


def encode_status(status: DeviceStatus, alg: SignatureAlgorithm, key: bytes) -> bytes:
    """Encode and sign ``status`` into the bytes published on the status topic (or set as the Will)."""
    payload = _encoder.encode(status)
    return _signed_frame(payload, alg, key)


class _UnsignedStatus(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The status of agents older than signed statuses: recognised only to name the refusal."""

    state: str
    ts: int
    reason: str = ""


_unsigned_status_decoder = msgspec.msgpack.Decoder(_UnsignedStatus)


def _not_a_status_frame(data: bytes, exc: msgspec.ValidationError) -> WireError:
    """Why ``data``, which is not a frame, is refused: ``unsigned_status`` for an old agent's
    well-formed status, else what is wrong with it (as the unsigned format was judged)."""
    try:
        _unsigned_status_decoder.decode(data)
    except msgspec.ValidationError:
        return WireError("schema", f"status frame: {exc}")
    except _UNDECODABLE as undecodable:
        return WireError("malformed", f"status: {undecodable}")
    return WireError("unsigned_status", "a status without a signature (from an agent older than the hub?)")


def decode_status(data: bytes) -> tuple[Frame, DeviceStatus]:
    """Check size, decode and validate a signed status / Last Will. Does not verify the signature.

    The caller checks ``status.device`` against the topic, looks up its key and
    calls :func:`verify`. Raises :class:`WireError` with reason ``oversize``,
    ``malformed``, ``schema`` or ``unsigned_status`` (a well-formed status of the
    old unsigned format, as agents before signed statuses sent).
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError("oversize", f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        frame = _frame_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _not_a_status_frame(data, exc) from exc
    except _UNDECODABLE as exc:
        raise WireError("malformed", f"status frame: {exc}") from exc
    try:
        return frame, _status_decoder.decode(frame.payload)
    except msgspec.ValidationError as exc:
        raise WireError("schema", f"status: {exc}") from exc
    except _UNDECODABLE as exc:
        raise WireError("malformed", f"status: {exc}") from exc


def encode_command(command: Command, alg: SignatureAlgorithm, key: bytes) -> bytes:
    """Encode and sign a hub → device ``command`` for the downlink topic."""
    payload = _encoder.encode(command)
    return _signed_frame(payload, alg, key)


def decode_command(data: bytes) -> tuple[Frame, Command]:
    """Size-check, decode and validate a downlink frame. Does not verify the signature (see :func:`verify`)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError("oversize", f"{len(data)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        frame = _frame_decoder.decode(data)
        command = _command_decoder.decode(frame.payload)
    except msgspec.ValidationError as exc:
        raise WireError("schema", f"command: {exc}") from exc
    except _UNDECODABLE as exc:
        raise WireError("malformed", f"command: {exc}") from exc
    return frame, command
