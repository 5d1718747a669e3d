"""`top_fraction`: keep the top `keep_top_fraction` of the corpus by a score column (DCLM's rule).

prepare() runs two phases through `ctx.map`:

1. per shard: a deterministic mergeable quantile summary of the column's scores
   (pipeline.stages.quantiles: at most 2,048 weighted values, 32 KB), written under
   `ctx.work_dir`; the driver merges them in a tree of fan-out 64, holding at most
   64 + shards / 64 summaries. Every rank it gives is within 0.05% of the corpus for up to 64
   shards, 0.1% for up to 262,144 (`rank_error` in the summary); small corpora are ranked exactly.
2. per shard: exact counts for the report: a histogram of kept and rejected scores (the run's
   fixed bins, runner.histograms, the cut marked: report.html draws it like the map stages'),
   the documents kept at `keep_top_fraction`, the lowest score kept and the highest rejected.

score_shard() adds `<column>_frac_above`: the fraction of the corpus's scored documents that score
strictly higher than the document, estimated from the summary (0 for the top document), a pure
function of the score. keep() keeps a document when that fraction is below `keep_top_fraction`,
so another fraction re-thresholds the stored column without recomputing anything.

Ties: documents with equal scores share one `frac_above`, so they are kept or rejected together;
a tie group is kept when any of its members would be in the top fraction, i.e. the kept fraction
can exceed the requested one by the size of the tie group at the cut (never fall below it, up to
the summary's rank error). A document without a score (null or NaN) is outside the ranking: its
`frac_above` is 1, so it is rejected at every fraction, and the summary counts it as unscored.
+-inf are scores like any other (the top and the bottom), counted in the histogram's end bins.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from pipeline.errors import ConfigError
from pipeline.io.atomic import read_json, write_json_atomic
from pipeline.prune.phases import load_npy, save_arrays
from pipeline.runner.histograms import ScoreHistogram
from pipeline.stages.base import StageConfig, reasons_from_checks
from pipeline.stages.contract import Contract
from pipeline.stages.global_base import GlobalContext, GlobalStage, ShardRef
from pipeline.stages.quantiles import POINTS, Ranks, merge_tree, rank_error, summarize
from pipeline.text.batch import numeric_column, with_columns

_HUGE = np.finfo(np.float64).max
SUMMARY_FILE = "summary.npy"
MANIFEST_FILE = "manifest.json"
DEFAULT_COLUMN = "classifier_score"


class TopFractionConfig(StageConfig):
    """Which score column ranks the corpus, and what fraction of it is kept."""

    stage: Literal["top_fraction"] = "top_fraction"
    # Numeric column ranked, higher is better (e.g. a classifier's score column).
    column: str = Field(default=DEFAULT_COLUMN, min_length=1)
    # Fraction of the scored corpus kept, from the top (DCLM: 0.1); ties at the cut are all kept.
    keep_top_fraction: float = Field(default=0.1, gt=0, le=1)


def frac_above_column(column: str) -> str:
    """The rank column top_fraction adds for score column `column`."""
    return f"{column}_frac_above"


def reason_below(column: str) -> str:
    """The rejection reason of a document below the cut."""
    return f"{column}_below_top_fraction"


# --- phase 1: the quantile summary -----------------------------------------------------------


def _summary_path(work_dir: str, index: int) -> str:
    return f"{work_dir}/summaries/{index:06d}.npy"


def _summarize_shard(
    shard: ShardRef, *, fs: fsspec.AbstractFileSystem, work_dir: str, column: str
) -> dict[str, Any]:
    """Phase 1: the shard's summary file; its rows and scored rows."""
    assert shard.path is not None
    with fs.open(shard.path, "rb") as f:
        values = numeric_column(pq.read_table(f, columns=[column]), column)
    scored = values[~np.isnan(values)]
    save_arrays(fs, _summary_path(work_dir, shard.index), s=summarize(scored))
    return {"index": shard.index, "rows": len(values), "scored": len(scored)}


class Ranking:
    """The merged summary and the corpus's scored count, for frac_above."""

    def __init__(self, fs: fsspec.AbstractFileSystem, work_dir: str) -> None:
        manifest = read_json(fs, f"{work_dir}/{MANIFEST_FILE}")
        self.n = manifest["scored"]
        self.ranks = Ranks(load_npy(fs, f"{work_dir}/{SUMMARY_FILE}"))

    def frac_above(self, scores: np.ndarray) -> np.ndarray:
        """Estimated fraction of scored documents scoring strictly above each score; 1 for NaN.

        A scored document has at least itself at or below its score, so its fraction is capped
        at 1 - 1/n: keep_top_fraction 1 keeps every scored document.
        """
        out = np.ones(len(scores), dtype=np.float64)
        scored = ~np.isnan(scores)
        if not self.n or not scored.any():
            return out
        values = scores[scored]
        frac = self.ranks.fraction_above(values)
        out[scored] = np.minimum(frac, (self.n - 1) / self.n)
        return out


# --- phase 2: exact counts for the report ---------------------------------------------------


