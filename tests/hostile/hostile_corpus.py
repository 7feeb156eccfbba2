"""The hostile corpus: messages and requests an attacker (or a broken device) sends, and the refusal each must get.

Data, not tests: ``test_hostile_mqtt.py`` runs every :data:`MQTT_CASES` entry
through a running hub, ``test_hostile_http.py`` every :data:`HTTP_CASES`
entry against its web server. Adding a case here adds it to both the run and
the table in docs/reliability.md ("Hostile input"; :func:`summary` prints it).

MQTT cases
    ``channel`` is ``"up"`` (``{prefix}/v1/dev/{device}/up``) or ``"status"``;
    ``device`` is the topic's device level: ``"@hmac"``, ``"@ed25519"``,
    ``"@revoked"`` name the world's devices, anything else is used literally.
    ``build(world)`` returns the payloads published there, in order (built
    just before publishing, so check-in tokens are fresh); ``expect`` has one
    :class:`Outcome` per payload: a rejection reason as stored in
    ``rejected_events.reason``, or exactly what an accepted / deduplicated
    message may add. Only replay cases have legitimate first messages.

HTTP cases
    ``method`` + ``path`` (``{session_id}``, ``{student_id}`` filled from the
    world), ``auth`` (an :func:`authorization` kind), ``headers``, and a body
    (``json``, raw ``body`` bytes, or ``chunked`` bytes sent without a
    Content-Length). ``status`` + ``code`` is the expected refusal: the JSON
    ``{"error": {"code", "message"}}`` under ``/api/``, or an HTML page
    (``code=None``) in which none of ``absent`` may appear.
"""
from __future__ import annotations

import base64
import json
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Callable, Literal, Sequence

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.core.campus import DeviceCredentials, LiveSession, StudentCredentials
from schemas import MAX_MESSAGE_BYTES, Topics, issue_checkin_token, sign

_enc = msgspec.msgpack.encode

SQL_INJECTIONS = ("x' OR '1'='1", "'; DROP TABLE events;--", "1; DELETE FROM attendance WHERE true --")
SCRIPT = "<script>alert(1)</script>"
IMG_XSS = '"><img src=x onerror=alert(1)>'


# =============================================================================== MQTT


@dataclass(frozen=True)
class Outcome:
    """What one message may change: one rejection with ``reason``, or these many rows."""

    reason: str | None = None
    events: int = 0
    attendance: int = 0
    sensor: int = 0

    def __str__(self) -> str:
        if self.reason:
            return self.reason
        if self.events == 0:
            return "deduplicated"
        return "accepted" + (" (check-in)" if self.attendance else "")


def rejected(reason: str) -> Outcome:
    return Outcome(reason=reason)


ACCEPTED = Outcome(events=1)
ACCEPTED_SENSOR = Outcome(events=1, sensor=1)
CHECKED_IN = Outcome(events=1, attendance=1)
#: Redelivered / replayed with an event id already committed: changes nothing at all.
DEDUPLICATED = Outcome()
#: A status or Will applied to the device's health: no ledger row, no rejection.
STATUS_APPLIED = Outcome()


@dataclass
class MqttWorld:
    """What the MQTT cases are built from: the hub's topics, devices, a live session and its students."""

    topics: Topics
    devices: dict[str, DeviceCredentials]  # "hmac" (in the session's room), "ed25519" (same room), "revoked"
    session: LiveSession
    students: dict[str, StudentCredentials]  # "replay" (enrolled), "outsider" (not enrolled)
    _seq: int = 0
    #: Hub → device commands already recorded: "ed25519" (a command sent to that device, awaiting its ack).
    commands: dict[str, uuid.UUID] = field(default_factory=dict)

    def device_id(self, device: str) -> str:
        return self.devices[device[1:]].device_id if device.startswith("@") else device

    def topic(self, channel: str, device: str) -> str:
        did = self.device_id(device)
        return self.topics.uplink(did) if channel == "up" else self.topics.status(did)

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def envelope(self, device: str = "hmac", kind: str = "qr_scan", body: Any = None, **overrides: Any) -> dict:
        """A well-formed envelope as a plain dict (so tests can break any field of it)."""
        if body is None:
            body = {
                "qr_scan": {"text": "not-a-token"},
                "biometric_match": {"subject": "nobody", "score": 0.9},
                "sensor_reading": {"metric": "co2", "value": 612.0, "unit": "ppm"},
                "heartbeat": {"uptime_s": 10, "firmware": "edge/1.0", "outbox_depth": 0},
            }[kind]
        env = {"kind": kind, "v": 1, "id": uuid.uuid4().bytes, "device": self.devices[device].device_id,
               "ts": int(time.time() * 1000), "seq": self.next_seq(), "body": body}
        env.update(overrides)
        return env

    def signed(self, payload: bytes | dict, device: str = "hmac", *, alg: str | None = None,
               key: bytes | None = None) -> bytes:
        """A frame around ``payload`` (envelope bytes or a dict to encode) signed as ``device`` signs."""
        creds = self.devices[device]
        raw = payload if isinstance(payload, bytes) else _enc(payload)
        alg = alg or creds.alg
        return _enc([raw, alg, sign(raw, alg, key if key is not None else creds.signing_key)])

    def token(self, student: str, at: float | None = None) -> str:
        s = self.students[student]
        return issue_checkin_token(s.student_id, s.token_secret, time.time() if at is None else at)


@dataclass(frozen=True)
class MqttCase:
    name: str
    category: str
    what: str
    channel: Literal["up", "status"]
    device: str
    build: Callable[[MqttWorld], Sequence[bytes]]
    expect: tuple[Outcome, ...]

    @property
    def reasons(self) -> list[str]:
        return [o.reason for o in self.expect if o.reason]


def _mqtt(name: str, category: str, what: str, build: Callable[[MqttWorld], bytes | Sequence[bytes]],
          expect: str | Outcome | tuple, *, channel: Literal["up", "status"] = "up",
          device: str = "@hmac") -> MqttCase:
    def built(world: MqttWorld) -> Sequence[bytes]:
        out = build(world)
        return [out] if isinstance(out, bytes) else list(out)

    if not isinstance(expect, tuple):
        expect = (expect,)
    outcomes = tuple(rejected(e) if isinstance(e, str) else e for e in expect)
    return MqttCase(name, category, what, channel, device, built, outcomes)


