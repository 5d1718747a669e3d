"""A deterministic, mergeable quantile summary: sorted (value, weight) pairs, at most `points`.

Why not a randomised sketch (KLL): its compactions flip coins, so two runs over the same corpus
rank documents differently, and an ablation's variants or a Ray and a local run would disagree.
This summary is a pure function of the values and their order of merging (shard order).

A summary of n values is exact (distinct values with their counts) while they have at most
`points` distinct values; beyond that it is compressed to `points` equi-depth values of weight
n / points each: the value at cumulative weight (t + 1/2) n / points, t = 0..points-1. One
compression moves the estimated count of values <= x by at most n / (2 points), so a summary
merged through L compressions (per shard, then per level of a merge tree of fan-out
`MERGE_FANOUT`) estimates every rank within L / (2 points) of the corpus: with 2,048 points,
<= 0.05% for up to 64 shards, <= 0.1% up to 262,144.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

POINTS = 2048
MERGE_FANOUT = 64
SUMMARY = np.dtype([("value", "<f8"), ("weight", "<f8")])


def _records(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    out = np.empty(len(values), dtype=SUMMARY)
    out["value"], out["weight"] = values, weights
    return out


def _compress(values: np.ndarray, weights: np.ndarray, points: int) -> np.ndarray:
    """Distinct sorted `values` with `weights` as a summary of at most `points` values."""
    if len(values) <= points:
        return _records(values, weights)
    cum = np.cumsum(weights)
    step = cum[-1] / points
    chosen = values[np.searchsorted(cum, (np.arange(points) + 0.5) * step, side="left")]
    distinct, counts = np.unique(chosen, return_counts=True)
    return _records(distinct, counts * step)


def summarize(values: np.ndarray, points: int = POINTS) -> np.ndarray:
    """The summary of `values` (finite floats; NaN is the caller's to drop)."""
    distinct, counts = np.unique(np.asarray(values, dtype=np.float64), return_counts=True)
    return _compress(distinct, counts.astype(np.float64), points)


def merge(summaries: list[np.ndarray], points: int = POINTS) -> np.ndarray:
    """One summary of the union of `summaries` (compressed only if it has > `points` values)."""
    both = np.concatenate(summaries) if summaries else np.empty(0, dtype=SUMMARY)
    both = both[np.argsort(both["value"], kind="stable")]
    distinct, starts = np.unique(both["value"], return_index=True)
    weights = np.add.reduceat(both["weight"], starts) if len(both) else np.empty(0)
    return _compress(distinct, weights, points)


def merge_tree(
    summaries: Iterable[np.ndarray], points: int = POINTS, fanout: int = MERGE_FANOUT
) -> tuple[np.ndarray, int]:
    """Merge a stream of summaries in groups of `fanout`, then those merges likewise, holding
    at most `fanout` + (their number / `fanout`) summaries. Returns (summary, merge levels)."""
    merged: list[np.ndarray] = []
    group: list[np.ndarray] = []
    for summary in summaries:
        group.append(summary)
        if len(group) == fanout:
            merged.append(merge(group, points))
            group = []
    if group or not merged:
        merged.append(merge(group, points))
    levels = 1
    while len(merged) > 1:
        merged = [merge(merged[i : i + fanout], points) for i in range(0, len(merged), fanout)]
        levels += 1
    return merged[0], levels


def rank_error(levels: int, points: int = POINTS) -> float:
    """Bound on the rank error (fraction of the corpus) after a shard summary and `levels`
    merge levels."""
    return (levels + 1) / (2 * points)


class Ranks:
    """A summary answering "what fraction of the summarised values lie above x"."""

    def __init__(self, summary: np.ndarray) -> None:
        self.values = summary["value"]
        self.cum = np.cumsum(summary["weight"])
        self.total = float(self.cum[-1]) if len(self.cum) else 0.0

    def fraction_above(self, x: np.ndarray) -> np.ndarray:
        """Estimated fraction of values strictly greater than each x (x finite)."""
        if not self.total:
            return np.ones(len(x), dtype=np.float64)
        at_or_below = np.searchsorted(self.values, x, side="right")
        below_weight = np.where(at_or_below > 0, self.cum[np.maximum(at_or_below - 1, 0)], 0.0)
        # (total - w) / total, not 1 - w / total: 10 of 100 above is exactly 0.1.
        return np.clip((self.total - below_weight) / self.total, 0.0, 1.0)
