"""HFReader: save_to_disk directories (one unit per Arrow shard) and streamed files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import InputError
from pipeline.io.base import InputUnit
from pipeline.io.hf import HFReader
from pipeline.io.options import InputConfig
from pipeline.io.sources import input_fingerprint, plan_units
from tests.readers import read_all

datasets = pytest.importorskip("datasets")


def read_unit(unit: InputUnit, cfg: InputConfig | None = None, batch_size: int = 100):
    """All rows of one unit and its stats (accounting checked)."""
    return read_all(HFReader(cfg), unit, batch_size)


@pytest.fixture
def saved_dataset(tmp_path: Path) -> Path:
    """A 30-row dataset saved in 3 Arrow shards; rows 5 and 17 have no text."""
    rows = {
        "id": [f"r{i}" for i in range(30)],
        "text": [None if i in (5, 17) else f"document {i}" for i in range(30)],
        "lang": ["en"] * 30,
    }
    path = tmp_path / "ds"
    datasets.Dataset.from_dict(rows).save_to_disk(str(path), num_shards=3)
    return path


def test_save_to_disk_directory(saved_dataset: Path) -> None:
    units = plan_units(InputConfig(paths=[str(saved_dataset)]))
    assert [(u.format, u.shard, u.num_shards) for u in units] == [("hf", i, 3) for i in range(3)]
    assert {u.path for u in units} == {str(saved_dataset)}
    texts, records, skipped = [], 0, 0
    for unit in units:
        table, stats = read_unit(unit, batch_size=4)
        texts += table["text"].to_pylist()
        records += stats.records
        skipped += stats.skipped["missing_text"]
        assert json.loads(table["metadata"][0].as_py()) == {"lang": "en"}
    assert records == 30 and skipped == 2
    fingerprint = input_fingerprint(units)
    assert fingerprint != input_fingerprint(units[:1])
    assert texts == [f"document {i}" for i in range(30) if i not in (5, 17)]


def test_dataset_dict_splits(tmp_path: Path) -> None:
    """A DatasetDict is read one split at a time (input.split); without one, a one-line error
    names its splits instead of merging them."""
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["a", "b"]}),
            "test": datasets.Dataset.from_dict({"text": ["c"]}),
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(InputError) as exc:
        plan_units(InputConfig(paths=[str(tmp_path / "dd")]))
    assert str(exc.value) == (
        f"{tmp_path / 'dd'} is a DatasetDict with splits train, test: set input.split to one "
        "(input.split)"
    )
    with pytest.raises(InputError, match="no split 'dev'; choose one"):
        plan_units(InputConfig(paths=[str(tmp_path / "dd")], split="dev"))
    got = {}
    for split in ("train", "test"):
        units = plan_units(InputConfig(paths=[str(tmp_path / "dd")], split=split))
        assert [Path(u.path).name for u in units] == [split]
        got[split] = [read_unit(u)[0]["text"].to_pylist() for u in units]
    assert got == {"train": [["a", "b"]], "test": [["c"]]}
    # a folder holding the DatasetDict: the split applies to it too
    units = plan_units(InputConfig(paths=[str(tmp_path)], split="test"))
    assert [Path(u.path).name for u in units] == ["test"]


def test_dataset_dict_single_split(tmp_path: Path) -> None:
    """A DatasetDict with one split needs no input.split."""
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a"]})}).save_to_disk(
        str(tmp_path / "dd")
    )
    units = plan_units(InputConfig(paths=[str(tmp_path / "dd")]))
    assert [Path(u.path).name for u in units] == ["train"]


def test_missing_text_column(tmp_path: Path) -> None:
    datasets.Dataset.from_dict({"body": ["a", "b"]}).save_to_disk(str(tmp_path / "nt"))
    unit = plan_units(InputConfig(paths=[str(tmp_path / "nt")]))[0]
    _, stats = read_unit(unit)
    assert stats.skipped == {"missing_text_column": 2} and "no 'text' column" in stats.errors[0]


def test_streamed_parquet_and_jsonl_files(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"text": ["x", "y", None], "url": ["u1", "u2", "u3"]}), tmp_path / "a.parquet"
    )
    (tmp_path / "b.jsonl").write_text('{"text": "z", "id": "q"}\n{"text": "w"}\n')
    cfg = InputConfig(paths=[str(tmp_path / "a.parquet"), str(tmp_path / "b.jsonl")], format="hf")
    units = plan_units(cfg)
    assert [u.format for u in units] == ["hf", "hf"]
    a, sa = read_unit(units[0], cfg)
    assert a["text"].to_pylist() == ["x", "y"] and a["url"].to_pylist() == ["u1", "u2"]
    assert sa.skipped == {"missing_text": 1}
    b, _ = read_unit(units[1], cfg)
    assert b["text"].to_pylist() == ["z", "w"] and b["id"][0].as_py() == "q"
    fingerprint = input_fingerprint(units)
    (tmp_path / "b.jsonl").write_text('{"text": "changed"}\n')
    assert input_fingerprint(units) != fingerprint


def test_unreadable_unit(tmp_path: Path) -> None:
    _, stats = read_unit(InputUnit(0, str(tmp_path / "nothing.parquet"), "hf"))
    assert stats.skipped == {"unreadable_file": 1} and stats.errors
