"""S3 end to end: a run reads shared crawls from a real S3 API server on localhost (moto, through
s3fs as a user's run would), listed by a paths file there, and writes its output there; killed part way (SIGKILL mid-shard,
between a shard and its marker, inside a global stage's prepare) and rerun, its output is
identical to a run writing to local disk, and no object under data/ or rejected/ is ever a
partial shard."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import fsspec
import psutil
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.io.atomic import SPOOL_PREFIX
from tests.conftest import REPO, S3_BUCKET
from tests.faults.helpers import (
    DCLM,
    FAST_EXTRACT,
    TEXT_STAGES,
    WARC_DIR,
    WGET,
    curate,
    write_recipe,
)
from tests.faults.test_crashes import ShardWatcher, assert_same_output

STAGES: list[dict[str, Any]] = [FAST_EXTRACT, {"stage": "exact_dedup"}, {"stage": "gopher_quality"}]
SMALL = {"rows_per_row_group": 3}  # several row groups per shard: kills land mid-shard


def _killer(phase: str, n: int, config: Path) -> subprocess.CompletedProcess[str]:
    """`curate run config` through the killer (tests/faults/killer.py), with this environment
    (the S3 endpoint and credentials of the `s3_server` fixture)."""
    cmd = [sys.executable, "-m", "tests.faults.killer", phase, str(n), "run", str(config)]
    env = {**os.environ, "RAY_ADDRESS": ""}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def s3_inputs(s3_server) -> dict[str, Any]:
    """Two real crawls and a renamed copy of one (exact dedup has work), uploaded to S3 with a
    gzipped paths file listing them as Common Crawl's `warc.paths.gz` does (relative lines):
    the `input:` section that reads them."""
    fs = fsspec.filesystem("s3")
    files = {"wget-0000": WGET, "wget-0001": WARC_DIR / "wget-2024-sample-0001.warc.gz"}
    files["wget-copy"] = WGET
    lines = []
    for name, path in files.items():
        fs.put_file(str(path), f"{S3_BUCKET}/crawls/{name}.warc.gz")
        lines.append(f"crawls/{name}.warc.gz\n")
    listing = f"{S3_BUCKET}/crawls/warc.paths.gz"
    fs.pipe_file(listing, gzip.compress("".join(lines).encode(), mtime=0))
    return {
        "paths_file": f"s3://{listing}",
        "base_url": f"s3://{S3_BUCKET}/",
        "allowed_protocols": ["file", "s3"],
    }


def _no_partial_objects(fs: Any, root: str) -> None:
    """Every object a reader of data/ or rejected/ would pick up is a complete Parquet shard,
    and no hidden temporary object exists anywhere under the run."""
    for key in fs.find(root):
        name = key.rsplit("/", 1)[-1]
        assert ".tmp" not in name, key
        if "/data/" in key or "/rejected/" in key:
            assert name.endswith(".parquet"), key
            pq.read_metadata(io.BytesIO(fs.cat_file(key)))  # raises on a partial file


@pytest.fixture(scope="module")
def local_run(s3_inputs, tmp_path_factory) -> dict[str, Any]:
    """The recipe over the crawls on S3, written to a local directory (through the killer in
    counting mode): its output and the kill events per phase."""
    tmp = tmp_path_factory.mktemp("s3-local-run")
    config = write_recipe(
        tmp / "local.yaml", [], tmp / "out", STAGES, input_options=s3_inputs, output_options=SMALL
    )
    proc = _killer("count", 0, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"out": tmp / "out", "counts": json.loads(proc.stdout.strip().splitlines()[-1])}


def _s3_recipe(tmp_path: Path, s3_inputs: dict[str, Any], root: str, **runtime: Any) -> Path:
    """The recipe of `local_run`, writing to s3://`root`."""
    out = f"s3://{root}"
    return write_recipe(
        tmp_path / "s3.yaml",
        [],
        out,  # type: ignore[arg-type]
        STAGES,
        input_options=s3_inputs,
        output_options=SMALL,
        **runtime,
    )


def _fetched(fs: Any, root: str, tmp_path: Path) -> Path:
    """A finished run on S3, checked for leftovers and downloaded for comparison."""
    _no_partial_objects(fs, root)
    spools = Path(tempfile.gettempdir()).glob(f"{SPOOL_PREFIX}*")  # the killed writers' are gone
    assert not [p for p in spools if not psutil.pid_exists(int(p.name.split("-")[2]))]
    fetched = tmp_path / "fetched"
    fs.get(f"{root}/", str(fetched), recursive=True)
    return fetched


