"""Iterate the records of one WARC file, recovering from broken gzip members.

Crawl WARCs are one gzip member per record, so a corrupt member need not lose the rest of the
file: after a stream error the reader scans forward for the next member that decompresses to a
`WARC/` header and restarts there (uncompressed WARCs: the next line starting `WARC/`). Each
broken region counts once as `corrupt_record`; a file with no readable record at all counts once
as `unreadable_file`. Both add a message to stats.errors. A record whose Content-Length lies
(runs into the next record, or claims more than the size limit) makes the reader call
`RecordStream.resync()`, which restarts at the next record start instead of trusting the length.
A record whose Content-Length is not a byte count at all (`-5`, `abc`, 2^64) is one
`corrupt_record`, and reading goes on at the next record start.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import IO

from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType

from pipeline.io.base import InputUnit, ReaderStats
from pipeline.io.batch import add_error
from pipeline.io.pathnames import display_path
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


def _valid_length(rec: WarcRecord) -> bool:
    """Whether the record's Content-Length is a plain decimal byte count that fits in 63 bits
    (fastwarc reads `-5`, `abc` or 2^64 as 0)."""
    value = (rec.headers.get("Content-Length") or "").strip()
    return value.isascii() and value.isdigit() and len(value) <= 18


def next_record_offset(
    stream: IO[bytes], offset: int, gz: bool, limit: int | None = None
) -> int | None:
    """Offset of the first readable record start at or after `offset` (and before `limit`);
    None if there is none."""
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
            if limit is not None and pos + i > limit:
                return None
            if _starts_record(stream, pos + i + skip, gz):
                return pos + i + skip
            i = data.find(magic, i + 1)
        pos += len(data) - len(magic) + 1
        if limit is not None and pos > limit:
            return None


class RecordStream:
    """(file offset, record) for every readable record of one WARC/WET file, counting
    unreadable regions.

    A consumer holding a record whose Content-Length cannot be trusted (it runs into the next
    record, or is over the size limit) calls `resync()`: iteration then goes on at the next
    record start found after that record instead of where the length points, so one lying
    header cannot swallow the rest of the file. If no record start is found (e.g. a file that
    is one gzip stream, not one member per record), the length is trusted after all.
    """

    def __init__(self, unit: InputUnit, stats: ReaderStats) -> None:
        self.unit = unit
        self.stats = stats
        self._resync = False
        self._can_resync = True

    def resync(self) -> None:
        """Continue after the current record at the next record start, not at its length."""
        self._resync = True

    def __iter__(self) -> Iterator[tuple[int, WarcRecord]]:
        unit, stats = self.unit, self.stats
        name = display_path(unit.path)
        try:
            stream: IO[bytes] = open_binary(unit.path)
        except OSError as e:
            stats.skip("unreadable_file")
            add_error(stats.errors, f"{name}: cannot open: {e}")
            return
        with stream:
            gz = False
            if stream.seekable():
                gz = stream.read(2) == b"\x1f\x8b"
                stream.seek(0)
            start, last, n_read = 0, -1, 0
            in_region = False  # inside a broken region already counted
            records = iter(_archive_iterator(stream))
            while True:
                try:
                    rec = next(records)
                except StopIteration:
                    break
                except (OSError, ValueError) as error:
                    resume = None
                    if stream.seekable():
                        resume = next_record_offset(stream, max(last, start) + 1, gz)
                    if n_read == 0 and resume is None:
                        stats.skip("unreadable_file")
                        add_error(stats.errors, f"{name}: not a readable WARC file: {error}")
                        return
                    if not in_region:  # a failure right after resuming is the same region
                        stats.skip("corrupt_record")
                        where = (
                            f"resumed at byte {resume}"
                            if resume is not None
                            else "rest of file lost"
                        )
                        add_error(
                            stats.errors,
                            f"{name}: stream broken after {n_read} records ({error}); {where}",
                        )
                    if resume is None:
                        return
                    in_region = True
                    stream.seek(resume)
                    start = resume
                    records = iter(_archive_iterator(stream))
                    continue
                # fastwarc's stream_pos is the absolute offset (it starts from the stream's
                # tell()); adding `start` after a resume would skip records on the next error.
                pos = rec.stream_pos
                last = pos if pos >= start else start + pos
                n_read += 1
                in_region = False
                self._resync = False
                if not _valid_length(rec):
                    # fastwarc reads the block as empty, so its bytes would then break the
                    # stream again: count the record once here and go on at the next one.
                    stats.skip("corrupt_record")
                    add_error(
                        stats.errors,
                        f"{unit.path}: record at byte {last}: Content-Length "
                        f"{rec.headers.get('Content-Length')!r} is not a byte count",
                    )
                    resume = next_record_offset(stream, last + 1, gz) if stream.seekable() else None
                    if resume is None:
                        in_region = True  # the failure it causes is this record's, not counted
                        continue
                    stream.seek(resume)
                    start = resume
                    records = iter(_archive_iterator(stream))
                    continue
                yield last, rec
                if self._resync and self._can_resync and stream.seekable():
                    resume = self._next_start(stream, last, rec.content_length, gz)
                    if resume is not None:
                        stream.seek(resume)
                        start = resume
                        records = iter(_archive_iterator(stream))
            if n_read == 0 and stream.tell() > 0:
                stats.skip("unreadable_file")
                add_error(stats.errors, f"{name}: no WARC records found")

    def _next_start(self, stream: IO[bytes], last: int, length: int, gz: bool) -> int | None:
        """The next record start after the record at `last`, searched no further than its
        claimed length (+1 MiB); None (stream position unchanged) when there is none. A file
        where the search fails once is not searched again."""
        here = stream.tell()
        found = next_record_offset(stream, last + 1, gz, limit=last + length + _SCAN_CHUNK)
        if found is None:
            self._can_resync = False
            stream.seek(here)
        return found


def iter_records(unit: InputUnit, stats: ReaderStats) -> Iterator[tuple[int, WarcRecord]]:
    """(file offset, record) for every readable record of one WARC/WET file (see RecordStream)."""
    return iter(RecordStream(unit, stats))