def _count_shard(
    shard: ShardRef, *, fs: fsspec.AbstractFileSystem, work_dir: str, cfg: TopFractionConfig
) -> dict[str, Any]:
    """Phase 2: the histogram of kept and rejected scores (the run's fixed bins), the kept
    count, the lowest score kept and the highest rejected."""
    column, fraction = cfg.column, cfg.keep_top_fraction
    ranking = Ranking(fs, work_dir)
    histogram = ScoreHistogram({})
    kept = 0
    lowest_kept, highest_rejected = np.inf, -np.inf
    for batch in shard.iter_batches(fs, columns=[column]):
        values = numeric_column(pa.Table.from_batches([batch]), column)
        is_kept = ranking.frac_above(values) < fraction
        # +-inf into the end bins (the histogram counts only finite values); NaN stays missing.
        histogram.observe(np.clip(values, -_HUGE, _HUGE), is_kept)
        scored = ~np.isnan(values)
        kept += int(is_kept.sum())
        if is_kept.any():
            lowest_kept = min(lowest_kept, float(values[is_kept].min()))
        if (scored & ~is_kept).any():
            highest_rejected = max(highest_rejected, float(values[scored & ~is_kept].max()))
    return {
        "histogram": histogram.to_dict(),  # plain data: the task's result is recorded
        "kept": kept,
        "lowest_kept": lowest_kept,
        "highest_rejected": highest_rejected,
    }


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


class TopFractionStage(GlobalStage):
    """Keeps the top fraction of the corpus by a score, ranked by a mergeable quantile summary."""

    config_cls = TopFractionConfig
    threshold_keys = frozenset({"keep_top_fraction"})
    requires = (DEFAULT_COLUMN,)  # for the default config; contract() follows `column`
    score_columns = (frac_above_column(DEFAULT_COLUMN),)

    config: TopFractionConfig

    @classmethod
    def contract(cls, config: TopFractionConfig) -> Contract:  # type: ignore[override]
        """Ranks the configured column and adds `<column>_frac_above`."""
        return Contract(
            name=cls.name,
            kind=cls.kind,
            requires=(config.column,),
            produces=(frac_above_column(config.column),),
            resources=cls.resources,
        )

    def _check_type(self, fs: fsspec.AbstractFileSystem, shards: list[ShardRef]) -> None:
        """A ConfigError unless the column is numeric (read from the first shard's schema)."""
        column = self.config.column
        for shard in shards:
            with fs.open(shard.path, "rb") as f:
                schema = pq.read_schema(f)
            if column not in schema.names:
                raise ConfigError(f"top_fraction.column: the input has no column {column!r}")
            type_ = schema.field(column).type
            numeric = pa.types.is_integer(type_) or pa.types.is_floating(type_)
            if not (numeric or pa.types.is_null(type_)):  # null: no document has a score
                raise ConfigError(
                    f"top_fraction.column: {column!r} holds {type_}, not numbers; "
                    f"name a score column (e.g. a classifier's)"
                )
            return

    def prepare(self, ctx: GlobalContext, shards: list[ShardRef]) -> dict[str, Any]:
        cfg, fs, work = self.config, ctx.fs, ctx.work_dir
        present = [s for s in shards if s.path is not None]
        self._check_type(fs, present)
        shard_stats = ctx.map(
            partial(_summarize_shard, fs=fs, work_dir=work, column=cfg.column), present
        )
        summaries = (
            load_npy(fs, _summary_path(work, s["index"])) for s in shard_stats if s["scored"]
        )
        merged, levels = merge_tree(summaries)
        save_arrays(fs, f"{work}/{SUMMARY_FILE}", s=merged)
        documents = sum(s["rows"] for s in shard_stats)
        scored = sum(s["scored"] for s in shard_stats)
        write_json_atomic(fs, f"{work}/{MANIFEST_FILE}", {"scored": scored, "levels": levels})
        parts = ctx.map(partial(_count_shard, fs=fs, work_dir=work, cfg=cfg), present)
        kept = sum(p["kept"] for p in parts)
        cut = _finite_or_none(min((p["lowest_kept"] for p in parts), default=np.inf))
        highest_rejected = max((p["highest_rejected"] for p in parts), default=-np.inf)
        histogram = ScoreHistogram({} if cut is None else {"cut": cut})
        for p in parts:
            histogram.add(ScoreHistogram.from_dict(p["histogram"]))
        return {
            "column": cfg.column,
            "documents": documents,
            "scored": scored,
            "unscored": documents - scored,
            "requested_fraction": cfg.keep_top_fraction,
            "kept": kept,
            "kept_fraction": round(kept / scored, 6) if scored else 0.0,
            "cut": cut,  # the lowest score kept
            "highest_rejected": _finite_or_none(highest_rejected),
            "summary_points": POINTS,
            "rank_error": 0.0 if scored <= POINTS else round(rank_error(levels), 6),
            # Kept vs rejected scores in the run's histogram bins, the cut marked (report.html
            # draws it as the map stages' score histograms).
            "histogram": histogram.to_dict(),
        }

    def score_shard(self, ctx: GlobalContext, shard: ShardRef, table: pa.Table) -> pa.Table:
        column = self.config.column
        if column not in table.column_names:
            raise KeyError(f"top_fraction.column is {column!r} but the shard has no such column")
        ranking = Ranking(ctx.fs, ctx.work_dir)
        frac = ranking.frac_above(numeric_column(table, column))
        return with_columns(table, {frac_above_column(column): pa.array(frac, type=pa.float64())})

    def keep(self, table: pa.Table) -> pa.Array:
        column = self.config.column
        frac = numeric_column(table, frac_above_column(column))
        below = ~(frac < self.config.keep_top_fraction)
        return reasons_from_checks(table.num_rows, [(below, reason_below(column))])
