"""The campus key: secrets encrypted at rest with AES-256-GCM under a key kept outside the database.

A database dump (or a read-only SQL injection) must not hand out the secrets
it holds: device HMAC keys, students' check-in token secrets, webhook signing
secrets, TOTP seeds, the hub's Ed25519 signing key and leave documents. Each
is stored per record as a blob sealed with the campus key, which the database
never sees: ``CAMPUSHUB_MASTER_KEY`` or the key file (``CAMPUSHUB_MASTER_KEY_FILE``,
default ``data_dir/campus.key``, created 0600 from its first byte on the first
start, like the JWT secret). The old names ``CAMPUSHUB_SECRETS_KEY[_FILE]`` are
refused by the settings with the new name, so there is one way to give the key.

Blob layout: ``version (1 byte, 1) | key id (1 byte) | nonce (12 bytes) |
ciphertext + GCM tag``. The key id names the key that sealed it, so keys can
be rotated (``campushub keys rotate``): a line with a higher id is added to the
key file; new secrets are sealed with the highest id, old blobs still open
with theirs until the rotation has re-sealed them (hub/db/sealed_secrets.py).

Every blob is bound to a ``context`` (GCM associated data, e.g.
``b"device-key:" + device id``): a blob copied onto another row does not open there.

Secrets are at most :data:`MAX_PLAINTEXT_BYTES`; documents (leave documents, a
few MB, held whole in memory by their upload and download anyway) go through
:meth:`SecretsBox.encrypt_document`, the same format with a larger bound.

Concurrency contract: a :class:`SecretsBox` is safe to share between tasks and
threads. A box read from a key file follows that file: when the file changes
(a rotation added a key) the next ``encrypt``, or a ``decrypt`` of a blob
under a key id it does not know yet, re-reads it (a small synchronous read,
only then) and swaps its key map in one assignment. So running hubs keep
opening what a rotation re-sealed, without a restart. A key file that does not
parse is logged and the keys already held stay in use.
"""
from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger("hub.core.secrets_box")

BLOB_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER_BYTES = 2 + NONCE_BYTES
#: Largest secret sealed by :meth:`SecretsBox.encrypt`; seeds and keys are 32 bytes, this only stops misuse.
MAX_PLAINTEXT_BYTES = 64 * 1024
#: Largest document sealed by :meth:`SecretsBox.encrypt_document` (leave documents are at most 5 MiB).
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
#: Environment variable holding the campus key instead of the key file: base64 of 32 bytes (key
#: id 1), or ``ID BASE64`` entries separated by ``;`` (several ids, for a rotation).
KEY_ENV = "CAMPUSHUB_MASTER_KEY"
#: The key file's default name in the data dir.
KEY_FILE_NAME = "campus.key"
#: The key file's name before it became the campus key (TOTP seeds only): refused, never guessed at.
LEGACY_KEY_FILE_NAME = "secrets.key"
_HKDF_INFO_PREFIX = b"campushub/"


class SecretsBoxError(Exception):
    """A blob that cannot be opened: corrupt, sealed for another context, or by a key we do not have."""


def _ciphers(keys: dict[int, bytes]) -> dict[int, AESGCM]:
    if not keys:
        raise ValueError("a secrets box needs at least one key")
    for key_id, key in keys.items():
        if not 0 < key_id < 256:
            raise ValueError(f"key ids are 1..255, got {key_id}")
        if len(key) != KEY_BYTES:
            raise ValueError(f"key {key_id} must be {KEY_BYTES} bytes, got {len(key)}")
    return {key_id: AESGCM(key) for key_id, key in keys.items()}


