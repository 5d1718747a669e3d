"""Test helper shared by the reader tests: read one input unit whole, checking accounting."""

from __future__ import annotations

import pyarrow as pa

from pipeline.io.base import InputUnit, Reader, ReaderStats
from pipeline.schema import TEXT_SCHEMA


def read_all(
    reader: Reader, unit: InputUnit, batch_size: int = 100
) -> tuple[pa.Table, ReaderStats]:
    """All rows of `unit` and the reader's stats; every batch valid, bounded and accounted."""
    stats = ReaderStats()
    batches = list(reader.read(unit, stats, batch_size))
    assert stats.balanced()
    for b in batches:
        assert b.schema == TEXT_SCHEMA and b.num_rows <= batch_size
        b.validate(full=True)
    table = pa.concat_tables(batches) if batches else TEXT_SCHEMA.empty_table()
    assert table.num_rows == stats.documents
    return table, stats
