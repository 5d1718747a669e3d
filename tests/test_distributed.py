"""Runs that leave this process: a two-node Ray cluster, and a driver killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.config import recipe_from_dict
from pipeline.runner.run import run_recipe
from tests.test_runner import read_output

CURATE = [sys.executable, "-m", "pipeline.cli"]


MAP_STAGES = [{"stage": "extract"}, {"stage": "langid", "threshold": 0.5}]
# Global stages between map stages: both dedup shuffles run on the cluster too.
DEDUP_STAGES = [
    {"stage": "extract"},
    {"stage": "exact_dedup"},
    {"stage": "langid", "threshold": 0.5},
    {"stage": "minhash_dedup", "preset": "fineweb"},
]


def _write_recipe(
    path: Path, inputs: list[str], out: Path, stages: list[dict] = MAP_STAGES, **runtime
) -> Path:
    recipe = {
        "input": {"paths": inputs},
        "output": {"path": str(out), "keep_rejected": True},
        "runtime": {"executor": "ray", "batch_size": 16, "progress": "log", **runtime},
        "stages": stages,
    }
    path.write_text(json.dumps(recipe))  # JSON is valid YAML
    return path


def _inputs(shared_data: Path) -> list[str]:
    return sorted(str(p) for p in (shared_data / "warc").glob("*.warc.gz"))


def _reference(inputs: list[str], tmp_path: Path, stages: list[dict] = MAP_STAGES):
    """The uninterrupted, single-process output to compare against."""
    out = tmp_path / "reference"
    recipe = json.loads(_write_recipe(tmp_path / "ref.yaml", inputs, out, stages).read_text())
    recipe["runtime"]["executor"] = "local"
    run_recipe(recipe_from_dict(recipe))
    return read_output(out)


@pytest.mark.e2e
@pytest.mark.ray
@pytest.mark.slow
def test_two_node_cluster_gives_the_same_output(shared_data, tmp_path) -> None:
    from ray.cluster_utils import Cluster

    inputs = _inputs(shared_data)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1}, connect=False)
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        out = tmp_path / "cluster"
        config = _write_recipe(tmp_path / "r.yaml", inputs, out, DEDUP_STAGES)
        proc = subprocess.run(
            [*CURATE, "run", str(config), "--ray-address", cluster.address],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "RAY_ADDRESS": ""},
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        cluster.shutdown()
    nodes = {
        json.loads(m.read_text())["worker"]["node"]
        for m in (out / "_run" / "units" / "seg00").glob("*.json")
    }
    assert len(nodes) == 2, "both nodes of the cluster should have processed units"
    assert read_output(out).equals(_reference(inputs, tmp_path, DEDUP_STAGES))
    for stage in ("exact_dedup", "minhash_dedup"):  # the same removed sets
        removed = [
            _removed_ids(root / "rejected" / stage) for root in (out, tmp_path / "reference")
        ]
        assert removed[0] == removed[1], stage
    assert _removed_ids(out / "rejected" / "exact_dedup"), "the shared WARCs hold exact copies"


def _removed_ids(path: Path) -> set[str]:
    return {i for f in path.glob("*.parquet") for i in pq.read_table(f).column("id").to_pylist()}


@pytest.mark.e2e
@pytest.mark.ray
@pytest.mark.slow
def test_sigkill_of_the_driver_then_rerun_gives_identical_output(shared_data, tmp_path) -> None:
    inputs = _inputs(shared_data)
    out = tmp_path / "killed"
    config = _write_recipe(tmp_path / "r.yaml", inputs, out, num_workers=1)
    cmd = [*CURATE, "run", str(config)]
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    units = out / "_run" / "units" / "seg00"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if units.is_dir() and len(list(units.glob("*.json"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Whatever is visible under data/ is a complete shard, even while orphaned workers finish.
    for shard in (out / "data").glob("*.parquet"):
        pq.read_table(shard)
    time.sleep(3)  # the killed driver's Ray processes exit (a worker may commit one more unit)
    finished = len(list(units.glob("*.json")))
    assert 2 <= finished < len(inputs)
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = f"from {len(inputs)} input file(s) ({len(inputs) - finished} processed, {finished} resumed; ray,"
    assert resumed in rerun.stdout
    assert not list(out.rglob("*.tmp-*"))
    assert read_output(out).equals(_reference(inputs, tmp_path))
