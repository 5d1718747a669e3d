"""The shard writer: bounded row groups, nothing visible until the atomic rename."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.io.atomic import TMP_MARK
from pipeline.io.writer import ShardWriter, output_fs


def _batch(n: int, start: int = 0, width: int = 10) -> pa.Table:
    return pa.table({"id": [f"d{i}" for i in range(start, start + n)], "text": ["x" * width] * n})


def test_row_groups_bounded_by_rows_and_renamed_on_close(tmp_path) -> None:
    fs, root = output_fs(str(tmp_path))
    w = ShardWriter(fs, f"{root}/data/part-00000.parquet", rows_per_row_group=100)
    for k in range(7):
        w.write(_batch(45, start=45 * k))
    # Before close only the temporary file exists.
    names = [p.name for p in (tmp_path / "data").iterdir()]
    assert len(names) == 1 and TMP_MARK in names[0]
    assert w.close() == 315
    meta = pq.ParquetFile(tmp_path / "data" / "part-00000.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [100, 100, 100, 15]
    assert meta.row_group(0).column(0).compression == "ZSTD"
    table = pq.read_table(tmp_path / "data" / "part-00000.parquet")
    assert table.column("id").to_pylist() == [f"d{i}" for i in range(315)]
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["part-00000.parquet"]


def test_row_groups_bounded_by_bytes(tmp_path) -> None:
    fs, root = output_fs(str(tmp_path))
    w = ShardWriter(fs, f"{root}/p.parquet", rows_per_row_group=10_000, max_row_group_bytes=50_000)
    w.write(_batch(1000, width=200))  # ~200 kB
    w.close()
    meta = pq.ParquetFile(tmp_path / "p.parquet").metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(sizes) == 1000 and max(sizes) < 300 and len(sizes) >= 4


def test_no_rows_no_file(tmp_path) -> None:
    fs, root = output_fs(str(tmp_path))
    w = ShardWriter(fs, f"{root}/empty.parquet")
    w.write(_batch(0))
    assert w.close() == 0
    assert not any(tmp_path.iterdir())


def test_abort_leaves_nothing(tmp_path) -> None:
    fs, root = output_fs(str(tmp_path))
    w = ShardWriter(fs, f"{root}/x.parquet", rows_per_row_group=10)
    w.write(_batch(25))
    w.abort()
    assert not list(tmp_path.rglob("*.parquet*"))


def test_null_typed_first_batch_is_cast_and_later_batches_conform(tmp_path) -> None:
    fs, root = output_fs(str(tmp_path))
    w = ShardWriter(fs, f"{root}/x.parquet")
    w.write(pa.table({"id": ["a"], "lang": pa.nulls(1)}))
    w.write(pa.table({"id": ["b"], "lang": ["en"]}))
    w.close()
    t = pq.read_table(tmp_path / "x.parquet")
    assert t.schema.field("lang").type == pa.string()
    assert t.column("lang").to_pylist() == [None, "en"]


def test_missing_column_in_later_batch_is_an_error(tmp_path) -> None:
    fs, root = output_fs(str(tmp_path))
    w = ShardWriter(fs, f"{root}/x.parquet")
    w.write(pa.table({"id": ["a"], "text": ["t"]}))
    with pytest.raises(KeyError):
        w.write(pa.table({"id": ["b"]}))
    w.abort()
