"""prepare() phases shared by `semdedup` and `d4`, each a module-level function for `ctx.map`.

Work files under the stage's work_dir (fsspec paths, written atomically):

- `light.npz`: the fitted light embedder (embedder: light only);
- `centroids-semdedup.npy`, `centroids-proto.npy` (d4): float16 unit centroids;
- `emb/NNNNNN.npy`: float16 unit embeddings of shard NNNNNN, rows in shard order;
- `scatter/PPPPP/NNNNNN.npz`: the rows of shard NNNNNN whose cluster maps to partition PPPPP
  (global position, cluster, similarity to its centroid, embedding);
- `maxsim/PPPPP.npz`: (global position, max similarity to an earlier member) per partition;
- `scores/NNNNNN.parquet`: the stage's per-document columns, read by score_shard.

Global position = the shard's offset (sum of the rows of the shards before it, in the order the
runner lists them) + row; it orders ties and never leaves the work files.
"""

from __future__ import annotations

import io
from functools import partial
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io.atomic import atomic_write
from pipeline.prune import kmeans
from pipeline.prune.embed import EmbedSpec, get_embedder
from pipeline.schema import ID, TEXT
from pipeline.stages.global_base import ShardRef

READ_BATCH = 2048  # rows embedded per call (and per Parquet batch read)


def centroids_path(work: str, level: str = "semdedup") -> str:
    return f"{work}/centroids-{level}.npy"


def emb_path(work: str, index: int) -> str:
    return f"{work}/emb/{index:06d}.npy"


def scatter_path(work: str, part: int, index: int) -> str:
    return f"{work}/scatter/{part:05d}/{index:06d}.npz"


def maxsim_path(work: str, part: int) -> str:
    return f"{work}/maxsim/{part:05d}.npz"


def scores_path(work: str, index: int) -> str:
    return f"{work}/scores/{index:06d}.parquet"


def save_arrays(fs: fsspec.AbstractFileSystem, path: str, **arrays: np.ndarray) -> None:
    """One .npy (a single unnamed array) or .npz file, written atomically."""
    buf = io.BytesIO()
    if path.endswith(".npy"):
        (array,) = arrays.values()
        np.save(buf, array)
    else:
        np.savez(buf, **arrays)
    with atomic_write(fs, path) as f:
        f.write(buf.getvalue())


def load_npy(fs: fsspec.AbstractFileSystem, path: str) -> np.ndarray:
    with fs.open(path, "rb") as f:
        return np.load(io.BytesIO(f.read()))


def load_npz(
    fs: fsspec.AbstractFileSystem, path: str, keys: tuple[str, ...] | None = None
) -> dict[str, np.ndarray]:
    """The arrays of an .npz file (only `keys` when given)."""
    with fs.open(path, "rb") as f:
        data = np.load(io.BytesIO(f.read()))
        return {k: data[k] for k in (keys or data.files)}


def write_table(fs: fsspec.AbstractFileSystem, path: str, table: pa.Table) -> None:
    """One Parquet file, written atomically."""
    with atomic_write(fs, path) as f:
        pq.write_table(table, f)


# --- light embedder fit -------------------------------------------------------------------------


def sample_texts(
    item: tuple[ShardRef, int], *, fs: fsspec.AbstractFileSystem, seed: int, max_chars: int
) -> list[str]:
    """`quota` texts drawn at random (seeded by shard) from one shard, cut to max_chars."""
    shard, quota = item
    texts = shard.read(fs, columns=[TEXT]).column(TEXT).to_pylist()
    if quota >= len(texts):
        picks = np.arange(len(texts))
    else:
        picks = np.sort(np.random.default_rng([seed, shard.index]).choice(len(texts), quota, False))
    return [(texts[i] or "")[:max_chars] for i in picks]


def quotas(rows: list[int], total: int) -> list[int]:
    """Per-shard sample sizes proportional to rows, summing to min(total, sum(rows))."""
    n = sum(rows)
    if n <= total:
        return list(rows)
    raw = np.asarray(rows, dtype=np.float64) * total / n
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(out - raw, kind="stable")[: total - int(out.sum())]] += 1
    return [int(q) for q in out]


# --- embedding ------------------------------------------------------------------------------------


