"""Units of work, start to finish: read or load -> stages -> write shards -> completion marker.

A recipe's stages split into segments: segment 0 reads the input units and runs map stages;
each later segment opens with a global stage (dedup, ...) whose `prepare` the driver has already
run over all shards, then applies it shard by shard followed by its map stages. Every segment
writes one shard per input unit (`_work/segNN/` between segments, `data/` at the end) and a
completion marker, so a rerun skips finished work.

Pure Python, no Ray: the executors call `process_task` in a Ray actor or in-process. A shard's
output depends only on the unit and the recipe, so a rerun after a crash, or a run on another
cluster, produces the same bytes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.config import Recipe, stage_labels_of
from pipeline.errors import AccountingError
from pipeline.io.atomic import write_json_atomic
from pipeline.io.base import InputUnit, ReaderStats
from pipeline.io.dolma_jsonl import JsonlShardWriter
from pipeline.io.output_shards import output_writer, select_columns, shard_suffix
from pipeline.io.sources import RUN_RECORD_DIR, read_unit
from pipeline.io.writer import ShardWriter, output_fs, output_url
from pipeline.registry import stage_class
from pipeline.runner import kernel
from pipeline.runner.accounting import StageStats, check_segment, task_where
from pipeline.runner.garbage import JobCollector
from pipeline.schema import HTML
from pipeline.stages.base import Stage
from pipeline.stages.global_base import GlobalStage, LocalContext, ShardRef

log = logging.getLogger(__name__)

DATA_DIR = "data"
REJECTED_DIR = "rejected"
RUN_DIR = RUN_RECORD_DIR
UNITS_DIR = f"{RUN_DIR}/units"
GLOBAL_DIR = f"{RUN_DIR}/global"
WORK_DIR = "_work"


def shard_name(index: int) -> str:
    return f"part-{index:05d}"


def stage_labels(recipe: Recipe) -> list[str]:
    """Stable labels for the stages of a recipe: the name, suffixed when a name repeats."""
    return stage_labels_of([cfg.stage for cfg in recipe.stages])  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Segment:
    """Stage positions of one segment: an optional opening global stage, then map stages."""

    index: int
    global_stage: int | None
    map_stages: tuple[int, ...]

    @property
    def positions(self) -> tuple[int, ...]:
        head = () if self.global_stage is None else (self.global_stage,)
        return head + self.map_stages


def plan_segments(recipe: Recipe) -> list[Segment]:
    """Split the stage list at every global stage."""
    segments: list[Segment] = []
    opener: int | None = None
    maps: list[int] = []
    for pos, cfg in enumerate(recipe.stages):
        if stage_class(cfg.stage).kind == "global":  # type: ignore[attr-defined]
            segments.append(Segment(len(segments), opener, tuple(maps)))
            opener, maps = pos, []
        else:
            maps.append(pos)
    segments.append(Segment(len(segments), opener, tuple(maps)))
    return segments


def marker_path(root: str, segment: int, index: int) -> str:
    return f"{root}/{UNITS_DIR}/seg{segment:02d}/{shard_name(index)}.json"


def global_work_dir(root: str, segment: int, label: str) -> str:
    return f"{root}/{WORK_DIR}/global-{segment:02d}-{label}"


def segment_output(root: str, segment: int, n_segments: int, index: int, suffix: str) -> str:
    """Where a segment writes a unit's kept documents: data/ for the last (named with the output
    format's `suffix`), else _work/ (Parquet)."""
    if segment == n_segments - 1:
        return f"{root}/{DATA_DIR}/{shard_name(index)}{suffix}"
    return f"{root}/{WORK_DIR}/seg{segment + 1:02d}/{shard_name(index)}.parquet"


