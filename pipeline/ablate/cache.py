"""The score cache of ablations: every map stage's scores for every document, computed once.

Variants of a recipe share work through a tree of cache nodes. A node is one map stage applied
after its parent node; its key hashes the parent's key, the stage name, the stage's config
*without its threshold keys* and the stage's fingerprint (pipeline.ablate.fingerprint: the source
of every project module it imports, its resource files, library versions and the files its config
names). So variants that differ only in thresholds share every node, and a changed non-threshold
key, stage code, resource, library or input file recomputes exactly that node and the nodes below
it.

A node's table holds every document of a unit ("score everything, decide later"): documents are
never dropped while scoring, so a variant re-applies its own `keep()` thresholds to the stored
columns. Extra columns: `__failed_at` (the level whose `score` raised on the document, or that
left it unscored: `max_chars`, CPU limit), `__failed_reason` (that rejection's reason, null for
`<stage>_error`) and `__bytes_<level>` (payload bytes after each level, for the per-stage byte
accounting).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import __version__
from pipeline.ablate.fingerprint import stage_fingerprint
from pipeline.config import Recipe
from pipeline.io.base import InputUnit, ReaderStats
from pipeline.io.sources import input_fingerprint, read_unit
from pipeline.io.writer import ShardWriter, output_fs
from pipeline.registry import stage_class
from pipeline.runner import kernel
from pipeline.runner.kernel import payload_lengths
from pipeline.runner.unit import plan_segments
from pipeline.stages.base import Stage, StageConfig

FAILED = "__failed_at"
FAILED_REASON = "__failed_reason"
# Bumped when the cached tables change shape (2: __failed_reason), so old caches are not read.
CACHE_FORMAT = 2


def bytes_col(level: int) -> str:
    return f"__bytes_{level}"


INTERNAL_PREFIX = "__"


def score_config(cfg: StageConfig) -> dict[str, Any]:
    """A stage config without its threshold keys: what its scores depend on."""
    cls = stage_class(cfg.stage)  # type: ignore[attr-defined]
    data = cfg.model_dump(mode="json")
    return {k: v for k, v in data.items() if k not in cls.threshold_keys}


@dataclass(frozen=True)
class Node:
    """One cached level: stage `config` applied to the output of `parent` (None: the reader)."""

    key: str
    parent: str | None
    level: int  # 1 = first stage
    config: dict[str, Any]  # the full stage config of the first variant that needs this node


def root_key(recipe: Recipe) -> str:
    """Key of the reader level: how the input is read."""
    blob = json.dumps(
        {"input": recipe.input.model_dump(mode="json"), "v": __version__, "format": CACHE_FORMAT}
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def variant_nodes(recipe: Recipe) -> list[Node]:
    """The cache nodes of a recipe's first segment (the map stages before any global stage)."""
    segment = plan_segments(recipe)[0]
    parent: str | None = None
    key = root_key(recipe)
    nodes = []
    for level, pos in enumerate(segment.map_stages, start=1):
        cfg = recipe.stages[pos]
        scored = score_config(cfg)
        blob = json.dumps(
            [key, cfg.stage, scored, stage_fingerprint(cfg.stage, scored)],  # type: ignore[attr-defined]
            sort_keys=True,
        )
        key = hashlib.sha256(blob.encode()).hexdigest()[:16]
        nodes.append(Node(key, parent, level, cfg.model_dump(mode="json")))
        parent = key
    return nodes


def unit_key(unit: InputUnit) -> str:
    """Cache file stem of a unit: its index and a fingerprint of the file (size, mtime)."""
    return f"part-{unit.index:05d}-{input_fingerprint([unit])[:12]}"


class MaterializeJob:
    """Computes the missing cache nodes of one unit (an executor Job: picklable, set up once)."""

    def __init__(self, recipe: Recipe, nodes: list[Node], cache_dir: str) -> None:
        self.recipe_dict = recipe.to_dict()
        self.nodes = nodes
        self.cache_dir = cache_dir
        self._stages: dict[str, Stage] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"recipe_dict": self.recipe_dict, "nodes": self.nodes, "cache_dir": self.cache_dir}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _stages={})

    def setup(self) -> None:
        for node in self.nodes:
            cls = stage_class(node.config["stage"])
            stage = cls(cls.config_cls.model_validate(node.config))
            stage.setup()
            self._stages[node.key] = stage

    def close(self) -> None:
        for stage in self._stages.values():
            stage.close()

    def run(self, unit: InputUnit, worker: str) -> dict[str, Any]:
        """Materialise every node this unit lacks, parents first; returns what was computed."""
        from pipeline.config import recipe_from_dict

        recipe = recipe_from_dict(self.recipe_dict)
        fs, root = output_fs(self.cache_dir)
        computed = []
        for node in self.nodes:  # topological: parents come first
            if fs.exists(_sidecar(root, node.key, unit)):
                continue
            started, cpu0 = time.perf_counter(), time.process_time()
            if node.parent is None:
                reader_stats = ReaderStats()
                # as `curate run` reads it: a unit with no usable record is a ConfigError
                batches = read_unit(unit, recipe.input, reader_stats, recipe.runtime.batch_size)
                reader = reader_stats
                batches = (_with_level0(b) for b in batches)
            else:
                batches, reader = _cached_batches(fs, root, node.parent, unit)
            writer = ShardWriter(fs, _table_path(root, node.key, unit))
            stage = self._stages[node.key]
            cpu_s = recipe.runtime.stage_cpu_s_per_doc
            errors: list[str] = []
            try:
                for batch in batches:
                    writer.write(score_all(stage, batch, node.level, errors, cpu_s))
                    errors += [e for e in [stage.take_error()] if e and not errors]
                rows = writer.close()
            except BaseException:
                writer.abort()
                raise
            reader_dict = reader.to_dict() if isinstance(reader, ReaderStats) else reader
            meta = {
                "unit": unit.index,
                "rows": rows,
                "reader": reader_dict,
                "wall_s": round(time.perf_counter() - started, 4),
                "cpu_s": round(time.process_time() - cpu0, 4),
                "stage": node.config["stage"],
                "first_error": errors[0] if errors else None,
            }
            with fs.open(_sidecar(root, node.key, unit), "w") as f:
                json.dump(meta, f)
            computed.append(node.key)
        return {"unit": {"index": unit.index}, "computed": computed, "worker": worker}


