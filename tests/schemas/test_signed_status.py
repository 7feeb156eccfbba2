"""Signed statuses and Wills on the wire (schemas): round trips, forgeries, the old unsigned format, status text."""
from __future__ import annotations

import os

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas import DeviceStatus, WireError, decode_status, encode_status, verify

KEY = os.urandom(32)


def _reason_of(data: bytes) -> str:
    with pytest.raises(WireError) as caught:
        decode_status(data)
    return caught.value.reason


@pytest.mark.parametrize("alg", ["hmac-sha256", "ed25519"])
def test_a_status_round_trips_and_verifies_only_under_its_devices_key(alg):
    seed = os.urandom(32)
    sign_key, verify_key = (KEY, KEY) if alg == "hmac-sha256" else (
        seed, Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw())
    status = DeviceStatus(device="dev-1", state="online", ts=1_795_000_000_000, reason="connected")
    frame, decoded = decode_status(encode_status(status, alg, sign_key))
    assert decoded == status and frame.alg == alg
    verify(frame, verify_key)
    other = os.urandom(32) if alg == "hmac-sha256" else Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(WireError, match="bad_signature"):
        verify(frame, other)


def test_the_old_unsigned_status_is_refused_by_name():
    old = msgspec.msgpack.encode({"state": "offline", "ts": 5, "reason": "connection lost"})
    assert _reason_of(old) == "unsigned_status"
    # Not every map is an old status: an unknown field, or junk, keeps the decoder's own reason.
    assert _reason_of(msgspec.msgpack.encode({"state": "offline", "ts": 5, "admin": True})) == "schema"
    assert _reason_of(b"\x82\xa5state\xa2\xff\xfe\xa2ts\x01") == "malformed"


def test_a_frame_around_something_else_is_a_schema_error():
    payload = msgspec.msgpack.encode({"state": "online", "ts": 5})  # no device: not a status
    frame = msgspec.msgpack.encode([payload, "hmac-sha256", b"\0" * 32])
    assert _reason_of(frame) == "schema"


@pytest.mark.parametrize("reason", [
    "x\nCRITICAL hub.auth fake", "carriage\rreturn", "tab\there", "\x1b[2J", "nul\x00", "del\x7f",
    "next line\x85", "line\u2028separator", "paragraph\u2029separator",
])
def test_control_characters_in_a_status_reason_are_refused(reason):
    status = DeviceStatus(device="dev-1", state="offline", ts=5, reason=reason)
    assert _reason_of(encode_status(status, "hmac-sha256", KEY)) == "schema"


def test_ordinary_text_in_a_status_reason_is_kept():
    status = DeviceStatus(device="dev-1", state="offline", ts=5, reason="Störung – Netzteil ⚡ (rebooting)")
    assert decode_status(encode_status(status, "hmac-sha256", KEY))[1] == status