class StageChain:
    """The recipe's stages, instantiated once per worker; set up lazily on first use."""

    def __init__(self, recipe: Recipe) -> None:
        self.labels = stage_labels(recipe)
        self.stages: list[Stage | GlobalStage] = [
            stage_class(cfg.stage)(cfg)  # type: ignore[attr-defined]
            for cfg in recipe.stages
        ]
        self.segments = plan_segments(recipe)
        # Per stage, the dropped input columns its rejected rows get back (output.keep_rejected_html).
        self.restore: list[tuple[str, ...]] = [
            (HTML,)
            if recipe.output.keep_rejected_html
            and HTML in stage_class(cfg.stage).contract(cfg).drops  # type: ignore[attr-defined]
            else ()
            for cfg in recipe.stages
        ]
        spec = recipe.output.tokenizer
        self.tokens = kernel.PayloadTokens(spec) if spec else None
        self._ready: set[int] = set()
        self._collector = JobCollector()

    def setup(self, positions: Iterable[int] | None = None) -> None:
        """Set up the map stages at `positions` (default: all) not set up yet. A segment sets
        up only its own: a run's later segments need no extractor process or language model.
        Once stages are set up, the garbage collector runs as pipeline.runner.garbage sets it."""
        todo = range(len(self.stages)) if positions is None else positions
        new = False
        for pos in todo:
            stage = self.stages[pos]
            if pos not in self._ready and isinstance(stage, Stage):
                stage.setup()
                self._ready.add(pos)
                new = True
        if new:
            self._collector.set_up()

    def close(self) -> None:
        for pos in sorted(self._ready):
            stage = self.stages[pos]
            if isinstance(stage, Stage):
                stage.close()
        self._ready.clear()
        self._collector.stop()


@dataclass(frozen=True)
class ShardTask:
    """Segment `segment` (>= 1) of one unit: its input is the previous segment's shard."""

    segment: int
    shard: ShardRef
    unit: InputUnit


Task = InputUnit | ShardTask


@dataclass
class ShardOutputs:
    """The writers of one task: kept documents and, when asked, rejected ones per stage."""

    recipe: Recipe
    fs: Any
    root: str
    name: str
    data_path: str
    data: ShardWriter | JsonlShardWriter = field(init=False)
    rejected: dict[str, ShardWriter | JsonlShardWriter] = field(default_factory=dict)
    output_bytes: int = 0

    def __post_init__(self) -> None:
        # data/ follows output.format and output.columns; _work/ keeps every column, in Parquet.
        self.final = not self.data_path.startswith(f"{self.root}/{WORK_DIR}/")
        self.data = output_writer(self.fs, self.data_path, self.recipe.output, final=self.final)

    def reject(self, label: str, rejected: pa.Table) -> None:
        out = self.recipe.output
        if not (out.keep_rejected and rejected.num_rows):
            return
        if label not in self.rejected:
            path = f"{self.root}/{REJECTED_DIR}/{label}/{self.name}{shard_suffix(out)}"
            self.rejected[label] = output_writer(self.fs, path, out)
        table = select_columns(rejected, out.columns)
        if out.keep_rejected_html and HTML in set(rejected.column_names) - set(table.column_names):
            table = table.append_column(rejected.field(HTML), rejected.column(HTML))
        self.rejected[label].write(table)

    def keep(self, batch: pa.Table) -> None:
        if batch.num_rows:
            self.output_bytes += kernel.payload_bytes(batch)
            if self.final:
                batch = select_columns(batch, self.recipe.output.columns)
            self.data.write(batch)

    def commit(self) -> int:
        rows = self.data.close()
        for w in self.rejected.values():
            w.close()
        return rows

    def abort(self) -> None:
        self.data.abort()
        for w in self.rejected.values():
            w.abort()


def process_task(
    recipe: Recipe,
    chain: StageChain,
    task: Task,
    worker: str = "local",
    on_batch: Callable[[int], None] | None = None,
) -> dict:
    """Run one task (a unit of segment 0, or a shard of a later segment) and commit it.

    `worker` names where it ran (a Ray node id, or "local"); it is recorded in the marker only.
    `on_batch` is called with the number of documents of each batch read from the input (progress).
    """
    segment_idx = task.segment if isinstance(task, ShardTask) else 0
    segment = chain.segments[segment_idx]
    chain.setup(segment.map_stages)  # before the clock: set-up is not the task's time
    fs, root = output_fs(recipe.output.path)
    started = time.perf_counter()
    unit = task.unit if isinstance(task, ShardTask) else task
    name = shard_name(unit.index)
    suffix = shard_suffix(recipe.output)
    data_path = segment_output(root, segment_idx, len(chain.segments), unit.index, suffix)
    outputs = ShardOutputs(recipe, fs, root, name, data_path)
    counted = 0 if chain.tokens is not None else None  # every stage reports tokens, even 0
    stats = [
        StageStats(chain.labels[p], tokens_in=counted, tokens_out=counted)
        for p in segment.positions
    ]
    reader_stats = ReaderStats() if segment_idx == 0 else None
    try:
        if isinstance(task, ShardTask):
            batches = _global_then_batches(recipe, chain, task, stats[0], outputs, fs, root)
            map_stats = stats[1:]
        else:
            batches = read_unit(unit, recipe.input, reader_stats, recipe.runtime.batch_size)
            map_stats = stats
        cpu_s = recipe.runtime.stage_cpu_s_per_doc
        for batch in batches:
            if on_batch is not None and reader_stats is not None:
                on_batch(batch.num_rows)
            shared = kernel.Intermediates()  # one batch's words etc., along its map stages
            for pos, st in zip(segment.map_stages, map_stats, strict=True):
                if batch.num_rows == 0:
                    break
                batch, rejected = kernel.run_stage(
                    chain.stages[pos], batch, st, cpu_s, chain.tokens, chain.restore[pos], shared
                )
                outputs.reject(st.name, rejected)
            outputs.keep(batch)
        output_docs = outputs.commit()
    except AccountingError as exc:
        outputs.abort()
        where = task_where(unit, segment_idx)
        raise AccountingError(f"accounting violated in {where}: {exc}") from None
    except BaseException:
        outputs.abort()
        raise
    return finish_task(
        outputs,
        unit,
        segment_idx,
        input_docs=task.shard.num_rows if isinstance(task, ShardTask) else None,
        reader=reader_stats.to_dict() if reader_stats is not None else None,
        stats=stats,
        output_docs=output_docs,
        started=started,
        worker=worker,
    )


