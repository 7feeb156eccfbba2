"""The wire codec: round trips, every rejection reason, and fuzzing (only WireError ever escapes)."""
from __future__ import annotations

import os

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    MAX_MESSAGE_BYTES,
    BiometricMatch,
    BiometricMatchEvent,
    DeviceStatus,
    Heartbeat,
    HeartbeatEvent,
    QrScan,
    QrScanEvent,
    SensorReading,
    SensorReadingEvent,
    Topics,
    WireError,
    decode_frame,
    decode_status,
    encode_event,
    encode_status,
    new_event_id,
    verify,
)

KEY = os.urandom(32)


def envelope(**overrides):
    fields = dict(v=1, id=new_event_id(), device="dev-1", ts=1_795_000_000_000, seq=7)
    fields.update(overrides)
    return fields


EVENTS = [
    QrScanEvent(**envelope(), body=QrScan(text="CH1.stu-1.1.abcdefghijklmnop")),
    BiometricMatchEvent(**envelope(), body=BiometricMatch(subject="stu-1", score=0.93)),
    SensorReadingEvent(**envelope(), body=SensorReading(metric="co2", value=812.0, unit="ppm")),
    HeartbeatEvent(**envelope(), body=Heartbeat(uptime_s=3600, firmware="edge/1.0", outbox_depth=0)),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.kind)
def test_hmac_round_trip(event):
    frame, decoded = decode_frame(encode_event(event, "hmac-sha256", KEY))
    verify(frame, KEY)
    assert decoded == event and decoded.kind == event.kind


def test_ed25519_round_trip_and_wrong_key():
    seed = os.urandom(32)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    frame, _ = decode_frame(encode_event(EVENTS[0], "ed25519", seed))
    verify(frame, public)
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(WireError) as err:
        verify(frame, other)
    assert err.value.reason == "bad_signature"


def test_altered_payload_fails_the_signature():
    frame, _ = decode_frame(encode_event(EVENTS[2], "hmac-sha256", KEY))
    tampered = msgspec.structs.replace(frame, payload=frame.payload.replace(b"co2", b"co3"))
    with pytest.raises(WireError) as err:
        verify(tampered, KEY)
    assert err.value.reason == "bad_signature"


def reason_of(data: bytes) -> str:
    with pytest.raises(WireError) as err:
        decode_frame(data)
    return err.value.reason


def frame_around(payload: bytes) -> bytes:
    return msgspec.msgpack.encode([payload, "hmac-sha256", b"\0" * 32])


def test_rejection_reasons():
    assert reason_of(b"\x00" * (MAX_MESSAGE_BYTES + 1)) == "oversize"
    assert reason_of(b"") == "malformed"
    assert reason_of(b"\xc1") == "malformed"
    assert reason_of(encode_event(EVENTS[0], "hmac-sha256", KEY)[:-5]) == "malformed"  # truncated
    assert reason_of(msgspec.msgpack.encode({"not": "a frame"})) == "schema"
    assert reason_of(msgspec.msgpack.encode([b"x", "rsa", b"\0" * 32])) == "schema"
    good = msgspec.msgpack.encode(EVENTS[0])
    as_dict = msgspec.msgpack.decode(good)
    for change in ({"v": 2}, {"kind": "door_open"}, {"id": b"short"}, {"device": "bad id!"},
                   {"seq": -1}, {"extra": 1}, {"body": {"text": ""}}, {"ts": "yesterday"}):
        assert reason_of(frame_around(msgspec.msgpack.encode({**as_dict, **change}))) == "schema", change


def test_deeply_nested_messagepack_is_rejected_not_recursed():
    nested = b"\x91" * 5000 + b"\xc0"  # 5,000 nested one-element arrays
    assert reason_of(frame_around(nested)) in ("schema", "malformed")
    assert reason_of(nested) in ("schema", "malformed")


def test_huge_string_inside_the_limit_is_a_schema_error():
    body = dict(msgspec.msgpack.decode(msgspec.msgpack.encode(EVENTS[0])), body={"text": "x" * 4000})
    assert reason_of(frame_around(msgspec.msgpack.encode(body))) == "schema"


def test_status_round_trip_and_errors():
    status = DeviceStatus(device="dev-1", state="offline", ts=5, reason="connection lost")
    frame, decoded = decode_status(encode_status(status, "hmac-sha256", KEY))
    verify(frame, KEY)
    assert decoded == status
    with pytest.raises(WireError):
        decode_status(b"\x81\xa5state\xa7unknown")


def test_topics_parse_only_their_own_prefix():
    topics = Topics("campus/a")
    assert topics.parse(topics.uplink("dev-1")) == ("dev-1", "up")
    assert topics.parse(topics.status("dev-1")) == ("dev-1", "status")
    assert topics.parse("campus/b/v1/dev/dev-1/up") is None
    assert topics.parse("campus/a/v1/dev//up") is None
    assert topics.parse("campus/a/v1/dev/x/y/up") is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=MAX_MESSAGE_BYTES + 16))
def test_fuzz_random_bytes_only_ever_raise_wire_error(data):
    try:
        decode_frame(data)
    except WireError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=30))
def test_fuzz_well_formed_messagepack_of_any_shape_only_raises_wire_error(value):
    for data in (msgspec.msgpack.encode(value), frame_around(msgspec.msgpack.encode(value))):
        try:
            decode_frame(data)
        except WireError:
            pass