def _nested_arrays(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"  # [[[...[nil]...]]]


def _nested_maps(depth: int) -> bytes:
    return b"\x81\xa1a" * depth + b"\xc0"  # {"a": {"a": ... nil}}


def _sized_scan(world: MqttWorld, total: int) -> bytes:
    """A correctly signed QR scan whose text makes the whole frame exactly ``total`` bytes."""
    env = world.envelope()
    text_len = 600
    for _ in range(8):  # msgpack length prefixes change size at a few boundaries: converge
        env["body"] = {"text": "A" * text_len}
        size = len(world.signed(env))
        if size == total:
            return world.signed(env)
        text_len += total - size
    raise AssertionError("could not size the frame")


def _with(field_name: str, value: Any) -> Callable[[MqttWorld], bytes]:
    """A correctly signed envelope with one field replaced (or removed, for ``...``)."""
    def build(world: MqttWorld) -> bytes:
        env = world.envelope()
        if value is ...:
            del env[field_name]
        else:
            env[field_name] = value
        return world.signed(env)
    return build


def _frame(payload: Any, alg: Any, sig: Any) -> Callable[[MqttWorld], bytes]:
    return lambda world: _enc([payload(world) if callable(payload) else payload, alg, sig])


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


def _flip_sig_bit(world: MqttWorld, device: str) -> bytes:
    payload = _enc(world.envelope(device))
    frame = msgspec.msgpack.decode(world.signed(payload, device))
    return _enc([frame[0], frame[1], _flip(frame[2], 7)])


def _flip_payload_bit(world: MqttWorld) -> bytes:
    env = world.envelope(body={"text": "CH1.aaaa.1.abcdefghijklmnop"})
    payload = _enc(env)
    frame = msgspec.msgpack.decode(world.signed(payload))
    at = payload.index(b"aaaa")
    return _enc([_flip(payload, at), frame[1], frame[2]])  # "aaaa" -> "`aaa": still valid MessagePack


def _invalid_utf8_envelope(world: MqttWorld) -> bytes:
    env = world.envelope(body={"text": "ZZZZ"})
    return world.signed(_enc(env).replace(b"\xa4ZZZZ", b"\xa4\xff\xfe\xfd\xfc"))


def _deep_before_tag(world: MqttWorld) -> bytes:
    """Deep nesting placed before ``kind``: the decoder must skip it while looking for the tag."""
    env = world.envelope()
    rest = _enc({k: v for k, v in env.items()})
    payload = bytes([0x80 | (len(env) + 1)]) + _enc("x") + _nested_maps(2400) + rest[1:]
    return world.signed(payload)


def _deep_body(world: MqttWorld) -> bytes:
    env = world.envelope()
    env_bytes = _enc({k: v for k, v in env.items() if k != "body"})
    payload = bytes([0x80 | len(env)]) + env_bytes[1:] + _enc("body") + _nested_maps(2400)
    return world.signed(payload)


def _same_event_twice(world: MqttWorld) -> list[bytes]:
    frame = world.signed(world.envelope(kind="sensor_reading"))
    return [frame, frame]


def _same_id_new_body(world: MqttWorld) -> list[bytes]:
    first = world.envelope(kind="sensor_reading")
    second = {**first, "seq": world.next_seq(), "body": {"metric": "co2", "value": 99999.0, "unit": "ppm"}}
    return [world.signed(first), world.signed(second)]


def _rejected_twice(world: MqttWorld) -> list[bytes]:
    frame = world.signed(world.envelope(body={"text": "CH1.not-a-real-token"}))
    return [frame, frame]


def _token_twice(world: MqttWorld) -> list[bytes]:
    token = world.token("replay")
    return [world.signed(world.envelope(body={"text": token})),
            world.signed(world.envelope(body={"text": token}))]  # a new event id, the same token


def _status(state: Any = "online", ts: Any = None, *, signer: str = "hmac", key: bytes | None = None,
            **fields: Any) -> Callable[[MqttWorld], bytes]:
    """A status (or Will) of ``signer``'s device, signed as it signs (or with ``key``); ``fields`` replace any field."""
    def build(world: MqttWorld) -> bytes:
        status = {"device": world.devices[signer].device_id, "state": state,
                  "ts": int(time.time() * 1000) if ts is None else ts, **fields}
        return world.signed(status, signer, key=key)
    return build


def _unsigned_will(world: MqttWorld) -> bytes:
    """A Last Will as agents before signed statuses sent it (and as anyone can write one)."""
    return _enc({"state": "offline", "ts": int(time.time() * 1000), "reason": "connection lost"})


def _will_of_an_older_connection(world: MqttWorld) -> list[bytes]:
    """Connection 1 online, connection 2 online, then connection 1's Will (delivered late, or replayed)."""
    first = int(time.time() * 1000) - 20_000
    return [_status("online", first, reason="connected")(world),
            _status("online", first + 10_000, reason="connected")(world),
            _status("offline", first + 1, reason="connection lost")(world)]


def _scan_with_text(text: Callable[[MqttWorld], str] | str) -> Callable[[MqttWorld], bytes]:
    return lambda world: world.signed(world.envelope(body={"text": text(world) if callable(text) else text}))


def _biometric(subject: str) -> Callable[[MqttWorld], bytes]:
    return lambda world: world.signed(world.envelope(kind="biometric_match", body={"subject": subject, "score": 0.99}))


def _heartbeat(**body: Any) -> Callable[[MqttWorld], bytes]:
    def build(world: MqttWorld) -> bytes:
        return world.signed(world.envelope(kind="heartbeat", body={
            "uptime_s": 10, "firmware": "edge/1.0", "outbox_depth": 0, **body}))
    return build


def _sensor(**body: Any) -> Callable[[MqttWorld], bytes]:
    def build(world: MqttWorld) -> bytes:
        return world.signed(world.envelope(kind="sensor_reading", body={
            "metric": "co2", "value": 600.0, "unit": "ppm", **body}))
    return build


def _command_ack(command: Callable[[MqttWorld], uuid.UUID], device: str = "hmac",
                 detail: str = "") -> Callable[[MqttWorld], bytes]:
    """A correctly signed ``command_ack`` from ``device`` answering the command ``command(world)``."""
    def build(world: MqttWorld) -> bytes:
        body = {"command_id": command(world).bytes, "status": "ok", "detail": detail}
        return world.signed(world.envelope(device, kind="command_ack", body=body), device)
    return build


_GHOST = DeviceCredentials("hostile-ghost-device", "room-001", "qr_camera", "hmac-sha256", b"g" * 32)


def _ghost_scan(world: MqttWorld) -> bytes:
    env = {**world.envelope(), "device": _GHOST.device_id}
    raw = _enc(env)
    return _enc([raw, "hmac-sha256", sign(raw, "hmac-sha256", _GHOST.signing_key)])


def _wrong_ed25519_key(world: MqttWorld) -> bytes:
    other = Ed25519PrivateKey.generate().private_bytes_raw()
    return world.signed(world.envelope("ed25519"), "ed25519", key=other)


def _in_future(seconds: float) -> Callable[[MqttWorld], bytes]:
    return lambda world: world.signed(world.envelope(ts=int((time.time() + seconds) * 1000)))


_TYPE_CASES: list[tuple[str, str, Any]] = [
    ("kind", "kind is an integer", 7),
    ("kind", "kind is missing", ...),
    ("v", "v is the string '1'", "1"),
    ("v", "v is missing", ...),
    ("id", "id is a UUID string, not 16 bytes", str(uuid.uuid4())),
    ("id", "id is a (64-bit) integer", 2**62 + 1),
    ("id", "id is 15 bytes", b"\x01" * 15),
    ("device", "device is an integer", 42),
    ("device", "device is null", None),
    ("ts", "ts is an ISO string", "2030-01-01T00:00:00Z"),
    ("ts", "ts is negative", -1),
    ("ts", "ts is a float", 1.5),
    ("ts", "ts is beyond 2**53 (unsafe in JavaScript)", 2**53 + 1),
    ("seq", "seq is negative", -5),
    ("seq", "seq is a string", "7"),
    ("seq", "seq overflows int64", 2**64 - 1),
    ("body", "body is a list", ["text", "x"]),
    ("body", "body is missing", ...),
]


def _mqtt_cases() -> list[MqttCase]:
    cases = [
        # ---------------------------------------------------------------- size
        _mqtt("oversize_random_bytes", "size", "8 KiB + 1 byte of zeros", lambda w: b"\0" * (MAX_MESSAGE_BYTES + 1),
              "oversize"),
        _mqtt("huge_string_frame_exactly_at_limit", "size",
              "a signed scan whose 7.6 KB QR text makes the frame exactly 8,192 bytes (text limit 512)",
              lambda w: _sized_scan(w, MAX_MESSAGE_BYTES), "schema"),
        _mqtt("huge_string_frame_one_byte_over", "size", "the same scan, one byte longer: 8,193 bytes",
              lambda w: _sized_scan(w, MAX_MESSAGE_BYTES + 1), "oversize"),
        _mqtt("huge_firmware_string", "size", "heartbeat firmware of 129 characters (limit 128)",
              _heartbeat(firmware="f" * 129), "schema"),
        _mqtt("oversize_status", "size", "a 9 KB status payload", _status(reason="r" * 9000), "oversize",
              channel="status"),
        # Issue 12 §3: the row keeps the size, SHA-256 and first 256 bytes, never the payload
        # (16 KiB: under the hub's Maximum Packet Size, so the broker delivers it; 32 MiB is in
        # tests/hub/test_bounded_intake.py with a hub that sends none).
        _mqtt("oversize_16_kib_kept_bounded", "size", "16 KiB of 0xab: a bounded row (size, hash, head)",
              lambda w: b"\xab" * 16384, "oversize"),
        _mqtt("device_id_of_10000_chars", "size", "a topic whose device level is 10,000 characters",
              lambda w: w.signed(w.envelope()), "bad_topic", device="d" * 10_000),
        _mqtt("device_id_of_65_chars", "size", "a device id one character longer than the registry allows",
              lambda w: w.signed(w.envelope()), "bad_topic", device="d" * 65),
        # ---------------------------------------------------------------- malformed MessagePack
        _mqtt("garbage_bytes", "malformed", "0xc1 (a byte MessagePack never uses) and junk",
              lambda w: b"\xc1\xfe\xed\x00junk", "malformed"),
        _mqtt("empty_uplink", "malformed", "a zero-byte uplink message", lambda w: b"", "malformed"),
        _mqtt("truncated_frame", "malformed", "a valid signed frame with its last 9 bytes cut",
              lambda w: w.signed(w.envelope())[:-9], "malformed"),
        _mqtt("frame_header_only", "malformed", "just the array header of a frame", lambda w: b"\x93", "malformed"),
        _mqtt("truncated_envelope_signed", "malformed", "a correctly signed frame around truncated envelope bytes",
              lambda w: w.signed(_enc(w.envelope())[:-4]), "malformed"),
        _mqtt("trailing_bytes", "malformed", "a valid frame followed by extra bytes",
              lambda w: w.signed(w.envelope()) + b"\x00", "malformed"),
        _mqtt("invalid_utf8_in_frame", "malformed", "the frame's alg string is not UTF-8",
              lambda w: b"\x93" + _enc(b"x" * 40) + b"\xa2\xff\xfe" + _enc(b"\0" * 32), "malformed"),
        _mqtt("invalid_utf8_in_envelope", "malformed", "a signed envelope whose QR text is not UTF-8",
              _invalid_utf8_envelope, "malformed"),
        _mqtt("invalid_utf8_in_status", "malformed", "a status whose state string is not UTF-8",
              lambda w: b"\x82\xa5state\xa2\xff\xfe\xa2ts\x01", "malformed", channel="status"),
        _mqtt("status_truncated", "malformed", "a status map cut after its first key",
              lambda w: b"\x82\xa5state", "malformed", channel="status"),
        _mqtt("status_json_text", "types", "a status sent as JSON text (MessagePack reads an int, then junk)",
              lambda w: b'{"state": "online", "ts": 1}', "schema", channel="status"),
        # ---------------------------------------------------------------- deep nesting
        _mqtt("nested_arrays_as_frame", "nesting", "5,000 nested one-element arrays as the whole frame",
              lambda w: _nested_arrays(5000), "schema"),
        _mqtt("nested_maps_as_frame", "nesting", "2,700 nested maps as the whole frame",
              lambda w: _nested_maps(2700), "schema"),
        _mqtt("nested_arrays_as_payload", "nesting", "a signed frame whose payload is 8,000 nested arrays",
              lambda w: w.signed(_nested_arrays(8000)), "schema"),
        _mqtt("nested_unknown_field_before_kind", "nesting",
              "2,400 nested maps in an unknown field placed before `kind` (the decoder must skip it)",
              _deep_before_tag, "malformed"),
        _mqtt("nested_body", "nesting", "a body of 2,400 nested maps", _deep_body, "schema"),
        _mqtt("nested_status", "nesting", "a status with 7,000 nested arrays in an unknown field",
              lambda w: b"\x83\xa1z" + _nested_arrays(7000) + b"\xa5state\xa6online\xa2ts\x01", "schema",
              channel="status"),
        # ---------------------------------------------------------------- frame fields
        _mqtt("frame_is_a_map", "types", "a frame sent as a map, not a 3-array",
              lambda w: _enc({"payload": b"x", "alg": "hmac-sha256", "sig": b"\0" * 32}), "schema"),
        _mqtt("frame_four_items", "types", "a frame with a fourth item",
              lambda w: _enc([_enc(w.envelope()), "hmac-sha256", b"\0" * 32, "extra"]), "schema"),
        _mqtt("frame_payload_is_str", "types", "the envelope as a str, not bin",
              _frame("not bytes", "hmac-sha256", b"\0" * 32), "schema"),
        _mqtt("frame_alg_is_int", "types", "alg is an integer", _frame(b"x" * 40, 256, b"\0" * 32), "schema"),
        _mqtt("frame_alg_unknown", "types", "alg 'rsa-sha1' (not hmac-sha256 / ed25519)",
              _frame(b"x" * 40, "rsa-sha1", b"\0" * 32), "schema"),
        _mqtt("frame_sig_is_str", "types", "sig is a str", _frame(b"x" * 40, "hmac-sha256", "s" * 32), "schema"),
        _mqtt("empty_signature", "signature", "an empty sig (minimum 32 bytes)",
              _frame(lambda w: _enc(w.envelope()), "hmac-sha256", b""), "schema"),
        # ---------------------------------------------------------------- envelope fields
        *[
            _mqtt(f"envelope_{fname}_{i}", "types", what, _with(fname, value), "schema")
            for i, (fname, what, value) in enumerate(_TYPE_CASES)
        ],
        _mqtt("unknown_envelope_field", "types", "an extra envelope field `admin: true`",
              lambda w: w.signed({**w.envelope(), "admin": True}), "schema"),
        _mqtt("unknown_body_field", "types", "an extra body field next to `text`",
              lambda w: w.signed(w.envelope(body={"text": "x", "student": "stu-0001"})), "schema"),
        _mqtt("protocol_version_2", "types", "v = 2 (this hub speaks 1)", _with("v", 2), "schema"),
        _mqtt("protocol_version_0", "types", "v = 0", _with("v", 0), "schema"),
        _mqtt("unknown_kind", "types", "kind 'door_open'", _with("kind", "door_open"), "schema"),
        _mqtt("biometric_score_above_one", "types", "biometric score 1.5 (range 0-1)",
              lambda w: w.signed(w.envelope(kind="biometric_match", body={"subject": "stu-0001", "score": 1.5})),
              "schema"),
        _mqtt("sensor_value_nan", "types", "sensor value NaN (no JSON, no ordering)",
              _sensor(value=float("nan")), "schema"),
        _mqtt("sensor_value_infinity", "types", "sensor value +Infinity", _sensor(value=float("inf")), "schema"),
        _mqtt("heartbeat_uptime_overflow", "types", "uptime_s = 2**64 - 1 (beyond PostgreSQL bigint)",
              _heartbeat(uptime_s=2**64 - 1), "schema"),
        _mqtt("heartbeat_outbox_overflow", "types", "outbox_depth = 2**40 (beyond PostgreSQL integer)",
              _heartbeat(outbox_depth=2**40), "schema"),
        _mqtt("nul_in_firmware", "types", "a NUL character in heartbeat firmware (PostgreSQL text cannot hold it)",
              _heartbeat(firmware="edge\x00/1.0"), "schema"),
        _mqtt("nul_in_sensor_unit", "types", "a NUL character in a sensor unit", _sensor(unit="p\x00pm"), "schema"),
        _mqtt("nul_in_biometric_subject", "types", "a NUL character in a biometric subject",
              _biometric("stu-0001\x00"), "schema"),
        _mqtt("status_state_unknown", "types", "status state 'rebooting'", _status(state="rebooting"), "schema",
              channel="status"),
        _mqtt("status_ts_is_string", "types", "status ts is a string", _status(ts="now"), "schema",
              channel="status"),
        _mqtt("nul_in_status_reason", "types", "a NUL character in a status reason",
              _status(reason="bye\x00"), "schema", channel="status"),
        _mqtt("empty_status", "types", "an empty payload on a status topic (clears a retained status)",
              lambda w: b"", "empty_status", channel="status"),
        _mqtt("newline_in_status_reason", "types", "a status reason with a newline and a fake log line (log injection)",
              _status(reason="x\nCRITICAL hub.auth fake"), "schema", channel="status"),
        _mqtt("escape_in_status_reason", "types", "a status reason with a terminal escape sequence",
              _status(reason="\x1b[2Jgone"), "schema", channel="status"),
        # ---------------------------------------------------------------- signatures
        _mqtt("hmac_wrong_key", "signature", "HMAC with another key",
              lambda w: w.signed(w.envelope(), key=b"k" * 32), "bad_signature"),
        _mqtt("hmac_flipped_signature_bit", "signature", "one bit of a valid HMAC flipped",
              lambda w: _flip_sig_bit(w, "hmac"), "bad_signature"),
        _mqtt("hmac_flipped_payload_bit", "signature", "one bit of the signed envelope flipped (still valid MessagePack)",
              _flip_payload_bit, "bad_signature"),
        _mqtt("hmac_zero_signature", "signature", "32 zero bytes as the HMAC",
              _frame(lambda w: _enc(w.envelope()), "hmac-sha256", b"\0" * 32), "bad_signature"),
        _mqtt("ed25519_sig_on_hmac_device", "signature", "an Ed25519 signature from an HMAC device",
              lambda w: w.signed(w.envelope(), alg="ed25519", key=b"e" * 32), "bad_signature"),
        _mqtt("hmac_sig_on_ed25519_device", "signature", "an HMAC (keyed with the public key) from an Ed25519 device",
              lambda w: w.signed(w.envelope("ed25519"), "ed25519", alg="hmac-sha256", key=b"p" * 32),
              "bad_signature", device="@ed25519"),
        _mqtt("ed25519_wrong_key", "signature", "Ed25519 signed by another key pair", _wrong_ed25519_key,
              "bad_signature", device="@ed25519"),
        _mqtt("ed25519_flipped_signature_bit", "signature", "one bit of a valid Ed25519 signature flipped",
              lambda w: _flip_sig_bit(w, "ed25519"), "bad_signature", device="@ed25519"),
        _mqtt("ed25519_zero_signature", "signature", "64 zero bytes as the Ed25519 signature",
              _frame(lambda w: _enc(w.envelope("ed25519")), "ed25519", b"\0" * 64), "bad_signature",
              device="@ed25519"),
        # ---------------------------------------------------------------- identity
        _mqtt("device_mismatch", "identity", "topic names the HMAC device, the (validly signed) envelope the Ed25519 one",
              lambda w: w.signed(w.envelope("ed25519"), "ed25519"), "device_mismatch"),
        _mqtt("unknown_device", "identity", "a well-formed, signed event from a device nobody registered",
              _ghost_scan, "unknown_device", device=_GHOST.device_id),
        _mqtt("revoked_device", "identity", "a correctly signed event from a revoked device",
              lambda w: w.signed(w.envelope("revoked"), "revoked"), "revoked_device", device="@revoked"),
        _mqtt("revoked_device_command_ack", "identity", "a correctly signed command_ack from a revoked device",
              _command_ack(lambda w: w.commands["ed25519"], "revoked"), "revoked_device", device="@revoked"),
        _mqtt("command_ack_unknown_command", "identity", "a command_ack for a command id the hub never issued",
              _command_ack(lambda w: uuid.uuid4()), "unknown_command"),
        _mqtt("command_ack_other_devices_command", "identity",
              "a command_ack for a command sent to another device (it stays unanswered)",
              _command_ack(lambda w: w.commands["ed25519"], detail="'; UPDATE device_commands SET status='acked';--"),
              "unknown_command"),
        _mqtt("status_of_unknown_device", "identity", "a valid status for an unregistered device",
              _status(device="hostile-ghost-status"), "unknown_device", channel="status",
              device="hostile-ghost-status"),
        _mqtt("status_device_mismatch", "identity",
              "on the HMAC device's status topic, a status of the Ed25519 device, validly signed by it",
              _status("offline", signer="ed25519"), "device_mismatch", channel="status"),
        # ---------------------------------------------------------------- statuses and Wills (issue 12 §3)
        _mqtt("forged_offline_status", "signature", "an offline status for a live device, signed with another key",
              _status("offline", reason="shutdown", key=b"k" * 32), "bad_signature", channel="status"),
        _mqtt("forged_online_status", "signature", "an online status for a dead device, signed with another key",
              _status("online", reason="connected", key=b"k" * 32), "bad_signature", channel="status"),
        _mqtt("forged_ed25519_status", "signature", "an offline status of the Ed25519 device, signed by another key pair",
              _status("offline", signer="ed25519", key=Ed25519PrivateKey.generate().private_bytes_raw()),
              "bad_signature", channel="status", device="@ed25519"),
        _mqtt("unsigned_will", "signature",
              "a Last Will in the old unsigned format (anyone can connect with it as Will for any device)",
              _unsigned_will, "unsigned_status", channel="status"),
        _mqtt("will_of_an_older_connection", "replay",
              "two connections' online statuses, then the first connection's Will (late or replayed)",
              _will_of_an_older_connection, (STATUS_APPLIED, STATUS_APPLIED, "stale_status"), channel="status"),
        _mqtt("status_pinned_110s_ahead", "time",
              "a validly signed offline status stamped 110 s ahead (would pin the state against later statuses)",
              lambda w: _status("offline", int((time.time() + 110) * 1000), reason="shutdown")(w), "clock_skew",
              channel="status"),
        _mqtt("empty_device_level_up", "identity", "topic .../dev//up (empty device level)",
              lambda w: w.signed(w.envelope()), "bad_topic", device=""),
        _mqtt("empty_device_level_status", "identity", "topic .../dev//status", _status(), "bad_topic",
              channel="status", device=""),
        # ---------------------------------------------------------------- time
        _mqtt("clock_one_day_ahead", "time", "a signed scan stamped 24 h in the future", _in_future(86400),
              "clock_skew"),
        _mqtt("clock_at_max_ts", "time", "ts = 2**53 ms (year 287,396)", _with("ts", 2**53), "clock_skew"),
        _mqtt("clock_just_over_skew", "time", "a heartbeat 300 s ahead (limit 120 s)",
              lambda w: w.signed(w.envelope(kind="heartbeat", ts=int((time.time() + 300) * 1000))), "clock_skew"),
        _mqtt("status_far_future", "time",
              "a status stamped 2**53 ms: would pin the device's state, every later real status being 'older'",
              _status(state="offline", ts=2**53, reason="forged"), "clock_skew", channel="status",
              device="@hmac"),
        _mqtt("scan_at_epoch", "time",
              "a scan stamped 1970-01-01: older than the dedup ledger's window (docs/data-lifecycle.md)",
              _with("ts", 0), "expired"),
        _mqtt("scan_past_ledger_window", "time", "a scan signed 7 days and 2 hours ago, just past the ledger window",
              lambda w: w.signed(w.envelope(kind="qr_scan", ts=int((time.time() - 7 * 86400 - 7200) * 1000))),
              "expired"),
        # ---------------------------------------------------------------- replay
        _mqtt("same_event_twice", "replay", "a sensor reading, then the identical message again",
              _same_event_twice, (ACCEPTED_SENSOR, DEDUPLICATED)),
        _mqtt("same_event_id_new_body", "replay", "a reading, then a re-signed one with the same event id and another value",
              _same_id_new_body, (ACCEPTED_SENSOR, DEDUPLICATED)),
        _mqtt("rejected_event_twice", "replay", "a rejected (authenticated) scan sent twice: stored once",
              _rejected_twice, ("invalid_token", DEDUPLICATED)),
        _mqtt("garbage_twice", "replay", "identical garbage sent twice: stored once",
              lambda w: [b"\xc1garbage-twice", b"\xc1garbage-twice"], ("malformed", DEDUPLICATED)),
        _mqtt("token_twice", "replay", "a check-in, then the same token in a new event (another phone's photo of the QR)",
              _token_twice, (CHECKED_IN, "replayed_token")),
        # ---------------------------------------------------------------- injection
        *[
            # Refused by the topic's device id shape before any lookup (issue 12 §3).
            _mqtt(f"sql_in_uplink_topic_{i}", "injection", f"topic device level {sql!r}, envelope of the real device",
                  lambda w: w.signed(w.envelope()), "bad_topic", device=sql)
            for i, sql in enumerate(SQL_INJECTIONS)
        ],
        _mqtt("sql_in_status_topic", "injection", "status on a topic whose device level is SQL",
              _status(), "bad_topic", channel="status", device="dev'); DELETE FROM devices;--"),
        _mqtt("html_in_status_topic", "injection", "status on a topic whose device level is an <img onerror> tag",
              _status(), "bad_topic", channel="status", device="<img src=x onerror=alert(1)>"),
        _mqtt("sql_in_envelope_device", "injection", "envelope device id is SQL (the topic carries it too)",
              lambda w: w.signed({**w.envelope(), "device": SQL_INJECTIONS[1]}), "bad_topic",
              device=SQL_INJECTIONS[1]),
        _mqtt("sql_in_token_student", "injection", "QR token whose student id is SQL: not a token",
              _scan_with_text("CH1.x' OR '1'='1.1.abcdefghijklmnop"), "invalid_token"),
        _mqtt("sql_comment_token_student", "injection", "QR token with a student id '1--' (legal characters, no such student)",
              _scan_with_text(lambda w: "CH1.1--." + w.token("replay").split(".", 2)[2]), "not_enrolled"),
        _mqtt("html_in_token_student", "injection", "QR token whose student id is a <script> tag",
              _scan_with_text(f"CH1.{SCRIPT}.1.abcdefghijklmnop"), "invalid_token"),
        _mqtt("sql_in_biometric_subject", "injection", "biometric subject is SQL",
              _biometric("'; DROP TABLE attendance;--"), "not_enrolled"),
        _mqtt("html_in_biometric_subject", "injection", "biometric subject is a <script> tag (shown on the admin page)",
              _biometric(SCRIPT), "not_enrolled"),
        _mqtt("sql_in_sensor_metric", "injection", "sensor metric is SQL (metrics are ^[a-z][a-z0-9_]*$)",
              _sensor(metric="co2'; DROP TABLE sensor_readings;--"), "schema"),
        _mqtt("outsider_token", "injection", "a genuine token of a student not enrolled here",
              _scan_with_text(lambda w: w.token("outsider")), "not_enrolled"),
        _mqtt("expired_token", "injection", "a genuine token from 2 minutes ago",
              _scan_with_text(lambda w: w.token("replay", time.time() - 120)), "expired_token"),
    ]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), Counter(names).most_common(3)
    return cases


