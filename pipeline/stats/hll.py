"""HyperLogLog++ registers filled from 64-bit hashes with numpy; estimates by datasketch.

Registers follow datasketch's layout (index = low p bits, rank = 1 + leading zeros of the other
64 - p bits), so `datasketch.HyperLogLogPlusPlus(reg=...)` applies its HLL++ estimator (linear
counting for small cardinalities, empirical bias correction up to 5m) to registers we fill a
million hashes at a time instead of one Python call per item. Registers merge by element-wise
max, so shards, stages and nested subsamples combine without rereading data.

Relative standard error 1.04/sqrt(2^p) (Flajolet et al. 2007): 1.6% at p=12, 0.81% at p=14,
0.41% at p=16. datasketch supports p in [4, 16].
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.stats.hashing import bit_length

MIN_P, MAX_P = 4, 16


def relative_error(p: int) -> float:
    """The stated relative standard error of an estimate at precision p."""
    return 1.04 / math.sqrt(1 << p)


def check_precision(p: int) -> int:
    if not MIN_P <= p <= MAX_P:
        raise ValueError(f"HLL precision must be in [{MIN_P}, {MAX_P}], got {p}")
    return p


def empty(p: int, cells: int = 1) -> np.ndarray:
    """`cells` independent register arrays of 2^p int8 each, shape (cells, 2^p)."""
    return np.zeros((cells, 1 << p), dtype=np.int8)


def update(regs: np.ndarray, hashes: np.ndarray, cells: np.ndarray | int = 0) -> None:
    """Add `hashes` to the register arrays `regs[cells]` in place (cells per hash, or one)."""
    m = regs.shape[1]
    p = m.bit_length() - 1
    h = np.asarray(hashes, dtype=np.uint64)
    index = (h & np.uint64(m - 1)).astype(np.int64)
    rank = (64 - p + 1 - bit_length(h >> np.uint64(p))).astype(np.int8)
    flat = index + np.asarray(cells, dtype=np.int64) * m
    np.maximum.at(regs.reshape(-1), flat, rank)


def estimate(reg: np.ndarray) -> float:
    """HLL++ cardinality estimate of one register array."""
    from datasketch import HyperLogLogPlusPlus

    if not reg.any():
        return 0.0
    return float(HyperLogLogPlusPlus(reg=np.ascontiguousarray(reg, dtype=np.int8)).count())
