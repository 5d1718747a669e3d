"""JsonlReader: field mapping, bad lines, compression, stable ids, broken streams."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import zstandard

from pipeline.io.base import InputUnit, ReaderStats
from pipeline.io.jsonl import JsonlReader
from pipeline.io.options import InputConfig
from tests.readers import read_all

LINES = [
    json.dumps({"id": "a", "text": "first document", "url": "http://x/1", "lang": "en"}),
    "{this is not json",
    json.dumps({"text": "no id here", "score": 0.5}),
    "",  # blank lines are not records
    json.dumps({"id": 7, "text": "   ", "url": None}),  # empty text is still a document
    json.dumps({"id": "d", "body": "text under another key"}),
    json.dumps({"id": "e", "text": None}),
    json.dumps(["a", "list"]),
    json.dumps(
        {"id": "f", "text": "lone \ud800 surrogate", "fetch_date": "2020-01-02T03:04:05+01:00"}
    ),
]


def write(path: Path, lines: list[str]) -> Path:
    """Write lines, compressing by suffix."""
    data = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    elif path.suffix == ".zst":
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


def read(path: Path, cfg: InputConfig | None = None, batch_size: int = 100):
    """All rows of one file and its stats (accounting checked)."""
    return read_all(JsonlReader(cfg), InputUnit(0, str(path), "jsonl"), batch_size)


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.jsonl.gz", "docs.jsonl.zst"])
def test_jsonl_mapping_and_skips(tmp_path: Path, name: str) -> None:
    table, stats = read(write(tmp_path / name, LINES))
    assert stats.records == 8 and stats.documents == 4
    assert stats.skipped == {"bad_json": 2, "missing_text": 2}
    rows = table.to_pylist()
    assert [r["text"] for r in rows] == [
        "first document",
        "no id here",
        "   ",
        "lone \ufffd surrogate",
    ]
    assert rows[0]["id"] == "a" and rows[0]["url"] == "http://x/1"
    assert json.loads(rows[0]["metadata"]) == {"lang": "en"}
    assert rows[1]["id"].startswith("xxh:") and json.loads(rows[1]["metadata"]) == {"score": 0.5}
    assert rows[2]["id"] == "7" and rows[2]["url"] is None and rows[2]["metadata"] == "{}"
    assert rows[3]["fetch_date"] == "2020-01-02T02:04:05Z"
    assert {r["source"] for r in rows} == {str(tmp_path / name)}


def test_fallback_ids_are_stable_and_unique(tmp_path: Path) -> None:
    path = write(tmp_path / "x.jsonl", [json.dumps({"text": f"t{i}"}) for i in range(50)])
    a, _ = read(path)
    b, _ = read(path, batch_size=7)
    assert a["id"].to_pylist() == b["id"].to_pylist()
    assert len(set(a["id"].to_pylist())) == 50


def test_custom_field_names(tmp_path: Path) -> None:
    line = json.dumps({"doc_id": "z", "content": "hello", "link": "http://y", "id": "other"})
    cfg = InputConfig(text_field="content", id_field="doc_id", url_field="link")
    table, _ = read(write(tmp_path / "c.jsonl", [line]), cfg)
    row = table.to_pylist()[0]
    assert (row["id"], row["text"], row["url"]) == ("z", "hello", "http://y")
    assert json.loads(row["metadata"]) == {"id": "other"}


def test_batch_size(tmp_path: Path) -> None:
    path = write(tmp_path / "b.jsonl", [json.dumps({"text": str(i)}) for i in range(23)])
    stats = ReaderStats()
    sizes = [b.num_rows for b in JsonlReader().read(InputUnit(0, str(path), "jsonl"), stats, 10)]
    assert sizes == [10, 10, 3]


def test_truncated_gzip_counts_what_was_read(tmp_path: Path) -> None:
    lines = [json.dumps({"text": f"document number {i} " * 20}) for i in range(400)]
    full = write(tmp_path / "t.jsonl.gz", lines).read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(full[: len(full) // 2])
    table, stats = read(cut)
    assert 0 < stats.documents < 400
    assert stats.skipped["unreadable_file"] == 1 and "stream broken" in stats.errors[-1]


def test_missing_file(tmp_path: Path) -> None:
    _, stats = read(tmp_path / "none.jsonl")
    assert stats.skipped == {"unreadable_file": 1} and stats.errors
