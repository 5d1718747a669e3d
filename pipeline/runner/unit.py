"""One unit of work, start to finish: read -> map stages -> write shards -> completion marker.

Pure Python, no Ray: the executors call `process_unit` in a Ray actor or in-process. The output
of a unit depends only on the unit and the recipe, so a rerun after a crash, or a run on another
cluster, produces the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import Recipe
from pipeline.io.base import InputUnit, ReaderStats
from pipeline.io.sources import get_reader
from pipeline.io.writer import ShardWriter, output_fs
from pipeline.registry import stage_class
from pipeline.runner.accounting import StageStats, check_unit
from pipeline.schema import HTML, REASON, TEXT
from pipeline.stages.base import Stage, split_by_reason

log = logging.getLogger(__name__)

DATA_DIR = "data"
REJECTED_DIR = "rejected"
RUN_DIR = "_run"
UNITS_DIR = f"{RUN_DIR}/units"


def shard_name(unit: InputUnit) -> str:
    return f"part-{unit.index:05d}"


def stage_labels(recipe: Recipe) -> list[str]:
    """Stable labels for the stages of a recipe: the name, suffixed when a name repeats."""
    seen: Counter[str] = Counter()
    labels = []
    for cfg in recipe.stages:
        name = cfg.stage  # type: ignore[attr-defined]
        seen[name] += 1
        labels.append(name if seen[name] == 1 else f"{name}.{seen[name]}")
    return labels


class StageChain:
    """The recipe's stages, instantiated once per worker; set up lazily on first use."""

    def __init__(self, recipe: Recipe) -> None:
        self.labels = stage_labels(recipe)
        self.stages: list[Stage] = [
            stage_class(cfg.stage)(cfg)  # type: ignore[attr-defined]
            for cfg in recipe.stages
        ]
        self._ready = False

    def setup(self) -> None:
        if not self._ready:
            for stage in self.stages:
                stage.setup()
            self._ready = True

    def close(self) -> None:
        for stage in self.stages:
            stage.close()
        self._ready = False


def process_unit(
    recipe: Recipe, chain: StageChain, unit: InputUnit, worker: str = "local"
) -> dict[str, Any]:
    """Process one unit and commit its shards and marker; returns the unit's stats.

    `worker` names where it ran (a Ray node id, or "local"); it is recorded in the marker only.
    """
    chain.setup()
    fs, root = output_fs(recipe.output.path)
    out = recipe.output
    writer_opts = {
        "rows_per_row_group": out.rows_per_row_group,
        "max_row_group_bytes": out.max_row_group_bytes,
        "compression": out.compression,
        "compression_level": out.compression_level,
    }
    name = shard_name(unit)
    data_writer = ShardWriter(fs, f"{root}/{DATA_DIR}/{name}.parquet", **writer_opts)
    rejected_writers: dict[str, ShardWriter] = {}
    reader_stats = ReaderStats()
    stage_stats = [StageStats(label) for label in chain.labels]
    output_bytes = 0
    started = time.perf_counter()
    reader = get_reader(unit.format, recipe.input)
    try:
        for batch in reader.read(unit, reader_stats, recipe.runtime.batch_size):
            for label, stage, stats in zip(chain.labels, chain.stages, stage_stats, strict=True):
                if batch.num_rows == 0:
                    break
                batch, rejected = _run_stage(stage, batch, stats)
                if out.keep_rejected and rejected.num_rows:
                    if label not in rejected_writers:
                        path = f"{root}/{REJECTED_DIR}/{label}/{name}.parquet"
                        rejected_writers[label] = ShardWriter(fs, path, **writer_opts)
                    rejected_writers[label].write(rejected)
            if batch.num_rows:
                output_bytes += _payload_bytes(batch)
                data_writer.write(batch)
        output_docs = data_writer.close()
        for w in rejected_writers.values():
            w.close()
    except BaseException:
        data_writer.abort()
        for w in rejected_writers.values():
            w.abort()
        raise
    result = {
        "unit": {
            "index": unit.index,
            "path": unit.path,
            "format": unit.format,
            "shard": unit.shard,
            "num_shards": unit.num_shards,
        },
        "reader": reader_stats.to_dict(),
        "stages": [s.to_dict() for s in stage_stats],
        "output_docs": output_docs,
        "output_bytes": output_bytes,
        "output_file": f"{DATA_DIR}/{name}.parquet" if output_docs else None,
        "rejected_files": {k: f"{REJECTED_DIR}/{k}/{name}.parquet" for k in rejected_writers},
        "wall_s": round(time.perf_counter() - started, 4),
        "worker": {"node": worker, "pid": os.getpid()},
    }
    check_unit(result)
    _write_marker(fs, f"{root}/{UNITS_DIR}/{name}.json", result)
    return result


def _run_stage(stage: Stage, batch: pa.Table, stats: StageStats) -> tuple[pa.Table, pa.Table]:
    """Apply one stage to a batch, timing it and counting what it keeps and rejects."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    stats.docs_in += batch.num_rows
    stats.bytes_in += _payload_bytes(batch)
    kept, rejected = _apply_isolated(stage, batch)
    stats.docs_kept += kept.num_rows
    stats.docs_rejected += rejected.num_rows
    stats.bytes_out += _payload_bytes(kept)
    if rejected.num_rows:
        stats.reasons.update(rejected.column(REASON).to_pylist())
    stats.wall_s += time.perf_counter() - wall0
    stats.cpu_s += time.process_time() - cpu0
    return kept, rejected


def _apply_isolated(stage: Stage, batch: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Apply a stage; if the batch raises, retry row by row so one bad document can't sink it.

    A document on which the stage itself fails is rejected as `<stage>_error`.
    """
    try:
        return stage.apply(batch)
    except Exception as exc:  # noqa: BLE001 - isolate, count and continue
        log.warning("stage %s failed on a batch (%s); isolating documents", stage.name, exc)
    kept_parts, rejected_parts = [], []
    for i in range(batch.num_rows):
        row = batch.slice(i, 1)
        try:
            kept, rejected = stage.apply(row)
        except Exception as exc:  # noqa: BLE001
            log.warning("stage %s rejected a document it could not process: %s", stage.name, exc)
            reason = pa.array([f"{stage.name}_error"], type=pa.string())
            kept, rejected = split_by_reason(row, reason)
        if kept.num_rows:
            kept_parts.append(kept)
        if rejected.num_rows:
            rejected_parts.append(rejected)
    return _concat(kept_parts, batch, drop_reason=True), _concat(rejected_parts, batch)


def _concat(parts: list[pa.Table], like: pa.Table, drop_reason: bool = False) -> pa.Table:
    if not parts:
        empty = like.slice(0, 0)
        return empty if drop_reason else empty.append_column(REASON, pa.array([], pa.string()))
    return pa.concat_tables(parts, promote_options="permissive")


def _payload_bytes(batch: pa.Table) -> int:
    """UTF-8 bytes of the payload column (`text`, else `html`)."""
    col = TEXT if TEXT in batch.column_names else HTML if HTML in batch.column_names else None
    if col is None or batch.num_rows == 0:
        return 0
    total = pc.sum(pc.binary_length(batch.column(col))).as_py()
    return int(total or 0)


def _write_marker(fs: Any, path: str, payload: dict[str, Any]) -> None:
    """Write the unit's completion marker atomically (temp name, then rename)."""
    tmp = f"{path}.tmp"
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(tmp, "w") as f:
        json.dump(payload, f, indent=1, sort_keys=True)
    fs.mv(tmp, path)
