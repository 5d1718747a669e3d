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
from pipeline.runner.executors import RayContext, RayPool, run_local
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
    from pipeline.runner import executors

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
    from pipeline.runner import executors

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
