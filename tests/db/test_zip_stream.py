"""The streamed zip writer (hub/db/zip_stream.py): pieces taken while writing make one readable archive,
and names people chose become safe, distinct member names."""
from __future__ import annotations

import io
import os
import zipfile

from hub.db.zip_stream import ZIP_PIECE_BYTES, ZipSink, safe_member_name, unique_member_name, zip_member


def test_pieces_taken_while_writing_make_one_archive_that_reads_back() -> None:
    files = {f"folder/file-{n}.bin": os.urandom(100_000) for n in range(6)}
    sink, pieces = ZipSink(), []
    with zipfile.ZipFile(sink, mode="w") as archive:
        for name, data in files.items():
            archive.writestr(zip_member(name, stored=True), data)
            if sink.size >= ZIP_PIECE_BYTES:
                pieces.append(sink.take())
                assert sink.size == 0
        archive.writestr(zip_member("README.txt"), "hello\n")
    pieces.append(sink.take())
    assert len(pieces) > 2  # streamed: 600 kB in pieces of 256 KiB or more, not one blob at the end
    read = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert read.testzip() is None
    assert {name: read.read(name) for name in files} == files
    assert read.read("README.txt") == b"hello\n"
    assert read.getinfo("README.txt").date_time == (2000, 1, 1, 0, 0, 0)  # says nothing about when it was written


def test_member_names_hold_no_path_and_stay_distinct() -> None:
    assert safe_member_name("../../etc/passwd") == "passwd"
    assert safe_member_name("C:\\Users\\me\\report.pdf") == "report.pdf"
    assert safe_member_name("résumé\x00.pdf") == "r_sum__.pdf"
    assert safe_member_name(" .. ") == "document" and safe_member_name("/", fallback="student") == "student"
    assert len(safe_member_name("x" * 500)) == 100
    used: set[str] = set()
    assert [unique_member_name(n, used) for n in ("a/scan.jpg", "a/scan.jpg", "a/scan.jpg", "R-1", "R-1")] == [
        "a/scan.jpg", "a/scan (2).jpg", "a/scan (3).jpg", "R-1", "R-1 (2)"]
