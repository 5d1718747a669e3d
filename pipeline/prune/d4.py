"""The `d4` stage: SemDeDup, then SSL prototypes on the survivors (ALGORITHMS.md 1.4).

prepare(): SemDeDup as in `semdedup` (columns prefixed `d4_`), then k-means again over the
documents SemDeDup keeps (`proto_n_clusters`, default round(sqrt(survivors))), then each
survivor's cosine distance to its nearest new centroid, ranked globally and within its cluster.
keep(): removes SemDeDup duplicates (`d4_semdedup`), then the 1 - R_proto fraction of survivors
closest to their centroid (`d4_prototype`), with R_proto = r_proto, or keep_ratio / r_dedup
(overall R = R_dedup x R_proto).

What re-thresholds and what recomputes: r_proto, keep_ratio and proto_ranking are pure
thresholds on the stored rank columns. eps and r_dedup are not: they change which documents
survive SemDeDup, hence the re-clustering and every prototype distance. (The stored d4_max_sim
and d4_dedup_rank_frac still show what another eps or r_dedup would remove, and the `semdedup`
stage re-thresholds them freely.) Embedder, k-means and which_to_keep keys recompute everything.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from pipeline.prune import kmeans, phases
from pipeline.prune.config import PruneConfig, exclusive_default
from pipeline.prune.prototypes import group_rank_frac, proto_removed, rank_frac
from pipeline.prune.semdedup import EmbeddingPruneStage, run_semdedup
from pipeline.stages.base import reasons_from_checks
from pipeline.stages.global_base import GlobalContext, ShardRef
from pipeline.text.batch import numeric_column

DEFAULT_KEEP_RATIO = 0.5


class D4Config(PruneConfig):
    """PruneConfig keys plus the prototype step's ratio, ranking and clusters."""

    stage: Literal["d4"] = "d4"
    r_proto: float | None = Field(default=None, gt=0, le=1)  # keep ratio of the prototype step
    # Or the overall keep ratio R = r_dedup x R_proto (R_proto = keep_ratio / r_dedup).
    keep_ratio: float | None = Field(default=DEFAULT_KEEP_RATIO, gt=0, le=1)
    proto_ranking: Literal["global", "cluster"] = "global"  # rank survivors globally or per cluster
    # Clusters of the k-means over SemDeDup survivors; None: round(sqrt(survivors)).
    proto_n_clusters: int | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _proto_or_overall(cls, data: Any) -> Any:
        return exclusive_default(data, "r_proto", "keep_ratio", "d4")

    @model_validator(mode="after")
    def _check_ratios(self) -> D4Config:
        if self.r_proto is None and self.keep_ratio is None:
            raise ValueError("d4: set r_proto or keep_ratio")
        if self.keep_ratio is not None:
            if self.r_dedup is None:
                raise ValueError("d4: keep_ratio needs r_dedup; with eps, set r_proto instead")
            if self.keep_ratio > self.r_dedup:
                raise ValueError(f"d4: keep_ratio {self.keep_ratio} > r_dedup {self.r_dedup}")
        return self

    @property
    def proto_keep(self) -> float:
        """R_proto: the fraction of SemDeDup survivors the prototype step keeps."""
        if self.r_proto is not None:
            return self.r_proto
        assert self.keep_ratio is not None and self.r_dedup is not None
        return self.keep_ratio / self.r_dedup


def _nullable(values: np.ndarray, valid: np.ndarray, type_: pa.DataType) -> pa.Array:
    return pa.array(values, type_, mask=~valid)


class D4Stage(EmbeddingPruneStage):
    """D4 pruning: SemDeDup then SSL prototypes, with every score stored per document."""

    prefix = "d4"
    config_cls = D4Config
    threshold_keys = frozenset({"r_proto", "keep_ratio", "proto_ranking"})
    score_columns = tuple(
        f"d4_{c}"
        for c in (
            "embedding",
            "cluster",
            "centroid_distance",
            "max_sim",
            "dedup_rank_frac",
            "proto_cluster",
            "proto_distance",
            "proto_rank_frac",
            "proto_cluster_rank_frac",
        )
    )
    REASON_DEDUP = "d4_semdedup"
    REASON_PROTO = "d4_prototype"

    config: D4Config

    def prepare(self, ctx: GlobalContext, shards: list[ShardRef]) -> dict[str, Any]:
        cfg = self.config
        state = run_semdedup(ctx, shards, cfg)
        n = state.layout.total
        if n == 0:
            return state.summary
        t = time.perf_counter()
        survivors = np.flatnonzero(~state.removed)
        k = min(cfg.proto_n_clusters or kmeans.auto_k(len(survivors)), len(survivors))
        centroids = phases.train_centroids(
            ctx,
            state.layout,
            survivors,
            k,
            iters=cfg.kmeans_iters,
            max_train=cfg.kmeans_max_train,
            seed=cfg.seed + 1,
        )
        phases.save_arrays(
            ctx.fs, phases.centroids_path(ctx.work_dir, "proto"), centroids=centroids
        )
        assigned = ctx.map(
            partial(phases.assign_rows, fs=ctx.fs, work=ctx.work_dir, centroids=centroids),
            state.layout.split(survivors),
        )
        p_cluster = np.full(n, -1, dtype=np.int32)
        p_dist = np.full(n, np.nan)
        p_cluster[survivors] = np.concatenate([a[0] for a in assigned])
        p_dist[survivors] = 1.0 - np.concatenate([a[1] for a in assigned])
        global_rank = np.full(n, np.nan)
        cluster_rank = np.full(n, np.nan)
        global_rank[survivors] = rank_frac(p_dist[survivors], survivors)
        cluster_rank[survivors] = group_rank_frac(
            p_dist[survivors], p_cluster[survivors], survivors
        )
        valid = ~state.removed
        columns = {
            **self.dedup_columns(state),
            "d4_proto_cluster": _nullable(p_cluster, valid, pa.int32()),
            "d4_proto_distance": _nullable(p_dist.astype(np.float32), valid, pa.float32()),
            "d4_proto_rank_frac": _nullable(global_rank, valid, pa.float64()),
            "d4_proto_cluster_rank_frac": _nullable(cluster_rank, valid, pa.float64()),
        }
        self.write_scores(ctx, state.layout, columns)
        ranks = global_rank if cfg.proto_ranking == "global" else cluster_rank
        kept = int((valid & ~proto_removed(ranks, cfg.proto_keep)).sum())
        return {
            **state.summary,
            "proto_clusters": len(centroids),
            "r_proto": round(cfg.proto_keep, 6),
            "kept": kept,
            "keep_fraction": round(kept / n, 6),
            "proto_s": round(time.perf_counter() - t, 3),
        }

    def keep(self, table: pa.Table) -> pa.Array:
        cfg = self.config
        column = "proto_rank_frac" if cfg.proto_ranking == "global" else "proto_cluster_rank_frac"
        proto = proto_removed(numeric_column(table, self.col(column)), cfg.proto_keep)
        return reasons_from_checks(
            table.num_rows,
            [(self.dedup_mask(table), self.REASON_DEDUP), (proto, self.REASON_PROTO)],
        )
