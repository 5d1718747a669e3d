"""Parquet reader: streams row batches (ParquetFile.iter_batches), never the whole file.

A file without the text column, or whose text column is not a string type, is
`missing_text_column`; one where a mapped column (text, id, url, fetch_date) appears twice is
`unreadable_file` (all its rows counted, a message naming the columns in stats.errors). Rows with a null text are
`missing_text`. A file that breaks mid-way counts its unread rows as `unreadable_file`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io.base import InputUnit, ReaderStats
from pipeline.io.batch import add_error
from pipeline.io.fields import FieldMap, FieldReader, is_string_type
from pipeline.io.pathnames import display_path
from pipeline.io.sources import open_binary


def column_problem(schema: pa.Schema, fields: FieldMap) -> tuple[str, str] | None:
    """(skip reason, message) when `schema` cannot be read for the configured fields, else None.

    A column the reader maps (text, id, url, fetch_date) that appears twice makes the file
    ambiguous: `unreadable_file`, whatever the recipe says. No text column, or one that is not
    a string, is `missing_text_column` (a configuration problem: input.text_field)."""
    cols = ", ".join(schema.names[:20])
    twice = sorted({n for n in schema.names if n in fields.reserved and schema.names.count(n) > 1})
    if twice:
        names = ", ".join(f"'{n}'" for n in twice)
        return (
            "unreadable_file",
            f"column {names} appears more than once (columns: {cols}); rename or drop the "
            "duplicate",
        )
    if fields.text not in schema.names:
        return (
            "missing_text_column",
            f"no '{fields.text}' column (columns: {cols}); set input.text_field",
        )
    type_ = schema.field(fields.text).type
    if not is_string_type(type_):
        return (
            "missing_text_column",
            f"column '{fields.text}' is {type_}, not a string; set input.text_field",
        )
    return None


class ParquetReader(FieldReader):
    """Parquet rows -> TEXT_SCHEMA batches, mapped by pipeline.io.fields."""

    format = "parquet"

    def read(self, unit: InputUnit, stats: ReaderStats, batch_size: int) -> Iterator[pa.Table]:
        """Yield batches for one Parquet file, counting every row."""
        source = display_path(unit.path)
        try:
            stream = open_binary(unit.path)
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
            problem = column_problem(pf.schema_arrow, self.fields)
            if problem:
                stats.skip(problem[0], max(total, 1))
                stats.note_fields(pf.schema_arrow.names)
                add_error(stats.errors, f"{source}: {problem[1]}")
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
