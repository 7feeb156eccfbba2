"""Sealed command arguments: which ones travel sealed, and the one way to seal and open them.

Hub → device commands are signed (schemas/_codec.py), which proves who sent
them but hides nothing from anyone who can subscribe. Arguments carrying
personal or biometric data (declared once, by :func:`sealed_arg_names`) are
therefore sealed to the target device with AES-256-GCM:

- ``hmac-sha256`` devices: the AES key is HKDF-SHA256 of the device's shared
  key with the label :data:`HKDF_INFO` (distinct from any signing use, so the
  HMAC key itself never keys AES);
- ``ed25519`` devices (the hub holds only their public key): X25519 with a
  fresh one-time hub key per command and the device's X25519 key. The
  device's X25519 private key is the RFC 8032 secret scalar of its Ed25519
  seed (``SHA-512(seed)[:32]``, what libsodium's
  ``crypto_sign_ed25519_sk_to_curve25519`` computes), so nothing new is
  provisioned: the hub converts the registered Ed25519 public key (see
  hub/db/device_commands.py). The shared secret goes through HKDF-SHA256
  with :data:`X25519_INFO`, salted with both public keys.

Associated data binds the ciphertext to the device id, the command id and
the command name: a sealed blob copied into another device's or another
command's frame fails to open (:class:`SealError`), and the device answers
``failed``. The nonce is random (96 bits); each command is sealed once.

Pure functions, no I/O; safe from any thread or task.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Any, Mapping

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ._envelope import CommandArg, SealedArgs

HKDF_INFO = b"campushub/v1/command-args-seal/hkdf-hmac-device-key"
X25519_INFO = b"campushub/v1/command-args-seal/x25519"
_AD_LABEL = b"campushub/v1/sealed-command-args"

#: Commands whose arguments are sealed whole (student ids, PIN/page maps, templates).
SEALED_WHOLE: frozenset[str] = frozenset({"roster_sync", "template_sync"})
#: ``config_push`` keys that hold secrets: the key's last dotted part names a password,
#: secret, token or key (``door-fp.password``, ``api_token``, ``comm_key``).
_SECRET_CONFIG_KEY = re.compile(r"(^|[._-])(password|passwd|secret|token|key)s?$", re.IGNORECASE)

_args_decoder = msgspec.msgpack.Decoder(dict[str, CommandArg])
_sealed_decoder = msgspec.msgpack.Decoder(SealedArgs)
_encoder = msgspec.msgpack.Encoder()


class SealError(Exception):
    """Sealed arguments that cannot be opened: wrong key, other device/command, or tampered."""


def sealed_arg_names(name: str, args: Mapping[str, Any]) -> tuple[str, ...]:
    """The names of ``args`` that command ``name`` must carry sealed (sorted; empty: none)."""
    if name in SEALED_WHOLE:
        return tuple(sorted(args))
    if name == "config_push":
        return tuple(sorted(k for k in args if _SECRET_CONFIG_KEY.search(k)))
    return ()


def _associated_data(device_id: str, command_id: bytes, name: str) -> bytes:
    return b"\0".join((_AD_LABEL, device_id.encode(), command_id, name.encode()))


def _hkdf(secret: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def x25519_private_key(ed25519_seed: bytes) -> X25519PrivateKey:
    """The X25519 key of an Ed25519 private ``seed``: its RFC 8032 secret scalar (clamped by X25519)."""
    if len(ed25519_seed) != 32:
        raise SealError("an ed25519 seed is 32 bytes")
    return X25519PrivateKey.from_private_bytes(hashlib.sha512(ed25519_seed).digest()[:32])


def seal_args(
    args: Mapping[str, CommandArg], *, device_id: str, command_id: bytes, name: str,
    hmac_key: bytes | None = None, x25519_public_key: bytes | None = None,
) -> SealedArgs:
    """Seal ``args`` to one device for one command: give exactly one of the two keys.

    ``hmac_key``: the ``hmac-sha256`` device's shared key. ``x25519_public_key``:
    the ``ed25519`` device's X25519 public key (raw, 32 bytes).
    """
    if (hmac_key is None) == (x25519_public_key is None):
        raise ValueError("seal_args: give exactly one of hmac_key and x25519_public_key")
    plaintext = _encoder.encode(dict(args))
    ad = _associated_data(device_id, command_id, name)
    nonce = os.urandom(12)
    if hmac_key is not None:
        key = _hkdf(hmac_key, HKDF_INFO)
        return SealedArgs("hkdf-sha256", nonce, AESGCM(key).encrypt(nonce, plaintext, ad))
    assert x25519_public_key is not None
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = _raw(ephemeral.public_key())
    try:
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(x25519_public_key))
    except ValueError as exc:  # not 32 bytes, or a low-order point (all-zero shared secret)
        raise SealError(f"unusable x25519 public key: {exc}") from exc
    key = _hkdf(shared, X25519_INFO, salt=ephemeral_public + x25519_public_key)
    return SealedArgs("x25519", nonce, AESGCM(key).encrypt(nonce, plaintext, ad), ephemeral_public)


def open_args(
    sealed: SealedArgs, *, device_id: str, command_id: bytes, name: str, alg: str, device_key: bytes,
) -> dict[str, CommandArg]:
    """Open arguments sealed to this device: ``alg`` and ``device_key`` are its own signing
    algorithm and key (HMAC secret or Ed25519 seed). Raises :class:`SealError`."""
    ad = _associated_data(device_id, command_id, name)
    if sealed.scheme == "hkdf-sha256":
        if alg != "hmac-sha256":
            raise SealError(f"sealed with hkdf-sha256, but this device signs with {alg}")
        key = _hkdf(device_key, HKDF_INFO)
    else:
        if alg != "ed25519":
            raise SealError(f"sealed with x25519, but this device signs with {alg}")
        private = x25519_private_key(device_key)
        own_public = _raw(private.public_key())
        try:
            shared = private.exchange(X25519PublicKey.from_public_bytes(sealed.ephemeral_key))
        except ValueError as exc:
            raise SealError(f"bad ephemeral key: {exc}") from exc
        key = _hkdf(shared, X25519_INFO, salt=sealed.ephemeral_key + own_public)
    try:
        plaintext = AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, ad)
    except InvalidTag:
        raise SealError(
            "sealed arguments fail authentication (another device's key or command, or tampered)") from None
    try:
        return _args_decoder.decode(plaintext)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SealError(f"sealed arguments are not a valid argument map: {exc}") from exc


def encode_sealed(sealed: SealedArgs) -> bytes:
    """The bytes the hub keeps while the command waits to be sent (``device_commands.sealed``)."""
    return _encoder.encode(sealed)


def decode_sealed(data: bytes) -> SealedArgs:
    try:
        return _sealed_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SealError(f"stored sealed arguments are unreadable: {exc}") from exc
