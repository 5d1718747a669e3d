"""Hugging Face `datasets` reader.

Two kinds of unit:
  * a directory written by `save_to_disk` (planned as one unit per Arrow data file: `shard` is
    the file's position in state.json). Local shards are memory-mapped with `Dataset.from_file`;
    remote ones go through `load_from_disk` and a contiguous `shard()`.
  * a Parquet / JSON Lines / Arrow / CSV file with `input.format: hf`, read with
    `load_dataset(..., streaming=True)` so nothing is cached or loaded whole.
Rows map onto TEXT_SCHEMA exactly as for Parquet (pipeline.io.fields). A dataset without the text
column is `unreadable_file` with its row count; a stream that breaks mid-way counts one
`unreadable_file` and a message in stats.errors.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from pipeline.io.base import InputUnit, ReaderStats
from pipeline.io.batch import add_error
from pipeline.io.fields import FieldReader
from pipeline.io.parquet import column_problem
from pipeline.io.pathnames import display_path
from pipeline.io.sources import COMPRESSION_SUFFIXES, check_regular, filesystem, hf_data_files

# `load_dataset` builder for a file name (compression suffix removed).
_BUILDERS = {
    ".parquet": "parquet",
    ".jsonl": "json",
    ".json": "json",
    ".ndjson": "json",
    ".arrow": "arrow",
    ".csv": "csv",
}


def _builder_for(path: str) -> str | None:
    """The packaged `datasets` builder that reads `path`, by extension."""
    name = posixpath.basename(path).lower()
    for suffix in COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    return next((b for ext, b in _BUILDERS.items() if name.endswith(ext)), None)


def _is_dataset_dir(path: str) -> bool:
    """Whether the unit path is a `save_to_disk` directory (local or remote)."""
    fs, root = filesystem(path)
    return fs.isfile(posixpath.join(root, "state.json"))


class HFReader(FieldReader):
    """Rows of a `datasets` dataset -> TEXT_SCHEMA batches."""

    format = "hf"

    def read(self, unit: InputUnit, stats: ReaderStats, batch_size: int) -> Iterator[pa.Table]:
        """Yield batches for one dataset shard or one streamed file, counting every row."""
        name = display_path(unit.path)
        source = name if unit.num_shards == 1 else f"{name}#shard={unit.shard}"
        try:
            tables, total, source = self._open(unit, batch_size, source)
        except Exception as e:  # missing files, bad state.json, unknown builder
            stats.skip("unreadable_file")
            add_error(stats.errors, f"{source}: cannot open as a datasets dataset: {e}")
            return
        seen = 0
        try:
            for table in tables:
                if seen == 0:
                    problem = column_problem(table.schema, self.fields)
                    if problem:
                        stats.skip(problem[0], max(total or table.num_rows, 1))
                        stats.note_fields(table.schema.names)
                        add_error(stats.errors, f"{source}: {problem[1]}")
                        return
                out = self.fields.from_arrow(table, source, seen, stats)
                seen += table.num_rows
                if out.num_rows:
                    yield out
        except Exception as e:  # a broken shard or stream
            left = (total - seen) if total is not None else 1
            stats.skip("unreadable_file", max(left, 1))
            add_error(stats.errors, f"{source}: broken after {seen} rows: {e}")

    def _open(
        self, unit: InputUnit, batch_size: int, source: str
    ) -> tuple[Iterator[pa.Table], int | None, str]:
        """(Arrow batches, total rows when known, source name) for one unit.

        The source of a local save_to_disk shard is its Arrow file, so ids hashed from
        (source, row) stay unique across shards."""
        import datasets

        batch_size = max(1, batch_size)
        if _is_dataset_dir(unit.path):
            files = hf_data_files(unit.path)
            local = "://" not in unit.path or unit.path.startswith("file://")
            if local:
                path = os.path.join(unit.path.removeprefix("file://"), files[unit.shard])
                ds = datasets.Dataset.from_file(path, in_memory=False)
                source = display_path(path)
            else:
                ds = datasets.load_from_disk(unit.path)
                ds = ds.shard(num_shards=unit.num_shards, index=unit.shard, contiguous=True)
            return ds.with_format("arrow").iter(batch_size=batch_size), ds.num_rows, source
        builder = _builder_for(unit.path)
        check_regular(unit.path)  # a FIFO or device would block or never end
        if builder is None:
            raise ValueError("no datasets builder for this file name (parquet, jsonl, arrow, csv)")
        ds = datasets.load_dataset(builder, data_files=[unit.path], split="train", streaming=True)
        return (_as_table(b) for b in ds.iter(batch_size=batch_size)), None, source


def _as_table(batch: Any) -> pa.Table:
    """A streamed batch (dict of lists, or already Arrow) as a pyarrow Table."""
    if isinstance(batch, pa.Table):
        return batch
    return pa.Table.from_pydict(batch)