def test_s3_run_killed_and_rerun_matches_a_local_disk_run(
    capsys, s3_inputs, local_run, tmp_path
) -> None:
    """The same recipe over the crawls on S3, once into a local directory, once into S3 killed
    mid-shard in the map segment, inside exact_dedup's prepare and before the last marker of the
    segment applying it; after the rerun the objects equal the local run's files (every column,
    rejections, counts), with no temporary object, spool file or _work/ left."""
    fs = fsspec.filesystem("s3", use_listings_cache=False)  # the runs write from other processes
    counts = local_run["counts"]
    root = f"{S3_BUCKET}/runs/{tmp_path.name}"
    config = _s3_recipe(tmp_path, s3_inputs, root)
    kills = [
        ("seg00", counts["seg00"] // 2),
        ("prepare:exact_dedup", 1),
        ("seg01", counts["seg01"] - 1),
    ]
    watcher = ShardWatcher(root, fs, interval=0.1)  # reads each shard as it appears on S3
    watcher.start()
    try:
        for phase, n in kills:
            proc = _killer(phase, n, config)
            assert proc.returncode == -signal.SIGKILL, f"{phase} {n}: {proc.stderr[-3000:]}"
            _no_partial_objects(fs, root)
        proc = _killer("none", 0, config)
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        watcher.stop()
    assert not watcher.problems, watcher.problems
    assert watcher.checked > 0
    assert "(1 processed, 2 resumed" in proc.stdout  # the units finished before the kills
    assert_same_output(_fetched(fs, root, tmp_path), local_run["out"])
    # `curate stats` of the run on S3 writes RUN/stats there, the same numbers as on disk
    assert curate(capsys, "stats", f"s3://{root}", "--executor", "local").code == 0
    assert curate(capsys, "stats", local_run["out"], "--executor", "local").code == 0
    on_s3 = json.loads(fs.cat_file(f"{root}/stats/summary.json"))
    on_disk = json.loads((local_run["out"] / "stats" / "summary.json").read_text())
    assert on_s3["input"] == f"s3://{root}"
    assert on_s3["by_stage"] == on_disk["by_stage"]


@pytest.mark.ray
@pytest.mark.slow
def test_s3_ray_run_with_driver_killed_matches_a_local_disk_run(s3_inputs, local_run, tmp_path):
    """On Ray (workers in other processes, reading and writing S3 with the environment they
    inherit): the driver is SIGKILLed once exact_dedup's prepare tasks are in flight, and the
    rerun's output equals the local-disk run's."""
    fs = fsspec.filesystem("s3", use_listings_cache=False)
    root = f"{S3_BUCKET}/runs/{tmp_path.name}"
    config = _s3_recipe(tmp_path, s3_inputs, root, executor="ray", num_workers=2, num_partitions=4)
    proc = _killer("prepare:exact_dedup", 2, config)  # the second phase's tasks in flight
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert fs.exists(f"{root}/_run/units/seg00") and not fs.exists(f"{root}/_run/global/seg01.json")
    proc = _killer("none", 0, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(3 processed, 0 resumed; ray," in proc.stdout  # seg01 ran after the kill
    assert_same_output(_fetched(fs, root, tmp_path), local_run["out"])


@pytest.fixture
def without_s3fs(monkeypatch) -> None:
    """This process as if the `remote` extra were not installed: `import s3fs` fails."""
    import importlib

    registry = importlib.import_module("fsspec.registry")  # `fsspec.registry` is a mapping
    monkeypatch.setitem(sys.modules, "s3fs", None)
    monkeypatch.delitem(registry._registry, "s3", raising=False)  # a class imported earlier


def test_s3_output_without_the_remote_extra_is_one_line(capsys, tmp_path, without_s3fs) -> None:
    config = write_recipe(tmp_path / "r.yaml", [DCLM], "s3://curate-test/never", TEXT_STAGES)  # type: ignore[arg-type]
    got = curate(capsys, "run", config)
    assert got.code == 2
    assert got.err.count("\n") == 1 and "Traceback" not in got.err
    assert got.err.startswith("curate: error: cannot write output 's3://curate-test/never': ")
    assert "`remote` extra (pip install 'pipeline[remote]')" in got.err
    assert "s3fs" in got.err


def test_s3_input_without_the_remote_extra_is_one_line(capsys, tmp_path, without_s3fs) -> None:
    url = "s3://curate-test/crawls/wget-0000.warc.gz"
    options = {"allowed_protocols": ["file", "s3"]}
    config = write_recipe(tmp_path / "r.yaml", [url], tmp_path / "out", input_options=options)
    got = curate(capsys, "run", config)
    assert got.code == 2
    assert got.err.count("\n") == 1 and "Traceback" not in got.err
    assert f"cannot open {url!r}: s3:// needs the `remote` extra" in got.err
    assert not (tmp_path / "out").exists()


# --- `curate inspect` and `curate ablate` on S3 ----------------------------------------------


@pytest.fixture(scope="module")
def dclm_on_s3(s3_server) -> str:
    """The 281 DCLM documents as a JSONL object on S3."""
    key = f"{S3_BUCKET}/text/dclm-agreement.jsonl"
    fsspec.filesystem("s3").put_file(str(DCLM), key)
    return f"s3://{key}"


@pytest.fixture(scope="module")
def twin_runs(s3_server, tmp_path_factory) -> dict[str, str]:
    """One recipe (gopher_quality over DCLM, rejected documents kept) run into a local directory
    and into S3: where each is."""
    tmp = tmp_path_factory.mktemp("s3-twins")
    runs = {"local": str(tmp / "local"), "s3": f"s3://{S3_BUCKET}/runs/{tmp.name}"}
    for name, out in runs.items():
        config = write_recipe(tmp / f"{name}.yaml", [DCLM], out, TEXT_STAGES)  # type: ignore[arg-type]
        assert main(["run", str(config)]) == 0
    return runs


def test_inspect_shows_a_run_on_s3_as_one_on_disk(capsys, twin_runs) -> None:
    """A run, its data/ directory, one shard, a stage's removals (by reason): the same text
    whether the run lies on S3 or on local disk (paths aside)."""
    local, remote = twin_runs["local"], twin_runs["s3"]
    shard = fsspec.filesystem("s3", use_listings_cache=False).ls(f"{remote}/data")[0]
    name = shard.rsplit("/", 1)[-1]
    for where in ([], ["/data"], [f"/data/{name}"]):
        on_disk = curate(capsys, "inspect", local + "".join(where))
        on_s3 = curate(capsys, "inspect", remote + "".join(where))
        assert on_disk.code == 0 and on_s3.code == 0, on_s3.err
        assert on_s3.out.replace(remote, "RUN") == on_disk.out.replace(local, "RUN")
    summary = curate(capsys, "inspect", remote).out
    assert summary.startswith(f"run directory {remote}\nrecords 281 -> documents 281")
    assert "parquet: 1 files, " in summary and "sample:\n  [0]" in summary
    for args in (["--stage", "gopher_quality"], ["--stage", "gopher_quality", "-n", "2"]):
        on_disk = curate(capsys, "inspect", local, *args)
        on_s3 = curate(capsys, "inspect", remote, *args)
        assert on_s3.code == 0 and on_s3.out == on_disk.out, on_s3.err
        assert on_s3.out.startswith("gopher_quality removed ")
    reason = on_s3.out.splitlines()[1].split()[-1]
    by_reason = curate(capsys, "inspect", remote, "--stage", "gopher_quality", "--reason", reason)
    assert by_reason.code == 0 and f"  {reason}\n" in by_reason.out
    assert (
        by_reason.out
        == curate(capsys, "inspect", local, "--stage", "gopher_quality", "--reason", reason).out
    )
    missing = curate(capsys, "inspect", f"s3://{S3_BUCKET}/runs/no-such-run", "--stage", "x")
    assert (
        missing.code == 2 and missing.err.count("\n") == 1 and "not a run directory" in missing.err
    )


def test_inspect_reads_raw_input_on_s3(capsys, dclm_on_s3) -> None:
    on_s3 = curate(capsys, "inspect", dclm_on_s3)
    on_disk = curate(capsys, "inspect", DCLM)
    assert on_s3.code == 0, on_s3.err
    assert on_s3.out.startswith(f"{dclm_on_s3} [jsonl]: records 281, documents 281, skipped: -")

    def sample(out: str) -> list[str]:  # ids and `source` are made from the path read
        return [
            line for line in out.splitlines()[1:] if not line.startswith(("    id:", "    source:"))
        ]

    assert sample(on_s3.out) == sample(on_disk.out) and len(sample(on_s3.out)) > 10
    assert f"    source: '{dclm_on_s3}'" in on_s3.out


def test_ablate_reads_and_writes_s3_as_local_disk(capsys, tmp_path, dclm_on_s3) -> None:
    """An ablation over a JSONL object on S3 writing to S3: the variants keep what the same
    ablation over the local file, written to disk, keeps (263 and 197 of 281: measured so);
    a rerun on S3 finds its score cache there and computes nothing."""
    out = f"s3://{S3_BUCKET}/ablations/{tmp_path.name}"
    options = {"allowed_protocols": ["file", "s3"]}
    write_recipe(tmp_path / "base.yaml", [dclm_on_s3], "unused", TEXT_STAGES, input_options=options)  # type: ignore[arg-type]
    (tmp_path / "abl.yaml").write_text(
        f"base: base.yaml\noutput: {{path: {out}}}\nvariants:\n  plain: {{}}\n"
        "  strict: {set: {gopher_quality.min_doc_words: 120}}\n"
    )
    first = curate(capsys, "ablate", tmp_path / "abl.yaml")
    assert first.code == 0, first.err
    assert [line.split(";")[0] for line in first.out.splitlines()[:2]] == [
        "plain: 281 in, 263 kept",
        "strict: 281 in, 197 kept",
    ]
    assert "computed now: gopher_quality" in first.out
    again = curate(capsys, "ablate", tmp_path / "abl.yaml")
    assert again.code == 0 and again.out.count("computed now: nothing (cached)") == 2
    fs = fsspec.filesystem("s3", use_listings_cache=False)
    root = f"{S3_BUCKET}/ablations/{tmp_path.name}"
    assert fs.exists(f"{root}/report.md") and fs.exists(f"{root}/variants/strict/stats.json")
    # The score cache and the variants' sequence statistics' work are on S3 too, not in a
    # local folder named after the bucket.
    assert fs.find(f"{root}/_cache") and not Path(S3_BUCKET).exists()
