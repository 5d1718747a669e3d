"""The map-stage contract: score(batch) adds measurement columns, keep(batch) decides.

Scores and thresholds are kept apart so an ablation can re-apply other thresholds to stored
score columns without recomputing them. Stages are plain Python over `pyarrow.Table` batches and
know nothing of Ray.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ConfigDict, Field

from pipeline.config_model import ConfigModel
from pipeline.schema import REASON
from pipeline.stages.contract import Declared, StageKind


class StageConfig(ConfigModel):
    """Base of every stage's config. Subclasses declare `stage: Literal["name"]` and their keys."""

    model_config = ConfigDict(use_attribute_docstrings=True)


class TextStageConfig(StageConfig):
    """Base of the configs of stages that measure `text`: the runner's kernel rejects a document
    longer than `max_chars` as `<stage>_too_large` before `score`, bounding time and memory."""

    # Documents with more characters than this are rejected as `<stage>_too_large` unscored.
    max_chars: int = Field(default=10_000_000, gt=0)


class Stage(Declared, ABC):
    """A per-document stage.

    Subclasses set `config_cls` (whose `stage` field names the stage), their declaration
    (`requires`, `score_columns`, `drops`, `resources`: see pipeline.stages.contract) and
    `threshold_keys` (config keys used only by `keep`, never by `score`), implement `score` and
    `keep`, and load heavy resources in `setup`, which the runner calls once per worker process
    before the first batch.
    """

    kind: ClassVar[StageKind] = "map"
    config_cls: ClassVar[type[StageConfig]]
    threshold_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: StageConfig) -> None:
        self.config = config

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load models or other heavy state. Called once per worker before the first batch."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (subprocesses, files). Called when the worker is done."""

    def helper_cpu_s(self) -> float:
        """CPU seconds so far of processes this stage runs work in (added to its cpu_s)."""
        return 0.0

    def take_metrics(self) -> dict[str, int]:
        """Counters since the last call (e.g. pages near the time limit); the runner sums them
        per stage into stats.json under `metrics`. Default: none."""
        return {}

    def take_error(self) -> str | None:
        """The first per-document failure message since the last call, for a stage that turns
        failures into its own `<name>_error` rejections (the runner names it when too many
        documents fail). Default: none."""
        return None

    def warnings(self) -> list[str]:
        """One-line warnings from set-up (e.g. a fallback taken); reported once per stage in
        the log and in stats.json under `warnings`. Default: none."""
        return []

    @abstractmethod
    def score(self, batch: pa.Table) -> pa.Table:
        """Return `batch` with this stage's measurement (or transformed) columns added."""

    @abstractmethod
    def keep(self, batch: pa.Table) -> pa.Array:
        """Return a string array of rejection reasons aligned with `batch`; null means keep."""

    def apply(self, batch: pa.Table) -> tuple[pa.Table, pa.Table]:
        """Score then decide: returns (kept, rejected-with-`reason`-column)."""
        scored = self.score(batch)
        reasons = self.keep(scored)
        return split_by_reason(scored, reasons)


def split_by_reason(batch: pa.Table, reasons: pa.Array) -> tuple[pa.Table, pa.Table]:
    """Split a batch into kept rows (null reason) and rejected rows (with a `reason` column)."""
    if len(reasons) != batch.num_rows:
        raise ValueError(f"keep() returned {len(reasons)} reasons for {batch.num_rows} rows")
    is_kept = pc.is_null(reasons)
    kept = batch.filter(is_kept)
    rejected_mask = pc.invert(is_kept)
    rejected = batch.filter(rejected_mask).append_column(REASON, reasons.filter(rejected_mask))
    return kept, rejected


def reasons_from_checks(n: int, checks: list[tuple[np.ndarray, str]]) -> pa.Array:
    """Build a reasons array from ordered (failed-mask, reason) checks; the first failure wins."""
    out = np.full(n, None, dtype=object)
    undecided = np.ones(n, dtype=bool)
    for failed, reason in checks:
        hit = undecided & np.asarray(failed, dtype=bool)
        out[hit] = reason
        undecided &= ~hit
    return pa.array(out, type=pa.string())


def column_as_list(batch: pa.Table, name: str) -> list[Any]:
    """A column as a Python list (None for nulls)."""
    return batch.column(name).to_pylist()
