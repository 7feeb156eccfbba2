"""The sealed backup format (hub/adapters/backup_format.py): round trips, and every kind of damage refused.

Small chunks (64 bytes) so that a few KB make many chunks; the key comes from a real
campus key (``SecretsBox.derive_key``), as in ``campushub backup``.
"""
from __future__ import annotations

import io
import os
import struct

import pytest

from hub.adapters.backup_format import (
    KEY_PURPOSE,
    TAG_BYTES,
    BackupFormatError,
    BackupSealer,
    iter_plaintext,
    parse_header,
)
from hub.core.secrets_box import SecretsBox

CHUNK = 64


def _box() -> SecretsBox:
    return SecretsBox({3: os.urandom(32)})


def _seal(box: SecretsBox, data: bytes, pieces: int = 7, chunk: int = CHUNK) -> bytes:
    sealer = BackupSealer(lambda salt: box.derive_key(KEY_PURPOSE, salt=salt), {"server_version": "15.2"},
                          chunk_bytes=chunk)
    out = bytearray(sealer.header)
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        out += sealer.feed(data[start:start + step])
    out += sealer.finish()
    return bytes(out)


def _open(box: SecretsBox, sealed: bytes) -> bytes:
    stream = io.BytesIO(sealed)
    return b"".join(iter_plaintext(
        stream.read, lambda key_id, salt: box.derive_key(KEY_PURPOSE, key_id=key_id, salt=salt)[1]))


def _chunks(sealed: bytes) -> tuple[bytes, list[bytes]]:
    """The header and each chunk record (length prefix included) of a sealed file."""
    stream = io.BytesIO(sealed)
    header = parse_header(stream.read).raw
    records = []
    while length := stream.read(4):
        (n,) = struct.unpack(">I", length)
        records.append(length + stream.read(n))
    return header, records


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 10 * CHUNK + 17])
def test_round_trip_at_every_boundary(size: int) -> None:
    box = _box()
    data = os.urandom(size)
    sealed = _seal(box, data)
    assert _open(box, sealed) == data
    header, records = _chunks(sealed)
    # Full chunks, then one final chunk that is never empty unless the whole stream is.
    assert len(records) == max(1, -(-size // CHUNK))
    assert len(records[-1]) - 4 - TAG_BYTES == (size - CHUNK * (len(records) - 1))
    assert parse_header(io.BytesIO(header).read).key_id == 3
    assert data[:16] not in sealed or size < 16


def test_header_carries_metadata_and_a_fresh_salt_per_file() -> None:
    box = _box()
    one, two = _seal(box, b"x" * 200), _seal(box, b"x" * 200)
    h1, h2 = parse_header(io.BytesIO(one).read), parse_header(io.BytesIO(two).read)
    assert h1.metadata == {"server_version": "15.2"} and h1.chunk_bytes == CHUNK
    assert h1.salt != h2.salt and h1.nonce_prefix != h2.nonce_prefix
    assert _chunks(one)[1][0] != _chunks(two)[1][0]  # same plaintext, different file key


def test_a_changed_byte_anywhere_is_refused() -> None:
    box = _box()
    sealed = _seal(box, os.urandom(5 * CHUNK + 9))
    header, records = _chunks(sealed)
    # One position in the metadata, then in each chunk (length prefix excluded: that is covered below).
    positions = [len(header) - 3]
    offset = len(header)
    for record in records:
        positions.append(offset + 4 + len(record) // 2)
        offset += len(record)
    for position in positions:
        damaged = bytearray(sealed)
        damaged[position] ^= 0x01
        with pytest.raises(BackupFormatError, match="does not verify|corrupt"):
            _open(box, bytes(damaged))


def test_a_changed_length_prefix_is_refused() -> None:
    box = _box()
    sealed = _seal(box, os.urandom(3 * CHUNK))
    header, records = _chunks(sealed)
    damaged = header + records[0] + struct.pack(">I", 30) + records[1][4:] + records[2]
    with pytest.raises(BackupFormatError):
        _open(box, damaged)


def test_truncation_is_refused_at_a_chunk_boundary_and_inside_a_chunk() -> None:
    box = _box()
    sealed = _seal(box, os.urandom(4 * CHUNK + 5))
    header, records = _chunks(sealed)
    without_final = header + b"".join(records[:-1])
    with pytest.raises(BackupFormatError, match="truncated: it ends after chunk 3 without its final chunk"):
        _open(box, without_final)
    with pytest.raises(BackupFormatError, match="truncated inside chunk 4"):
        _open(box, sealed[:-3])
    with pytest.raises(BackupFormatError, match="no data after its header"):
        _open(box, header)
    with pytest.raises(BackupFormatError, match="truncated"):
        _open(box, sealed[: len(header) - 2])


def test_reordered_dropped_and_spliced_chunks_are_refused() -> None:
    box = _box()
    data = os.urandom(4 * CHUNK + 5)
    header, records = _chunks(_seal(box, data))
    swapped = header + records[1] + records[0] + b"".join(records[2:])
    dropped = header + records[0] + b"".join(records[2:])
    _, other = _chunks(_seal(box, data))  # the same data under the same campus key, another file
    spliced = header + records[0] + other[1] + b"".join(records[2:])
    for damaged in (swapped, dropped, spliced):
        with pytest.raises(BackupFormatError, match="does not verify"):
            _open(box, damaged)


def test_data_after_the_final_chunk_is_refused() -> None:
    box = _box()
    sealed = _seal(box, os.urandom(2 * CHUNK + 1))
    with pytest.raises(BackupFormatError, match="data follows the final chunk"):
        _open(box, sealed + b"\x00")


def test_another_campus_key_is_refused() -> None:
    sealed = _seal(_box(), os.urandom(100))
    with pytest.raises(BackupFormatError, match="chunk 0 does not verify.*another campus key"):
        _open(_box(), sealed)  # same key id (3), other key material
    with pytest.raises(BackupFormatError, match="sealed with campus key 3, which this hub does not have"):
        _open(SecretsBox({1: os.urandom(32)}), sealed)


def test_not_a_backup_and_unknown_versions_are_refused() -> None:
    box = _box()
    with pytest.raises(BackupFormatError, match="not a CampusHub backup"):
        _open(box, b"PGDMP" + os.urandom(100))
    sealed = bytearray(_seal(box, b"data"))
    sealed[8] = 9
    with pytest.raises(BackupFormatError, match="format version 9 is not supported"):
        _open(box, bytes(sealed))


def test_feeding_after_finish_is_a_programming_error() -> None:
    box = _box()
    sealer = BackupSealer(lambda salt: box.derive_key(KEY_PURPOSE, salt=salt), {})
    sealer.finish()
    with pytest.raises(ValueError):
        sealer.feed(b"more")
