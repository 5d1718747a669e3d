"""SemDeDup (Abbas et al. 2023; ALGORITHMS.md 1.2) and the `semdedup` stage.

Within each k-means cluster, members are ordered farthest-from-centroid first (`which_to_keep:
hard`; `easy` reverses, `random` shuffles by a seeded hash), ties by global position. For each
member j, M[j] = max over earlier members i < j of cos(x_i, x_j) -- against every earlier member,
removed or not; the first member has no M (null). A member is removed iff M > 1 - eps, or, by
ratio, iff it is among the 1 - r_dedup fraction of all documents with the highest M. M is the
true maximum (the reference code's zeroed lower triangle floors it at 0, which changes no decision
for eps <= 1).

Memory: a cluster's similarities are computed in blocks of `block_size` x `block_size`, so a
cluster of any size needs O(block_size^2 + block_size * d) memory and every pair i < j is still
seen. Clusters are spread over P = ctx.num_partitions partitions (cluster mod P); a partition
task holds ~40 bytes per document of its partition (position, cluster, similarity, order) and
gathers the embeddings, one shard slice at a time and in processing order, into a local
temporary memmap when they exceed MEMMAP_BYTES (2d bytes per document). Products are exact
(float16 inputs in float64, see kmeans), so the result does not depend on the block size. The
driver holds ~70 bytes per document (cluster ids, similarities, M, ranks; d4's proto columns).

Stored columns (prefix `semdedup_`, `d4_` in the d4 stage): `cluster`, `centroid_distance`
(1 - cosine to its centroid), `max_sim` (M, null for none), `dedup_rank_frac` (midpoint quantile
of M over all documents, ties by position), and the `embedding` when asked. eps and r_dedup are
pure thresholds on max_sim and dedup_rank_frac.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Literal

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import ConfigError
from pipeline.prune import kmeans, phases
from pipeline.prune.config import PruneConfig
from pipeline.prune.embed import hf_model_problem
from pipeline.prune.prototypes import rank_frac
from pipeline.stages.base import reasons_from_checks
from pipeline.stages.contract import Contract, Resources
from pipeline.stages.global_base import GlobalContext, GlobalStage, ShardRef
from pipeline.text.batch import numeric_column, with_columns

MEMMAP_BYTES = 256 * 2**20  # partitions with more embedding bytes than this go to a memmap
Which = Literal["hard", "easy", "random"]


# --- the kernel -----------------------------------------------------------------------------------


def max_sim_earlier(x: np.ndarray, block: int) -> np.ndarray:
    """M[j] = max_{i<j} x_i . x_j for rows in processing order (-inf for j = 0), float64.

    Blocked over column blocks J and row blocks I <= J; memory O(block^2). `x` may be a memmap.
    """
    n = len(x)
    out = np.full(n, -np.inf)
    for j0 in range(0, n, block):
        j1 = min(n, j0 + block)
        xj = np.asarray(x[j0:j1], dtype=np.float64)
        best = out[j0:j1]
        for i0 in range(0, j1, block):
            i1 = min(j1, i0 + block)
            s = np.asarray(x[i0:i1], dtype=np.float64) @ xj.T  # s[i, j]
            if i0 == j0:
                s[np.tril_indices(len(s), 0, s.shape[1])] = -np.inf  # keep i < j only
            np.maximum(best, s.max(axis=0), out=best)
    return out


def _mix64(v: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a seeded pseudo-random but reproducible order key."""
    z = v.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def processing_order(
    cluster: np.ndarray, sim: np.ndarray, pos: np.ndarray, which: Which, seed: int
) -> np.ndarray:
    """Row order: by cluster, then farthest first (hard) / nearest first / random, then pos."""
    if which == "hard":
        key: np.ndarray = sim  # lowest similarity = largest distance first
    elif which == "easy":
        key = -sim
    else:
        with np.errstate(over="ignore"):
            key = _mix64(pos.astype(np.uint64) ^ _mix64(np.array([seed], dtype=np.uint64)))
    return np.lexsort((pos, key, cluster))


