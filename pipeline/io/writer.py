"""Parquet shard writer: bounded row groups, committed under the final name only when complete.

A reader of the output directory never sees a partial shard: until `close()` succeeds the file
exists only under the hidden temporary name of `io/atomic.py` (or, on an object store, in a local
spool file), which the runner deletes on the next start.
"""

from __future__ import annotations

from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from pipeline.errors import OutputError
from pipeline.io.atomic import AtomicFile
from pipeline.io.object_store import url_filesystem


def output_fs(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and root path for an output location (local path or fsspec URL).

    On an object store, listings are never served from a cache: markers and shards written by
    other processes (Ray workers, an earlier run) must be seen as soon as they exist.
    """
    try:
        fs, root = url_filesystem(path, fresh=True)
    except ImportError as exc:
        raise OutputError(f"cannot write output {path!r}: {exc}") from None
    return fs, root.rstrip("/") or "/"


def output_url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """`path` of `fs` as a location `output_fs` opens again on the same store (`s3://bucket/key`
    for `bucket/key` of S3; a local path unchanged)."""
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


class ShardWriter:
    """Streams Arrow batches into one Parquet file with row groups of bounded rows and bytes."""

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        path: str,
        *,
        rows_per_row_group: int = 20_000,
        max_row_group_bytes: int = 128 * 2**20,
        compression: str = "zstd",
        compression_level: int | None = 3,
    ) -> None:
        self.fs = fs
        self.path = path
        self._target = AtomicFile(fs, path)
        self.rows_per_row_group = rows_per_row_group
        self.max_row_group_bytes = max_row_group_bytes
        self.compression = None if compression == "none" else compression
        self.compression_level = compression_level if compression == "zstd" else None
        self.schema: pa.Schema | None = None
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._file: Any = None
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        """Buffer `table`; flush a row group whenever the row or byte bound is reached."""
        if table.num_rows == 0:
            return
        if self.schema is None:
            self.schema = _concrete_schema(table.schema)
        table = _conform(table, self.schema)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self._pending_bytes += table.nbytes
        while (
            self._pending_rows >= self.rows_per_row_group
            or self._pending_bytes >= self.max_row_group_bytes
        ):
            self._flush_one_group()

    def _flush_one_group(self) -> None:
        merged = pa.concat_tables(self._pending)
        avg = max(1, merged.nbytes // max(1, merged.num_rows))
        take = min(self.rows_per_row_group, max(1, self.max_row_group_bytes // avg))
        take = min(take, merged.num_rows)
        self._write_group(merged.slice(0, take))
        rest = merged.slice(take)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        self._pending_bytes = rest.nbytes

    def _write_group(self, table: pa.Table) -> None:
        if self._writer is None:
            self._file = self._target.open()
            self._writer = pq.ParquetWriter(
                self._file,
                self.schema,
                compression=self.compression,
                compression_level=self.compression_level,
            )
        self._writer.write_table(table, row_group_size=table.num_rows)
        self.rows += table.num_rows

    def close(self) -> int:
        """Flush, close and atomically rename to the final name; returns rows written.

        Writes nothing (and creates no file) when no row was ever written.
        """
        if self._pending_rows:
            merged = pa.concat_tables(self._pending)
            self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
            self._write_group(merged)
        if self._writer is not None:
            self._writer.close()
            self._file.close()
            self._writer = None
            self._target.commit()
        return self.rows

    def abort(self) -> None:
        """Drop the temporary file after a failure."""
        try:
            if self._writer is not None:
                self._writer.close()
                self._file.close()
        finally:
            self._writer = None
            self._target.discard()


def _concrete_schema(schema: pa.Schema) -> pa.Schema:
    """Replace all-null column types (from empty first batches) by strings."""
    fields = [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema]
    return pa.schema(fields, metadata=schema.metadata)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast a batch to the shard's schema (same columns; null-typed columns cast)."""
    if table.schema.equals(schema, check_metadata=False):
        return table
    if table.schema.names != schema.names:
        table = table.select(schema.names)  # KeyError names the missing column
    return table.cast(schema)
