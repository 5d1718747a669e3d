"""Python's cyclic garbage collector, set for a process that runs a job's tasks.

A chain's stages allocate containers by the million (word lists, tuples, dicts of scores): with
CPython's thresholds (700, 10, 10) a young pass runs every 700 net allocations and, every ~100
young passes, a full pass walks every object of the process, the imported libraries and the
loaded models included. On the FineWeb filters that is 3-4% of a worker's CPU (docs/benchmarks.md,
"Outside the stages, round four"). While a job is set up, young passes run every
YOUNG_THRESHOLD allocations, and what exists once its stages are set up (modules, models) is
frozen out of the full passes (gc.freeze). Cycles are still found and freed; only less often,
and never among objects that live as long as the job. Nothing a stage computes depends on it.
"""

from __future__ import annotations

import gc

# Net container allocations between two young passes while a job runs (CPython's default: 700).
YOUNG_THRESHOLD = 10_000


class JobCollector:
    """The collector settings while a job's stages are set up in this process: `set_up()` after
    stages are set up (again after more are), `stop()` when they close (the process's own
    threshold back, the frozen objects scanned again)."""

    def __init__(self) -> None:
        self._saved: tuple[int, int, int] | None = None

    def set_up(self) -> None:
        """Young passes every YOUNG_THRESHOLD allocations; every object there is now kept out of
        later passes (no collection first: a full pass over a worker's objects costs about what
        freezing saves on a small run; garbage left by set-up stays until the chain closes)."""
        if self._saved is None:
            self._saved = gc.get_threshold()
            gc.set_threshold(YOUNG_THRESHOLD, *self._saved[1:])
        gc.freeze()

    def stop(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            gc.unfreeze()
            self._saved = None