class SecretsBox:
    """Seal and open secrets with AES-256-GCM; see the module docstring for the format and contract."""

    def __init__(self, keys: dict[int, bytes], *, key_file: Path | None = None) -> None:
        self._state = (_ciphers(keys), dict(keys))
        self._key_file = key_file
        self._file_stamp = _stamp(key_file) if key_file is not None else None

    @classmethod
    def ephemeral(cls) -> "SecretsBox":
        """A box with a random key that lives only in memory (tests; nothing it seals survives a restart)."""
        return cls({1: secrets.token_bytes(KEY_BYTES)})

    @property
    def current_key_id(self) -> int:
        """The key new blobs are sealed with: the highest id."""
        return max(self._state[1])

    @property
    def key_ids(self) -> tuple[int, ...]:
        """Every key id this box opens, in order."""
        return tuple(sorted(self._state[1]))

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        """Seal ``plaintext`` (at most :data:`MAX_PLAINTEXT_BYTES`) for ``context`` with the current key."""
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise ValueError(f"secrets are at most {MAX_PLAINTEXT_BYTES} bytes")
        return self._seal(plaintext, context)

    def encrypt_document(self, data: bytes, context: bytes) -> bytes:
        """Seal a document (at most :data:`MAX_DOCUMENT_BYTES`) for ``context``; open it with :meth:`decrypt`."""
        if len(data) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"documents are at most {MAX_DOCUMENT_BYTES} bytes")
        return self._seal(data, context)

    def _seal(self, plaintext: bytes, context: bytes) -> bytes:
        self._follow_key_file()
        ciphers, keys = self._state
        key_id = max(keys)
        nonce = os.urandom(NONCE_BYTES)  # random 96-bit nonces: safe far beyond the secrets one hub seals
        header = bytes((BLOB_VERSION, key_id)) + nonce
        return header + ciphers[key_id].encrypt(nonce, plaintext, header[:2] + context)

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        """Open a blob sealed for ``context`` (a secret or a document); :class:`SecretsBoxError` if it cannot be."""
        if len(blob) < _HEADER_BYTES + TAG_BYTES or blob[0] != BLOB_VERSION:
            raise SecretsBoxError("not a sealed secret (wrong length or version)")
        cipher = self._state[0].get(blob[1])
        if cipher is None:
            self._follow_key_file()
            cipher = self._state[0].get(blob[1])
        if cipher is None:
            raise SecretsBoxError(f"sealed with key {blob[1]}, which this hub does not have")
        try:
            return cipher.decrypt(blob[2:_HEADER_BYTES], blob[_HEADER_BYTES:], blob[:2] + context)
        except InvalidTag:
            raise SecretsBoxError("the secret does not open: tampered, or sealed for something else") from None

    decrypt_document = decrypt

    def needs_rekey(self, blob: bytes) -> bool:
        """True if ``blob`` was sealed with another key than the current one (re-seal it when convenient)."""
        return len(blob) > 1 and blob[1] != self.current_key_id

    def derive_key(self, purpose: bytes, *, key_id: int | None = None, salt: bytes = b"") -> tuple[int, bytes]:
        """A 32-byte key for ``purpose`` (e.g. ``b"backup"``), derived from campus key ``key_id``.

        HKDF-SHA256 with ``salt`` and info ``b"campushub/" + purpose``. ``key_id`` defaults to the
        current key; give the id recorded beside what was sealed to derive the same key again (a
        restore). Returns ``(key id, key)``; :class:`SecretsBoxError` if this box lacks that id.
        """
        if not purpose:
            raise ValueError("a derived key needs a purpose")
        # The current key is the key file's current one, as for sealing (one stat when unchanged): a hub
        # sees a rotation made by another process at once (display codes, backups).
        if key_id is None or key_id not in self._state[1]:
            self._follow_key_file()
        keys = self._state[1]
        chosen = max(keys) if key_id is None else key_id
        if chosen not in keys:
            raise SecretsBoxError(f"key {chosen} is not in the campus key (it has {sorted(keys)})")
        hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt or None,
                    info=_HKDF_INFO_PREFIX + purpose)
        return chosen, hkdf.derive(keys[chosen])

    def _follow_key_file(self) -> None:
        """Re-read the key file if it changed since it was read (a rotation added a key)."""
        if self._key_file is None:
            return
        stamp = _stamp(self._key_file)
        if stamp == self._file_stamp:
            return
        try:
            keys = parse_key_file(self._key_file.read_text(), str(self._key_file))
            self._state = (_ciphers(keys), keys)
        except (OSError, ValueError) as exc:
            log.error("campus key file changed but cannot be used (%s); keeping keys %s", exc, self.key_ids)
        self._file_stamp = stamp


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: not base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{where}: a key is {KEY_BYTES} bytes (base64 of 32 random bytes), got {len(key)}")
    return key


def parse_key_file(text: str, where: str = "campus key file") -> dict[int, bytes]:
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


def parse_key_env(value: str) -> dict[int, bytes]:
    """The keys of ``CAMPUSHUB_MASTER_KEY``: one bare base64 key (id 1) or ``ID BASE64`` entries split by ``;``."""
    if " " not in value.strip():
        return {1: _decode_key(value, KEY_ENV)}
    return parse_key_file(value.replace(";", "\n"), KEY_ENV)


_KEY_FILE_HEADER = ("# CampusHub campus key: it seals every secret in the database (device keys, token and\n"
                    "# webhook secrets, TOTP seeds, leave documents). Back it up apart from the database;\n"
                    "# without it those secrets are lost. One 'ID BASE64KEY' per line; the highest id seals.\n")


def _new_key_line(key_id: int) -> str:
    return f"{key_id} {base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}\n"


def create_key_file(path: Path) -> None:
    """Write a new key file with one random key, readable by its owner only from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(_KEY_FILE_HEADER)
        file.write(_new_key_line(1))


def add_key(path: Path) -> int:
    """Append a new random key with the next id to the key file at ``path``; returns its id.

    The file is replaced atomically (a 0600 temporary file renamed over it), so a hub re-reading it
    sees the old file or the new one, never half of it. ``ValueError`` if the file is malformed or
    already holds key 255.
    """
    text = path.read_text()
    keys = parse_key_file(text, str(path))
    new_id = max(keys) + 1
    if new_id > 255:
        raise ValueError(f"{path}: key id 255 is taken; remove retired keys and renumber by hand")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text if text.endswith("\n") else text + "\n")
            file.write(_new_key_line(new_id))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return new_id


def load_secrets_box(key_file: Path, key: str | None = None) -> SecretsBox:
    """The campus key: ``key`` (``CAMPUSHUB_MASTER_KEY``) if given, else ``key_file`` (created on first use).

    Raises ``ValueError`` with the reason for a malformed key or key file, and for a key file
    missing beside a leftover ``secrets.key`` (the key file's old name: generating a new key
    there would lose every TOTP enrolment it sealed).
    """
    if key:
        return SecretsBox(parse_key_env(key))
    legacy = key_file.with_name(LEGACY_KEY_FILE_NAME)
    if not key_file.exists() and key_file.name != LEGACY_KEY_FILE_NAME and legacy.exists():
        raise ValueError(f"{legacy} is the campus key's old name: rename it to {key_file} "
                         f"(or point CAMPUSHUB_MASTER_KEY_FILE at it)")
    try:
        create_key_file(key_file)
    except FileExistsError:
        pass
    return SecretsBox(parse_key_file(key_file.read_text(), str(key_file)), key_file=key_file)


def load_campus_key(settings: "Settings") -> SecretsBox:
    """The campus key of these settings (``CAMPUSHUB_MASTER_KEY`` or the key file): the one way to get it."""
    return load_secrets_box(settings.master_key_path, settings.master_key)
