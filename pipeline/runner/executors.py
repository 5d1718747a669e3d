"""Executors: run `process_unit` over units, in this process or on Ray actors.

This is the only module that knows about Ray. Each Ray actor builds the stage chain once (models
load once per worker) and processes whole units, so every unit's output is committed atomically
by the worker that produced it. Actors restart and retry a unit if their process dies; a unit is
idempotent (temporary names + rename), so a retry cannot duplicate documents.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.config import Recipe
from pipeline.runner.unit import StageChain, Task, process_task
from pipeline.stages.global_base import GlobalContext, LocalContext

log = logging.getLogger(__name__)

UnitResult = dict[str, Any]


def run_local(recipe: Recipe, tasks: list[Task]) -> Iterator[UnitResult]:
    """Process tasks one after another in this process."""
    chain = StageChain(recipe)
    try:
        for task in tasks:
            yield process_task(recipe, chain, task)
    finally:
        chain.close()


def ensure_ray(address: str | None) -> None:
    """Connect to the cluster at `address` / $RAY_ADDRESS, or start an embedded local Ray.

    Reuses an already initialised Ray (tests share one per session).
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {
        "ignore_reinit_error": True,
        "logging_level": logging.WARNING,
        "log_to_driver": True,
    }
    if address is None:
        kwargs["include_dashboard"] = False
    ray.init(address=address, **kwargs)


def _worker_class() -> Any:
    import ray

    @ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=3)
    class UnitWorker:
        """Holds one stage chain; processes whole units."""

        def __init__(self, recipe_dict: dict[str, Any], source: str) -> None:
            from pipeline.config import recipe_from_dict

            self.recipe = recipe_from_dict(recipe_dict, source=source)
            self.chain = StageChain(self.recipe)

        def run(self, task: Task) -> UnitResult:
            node = ray.get_runtime_context().get_node_id()
            return process_task(self.recipe, self.chain, task, worker=node)

    return UnitWorker


def run_ray(recipe: Recipe, tasks: list[Task]) -> Iterator[UnitResult]:
    """Process tasks on a pool of Ray actors, yielding results as tasks finish."""
    import ray

    ensure_ray(recipe.runtime.ray_address)
    n_workers = max(1, min(ray_workers(recipe), len(tasks)))
    worker_cls = _worker_class()
    recipe_dict = recipe.to_dict()
    actors = [worker_cls.remote(recipe_dict, recipe.source) for _ in range(n_workers)]
    pending: dict[Any, Any] = {}
    queue = list(reversed(tasks))
    idle = list(actors)
    try:
        while queue or pending:
            while idle and queue:
                actor = idle.pop()
                pending[actor.run.remote(queue.pop())] = actor
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            actor = pending.pop(ref)
            idle.append(actor)
            yield ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        for actor in actors:
            ray.kill(actor)


def ray_workers(recipe: Recipe) -> int:
    """Workers to use: runtime.num_workers, else one per CPU of the cluster."""
    import ray

    return recipe.runtime.num_workers or int(ray.cluster_resources().get("CPU", 1))


def executor_for(recipe: Recipe) -> Callable[[Recipe, list[Task]], Iterator[UnitResult]]:
    return run_ray if recipe.runtime.executor == "ray" else run_local


class RayContext:
    """A GlobalContext whose `map` runs Ray tasks (retried if a worker dies)."""

    def __init__(self, work_dir: str, num_partitions: int) -> None:
        import fsspec

        self.fs, self.work_dir = fsspec.core.url_to_fs(work_dir)
        self.fs.makedirs(self.work_dir, exist_ok=True)
        self.num_partitions = num_partitions

    def map(self, fn: Callable[[Any], Any], items: Any) -> list[Any]:
        import ray

        remote = ray.remote(num_cpus=1, max_retries=3)(_call)
        return ray.get([remote.remote(fn, item) for item in items])


def _call(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


def global_context(recipe: Recipe, work_dir: str) -> GlobalContext:
    """The context a global stage's prepare() runs in, matching the executor."""
    if recipe.runtime.executor == "ray":
        ensure_ray(recipe.runtime.ray_address)
        parts = recipe.runtime.num_partitions or max(4, 2 * ray_workers(recipe))
        return RayContext(work_dir, parts)
    return LocalContext(work_dir, recipe.runtime.num_partitions or 4)
