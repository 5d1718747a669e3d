"""Writing to an object store (a real S3 API server on localhost, through s3fs): shards and
markers appear whole under their final names or not at all, with no temporary object and no
rename; listings see other processes' writes at once; killed uploads are cleaned up."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.io.atomic import SPOOL_PREFIX, atomic_write, remove_temp_files, write_json_atomic
from pipeline.io.writer import ShardWriter, output_fs, output_url
from tests.conftest import S3_BUCKET


@pytest.fixture
def root(s3_server, request) -> str:
    """A fresh prefix of the test bucket, as an output URL."""
    return f"s3://{S3_BUCKET}/object-store/{request.node.name}"


@pytest.fixture(scope="module")
def texts(shared_data) -> pa.Table:
    """281 real web texts (the DCLM agreement set) with ids."""
    lines = (shared_data / "quality" / "dclm-agreement.jsonl").read_text().splitlines()
    docs = [json.loads(line)["text"] for line in lines]
    return pa.table({"id": [f"dclm-{i}" for i in range(len(docs))], "text": docs})


def test_shard_is_invisible_until_close_then_whole(root, texts) -> None:
    fs, base = output_fs(root)
    path = f"{base}/data/part-00000.parquet"
    w = ShardWriter(fs, path, rows_per_row_group=50)
    w.write(texts)
    spool = w._target.tmp_path
    assert Path(spool).stat().st_size > 0  # five row groups flushed, to the local spool file
    assert fs.find(base) == []  # not even a temporary object: nothing to rename, nothing partial
    assert w.close() == 281
    assert fs.find(base) == [path]
    assert not os.path.exists(spool)
    back = pq.read_table(io.BytesIO(fs.cat_file(path)))
    assert back.column("text").to_pylist() == texts.column("text").to_pylist()
    meta = pq.read_metadata(io.BytesIO(fs.cat_file(path)))
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [50] * 5 + [31]


def test_aborted_shard_leaves_nothing(root, texts) -> None:
    fs, base = output_fs(root)
    w = ShardWriter(fs, f"{base}/data/part-00001.parquet", rows_per_row_group=50)
    w.write(texts)
    spool = w._target.tmp_path
    w.abort()
    assert fs.find(base) == [] and not os.path.exists(spool)


def test_failed_rewrite_keeps_the_committed_marker(root) -> None:
    fs, base = output_fs(root)
    marker = f"{base}/_run/units/seg00/part-00000.json"
    write_json_atomic(fs, marker, {"output_docs": 34})
    with pytest.raises(RuntimeError, match="worker died"), atomic_write(fs, marker, "w") as f:
        f.write('{"output_docs": ')
        raise RuntimeError("worker died")
    assert json.loads(fs.cat_file(marker)) == {"output_docs": 34}
    assert fs.find(base) == [marker]


def test_listings_see_other_processes_writes(root) -> None:
    """A marker written by another process (a Ray worker, another run) after this process listed
    the directory is seen by `ls` and `exists` (s3fs's listing cache would hide it)."""
    import fsspec

    fs, base = output_fs(root)
    units = f"{base}/_run/units/seg00"
    fs.pipe_file(f"{units}/part-00000.json", b"{}")
    assert fs.ls(units, detail=False) == [f"{units}/part-00000.json"]
    other = fsspec.filesystem("s3", skip_instance_cache=True)  # as in another process
    other.pipe_file(f"{units}/part-00001.json", b"{}")
    assert fs.exists(f"{units}/part-00001.json")
    assert len(fs.ls(units, detail=False)) == 2


def test_unfinished_upload_of_a_killed_writer_is_aborted(root) -> None:
    """What a writer SIGKILLed mid-upload leaves (a multipart upload never completed: stored,
    billed, in no listing) is aborted by the cleanup a run does at its start and end."""
    fs, base = output_fs(root)
    bucket, key = f"{base}/data/part-00002.parquet".split("/", 1)
    upload = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=key)
    fs.call_s3(
        "upload_part", Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x"
    )
    fs.pipe_file(f"{base}/data/part-00000.parquet", b"a finished shard")
    mine = {"Bucket": bucket, "Prefix": f"{base.split('/', 1)[1]}/"}
    assert len(fs.call_s3("list_multipart_uploads", **mine).get("Uploads", [])) == 1
    remove_temp_files(fs, f"{base}/data")
    assert fs.call_s3("list_multipart_uploads", **mine).get("Uploads", []) == []
    assert fs.find(base) == [f"{base}/data/part-00000.parquet"]


def test_output_url_keeps_the_protocol(root, tmp_path) -> None:
    fs, base = output_fs(root)
    assert output_url(fs, f"{base}/_work/g") == f"{root}/_work/g"
    local, path = output_fs(str(tmp_path))
    assert output_url(local, path) == str(tmp_path)


def test_spool_files_of_dead_writers_are_removed(root, texts, tmp_path, monkeypatch) -> None:
    """A writer SIGKILLed mid-shard leaves its local spool file: the next run's cleanup deletes
    the spool files of processes that no longer run, never a live writer's."""
    import subprocess
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f"{SPOOL_PREFIX}{dead.pid}-k9x2").write_bytes(b"half a shard")
    (tmp_path / "unrelated.txt").write_text("kept")
    fs, base = output_fs(root)
    live = ShardWriter(fs, f"{base}/data/part-00003.parquet", rows_per_row_group=50)
    live.write(texts)  # its spool file: this process's
    remove_temp_files(fs, f"{base}/data")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [Path(live._target.tmp_path).name, "unrelated.txt"]
    )
    assert live.close() == 281
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unrelated.txt"]
