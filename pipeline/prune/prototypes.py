"""Ranks for ratio thresholds: SSL prototypes (ALGORITHMS.md 1.3) and the SemDeDup keep ratio.

A rank fraction is the midpoint quantile q = (rank + 0.5) / n of a document in a ranking
(ties broken by global position, earlier first). Keeping the documents with q >= 1 - R keeps
round(R n) of n, so a new ratio is a pure threshold on the stored column. Prototypes rank by
distance to the nearest centroid, closest first ("easy"), either over all documents (`global`)
or within each cluster (`cluster`); the closest 1 - R_proto are dropped.
"""

from __future__ import annotations

import numpy as np


def rank_frac(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Midpoint quantile of each value in ascending order (ties by `pos`), float64."""
    n = len(values)
    order = np.lexsort((pos, values))
    rank = np.empty(n, dtype=np.float64)
    rank[order] = np.arange(n, dtype=np.float64)
    return (rank + 0.5) / max(n, 1)


def group_rank_frac(values: np.ndarray, groups: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Midpoint quantile of each value within its group (ascending, ties by `pos`)."""
    n = len(values)
    order = np.lexsort((pos, values, groups))
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    sizes = np.diff(np.r_[starts, n])
    first = np.repeat(starts, sizes)
    out = np.empty(n, dtype=np.float64)
    out[order] = (np.arange(n) - first + 0.5) / np.repeat(sizes, sizes)
    return out


def proto_removed(rank_fraction: np.ndarray, r_proto: float) -> np.ndarray:
    """Documents too close to their centroid: q < 1 - R_proto (NaN, i.e. unranked, is kept)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(rank_fraction, dtype=np.float64) < 1.0 - r_proto
