"""Runs one of our runs in a fresh process (so it is measured like the peer's): a JSON spec.

    .venv/bin/python -m scripts.bench.ours_driver SPEC.json

Modes: `run` (`run_recipe`, the `curate run` code path, with the spec's executor: `auto` and
`local` exactly as `curate run` runs them) and `pool`
(the same RecipeJob / process_task over the same units on a plain
concurrent.futures.ProcessPoolExecutor, for the orchestration-overhead workload). A Ray run
with `executor: ray` starts its own embedded Ray under the spec's `ray_tmp` first (never a
cluster found on the machine), or, with `ray_tmp` null, leaves starting it to the run;
`executor: auto` leaves starting Ray to the run, as a user's does.
Prints one JSON line at the end.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from pipeline.config import Recipe, recipe_from_dict

_JOB: Any = None


def _init_worker(job: Any) -> None:
    global _JOB
    _JOB = job
    _JOB.setup()


def _run_task(task: Any) -> dict[str, Any]:
    return _JOB.run(task, "pool")


def start_ray(workers: int, temp_dir: str) -> float:
    """An embedded Ray with `workers` CPUs and its own temp dir; returns the seconds it took."""
    import logging

    import ray

    t0 = time.perf_counter()
    ray.init(
        num_cpus=workers,
        include_dashboard=False,
        logging_level=logging.WARNING,
        object_store_memory=512 * 2**20,
        _temp_dir=temp_dir,
    )
    return time.perf_counter() - t0


def run(recipe: Recipe, spec: dict[str, Any]) -> dict[str, Any]:
    from pipeline.runner.run import run_recipe

    own_ray = spec["executor"] == "ray" and spec.get("ray_tmp")  # None: run_recipe starts it
    ray_init = start_ray(spec["workers"], spec["ray_tmp"]) if own_ray else 0.0
    t0 = time.perf_counter()
    result = run_recipe(recipe, overwrite=True)
    stats = result.stats
    return {
        "ray_init_s": ray_init,
        "run_s": time.perf_counter() - t0,
        "executor": result.executor,
        "documents": stats["reader"]["documents"],
        "records": stats["reader"]["records"],
        "units": stats["inputs"]["units"],
        "stages": {s["name"]: s["docs_kept"] for s in stats["stages"]},
        "stage_cpu_s": {s["name"]: s["cpu_s"] for s in stats["stages"]},
        "stage_wall_s": {s["name"]: s["wall_s"] for s in stats["stages"]},
        "output_docs": stats["output"]["documents"],
    }


def pool(recipe: Recipe, spec: dict[str, Any]) -> dict[str, Any]:
    """Every unit through process_task on a spawn ProcessPoolExecutor (one job per process)."""
    from pipeline.io.sources import plan_units
    from pipeline.io.writer import output_fs
    from pipeline.runner.executors import RecipeJob
    from pipeline.runner.run import claim_output

    t0 = time.perf_counter()
    units = plan_units(recipe.input)
    fs, root = output_fs(recipe.output.path)
    claim_output(fs, root, recipe, recipe.config_hash(), overwrite=True)
    docs = out = 0
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        spec["workers"], mp_context=ctx, initializer=_init_worker, initargs=(RecipeJob(recipe),)
    ) as ex:
        for fut in as_completed([ex.submit(_run_task, u) for u in units]):
            result = fut.result()
            docs += result["reader"]["documents"]
            out += result["output_docs"]
    return {
        "run_s": time.perf_counter() - t0,
        "documents": docs,
        "units": len(units),
        "output_docs": out,
    }


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    recipe = recipe_from_dict(spec["recipe"])
    result = pool(recipe, spec) if spec["mode"] == "pool" else run(recipe, spec)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
