"""`curate ablate`: run every variant of a recipe, sharing the scoring work they have in common.

1. Score: every cache node any variant needs (pipeline.ablate.cache) is computed once per unit,
   through the same executors as `curate run` (Ray actors or local).
2. Re-threshold: per variant and unit, the variant's `keep()` thresholds are applied in stage
   order to the stored scores; the result is written as the variant's first segment (shards,
   rejects and markers, exactly as `curate run` would have), so ...
3. ... `curate run`'s own runner finishes each variant (global stages, later map stages, stats,
   report) and finds the first segment done.
4. Compare: pipeline.ablate.report writes the side-by-side report.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.ablate.cache import (
    FAILED,
    FAILED_REASON,
    INTERNAL_PREFIX,
    MaterializeJob,
    Node,
    bytes_col,
    load_node,
    variant_nodes,
)
from pipeline.ablate.spec import Ablation
from pipeline.config import Recipe
from pipeline.errors import ConfigError, CurateError
from pipeline.io.atomic import write_json_atomic
from pipeline.io.base import InputUnit
from pipeline.io.limit import limit_units
from pipeline.io.output_shards import read_shards, shard_suffix
from pipeline.io.sources import plan_units
from pipeline.io.writer import output_fs, output_url
from pipeline.runner import kernel
from pipeline.runner.accounting import StageStats
from pipeline.runner.executors import execute, resolve_executor, run_local
from pipeline.runner.inputs import check_inputs
from pipeline.runner.lock import output_lock
from pipeline.runner.plan import check_plan, preflight_input
from pipeline.runner.run import (
    claim_output,
    remove_partial_files,
    run_recipe,
    worker_user_error,
)
from pipeline.runner.unit import (
    RUN_DIR,
    ShardOutputs,
    StageChain,
    finish_task,
    marker_path,
    plan_segments,
    segment_output,
    shard_name,
    stage_labels,
)
from pipeline.schema import REASON

log = logging.getLogger(__name__)


# In a variant's run record: the cache nodes its first segment was made from (a recomputed node,
# after a change to a stage's code, model or data, makes the variant rebuild from the cache).
CACHE_NODES = "cache_nodes.json"


@dataclass
class AblationResult:
    """What an ablation produced: per variant its run stats, and which cache nodes it computed."""

    output: str
    variants: dict[str, dict[str, Any]]
    computed: dict[str, list[str]]  # variant -> stage labels whose scores were computed now
    wall_s: float


def run_ablation(ablation: Ablation, overwrite: bool = False) -> AblationResult:
    """Run all variants of `ablation` and write the comparison report."""
    with output_lock(ablation.output, "curate ablate"):
        return _ablate_locked(ablation, overwrite)


def _ablate_locked(ablation: Ablation, overwrite: bool) -> AblationResult:
    """run_ablation's work, with the ablation directory's writer lock held."""
    from pipeline.ablate.report import write_comparison

    started = time.perf_counter()
    recipes = ablation.variants
    first = next(iter(recipes.values()))
    if any(r.input != first.input for r in recipes.values()):
        raise CurateError("all variants of an ablation must read the same input")
    if any(r.output.tokenizer for r in recipes.values()):  # the score cache holds no tokens
        raise ConfigError(
            "output.tokenizer is not supported by `curate ablate` (its score cache counts bytes, "
            "not tokens); remove it from the ablation, or `curate run` the chosen variant with it"
        )
    planned = plan_units(first.input, exclude=(ablation.output,))
    for recipe in recipes.values():  # every variant's chain, before any scoring
        check_plan(recipe, {u.format for u in planned})
    # Read once: the documents of `input.limit` are kept with the units, for the scoring, the
    # check of the first batch and every variant's run.
    units = limit_units(planned, first.input, first.runtime.batch_size)
    preflight_input(first, units)
    fs, root = output_fs(ablation.output)
    identities = check_inputs(fs, root, ablation.output, units, overwrite)
    runtime = resolve_executor(first.runtime, [i["size"] for i in identities])
    cache_dir = output_url(fs, f"{root}/_cache")  # a URL on S3: reopened by output_fs
    chains = {name: variant_nodes(r) for name, r in recipes.items()}
    nodes = _union(chains.values())
    computed_keys: set[str] = set()
    if nodes:
        log.info("scoring %d cache nodes over %d units", len(nodes), len(units))
        job = MaterializeJob(first, nodes, cache_dir)
        try:
            for result in execute(job, units, runtime):
                computed_keys.update(result["computed"])
        except Exception as exc:
            user_error = worker_user_error(exc)  # a config problem or accounting violation
            if user_error is not None:
                raise user_error from None
            raise CurateError(f"ablation scoring failed: {exc}; rerun to resume") from exc
    variant_stats = {}
    computed = {}
    for name, recipe in recipes.items():
        chain_nodes = chains[name]
        labels = stage_labels(recipe)
        segment = plan_segments(recipe)[0]
        computed[name] = [
            labels[pos]
            for pos, node in zip(segment.map_stages, chain_nodes, strict=True)
            if node.key in computed_keys
        ]
        if chain_nodes:
            _rethreshold(recipe, units, chain_nodes, cache_dir, overwrite)
        # A variant without cached levels is all `curate run`'s: it starts over itself.
        variant_stats[name] = run_recipe(
            recipe, overwrite=overwrite and not chain_nodes, input_plan=(units, len(planned))
        ).stats
    wall = time.perf_counter() - started
    result = AblationResult(ablation.output, variant_stats, computed, round(wall, 3))
    write_comparison(ablation, result)
    return result


def _union(chains: Any) -> list[Node]:
    """Distinct nodes of all chains, parents before children."""
    seen: dict[str, Node] = {}
    for chain in chains:
        for node in chain:
            seen.setdefault(node.key, node)
    return sorted(seen.values(), key=lambda n: n.level)


def _rethreshold(
    recipe: Recipe, units: list[InputUnit], nodes: list[Node], cache_dir: str, overwrite: bool
) -> None:
    """Write a variant's first segment from the cached scores (resumable, per unit).

    A variant directory holding another config (the ablation file changed), or one made from
    other cache nodes (a stage's code, model or data changed: recomputed nodes), is rebuilt: it
    is derived from the cache, which is what carries the expensive work.
    """
    fs, root = output_fs(recipe.output.path)
    config_hash = recipe.config_hash()
    keys = [n.key for n in nodes]
    rebuild = overwrite or _holds_other(fs, root, config_hash, keys)
    claim_output(fs, root, recipe, config_hash, rebuild)
    write_json_atomic(fs, f"{root}/{RUN_DIR}/{CACHE_NODES}", {"nodes": keys})
    check_inputs(fs, root, recipe.output.path, units, rebuild)
    remove_partial_files(fs, root)
    todo = [u for u in units if not fs.exists(marker_path(root, 0, u.index))]
    if todo:
        # Re-thresholding reads stored columns and filters them: cheaper in this process than
        # starting a pool of workers for every variant.
        job = RethresholdJob(recipe, nodes, cache_dir)
        for _ in run_local(job, todo, recipe.runtime):
            pass


def _holds_other(fs: Any, root: str, config_hash: str, keys: list[str]) -> bool:
    """Whether a variant directory holds a run of another config, or one made from other cache
    nodes than `keys` (or from unrecorded ones: a run that stopped before recording them)."""
    marker = f"{root}/{RUN_DIR}/config.json"
    if not fs.exists(marker):
        return False
    with fs.open(marker, "r") as f:
        if json.load(f).get("config_hash") != config_hash:
            return True
    made_from = f"{root}/{RUN_DIR}/{CACHE_NODES}"
    if not fs.exists(made_from):
        return True
    with fs.open(made_from, "r") as f:
        return json.load(f).get("nodes") != keys


class RethresholdJob:
    """Applies one variant's thresholds to the cached scores of a unit (an executor Job)."""

    def __init__(self, recipe: Recipe, nodes: list[Node], cache_dir: str) -> None:
        self.recipe_dict = recipe.to_dict()
        self.source = recipe.source
        self.nodes = nodes
        self.cache_dir = cache_dir

    def setup(self) -> None:
        from pipeline.config import recipe_from_dict

        self.recipe = recipe_from_dict(self.recipe_dict, source=self.source)
        self.chain = StageChain(self.recipe)  # keep() needs no set-up (no models)

    def close(self) -> None:
        pass

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("recipe", "chain")}

    def run(self, unit: InputUnit, worker: str) -> dict[str, Any]:
        recipe, chain = self.recipe, self.chain
        started = time.perf_counter()
        fs, root = output_fs(recipe.output.path)
        segment = chain.segments[0]
        name = shard_name(unit.index)
        suffix = shard_suffix(recipe.output)
        data_path = segment_output(root, 0, len(chain.segments), unit.index, suffix)
        outputs = ShardOutputs(recipe, fs, root, name, data_path)
        leaf, meta = load_node(self.cache_dir, self.nodes[-1].key, unit)
        n = 0 if leaf is None else leaf.num_rows
        alive = np.ones(n, dtype=bool)
        failed_at = (
            np.zeros(0)
            if leaf is None
            else leaf.column(FAILED).fill_null(0).to_numpy(zero_copy_only=False)
        )
        all_stats = []
        try:
            for level, pos in enumerate(segment.map_stages, start=1):
                stage = chain.stages[pos]
                stats = StageStats(chain.labels[pos])
                all_stats.append(stats)
                if not alive.any():
                    continue
                wall0, cpu0 = time.perf_counter(), time.process_time()
                idx = np.flatnonzero(alive)
                broke = failed_at[idx] == level
                # The run's kernel decides on the stored scores: the same keep(), isolation
                # and error reason as `curate run`.
                scored = kernel.Scored(
                    leaf.take(pa.array(idx[~broke], pa.int64())),
                    np.flatnonzero(~broke),
                    np.flatnonzero(broke),
                    None,
                    leaf.column(FAILED_REASON).take(pa.array(idx[broke])).to_pylist(),
                )
                reasons, first = kernel.decide(stage, scored, len(idx))
                kernel.count_scores(stats, stage, scored, reasons)
                rejected = np.array([r is not None for r in reasons], dtype=bool)
                before = leaf.column(bytes_col(level - 1)).to_numpy()
                after = leaf.column(bytes_col(level)).to_numpy()
                if kernel.error_reason(stage) in reasons:
                    first = first or self._first_error(unit, level)
                kernel.account(
                    stats,
                    reasons,
                    int(before[idx].sum()),
                    int(after[idx[~rejected]].sum()),
                    first,
                )
                if rejected.any():  # examples for stats.json, and rejected/ when kept
                    rows = self._rejected_rows(unit, level, idx, reasons)
                    kernel.note_examples(stats, rows)
                    outputs.reject(stats.name, rows)
                alive[idx[rejected]] = False
                stats.wall_s = time.perf_counter() - wall0
                stats.cpu_s = time.process_time() - cpu0
            if leaf is not None and alive.any():
                kept = _public(leaf.take(pa.array(np.flatnonzero(alive), pa.int64())))
                for start in range(0, kept.num_rows, recipe.runtime.batch_size):
                    outputs.keep(kept.slice(start, recipe.runtime.batch_size))
            output_docs = outputs.commit()
        except BaseException:
            outputs.abort()
            raise
        return finish_task(
            outputs,
            unit,
            0,
            input_docs=None,
            reader=meta["reader"],
            stats=all_stats,
            output_docs=output_docs,
            started=started,
            worker=worker,
            from_cache=True,
        )

    def _first_error(self, unit: InputUnit, level: int) -> str | None:
        """The first scoring failure recorded in the cache at `level`."""
        _, meta = load_node(self.cache_dir, self.nodes[level - 1].key, unit, rows=False)
        return meta.get("first_error")

    def _rejected_rows(
        self, unit: InputUnit, level: int, idx: np.ndarray, reasons: np.ndarray
    ) -> pa.Table:
        """Rejected documents as the stage saw them: its own level's columns and text."""
        table, _ = load_node(self.cache_dir, self.nodes[level - 1].key, unit)
        assert table is not None
        mask = np.array([r is not None for r in reasons], dtype=bool)
        rows = _public(table.take(pa.array(idx[mask], pa.int64())))
        return rows.append_column(REASON, pa.array(list(reasons[mask]), pa.string()))


def _public(table: pa.Table) -> pa.Table:
    """Drop the cache's internal columns."""
    return table.drop_columns([c for c in table.column_names if c.startswith(INTERNAL_PREFIX)])


def variant_output_ids(recipe: Recipe) -> list[str]:
    """Ids of a finished variant's kept documents (for the comparison), Parquet or JSONL."""
    fs, root = output_fs(recipe.output.path)
    with fs.open(f"{root}/stats.json", "r") as f:
        files = json.load(f)["output"]["files"]
    table = read_shards(fs, [f"{root}/{p}" for p in files], ["id"])
    return table.column("id").to_pylist()
