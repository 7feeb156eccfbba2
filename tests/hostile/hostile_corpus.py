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
import dataclasses
import json
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.campus import DeviceCredentials, LiveSession, StudentCredentials
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


@dataclass
class MqttWorld:
    """What the MQTT cases are built from: the hub's topics, devices, a live session and its students."""

    topics: Topics
    devices: dict[str, DeviceCredentials]  # "hmac" (in the session's room), "ed25519" (same room), "revoked"
    session: LiveSession
    students: dict[str, StudentCredentials]  # "replay" (enrolled), "outsider" (not enrolled)
    _seq: int = 0

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


def _status(state: Any = "online", ts: Any = None, **extra: Any) -> Callable[[MqttWorld], bytes]:
    def build(world: MqttWorld) -> bytes:
        return _enc({"state": state, "ts": int(time.time() * 1000) if ts is None else ts, **extra})
    return build


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
        _mqtt("status_of_unknown_device", "identity", "a valid status for an unregistered device",
              _status(), "unknown_device", channel="status", device="hostile-ghost-status"),
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
        _mqtt("scan_at_epoch", "time", "a scan stamped 1970-01-01 (no session then)", _with("ts", 0),
              "no_live_session"),
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
            _mqtt(f"sql_in_uplink_topic_{i}", "injection", f"topic device level {sql!r}, envelope of the real device",
                  lambda w: w.signed(w.envelope()), "device_mismatch", device=sql)
            for i, sql in enumerate(SQL_INJECTIONS)
        ],
        _mqtt("sql_in_status_topic", "injection", "status on a topic whose device level is SQL",
              _status(), "unknown_device", channel="status", device="dev'); DELETE FROM devices;--"),
        _mqtt("html_in_status_topic", "injection", "status on a topic whose device level is an <img onerror> tag",
              _status(), "unknown_device", channel="status", device="<img src=x onerror=alert(1)>"),
        _mqtt("sql_in_envelope_device", "injection", "envelope device id is SQL (the topic carries it too)",
              lambda w: w.signed({**w.envelope(), "device": SQL_INJECTIONS[1]}), "schema",
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

    def fill(self, path: str) -> str:
        return path.format(session_id=self.session_id, student_id=self.student_id,
                           other_student_id=self.other_student_id)


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
    json: Any = UNSET
    body: bytes | None = None
    chunked: bytes | None = None
    #: Refresh-token cases: which world token goes in the body.
    refresh: str | None = None
    absent: tuple[str, ...] = ()
    present: tuple[str, ...] = ()
    check: Callable[[Any], bool] | None = None

    @property
    def channel(self) -> str:
        return f"{self.method} {self.path}"


_LOGIN = "/api/v1/auth/login"
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
        C("nul_in_username", "body", "a NUL character in the username (no account can have it)", "POST", _LOGIN,
          401, "invalid_credentials", json={"username": "admin\u0000", "password": "campushub"}),
        C("lone_surrogate_in_username", "body", "an unpaired UTF-16 surrogate (\\ud800) in the username", "POST",
          _LOGIN, 401, "invalid_credentials", headers={"Content-Type": "application/json"},
          body=b'{"username": "\\ud800admin", "password": "campushub"}'),
        C("lone_surrogate_in_password", "body", "an unpaired surrogate in the password (argon2 cannot hash it)",
          "POST", _LOGIN, 401, "invalid_credentials", headers={"Content-Type": "application/json"},
          body=b'{"username": "admin", "password": "\\udfffx"}'),
        C("nul_in_form_username", "body", "a NUL character in the login form's username (page)", "POST", "/login",
          401, None, headers={"Content-Type": "application/x-www-form-urlencoded"}, body=b"username=adm%00in&password=x"),
        C("nul_in_refresh_token", "body", "a NUL character in a refresh token (hashed, never stored)", "POST",
          "/api/v1/auth/refresh", 401, "invalid_refresh_token", json={"refresh_token": "abc\u0000def"}),
        # ---------------------------------------------------------------- injection
        *[
            C(f"sql_username_{i}", "injection", f"login as {sql!r}", "POST", _LOGIN, 401, "invalid_credentials",
              json={"username": sql, "password": sql})
            for i, sql in enumerate(("admin' --", "' OR '1'='1", "admin'; UPDATE users SET role='admin';--"))
        ],
        C("html_username_form_login", "injection", "form login as a <script> tag: the 401 page echoes it, escaped",
          "POST", "/login", 401, None, headers={"Content-Type": "application/x-www-form-urlencoded"},
          body=b"username=%3Cscript%3Ealert(1)%3C%2Fscript%3E&password=x", absent=(SCRIPT,),
          present=("&lt;script&gt;alert(1)&lt;/script&gt;",)),
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


HTTP_CASES: list[HttpCase] = _http_cases()


def summary() -> list[tuple[str, str, int]]:
    """``(channel, category, count)`` rows, for docs/reliability.md."""
    rows = Counter(("MQTT", c.category) for c in MQTT_CASES) + Counter(("HTTP", c.category) for c in HTTP_CASES)
    return [(ch, cat, n) for (ch, cat), n in sorted(rows.items())]


if __name__ == "__main__":  # python tests/hostile/hostile_corpus.py: the counts for the docs
    for channel, category, count in summary():
        print(f"{channel:5} {category:10} {count}")
    print("total", len(MQTT_CASES) + len(HTTP_CASES))
