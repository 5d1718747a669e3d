"""Jobs for executor fault tests (pickled by value to Ray workers)."""

from __future__ import annotations

import time
from typing import Any


class FailingJob:
    """Task 0 raises; the others take a while, so they are still pending when it fails."""

    def setup(self) -> None:
        pass

    def run(self, task: Any, worker: str) -> dict[str, Any]:
        if task == 0:
            raise RuntimeError("unit 0 is broken")
        time.sleep(3)
        return {"unit": {"index": task}}

    def close(self) -> None:
        pass
