"""RayPool: a run's actors are started once, reused by every segment and prepare phase, and
ended on every way out of a run."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from pipeline.cli import Terminated
from pipeline.config import RuntimeConfig, recipe_from_dict
from pipeline.errors import CurateError
from pipeline.runner import executors
from pipeline.runner.executors import (
    MAX_TASKS_PER_CALL,
    RayContext,
    RayPool,
    run_local,
    tasks_per_call,
)
from pipeline.runner.run import run_recipe
from tests.faults.helpers import FAST_EXTRACT, write_recipe

_SETUPS: list[str] = []  # per worker process: the tags of the jobs it set up


class _TaggedJob:
    """A Job whose tasks report the worker process and the jobs it has set up so far."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def setup(self) -> None:
        _SETUPS.append(self.tag)

    def run(self, task: Any, worker: str) -> dict[str, Any]:
        return {"task": task, "pid": os.getpid(), "setups": list(_SETUPS)}

    def close(self) -> None:
        pass


def _square_with_pid(x: int) -> tuple[int, int]:
    if x < 0:
        raise ValueError(f"negative item {x}")
    return x * x, os.getpid()


@pytest.fixture
def pool(ray_session):
    pool = RayPool(RuntimeConfig(executor="ray", num_workers=2))
    yield pool
    pool.close()


def test_a_job_is_set_up_once_per_actor_and_actors_serve_every_call(pool, tmp_path) -> None:
    first = list(pool.run(_TaggedJob("a"), list(range(7))))
    assert sorted(r["task"] for r in first) == list(range(7))
    workers = {r["pid"] for r in first}
    assert len(workers) == 2 and len(pool.actors) == 2
    assert all(r["setups"] == ["a"] for r in first)

    again = list(pool.run(_TaggedJob("a"), [7, 8, 9]))  # an equal job: no new set-up
    assert {r["pid"] for r in again} <= workers
    assert all(r["setups"] == ["a"] for r in again)

    other = list(pool.run(_TaggedJob("b"), [10, 11, 12]))  # another job replaces it
    assert {r["pid"] for r in other} <= workers
    assert all(r["setups"] == ["a", "b"] for r in other)

    ctx = RayContext(str(tmp_path / "work"), 4, pool)  # a prepare phase on the same actors
    squares = ctx.map(_square_with_pid, [3, 1, 2, 5, 4])
    assert [s for s, _ in squares] == [9, 1, 4, 25, 16]  # in item order
    assert {pid for _, pid in squares} <= workers

    pool.close()
    assert pool.actors == []
    assert [s for s, _ in pool.map(_square_with_pid, [6])] == [36]  # restarted on use


def test_short_tasks_go_several_per_call_and_come_back_in_order(pool, monkeypatch) -> None:
    """Many short tasks: after the first calls measure them, each call to an actor carries
    several (Ray's per-call cost paid once for them), the last ones one each; every task runs
    once and map's results keep the items' order."""
    sizes: list[int] = []

    def spy(left: int, actors: int, mean: float | None) -> int:
        sizes.append(tasks_per_call(left, actors, mean))
        return sizes[-1]

    monkeypatch.setattr(executors, "tasks_per_call", spy)
    items = list(range(300))
    squares = pool.map(_square_with_pid, items)
    assert [s for s, _ in squares] == [x * x for x in items]
    assert sum(sizes) == len(items)
    assert sizes[:4] == [1, 1, 1, 1]  # nothing measured yet: one per call, two per actor
    assert max(sizes) > 1 and sizes[-1] == 1  # batched in the middle, single at the end
    assert len(sizes) < len(items) // 4

    sizes.clear()
    results = list(pool.run(_TaggedJob("c"), items))  # a job's tasks the same way
    assert sorted(r["task"] for r in results) == items
    assert sum(sizes) == len(items) and max(sizes) > 1


def test_tasks_per_call_aims_at_half_a_second_and_cuts_the_tail_fine() -> None:
    assert tasks_per_call(1000, 2, None) == 1  # nothing measured yet
    assert tasks_per_call(1000, 2, 0.1) == 5  # 0.5 s of 0.1 s tasks
    assert tasks_per_call(1000, 2, 0.001) == MAX_TASKS_PER_CALL
    assert tasks_per_call(1000, 2, 0.0) == MAX_TASKS_PER_CALL  # too short to time
    assert tasks_per_call(1000, 2, 2.0) == 1  # long tasks: one per call
    assert tasks_per_call(12, 2, 0.1) == 3  # a quarter of what is left with 2 actors
    assert tasks_per_call(3, 2, 0.1) == 1


_ENDS_RAY = """
import json, psutil, ray, sys
from pipeline.runner import executors, ray_lean_node
if sys.argv[1] == "full":
    ray_lean_node.RAY_VERSIONS_CHECKED = ()  # Ray's own node, as on a Ray not checked
executors.ensure_ray(None)
node = ray.get_runtime_context().get_node_id()
children = [" ".join(c.cmdline()) for c in psutil.Process().children()]
monitors = [c for c in psutil.Process().children()
            if any(a.endswith(executors.AUTOSCALER_MONITOR) for a in c.cmdline())]
seen = {"monitors": len(monitors), "api_servers": sum("dashboard.py" in c for c in children)}
real_shutdown = ray.shutdown
def shutdown(*args, **kwargs):
    seen.update(kwargs=kwargs, monitor_running=any(m.is_running()
                and m.status() != psutil.STATUS_ZOMBIE for m in monitors))
    real_shutdown(*args, **kwargs)
ray.shutdown = shutdown
executors.end_embedded_ray()
print(json.dumps({**seen, "node": node, "initialized": ray.is_initialized()}))
"""


