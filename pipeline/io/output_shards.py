"""The shards of a run's data/ and rejected/ in either output format: their file suffix, their
writer, and reading them back (statistics, inspect, ablation comparison).

Shards between segments (`_work/`) are Parquet whatever output.format says: global stages read
them as Arrow tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io.dolma_jsonl import SUFFIXES, JsonlShardWriter, jsonl_columns, read_jsonl_shard
from pipeline.io.writer import ShardWriter
from pipeline.schema import ID, LANG, REASON, SOURCE, TEXT, URL

if TYPE_CHECKING:
    from pipeline.config import OutputConfig

SHARD_SUFFIXES = (".parquet", *SUFFIXES.values())
# output.columns: minimal (the columns a training data loader and a provenance check need).
MINIMAL_COLUMNS = (ID, URL, TEXT, LANG, SOURCE)


def shard_suffix(out: OutputConfig) -> str:
    """`.parquet`, or `.jsonl.zst` / `.jsonl.gz` / `.jsonl` by output.compression."""
    return ".parquet" if out.format == "parquet" else SUFFIXES[out.compression]


def is_shard(name: str) -> bool:
    """Whether a file name is a data/ or rejected/ shard of either format."""
    return name.endswith(SHARD_SUFFIXES)


def output_writer(
    fs: fsspec.AbstractFileSystem, path: str, out: OutputConfig, *, final: bool = True
) -> ShardWriter | JsonlShardWriter:
    """The writer of one shard: output.format's for data/ and rejected/ (`final`), else Parquet."""
    if final and out.format == "jsonl":
        return JsonlShardWriter(
            fs, path, compression=out.compression, compression_level=out.compression_level
        )
    return ShardWriter(
        fs,
        path,
        rows_per_row_group=out.rows_per_row_group,
        max_row_group_bytes=out.max_row_group_bytes,
        compression=out.compression,
        compression_level=out.compression_level,
    )


def shard_columns(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    """Column names of a shard (a JSONL shard's metadata keys among them)."""
    if path.endswith(".parquet"):
        with fs.open(path, "rb") as f:
            return list(pq.ParquetFile(f).schema_arrow.names)
    return jsonl_columns(fs, path)


def read_shard(
    fs: fsspec.AbstractFileSystem, path: str, columns: list[str], batch_rows: int = 4096
) -> Iterator[pa.Table]:
    """`columns` of a shard of either format, in batches (a column the shard lacks, e.g. left
    out by output.columns, is null)."""
    if path.endswith(".parquet"):
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            have = [c for c in columns if c in pf.schema_arrow.names]
            for batch in pf.iter_batches(batch_size=batch_rows, columns=have):
                table = pa.Table.from_batches([batch])
                nulls = {c: pa.nulls(table.num_rows, pa.string()) for c in columns if c not in have}
                yield pa.table({c: nulls[c] if c in nulls else table.column(c) for c in columns})
        return
    yield from read_jsonl_shard(fs, path, columns, batch_rows)


def read_shards(fs: Any, paths: list[str], columns: list[str]) -> pa.Table:
    """`columns` of several shards, concatenated."""
    parts = [t for p in paths for t in read_shard(fs, p, columns)]
    if not parts:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return pa.concat_tables(parts, promote_options="permissive")


def output_columns(spec: str | list[str]) -> list[str] | None:
    """The columns output.columns names (None: all of them)."""
    if spec == "all":
        return None
    return list(MINIMAL_COLUMNS) if spec == "minimal" else list(spec)


def select_columns(table: pa.Table, spec: str | list[str]) -> pa.Table:
    """`table` with the columns of output.columns it has, in that order, plus `reason` when it
    has one (a rejected shard). A name it lacks is left out: the plan check has refused the
    names the chain cannot produce, and a document rejected early lacks the later columns."""
    wanted = output_columns(spec)
    if wanted is None:
        return table
    names = table.column_names
    keep = [c for c in wanted if c in names] + ([REASON] if REASON in names else [])
    return table if keep == names else table.select(keep)