def _with_level0(batch: pa.Table) -> pa.Table:
    """Reader batch + the internal columns of level 0."""
    n = batch.num_rows
    batch = batch.append_column(FAILED, pa.nulls(n, pa.int16()))
    batch = batch.append_column(FAILED_REASON, pa.nulls(n, pa.string()))
    return batch.append_column(bytes_col(0), payload_lengths(batch))


def score_all(
    stage: Stage,
    batch: pa.Table,
    level: int,
    stage_errors: list[str] | None = None,
    cpu_s: float | None = None,
) -> pa.Table:
    """Score every live row of `batch` with `stage` (CPU limit `cpu_s` per document), keeping
    row order.

    Rows that failed at an earlier level pass through (projected onto the scored columns); rows
    the kernel could not score (`score` raised, too long, out of CPU time) are marked failed at
    `level` with their reason and pass through the same way; the first failure's message goes to
    `stage_errors` when given and still empty.
    """
    if batch.num_rows == 0:
        return batch.append_column(bytes_col(level), pa.array([], pa.int64()))
    alive = batch.column(FAILED).is_null().to_numpy(zero_copy_only=False)
    live_idx = np.flatnonzero(alive)
    dead_idx = np.flatnonzero(~alive)
    internal = [c for c in batch.column_names if c.startswith(INTERNAL_PREFIX)]
    live = batch.take(pa.array(live_idx, pa.int64())).drop_columns(internal)
    parts: list[tuple[np.ndarray, pa.Table]] = []
    newly_failed: list[int] = []
    why: dict[int, str | None] = {}
    if len(live_idx):  # the run's kernel: a document that breaks the stage is isolated
        scored = kernel.score_isolated(stage, live, cpu_s)
        if scored.table is not None:
            parts.append((live_idx[scored.ok], scored.table))
        newly_failed = [int(i) for i in live_idx[scored.failed]]
        why = dict(zip(newly_failed, scored.failed_reasons or [], strict=False))
        if scored.first_error and stage_errors is not None and not stage_errors:
            stage_errors.append(scored.first_error)
    pieces, order = [], []
    for idx, table in parts:
        carried = batch.take(pa.array(idx, pa.int64())).select(internal)
        for c in internal:
            table = table.append_column(c, carried.column(c))
        pieces.append(table)
        order.append(idx)
    dead_idx = np.sort(np.concatenate([dead_idx, np.array(newly_failed, dtype=np.int64)]))
    if len(dead_idx):
        dead = batch.take(pa.array(dead_idx, pa.int64()))
        marks = dead.column(FAILED).to_numpy(zero_copy_only=False)
        marks = np.where(np.isin(dead_idx, newly_failed), level, marks).astype(np.int16)
        dead = dead.set_column(dead.schema.get_field_index(FAILED), FAILED, pa.array(marks))
        reasons = [
            why.get(int(i), r)
            for i, r in zip(dead_idx, dead.column(FAILED_REASON).to_pylist(), strict=True)
        ]
        dead = dead.set_column(
            dead.schema.get_field_index(FAILED_REASON),
            FAILED_REASON,
            pa.array(reasons, pa.string()),
        )
        if pieces:  # only the columns the stage's output has
            dead = dead.select([c for c in dead.column_names if c in pieces[0].column_names])
        pieces.append(dead)
        order.append(dead_idx)
    merged = pa.concat_tables(pieces, promote_options="permissive")
    merged = merged.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))
    return merged.append_column(bytes_col(level), payload_lengths(merged))


def _table_path(root: str, key: str, unit: InputUnit) -> str:
    return f"{root}/{key}/{unit_key(unit)}.parquet"


def _sidecar(root: str, key: str, unit: InputUnit) -> str:
    return f"{root}/{key}/{unit_key(unit)}.json"


def _cached_batches(fs: Any, root: str, key: str, unit: InputUnit) -> tuple[Any, dict[str, Any]]:
    with fs.open(_sidecar(root, key, unit), "r") as f:
        meta = json.load(f)
    return _iter_table(fs, _table_path(root, key, unit), meta["rows"]), meta["reader"]


def _iter_table(fs: Any, path: str, rows: int) -> Any:
    if rows == 0 or not fs.exists(path):
        return
    with fs.open(path, "rb") as f:
        for rb in pq.ParquetFile(f).iter_batches(batch_size=4096):
            yield pa.Table.from_batches([rb])


def load_node(
    cache_dir: str, key: str, unit: InputUnit, rows: bool = True
) -> tuple[pa.Table | None, dict[str, Any]]:
    """A node's whole table for one unit (None when it has no rows, or not `rows`) and its
    sidecar."""
    fs, root = output_fs(cache_dir)
    with fs.open(_sidecar(root, key, unit), "r") as f:
        meta = json.load(f)
    path = _table_path(root, key, unit)
    if not rows or meta["rows"] == 0 or not fs.exists(path):
        return None, meta
    with fs.open(path, "rb") as f:
        return pq.read_table(f), meta