def finish_task(
    outputs: ShardOutputs,
    unit: InputUnit,
    segment: int,
    *,
    input_docs: int | None,
    reader: dict[str, Any] | None,
    stats: list[StageStats],
    output_docs: int,
    started: float,
    worker: str,
    **extra: Any,
) -> dict[str, Any]:
    """A committed task's result: checked for accounting, then recorded in its marker."""
    result = {
        "unit": {
            "index": unit.index,
            "path": unit.path,
            "format": unit.format,
            "shard": unit.shard,
            "num_shards": unit.num_shards,
        },
        "segment": segment,
        "input_docs": input_docs,
        "reader": reader,
        "stages": [s.to_dict() for s in stats],
        "output_docs": output_docs,
        "output_bytes": outputs.output_bytes,
        "output_file": outputs.data_path[len(outputs.root) + 1 :] if output_docs else None,
        "rejected_files": {k: w.path[len(outputs.root) + 1 :] for k, w in outputs.rejected.items()},
        "wall_s": round(time.perf_counter() - started, 4),
        "worker": {"node": worker, "pid": os.getpid()},
        **extra,
    }
    check_segment(result)
    write_marker(outputs.fs, marker_path(outputs.root, segment, unit.index), result)
    return result


def _global_then_batches(
    recipe: Recipe,
    chain: StageChain,
    task: ShardTask,
    stats: StageStats,
    outputs: ShardOutputs,
    fs: Any,
    root: str,
) -> Iterator[pa.Table]:
    """Apply the segment's global stage to the whole shard, then yield the kept rows in batches."""
    pos = chain.segments[task.segment].global_stage
    assert pos is not None
    stage = chain.stages[pos]
    assert isinstance(stage, GlobalStage)
    table = task.shard.read(fs)
    ctx = LocalContext(output_url(fs, global_work_dir(root, task.segment, chain.labels[pos])))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if table.num_rows:
        scored = kernel.Scored(
            stage.score_shard(ctx, task.shard, table),
            np.arange(table.num_rows),
            np.zeros(0, np.int64),
            None,
        )
    else:
        scored = kernel.Scored(table, np.zeros(0, np.int64), np.zeros(0, np.int64), None)
    reasons, first = kernel.decide(stage, scored, table.num_rows)
    kept, rejected = kernel.split(table, scored, reasons)
    stats.wall_s += time.perf_counter() - wall0
    stats.cpu_s += time.process_time() - cpu0
    tokens = chain.tokens.in_out(stage, table, kept, reasons) if chain.tokens else None
    in_out = kernel.payload_bytes(table), kernel.payload_bytes(kept)
    kernel.account(stats, reasons, *in_out, first, tokens)
    kernel.note_examples(stats, rejected)
    outputs.reject(stats.name, rejected)
    size = recipe.runtime.batch_size
    for start in range(0, kept.num_rows, size):
        yield kept.slice(start, size)


def write_marker(fs: Any, path: str, payload: dict[str, Any]) -> None:
    """Write the unit's completion marker atomically (temp name, then rename)."""
    write_json_atomic(fs, path, payload, indent=1, sort_keys=True)
