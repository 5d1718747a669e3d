"""Connected components of the candidate-pair graph, in one process, vectorised with numpy.

Why one process: after LSH the graph holds only documents that have a candidate (duplicates and
their originals), and star edges give at most one edge per (document, band) bucket membership;
edges are deduplicated per partition before they get here. Memory is the int64 edge list, its
dense int64 renumbering, the unique() work arrays and ~32 bytes per node: ~135 bytes per edge of
peak RSS measured with the stage's loading and writing (scripts/bench_components.py), so 30M
candidate edges fit in ~4 GB. datatrove's cluster step is a single task too (union-find).
Beyond one task's memory, `components_distributed` finds the same components (the same roots) in
rounds of tasks, at the price of a shuffle of every edge per round.

Algorithm: nodes renumbered densely in key order, then hooking + pointer jumping (Shiloach-
Vishkin style): every root takes the smallest root among its edges' endpoints, and pointers are
jumped until every node points at its root. Each round at least halves the number of roots of
every non-trivial component, so rounds are O(log n); each is a few numpy passes over the edges.
The root of a component is its smallest key, which makes cluster ids stable and independent of
edge order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np

from pipeline.dedup.kernels import fmix64
from pipeline.dedup.workfiles import ROW_BITS, ROW_MASK
from pipeline.io.atomic import atomic_write


@dataclass
class Components:
    """Clustered documents (only those with an edge), by key order."""

    keys: np.ndarray  # int64 doc keys, sorted
    root: np.ndarray  # int64 index into keys of each node's component root (its min key)

    @property
    def cluster_id(self) -> np.ndarray:
        """Cluster id of each node = the smallest doc key of its component."""
        return self.keys[self.root]

    @property
    def size(self) -> np.ndarray:
        return np.bincount(self.root, minlength=len(self.keys))[self.root]


def connected_components(src: np.ndarray, dst: np.ndarray) -> Components:
    """Components of the undirected graph with edges (src[i], dst[i]) over int64 keys."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    keys, dense = np.unique(np.concatenate((src, dst)), return_inverse=True)
    u, v = dense[: len(src)], dense[len(src) :]
    del dense
    parent = np.arange(len(keys), dtype=np.int64)
    while True:
        pu, pv = parent[u], parent[v]
        differ = pu != pv
        if not differ.any():
            break
        lo = np.minimum(pu[differ], pv[differ])
        hi = np.maximum(pu[differ], pv[differ])
        np.minimum.at(parent, hi, lo)  # hook roots onto smaller roots
        while True:  # pointer jumping until every node points at a root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return Components(keys, parent)


def representatives(
    comp: Components, policy: str, lengths: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """Boolean mask over `comp.keys`: the document each cluster keeps.

    "first": the smallest key (first by shard, then row); "longest": the longest text (ties:
    smallest key), `lengths` aligned with `comp.keys`; "random": the smallest fmix64(key ^ seed),
    a seeded, order-independent draw.
    """
    n = len(comp.keys)
    if n == 0:
        return np.zeros(0, dtype=bool)
    idx = np.arange(n)
    if policy == "first":
        return comp.root == idx
    if policy == "longest":
        if lengths is None:
            raise ValueError("keep 'longest' needs lengths")
        order = np.lexsort((idx, -np.asarray(lengths, dtype=np.int64), comp.root))
    elif policy == "random":
        with np.errstate(over="ignore"):
            score = fmix64(comp.keys.astype(np.uint64) ^ fmix64(np.uint64(seed)))
        order = np.lexsort((idx, score, comp.root))
    else:
        raise ValueError(f"unknown keep policy {policy!r}")
    roots = comp.root[order]
    first = np.concatenate(([True], roots[1:] != roots[:-1]))
    mask = np.zeros(n, dtype=bool)
    mask[order[first]] = True
    return mask


def write_clusters(
    fs: fsspec.AbstractFileSystem,
    directory: str,
    keys: np.ndarray,
    cluster_id: np.ndarray,
    size: np.ndarray,
    is_rep: np.ndarray,
) -> None:
    """Per-shard cluster files `directory/shard-XXXXXX.npz` (rows, cluster ids, sizes,
    representative flags) of clustered documents sorted by key, so a shard loads only its rows."""
    if len(keys) == 0:
        return
    shard_of = keys >> ROW_BITS
    bounds = np.flatnonzero(np.concatenate(([True], shard_of[1:] != shard_of[:-1], [True])))
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if shard_of[lo] < 0:  # indexed documents (negative keys, dedup/index.py) have no shard
            continue
        with atomic_write(fs, f"{directory}/shard-{int(shard_of[lo]):06d}.npz") as f:
            np.savez(
                f,
                rows=keys[lo:hi] & np.int64(ROW_MASK),
                cluster_id=cluster_id[lo:hi],
                size=size[lo:hi].astype(np.int32),
                is_rep=is_rep[lo:hi],
            )


def cluster_summary(sizes: np.ndarray) -> dict[str, Any]:
    """The report's figures from the sizes of all clusters (one representative each)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    hist = np.bincount(np.floor(np.log2(sizes)).astype(np.int64)) if len(sizes) else []
    return {
        "clusters": int(len(sizes)),
        "documents_in_clusters": int(sizes.sum()),
        "duplicates": int(sizes.sum() - len(sizes)),
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "cluster_size_log2_histogram": {
            f"{2**i}-{2 ** (i + 1) - 1}": int(c) for i, c in enumerate(hist) if c
        },
    }
