"""`curate` that SIGKILLs itself at a chosen point of a run, for the crash tests.

    python -m tests.faults.killer PHASE N CURATE-ARGS...

PHASE is `seg00`, `seg01`, ... (a segment's tasks), `prepare:<stage label>` (a global stage's
prepare) or `final` (stats.json and report.md); the process kills itself with SIGKILL (no cleanup,
no atexit, like `kill -9` or the OOM killer) at the N-th event of that phase. Events are the
places where a crash can leave half-done work: before each row group is written, before a shard
is renamed into place, before a completion marker is written, before each item of a global
stage's map phase, before stats.json / report.md. PHASE `count` runs to completion and prints
the events per phase as JSON on the last line of stdout.

With the `local` executor everything happens in this process, so every kill point is exactly
where the event says. With `ray`, the events left in the driver are the global stages' map
phases (on the run's actors: once a phase's first call has returned, its other calls running or
queued at the actors; as Ray tasks: once all are submitted) and the final writes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

# Global stages under test; registered here too in case the registry does not list them yet.
GLOBAL_STAGES = {
    "exact_dedup": "pipeline.dedup.exact:ExactDedupStage",
    "minhash_dedup": "pipeline.dedup.minhash:MinHashDedupStage",
}


def register_global_stages() -> None:
    """Make the dedup stages usable in recipes (a no-op once the registry has them)."""
    from pipeline import config, registry

    missing = {k: v for k, v in GLOBAL_STAGES.items() if k not in registry.STAGES}
    if missing:
        registry.STAGES.update(missing)
        registry.stage_class.cache_clear()
        config._recipe_model.cache_clear()


class Killer:
    """Counts events per phase; kills the process at event `at` of phase `target`."""

    def __init__(self, target: str, at: int) -> None:
        self.target = target
        self.at = at
        self.phase = "start"
        self.events: Counter[str] = Counter()

    def event(self) -> None:
        self.events[self.phase] += 1
        if self.phase == self.target and self.events[self.phase] == self.at:
            os.kill(os.getpid(), signal.SIGKILL)

    def before(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.event()
            return fn(*args, **kwargs)

        return wrapper

    def in_phase(self, fn: Callable[..., Any], phase: Callable[..., str]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.phase = phase(*args, **kwargs)
            return fn(*args, **kwargs)

        return wrapper


def instrument(killer: Killer, setattr_: Callable[[Any, str, Any], None] = setattr) -> None:
    """Patch the runner's commit points and phase boundaries to report to `killer`."""
    from pipeline.io import writer
    from pipeline.runner import executors, run, unit
    from pipeline.stages import global_base

    def task_phase(recipe: Any, chain: Any, task: Any, worker: str = "local", **_: Any) -> str:
        return f"seg{getattr(task, 'segment', 0):02d}"

    def prepare_phase(
        recipe: Any, fs: Any, root: str, segment: Any, label: str, shards: Any, **_: Any
    ) -> str:
        return f"prepare:{label}"

    setattr_(executors, "process_task", killer.in_phase(unit.process_task, task_phase))
    setattr_(run, "_prepare_global", killer.in_phase(run._prepare_global, prepare_phase))
    setattr_(writer.ShardWriter, "_write_group", killer.before(writer.ShardWriter._write_group))
    setattr_(writer.ShardWriter, "close", killer.before(writer.ShardWriter.close))
    setattr_(unit, "write_marker", killer.before(unit.write_marker))
    setattr_(run, "write_marker", killer.before(run.write_marker))

    def final(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(fs: Any, path: str, *args: Any, **kwargs: Any) -> Any:
            if path.endswith(("/stats.json", "/report.md")):  # not the run record at the start
                killer.phase = "final"
            killer.event()
            return fn(fs, path, *args, **kwargs)

        return wrapper

    setattr_(run, "_write_json", final(run._write_json))
    setattr_(run, "write_report", final(run.write_report))

    real_map = global_base.LocalContext.map

    def map_(ctx: Any, fn: Callable[[Any], Any], items: Any, **options: Any) -> list[Any]:
        def item(x: Any) -> Any:
            killer.event()
            return fn(x)

        return real_map(ctx, item, items, **options)

    setattr_(global_base.LocalContext, "map", map_)

    def ray_map(ctx: Any, fn: Callable[[Any], Any], items: Any, **options: Any) -> list[Any]:
        """RayContext.map without the run's actors (Ray tasks): one event once every task is
        submitted (all in flight)."""
        if ctx.pool is not None:
            return real_ray_map(ctx, fn, items, **options)
        import ray

        remote = ray.remote(num_cpus=1, max_retries=3)(executors._call)
        refs = [remote.remote(fn, item) for item in items]
        killer.event()
        return ray.get(refs)

    real_ray_map = executors.RayContext.map
    setattr_(executors.RayContext, "map", ray_map)

    def pool_dispatch(pool: Any, method: str, *args: Any) -> Iterator[tuple[int, Any]]:
        """RayPool._dispatch with one event per prepare phase (`call`) once its first call has
        returned: the phase's other calls are then running or queued at the actors."""
        first = method == "call"
        for found in real_dispatch(pool, method, *args):
            if first:
                first = False
                killer.event()
            yield found

    real_dispatch = executors.RayPool._dispatch
    setattr_(executors.RayPool, "_dispatch", pool_dispatch)


def main(argv: list[str]) -> int:
    target, at, curate_args = argv[0], int(argv[1]), argv[2:]
    register_global_stages()
    killer = Killer(target, at)
    instrument(killer)
    from pipeline.cli import main as curate

    code = curate(curate_args)
    if target == "count":
        print(json.dumps(dict(killer.events)))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
