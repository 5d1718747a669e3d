"""CPU time per phase inside a run's processes, for scripts/bench_outside.py (issue 24).

On PYTHONPATH (this folder) with $CURATE_PHASE_PROBE set to a folder, every Python process
that runs the pipeline's units (a Ray worker, a pool worker, the driver of an `executor: local`
run) wraps the phases of pipeline.runner.unit.process_task when that module is imported:
reading (and, inside it, the WARC record conversion and the decoding to UTF-8), each stage's
`score_isolated` (the stage's own work), the rest of `kernel.run_stage` (deciding, splitting,
accounting, histograms, examples: the kernel), writing kept and rejected rows, committing
(closing the writers) and the completion marker, and the cyclic garbage collector's passes
(inside whichever phase triggered them). Each phase's main-thread CPU and
process CPU are added up and written, after every task, to $CURATE_PHASE_PROBE/PID.json.
Other processes (Ray's daemons, extractor sandboxes) are left alone: only imported modules
are patched, and only in a process whose command line is a worker's or a bench driver's.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

OUT = os.environ.get("CURATE_PHASE_PROBE")
ARGV = " ".join(sys.orig_argv)
WANTED = ("default_worker.py", "scripts.bench.ours_driver", "multiprocessing", "pipeline.cli")
TOTALS: dict[str, list[float]] = {}  # phase -> [thread CPU s, process CPU s, sys s, faults, calls]


def now() -> tuple[float, float, float, int]:
    """(this thread's CPU s, the process's CPU s, this thread's system CPU s, its minor page
    faults). The CPU times are the precise clocks; getrusage's split into user and system time
    is sampled (approximate over short spans, fair over many)."""
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return time.thread_time(), time.process_time(), ru.ru_stime, ru.ru_minflt


def _add(phase: str, start: tuple[float, float, float, int]) -> None:
    end = now()
    row = TOTALS.setdefault(phase, [0.0, 0.0, 0.0, 0, 0])
    for i in range(4):
        row[i] += end[i] - start[i]
    row[4] += 1


def timed(phase: str | Callable[..., str], fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with its CPU added to `phase` (or to phase(*args) when callable)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = now()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(phase(*args, **kwargs) if callable(phase) else phase, start)

    return wrapper


def timed_iter(phase: str, gen: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """A generator function whose every step's CPU is added to `phase`."""

    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        it = gen(*args, **kwargs)
        while True:
            start = now()
            try:
                item = next(it)
            except StopIteration:
                _add(phase, start)
                return
            _add(phase, start)
            yield item

    return wrapper


_GC_START: list[tuple[float, float, float, int]] = []


def _gc_callback(phase: str, info: dict[str, int]) -> None:
    """Time the cyclic garbage collector's passes, per generation."""
    if phase == "start":
        _GC_START[:] = [now()]
    elif _GC_START:
        _add(f"gc generation {info['generation']}", _GC_START[0])


def dump() -> None:
    """Write this process's totals to $CURATE_PHASE_PROBE/PID.json (atomically)."""
    path = os.path.join(OUT or ".", f"{os.getpid()}.json")
    payload = {"argv": ARGV, "thread_s": time.thread_time(), "process_s": time.process_time()}
    payload["phases"] = {
        k: {"thread_s": v[0], "process_s": v[1], "sys_s": v[2], "minflt": v[3], "calls": v[4]}
        for k, v in TOTALS.items()
    }
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f)
    os.replace(path + ".tmp", path)


def patch_unit(unit: Any) -> None:
    """Wrap the phases of process_task (pipeline.runner.unit and what it calls)."""
    from pipeline.io import warc
    from pipeline.runner import kernel

    warc.WarcReader._convert = timed("read: convert record", warc.WarcReader._convert)
    warc.html_to_utf8 = timed("read: decode to UTF-8", warc.html_to_utf8)
    warc.BatchBuilder.flush = timed("read: build Arrow batch", warc.BatchBuilder.flush)
    unit.read_unit = timed_iter("read", unit.read_unit)
    kernel.score_isolated = timed(
        lambda stage, *a, **k: f"stage {stage.name}", kernel.score_isolated
    )
    unit.kernel.run_stage = timed("run_stage (stages + kernel)", kernel.run_stage)
    unit.ShardOutputs.keep = timed("write kept", unit.ShardOutputs.keep)
    unit.ShardOutputs.reject = timed("write rejected", unit.ShardOutputs.reject)
    unit.ShardOutputs.commit = timed("commit (close writers)", unit.ShardOutputs.commit)
    unit.ShardOutputs.__post_init__ = timed("open writers", unit.ShardOutputs.__post_init__)
    unit.finish_task = timed("marker", unit.finish_task)
    unit.StageChain.setup = timed("stage setup", unit.StageChain.setup)
    task = timed("process_task", unit.process_task)

    def process_task(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        finally:
            dump()

    unit.process_task = process_task  # executors imports it from here after this runs


class _Finder(importlib.abc.MetaPathFinder):
    """Patches pipeline.runner.unit right after it is first imported."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "pipeline.runner.unit":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            patch_unit(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if OUT and any(w in ARGV for w in WANTED):
    import gc

    sys.meta_path.insert(0, _Finder())
    gc.callbacks.append(_gc_callback)
