"""Sealed command arguments: seal/open for both device kinds, and every way opening must fail."""
from __future__ import annotations

import secrets
import uuid

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519

from schemas import (
    Command,
    SealedArgs,
    SealError,
    decode_command,
    decode_sealed,
    encode_command,
    encode_sealed,
    open_args,
    seal_args,
    sealed_arg_names,
)
from schemas._sealed import x25519_private_key

ARGS: dict[str, str | int] = {"page": 7, "student": "s-007", "template": "QUJDRA=="}


def _ed25519() -> tuple[bytes, bytes]:
    seed = secrets.token_bytes(32)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return seed, public


def _x25519_public(ed25519_public: bytes) -> bytes:
    return crypto_sign_ed25519_pk_to_curve25519(ed25519_public)


def test_hmac_devices_open_what_was_sealed_to_them() -> None:
    key, cid = secrets.token_bytes(32), uuid.uuid4().bytes
    sealed = seal_args(ARGS, device_id="door-1", command_id=cid, name="template_sync", hmac_key=key)
    assert sealed.scheme == "hkdf-sha256" and sealed.ephemeral_key == b""
    assert b"s-007" not in encode_sealed(sealed) and b"QUJDRA" not in encode_sealed(sealed)
    assert open_args(sealed, device_id="door-1", command_id=cid, name="template_sync",
                     alg="hmac-sha256", device_key=key) == ARGS


def test_ed25519_devices_open_with_their_seed_and_the_hub_needs_only_the_public_key() -> None:
    seed, public = _ed25519()
    # The device's X25519 key (from its seed) matches the hub's conversion of its Ed25519 public key.
    own = x25519_private_key(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert own == _x25519_public(public)
    cid = uuid.uuid4().bytes
    sealed = seal_args(ARGS, device_id="fp-2", command_id=cid, name="template_sync",
                       x25519_public_key=_x25519_public(public))
    assert sealed.scheme == "x25519" and len(sealed.ephemeral_key) == 32
    assert open_args(sealed, device_id="fp-2", command_id=cid, name="template_sync",
                     alg="ed25519", device_key=seed) == ARGS
    # A fresh one-time key per seal: the same arguments never give the same bytes.
    again = seal_args(ARGS, device_id="fp-2", command_id=cid, name="template_sync",
                      x25519_public_key=_x25519_public(public))
    assert again.ephemeral_key != sealed.ephemeral_key and again.ciphertext != sealed.ciphertext


@pytest.mark.parametrize("alg", ["hmac-sha256", "ed25519"])
def test_wrong_key_other_device_other_command_other_name_and_tampering_fail(alg: str) -> None:
    cid = uuid.uuid4().bytes
    if alg == "ed25519":
        key, public = _ed25519()
        wrong_key = _ed25519()[0]
        sealed = seal_args(ARGS, device_id="dev-a", command_id=cid, name="template_sync",
                           x25519_public_key=_x25519_public(public))
    else:
        key, wrong_key = secrets.token_bytes(32), secrets.token_bytes(32)
        sealed = seal_args(ARGS, device_id="dev-a", command_id=cid, name="template_sync", hmac_key=key)
    good = dict(device_id="dev-a", command_id=cid, name="template_sync", alg=alg, device_key=key)
    assert open_args(sealed, **good) == ARGS  # type: ignore[arg-type]
    flipped = bytearray(sealed.ciphertext)
    flipped[3] ^= 1
    cases = {
        "wrong key": dict(good, device_key=wrong_key),
        "other device": dict(good, device_id="dev-b"),
        "other command": dict(good, command_id=uuid.uuid4().bytes),
        "other name": dict(good, name="roster_sync"),
    }
    for kwargs in cases.values():
        with pytest.raises(SealError, match="fail authentication"):
            open_args(sealed, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(SealError, match="fail authentication"):
        open_args(msgspec.structs.replace(sealed, ciphertext=bytes(flipped)), **good)  # type: ignore[arg-type]
    with pytest.raises(SealError, match="fail authentication"):
        open_args(msgspec.structs.replace(sealed, nonce=secrets.token_bytes(12)), **good)  # type: ignore[arg-type]
    other_alg = "hmac-sha256" if alg == "ed25519" else "ed25519"
    with pytest.raises(SealError, match="this device signs with"):
        open_args(sealed, **dict(good, alg=other_alg))  # type: ignore[arg-type]


def test_which_arguments_are_sealed() -> None:
    assert sealed_arg_names("template_sync", ARGS) == ("page", "student", "template")
    assert sealed_arg_names("roster_sync", {"pins": "1=s", "replace": True}) == ("pins", "replace")
    assert sealed_arg_names("config_push", {
        "heartbeat_interval_s": 30, "door.password": 1234, "api_token": "t", "door-fp.comm_key": 5,
        "door.poll_interval_s": 0.5, "keyboard_layout": "us"}) == ("api_token", "door-fp.comm_key", "door.password")
    assert sealed_arg_names("reboot", {}) == () and sealed_arg_names("time_sync", {}) == ()
    assert sealed_arg_names("roster_sync", {}) == ()


def test_sealed_arguments_travel_in_a_signed_command_frame() -> None:
    key, cid = secrets.token_bytes(32), uuid.uuid4().bytes
    sealed = seal_args(ARGS, device_id="door-1", command_id=cid, name="template_sync", hmac_key=key)
    command = Command(v=1, id=cid, device="door-1", name="template_sync", hub_ts=1, expires_ts=2, sealed=sealed)
    data = encode_command(command, "hmac-sha256", key)
    assert b"s-007" not in data
    _, decoded = decode_command(data)
    assert decoded.sealed == sealed and decoded.args == {}
    assert decode_sealed(encode_sealed(sealed)) == sealed


def test_a_largest_template_fits_one_frame_sealed() -> None:
    import base64
    key, cid = secrets.token_bytes(32), uuid.uuid4().bytes
    template = base64.b64encode(secrets.token_bytes(4096)).decode()
    args: dict[str, str | int] = {"page": 65535, "student": "s" * 64, "template": template, "device": "door-fp"}
    sealed = seal_args(args, device_id="d" * 64, command_id=cid, name="template_sync", hmac_key=key)
    command = Command(v=1, id=cid, device="d" * 64, name="template_sync", hub_ts=1, expires_ts=2, sealed=sealed)
    assert decode_command(encode_command(command, "hmac-sha256", key))[1].sealed == sealed


def test_malformed_stored_or_opened_blobs_are_seal_errors() -> None:
    with pytest.raises(SealError, match="unreadable"):
        decode_sealed(b"\x93garbage")
    key, cid = secrets.token_bytes(32), uuid.uuid4().bytes
    # Authentic ciphertext whose plaintext is not an argument map (a bug or another format).
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from schemas._sealed import HKDF_INFO, _associated_data, _hkdf
    nonce = secrets.token_bytes(12)
    blob = AESGCM(_hkdf(key, HKDF_INFO)).encrypt(nonce, msgspec.msgpack.encode([1, 2]),
                                                 _associated_data("d", cid, "roster_sync"))
    with pytest.raises(SealError, match="not a valid argument map"):
        open_args(SealedArgs("hkdf-sha256", nonce, blob), device_id="d", command_id=cid, name="roster_sync",
                  alg="hmac-sha256", device_key=key)
    with pytest.raises(ValueError, match="exactly one"):
        seal_args({}, device_id="d", command_id=cid, name="roster_sync")