def dedup_removed(
    max_sim: np.ndarray, rank_fraction: np.ndarray, eps: float | None, r_dedup: float | None
) -> np.ndarray:
    """The SemDeDup decision from stored columns: M > 1 - eps, or rank fraction >= r_dedup."""
    with np.errstate(invalid="ignore"):
        if eps is not None:
            return np.asarray(max_sim, dtype=np.float64) > 1.0 - eps  # NaN (no M) is kept
        assert r_dedup is not None
        return np.asarray(rank_fraction, dtype=np.float64) >= r_dedup


# --- the partition phase --------------------------------------------------------------------------


def semdedup_partition(
    item: tuple[int, list[str]],
    *,
    fs: fsspec.AbstractFileSystem,
    work: str,
    which: Which,
    seed: int,
    block: int,
) -> dict[str, int]:
    """M for every row of one partition (its clusters are whole here); writes maxsim/PPPPP.npz."""
    part, files = item
    meta = [phases.load_npz(fs, f, ("pos", "cluster", "sim")) for f in files]
    sizes_in = [len(m["pos"]) for m in meta]
    pos = np.concatenate([m["pos"] for m in meta])
    cluster = np.concatenate([m["cluster"] for m in meta])
    sim = np.concatenate([m["sim"] for m in meta])
    del meta
    order = processing_order(cluster, sim, pos, which, seed)
    dest = np.empty(len(order), dtype=np.int64)
    dest[order] = np.arange(len(order))
    n = len(order)
    with tempfile.TemporaryDirectory(prefix="semdedup-") as tmp:
        x: np.ndarray | None = None
        start = 0
        for path, rows in zip(files, sizes_in, strict=True):  # one shard's slice at a time
            emb = phases.load_npz(fs, path, ("emb",))["emb"]
            if x is None:
                shape = (n, emb.shape[1])
                x = (
                    np.lib.format.open_memmap(
                        f"{tmp}/x.npy", mode="w+", dtype=np.float16, shape=shape
                    )
                    if n * emb.shape[1] * 2 > MEMMAP_BYTES
                    else np.empty(shape, dtype=np.float16)
                )
            x[dest[start : start + rows]] = emb
            start += rows
        assert x is not None
        sorted_cluster = cluster[order]
        bounds = np.flatnonzero(np.r_[True, sorted_cluster[1:] != sorted_cluster[:-1], True])
        m_sorted = np.empty(n, dtype=np.float64)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            m_sorted[a:b] = max_sim_earlier(x[a:b], block)
        del x
    phases.save_arrays(fs, phases.maxsim_path(work, part), pos=pos[order], max_sim=m_sorted)
    sizes = np.diff(bounds)
    return {
        "rows": n,
        "clusters": len(sizes),
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "pairs": int((sizes * (sizes - 1) // 2).sum()),
    }


# --- the driver side --------------------------------------------------------------------------------


@dataclass
class DedupState:
    """Per-document SemDeDup results over the global positions, plus the run summary."""

    layout: phases.ShardLayout
    cluster: np.ndarray  # int32
    sim: np.ndarray  # float64, cosine to its centroid
    max_sim: np.ndarray  # float64, NaN = no earlier member
    rank: np.ndarray  # float64, dedup rank fraction
    removed: np.ndarray  # bool
    summary: dict[str, Any] = field(default_factory=dict)


def _embed_all(ctx: GlobalContext, cfg: PruneConfig, present: list[ShardRef]) -> list[dict]:
    spec = cfg.embed_spec()
    if cfg.embedder == "light":
        from pipeline.prune.light import LightEmbedder

        quota = phases.quotas([s.num_rows for s in present], cfg.light_fit_docs)
        texts = ctx.map(
            partial(phases.sample_texts, fs=ctx.fs, seed=cfg.seed, max_chars=cfg.max_chars),
            list(zip(present, quota, strict=True)),
        )
        model = LightEmbedder.fit(
            [t for chunk in texts for t in chunk],
            features=cfg.light_features,
            ngram_max=cfg.light_ngram_max,
            dim=cfg.light_dim,
            seed=cfg.seed,
            max_chars=cfg.max_chars,
        )
        path = f"{ctx.work_dir}/light.npz"
        model.save(ctx.fs, path)
        spec = cfg.embed_spec(light_model=path)
    side = cfg.embeddings_dir if cfg.embeddings == "side_file" else None
    return ctx.map(
        partial(phases.embed_shard, fs=ctx.fs, work=ctx.work_dir, spec=spec, side_dir=side),
        present,
        num_gpus=cfg.embed_gpus(),
    )


def run_semdedup(ctx: GlobalContext, shards: list[ShardRef], cfg: PruneConfig) -> DedupState:
    """Embed, cluster and compute M for every document; decide removals (driver side)."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    present = [s for s in shards if s.path is not None]
    embedded = _embed_all(ctx, cfg, present)
    dims = {e["dim"] for e in embedded if e["rows"]}
    layout = phases.ShardLayout(
        [e["index"] for e in embedded], [e["rows"] for e in embedded], max(dims, default=0)
    )
    n = layout.total
    timings["embed_s"] = time.perf_counter() - t
    if n == 0:
        empty = np.zeros(0)
        state = DedupState(layout, empty.astype(np.int32), empty, empty, empty, empty.astype(bool))
        state.summary = {"documents": 0}
        return state

    t = time.perf_counter()
    k = min(cfg.n_clusters or kmeans.auto_k(n), n)
    centroids = phases.train_centroids(
        ctx,
        layout,
        np.arange(n),
        k,
        iters=cfg.kmeans_iters,
        max_train=cfg.kmeans_max_train,
        seed=cfg.seed,
    )
    phases.save_arrays(ctx.fs, phases.centroids_path(ctx.work_dir), centroids=centroids)
    timings["kmeans_s"] = time.perf_counter() - t

    t = time.perf_counter()
    parts = max(1, min(ctx.num_partitions, len(centroids)))
    items = [(idx, int(layout.offsets[i])) for i, idx in enumerate(layout.indices)]
    assigned = ctx.map(
        partial(
            phases.assign_and_scatter,
            fs=ctx.fs,
            work=ctx.work_dir,
            centroids=centroids,
            parts=parts,
        ),
        items,
    )
    cluster = np.concatenate([a[0] for a in assigned])
    sim = np.concatenate([a[1] for a in assigned])
    files: dict[int, list[str]] = {}
    for (index, _), (labels, _) in zip(items, assigned, strict=True):
        for p in np.unique(labels % parts):
            files.setdefault(int(p), []).append(phases.scatter_path(ctx.work_dir, int(p), index))
    timings["assign_s"] = time.perf_counter() - t

    t = time.perf_counter()
    stats = ctx.map(
        partial(
            semdedup_partition,
            fs=ctx.fs,
            work=ctx.work_dir,
            which=cfg.which_to_keep,
            seed=cfg.seed,
            block=cfg.block_size,
        ),
        sorted(files.items()),
    )
    max_sim = np.full(n, np.nan)
    for p in files:
        data = phases.load_npz(ctx.fs, phases.maxsim_path(ctx.work_dir, p))
        max_sim[data["pos"]] = np.where(np.isinf(data["max_sim"]), np.nan, data["max_sim"])
    rank = rank_frac(np.where(np.isnan(max_sim), -np.inf, max_sim), np.arange(n))
    removed = dedup_removed(max_sim, rank, cfg.eps, cfg.r_dedup)
    timings["semdedup_s"] = time.perf_counter() - t

    kept_sims = max_sim[~removed & ~np.isnan(max_sim)]
    summary = {
        "documents": n,
        "embedder": cfg.embedder,
        "dim": layout.dim,
        "clusters": len(centroids),
        "partitions": parts,
        "largest_cluster": max(s["largest_cluster"] for s in stats),
        "similarity_pairs": sum(s["pairs"] for s in stats),
        "dedup_kept": int((~removed).sum()),
        "dedup_keep_fraction": round(float((~removed).mean()), 6),
        # The eps the ratio amounts to: 1 - the highest max_sim that was kept.
        "effective_eps": round(1.0 - float(kept_sims.max()), 6) if len(kept_sims) else None,
        **{k: round(v, 3) for k, v in timings.items()},
    }
    return DedupState(layout, cluster, sim, max_sim, rank, removed, summary)


# --- the stage ----------------------------------------------------------------------------------------


class SemDeDupConfig(PruneConfig):
    """`semdedup` alone: keys of PruneConfig."""

    stage: Literal["semdedup"] = "semdedup"


class EmbeddingPruneStage(GlobalStage):
    """Shared score_shard for the embedding stages: per-shard columns from scores/ (+ embedding)."""

    prefix: ClassVar[str]
    config: PruneConfig

    @classmethod
    def verify(cls, config: PruneConfig, key: str, runtime: Any) -> None:  # type: ignore[override]
        """A local Hugging Face model (embedder: hf) must be a model directory: config.json
        naming a model_type, and weights."""
        if config.embedder != "hf" or config.model_path is None:
            return
        problem = hf_model_problem(Path(config.model_path).expanduser())
        if problem:
            raise ConfigError(f"{key}.model_path: {config.model_path}: {problem}")

    @classmethod
    def contract(cls, config: PruneConfig) -> Contract:  # type: ignore[override]
        """Embedding tasks may reserve GPUs; the embedding column only with embeddings: column."""
        base = super().contract(config)
        produces = tuple(
            c for c in base.produces if config.embeddings == "column" or c != cls.col("embedding")
        )
        return replace(base, produces=produces, resources=Resources(gpus=config.embed_gpus()))

    @classmethod
    def col(cls, name: str) -> str:
        return f"{cls.prefix}_{name}"

    def dedup_columns(self, state: DedupState) -> dict[str, pa.Array]:
        return {
            self.col("cluster"): pa.array(state.cluster, pa.int32()),
            self.col("centroid_distance"): pa.array(1.0 - state.sim, pa.float32()),
            self.col("max_sim"): pa.array(state.max_sim, pa.float64(), from_pandas=True),
            self.col("dedup_rank_frac"): pa.array(state.rank, pa.float64()),
        }

    def write_scores(
        self, ctx: GlobalContext, layout: phases.ShardLayout, columns: dict[str, pa.Array]
    ) -> None:
        table = pa.table(columns)
        for i, index in enumerate(layout.indices):
            start, stop = int(layout.offsets[i]), int(layout.offsets[i + 1])
            phases.write_table(
                ctx.fs, phases.scores_path(ctx.work_dir, index), table.slice(start, stop - start)
            )

    def score_shard(self, ctx: GlobalContext, shard: ShardRef, table: pa.Table) -> pa.Table:
        with ctx.fs.open(phases.scores_path(ctx.work_dir, shard.index), "rb") as f:
            scores = pq.read_table(f)
        if scores.num_rows != table.num_rows:
            raise ValueError(
                f"shard {shard.index}: prepare() saw {scores.num_rows} rows, now {table.num_rows}"
            )
        columns: dict[str, pa.Array] = {
            name: scores.column(name).combine_chunks() for name in scores.column_names
        }
        if self.config.embeddings == "column":
            emb = phases.load_npy(ctx.fs, phases.emb_path(ctx.work_dir, shard.index))
            columns = {self.col("embedding"): phases.embedding_array(emb), **columns}
        return with_columns(table, columns)

    def dedup_mask(self, table: pa.Table) -> np.ndarray:
        return dedup_removed(
            numeric_column(table, self.col("max_sim")),
            numeric_column(table, self.col("dedup_rank_frac")),
            self.config.eps,
            self.config.r_dedup,
        )


class SemDeDupStage(EmbeddingPruneStage):
    """Semantic dedup: embed, cluster, drop members too similar to an earlier cluster member."""

    prefix = "semdedup"
    config_cls = SemDeDupConfig
    threshold_keys = frozenset({"eps", "r_dedup"})
    score_columns = tuple(
        f"semdedup_{c}"
        for c in ("embedding", "cluster", "centroid_distance", "max_sim", "dedup_rank_frac")
    )
    REASON = "semdedup_duplicate"

    config: SemDeDupConfig

    def prepare(self, ctx: GlobalContext, shards: list[ShardRef]) -> dict[str, Any]:
        state = run_semdedup(ctx, shards, self.config)
        if state.layout.total:
            self.write_scores(ctx, state.layout, self.dedup_columns(state))
        return state.summary

    def keep(self, table: pa.Table) -> pa.Array:
        return reasons_from_checks(table.num_rows, [(self.dedup_mask(table), self.REASON)])
