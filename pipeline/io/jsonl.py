"""JSON Lines reader (plain, .gz, .zst/.zstd, .bz2, .xz; local paths or fsspec URLs).

Skip reasons: `bad_json` (a line that is not a JSON object: invalid JSON or UTF-8, nesting too
deep to decode, too big to hold), `missing_text` (no string text field; see pipeline.io.fields
for the field mapping), `bad_record` (an object whose other fields cannot be mapped, e.g. nested
too deep to store as metadata), `too_large` (a line over input.max_record_bytes, read through in
chunks, never held whole), `file_too_large` (the rest of a file past input.max_file_bytes after
decompression, counted once), `unreadable_file` (cannot open, not a regular file, or the
compressed stream breaks; counted once with a message in stats.errors). Blank lines are not
records and are not counted; every failing line is counted and reading goes on with the next one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa

from pipeline.io.base import InputUnit, ReaderStats
from pipeline.io.batch import BatchBuilder, add_error
from pipeline.io.bounded import FileTooLarge, bounded_lines, capped
from pipeline.io.fields import RECORD_ERRORS, FieldReader
from pipeline.io.pathnames import display_path
from pipeline.io.sources import decompressing, open_binary
from pipeline.schema import TEXT_SCHEMA


class JsonlReader(FieldReader):
    """One JSON object per line -> TEXT_SCHEMA batches."""

    format = "jsonl"

    def read(self, unit: InputUnit, stats: ReaderStats, batch_size: int) -> Iterator[pa.Table]:
        """Yield batches for one JSONL file, counting every non-blank line."""
        source = display_path(unit.path)
        builder = BatchBuilder(TEXT_SCHEMA, batch_size)
        try:
            raw = open_binary(unit.path)
        except Exception as e:  # missing file, permission, unreachable URL
            stats.skip("unreadable_file")
            add_error(stats.errors, f"{source}: cannot open: {e}")
            return
        lineno = 0
        with raw, capped(decompressing(raw, source), self.cfg.max_file_bytes) as stream:
            try:
                for line in bounded_lines(stream, self.cfg.max_record_bytes):
                    lineno += 1
                    if line is None:
                        stats.skip("too_large")
                        continue
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except RECORD_ERRORS:
                        stats.skip("bad_json")
                        continue
                    if type(obj) is not dict:
                        stats.skip("bad_json")
                        continue
                    try:
                        row = self.fields.from_record(obj, source, lineno)
                    except RECORD_ERRORS:  # e.g. a nested field too deep to store as metadata
                        stats.skip("bad_record")
                        continue
                    if row is None:
                        stats.skip("missing_text")
                        stats.note_fields(obj)
                        continue
                    text = row[4]
                    stats.emit(len(line))
                    if builder.add(row, len(text)):
                        yield builder.flush()
            except FileTooLarge as e:
                stats.skip("file_too_large")
                add_error(stats.errors, f"{source}: after line {lineno}: {e}")
            except Exception as e:  # truncated / corrupt compressed stream
                stats.skip("unreadable_file")
                add_error(stats.errors, f"{source}: stream broken after line {lineno}: {e}")
        if len(builder):
            yield builder.flush()
