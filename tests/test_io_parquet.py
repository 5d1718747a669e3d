"""ParquetReader: streaming, field mapping, missing / non-string text column."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io.base import InputUnit
from pipeline.io.options import InputConfig
from pipeline.io.parquet import ParquetReader
from tests.readers import read_all


def read(path: Path, cfg: InputConfig | None = None, batch_size: int = 100):
    """All rows of one Parquet file and its stats (accounting checked)."""
    return read_all(ParquetReader(cfg), InputUnit(0, str(path), "parquet"), batch_size)


def test_parquet_mapping(tmp_path: Path) -> None:
    n = 250
    table = pa.table(
        {
            "id": [f"d{i}" if i % 10 else None for i in range(n)],
            "text": [None if i % 50 == 0 else f"text {i}" for i in range(n)],
            "url": [f"http://x/{i}" for i in range(n)],
            "score": [i / 2 for i in range(n)],
            "fetch_date": ["2021-05-06T07:08:09Z"] * n,
        }
    )
    path = tmp_path / "d.parquet"
    pq.write_table(table, path, row_group_size=60)
    out, stats = read(path, batch_size=40)
    assert stats.records == n and stats.documents == n - 5
    assert stats.skipped == {"missing_text": 5}
    rows = out.to_pylist()
    by_text = {r["text"]: r for r in rows}
    assert by_text["text 10"]["id"].startswith("xxh:")  # id None -> hash of (source, row)
    assert by_text["text 2"]["id"] == "d2"
    assert json.loads(by_text["text 2"]["metadata"]) == {"score": 1.0}
    assert by_text["text 2"]["fetch_date"] == "2021-05-06T07:08:09Z"
    assert len(set(out["id"].to_pylist())) == out.num_rows
    again, _ = read(path, batch_size=1000)
    assert again["id"].to_pylist() == out["id"].to_pylist()  # ids do not depend on batching


def test_large_string_and_int_ids(tmp_path: Path) -> None:
    table = pa.table({"id": pa.array([1, 2]), "text": pa.array(["a", "b"], pa.large_string())})
    path = tmp_path / "l.parquet"
    pq.write_table(table, path)
    out, stats = read(path)
    assert out["id"].to_pylist() == ["1", "2"] and out["metadata"].to_pylist() == ["{}", "{}"]


def test_missing_text_column(tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"content": ["a", "b", "c"], "id": ["1", "2", "3"]}), path)
    out, stats = read(path)
    assert out.num_rows == 0 and stats.skipped == {"missing_text_column": 3}
    assert "no 'text' column" in stats.errors[0] and "input.text_field" in stats.errors[0]
    out, stats = read(path, InputConfig(text_field="content"))
    assert stats.documents == 3


def test_non_string_text_column(tmp_path: Path) -> None:
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), path)
    _, stats = read(path)
    assert stats.skipped == {"missing_text_column": 2} and "not a string" in stats.errors[0]


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(b"definitely not parquet")
    _, stats = read(path)
    assert stats.skipped == {"unreadable_file": 1} and stats.errors
