"""Zip archives written as a stream: the one writer behind every zip download the hub builds.

:class:`zipfile.ZipFile` writing to a :class:`ZipSink` (no ``tell``/``seek``) streams the archive: each
member is followed by its data descriptor, and :meth:`ZipSink.take` hands out what was written so far. A
caller writes members one at a time and yields ``sink.take()`` whenever ``sink.size`` reaches
:data:`ZIP_PIECE_BYTES`, so memory holds at most one member (a file of at most 5 MiB) and one piece.
Used by the student's data export (:func:`hub.db.personal_data.export_zip`) and the bulk download of
an assignment's submissions (:func:`hub.db.submissions.submissions_zip`).

Concurrency contract: nothing here does I/O or awaits; a sink belongs to the one task (async generator)
that writes the archive.
"""
from __future__ import annotations

import re
import zipfile

#: Small members are gathered into pieces of at least this size before they are yielded (fewer, larger writes).
ZIP_PIECE_BYTES = 256 * 1024


class ZipSink:
    """What :class:`zipfile.ZipFile` writes to: it has no ``tell``/``seek``, so the archive is written
    as a stream (data descriptors after each file) and :meth:`take` hands out what was written so far."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        #: Bytes written and not taken yet.
        self.size = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        """Everything written since the last call (the next piece of the archive)."""
        out = b"".join(self._parts)
        self._parts.clear()
        self.size = 0
        return out


def safe_member_name(name: str, *, fallback: str = "document") -> str:
    """A name someone chose (an uploaded file's, a roll number) as one zip member name: no directories,
    no control or other unusual characters, at most 100 characters; ``fallback`` if nothing is left."""
    cleaned = re.sub(r"[^A-Za-z0-9._ -]", "_", name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]).strip(" .")
    return cleaned[:100] or fallback


def unique_member_name(name: str, used: set[str]) -> str:
    """``name``, or ``name`` with `` (2)``, `` (3)``... before its extension if ``used`` has it already
    (two files called ``scan.jpg`` in one folder); the name returned is added to ``used``."""
    stem, dot, ext = name.rpartition(".")
    if not stem or "/" in ext:  # no extension: number the whole name
        stem, dot, ext = name, "", ""
    candidate, number = name, 1
    while candidate in used:
        number += 1
        candidate = f"{stem} ({number}){dot}{ext}"
    used.add(candidate)
    return candidate


def zip_member(name: str, *, stored: bool = False) -> zipfile.ZipInfo:
    """A member with a fixed date (the archive says nothing about when the hub wrote it) and ordinary
    read permissions; ``stored`` for files that are compressed already (PDF, JPEG, PNG)."""
    info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info
