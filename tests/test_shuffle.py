"""The atomic-write helper and the keyed record files every global stage shuffles through."""

from __future__ import annotations

import json
import struct

import fsspec
import numpy as np
import pytest

from pipeline.io.atomic import TMP_MARK, atomic_write, read_json, write_json_atomic
from pipeline.io.shuffle import MAGIC, KeyedFile, KeyedFileError, read_keyed, write_keyed

REC = np.dtype([("h", "<u8"), ("row", "<u4")])
FS = fsspec.filesystem("file")


def _records(n: int) -> tuple[np.ndarray, np.ndarray]:
    rec = np.empty(n, dtype=REC)
    rec["h"] = np.arange(n, dtype=np.uint64) * 7919
    rec["row"] = np.arange(n)
    return rec, (rec["h"] % np.uint64(5)).astype(np.int64)


def test_atomic_write_renames_on_success_and_removes_the_temp_on_failure(tmp_path) -> None:
    path = f"{tmp_path}/sub/out.bin"
    with atomic_write(FS, path) as f:
        f.write(b"abc")
        (temp,) = (tmp_path / "sub").iterdir()  # only the hidden temporary file so far
        assert temp.name.startswith(".out.bin") and TMP_MARK in temp.name
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out.bin"]
    with pytest.raises(RuntimeError), atomic_write(FS, path) as f:
        f.write(b"partial")
        raise RuntimeError("boom")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out.bin"]
    assert (tmp_path / "sub" / "out.bin").read_bytes() == b"abc"


def test_write_json_atomic_keeps_the_callers_format(tmp_path) -> None:
    obj = {"b": "é", "a": [1, 2]}
    write_json_atomic(FS, f"{tmp_path}/x.json", obj, indent=1, sort_keys=True)
    assert (tmp_path / "x.json").read_text() == json.dumps(obj, indent=1, sort_keys=True)
    write_json_atomic(FS, f"{tmp_path}/y.json", obj, indent=2, ensure_ascii=False)
    assert (tmp_path / "y.json").read_text() == json.dumps(obj, indent=2, ensure_ascii=False)
    assert read_json(FS, f"{tmp_path}/y.json") == obj


def test_keyed_round_trip_stable_within_key(tmp_path) -> None:
    rec, keys = _records(1000)
    write_keyed(FS, f"{tmp_path}/a.bin", rec, keys, key="partition")
    write_keyed(FS, f"{tmp_path}/b.bin", rec[:10], keys[:10], key="partition")
    f = KeyedFile(FS, f"{tmp_path}/a.bin", key="partition", dtype=REC)
    for k in range(5):
        got = f.read(k)
        assert got.dtype == REC and got["row"].tolist() == np.flatnonzero(keys == k).tolist()
    assert f.count(7) == 0 and f.read(7).size == 0
    both = read_keyed(FS, [f"{tmp_path}/a.bin", f"{tmp_path}/b.bin"], 3, REC, key="partition")
    expected = [*np.flatnonzero(keys == 3).tolist(), *np.flatnonzero(keys[:10] == 3).tolist()]
    assert both["row"].tolist() == expected
    empty_rec, empty_keys = _records(0)
    write_keyed(FS, f"{tmp_path}/e.bin", empty_rec, empty_keys, key="partition")
    assert read_keyed(FS, f"{tmp_path}/e.bin", 0, REC, key="partition").size == 0


def test_plain_dtype_and_large_keys(tmp_path) -> None:
    values = np.arange(6, dtype="<u8")
    keys = np.array([70_000, 5, 70_000, 5, 1 << 40, 5], dtype=np.uint64)
    write_keyed(FS, f"{tmp_path}/p.bin", values, keys, key="shard")
    assert read_keyed(FS, f"{tmp_path}/p.bin", 5, np.dtype("<u8"), key="shard").tolist() == [
        1,
        3,
        5,
    ]
    assert KeyedFile(FS, f"{tmp_path}/p.bin", key="shard").read(1 << 40).tolist() == [4]


def test_header_is_self_describing(tmp_path) -> None:
    rec, keys = _records(20)
    write_keyed(FS, f"{tmp_path}/a.bin", rec, keys, key="partition")
    raw = (tmp_path / "a.bin").read_bytes()
    magic, version, size = struct.unpack("<8sIQ", raw[:20])
    header = json.loads(raw[20 : 20 + size])
    assert magic == MAGIC and version == 1
    assert header["key"] == "partition" and header["dtype"] == [["h", "<u8"], ["row", "<u4"]]
    assert header["keys"] == [0, 1, 2, 3, 4] and sum(header["counts"]) == 20
    assert len(raw) == 20 + size + 20 * REC.itemsize


def test_bad_files_give_one_clear_error(tmp_path) -> None:
    rec, keys = _records(20)
    path = f"{tmp_path}/a.bin"
    write_keyed(FS, path, rec, keys, key="partition")
    with pytest.raises(
        KeyedFileError, match=r"a.bin: records keyed by 'partition', expected 'shard'"
    ):
        KeyedFile(FS, path, key="shard")
    with pytest.raises(KeyedFileError, match=r"a.bin: records of dtype .*, expected"):
        read_keyed(FS, path, 0, np.dtype("<u8"), key="partition")
    raw = (tmp_path / "a.bin").read_bytes()
    (tmp_path / "old.bin").write_bytes(b"PDK1" + raw[4:])  # the former dedup format's magic
    with pytest.raises(KeyedFileError, match=r"old.bin: not a keyed record file"):
        KeyedFile(FS, f"{tmp_path}/old.bin", key="partition")
    (tmp_path / "v9.bin").write_bytes(raw[:8] + struct.pack("<I", 9) + raw[12:])
    with pytest.raises(KeyedFileError, match=r"version 9, this pipeline reads version 1"):
        KeyedFile(FS, f"{tmp_path}/v9.bin", key="partition")
    (tmp_path / "cut.bin").write_bytes(raw[:-5])
    with pytest.raises(KeyedFileError, match=r"cut.bin: truncated"):
        read_keyed(FS, f"{tmp_path}/cut.bin", 4, REC, key="partition")
