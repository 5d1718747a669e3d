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
from pipeline.io.base import InputUnit
from pipeline.runner.unit import StageChain, process_unit

log = logging.getLogger(__name__)

UnitResult = dict[str, Any]


def run_local(recipe: Recipe, units: list[InputUnit]) -> Iterator[UnitResult]:
    """Process units one after another in this process."""
    chain = StageChain(recipe)
    try:
        for unit in units:
            yield process_unit(recipe, chain, unit)
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

        def run(self, unit: InputUnit) -> UnitResult:
            node = ray.get_runtime_context().get_node_id()
            return process_unit(self.recipe, self.chain, unit, worker=node)

    return UnitWorker


def run_ray(recipe: Recipe, units: list[InputUnit]) -> Iterator[UnitResult]:
    """Process units on a pool of Ray actors, yielding results as units finish."""
    import ray

    ensure_ray(recipe.runtime.ray_address)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    n_workers = max(1, min(recipe.runtime.num_workers or cpus, len(units)))
    worker_cls = _worker_class()
    recipe_dict = recipe.to_dict()
    actors = [worker_cls.remote(recipe_dict, recipe.source) for _ in range(n_workers)]
    pending: dict[Any, tuple[Any, InputUnit]] = {}
    queue = list(reversed(units))
    idle = list(actors)
    try:
        while queue or pending:
            while idle and queue:
                actor = idle.pop()
                unit = queue.pop()
                pending[actor.run.remote(unit)] = (actor, unit)
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            actor, unit = pending.pop(ref)
            idle.append(actor)
            yield ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        for actor in actors:
            ray.kill(actor)


def executor_for(recipe: Recipe) -> Callable[[Recipe, list[InputUnit]], Iterator[UnitResult]]:
    return run_ray if recipe.runtime.executor == "ray" else run_local
