"""Progress: a bar on a terminal, plain periodic log lines otherwise.

One Progress per segment of a run: files (or shards) finished, bytes read against the
segment's total bytes (the input files as stored for the first segment, the shards' payload
after), documents in and kept, docs/s and an ETA. Rates count from the first document, not from
start-up: an in-process run reports each batch as it is read; a Ray result carries its task's
wall time, so the first document's time is known when the first task ends. A global stage's
prepare phases are logged as they start and end (`PhaseLog`).
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

log = logging.getLogger("pipeline.progress")

LOG_EVERY_S = 10.0
MIN_RATE_S = 0.5  # no rate before this much time since the first document (it would be noise)
T = TypeVar("T")
R = TypeVar("R")


def format_eta(seconds: float | None) -> str:
    """'1:05' (m:ss) or '1:02:05' for an ETA in seconds; '?' before there is a rate."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def byte_fraction(done: int, total: int) -> str:
    """'1.2/4.9 MB': both in the unit (kB, MB, GB) that suits the total."""
    for scale, unit in ((1e9, "GB"), (1e6, "MB")):
        if total >= scale:
            return f"{done / scale:.1f}/{total / scale:.1f} {unit}"
    return f"{done / 1e3:.1f}/{total / 1e3:.1f} kB"


class Progress:
    """Counts a segment's finished tasks, bytes and documents; renders with rich on a TTY
    (`mode` bar), as log lines every LOG_EVERY_S (`log`), or not at all (`off`)."""

    def __init__(
        self,
        label: str,
        total: int,
        total_bytes: int,
        *,
        done: int = 0,
        done_bytes: int = 0,
        what: str = "files",
        mode: str = "auto",
    ) -> None:
        self.label = label
        self.what = what
        self.total, self.done = total, done
        self.total_bytes, self.done_bytes = total_bytes, done_bytes
        self.bytes_now = 0  # bytes of tasks finished in this invocation (the ETA's rate)
        self.docs_in = self.docs_out = 0
        self._reading = 0  # documents read by the task in progress (in-process), not yet finished
        self.first_doc: float | None = None  # perf_counter time of the first document
        self._last_log = 0.0
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode
        self._bar: Any = None
        if mode == "bar":
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[summary]}"),
                TimeElapsedColumn(),
                transient=False,
            )
            self._task = self._bar.add_task(
                label, total=max(1, total_bytes), completed=done_bytes, summary=self.summary()
            )
            self._bar.start()
        elif mode == "log" and done:
            log.info("%s: resuming, %d of %d %s already finished", label, done, total, what)

    def read(self, documents: int) -> None:
        """An in-process task read a batch of `documents`."""
        if self.first_doc is None and documents:
            self.first_doc = time.perf_counter()
        self._reading += documents
        self._show(final=False)

    def advance(self, result: dict[str, Any], size: int) -> None:
        """A task finished with `result` (its marker); `size`: its bytes."""
        now = time.perf_counter()
        started = now - float(result.get("wall_s") or 0.0)
        self.first_doc = started if self.first_doc is None else min(self.first_doc, started)
        self.done += 1
        self.done_bytes += size
        self.bytes_now += size
        reader = result["reader"]
        self.docs_in += reader["documents"] if reader is not None else result["input_docs"]
        self.docs_out += result["output_docs"]
        self._reading = 0
        self._show(final=self.done == self.total)

    def rate(self) -> float | None:
        """Documents per second since the first document (None within MIN_RATE_S of it, unless
        every task is finished)."""
        if self.first_doc is None:
            return None
        elapsed = time.perf_counter() - self.first_doc
        if elapsed < MIN_RATE_S and self.done < self.total:
            return None
        return (self.docs_in + self._reading) / max(1e-3, elapsed)

    def eta(self) -> float | None:
        """Seconds left at the byte rate since the first document (None before a task ends)."""
        if self.first_doc is None or self.bytes_now <= 0:
            return None
        if self.done >= self.total:
            return 0.0
        elapsed = max(1e-6, time.perf_counter() - self.first_doc)
        return max(0, self.total_bytes - self.done_bytes) * elapsed / self.bytes_now

    def summary(self) -> str:
        """'3/9 files, 1.2/4.9 MB, 94 docs in, 40 kept, 7 docs/s, ETA 0:12'."""
        rate = self.rate()
        return (
            f"{self.done}/{self.total} {self.what}, {byte_fraction(self.done_bytes, self.total_bytes)}, "
            f"{self.docs_in + self._reading:,} docs in, "
            f"{self.docs_out:,} kept, {'?' if rate is None else f'{rate:.0f}'} docs/s, "
            f"ETA {format_eta(self.eta())}"
        )

    def _show(self, final: bool) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done_bytes, summary=self.summary())
        elif self.mode == "log":
            now = time.perf_counter()
            if final or now - self._last_log >= LOG_EVERY_S:
                self._last_log = now
                log.info("%s: %s", self.label, self.summary())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def phase_name(fn: Callable[..., Any]) -> str:
    """A prepare phase's name from its task function: `_signature_task` -> `signature`."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__name__", type(fn).__name__)
    return name.strip("_").removesuffix("_task") or name


class PhaseLog:
    """A GlobalContext that logs each `map` of a global stage's prepare (its phase) as it starts
    and ends, with its task count and wall time, around the context it wraps."""

    def __init__(self, inner: Any, stage: str) -> None:
        self.inner = inner
        self.stage = stage
        self.fs = inner.fs
        self.work_dir = inner.work_dir
        self.num_partitions = inner.num_partitions
        self.phases: list[tuple[str, int, float]] = []  # (name, tasks, wall s), in order

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], *, num_gpus: float | None = 0
    ) -> list[R]:
        name = phase_name(fn)
        n = len(self.phases) + 1
        log.info("global stage %s: phase %d (%s), %d task(s)", self.stage, n, name, len(items))
        started = time.perf_counter()
        out = self.inner.map(fn, items, num_gpus=num_gpus)
        wall = time.perf_counter() - started
        self.phases.append((name, len(items), wall))
        log.info("global stage %s: phase %d (%s) done in %.2f s", self.stage, n, name, wall)
        return out
