"""The global-stage contract: stages that must see the whole corpus (dedup, D4, statistics).

A global stage runs in two parts:

1. `prepare(ctx, shards)`: reads every input shard (Parquet files written by the stages before it)
   and computes what it needs (hash partitions, signatures, clusters), in parallel phases through
   `ctx.map`, writing intermediate files under `ctx.work_dir`. No phase may need the whole corpus
   in one process's memory unless its bound is stated (e.g. bytes per document).
2. Per shard, like a map stage: `score_shard(ctx, shard, table)` adds the stage's columns (and may
   rewrite `text`, e.g. line or substring dedup), then `keep(table)` returns reasons from the
   stored columns and the thresholds, so a new threshold re-applies without recomputing.

The runner does the accounting and writing, exactly as for map stages. Global stages know nothing
of Ray: `ctx.map` is backed by Ray tasks or by a local loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io.writer import output_fs
from pipeline.stages.base import StageConfig, split_by_reason
from pipeline.stages.contract import Declared, StageKind

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ShardRef:
    """One input shard of a global stage: the unit index and its Parquet file (None if empty)."""

    index: int
    path: str | None
    num_rows: int

    def read(self, fs: fsspec.AbstractFileSystem, columns: list[str] | None = None) -> pa.Table:
        """The whole shard (shards are bounded by their input unit)."""
        if self.path is None:
            return pa.table({})
        with fs.open(self.path, "rb") as f:
            return pq.read_table(f, columns=columns)

    def iter_batches(
        self,
        fs: fsspec.AbstractFileSystem,
        columns: list[str] | None = None,
        batch_size: int = 8192,
    ) -> Iterator[pa.RecordBatch]:
        """The shard in batches, for phases that stream."""
        if self.path is None:
            return
        with fs.open(self.path, "rb") as f:
            yield from pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns)


class GlobalContext(Protocol):
    """What the runner gives a global stage."""

    fs: fsspec.AbstractFileSystem
    work_dir: str  # this stage's private directory for intermediate files (created, empty)
    num_partitions: int  # suggested hash-partition count for shuffles (>= number of workers)

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], *, num_gpus: float | None = 0
    ) -> list[R]:
        """Run `fn` over `items` in parallel (Ray tasks or a local loop), results in order.

        `fn` must be picklable: a module-level function or a functools.partial of one. The
        runner records each task's result as it finishes and a rerun of an interrupted prepare
        reuses it (runner/resumable.py), so results must be plain data (builtins, numpy arrays
        and scalars), files a task writes must be written atomically (io/atomic.py) and be a
        function of its inputs, and no later task may rewrite them (an iterating phase names
        each round's files apart).
        `num_gpus`: GPUs each call reserves on a Ray cluster (fractions share one); None = one
        when the cluster has GPUs, else none. A local loop runs with whatever the process sees.
        """
        ...


class LocalContext:
    """A GlobalContext that runs everything in this process (tests, `executor: local`)."""

    def __init__(self, work_dir: str, num_partitions: int = 4) -> None:
        self.fs, self.work_dir = output_fs(work_dir)
        self.fs.makedirs(self.work_dir, exist_ok=True)
        self.num_partitions = num_partitions

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], *, num_gpus: float | None = 0
    ) -> list[R]:
        return [fn(item) for item in items]


class GlobalStage(Declared, ABC):
    """A stage over the whole corpus. Subclasses set config_cls, their declaration (see
    pipeline.stages.contract) and threshold_keys."""

    kind: ClassVar[StageKind] = "global"
    config_cls: ClassVar[type[StageConfig]]
    threshold_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: StageConfig) -> None:
        self.config = config

    @abstractmethod
    def prepare(self, ctx: GlobalContext, shards: list[ShardRef]) -> dict[str, Any]:
        """Compute the global state under ctx.work_dir; return a small JSON-able summary for
        the report (e.g. number of clusters, the LSH S-curve)."""

    def prepare_inputs(self) -> Any:
        """What prepare() reads besides its shards and config (e.g. benchmark files), as a
        JSON-able identity: when it changes, an interrupted prepare starts over instead of
        resuming its finished tasks. None: nothing else."""
        return None

    @abstractmethod
    def score_shard(self, ctx: GlobalContext, shard: ShardRef, table: pa.Table) -> pa.Table:
        """`table` (the whole shard, rows in file order) with this stage's columns added."""

    @abstractmethod
    def keep(self, table: pa.Table) -> pa.Array:
        """Rejection reasons aligned with `table`; null means keep."""

    def apply_shard(
        self, ctx: GlobalContext, shard: ShardRef, table: pa.Table
    ) -> tuple[pa.Table, pa.Table]:
        """Score then decide for one shard: (kept, rejected-with-reason)."""
        scored = self.score_shard(ctx, shard, table)
        return split_by_reason(scored, self.keep(scored))
