"""SIGTERM (what `kill`, `timeout`, systemd and batch schedulers send) is handled like Ctrl-C on
both executors: one line `interrupted; rerun ...`, exit 143, finished units' markers kept, and the
rerun resumes to the same output as an uninterrupted run. Under Ray, no native stack dumps
(`*** SIGTERM received ***`), and after a kill -9 of the driver the embedded cluster's processes
(the raylet's agents used to linger 60-90 s) are gone within seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipeline.config import recipe_from_dict
from pipeline.runner.ray_reaper import node_processes
from pipeline.runner.run import run_recipe
from tests.conftest import REPO
from tests.faults.helpers import WARC_DIR, WGET, write_recipe
from tests.faults.test_crashes import assert_same_output

# Real crawls, extracted with trafilatura in its sandbox, copied under names that fix their
# order: a quick crawl first, then one that takes many seconds, so a signal sent when the first
# unit is done lands in the middle of the run (with 2 Ray workers too).
SOURCES = [
    WGET,
    WARC_DIR / "archive-it-2008.warc.gz",
    WARC_DIR / "wget-2024-sample-0001.warc.gz",
    WARC_DIR / "bl-govuk-2014.warc.gz",
]
# A generous time limit: a page timing out on the busy machine in one run only is not the point.
STAGES: list[dict[str, Any]] = [{"stage": "extract", "timeout_s": 120}, {"stage": "gopher_quality"}]


def _start(config: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "run", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _markers(out: Path) -> list[Path]:
    return sorted((out / "_run" / "units" / "seg00").glob("*.json"))


def _wait_for(condition: Any, proc: subprocess.Popen[str], what: str, limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert proc.poll() is None, f"exited before {what}: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"no {what} after {limit} s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def inputs(shared_data, tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("sigterm-inputs")
    copies = [folder / f"{i}-{src.name}" for i, src in enumerate(SOURCES)]
    for src, dst in zip(SOURCES, copies, strict=True):
        dst.write_bytes(src.read_bytes())
    return copies


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Path:
    """An uninterrupted run of the same recipe, in this process."""
    tmp = tmp_path_factory.mktemp("sigterm-reference")
    config = write_recipe(tmp / "r.yaml", inputs, tmp / "out", STAGES)
    run_recipe(recipe_from_dict(json.loads(config.read_text())))
    return tmp / "out"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_sigterm_mid_run_then_rerun_is_identical(inputs, reference, tmp_path, executor) -> None:
    out = tmp_path / "out"
    options = {"executor": executor} | ({"num_workers": 2} if executor == "ray" else {})
    config = write_recipe(tmp_path / "r.yaml", inputs, out, STAGES, **options)
    proc = _start(config)
    _wait_for(lambda: _markers(out), proc, "finished unit")
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    assert "curate: interrupted; rerun the same command to resume" in stderr
    assert "Traceback" not in stderr and "SIGTERM received" not in stderr, stderr[-3000:]
    assert "done:" not in stdout
    kept = _markers(out)
    assert 1 <= len(kept) < len(inputs)
    assert not (out / "stats.json").exists()
    assert not (out / ".curate.lock").exists()  # released on the way out

    rerun = _start(config)
    stdout, stderr = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, stderr[-3000:]
    assert f"{len(kept)} resumed" in stdout
    assert_same_output(out, reference)


def _reaper_node(driver: psutil.Process) -> str | None:
    """The Ray node id the driver's reaper watches (its last argument), once it runs."""
    for child in driver.children():
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if any(part.endswith("ray_reaper.py") for part in cmd):
            return cmd[-1]
    return None


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_embedded_ray_ends_with_a_killed_driver(inputs, tmp_path) -> None:
    """kill -9 of a Ray run's driver: every process of its embedded node (raylet, agents,
    workers) is gone within seconds, not after the agents' minute-long wait on the dead GCS."""
    out = tmp_path / "out"
    config = write_recipe(tmp_path / "r.yaml", inputs, out, STAGES, executor="ray", num_workers=2)
    proc = _start(config)
    driver = psutil.Process(proc.pid)
    _wait_for(lambda: _markers(out), proc, "finished unit")
    node = _reaper_node(driver)
    assert node is not None
    raylets = [c.pid for c in driver.children() if c.name() == "raylet"]
    # The agents retitle themselves (ray::DashboardAgent, ray::RuntimeEnvAgent) some time after
    # they start; on a loaded machine they can still be plain `python` here, so they are
    # recognised by the node id in their environment, not by name.
    members = node_processes(node, raylets)
    names = [p.name() for p in members]
    assert any(n.startswith("ray::Worker") for n in names), names  # the pool's actors
    assert sum(not n.startswith("ray::Worker") for n in names) >= 1, names  # the agents
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 20  # without the reaper the agents lived 60-90 s
    while (left := _alive(members + node_processes(node, raylets))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, left


def _alive(procs: list[psutil.Process]) -> list[tuple[int, str, str]]:
    """(pid, name, status) of the processes still running (zombies are gone for good)."""
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append((p.pid, p.name(), p.status()))
        except psutil.Error:
            continue
    return alive
