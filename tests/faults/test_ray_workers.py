"""More Ray workers than the cluster has CPUs: each worker is an actor holding one CPU, so the
extra ones could never be placed and `--workers 3` on 2 CPUs waited forever. The number is
clamped to the cluster's CPUs with a warning, and the run finishes with every document."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pipeline.config import RuntimeConfig, recipe_from_dict
from pipeline.runner import executors
from pipeline.runner.executors import ray_workers
from pipeline.runner.run import run_recipe
from tests.faults.helpers import WARC_DIR, WGET, assert_reconciles, stats_of, write_recipe


@pytest.mark.timeout(60)
@pytest.mark.parametrize("asked", [3, 10_000])
def test_workers_clamped_to_cluster_cpus(ray_session, caplog, monkeypatch, asked) -> None:
    monkeypatch.setattr(executors, "_CLAMP_WARNED", set())  # warned once per process
    cpus = int(ray_session.cluster_resources()["CPU"])
    assert cpus == 2
    with caplog.at_level(logging.WARNING, logger="pipeline.runner.executors"):
        assert ray_workers(RuntimeConfig(num_workers=asked)) == cpus
    assert (
        f"runtime.num_workers is {asked} but the Ray cluster has 2 CPU(s); using 2" in caplog.text
    )
    assert ray_workers(RuntimeConfig(num_workers=1)) == 1
    assert ray_workers(RuntimeConfig()) == cpus


@pytest.mark.timeout(240)
def test_run_with_more_workers_than_cpus_finishes(ray_session, tmp_path, shared_data) -> None:
    """Three units and `num_workers: 3` on the 2-CPU session cluster: done, all 59 documents."""
    inputs: list[Path] = [
        WGET,
        WARC_DIR / "wget-2024-sample-0001.warc.gz",
        tmp_path / "copy.warc.gz",
    ]
    inputs[2].write_bytes(WGET.read_bytes())
    out = tmp_path / "out"
    config = write_recipe(tmp_path / "r.yaml", inputs, out, executor="ray", num_workers=3)
    result = run_recipe(recipe_from_dict(json.loads(config.read_text())))
    assert result.units_run == 3
    stats = stats_of(out)
    assert_reconciles(stats)
    assert sorted(u["documents_in"] for u in stats["units"]) == [15, 22, 22]
