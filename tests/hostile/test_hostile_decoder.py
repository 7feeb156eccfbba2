"""The pure decoder on the corpus, without a hub: only ``WireError`` ever escapes, with the reason the hub stores.

A fast regression for the two escapes the corpus found (a non-UTF-8 string
raised ``UnicodeDecodeError``, deep nesting before the ``kind`` tag
``RecursionError``; each crashed the hub's ingress). The hypothesis fuzzing
of the decoder is in tests/schemas/test_schemas_codec.py.
"""
from __future__ import annotations

import os
import sys
import uuid

import msgspec
import pytest
from hostile_corpus import MQTT_CASES, MqttWorld
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core.campus import DeviceCredentials, LiveSession, StudentCredentials
from schemas import Topics, WireError, decode_frame, decode_status

#: Reasons the decoder itself gives; the others come from later layers (signature, registry, rules).
DECODER_REASONS = {"oversize", "malformed", "schema", "unsigned_status"}


def _world() -> MqttWorld:
    seed = os.urandom(32)
    devices = {
        "hmac": DeviceCredentials("dev-room-001", "room-001", "edge_agent", "hmac-sha256", os.urandom(32)),
        "ed25519": DeviceCredentials("hostile-ed25519", "room-001", "qr_camera", "ed25519", seed),
        "revoked": DeviceCredentials("hostile-revoked", "room-001", "qr_camera", "hmac-sha256", os.urandom(32)),
    }
    session = LiveSession("ses-1", "course-001", "room-001", None, None, 10, ("stu-0001",))  # type: ignore[arg-type]
    students = {name: StudentCredentials(f"stu-{i}", f"s{i}", os.urandom(32))
                for i, name in enumerate(("replay", "outsider"))}
    return MqttWorld(Topics("t"), devices, session, students, commands={"ed25519": uuid.uuid4()})


def _decode(channel: str, payload: bytes) -> str | None:
    try:
        (decode_frame if channel == "up" else decode_status)(payload)
    except WireError as exc:
        return exc.reason
    return None


@pytest.mark.parametrize("case", MQTT_CASES, ids=lambda c: c.name)
def test_corpus_payloads_only_raise_wire_error(case):
    world = _world()
    for payload, outcome in zip(case.build(world), case.expect):
        reason = _decode(case.channel, payload)  # anything but WireError fails the test
        if outcome.reason in DECODER_REASONS and payload:
            assert reason == outcome.reason, case.name


def test_decoder_survives_nesting_deeper_than_the_recursion_limit_anywhere():
    deep = b"\x91" * min(7000, sys.getrecursionlimit() * 5) + b"\xc0"  # [[[...nil]]], well past the limit
    frame = msgspec.msgpack.encode([b"\x82\xa1x" + deep + b"\xa4kind\xa7qr_scan", "hmac-sha256", b"\0" * 32])
    assert _decode("up", frame) == "malformed"
    assert _decode("status", b"\x82\xa1x" + deep + b"\xa5state\xa6online") in ("malformed", "schema")


_BAD_UTF8 = st.binary(min_size=1, max_size=8).filter(lambda b: not _is_utf8(b))


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_BAD_UTF8, st.sampled_from(["alg", "kind", "device", "text", "state"]))
def test_a_string_that_is_not_utf8_is_malformed_wherever_it_is(raw, where):
    bad = bytes([0xa0 | len(raw)]) + raw  # a fixstr holding non-UTF-8 bytes
    env = {"kind": "qr_scan", "v": 1, "id": b"\1" * 16, "device": "d", "ts": 1, "seq": 1, "body": {"text": "t"}}
    marker = "ZZZZZZZZ"
    if where == "alg":
        data = b"\x93" + msgspec.msgpack.encode(b"x" * 40) + bad + msgspec.msgpack.encode(b"\0" * 32)
        assert _decode("up", data) == "malformed"
    elif where == "state":
        data = msgspec.msgpack.encode({"state": marker, "ts": 1}).replace(msgspec.msgpack.encode(marker), bad)
        assert _decode("status", data) == "malformed"
    else:
        if where == "text":
            env["body"] = {"text": marker}
        else:
            env[where] = marker
        payload = msgspec.msgpack.encode(env).replace(msgspec.msgpack.encode(marker), bad)
        frame = msgspec.msgpack.encode([payload, "hmac-sha256", b"\0" * 32])
        assert _decode("up", frame) == "malformed"
