"""Progress: a bar on a terminal, plain periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("pipeline.progress")

LOG_EVERY_S = 10.0


class Progress:
    """Counts finished units and documents; renders with rich on a TTY, logs otherwise."""

    def __init__(self, total: int, done: int = 0, mode: str = "auto") -> None:
        self.total = total
        self.done = done
        self.docs_in = 0
        self.docs_out = 0
        self.started = time.perf_counter()
        self._last_log = 0.0
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode
        self._bar: Any = None
        if mode == "bar":
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]curate"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("units  {task.fields[docs]}"),
                TimeElapsedColumn(),
                transient=False,
            )
            self._task = self._bar.add_task("run", total=total, completed=done, docs="")
            self._bar.start()
        elif mode == "log" and done:
            log.info("resuming: %d of %d units already finished", done, total)

    def advance(self, result: dict[str, Any]) -> None:
        self.done += 1
        reader = result["reader"]
        self.docs_in += reader["documents"] if reader is not None else result["input_docs"]
        self.docs_out += result["output_docs"]
        rate = self.docs_in / max(1e-9, time.perf_counter() - self.started)
        summary = f"{self.docs_in} docs in, {self.docs_out} kept, {rate:.0f} docs/s"
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, docs=summary)
        elif self.mode == "log":
            now = time.perf_counter()
            if now - self._last_log >= LOG_EVERY_S or self.done == self.total:
                self._last_log = now
                log.info("units %d/%d: %s", self.done, self.total, summary)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
