"""Parquet reader: streams row batches (ParquetFile.iter_batches), never the whole file.

A file without the text column, or whose text column is not a string type, is `unreadable_file`
(all its rows counted, a message naming the columns in stats.errors). Rows with a null text are
`missing_text`. A file that breaks mid-way counts its unread rows as `unreadable_file`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io.base import InputUnit, ReaderStats
from pipeline.io.batch import add_error
from pipeline.io.fields import FieldReader, is_string_type
from pipeline.io.sources import open_binary


def check_text_column(schema: pa.Schema, text_field: str) -> str | None:
    """Why `schema` cannot be read for `text_field` (a message), or None when it can."""
    if text_field not in schema.names:
        cols = ", ".join(schema.names[:20])
        return f"no '{text_field}' column (columns: {cols}); set input.text_field"
    type_ = schema.field(text_field).type
    if not is_string_type(type_):
        return f"column '{text_field}' is {type_}, not a string; set input.text_field"
    return None


class ParquetReader(FieldReader):
    """Parquet rows -> TEXT_SCHEMA batches, mapped by pipeline.io.fields."""

    format = "parquet"

    def read(self, unit: InputUnit, stats: ReaderStats, batch_size: int) -> Iterator[pa.Table]:
        """Yield batches for one Parquet file, counting every row."""
        source = unit.path
        try:
            stream = open_binary(source)
        except OSError as e:
            stats.skip("unreadable_file")
            add_error(stats.errors, f"{source}: cannot open: {e}")
            return
        with stream:
            try:
                pf = pq.ParquetFile(stream)
            except Exception as e:  # not a Parquet file, bad footer
                stats.skip("unreadable_file")
                add_error(stats.errors, f"{source}: not a readable Parquet file: {e}")
                return
            total = pf.metadata.num_rows
            problem = check_text_column(pf.schema_arrow, self.cfg.text_field)
            if problem:
                stats.skip("missing_text_column", max(total, 1))
                stats.note_fields(pf.schema_arrow.names)
                add_error(stats.errors, f"{source}: {problem}")
                return
            seen = 0
            try:
                for batch in pf.iter_batches(batch_size=max(1, batch_size)):
                    out = self.fields.from_arrow(batch, source, seen, stats)
                    seen += batch.num_rows
                    if out.num_rows:
                        yield out
            except Exception as e:  # corrupt page / column chunk
                stats.skip("unreadable_file", max(total - seen, 1))
                add_error(stats.errors, f"{source}: broken after {seen} of {total} rows: {e}")
