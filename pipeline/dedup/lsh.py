"""LSH banding: the S-curve, datasketch's choice of (bands, rows) and 64-bit band hashes.

A pair with Jaccard similarity s shares at least one of b bands of r rows with probability
P(s) = 1 - (1 - s^r)^b (ALGORITHMS.md 2.3). `optimal_params` reproduces datasketch's
`_optimal_param`: the (b, r) with b*r <= num_perm minimising w_fp * FP + w_fn * FN, where FP is
the area under P below the threshold and FN the area above P beyond it (trapezoid rule on a fine
grid instead of scipy's quad; same choices on the documented cases, tests check them).
"""

from __future__ import annotations

import numpy as np

from pipeline.dedup.kernels import fmix64

PRESETS: dict[str, tuple[int, int]] = {
    "fineweb": (14, 8),  # datatrove MinhashConfig defaults, 112 hashes, ~0.72 threshold
    "refinedweb": (450, 20),  # RefinedWeb App. G / FineWeb reading, 9,000 hashes, ~0.74
}
S_CURVE_POINTS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
_GRID = 2001
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2


def collision_probability(s: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """P(s) = 1 - (1 - s^r)^b, the probability that a pair at Jaccard s becomes a candidate."""
    return 1.0 - (1.0 - np.asarray(s, dtype=np.float64) ** rows) ** bands


def s_curve(bands: int, rows: int, points: tuple[float, ...] = S_CURVE_POINTS) -> dict[str, float]:
    """P(s) at each point, keyed "0.50" ... "0.95" (for the report)."""
    return {f"{s:.2f}": round(float(collision_probability(s, bands, rows)), 4) for s in points}


def half_point(bands: int, rows: int) -> float:
    """The Jaccard s at which P(s) = 1/2: (1 - 2^(-1/b))^(1/r)."""
    return float((1.0 - 2.0 ** (-1.0 / bands)) ** (1.0 / rows))


def optimal_params(
    threshold: float,
    num_perm: int,
    false_positive_weight: float = 0.5,
    false_negative_weight: float = 0.5,
) -> tuple[int, int]:
    """(bands, rows) minimising the weighted false-positive/negative areas (datasketch)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    lo = np.linspace(0.0, threshold, _GRID)
    hi = np.linspace(threshold, 1.0, _GRID)
    best, best_err = (1, 1), np.inf
    for b in range(1, num_perm + 1):
        r = np.arange(1, num_perm // b + 1, dtype=np.float64)[:, None]
        fp = _trapezoid(1.0 - (1.0 - lo[None, :] ** r) ** b, lo, axis=1)
        fn = _trapezoid((1.0 - hi[None, :] ** r) ** b, hi, axis=1)
        err = false_positive_weight * fp + false_negative_weight * fn
        i = int(np.argmin(err))
        if err[i] < best_err:
            best, best_err = (b, i + 1), err[i]
    return best


def band_hashes(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n_docs, bands) uint64: each band's r slots hashed to 64 bits, the band index mixed in
    (so equal values in different bands never meet). Slots past bands*rows are unused."""
    n = signatures.shape[0]
    if signatures.shape[1] < bands * rows:
        raise ValueError(f"{signatures.shape[1]} hashes cannot fill {bands} bands x {rows} rows")
    grid = signatures[:, : bands * rows].reshape(n, bands, rows)
    with np.errstate(over="ignore"):
        acc = np.broadcast_to(fmix64(np.arange(1, bands + 1, dtype=np.uint64)), (n, bands)).copy()
        for j in range(rows):
            acc = fmix64(acc ^ grid[:, :, j])
    return acc
