"""Secrets encrypted at rest: AES-256-GCM under a key kept outside the database.

A database dump (or a read-only SQL injection) must not hand out the TOTP
seeds of every account. So every such secret is stored as a blob sealed with
a key the database never sees: a key file in the data dir (created 0600 from
the start, like the JWT secret) or ``CAMPUSHUB_SECRETS_KEY``.

Blob layout: ``version (1 byte, 1) | key id (1 byte) | nonce (12 bytes) |
ciphertext + GCM tag``. The key id names the key that sealed it, so keys can
be rotated: add a line with a higher id to the key file; new secrets are
sealed with the highest id, old blobs still open with theirs.

Every blob is bound to a ``context`` (GCM associated data, e.g.
``b"totp:" + user id``): a blob copied onto another row does not open there.

Concurrency contract: a :class:`SecretsBox` is immutable after construction
and safe to share between tasks and threads.
"""
from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

BLOB_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
_HEADER_BYTES = 2 + NONCE_BYTES
#: Largest secret sealed here; TOTP seeds are 32 bytes, this only stops misuse.
MAX_PLAINTEXT_BYTES = 64 * 1024
#: Environment variable holding one key (base64 of 32 bytes, key id 1), instead of the key file.
KEY_ENV = "CAMPUSHUB_SECRETS_KEY"


class SecretsBoxError(Exception):
    """A blob that cannot be opened: corrupt, sealed for another context, or by a key we do not have."""


class SecretsBox:
    """Seal and open small secrets with AES-256-GCM; see the module docstring for the format."""

    def __init__(self, keys: dict[int, bytes]) -> None:
        if not keys:
            raise ValueError("a secrets box needs at least one key")
        for key_id, key in keys.items():
            if not 0 < key_id < 256:
                raise ValueError(f"key ids are 1..255, got {key_id}")
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {key_id} must be {KEY_BYTES} bytes, got {len(key)}")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current_key_id = max(keys)

    @classmethod
    def ephemeral(cls) -> "SecretsBox":
        """A box with a random key that lives only in memory (tests; nothing it seals survives a restart)."""
        return cls({1: secrets.token_bytes(KEY_BYTES)})

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        """Seal ``plaintext`` for ``context`` with the current key."""
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise ValueError(f"secrets are at most {MAX_PLAINTEXT_BYTES} bytes")
        nonce = os.urandom(NONCE_BYTES)  # random 96-bit nonces: safe far beyond the secrets one hub seals
        header = bytes((BLOB_VERSION, self.current_key_id)) + nonce
        return header + self._ciphers[self.current_key_id].encrypt(nonce, plaintext, header[:2] + context)

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        """Open a blob sealed for ``context``; :class:`SecretsBoxError` if it cannot be."""
        if len(blob) < _HEADER_BYTES + 16 or blob[0] != BLOB_VERSION:
            raise SecretsBoxError("not a sealed secret (wrong length or version)")
        cipher = self._ciphers.get(blob[1])
        if cipher is None:
            raise SecretsBoxError(f"sealed with key {blob[1]}, which this hub does not have")
        try:
            return cipher.decrypt(blob[2:_HEADER_BYTES], blob[_HEADER_BYTES:], blob[:2] + context)
        except InvalidTag:
            raise SecretsBoxError("the secret does not open: tampered, or sealed for something else") from None

    def needs_rekey(self, blob: bytes) -> bool:
        """True if ``blob`` was sealed with an older key than the current one (re-seal it when convenient)."""
        return len(blob) > 1 and blob[1] != self.current_key_id


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: not base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{where}: a key is {KEY_BYTES} bytes (base64 of 32 random bytes), got {len(key)}")
    return key


def parse_key_file(text: str, where: str = "secrets key file") -> dict[int, bytes]:
    """Keys from a key file: one ``ID BASE64KEY`` per line, ``#`` comments and blank lines ignored."""
    keys: dict[int, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key_id, _, encoded = line.partition(" ")
        if not key_id.isdigit() or not 0 < int(key_id) < 256 or int(key_id) in keys:
            raise ValueError(f"{where} line {number}: expected 'ID BASE64KEY' with a new id in 1..255")
        keys[int(key_id)] = _decode_key(encoded, f"{where} line {number}")
    if not keys:
        raise ValueError(f"{where}: no key in it")
    return keys


def create_key_file(path: Path) -> None:
    """Write a new key file with one random key, readable by its owner only from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f"1 {base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write("# CampusHub secrets key: back it up with the database; without it, TOTP enrolments are lost.\n")
        file.write(line)


def load_secrets_box(key_file: Path, key: str | None = None) -> SecretsBox:
    """The hub's box: ``key`` (``CAMPUSHUB_SECRETS_KEY``, base64) if given, else ``key_file`` (created on first use).

    Raises ``ValueError`` with the reason for a malformed key or key file.
    """
    if key:
        return SecretsBox({1: _decode_key(key, KEY_ENV)})
    try:
        create_key_file(key_file)
    except FileExistsError:
        pass
    return SecretsBox(parse_key_file(key_file.read_text(), str(key_file)))
