"""R30x packet codec: layout, checksum, and resynchronisation on garbage."""
from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from devices.fingerprint.r30x import (
    GEN_IMG,
    PID_ACK,
    PID_COMMAND,
    SEARCH,
    VFY_PWD,
    Packet,
    PacketReader,
    ack,
    checksum,
    command,
    encode_packet,
    normalise_score,
)


def test_genimg_command_bytes_match_the_datasheet() -> None:
    # EF01 FFFFFFFF 01 0003 01 0005: the GenImg example every R30x library sends.
    assert command(GEN_IMG) == bytes.fromhex("EF01FFFFFFFF010003010005")


def test_vfypwd_and_search_ack_layout() -> None:
    pkt = command(VFY_PWD, struct.pack(">I", 0))
    assert pkt == bytes.fromhex("EF01FFFFFFFF010007130000000000" + "1B")
    assert pkt[:2] == b"\xef\x01" and pkt[6] == PID_COMMAND and struct.unpack(">H", pkt[7:9])[0] == 7
    assert struct.unpack(">H", pkt[-2:])[0] == (0x01 + 0x00 + 0x07 + 0x13) & 0xFFFF
    found = ack(0x00, struct.pack(">HH", 42, 187))
    [p] = PacketReader().feed(found)
    assert p == Packet(PID_ACK, bytes([0, 0, 42, 0, 187]))


def test_checksum_is_the_16_bit_sum_of_id_length_and_payload() -> None:
    payload = bytes([SEARCH, 1, 0, 0, 0x03, 0xE8])
    assert checksum(PID_COMMAND, payload) == (1 + 0 + 8 + sum(payload)) & 0xFFFF
    big = bytes([0xFF]) * 256  # the sum wraps at 16 bits
    assert checksum(0x02, big) == (0x02 + 0x01 + 0x02 + 255 * 256) & 0xFFFF


def test_reader_skips_leading_garbage_and_counts_it() -> None:
    r = PacketReader()
    assert r.feed(b"\x00\x13noise" + ack(0)) == [Packet(PID_ACK, b"\x00")]
    assert r.garbage_bytes == 7 and r.bad_packets == 0


def test_reader_assembles_packets_fed_byte_by_byte() -> None:
    r = PacketReader()
    data = ack(0, b"\x00\x07\x00\x50") + ack(2)
    out = []
    for b in data:
        out += r.feed(bytes([b]))
    assert [p.payload for p in out] == [b"\x00\x00\x07\x00\x50", b"\x02"]


def test_bad_checksum_is_dropped_and_the_next_packet_still_found() -> None:
    r = PacketReader()
    corrupt = bytearray(ack(0, b"\x00\x01\x00\x10"))
    corrupt[-1] ^= 0xFF
    assert r.feed(bytes(corrupt) + ack(9)) == [Packet(PID_ACK, b"\x09")]
    assert r.bad_packets == 1


def test_impossible_length_or_packet_id_resyncs() -> None:
    r = PacketReader()
    bogus_len = b"\xef\x01\xff\xff\xff\xff\x07\xff\xff"      # length 65535
    bogus_pid = b"\xef\x01\xff\xff\xff\xff\x55\x00\x03\x00\x58"  # packet id 0x55
    assert r.feed(bogus_len + bogus_pid + ack(0)) == [Packet(PID_ACK, b"\x00")]
    assert r.bad_packets == 2


def test_a_header_split_across_reads_is_kept() -> None:
    r = PacketReader()
    data = b"junk" + ack(0)
    assert r.feed(data[:5]) == []  # "junk" + 0xEF
    assert r.feed(data[5:]) == [Packet(PID_ACK, b"\x00")]


def test_score_normalisation_saturates() -> None:
    assert normalise_score(100, 200) == 0.5
    assert normalise_score(999, 200) == 1.0 and normalise_score(0, 200) == 0.0


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(st.tuples(st.binary(max_size=20).map(lambda b: b.replace(b"\xef", b"")),
                              st.integers(0, 0xFF), st.binary(max_size=40)), max_size=8),
    cut=st.integers(1, 17),
)
def test_every_packet_survives_any_garbage_between_them(chunks: list, cut: int) -> None:
    """Garbage (without header bytes) between valid packets, fed in arbitrary slices."""
    stream = b"".join(noise + encode_packet(PID_ACK, bytes([code]) + body) for noise, code, body in chunks)
    r = PacketReader()
    out = []
    for i in range(0, len(stream), cut):
        out += r.feed(stream[i:i + cut])
    assert [p.payload for p in out] == [bytes([code]) + body for _, code, body in chunks]
    assert r.garbage_bytes == sum(len(noise) for noise, _, _ in chunks)
