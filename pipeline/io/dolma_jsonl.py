"""Dolma-style JSON Lines shards (output.format: jsonl): written atomically, read back as Arrow.

A record is `{"id", "text", "source", "metadata": {...}}` (plus `reason` in rejected shards):
every other column goes under `metadata`, merged with the input's own `metadata` (a JSON object
string in the pipeline's tables) whose keys a pipeline column of the same name overrides. NaN
and infinite floats become null (JSON has no such numbers). The stream is zstd (.jsonl.zst),
gzip (.jsonl.gz; no timestamp or temporary name in its header, so reruns give identical bytes)
or plain (.jsonl).
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from typing import IO, Any

import fsspec
import pyarrow as pa
import zstandard

from pipeline.errors import InputError
from pipeline.io.atomic import AtomicFile
from pipeline.io.pathnames import display_path
from pipeline.io.sources import decompressing
from pipeline.schema import ID, METADATA, REASON, SOURCE, TEXT

TOP_LEVEL = (ID, TEXT, SOURCE, REASON)
SUFFIXES = {"zstd": ".jsonl.zst", "gzip": ".jsonl.gz", "none": ".jsonl"}


def _finite(value: Any) -> Any:
    """`value` with NaN and infinite floats (also inside lists) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _metadata(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """The input's metadata object (a non-object kept as `metadata`), then the other columns."""
    merged: dict[str, Any] = {}
    raw = row.get(METADATA)
    if raw is not None:
        try:
            parsed = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            parsed = None
        merged = dict(parsed) if isinstance(parsed, dict) else {METADATA: raw}
    for col in columns:
        merged[col] = _finite(row[col])
    return merged


def dolma_lines(table: pa.Table) -> Iterator[str]:
    """One JSON line (no newline) per row of `table`."""
    names = table.column_names
    top = [c for c in TOP_LEVEL if c in names]
    rest = [c for c in names if c not in TOP_LEVEL and c != METADATA]
    for row in table.to_pylist():
        record = {c: row[c] for c in top}
        record[METADATA] = _metadata(row, rest)
        yield json.dumps(record, ensure_ascii=False, default=str)


class JsonlShardWriter:
    """Streams Arrow batches into one compressed JSONL file, renamed into place on `close()`
    (the same interface as io/writer.py's ShardWriter; no file when no row was written)."""

    def __init__(
        self,
        fs: fsspec.AbstractFileSystem,
        path: str,
        *,
        compression: str = "zstd",
        compression_level: int | None = 3,
    ) -> None:
        self.fs, self.path = fs, path
        self._target = AtomicFile(fs, path)
        self.compression = compression
        self.compression_level = compression_level
        self.rows = 0
        self._raw: IO[bytes] | None = None
        self._stream: Any = None

    def _open(self) -> None:
        self._raw = self._target.open()
        if self.compression == "zstd":
            level = self.compression_level or 3
            self._stream = zstandard.ZstdCompressor(level=level).stream_writer(
                self._raw, closefd=False
            )
        elif self.compression == "gzip":
            self._stream = gzip.GzipFile(filename="", fileobj=self._raw, mode="wb", mtime=0)
        else:
            self._stream = self._raw

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._stream is None:
            self._open()
        data = "".join(line + "\n" for line in dolma_lines(table))
        self._stream.write(data.encode("utf-8"))
        self.rows += table.num_rows

    def _close_streams(self) -> None:
        if self._stream is not None and self._stream is not self._raw:
            self._stream.close()
        if self._raw is not None:
            self._raw.close()
        self._stream = self._raw = None

    def close(self) -> int:
        """Finish the stream and rename it to its final name; returns rows written."""
        if self._stream is not None:
            self._close_streams()
            self._target.commit()
        return self.rows

    def abort(self) -> None:
        """Drop the temporary file after a failure."""
        try:
            self._close_streams()
        finally:
            self._target.discard()


def _records(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of a shard; InputError naming the file and line when one is broken."""
    lineno = 0
    try:
        with fs.open(path, "rb") as raw, decompressing(raw, path) as stream:
            for lineno, line in enumerate(stream, start=1):  # noqa: B007 - named in the error
                if line.strip():
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not a JSON object")
                    yield record
    except (OSError, ValueError, zstandard.ZstdError, EOFError) as e:
        raise InputError(
            f"{display_path(path)}: broken JSONL shard near line {max(lineno, 1)} ({e}); repair or "
            "remove it"
        ) from None


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    """A record as the pipeline's columns: metadata's keys beside id, text, source, reason."""
    meta = record.get(METADATA)
    flat = dict(meta) if isinstance(meta, dict) else {}
    flat.update({k: v for k, v in record.items() if k != METADATA})
    return flat


def jsonl_columns(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    """The columns of a JSONL shard, as its first record holds them."""
    for record in _records(fs, path):
        return list(_flat(record))
    return []


def read_jsonl_shard(
    fs: fsspec.AbstractFileSystem, path: str, columns: list[str], batch_rows: int = 4096
) -> Iterator[pa.Table]:
    """`columns` of a JSONL shard (null where a record lacks one), in batches of rows."""
    rows: list[dict[str, Any]] = []
    for record in _records(fs, path):
        rows.append(_flat(record))
        if len(rows) >= batch_rows:
            yield _table(rows, columns)
            rows = []
    if rows:
        yield _table(rows, columns)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> pa.Table:
    return pa.table({c: [r.get(c) for r in rows] for c in columns})