@pytest.mark.ray
@pytest.mark.parametrize("node", ["lean", "full"])
def test_an_embedded_ray_ends_without_rays_exit_waits(tmp_path, node) -> None:
    """end_embedded_ray (the exit hook ensure_ray registers for a node it starts) calls Ray's
    shutdown itself, not as Ray's exit hook (which sleeps half a second first), and, on Ray's
    own node (a Ray version the lean node was not checked on), kills the autoscaler monitor
    before the shutdown (which would wait a second for it); the lean node has none, nor an API
    server. Every process of the node is gone after it."""
    import subprocess
    import sys
    import time

    from pipeline.runner.ray_reaper import node_processes
    from tests.conftest import REPO

    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _ENDS_RAY, node],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert (seen["monitors"], seen["api_servers"]) == ((0, 0) if node == "lean" else (1, 1))
    assert seen["monitor_running"] is False
    assert seen["kwargs"] == {}  # not _exiting_interpreter=True: no half-second sleep
    assert seen["initialized"] is False
    deadline = time.monotonic() + 30
    while node_processes(seen["node"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert node_processes(seen["node"]) == []


def _niceness(_: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


def test_workers_run_at_the_drivers_niceness(pool) -> None:
    """An embedded Ray's workers (and the extractor processes they start) are not reniced by
    Ray's 15, which made them yield to any other work on the machine."""
    assert pool.map(_niceness, [1, 2]) == [os.getpriority(os.PRIO_PROCESS, 0)] * 2


def test_a_failing_call_raises_its_error_and_the_pool_goes_on(pool) -> None:
    with pytest.raises(Exception, match="negative item -2"):
        pool.map(_square_with_pid, [1, -2, 3])
    assert [s for s, _ in pool.map(_square_with_pid, [2, 3])] == [4, 9]


def test_the_pool_starts_ray_before_it_puts_anything(monkeypatch) -> None:
    """Ray is started by ensure_ray (our signal handlers, the reaper, no dashboard), never
    auto-started by a first ray.put (Ray's own SIGTERM handler then made a run exit 15)."""
    calls: list[str] = []

    def no_ray(address: str | None) -> None:
        calls.append("ensure_ray")
        raise CurateError("no Ray in this test")

    monkeypatch.setattr(executors, "ensure_ray", no_ray)
    monkeypatch.setattr(RayPool, "_put", lambda self, obj: calls.append("put"))
    pool = RayPool(RuntimeConfig(executor="ray", num_workers=2))
    with pytest.raises(CurateError, match="no Ray in this test"):
        list(pool.run(_TaggedJob("a"), [1, 2]))
    with pytest.raises(CurateError, match="no Ray in this test"):
        pool.map(_square_with_pid, [1])
    assert calls == ["ensure_ray", "ensure_ray"]


class _InProcessPool:
    """Stands in for RayPool in a run: runs its tasks in this process and raises `failure` when
    the second task's result is due; counts close() calls."""

    made: ClassVar[list[_InProcessPool]] = []
    failure: ClassVar[BaseException | None] = None

    def __init__(self, runtime: RuntimeConfig) -> None:
        self.runtime = runtime
        self.closed = 0
        self.results = 0
        _InProcessPool.made.append(self)

    def run(self, job: Any, tasks: list[Any]) -> Iterator[dict[str, Any]]:
        for result in run_local(job, tasks, self.runtime):
            if self.failure is not None and self.results == 1:
                raise self.failure
            self.results += 1
            yield result

    def close(self) -> None:
        self.closed += 1


@pytest.mark.parametrize(
    "failure",
    [None, RuntimeError("worker node lost"), KeyboardInterrupt(), Terminated()],
    ids=["finished", "error", "ctrl-c", "sigterm"],
)
def test_a_run_closes_its_pool_on_every_way_out(monkeypatch, tmp_path, shared_data, failure):
    """The run's actors are ended once whether it finishes, fails, or is interrupted (Ctrl-C,
    or SIGTERM, which the CLI raises as Terminated)."""
    monkeypatch.setattr(executors, "RayPool", _InProcessPool)
    monkeypatch.setattr(_InProcessPool, "made", [])
    monkeypatch.setattr(_InProcessPool, "failure", failure)
    warcs = [shared_data / "warc" / f"wget-2024-sample-000{i}.warc.gz" for i in (0, 1)]
    config = write_recipe(
        tmp_path / "r.yaml",
        warcs,
        tmp_path / "out",
        [FAST_EXTRACT, {"stage": "gopher_quality"}],
        executor="ray",
    )
    recipe = recipe_from_dict(json.loads(config.read_text()))
    if failure is None:
        result = run_recipe(recipe)
        assert result.units_run == 2 and result.executor == "ray"
        assert [s["docs_in"] for s in result.stats["stages"]] == [37, 37]  # both WARCs read
    elif isinstance(failure, KeyboardInterrupt):
        with pytest.raises(type(failure)):
            run_recipe(recipe)
    else:
        with pytest.raises(CurateError, match="run failed: RuntimeError: worker node lost"):
            run_recipe(recipe)
    [pool] = _InProcessPool.made
    assert pool.closed == 1
    assert pool.results == (2 if failure is None else 1)
