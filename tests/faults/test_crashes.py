"""Crash safety. The driver is SIGKILLed at random points of a run (inside the map segment, inside
each global stage's prepare, inside the segments that apply them, while writing the totals), and
Ray worker processes are killed mid-task; after the rerun the output is identical (same ids, same
bytes of text, same rejections) to an uninterrupted run, and no partial shard is ever visible
under data/ (a watcher thread reads every shard that appears while the runs go on)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import fsspec
import psutil
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline.config import recipe_from_dict
from pipeline.runner.run import run_recipe
from tests.conftest import REPO
from tests.faults.helpers import (
    FAST_EXTRACT,
    WARC_DIR,
    WGET,
    assert_no_partial_shard,
    assert_reconciles,
    read_output,
    stats_of,
    write_recipe,
)

STAGES: list[dict[str, Any]] = [
    FAST_EXTRACT,
    {"stage": "exact_dedup"},
    {"stage": "gopher_repetition"},
    {"stage": "minhash_dedup"},
    {"stage": "gopher_quality"},
]
# Ray workers import the registry afresh: only stages it lists can run there.
RAY_STAGES: list[dict[str, Any]] = [
    FAST_EXTRACT,
    {"stage": "exact_dedup"},
    {"stage": "gopher_quality"},
]
PHASES = ["seg00", "prepare:exact_dedup", "seg01", "prepare:minhash_dedup", "seg02", "final"]
SMALL = {"rows_per_row_group": 3}  # several row groups per shard: kills land mid-shard
SEED = int(os.environ.get("FAULTS_SEED", "20241123"))


def _killer(phase: str, n: int, config: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tests.faults.killer", phase, str(n), "run", str(config)]
    env = {**os.environ, "RAY_ADDRESS": ""}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def inputs(shared_data, tmp_path_factory) -> list[Path]:
    """Two real crawls and a renamed copy of one of them (so exact dedup has work to do)."""
    copy = tmp_path_factory.mktemp("crash-inputs") / "wget-copy.warc.gz"
    copy.write_bytes(WGET.read_bytes())
    return [WGET, WARC_DIR / "wget-2024-sample-0001.warc.gz", copy]


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> dict[str, Any]:
    """An uninterrupted run (through the killer in counting mode): output and events per phase."""
    tmp = tmp_path_factory.mktemp("crash-reference")
    out = tmp / "out"
    config = write_recipe(tmp / "r.yaml", inputs, out, STAGES, output_options=SMALL, batch_size=8)
    proc = _killer("count", 0, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(counts.get(p, 0) > 0 for p in PHASES), counts
    stats = stats_of(out)
    assert stats["stages"][1]["removed_by_reason"]["exact_duplicate"] > 0
    return {"out": out, "counts": counts, "stats": stats}


@pytest.fixture(scope="module")
def ray_reference(inputs, tmp_path_factory) -> Path:
    """The local, uninterrupted run of RAY_STAGES that both Ray tests compare against."""
    tmp = tmp_path_factory.mktemp("crash-ray-reference")
    ref = tmp / "reference"
    config = write_recipe(tmp / "ref.yaml", inputs, ref, RAY_STAGES, output_options=SMALL)
    run_recipe(recipe_from_dict(json.loads(config.read_text())))
    return ref


class ShardWatcher(threading.Thread):
    """Reads every visible file under data/ as it appears: a partial one is a failure. `out` is
    a directory of `fs` (default: local disk), polled every `interval` seconds."""

    def __init__(self, out: Path | str, fs: Any = None, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.fs = fs or fsspec.filesystem("file")
        self.data = f"{out}/data"
        self.interval = interval
        self.problems: list[str] = []
        self.checked = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                listed = self.fs.ls(self.data, detail=False)
            except FileNotFoundError:
                listed = []
            for path in listed:
                name = path.rstrip("/").rsplit("/", 1)[-1]
                if name.startswith((".", "_")):
                    continue
                try:
                    with self.fs.open(path, "rb") as f:
                        pq.read_metadata(f)
                    self.checked += 1
                except FileNotFoundError:
                    continue  # replaced by a rerun's rename between listing and reading
                except Exception as exc:  # noqa: BLE001 - any unreadable visible file
                    self.problems.append(f"{name}: {exc}")
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _rejected(out: Path) -> dict[str, Any]:
    return {
        d.name: ds.dataset(str(d), format="parquet").to_table().sort_by("id")
        for d in sorted((out / "rejected").iterdir())
    }


def assert_same_output(out: Path, ref: Path) -> None:
    """Same kept documents (ids, text bytes, every column), same rejections, same counts."""
    assert read_output(out).equals(read_output(ref))
    got, want = _rejected(out), _rejected(ref)
    assert got.keys() == want.keys()
    for stage in want:
        assert got[stage].equals(want[stage]), stage
    timing = ("wall_s", "cpu_s")
    a, b = stats_of(out), stats_of(ref)
    assert_reconciles(a)
    assert [{k: v for k, v in s.items() if k not in timing} for s in a["stages"]] == [
        {k: v for k, v in s.items() if k not in timing} for s in b["stages"]
    ]
    assert a["reader"] == {**b["reader"]}
    assert not list(out.rglob("*.tmp*")) and not (out / "_work").exists()


@pytest.mark.slow
def test_driver_sigkill_at_random_points_then_rerun_is_identical(
    inputs, reference, tmp_path
) -> None:
    """One SIGKILL in each phase, at a random event of it (seed FAULTS_SEED), each rerun
    resuming the last; the final rerun completes and matches the uninterrupted run."""
    rng = random.Random(SEED)
    out = tmp_path / "out"
    config = write_recipe(
        tmp_path / "r.yaml", inputs, out, STAGES, output_options=SMALL, batch_size=8
    )
    watcher = ShardWatcher(out)
    watcher.start()
    kills = []
    try:
        for phase in PHASES:
            n = rng.randint(1, reference["counts"][phase])
            proc = _killer(phase, n, config)
            where = f"seed {SEED}, kill at {phase} event {n} of {reference['counts'][phase]}"
            assert proc.returncode == -signal.SIGKILL, f"{where}: {proc.stderr[-3000:]}"
            kills.append((phase, n))
            assert_no_partial_shard(out)
        proc = _killer("none", 0, config)
        assert proc.returncode == 0, f"seed {SEED}, after {kills}: {proc.stderr[-3000:]}"
    finally:
        watcher.stop()
    assert not watcher.problems, watcher.problems
    assert watcher.checked > 0
    assert_same_output(out, reference["out"])


@pytest.mark.ray
@pytest.mark.slow
def test_ray_driver_sigkill_with_prepare_tasks_in_flight(inputs, ray_reference, tmp_path) -> None:
    """The driver of a Ray run is killed while a global stage's prepare tasks run on the
    workers; an immediate rerun (the orphaned tasks may still be finishing) matches a local run."""
    out = tmp_path / "out"
    options = {"executor": "ray", "num_workers": 2, "num_partitions": 4}
    config = write_recipe(
        tmp_path / "r.yaml", inputs, out, RAY_STAGES, output_options=SMALL, **options
    )
    proc = _killer("prepare:exact_dedup", 2, config)  # the second phase's tasks in flight
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert (out / "_run" / "units" / "seg00").is_dir()
    assert not (out / "_run" / "global" / "seg01.json").exists()
    proc = _killer("none", 0, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "from 3 input file(s) (3 processed, 0 resumed; ray," in proc.stdout  # seg01 ran
    assert_same_output(out, ray_reference)


class RayWorkerKiller(threading.Thread):
    """SIGKILLs the first Ray worker process of this session seen running each target:
    `ray::Worker.run` (a shard task of the actor pool, while a shard is half written under
    data/, so the kill lands mid-write in the user-visible directory) and `ray::Worker.call` (a
    global stage's prepare call on the same actors)."""

    def __init__(self, targets: tuple[str, ...], out: Path) -> None:
        super().__init__(daemon=True)
        self.targets = list(targets)
        self.out = out
        self.killed: list[str] = []
        self._stop_event = threading.Event()

    def _writing(self) -> bool:
        """A shard of the last segment is being written under data/."""
        return any((self.out / "data").glob(".part-*.tmp-*"))

    def run(self) -> None:
        me = psutil.Process()
        while self.targets and not self._stop_event.is_set():
            writing = self._writing()
            for proc in me.children(recursive=True):
                try:
                    title = " ".join(proc.cmdline()).strip()
                except psutil.Error:
                    continue
                target = next((t for t in self.targets if title.startswith(t)), None)
                if target == "ray::Worker.run" and not writing:
                    continue
                if target is not None:
                    proc.send_signal(signal.SIGKILL)
                    self.killed.append(target)
                    self.targets.remove(target)
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@pytest.mark.slow
def test_ray_workers_killed_mid_task_then_output_identical(
    inputs, ray_reference, tmp_path, ray_session
) -> None:
    """A pool actor killed while it runs a unit, and a task of a global stage's prepare killed
    while it runs: Ray restarts and retries them, and the output matches a local run's."""
    out = tmp_path / "out"
    config = write_recipe(
        tmp_path / "r.yaml",
        inputs,
        out,
        RAY_STAGES,
        output_options=SMALL,
        executor="ray",
        num_workers=2,
    )
    recipe = recipe_from_dict(json.loads(config.read_text()))
    killer = RayWorkerKiller(("ray::Worker.run", "ray::Worker.call"), out)
    watcher = ShardWatcher(out)
    killer.start()
    watcher.start()
    try:
        result = run_recipe(recipe)
    finally:
        killer.stop()
        watcher.stop()
    assert sorted(killer.killed) == ["ray::Worker.call", "ray::Worker.run"]
    assert not watcher.problems, watcher.problems
    assert result.units_run == 3 * 2
    assert_no_partial_shard(out)
    assert_same_output(out, ray_reference)


def test_a_failing_ray_task_is_reported_not_masked(ray_session) -> None:
    """A task failing while others are still running: the user sees its error, not one raised
    while cancelling the others (Ray refuses `force=True` for actor tasks)."""
    import cloudpickle

    from pipeline.config import RuntimeConfig
    from pipeline.runner.executors import execute
    from pipeline.runner.run import _root_cause
    from tests.faults import jobs

    cloudpickle.register_pickle_by_value(jobs)
    runtime = RuntimeConfig(executor="ray", num_workers=2)
    with pytest.raises(Exception) as exc:  # noqa: B017, PT011 - any wrapper of the task's error
        list(execute(jobs.FailingJob(), [1, 0, 2, 3], runtime))
    assert _root_cause(exc.value) == "RuntimeError: unit 0 is broken"
