"""The sealed backup file: a ``pg_dump`` archive cut into chunks, each sealed with AES-256-GCM.

A backup is large (hundreds of MB for a big campus), so it is sealed as a
stream of chunks (STREAM-style chunked AEAD, built only from the
``cryptography`` package's AES-GCM and HKDF) and never held in memory whole.

File layout (all integers big-endian)::

    header
      magic            8 bytes   b"CHBACKUP"
      format version   1 byte    1
      key id           1 byte    the campus key that sealed it (hub/core/secrets_box.py)
      salt             16 bytes  random per file: HKDF salt of the file key
      nonce prefix     8 bytes   random per file
      chunk size       4 bytes   plaintext bytes per chunk (1 MiB), the last chunk may be shorter
      metadata length  4 bytes
      metadata         JSON (UTF-8): created_at, server_version, pg_dump_version, database
    chunk *
      length           4 bytes   ciphertext length (plaintext + 16-byte GCM tag)
      ciphertext

Keys: the file key is derived from campus key ``key id`` for the purpose ``backup`` with the
file's salt (``SecretsBox.derive_key(b"backup", key_id=..., salt=...)``: HKDF-SHA256, info
``campushub/backup``), so a backup key opens nothing else and every file has its own key.

Each chunk ``i`` (from 0) is sealed with nonce ``prefix || i (4 bytes)`` and associated
data ``SHA-256(header) || i (8 bytes) || final (1 byte)``. Therefore:

- a changed byte anywhere (header, metadata, length or ciphertext) fails that chunk's tag;
- chunks swapped, dropped or copied from another backup (another salt, hence key) fail;
- a file cut short fails: the last chunk present is not flagged final, or is cut itself;
- data after the final chunk is refused.

Only the last chunk is final, and it is never empty unless the whole dump is
(the writer holds back a full chunk until it knows more follows), so an
authentic prefix of a file never ends in a complete archive.

Concurrency contract: :class:`BackupSealer` and :class:`BackupOpener` are plain
objects for one task (not thread-safe); their methods only compute (no I/O) and
take a few milliseconds per MiB, so callers on an event loop run them in a
worker thread.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"CHBACKUP"
FORMAT_VERSION = 1
CHUNK_BYTES = 1024 * 1024
SALT_BYTES = 16
NONCE_PREFIX_BYTES = 8
TAG_BYTES = 16
#: The purpose passed to the campus key's derivation: a backup key opens nothing but backups.
KEY_PURPOSE = b"backup"
_FIXED_HEADER = struct.Struct(">8sBB16s8sII")
_LENGTH = struct.Struct(">I")
_MAX_METADATA_BYTES = 64 * 1024
_MAX_CHUNKS = 2**32  # the counter is 4 bytes of the nonce


class BackupFormatError(Exception):
    """A backup file that must not be restored: not a backup, tampered, truncated, or sealed by another key."""


@dataclass(frozen=True)
class BackupHeader:
    """What the header says. ``raw`` are its exact bytes (hashed into every chunk's associated data)."""

    key_id: int
    salt: bytes
    nonce_prefix: bytes
    chunk_bytes: int
    metadata: dict[str, Any]
    raw: bytes


def _associated_data(header_hash: bytes, index: int, final: bool) -> bytes:
    return header_hash + struct.pack(">QB", index, 1 if final else 0)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


class BackupSealer:
    """Turns a stream of plaintext bytes into the sealed file's bytes.

    ``header`` first, then :meth:`feed` with each piece of the dump (returns the
    sealed chunks now complete, possibly none), then :meth:`finish` once (returns
    the final chunk). A full chunk is held back until a byte beyond it arrives, so
    the final flag always lands on a non-empty last chunk.

    ``derive(salt)`` returns ``(key id, 32-byte file key)`` for the fresh random salt
    (the campus key's ``derive_key(KEY_PURPOSE, salt=salt)``).
    """

    def __init__(self, derive: Callable[[bytes], tuple[int, bytes]], metadata: dict[str, Any], *,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        if not 0 < chunk_bytes <= 64 * 1024 * 1024:
            raise ValueError("chunk size must be between 1 byte and 64 MiB")
        salt, prefix = os.urandom(SALT_BYTES), os.urandom(NONCE_PREFIX_BYTES)
        key_id, file_key = derive(salt)
        if not 0 < key_id < 256 or len(file_key) != 32:
            raise ValueError("a backup needs a key id in 1..255 and a 32-byte key")
        self.key_id = key_id
        meta = json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode()
        if len(meta) > _MAX_METADATA_BYTES:
            raise ValueError("backup metadata too large")
        self.header = _FIXED_HEADER.pack(MAGIC, FORMAT_VERSION, key_id, salt, prefix, chunk_bytes, len(meta)) + meta
        self._header_hash = hashlib.sha256(self.header).digest()
        self._cipher = AESGCM(file_key)
        self._prefix = prefix
        self._chunk_bytes = chunk_bytes
        self._pending = bytearray()
        self._index = 0
        self._finished = False
        #: Plaintext bytes sealed so far.
        self.plaintext_bytes = 0

    def _seal(self, data: bytes, final: bool) -> bytes:
        if self._index >= _MAX_CHUNKS:
            raise ValueError("backup too large for one file (2^32 chunks)")
        sealed = self._cipher.encrypt(_nonce(self._prefix, self._index), data,
                                      _associated_data(self._header_hash, self._index, final))
        self._index += 1
        self.plaintext_bytes += len(data)
        return _LENGTH.pack(len(sealed)) + sealed

    def feed(self, data: bytes) -> bytes:
        """Take more plaintext; return the sealed chunks completed by it (``b""`` if none)."""
        if self._finished:
            raise ValueError("the sealer is finished")
        self._pending += data
        out = bytearray()
        # Strictly more than a chunk: the chunk sealed now is certainly not the last one.
        while len(self._pending) > self._chunk_bytes:
            out += self._seal(bytes(self._pending[:self._chunk_bytes]), final=False)
            del self._pending[:self._chunk_bytes]
        return bytes(out)

    def finish(self) -> bytes:
        """Seal what is left as the final chunk (1..chunk size bytes; empty only for an empty stream)."""
        if self._finished:
            raise ValueError("the sealer is finished")
        self._finished = True
        final = self._seal(bytes(self._pending), final=True)
        self._pending.clear()
        return final


def parse_header(read: Callable[[int], bytes]) -> BackupHeader:
    """Read and check the header through ``read(n)`` (returns fewer bytes only at the end of the file)."""
    fixed = read(_FIXED_HEADER.size)
    if len(fixed) < _FIXED_HEADER.size or not fixed.startswith(MAGIC):
        raise BackupFormatError("not a CampusHub backup (no CHBACKUP header)")
    magic, version, key_id, salt, prefix, chunk_bytes, meta_len = _FIXED_HEADER.unpack(fixed)
    if version != FORMAT_VERSION:
        raise BackupFormatError(f"backup format version {version} is not supported (this hub reads {FORMAT_VERSION})")
    if not 0 < chunk_bytes <= 64 * 1024 * 1024 or meta_len > _MAX_METADATA_BYTES or key_id == 0:
        raise BackupFormatError("the backup header is corrupt")
    meta_raw = read(meta_len)
    if len(meta_raw) < meta_len:
        raise BackupFormatError("the backup is truncated (inside its header)")
    try:
        metadata = json.loads(meta_raw)
    except ValueError:
        raise BackupFormatError("the backup header is corrupt (metadata is not JSON)") from None
    if not isinstance(metadata, dict):
        raise BackupFormatError("the backup header is corrupt (metadata is not an object)")
    return BackupHeader(key_id, salt, prefix, chunk_bytes, metadata, fixed + meta_raw)


class BackupOpener:
    """Verifies and opens the chunks that follow a header, one at a time.

    :meth:`open_next` reads one chunk through ``read`` and returns its plaintext
    only after its tag verified, or ``None`` once the final chunk was returned and
    the file ends there. Raises :class:`BackupFormatError` (naming the chunk) on
    anything else. Nothing unverified is ever returned.
    """

    def __init__(self, header: BackupHeader, file_key: bytes) -> None:
        self.header = header
        self._header_hash = hashlib.sha256(header.raw).digest()
        self._cipher = AESGCM(file_key)
        self._index = 0
        self._done = False
        #: Plaintext bytes opened so far.
        self.plaintext_bytes = 0

    @property
    def complete(self) -> bool:
        """True once the final chunk verified and nothing followed it."""
        return self._done

    def open_next(self, read: Callable[[int], bytes]) -> bytes | None:
        if self._done:
            return None
        length_bytes = read(_LENGTH.size)
        if not length_bytes:
            raise BackupFormatError(
                f"the backup is truncated: it ends after chunk {self._index - 1} without its final chunk"
                if self._index else "the backup is truncated: it has no data after its header")
        if len(length_bytes) < _LENGTH.size:
            raise BackupFormatError(f"the backup is truncated inside chunk {self._index}")
        (length,) = _LENGTH.unpack(length_bytes)
        if not TAG_BYTES <= length <= self.header.chunk_bytes + TAG_BYTES:
            raise BackupFormatError(f"chunk {self._index} is corrupt (impossible length {length})")
        sealed = read(length)
        if len(sealed) < length:
            raise BackupFormatError(f"the backup is truncated inside chunk {self._index}")
        nonce = _nonce(self.header.nonce_prefix, self._index)
        for final in (False, True):
            try:
                plain = self._cipher.decrypt(nonce, sealed, _associated_data(self._header_hash, self._index, final))
            except InvalidTag:
                continue
            if final:
                if read(1):
                    raise BackupFormatError(f"data follows the final chunk ({self._index}): the file was altered")
                self._done = True
            self._index += 1
            self.plaintext_bytes += len(plain)
            return plain
        raise BackupFormatError(
            f"chunk {self._index} does not verify: the file was altered, its chunks reordered or mixed "
            "with another backup, or it was sealed with another campus key")


#: ``file_key_for(key id, salt)``: the file key of a header (the campus key's
#: ``derive_key(KEY_PURPOSE, key_id=key_id, salt=salt)[1]``).
FileKeyFor = Callable[[int, bytes], bytes]


def open_backup(read: Callable[[int], bytes], file_key_for: FileKeyFor) -> BackupOpener:
    """Read the header through ``read``; return the opener of the chunks that follow it.

    ``file_key_for`` failing (the hub lacks that key id) becomes a :class:`BackupFormatError`
    that says so; a key that is present but not the one that sealed the file fails on chunk 0.
    """
    header = parse_header(read)
    try:
        file_key = file_key_for(header.key_id, header.salt)
    except Exception as exc:  # the campus key's own error type (SecretsBoxError) stays out of this module
        raise BackupFormatError(
            f"the backup was sealed with campus key {header.key_id}, which this hub does not have ({exc})") from None
    return BackupOpener(header, file_key)


def iter_plaintext(read: Callable[[int], bytes], file_key_for: FileKeyFor) -> Iterator[bytes]:
    """Every verified chunk's plaintext of a whole backup read through ``read``."""
    opener = open_backup(read, file_key_for)
    while (plain := opener.open_next(read)) is not None:
        yield plain
