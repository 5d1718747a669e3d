"""Iterate the records of one WARC file, recovering from broken gzip members.

Crawl WARCs are one gzip member per record, so a corrupt member need not lose the rest of the
file: after a stream error the reader scans forward for the next member that decompresses to a
`WARC/` header and restarts there (uncompressed WARCs: the next line starting `WARC/`). Each
broken region counts once as `corrupt_record`; a file with no readable record at all counts once
as `unreadable_file`. Both add a message to stats.errors.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import IO

from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType

from pipeline.io.base import InputUnit, ReaderStats
from pipeline.io.batch import add_error
from pipeline.io.sources import open_binary

_GZIP_MAGIC = b"\x1f\x8b\x08"
_SCAN_CHUNK = 1 << 20


def _archive_iterator(stream: IO[bytes]) -> ArchiveIterator:
    """fastwarc iterator over every record type, no filtering, HTTP parsed on demand."""
    return ArchiveIterator(
        stream,
        record_types=WarcRecordType.any_type,
        parse_http=False,
        min_content_length=None,
        max_content_length=None,
        inplace=True,
    )


def _starts_record(stream: IO[bytes], offset: int, gz: bool) -> bool:
    """Whether a WARC record (gzip member or plain) really starts at `offset`."""
    stream.seek(offset)
    head = stream.read(1 << 16)
    if not gz:
        return head.startswith(b"WARC/")
    try:
        return zlib.decompressobj(31).decompress(head, 16).startswith(b"WARC/")
    except zlib.error:
        return False


def next_record_offset(stream: IO[bytes], offset: int, gz: bool) -> int | None:
    """Offset of the first readable record start at or after `offset`; None if there is none."""
    magic = _GZIP_MAGIC if gz else b"\nWARC/"
    skip = 0 if gz else 1  # plain: the record starts after the newline
    pos = offset
    while True:
        stream.seek(pos)
        data = stream.read(_SCAN_CHUNK)
        if len(data) < len(magic):
            return None
        i = data.find(magic)
        while i >= 0:
            if _starts_record(stream, pos + i + skip, gz):
                return pos + i + skip
            i = data.find(magic, i + 1)
        pos += len(data) - len(magic) + 1


def iter_records(unit: InputUnit, stats: ReaderStats) -> Iterator[tuple[int, WarcRecord]]:
    """(file offset, record) for every readable record of one WARC/WET file, counting
    unreadable regions."""
    try:
        stream: IO[bytes] = open_binary(unit.path)
    except OSError as e:
        stats.skip("unreadable_file")
        add_error(stats.errors, f"{unit.path}: cannot open: {e}")
        return
    with stream:
        gz = False
        if stream.seekable():
            gz = stream.read(2) == b"\x1f\x8b"
            stream.seek(0)
        start, last, n_read = 0, -1, 0
        while True:
            try:
                for rec in _archive_iterator(stream):
                    last = start + rec.stream_pos
                    n_read += 1
                    yield last, rec
                break
            except (OSError, ValueError) as e:
                error = e
            resume = None
            if stream.seekable():
                resume = next_record_offset(stream, max(last, start) + 1, gz)
            if n_read == 0 and resume is None:
                stats.skip("unreadable_file")
                add_error(stats.errors, f"{unit.path}: not a readable WARC file: {error}")
                return
            stats.skip("corrupt_record")
            where = f"resumed at byte {resume}" if resume is not None else "rest of file lost"
            add_error(
                stats.errors,
                f"{unit.path}: stream broken after {n_read} records ({error}); {where}",
            )
            if resume is None:
                return
            stream.seek(resume)
            start = resume
        if n_read == 0 and stream.tell() > 0:
            stats.skip("unreadable_file")
            add_error(stats.errors, f"{unit.path}: no WARC records found")
