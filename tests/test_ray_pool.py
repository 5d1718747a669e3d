"""RayPool: a run's actors are started once and reused by every segment and prepare phase."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pipeline.config import RuntimeConfig
from pipeline.runner.executors import RayContext, RayPool

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


def test_a_failing_call_raises_its_error_and_the_pool_goes_on(pool) -> None:
    with pytest.raises(Exception, match="negative item -2"):
        pool.map(_square_with_pid, [1, -2, 3])
    assert [s for s, _ in pool.map(_square_with_pid, [2, 3])] == [4, 9]
