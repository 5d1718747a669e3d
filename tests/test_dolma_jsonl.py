"""JSONL shard writer (output.format: jsonl): dolma fields, metadata merge, compression,
atomic commit, and reading shards of either format back."""

from __future__ import annotations

import gzip
import json
import math

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.errors import InputError
from pipeline.io.dolma_jsonl import JsonlShardWriter, dolma_lines
from pipeline.io.output_shards import read_shard, select_columns, shard_columns

FS = fsspec.filesystem("file")


def _table() -> pa.Table:
    return pa.table(
        {
            "id": ["a", "b"],
            "url": ["http://x/1", None],
            "source": ["s.jsonl", "s.jsonl"],
            "text": ["héllo\nworld", ""],
            "metadata": ['{"lang": "fr", "year": 2020}', "not json"],
            "lang": ["en", None],
            "lang_score": [0.5, math.nan],
            "scores": [[1.0, math.inf], []],
        }
    )


def test_dolma_record_fields_and_metadata_merge() -> None:
    first, second = (json.loads(line) for line in dolma_lines(_table()))
    assert list(first) == ["id", "text", "source", "metadata"]
    assert first["text"] == "héllo\nworld"
    # The input's metadata object, then the other columns; a column wins over an input key.
    assert first["metadata"] == {
        "lang": "en",
        "year": 2020,
        "url": "http://x/1",
        "lang_score": 0.5,
        "scores": [1.0, None],
    }
    # Metadata that is not a JSON object is kept as it came; NaN becomes null.
    assert second["metadata"] == {
        "metadata": "not json",
        "url": None,
        "lang": None,
        "lang_score": None,
        "scores": [],
    }
    rejected = _table().append_column("reason", pa.array(["r1", "r2"]))
    assert json.loads(next(dolma_lines(rejected)))["reason"] == "r1"


@pytest.mark.parametrize(
    ("compression", "name", "decode"),
    [
        (
            "zstd",
            "p.jsonl.zst",
            lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
        ),
        ("gzip", "p.jsonl.gz", gzip.decompress),
        ("none", "p.jsonl", lambda b: b),
    ],
)
def test_writer_is_atomic_deterministic_and_readable(tmp_path, compression, name, decode) -> None:
    outputs = []
    for run in ("one", "two"):
        path = str(tmp_path / run / name)
        w = JsonlShardWriter(FS, path, compression=compression)
        w.write(_table())
        w.write(_table().slice(0, 0))
        assert not (tmp_path / run / name).exists()  # only the hidden temporary file so far
        assert w.close() == 2
        outputs.append((tmp_path / run / name).read_bytes())
    assert outputs[0] == outputs[1]  # no timestamp in the gzip header: reruns are identical
    lines = decode(outputs[0]).decode().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["a", "b"]
    path = str(tmp_path / "one" / name)
    assert shard_columns(FS, path)[:4] == ["lang", "year", "url", "lang_score"]
    (table,) = read_shard(FS, path, ["id", "lang", "url", "missing"])
    assert table.to_pydict() == {
        "id": ["a", "b"],
        "lang": ["en", None],
        "url": ["http://x/1", None],
        "missing": [None, None],
    }


def test_abort_and_empty_shards_leave_nothing(tmp_path) -> None:
    w = JsonlShardWriter(FS, str(tmp_path / "d" / "p.jsonl.zst"))
    w.write(_table())
    w.abort()
    assert list((tmp_path / "d").iterdir()) == []
    empty = JsonlShardWriter(FS, str(tmp_path / "e" / "p.jsonl.zst"))
    assert empty.close() == 0
    assert not (tmp_path / "e").exists()


def test_broken_shard_is_one_line(tmp_path) -> None:
    bad = tmp_path / "p.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"id": "a"}\n{"id": \n'))
    with pytest.raises(InputError, match=r"p.jsonl.gz: broken JSONL shard near line 2"):
        list(read_shard(FS, str(bad), ["id"]))


def test_parquet_shards_read_with_missing_columns_as_null(tmp_path) -> None:
    pq.write_table(_table().select(["id", "text"]), tmp_path / "p.parquet")
    (table,) = read_shard(FS, str(tmp_path / "p.parquet"), ["id", "url"])
    assert table.to_pydict() == {"id": ["a", "b"], "url": [None, None]}


def test_select_columns() -> None:
    t = _table().append_column("reason", pa.array(["r", "r"]))
    assert select_columns(t, "all") is t
    assert select_columns(t, "minimal").column_names == [
        "id",
        "url",
        "text",
        "lang",
        "source",
        "reason",
    ]
    assert select_columns(t.drop_columns(["text"]), ["text", "id"]).column_names == [
        "id",
        "reason",
    ]
