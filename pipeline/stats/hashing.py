"""Vectorised 64-bit hashing of token windows, documents and subsample levels.

An n-gram's hash is a polynomial over its token hashes modulo 2^64, computed for every start of
a batch at once from prefix sums: H(i, n) = (S[i+n] - S[i]) * P^-i with S[j] = sum_{t<j} h_t P^t
(P odd, so P^-1 exists mod 2^64), then mixed with MurmurHash3's fmix64 (a bijection). Two
sequences that differ collide with probability ~2^-60 at worst (the 2-adic valuation of P^m - 1
is small for P = 3 mod 4); 128-bit mode runs two independent polynomials (other token salt and
P) for corpora over 10^9 items, where 64 bits would expect n^2/2^65 > 0.03 colliding pairs.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import xxhash

from pipeline.text.normalize import normalizer

_C1 = np.uint64(0xFF51AFD7ED558CCD)
_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
# Odd multipliers = 3 mod 4; the second polynomial also re-salts the token hashes.
_BASES = (0x9E3779B97F4A7C17 | 3, 0xD6E8FEB86659FD93 | 3)
_SALTS = (0, 0x5851F42D4C957F2D)
MASK64 = (1 << 64) - 1


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, element-wise (a bijection that spreads every input bit)."""
    x = np.asarray(x, dtype=np.uint64).copy()
    x ^= x >> _S33
    x *= _C1
    x ^= x >> _S33
    x *= _C2
    x ^= x >> _S33
    return x


@cache
def _powers(base: int, inverse: bool, size: int) -> np.ndarray:
    """base^i (or base^-i) mod 2^64 for i < size (size rounded up to a power of two)."""
    b = pow(base, -1, 1 << 64) if inverse else base
    out = np.empty(size, dtype=np.uint64)
    out[0] = 1
    if size > 1:
        out[1:] = b
        np.cumprod(out, out=out)  # uint64 products wrap modulo 2^64
    return out


def _pows(base: int, inverse: bool, n: int) -> np.ndarray:
    size = 1 << max(10, int(n - 1).bit_length())
    return _powers(base, inverse, size)[:n]


def window_hashes(
    tokens: np.ndarray, lengths: np.ndarray, n: int, lane: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every length-`n` token window inside each document of a flat batch.

    `tokens` is the concatenation of the documents' token hashes, `lengths` their lengths.
    Returns (hashes, starts): one uint64 hash per window and its start offset in `tokens`.
    `lane` 0/1 selects one of two independent hash functions (128-bit mode uses both).
    """
    total = int(tokens.size)
    if total < n:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    ends = np.cumsum(lengths, dtype=np.int64)
    doc_start = np.repeat(ends - lengths, lengths)
    pos = np.arange(total, dtype=np.int64)
    valid = pos - doc_start <= np.repeat(lengths, lengths) - n
    starts = pos[valid]
    if starts.size == 0:
        return np.empty(0, np.uint64), starts
    base = _BASES[lane]
    toks = tokens if _SALTS[lane] == 0 else fmix64(tokens ^ np.uint64(_SALTS[lane]))
    prefix = np.zeros(total + 1, dtype=np.uint64)
    np.cumsum(toks * _pows(base, False, total), out=prefix[1:])
    h = (prefix[starts + n] - prefix[starts]) * _pows(base, True, total)[starts]
    return fmix64(h ^ np.uint64(n)), starts


def doc_hashes(texts: list[str]) -> np.ndarray:
    """128-bit xxh3 of each text normalised with the `nfc_strip` preset (NFC, stripped), as an
    (n, 2) uint64 array (hi, lo): the distinct-document key, as exact dedup's default."""
    norm = normalizer("nfc_strip")
    out = np.empty((len(texts), 2), dtype=np.uint64)
    for i, text in enumerate(texts):
        v = xxhash.xxh3_128_intdigest(norm(text).encode())
        out[i, 0] = v >> 64
        out[i, 1] = v & MASK64
    return out


def bit_length(x: np.ndarray) -> np.ndarray:
    """Number of significant bits of each uint64 (0 for 0), exactly, without float rounding."""
    x = np.asarray(x, dtype=np.uint64).copy()
    out = np.zeros(x.shape, dtype=np.int16)
    for shift in (32, 16, 8, 4, 2, 1):
        high = x >> np.uint64(shift)
        moved = high != 0
        out += moved * np.int16(shift)
        x = np.where(moved, high, x)
    return out + (x != 0)


def subsample_levels(ids: list[str], seed: int, max_level: int) -> np.ndarray:
    """Nested-subsample level of each document id: P(level >= k) = 2^-k, capped at max_level.

    D_k = {documents with level >= k} is a uniform 2^-k sample and D_{k+1} is inside D_k; the
    level depends only on (id, seed), so it is stable across shards, stages and reruns.
    """
    h = np.fromiter((xxhash.xxh3_64_intdigest(i.encode(), seed) for i in ids), np.uint64, len(ids))
    zeros = 64 - bit_length(h)  # leading zeros of a uniform 64-bit value
    return np.minimum(zeros, max_level).astype(np.uint8)
