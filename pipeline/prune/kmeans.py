"""Spherical k-means over L2-normalised embeddings, trained on a bounded sample.

Training (Lloyd iterations on cosine similarity, random initial centres as in faiss) runs in
float32 on at most `max_points` rows. Centroids are then normalised and rounded to float16, like
the embeddings, so assignment is exact: a product of two float16 values is exact in float64 and
so is the sum of d of them (all are multiples of 2^-48 below 2^5), whatever the summation order.
Blocked and unblocked products, and a brute-force reference, therefore give bit-identical
similarities, assignments and orders.
"""

from __future__ import annotations

import math

import numpy as np

CHUNK = 8192  # rows per assignment chunk: CHUNK x K float64 similarities in memory
POINTS_PER_CENTROID = 256  # faiss' default cap on training points per centroid


def auto_k(n: int) -> int:
    """Default number of clusters for n points: round(sqrt(n)), at least 1, at most n."""
    return max(1, min(n, round(math.sqrt(n))))


def train_size(n: int, k: int, max_points: int) -> int:
    """Training rows for k clusters over n points: min(n, 256 k, max_points), at least k."""
    return min(n, max(k, min(POINTS_PER_CENTROID * k, max_points)))


def unit_fp16(x: np.ndarray) -> np.ndarray:
    """Rows L2-normalised (in float64) then rounded to float16; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float16)


def _nearest32(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre (highest dot product) of each row, float32, chunked."""
    labels = np.empty(len(x), dtype=np.int64)
    sims = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), CHUNK):
        s = x[start : start + CHUNK] @ c.T
        lab = s.argmax(axis=1)
        labels[start : start + CHUNK] = lab
        sims[start : start + CHUNK] = s[np.arange(len(s)), lab]
    return labels, sims


def train(x: np.ndarray, k: int, iters: int = 20, seed: int = 0) -> np.ndarray:
    """(k, d) float16 unit centroids of the rows of `x` (normalised float32/float16).

    Empty clusters are re-seeded with the rows farthest from their centre. Stops early when no
    assignment changes.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    m, d = x.shape
    if m == 0:
        raise ValueError("k-means needs at least one point")
    k = min(k, m)
    rng = np.random.default_rng(seed)
    centres = x[np.sort(rng.choice(m, size=k, replace=False))].copy()
    labels = np.full(m, -1, dtype=np.int64)
    for _ in range(max(1, iters)):
        new_labels, sims = _nearest32(x, centres)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        order = np.argsort(labels, kind="stable")
        present, starts = np.unique(labels[order], return_index=True)
        sums = np.add.reduceat(x[order].astype(np.float64), starts, axis=0)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        ok = norms[:, 0] > 0
        centres[present[ok]] = (sums[ok] / norms[ok]).astype(np.float32)
        empty = np.setdiff1d(np.arange(k), present)
        if len(empty):
            far = np.argsort(sims, kind="stable")[: len(empty)]
            centres[empty] = x[far]
    return unit_fp16(centres)


def assign(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest centroid of each float16 row: (labels int32, cosine similarity float64).

    Ties go to the lowest centroid index. Memory: CHUNK x K float64 at a time.
    """
    c = np.asarray(centroids, dtype=np.float64)
    labels = np.empty(len(x), dtype=np.int32)
    sims = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), CHUNK):
        s = np.asarray(x[start : start + CHUNK], dtype=np.float64) @ c.T
        lab = s.argmax(axis=1)
        labels[start : start + CHUNK] = lab
        sims[start : start + CHUNK] = s[np.arange(len(s)), lab]
    return labels, sims