def embed_shard(
    shard: ShardRef,
    *,
    fs: fsspec.AbstractFileSystem,
    work: str,
    spec: EmbedSpec,
    side_dir: str | None,
) -> dict[str, int]:
    """Embed one shard to emb/NNNNNN.npy (float16 unit rows); optionally a side Parquet file."""
    embedder = get_embedder(spec, fs)
    columns = [TEXT, ID] if side_dir else [TEXT]
    parts: list[np.ndarray] = []
    ids: list[Any] = []
    for batch in shard.iter_batches(fs, columns=columns, batch_size=READ_BATCH):
        texts = [t or "" for t in batch.column(TEXT).to_pylist()]
        parts.append(kmeans.unit_fp16(embedder.embed(texts)))
        if side_dir:
            ids.extend(batch.column(ID).to_pylist())
    emb = np.concatenate(parts) if parts else np.zeros((0, embedder.dim), dtype=np.float16)
    save_arrays(fs, emb_path(work, shard.index), emb=emb)
    if side_dir:
        side_fs, side_root = fsspec.core.url_to_fs(side_dir)
        table = pa.table({ID: pa.array(ids, pa.string()), "embedding": embedding_array(emb)})
        write_table(side_fs, f"{side_root}/part-{shard.index:05d}.parquet", table)
    return {"index": shard.index, "rows": len(emb), "dim": int(emb.shape[1])}


def embedding_array(emb: np.ndarray) -> pa.FixedSizeListArray:
    """float16 rows as an Arrow fixed_size_list<halffloat>[d] column."""
    flat = pa.array(np.ascontiguousarray(emb, dtype=np.float16).ravel(), type=pa.float16())
    return pa.FixedSizeListArray.from_arrays(flat, emb.shape[1])


# --- gathering rows and k-means -------------------------------------------------------------------


def pick_rows(item: tuple[int, np.ndarray], *, fs: fsspec.AbstractFileSystem, work: str) -> Any:
    """Rows `rows` (local indices) of shard `index`'s embeddings."""
    index, rows = item
    return load_npy(fs, emb_path(work, index))[rows]


def train_centroids(
    ctx: Any,
    layout: ShardLayout,
    candidates: np.ndarray,
    k: int,
    *,
    iters: int,
    max_train: int,
    seed: int,
) -> np.ndarray:
    """k float16 unit centroids trained on a seeded sample of the global positions `candidates`."""
    rng = np.random.default_rng(seed)
    m = kmeans.train_size(len(candidates), k, max_train)
    sample = np.sort(rng.choice(candidates, size=m, replace=False))
    items = layout.split(sample)
    rows = ctx.map(partial(pick_rows, fs=ctx.fs, work=ctx.work_dir), items)
    x = np.concatenate(rows) if rows else np.zeros((0, layout.dim), dtype=np.float16)
    return kmeans.train(x, k, iters=iters, seed=seed)


class ShardLayout:
    """Where each shard's rows sit in the global position space."""

    def __init__(self, indices: list[int], rows: list[int], dim: int) -> None:
        self.indices = indices
        self.rows = rows
        self.dim = dim
        self.offsets = np.r_[0, np.cumsum(rows)].astype(np.int64)
        self.total = int(self.offsets[-1])

    def split(self, positions: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Sorted global positions -> [(shard index, local rows)] for shards that have any."""
        cuts = np.searchsorted(positions, self.offsets)
        out = []
        for i, index in enumerate(self.indices):
            local = positions[cuts[i] : cuts[i + 1]] - self.offsets[i]
            if len(local):
                out.append((index, local))
        return out

    def shard_slice(self, index: int) -> slice:
        i = self.indices.index(index)
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))


# --- assignment ------------------------------------------------------------------------------------


def assign_and_scatter(
    item: tuple[int, int],
    *,
    fs: fsspec.AbstractFileSystem,
    work: str,
    centroids: np.ndarray,
    parts: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Assign one shard's rows to clusters and write them to partition files (cluster mod P).

    Returns (cluster int32, similarity to its centroid float64) in row order.
    """
    index, offset = item
    emb = load_npy(fs, emb_path(work, index))
    labels, sims = kmeans.assign(emb, centroids)
    part_of = labels % parts
    for p in np.unique(part_of):
        rows = np.flatnonzero(part_of == p)
        save_arrays(
            fs,
            scatter_path(work, int(p), index),
            pos=rows.astype(np.int64) + offset,
            cluster=labels[rows],
            sim=sims[rows],
            emb=emb[rows],
        )
    return labels, sims


def assign_rows(
    item: tuple[int, np.ndarray],
    *,
    fs: fsspec.AbstractFileSystem,
    work: str,
    centroids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Assign the given local rows of one shard to the nearest centroid."""
    index, rows = item
    return kmeans.assign(load_npy(fs, emb_path(work, index))[rows], centroids)