MQTT_CASES: list[MqttCase] = _mqtt_cases()


# =============================================================================== HTTP


@dataclass
class HttpWorld:
    """What the HTTP cases are resolved against (filled by the test from the running hub)."""

    jwt_secret: bytes
    users: dict[str, str]  # role -> user id of a real user
    tokens: dict[str, str]  # role -> a valid access token
    session_id: str  # a live session taught by the faculty user
    student_id: str  # a student enrolled in it
    other_student_id: str
    #: A refresh token already rotated once (its successor is ``rotated_successor``).
    rotated_refresh: str = ""
    rotated_successor: str = ""
    #: More rows the API cases name (``{other_leave_id}``, ``{course_id}``, ...): see ``API_WORLD_IDS``.
    ids: dict[str, str] = field(default_factory=dict)

    def fill(self, path: str) -> str:
        return path.format(session_id=self.session_id, student_id=self.student_id,
                           other_student_id=self.other_student_id, **self.ids)


def _claims(world: HttpWorld, role: str = "admin", **overrides: Any) -> dict:
    now = int(time.time())
    claims = {"sub": world.users[role], "role": role, "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not ...}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _alg_none(world: HttpWorld) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(_claims(world)).encode())}."


def _tampered(world: HttpWorld) -> str:
    header, payload, sig = world.tokens["student"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    return f"{header}.{_b64(json.dumps(claims).encode())}.{sig}"


def _hs512(world: HttpWorld) -> str:
    with warnings.catch_warnings():  # PyJWT: the hub's key is short for SHA-512; that is the point
        warnings.simplefilter("ignore")
        return jwt.encode(_claims(world), world.jwt_secret, algorithm="HS512")


#: ``auth`` kinds: how the Authorization header (or cookie) of a case is made.
AUTH_KINDS: dict[str, Callable[[HttpWorld], dict[str, str]]] = {
    "none": lambda w: {},
    "admin": lambda w: {"Authorization": f"Bearer {w.tokens['admin']}"},
    "faculty": lambda w: {"Authorization": f"Bearer {w.tokens['faculty']}"},
    "ops": lambda w: {"Authorization": f"Bearer {w.tokens['ops']}"},
    "student": lambda w: {"Authorization": f"Bearer {w.tokens['student']}"},
    "garbage": lambda w: {"Authorization": "Bearer not.a.jwt"},
    "garbage_long": lambda w: {"Authorization": "Bearer " + "A" * 6000},
    "basic_scheme": lambda w: {"Authorization": "Basic YWRtaW46Y2FtcHVzaHVi"},
    "bearer_empty": lambda w: {"Authorization": "Bearer"},
    "expired": lambda w: {"Authorization": "Bearer " + jwt.encode(
        _claims(w, iat=int(time.time()) - 3600, exp=int(time.time()) - 60), w.jwt_secret, algorithm="HS256")},
    "other_key": lambda w: {"Authorization": "Bearer " + jwt.encode(
        _claims(w), b"another-secret-that-is-32-bytes-long!", algorithm="HS256")},
    "alg_none": lambda w: {"Authorization": "Bearer " + _alg_none(w)},
    "tampered": lambda w: {"Authorization": "Bearer " + _tampered(w)},
    "hs512": lambda w: {"Authorization": "Bearer " + _hs512(w)},
    "unknown_role": lambda w: {"Authorization": "Bearer " + jwt.encode(
        _claims(w, role="admin") | {"role": "root"}, w.jwt_secret, algorithm="HS256")},
    "no_jti": lambda w: {"Authorization": "Bearer " + jwt.encode(_claims(w, jti=...), w.jwt_secret, algorithm="HS256")},
    "exp_string": lambda w: {"Authorization": "Bearer " + jwt.encode(
        _claims(w) | {"exp": "tomorrow"}, w.jwt_secret, algorithm="HS256")},
    "ghost_user": lambda w: {"Authorization": "Bearer " + jwt.encode(
        _claims(w) | {"sub": "usr-does-not-exist"}, w.jwt_secret, algorithm="HS256")},
    "cookie_alg_none": lambda w: {"Cookie": f"ch_access={_alg_none(w)}"},
    "cookie_garbage_refresh": lambda w: {"Cookie": "ch_refresh=forged-refresh-token"},
}


def authorization(kind: str, world: HttpWorld) -> dict[str, str]:
    return AUTH_KINDS[kind](world)


#: ``HttpCase.json`` when the case sends no JSON (``None`` is the JSON document ``null``).
UNSET: Any = object()


@dataclass(frozen=True)
class HttpCase:
    name: str
    category: str
    what: str
    method: str
    path: str
    status: int
    code: str | None  # JSON error code; None: an HTML page (``absent`` must not appear) or a 2xx JSON body
    auth: str = "none"
    headers: dict[str, str] = field(default_factory=dict)
    #: A JSON document, or ``world -> document`` for bodies naming world rows.
    json: Any = UNSET
    body: bytes | None = None
    chunked: bytes | None = None
    #: Refresh-token cases: which world token goes in the body.
    refresh: str | None = None
    absent: tuple[str, ...] = ()
    present: tuple[str, ...] = ()
    #: On the JSON body: a 2xx body, or (with ``code``) an error body, which may then carry more keys.
    check: Callable[[Any], bool] | None = None
    #: Rows this request may add, by table (of ``WATCHED_TABLES``); every other count must stay.
    adds: dict[str, int] = field(default_factory=dict)
    #: A response that is neither JSON nor a page (a download): its exact Content-Type ...
    content_type: str | None = None
    #: ... and headers that must start with these values.
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def channel(self) -> str:
        return f"{self.method} {self.path}"


_LOGIN = "/api/v1/auth/login"
#: A failed login writes one security-audit entry (``login_failed``), and nothing else.
_FAILED_LOGIN_AUDITED = {"audit_log": 1}
_MB5 = 5 * 1024 * 1024


def _http_cases() -> list[HttpCase]:
    C = HttpCase
    cases = [
        # ---------------------------------------------------------------- tokens
        C("no_authorization", "auth", "no credentials at all", "GET", "/api/v1/me", 401, "unauthenticated"),
        C("garbage_bearer", "auth", "'Bearer not.a.jwt'", "GET", "/api/v1/me", 401, "invalid_token", auth="garbage"),
        C("garbage_bearer_6kb", "auth", "a 6 KB garbage bearer token", "GET", "/api/v1/me", 401, "invalid_token",
          auth="garbage_long"),
        C("basic_scheme", "auth", "HTTP Basic instead of Bearer", "GET", "/api/v1/me", 401, "invalid_token",
          auth="basic_scheme"),
        C("bearer_without_token", "auth", "'Bearer' and nothing else", "GET", "/api/v1/me", 401, "invalid_token",
          auth="bearer_empty"),
        C("expired_jwt", "auth", "a genuine admin token expired a minute ago", "GET", "/api/v1/devices", 401,
          "token_expired", auth="expired"),
        C("jwt_other_key", "auth", "an admin token signed with another key", "GET", "/api/v1/devices", 401,
          "invalid_token", auth="other_key"),
        C("jwt_alg_none", "auth", "alg 'none', no signature", "GET", "/api/v1/devices", 401, "invalid_token",
          auth="alg_none"),
        C("jwt_tampered_role", "auth", "a student's token with role changed to admin, signature kept",
          "GET", "/api/v1/devices", 401, "invalid_token", auth="tampered"),
        C("jwt_hs512", "auth", "right key, algorithm HS512 (only HS256 is accepted)", "GET", "/api/v1/devices", 401,
          "invalid_token", auth="hs512"),
        C("jwt_unknown_role", "auth", "right key, role 'root'", "GET", "/api/v1/devices", 401, "invalid_token",
          auth="unknown_role"),
        C("jwt_without_jti", "auth", "right key, no jti claim", "GET", "/api/v1/me", 401, "invalid_token",
          auth="no_jti"),
        C("jwt_exp_string", "auth", "right key, exp 'tomorrow'", "GET", "/api/v1/me", 401, "invalid_token",
          auth="exp_string"),
        C("jwt_ghost_user", "auth", "right key, a user id that does not exist", "GET", "/api/v1/me", 401,
          "unauthenticated", auth="ghost_user"),
        C("cookie_alg_none", "auth", "an alg-none token in the access cookie", "GET", "/api/v1/me", 401,
          "invalid_token", auth="cookie_alg_none"),
        C("cookie_forged_refresh", "auth", "a forged refresh cookie (the API would refresh a real one)",
          "GET", "/api/v1/me", 401, "invalid_refresh_token", auth="cookie_garbage_refresh"),
        C("student_reads_devices", "auth", "a student calling an ops/admin endpoint", "GET", "/api/v1/devices",
          403, "forbidden", auth="student"),
        C("student_reads_other_student", "auth", "a student reading another student's attendance",
          "GET", "/api/v1/students/{other_student_id}/attendance", 403, "forbidden", auth="student"),
        C("student_reads_roster", "auth", "a student reading a roster", "GET", "/api/v1/sessions/{session_id}/roster",
          403, "forbidden", auth="student"),
        C("refresh_reused_after_rotation", "auth", "a refresh token presented again after it was rotated",
          "POST", "/api/v1/auth/refresh", 401, "invalid_refresh_token", refresh="rotated"),
        C("refresh_successor_revoked_by_reuse", "auth", "its successor, after that reuse (the family is revoked)",
          "POST", "/api/v1/auth/refresh", 401, "invalid_refresh_token", refresh="successor"),
        C("refresh_forged", "auth", "a refresh token nobody issued", "POST", "/api/v1/auth/refresh", 401,
          "invalid_refresh_token", json={"refresh_token": "A" * 43}),
        # ---------------------------------------------------------------- bodies
        C("login_body_5mb", "body", "a 5 MB JSON login body (Content-Length declared)", "POST", _LOGIN, 413,
          "request_entity_too_large", headers={"Content-Type": "application/json"},
          body=b'{"username": "admin", "password": "' + b"x" * _MB5 + b'"}'),
        C("login_body_5mb_chunked", "body", "a 5 MB JSON login body, chunked (no Content-Length)", "POST", _LOGIN,
          413, "request_entity_too_large", headers={"Content-Type": "application/json"},
          chunked=b'{"username": "admin", "password": "' + b"x" * _MB5 + b'"}'),
        C("form_login_5mb", "body", "a 5 MB login form (page)", "POST", "/login", 413, None,
          headers={"Content-Type": "application/x-www-form-urlencoded"}, body=b"username=a&password=" + b"x" * _MB5),
        C("malformed_json", "body", "'{\"username\": ' (truncated JSON)", "POST", _LOGIN, 400, "invalid_request",
          headers={"Content-Type": "application/json"}, body=b'{"username": '),
        C("json_array_body", "body", "a JSON array, not an object", "POST", _LOGIN, 400, "invalid_request",
          json=["admin", "campushub"]),
        C("json_null_body", "body", "JSON null", "POST", _LOGIN, 400, "invalid_request",
          headers={"Content-Type": "application/json"}, body=b"null"),
        C("username_wrong_type", "body", "username is a number", "POST", _LOGIN, 400, "invalid_request",
          json={"username": 1, "password": "x"}),
        C("password_missing", "body", "no password field", "POST", _LOGIN, 400, "invalid_request",
          json={"username": "admin"}),
        C("deeply_nested_json", "body", "30,000 nested JSON arrays (inside the 64 KiB limit)", "POST", _LOGIN, 400,
          "invalid_request", headers={"Content-Type": "application/json"}, body=b"[" * 30000 + b"]" * 30000),
        C("json_not_utf8", "body", "a JSON body that is not UTF-8", "POST", _LOGIN, 400, "invalid_request",
          headers={"Content-Type": "application/json"}, body=b'{"username": "\xff\xfe", "password": "x"}'),
        C("json_huge_integer", "body", "a 5,000-digit integer as username", "POST", _LOGIN, 400, "invalid_request",
          headers={"Content-Type": "application/json"}, body=b'{"username": ' + b"9" * 5000 + b', "password": "x"}'),
        C("content_type_text_plain", "body", "a JSON body sent as text/plain (CSRF-style simple request)",
          "POST", _LOGIN, 415, "unsupported_media_type", headers={"Content-Type": "text/plain"},
          body=b'{"username": "admin", "password": "campushub"}'),
        C("content_type_form", "body", "a form body to the JSON API", "POST", _LOGIN, 415, "unsupported_media_type",
          headers={"Content-Type": "application/x-www-form-urlencoded"}, body=b"username=admin&password=campushub"),
        C("content_type_missing", "body", "no Content-Type at all", "POST", "/api/v1/auth/refresh", 415,
          "unsupported_media_type", body=b'{"refresh_token": "x"}'),
        C("nul_in_username", "body", "a NUL character in the username (no text column can hold it)", "POST",
          _LOGIN, 400, "invalid_request", json={"username": "admin\u0000", "password": "campushub"}),
        C("lone_surrogate_in_username", "body", "an unpaired UTF-16 surrogate (\\ud800) in the username", "POST",
          _LOGIN, 400, "invalid_request", headers={"Content-Type": "application/json"},
          body=b'{"username": "\\ud800admin", "password": "campushub"}'),
        C("lone_surrogate_in_password", "body", "an unpaired surrogate in the password (argon2 cannot hash it)",
          "POST", _LOGIN, 400, "invalid_request", headers={"Content-Type": "application/json"},
          body=b'{"username": "admin", "password": "\\udfffx"}'),
        C("nul_in_form_username", "body", "a NUL character in the login form's username (page)", "POST", "/login",
          401, None, headers={"Content-Type": "application/x-www-form-urlencoded"}, body=b"username=adm%00in&password=x"),
        C("nul_in_refresh_token", "body", "a NUL character in a refresh token", "POST",
          "/api/v1/auth/refresh", 400, "invalid_request", json={"refresh_token": "abc\u0000def"}),
        # ---------------------------------------------------------------- injection
        *[
            C(f"sql_username_{i}", "injection", f"login as {sql!r}", "POST", _LOGIN, 401, "invalid_credentials",
              json={"username": sql, "password": sql}, adds=_FAILED_LOGIN_AUDITED)
            for i, sql in enumerate(("admin' --", "' OR '1'='1", "admin'; UPDATE users SET role='admin';--"))
        ],
        C("html_username_form_login", "injection", "form login as a <script> tag: the 401 page echoes it, escaped",
          "POST", "/login", 401, None, headers={"Content-Type": "application/x-www-form-urlencoded"},
          body=b"username=%3Cscript%3Ealert(1)%3C%2Fscript%3E&password=x", absent=(SCRIPT,),
          present=("&lt;script&gt;alert(1)&lt;/script&gt;",), adds=_FAILED_LOGIN_AUDITED),
        C("html_in_next_param", "injection", "login page with next=/\"><script>…", "GET",
          "/login?next=/%22%3E%3Cscript%3Ealert(1)%3C/script%3E", 200, None, absent=(SCRIPT,)),
        C("open_redirect_next", "injection", "login page with next=//evil.example (dropped)", "GET",
          "/login?next=//evil.example/x", 200, None, absent=("evil.example",)),
        C("sql_in_reason_query", "injection", "?reason=' OR '1'='1 matches nothing", "GET",
          "/api/v1/rejections?reason=%27%20OR%20%271%27%3D%271", 200, None, auth="admin",
          check=lambda body: body["total"] == 0 and body["items"] == [] and body["reason"] == "' OR '1'='1"),
        C("html_in_reason_query", "injection", "?reason=<script> comes back only as JSON data", "GET",
          "/api/v1/rejections?reason=%3Cscript%3Ealert(1)%3C/script%3E", 200, None, auth="admin",
          check=lambda body: body["total"] == 0 and body["reason"] == SCRIPT),
        C("nul_in_reason_query", "injection", "?reason=%00", "GET", "/api/v1/rejections?reason=%00", 400,
          "invalid_request", auth="admin"),
        C("sql_in_limit", "injection", "?limit=1;DROP TABLE users", "GET",
          "/api/v1/rejections?limit=1%3BDROP%20TABLE%20users", 400, "invalid_request", auth="admin"),
        C("negative_limit", "injection", "?limit=-1", "GET", "/api/v1/rejections?limit=-1", 400, "invalid_request",
          auth="admin"),
        C("huge_offset", "injection", "?offset=10**30", "GET", "/api/v1/rejections?offset=" + "9" * 31, 400,
          "invalid_request", auth="admin"),
        C("sql_in_session_path", "injection", "a roster for session ' OR 1=1--", "GET",
          "/api/v1/sessions/%27%20OR%201%3D1--/roster", 404, "not_found", auth="admin"),
        C("html_in_session_path", "injection", "a roster for session <script>", "GET",
          "/api/v1/sessions/%3Cscript%3E/roster", 404, "not_found", auth="admin"),
        C("nul_in_session_path", "injection", "a roster for session %00", "GET", "/api/v1/sessions/%00/roster", 400,
          "invalid_request", auth="admin"),
        C("slash_in_session_path", "injection", "a session id with an encoded slash (../)", "GET",
          "/api/v1/sessions/..%2F..%2Fetc%2Fpasswd/roster", 404, "not_found", auth="admin"),
        C("sql_in_student_path", "injection", "attendance of student x' OR '1'='1", "GET",
          "/api/v1/students/x%27%20OR%20%271%27%3D%271/attendance", 404, "not_found", auth="admin"),
        C("sql_in_student_path_faculty", "injection", "the same as faculty (not their student)", "GET",
          "/api/v1/students/x%27%20OR%20%271%27%3D%271/attendance", 403, "forbidden", auth="faculty"),
        C("nul_in_student_path", "injection", "attendance of student %00", "GET", "/api/v1/students/%00/attendance",
          400, "invalid_request", auth="admin"),
        C("html_in_page_path", "injection", "the faculty roster page of session <script>", "GET",
          "/faculty/sessions/%3Cscript%3Ealert(1)%3C%2Fscript%3E", 404, None, auth="admin", absent=(SCRIPT,)),
        # ---------------------------------------------------------------- methods and routes
        C("put_me", "method", "PUT on a read-only resource", "PUT", "/api/v1/me", 405, "method_not_allowed",
          auth="admin", json={"role": "admin"}),
        C("get_login", "method", "GET on the login endpoint", "GET", _LOGIN, 405, "method_not_allowed"),
        C("delete_rejections", "method", "DELETE /api/v1/rejections", "DELETE", "/api/v1/rejections", 405,
          "method_not_allowed", auth="admin"),
        C("unknown_api_route", "method", "a route that does not exist", "GET", "/api/v1/admin/users", 404,
          "not_found", auth="admin"),
    ]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), Counter(names).most_common(3)
    return cases


# ------------------------------------------------------------------------------- the grown API

#: Tables whose row counts the HTTP runner compares around every case (``HttpCase.adds``).
WATCHED_TABLES = (
    "users", "rooms", "courses", "terms", "sections", "holidays", "enrolments", "class_sessions", "attendance",
    "audit_log", "leave_applications", "leave_documents", "correction_requests", "condonation_applications",
    "notifications", "webhook_subscriptions", "tickets", "ticket_comments", "devices", "device_commands",
    "threshold_rules", "alarms",
)
#: ``HttpWorld.ids`` keys the API cases use (the HTTP test fills each).
API_WORLD_IDS = (
    "course_id",            # the world faculty's course (of the live session)
    "room_id",              # the live session's room
    "device_id",            # a device in it
    "term_id",              # a term created for the test
    "ticket_id",            # a ticket the world student reported
    "own_leave_id",         # the world student's leave, with a PDF document named hostilely
    "other_leave_id",       # another student's leave, with a document
    "other_correction_id",  # another student's correction request
    "other_notification_id",  # another student's notification
    "other_course_id",      # a course another faculty member teaches
    "other_session_id",     # a session of that course
)

_PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
_HTML_PAGE = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
_EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"PE\x00\x00"
_KIB = 1024
_MIB = 1024 * 1024
_CSV = {"Content-Type": "text/csv"}
_JSON = {"Content-Type": "application/json"}
_IMPORT = "/api/v1/enrolments/import"
_CSV_HEAD = b"student_id,section_id\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _document(data: bytes, filename: str = "note.pdf", content_type: str | None = "application/pdf") -> dict:
    doc = {"filename": filename, "data_base64": _b64(data)}
    if content_type is not None:
        doc["content_type"] = content_type
    return doc


def leave_body(days_ahead: int, reason: str = "Family function", document: dict | None = None) -> dict:
    """A leave application of two days starting ``days_ahead`` from today (far enough ahead that the
    campus's timezone never matters)."""
    first = date.today() + timedelta(days=days_ahead)
    body = {"starts_on": first.isoformat(), "ends_on": (first + timedelta(days=1)).isoformat(), "reason": reason}
    if document is not None:
        body["document"] = document
    return body


def _leave_with(document: dict, days_ahead: int = 200) -> Callable[[HttpWorld], dict]:
    return lambda world: leave_body(days_ahead, document=document)


def _error_at(line: int, reason: str) -> Callable[[Any], bool]:
    """An ``import_rejected`` body listing a problem on ``line`` whose reason contains ``reason``."""
    return lambda body: any(e["line"] == line and reason in e["reason"] for e in body["errors"])


def _items(body: Any) -> list:
    return body["items"] if isinstance(body, dict) else []


def _webhook(url: str) -> dict:
    return {"url": url, "description": "hostile"}


def _api_cases() -> list[HttpCase]:
    C = HttpCase
    superscript = "%C2%B2"  # '²': str.isdigit() says yes, int() says no
    cases = [
        # ---------------------------------------------------------------- forged tokens on the new API
        C("expired_jwt_leave", "auth", "an expired token on the leave list", "GET", "/api/v1/leave", 401,
          "token_expired", auth="expired"),
        C("jwt_other_key_ticket", "auth", "a token signed with another key files a ticket", "POST",
          "/api/v1/tickets", 401, "invalid_token", auth="other_key", json={"title": "x", "room_id": "x"}),
        C("jwt_alg_none_notifications", "auth", "alg none on the notification centre", "GET",
          "/api/v1/notifications", 401, "invalid_token", auth="alg_none"),
        C("jwt_tampered_audit", "auth", "a student's token promoted to admin reads the audit log", "GET",
          "/api/v1/audit", 401, "invalid_token", auth="tampered"),
        C("jwt_hs512_webhooks", "auth", "HS512 on the webhook list", "GET", "/api/v1/webhooks", 401,
          "invalid_token", auth="hs512"),
        C("expired_jwt_command", "auth", "an expired admin token sends a device command", "POST",
          "/api/v1/devices/{device_id}/commands", 401, "token_expired", auth="expired", json={"name": "reboot"}),
        # ---------------------------------------------------------------- another user's rows
        C("student_reads_other_leave", "ownership", "a student reads another student's leave", "GET",
          "/api/v1/leave/{other_leave_id}", 403, "forbidden", auth="student"),
        C("student_downloads_other_document", "ownership", "... and downloads its document", "GET",
          "/api/v1/leave/{other_leave_id}/document", 403, "forbidden", auth="student"),
        C("student_cancels_other_leave", "ownership", "... and cancels it", "POST",
          "/api/v1/leave/{other_leave_id}/cancel", 403, "forbidden", auth="student", json={}),
        C("student_approves_leave", "ownership", "a student approves a leave", "POST",
          "/api/v1/leave/{other_leave_id}/approve", 403, "forbidden", auth="student", json={}),
        C("student_reads_other_correction", "ownership", "a student reads another student's correction", "GET",
          "/api/v1/corrections/{other_correction_id}", 403, "forbidden", auth="student"),
        C("student_withdraws_other_correction", "ownership", "... and withdraws it", "POST",
          "/api/v1/corrections/{other_correction_id}/withdraw", 403, "forbidden", auth="student", json={}),
        C("student_reads_other_notification", "ownership", "a student marks another user's notification read",
          "POST", "/api/v1/notifications/{other_notification_id}/read", 404, "not_found", auth="student",
          json={}),
        C("student_reads_other_standing", "ownership", "a student reads another student's eligibility", "GET",
          "/api/v1/students/{other_student_id}/standing", 403, "forbidden", auth="student"),
        C("student_reads_other_series", "ownership", "... and their attendance series", "GET",
          "/api/v1/students/{other_student_id}/courses/{course_id}/series", 403, "forbidden", auth="student"),
        C("student_reads_course_report", "ownership", "a student reads a course report", "GET",
          "/api/v1/courses/{course_id}/report", 403, "forbidden", auth="student"),
        C("student_reads_audit", "ownership", "a student reads the audit log", "GET", "/api/v1/audit", 403,
          "forbidden", auth="student"),
        C("student_marks_attendance", "ownership", "a student marks attendance", "POST",
          "/api/v1/sessions/{session_id}/marks", 403, "forbidden", auth="student",
          json=lambda w: {"marks": [{"student_id": w.student_id, "status": "present"}]}),
        C("faculty_reads_other_report", "ownership", "a faculty member reads another's course report", "GET",
          "/api/v1/courses/{other_course_id}/report", 403, "forbidden", auth="faculty"),
        C("faculty_reads_other_report_csv", "ownership", "... as CSV", "GET",
          "/api/v1/courses/{other_course_id}/report.csv", 403, "forbidden", auth="faculty"),
        C("faculty_reads_other_series", "ownership", "... its attendance series", "GET",
          "/api/v1/courses/{other_course_id}/series", 403, "forbidden", auth="faculty"),
        C("faculty_reads_other_roster", "ownership", "... the roster of its session", "GET",
          "/api/v1/sessions/{other_session_id}/roster", 403, "forbidden", auth="faculty"),
        C("faculty_marks_other_session", "ownership", "... marks attendance in its session", "POST",
          "/api/v1/sessions/{other_session_id}/marks", 403, "forbidden", auth="faculty",
          json=lambda w: {"marks": [{"student_id": w.student_id, "status": "present"}]}),
        C("faculty_opens_other_session", "ownership", "... opens its session", "POST",
          "/api/v1/sessions/{other_session_id}/open", 403, "forbidden", auth="faculty", json={}),
        C("faculty_reads_webhooks", "ownership", "a faculty member lists webhooks (admin only)", "GET",
          "/api/v1/webhooks", 403, "forbidden", auth="faculty"),
        C("ops_reads_leave", "ownership", "ops reads leave applications", "GET", "/api/v1/leave", 403,
          "forbidden", auth="ops"),
        C("student_registers_device", "ownership", "a student registers a device", "POST", "/api/v1/devices",
          403, "forbidden", auth="student",
          json=lambda w: {"device_id": "hostile-student-dev", "room_id": w.ids["room_id"], "kind": "sensor"}),
        # ---------------------------------------------------------------- oversized bodies
        C("leave_document_over_limit", "upload", "a leave whose PDF is 5 MB + 1 byte (limit 5 MB)", "POST",
          "/api/v1/leave", 413, "document_too_large", auth="student",
          json=lambda w: leave_body(200, document=_document(_PDF + b"0" * (5 * _MIB + 1 - len(_PDF))))),
        C("leave_body_over_route_limit", "upload", "an 8 MB leave body (route limit ~7.06 MB)", "POST",
          "/api/v1/leave", 413, "request_entity_too_large", auth="student", headers=_JSON,
          body=b'{"starts_on": "2030-01-01", "ends_on": "2030-01-02", "reason": "' + b"r" * (8 * _MIB) + b'"}'),
        C("leave_body_over_route_limit_chunked", "upload", "the same, chunked (no Content-Length)", "POST",
          "/api/v1/leave", 413, "request_entity_too_large", auth="student", headers=_JSON,
          chunked=b'{"starts_on": "2030-01-01", "ends_on": "2030-01-02", "reason": "' + b"r" * (8 * _MIB) + b'"}'),
        C("csv_over_2mib", "upload", "an enrolment CSV of 2 MiB + 1 byte", "POST", _IMPORT, 413,
          "request_entity_too_large", auth="admin", headers=_CSV,
          body=_CSV_HEAD + b"stu-x,sec-y\n" * ((2 * _MIB - len(_CSV_HEAD)) // 12) + b"\n" * 13),
        C("csv_over_2mib_chunked", "upload", "the same CSV, chunked", "POST", _IMPORT, 413,
          "request_entity_too_large", auth="admin", headers=_CSV,
          chunked=_CSV_HEAD + b"stu-x,sec-y\n" * ((2 * _MIB - len(_CSV_HEAD)) // 12) + b"\n" * 13),
        C("json_ticket_over_64kib", "upload", "a 70 KiB ticket (ordinary JSON routes take 64 KiB)", "POST",
          "/api/v1/tickets", 413, "request_entity_too_large", auth="student", headers=_JSON,
          body=b'{"title": "t", "room_id": "r", "description": "' + b"d" * (70 * _KIB) + b'"}'),
        C("json_room_over_64kib_chunked", "upload", "a 100 KiB room, chunked", "POST", "/api/v1/rooms", 413,
          "request_entity_too_large", auth="admin", headers=_JSON,
          chunked=b'{"name": "' + b"n" * (100 * _KIB) + b'", "building": "b"}'),
        C("json_command_over_64kib", "upload", "a device command with 1 MB of args", "POST",
          "/api/v1/devices/{device_id}/commands", 413, "request_entity_too_large", auth="admin", headers=_JSON,
          body=b'{"name": "config_push", "args": {"a": "' + b"a" * _MIB + b'"}}'),
        # ---------------------------------------------------------------- hostile documents
        C("leave_html_as_pdf", "upload", "an HTML page (with a script) declared application/pdf", "POST",
          "/api/v1/leave", 415, "unsupported_document", auth="student",
          json=_leave_with(_document(_HTML_PAGE, "note.pdf"))),
        C("leave_html_undeclared", "upload", "an HTML page named note.pdf, no declared type", "POST",
          "/api/v1/leave", 415, "unsupported_document", auth="student",
          json=_leave_with(_document(_HTML_PAGE, "note.pdf", None))),
        C("leave_exe_as_pdf", "upload", "a Windows executable (MZ) declared application/pdf", "POST",
          "/api/v1/leave", 415, "unsupported_document", auth="student",
          json=_leave_with(_document(_EXE, "note.pdf"))),
        C("leave_elf_as_png", "upload", "an ELF executable declared image/png", "POST", "/api/v1/leave", 415,
          "unsupported_document", auth="student",
          json=_leave_with(_document(b"\x7fELF\x02\x01\x01" + b"\x00" * 64, "x.png", "image/png"))),
        C("leave_svg_as_png", "upload", "an SVG with onload declared image/png", "POST", "/api/v1/leave", 415,
          "unsupported_document", auth="student",
          json=_leave_with(_document(b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "x.png",
                                     "image/png"))),
        C("leave_pdf_declared_png", "upload", "a real PDF declared image/png (mislabelled)", "POST",
          "/api/v1/leave", 415, "unsupported_document", auth="student",
          json=_leave_with(_document(_PDF, "x.png", "image/png"))),
        C("leave_declared_html", "upload", "a PDF declared text/html", "POST", "/api/v1/leave", 415,
          "unsupported_document", auth="student", json=_leave_with(_document(_PDF, "x.html", "text/html"))),
        C("leave_document_not_base64", "upload", "document data that is not base64", "POST", "/api/v1/leave",
          400, "invalid_request", auth="student",
          json=lambda w: leave_body(200, document={"filename": "x.pdf", "data_base64": "%%%not base64%%%"})),
        C("leave_document_empty", "upload", "an empty document (zero bytes, base64 '')", "POST",
          "/api/v1/leave", 400, "invalid_request", auth="student",
          json=lambda w: leave_body(200, document={"filename": "x.pdf", "data_base64": ""})),
        C("document_download_headers", "upload",
          "the student's own document, uploaded as '<script>\\\"evil\\\".html': an attachment, application/pdf, "
          "nosniff, sandboxed", "GET", "/api/v1/leave/{own_leave_id}/document", 200, None, auth="student",
          content_type="application/pdf",
          response_headers={"content-disposition": "attachment; filename=\"", "x-content-type-options": "nosniff",
                            "content-security-policy": "default-src 'none'; sandbox"}),
        # ---------------------------------------------------------------- malformed enrolment CSV
        C("csv_binary", "csv", "a PNG sent as text/csv", "POST", _IMPORT, 400, "invalid_request", auth="admin",
          headers=_CSV, body=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\xfd"),
        C("csv_latin1", "csv", "a Latin-1 CSV (\\xe9 is not UTF-8)", "POST", _IMPORT, 400, "invalid_request",
          auth="admin", headers=_CSV, body="student_id,section_id\nstu-0001,sec-é\n".encode("latin-1")),
        C("csv_utf16", "csv", "a UTF-16 CSV with its byte-order mark", "POST", _IMPORT, 400, "invalid_request",
          auth="admin", headers=_CSV, body="student_id,section_id\nstu-0001,sec-a\n".encode("utf-16")),
        C("csv_nul_bytes", "csv", "NUL bytes on line 3", "POST", _IMPORT, 422, "import_rejected", auth="admin",
          headers=_CSV, body=_CSV_HEAD + b"stu-0001,sec-a\nstu-0002,sec\x00\x00b\n", check=_error_at(3, "NUL")),
        C("csv_100k_columns_header", "csv", "a header of 100,000 columns (none of them known)", "POST", _IMPORT,
          422, "import_rejected", auth="admin", headers=_CSV,
          body=",".join(f"c{i}" for i in range(100_000)).encode() + b"\nx\n", check=_error_at(1, "header needs")),
        C("csv_100k_columns_row", "csv", "a row of 100,000 columns under a 2-column header", "POST", _IMPORT,
          422, "import_rejected", auth="admin", headers=_CSV, body=_CSV_HEAD + b"x," * 99_999 + b"x\n",
          check=_error_at(2, "found 100000")),
        C("csv_100k_duplicate_columns", "csv", "a header repeating student_id 100,000 times", "POST", _IMPORT,
          422, "import_rejected", auth="admin", headers=_CSV,
          body=b"student_id," * 100_000 + b"section_id\n", check=_error_at(1, "more than once")),
        C("csv_quote_never_closed", "csv", "a quote opened on line 3 and never closed", "POST", _IMPORT, 422,
          "import_rejected", auth="admin", headers=_CSV,
          body=_CSV_HEAD + b'stu-0001,sec-a\n"stu-0002,sec-b\nstu-0003,sec-c\n', check=_error_at(3, "malformed")),
        C("csv_field_over_limit", "csv", "a quoted field of 200,000 characters on line 2", "POST", _IMPORT, 422,
          "import_rejected", auth="admin", headers=_CSV,
          body=_CSV_HEAD + b'"' + b"a" * 200_000 + b'",sec-a\n', check=_error_at(2, "malformed")),
        C("csv_sql_student", "csv", "SQL as the student id on line 2 (no such student: nothing applied)",
          "POST", _IMPORT, 422, "import_rejected", auth="admin", headers=_CSV,
          body=_CSV_HEAD + b"'; DELETE FROM enrolments;--,sec-a\n", check=_error_at(2, "")),
        C("csv_html_section", "csv", "a <script> section id on line 2", "POST", _IMPORT, 422, "import_rejected",
          auth="admin", headers=_CSV, body=b"student_id,section_id\nstu-0001,<script>alert(1)</script>\n",
          check=_error_at(2, "section")),
        C("csv_json_surrogate", "csv", "the JSON form with an unpaired surrogate on line 2", "POST", _IMPORT, 422,
          "import_rejected", auth="admin", headers=_JSON,
          body=b'{"csv": "student_id,section_id\\n\\ud800,sec-a\\n"}', check=_error_at(2, "surrogate")),
        C("csv_json_not_a_string", "csv", "the JSON form with 'csv' a number", "POST", _IMPORT, 400,
          "invalid_request", auth="admin", json={"csv": 5}),
        C("csv_as_text_plain", "csv", "a CSV sent as text/plain", "POST", _IMPORT, 415, "unsupported_media_type",
          auth="admin", headers={"Content-Type": "text/plain"}, body=_CSV_HEAD + b"stu-0001,sec-a\n"),
        # ---------------------------------------------------------------- injection stored as data
        C("room_named_with_sql", "stored", "a room named with SQL, in a building named <script>", "POST",
          "/api/v1/rooms", 201, None, auth="admin", json={"name": SQL_INJECTIONS[1], "building": SCRIPT},
          check=lambda b: b["name"] == SQL_INJECTIONS[1] and b["building"] == SCRIPT, adds={"rooms": 1}),
        C("course_titled_with_script", "stored", "a course titled <script>, code with a quote", "POST",
          "/api/v1/courses", 201, None, auth="admin",
          json=lambda w: {"code": "X';--", "title": SCRIPT, "faculty_id": w.users["faculty"]},
          check=lambda b: b["title"] == SCRIPT and b["code"] == "X';--", adds={"courses": 1}),
        C("term_named_with_sql", "stored", "a term named with SQL", "POST", "/api/v1/terms", 201, None,
          auth="admin", json={"name": SQL_INJECTIONS[2], "starts_on": "2031-01-05", "ends_on": "2031-05-01"},
          check=lambda b: b["name"] == SQL_INJECTIONS[2], adds={"terms": 1}),
        C("section_named_with_script", "stored", "a section named <script>", "POST", "/api/v1/sections", 201,
          None, auth="admin",
          json=lambda w: {"course_id": w.ids["course_id"], "term_id": w.ids["term_id"], "name": SCRIPT},
          check=lambda b: b["name"] == SCRIPT, adds={"sections": 1}),
        C("ticket_titled_with_script", "stored", "a ticket titled <script>, described with SQL", "POST",
          "/api/v1/tickets", 201, None, auth="student",
          json=lambda w: {"title": SCRIPT, "description": SQL_INJECTIONS[0], "room_id": w.ids["room_id"]},
          check=lambda b: b["title"] == SCRIPT and b["description"] == SQL_INJECTIONS[0], adds={"tickets": 1}),
        C("ticket_comment_with_img", "stored", "a ticket comment that is an <img onerror> tag", "POST",
          "/api/v1/tickets/{ticket_id}/comments", 201, None, auth="student", json={"body": IMG_XSS},
          check=lambda b: b["body"] == IMG_XSS, adds={"ticket_comments": 1}),
        C("leave_reason_with_sql", "stored", "a leave whose reason is SQL and a <script>", "POST",
          "/api/v1/leave", 201, None, auth="student",
          json=lambda w: leave_body(240, SQL_INJECTIONS[1] + SCRIPT),
          check=lambda b: b["reason"] == SQL_INJECTIONS[1] + SCRIPT,
          adds={"leave_applications": 1, "notifications": 1}),  # the faculty member is told
        C("correction_reason_with_script", "stored", "a correction request whose reason is <script>", "POST",
          "/api/v1/corrections", 201, None, auth="student",
          json=lambda w: {"session_id": w.session_id, "requested_status": "present", "reason": SCRIPT},
          check=lambda b: b["reason"] == SCRIPT, adds={"correction_requests": 1, "notifications": 1}),
        C("device_model_with_script", "stored", "a device registered with model <script>", "POST",
          "/api/v1/devices", 201, None, auth="admin",
          json=lambda w: {"device_id": "hostile-model", "room_id": w.ids["room_id"], "kind": "sensor",
                          "model": SCRIPT},
          check=lambda b: b["device"]["model"] == SCRIPT, adds={"devices": 1, "audit_log": 1}),
        C("read_back_rooms", "stored", "the SQL room name reads back verbatim", "GET", "/api/v1/rooms?limit=200",
          200, None, auth="admin", check=lambda b: SQL_INJECTIONS[1] in [r["name"] for r in _items(b)]),
        C("read_back_tickets", "stored", "the <script> ticket title reads back verbatim (JSON data)", "GET",
          "/api/v1/tickets", 200, None, auth="student", check=lambda b: SCRIPT in [t["title"] for t in _items(b)]),
        C("read_back_leave", "stored", "the SQL leave reason reads back verbatim", "GET", "/api/v1/leave", 200,
          None, auth="student", check=lambda b: SQL_INJECTIONS[1] + SCRIPT in [x["reason"] for x in _items(b)]),
        # ---------------------------------------------------------------- injection refused
        C("device_id_with_sql", "injection", "a device id that is SQL (ids are [A-Za-z0-9_.-])", "POST",
          "/api/v1/devices", 400, "invalid_request", auth="admin",
          json=lambda w: {"device_id": SQL_INJECTIONS[1], "room_id": w.ids["room_id"], "kind": "sensor"}),
        C("device_id_with_script", "injection", "a device id that is a <script> tag", "POST", "/api/v1/devices",
          400, "invalid_request", auth="admin",
          json=lambda w: {"device_id": SCRIPT, "room_id": w.ids["room_id"], "kind": "sensor"}),
        C("threshold_metric_with_sql", "injection", "a threshold on metric co2'; DROP TABLE alarms;--", "POST",
          "/api/v1/thresholds", 400, "invalid_request", auth="ops",
          json={"metric": "co2'; DROP TABLE alarms;--", "op": "above", "value": 1, "severity": "major"}),
        C("threshold_metric_with_script", "injection", "a threshold on metric <script>", "POST",
          "/api/v1/thresholds", 400, "invalid_request", auth="ops",
          json={"metric": SCRIPT, "op": "above", "value": 1, "severity": "major"}),
        C("room_id_with_sql", "injection", "a room id that is SQL", "POST", "/api/v1/rooms", 400,
          "invalid_request", auth="admin", json={"id": SQL_INJECTIONS[0], "name": "n", "building": "b"}),
        C("sql_in_audit_filter", "injection", "?student_id= SQL on the audit search: matches nothing", "GET",
          "/api/v1/audit?student_id=%27%20OR%20%271%27%3D%271", 200, None, auth="admin",
          check=lambda b: b["total"] == 0),
        C("sql_in_audit_action_filter", "injection", "?action= SQL on the audit search: not an action name",
          "GET", "/api/v1/audit?action=%27%20OR%20%271%27%3D%271", 400, "invalid_request", auth="admin"),
        C("nul_in_audit_entity_filter", "injection", "?entity= with a NUL on the audit export", "GET",
          "/api/v1/audit/export?entity=user%00x", 400, "invalid_request", auth="admin"),
        C("audit_action_filter_too_long", "size", "?action= of 65 letters on the audit search", "GET",
          "/api/v1/audit?action=" + "a" * 65, 400, "invalid_request", auth="admin"),
        C("sql_in_course_path", "injection", "the report of course ' OR 1=1--", "GET",
          "/api/v1/courses/%27%20OR%201%3D1--/report", 404, "not_found", auth="admin"),
        C("sql_in_device_path", "injection", "the detail of device x' OR '1'='1", "GET",
          "/api/v1/devices/x%27%20OR%20%271%27%3D%271", 404, "not_found", auth="ops"),
        # NUL and unpaired surrogates: PostgreSQL cannot store them; a 400, never a 500 from the query.
        C("room_name_surrogate", "injection", "a room name with an unpaired surrogate", "POST", "/api/v1/rooms",
          400, "invalid_request", auth="admin", headers=_JSON, body=b'{"name": "\\ud800x", "building": "b"}'),
        C("course_title_nul", "injection", "a course title with NUL", "POST", "/api/v1/courses", 400,
          "invalid_request", auth="admin",
          json=lambda w: {"code": "NUL1", "title": "a\x00b", "faculty_id": w.users["faculty"]}),
        C("ticket_title_surrogate", "injection", "a ticket title with an unpaired surrogate", "POST",
          "/api/v1/tickets", 400, "invalid_request", auth="student", headers=_JSON,
          body=b'{"title": "\\udfff", "room_id": "r"}'),
        C("ticket_comment_nul", "injection", "a ticket comment with NUL", "POST",
          "/api/v1/tickets/{ticket_id}/comments", 400, "invalid_request", auth="student", json={"body": "a\x00"}),
        C("leave_reason_surrogate", "injection", "a leave reason with an unpaired surrogate", "POST",
          "/api/v1/leave", 400, "invalid_request", auth="student", headers=_JSON,
          body=b'{"starts_on": "2030-01-01", "ends_on": "2030-01-02", "reason": "\\ud800"}'),
        C("webhook_description_nul", "injection", "a webhook description with NUL", "POST", "/api/v1/webhooks",
          400, "invalid_request", auth="admin", json={"url": "https://example.org/h", "description": "a\x00"}),
        C("webhook_url_nul", "injection", "a webhook URL with NUL", "POST", "/api/v1/webhooks", 400,
          "invalid_request", auth="admin", json={"url": "https://exa\x00mple.org/h"}),
        C("condonation_reason_nul", "injection", "a condonation reason with NUL", "POST", "/api/v1/condonations",
          400, "invalid_request", auth="student", json=lambda w: {"course_id": w.ids["course_id"], "reason": "\x00"}),
        # ---------------------------------------------------------------- ids that are not ids
        C("webhook_id_superscript_patch", "ids", "PATCH /webhooks/² (isdigit() but not int())", "PATCH",
          f"/api/v1/webhooks/{superscript}", 404, "not_found", auth="admin", json={}),
        C("webhook_id_superscript_get", "ids", "GET /webhooks/²", "GET", f"/api/v1/webhooks/{superscript}", 404,
          "not_found", auth="admin"),
        C("webhook_id_superscript_deliveries", "ids", "GET /webhooks/²/deliveries", "GET",
          f"/api/v1/webhooks/{superscript}/deliveries", 404, "not_found", auth="admin"),
        C("notification_id_superscript", "ids", "POST /notifications/²/read", "POST",
          f"/api/v1/notifications/{superscript}/read", 404, "not_found", auth="student", json={}),
        C("holiday_id_superscript", "ids", "PATCH /holidays/²", "PATCH", f"/api/v1/holidays/{superscript}", 400,
          "invalid_request", auth="admin", json={"name": "x"}),
        C("display_window_superscript", "ids", "the display QR for window ²", "GET",
          "/faculty/sessions/{session_id}/display.svg?window=" + superscript, 400, None, auth="faculty"),
        C("ticket_id_beyond_bigint", "ids", "ticket 10**20 (beyond bigint)", "GET",
          "/api/v1/tickets/100000000000000000000", 404, "not_found", auth="admin"),
        C("alarm_id_beyond_bigint", "ids", "alarm 10**20", "GET", "/api/v1/alarms/100000000000000000000", 404,
          "not_found", auth="ops"),
        C("threshold_id_beyond_bigint", "ids", "threshold 10**20", "GET",
          "/api/v1/thresholds/100000000000000000000", 404, "not_found", auth="ops"),
        C("correction_id_beyond_bigint", "ids", "correction 10**20", "GET",
          "/api/v1/corrections/100000000000000000000", 404, "not_found", auth="admin"),
        C("leave_id_beyond_bigint", "ids", "leave 10**20", "GET", "/api/v1/leave/100000000000000000000", 404,
          "not_found", auth="admin"),
        C("audit_limit_superscript", "ids", "?limit=² on the audit log", "GET", f"/api/v1/audit?limit={superscript}",
          400, "invalid_request", auth="admin"),
        C("alarms_offset_negative", "ids", "?offset=-1 on alarms", "GET", "/api/v1/alarms?offset=-1", 400,
          "invalid_request", auth="ops"),
        # ---------------------------------------------------------------- webhook targets
        *[
            C(f"webhook_url_{name}", "webhook", f"a webhook to {url}", "POST", "/api/v1/webhooks", 400,
              "invalid_request", auth="admin", json=_webhook(url))
            for name, url in (
                ("javascript", "javascript:alert(1)"),
                ("file", "file:///etc/passwd"),
                ("gopher", "gopher://127.0.0.1:6379/_FLUSHALL"),
                ("ftp", "ftp://example.org/x"),
                ("data", "data:text/html,<script>alert(1)</script>"),
                ("no_host", "http:///path"),
                ("spaces", "http://example.org/a b"),
            )
        ],
        # targets inside the hub's network and credentials in the URL (hub/domain/webhook_policy.py)
        *[
            C(f"webhook_url_{name}", "webhook", f"a webhook to {url}", "POST", "/api/v1/webhooks", 400,
              "invalid_request", auth="admin", json=_webhook(url),
              check=lambda body, why=why: body["error"]["field"] == "url" and why in body["error"]["message"])
            for name, url, why in (
                ("aws_metadata", "http://169.254.169.254/latest/meta-data/iam/", "link-local"),
                ("ipv6_link_local", "http://[fe80::1]/", "link-local"),
                ("aws_metadata_ipv6", "http://[fd00:ec2::254]/", "metadata address"),
                ("gcp_metadata_host", "http://metadata.google.internal/computeMetadata/v1/", "metadata host"),
                ("unspecified", "http://0.0.0.0/", "unspecified"),
                ("mapped_metadata", "http://[::ffff:169.254.169.254]/", "link-local"),
                ("decimal_metadata", "http://2852039166/", "link-local"),
                ("multicast", "http://224.0.0.1/", "multicast"),
                ("userinfo", "https://user:pass@hooks.example.org/", "user name or password"),
            )
        ],
        # ---------------------------------------------------------------- health, metrics and logout (issue 11)
        C("healthz_anonymous_status_only", "system", "/healthz without credentials: the status, no internals",
          "GET", "/healthz", 200, None, check=lambda body: body == {"status": "ok"}),
        C("healthz_student_status_only", "system", "/healthz with a student's token: the status, no internals",
          "GET", "/healthz", 200, None, auth="student", check=lambda body: body == {"status": "ok"}),
        C("logout_cross_site_form", "csrf", "another site's form POSTing /logout", "POST", "/logout", 403, None,
          headers={"Origin": "https://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
          body=b"x=1"),
        C("logout_by_get_link", "csrf", "a link or <img> to GET /logout: only a confirm page, nobody logged out",
          "GET", "/logout", 200, None, auth="ops", present=('method="post" action="/logout"',)),
    ]
    return cases


def _all_http_cases() -> list[HttpCase]:
    cases = _http_cases() + _api_cases()
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), Counter(names).most_common(3)
    return cases


HTTP_CASES: list[HttpCase] = _all_http_cases()


def summary() -> list[tuple[str, str, int]]:
    """``(channel, category, count)`` rows, for docs/reliability.md."""
    rows = Counter(("MQTT", c.category) for c in MQTT_CASES) + Counter(("HTTP", c.category) for c in HTTP_CASES)
    return [(ch, cat, n) for (ch, cat), n in sorted(rows.items())]


if __name__ == "__main__":  # python tests/hostile/hostile_corpus.py: the counts for the docs
    for channel, category, count in summary():
        print(f"{channel:5} {category:10} {count}")
    print("total", len(MQTT_CASES) + len(HTTP_CASES))
