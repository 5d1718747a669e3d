"""The quantile summary of top_fraction: exact while small, within its stated rank error bound
through many merge levels, deterministic, and ties merged into one value."""

from __future__ import annotations

import numpy as np

from pipeline.stages.quantiles import Ranks, merge, merge_tree, rank_error, summarize


def _true_above(everything: np.ndarray, x: np.ndarray) -> np.ndarray:
    ordered = np.sort(everything)
    return (len(ordered) - np.searchsorted(ordered, x, side="right")) / len(ordered)


def test_small_inputs_are_exact() -> None:
    values = np.array([3.0, 1.0, 2.0, 2.0, 5.0])
    summary = summarize(values, points=8)
    assert summary["value"].tolist() == [1.0, 2.0, 3.0, 5.0]
    assert summary["weight"].tolist() == [1.0, 2.0, 1.0, 1.0]
    ranks = Ranks(merge([summary, summarize(np.array([2.0, 4.0]), points=8)], points=8))
    assert ranks.fraction_above(np.array([5.0, 4.0, 2.0, 0.0, 9.0])).tolist() == [
        0.0,
        1 / 7,
        3 / 7,
        1.0,
        0.0,
    ]


def test_the_rank_error_stays_within_the_bound_through_merge_levels() -> None:
    """100 shards of 1,000 values, 64 points, fan-out 8: 100 -> 13 -> 2 -> 1 merges (3 levels),
    4 compressions of every value's weight: error <= 4 / 128."""
    rng = np.random.default_rng(3)
    shards = [rng.lognormal(size=1000) for _ in range(100)]
    merged, levels = merge_tree((summarize(s, points=64) for s in shards), points=64, fanout=8)
    assert levels == 3 and len(merged) <= 64
    assert np.isclose(merged["weight"].sum(), 100_000)
    everything = np.concatenate(shards)
    probe = np.quantile(everything, np.linspace(0, 1, 501))
    error = np.abs(Ranks(merged).fraction_above(probe) - _true_above(everything, probe))
    assert 0.005 < error.max() <= rank_error(levels, points=64) == 4 / 128
    # Deterministic: the same input in the same order gives the very same summary.
    again, _ = merge_tree((summarize(s, points=64) for s in shards), points=64, fanout=8)
    assert again.tobytes() == merged.tobytes()


def test_ties_stay_one_value_and_empty_inputs_merge() -> None:
    # Compressed to 2 points: the values at cumulative weight 250 and 750 of 1,000.
    summary = summarize(np.array([1.0] * 500 + [2.0] * 300 + [3.0] * 200), points=2)
    assert summary["value"].tolist() == [1.0, 2.0]
    assert summary["weight"].tolist() == [500.0, 500.0]
    tied = merge([summarize(np.array([1.0, 1.0])), summarize(np.array([1.0]))])
    assert tied["value"].tolist() == [1.0] and tied["weight"].tolist() == [3.0]
    merged, levels = merge_tree([])
    assert len(merged) == 0 and levels == 1
    assert Ranks(merged).fraction_above(np.array([1.0])).tolist() == [1.0]
