"""Resumable prepare phases: the driver is SIGKILLed inside minhash_dedup's prepare (before the
components task, and in the middle of the buckets phase); the rerun gives the uninterrupted run's
output and runs only the tasks that had not finished (counted in stats.json and by the killer's
per-task events)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.faults.helpers import dclm_lines, stats_of, write_recipe
from tests.faults.test_crashes import _killer, assert_same_output

FILES = 5  # input files, so shards: the signatures phase has FILES tasks
PARTITIONS = 4  # the buckets phase has PARTITIONS tasks, components one
STAGES: list[dict[str, Any]] = [{"stage": "minhash_dedup"}]
PHASE = "prepare:minhash_dedup"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    """FILES JSONL files of real DCLM texts; every 4th text also appears in the next file with
    its last sentence cut (a near duplicate in another shard)."""
    tmp = tmp_path_factory.mktemp("prepare-resume-inputs")
    records = [json.loads(line) for line in dclm_lines()[:100]]
    per_file: list[list[dict[str, Any]]] = [[] for _ in range(FILES)]
    for i, rec in enumerate(records):
        per_file[i % FILES].append({"id": f"doc{i}", "text": rec["text"]})
        if i % 4 == 0:
            cut = rec["text"][: rec["text"].rstrip(". \n").rfind(".") + 1] or rec["text"]
            per_file[(i + 1) % FILES].append({"id": f"near{i}", "text": cut})
    paths = []
    for k, recs in enumerate(per_file):
        path = tmp / f"part-{k}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
        paths.append(path)
    return paths


def _recipe(path: Path, inputs: list[Path], out: Path) -> Path:
    return write_recipe(path, inputs, out, STAGES, num_partitions=PARTITIONS)


def _prepare_events(proc: Any) -> int:
    """Events of the prepare phase in a `count` run: one per task run, plus its marker."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]).get(PHASE, 0)


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("prepare-resume-reference")
    out = tmp / "out"
    assert _prepare_events(_killer("count", 0, _recipe(tmp / "r.yaml", inputs, out))) == (
        FILES + PARTITIONS + 1 + 1
    )
    summary = stats_of(out)["global"]["minhash_dedup"]
    assert summary["duplicates"] > 0
    assert (summary["tasks"], summary["tasks_resumed"]) == (FILES + PARTITIONS + 1, 0)
    return out


@pytest.mark.parametrize(
    ("kill_at", "finished"),
    [
        (FILES + PARTITIONS + 1, FILES + PARTITIONS),  # before components: all else finished
        (FILES + 2, FILES + 1),  # in the buckets phase: signatures and one partition finished
    ],
    ids=["components", "buckets"],
)
def test_kill_in_prepare_resumes_from_finished_tasks(
    inputs, reference, tmp_path, kill_at, finished
) -> None:
    out = tmp_path / "out"
    config = _recipe(tmp_path / "r.yaml", inputs, out)
    proc = _killer(PHASE, kill_at, config)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (out / "_run" / "global" / "seg01.json").exists()
    records = list((out / "_work").glob("global-01-minhash_dedup/_tasks/*/*.pkl"))
    assert len(records) == finished
    # The rerun runs only the unfinished tasks: one event each, plus the marker's.
    total = FILES + PARTITIONS + 1
    assert _prepare_events(_killer("count", 0, config)) == total - finished + 1
    summary = stats_of(out)["global"]["minhash_dedup"]
    assert (summary["tasks"], summary["tasks_resumed"]) == (total, finished)
    ref = stats_of(reference)["global"]["minhash_dedup"]
    for key in ("documents", "candidate_edges", "edges", "clusters", "duplicates"):
        assert summary[key] == ref[key], key
    assert_same_output(out, reference)
    log = (out / "_run" / "run.log").read_text()
    assert f"minhash_dedup: phase 1, {FILES} of {FILES} task(s) resumed" in log
    assert f"minhash_dedup: phase 2, {finished - FILES} of {PARTITIONS} task(s) resumed" in log
    assert "phase 3," not in log


@pytest.mark.ray
@pytest.mark.slow
def test_ray_prepare_killed_before_components_resumes_the_workers_records(
    inputs, reference, tmp_path
) -> None:
    """On Ray the tasks write their records on the workers: the driver is killed once the
    components task is submitted (signatures and buckets all returned), and the rerun reuses
    every one of those tasks."""
    out = tmp_path / "out"
    config = write_recipe(
        tmp_path / "r.yaml",
        inputs,
        out,
        STAGES,
        executor="ray",
        num_workers=2,
        num_partitions=PARTITIONS,
    )
    proc = _killer(PHASE, 3, config)  # the third map of prepare: components, in flight
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    proc = _killer("none", 0, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = stats_of(out)["global"]["minhash_dedup"]
    assert summary["tasks"] == FILES + PARTITIONS + 1
    # The orphaned components task may have finished before the rerun listed the records.
    assert summary["tasks_resumed"] in (FILES + PARTITIONS, FILES + PARTITIONS + 1)
    assert_same_output(out, reference)
