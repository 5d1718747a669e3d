"""Hot loops of MinHash: shingle hashing and the permutation minimum, numba or numpy engine.

Both engines give identical values (tests check it). numba (`_numba`) decodes, normalises and
hashes in one pass and fuses the permutation step without temporaries (~12x faster than numpy's
shingles x permutations matrices); numpy is the fallback when numba is not installed.
`PIPELINE_MINHASH_ENGINE=numpy` forces it.

All arithmetic is on uint64 with wraparound, as numpy does it, which datasketch's "legacy" scheme
relies on: ((a*h + b) mod 2^64) mod (2^61 - 1).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from functools import cache
from typing import Literal

import numpy as np

from pipeline.text.normalize import (
    DIGIT,
    DROP,
    SEP,
    Tables,
    Utf8Batch,
    kept_chars,
    unspaced_docs_numpy,
)

Engine = Literal["auto", "numba", "numpy"]

MERSENNE = np.uint64((1 << 61) - 1)
MAX64 = np.uint64((1 << 64) - 1)
# Polynomial base for token hashes (odd, so invertible mod 2^64) and the fold's start value.
BASE = np.uint64(0x9E3779B97F4A7C15)
BASE_INV = np.uint64(pow(int(BASE), -1, 1 << 64))
FOLD_SEED = np.uint64(0x243F6A8885A308D3)
_FM1 = np.uint64(0xFF51AFD7ED558CCD)
_FM2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S61 = np.uint64(61)
_ONE = np.uint64(1)


@cache
def ngram_multipliers(n: int) -> np.ndarray:
    """Odd multipliers of the n-gram combination: K_t = fmix64(t + 1) | 1."""
    with np.errstate(over="ignore"):
        return fmix64(np.arange(1, n + 1, dtype=np.uint64)) | _ONE


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection), element-wise with wraparound."""
    h = h ^ (h >> _S33)
    h = h * _FM1
    h = h ^ (h >> _S33)
    h = h * _FM2
    return h ^ (h >> _S33)


@cache
def resolve_engine(engine: Engine = "auto") -> str:
    """ "numba" when requested or available (and not disabled by the environment), else "numpy"."""
    forced = os.environ.get("PIPELINE_MINHASH_ENGINE")
    if engine == "auto" and forced in ("numba", "numpy"):
        engine = forced  # type: ignore[assignment]
    if engine == "numpy":
        return "numpy"
    if importlib.util.find_spec("numba") is None:  # found, not imported: importing costs ~1 s
        if engine == "numba":
            raise ImportError("engine 'numba' needs the numba package")
        return "numpy"
    return "numba"


# Under `auto`, calls this small run on numpy while numba is not loaded in the process yet:
# importing numba and loading its cached kernels costs ~1-2.5 s on 2 cores, far more than numpy
# spends on a few documents (docs/benchmarks.md, "Start-up"). Values are identical either way.
SMALL_TEXT_BYTES = 1 << 20  # UTF-8 bytes of a batch (normalise, tokenise, hash)
SMALL_PERMUTATIONS = 10_000_000  # shingles x permutations of a batch's signatures


def engine_for(engine: Engine, work: int, small: int) -> str:
    """The engine for one call of `work` units: `resolve_engine`, except numpy for work up to
    `small` under `auto` (not forced by PIPELINE_MINHASH_ENGINE) before numba is loaded."""
    chosen = resolve_engine(engine)
    forced = os.environ.get("PIPELINE_MINHASH_ENGINE") in ("numba", "numpy")
    loaded = "pipeline.dedup._numba" in sys.modules
    if engine == "auto" and not forced and chosen == "numba" and work <= small and not loaded:
        return "numpy"
    return chosen


# --- shingle hashes (`words64`) -----------------------------------------------------------------


def unspaced_docs(batch: Utf8Batch, tab: Tables, engine: Engine = "auto") -> np.ndarray:
    """Which documents of `batch` need word segmentation (zh, ja, th, ...)."""
    if engine_for(engine, len(batch.data), SMALL_TEXT_BYTES) == "numba":
        from pipeline.dedup import _numba

        return _numba.unspaced_docs(batch.data, batch.offsets, tab.unspaced)
    return unspaced_docs_numpy(batch, tab)


def words64_shingles(
    batch: Utf8Batch, tab: Tables, n: int, engine: Engine = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """`words64` shingle hashes of a (segmented) batch: (hashes uint64, offsets int64 with
    len n_docs + 1). The normalisation rules of text/normalize.py are applied through its tables."""
    if engine_for(engine, len(batch.data), SMALL_TEXT_BYTES) == "numba":
        from pipeline.dedup import _numba

        args = (tab.cls, tab.fold, tab.numbers, n, DIGIT, SEP, DROP, ngram_multipliers(n))
        return _numba.words64(batch.data, batch.offsets, *args)
    cps, offsets = batch.codepoints()
    return _words64_numpy(cps, offsets, tab, n)


def _words64_numpy(
    cps: np.ndarray, offsets: np.ndarray, tab: Tables, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token hashes by prefix sums over the kept characters (poly(l, r) = B^(r-1) *
    (G[r] - G[l]) with G[i] = sum_{j<i} c_j B^-j), then each n-gram's combination."""
    n_docs = len(offsets) - 1
    pos, folded, token = kept_chars(cps, offsets, tab)
    size = len(folded)
    starts = np.flatnonzero(np.concatenate(([True], token[1:] != token[:-1])))
    ends = np.concatenate((starts[1:], [size])).astype(np.int64)
    if size == 0:
        starts, ends = starts[:0], ends[:0]
    word_doc = np.searchsorted(offsets, pos[starts], side="right") - 1
    words_per_doc = np.bincount(word_doc, minlength=n_docs).astype(np.int64)
    with np.errstate(over="ignore"):
        inv_pows = np.cumprod(np.full(size, BASE_INV, dtype=np.uint64))
        base_pows = np.cumprod(np.full(size, BASE, dtype=np.uint64))
        inv_pows = np.concatenate(([_ONE], inv_pows[:-1]))[:size]
        base_pows = np.concatenate(([_ONE], base_pows[:-1]))[:size]
        terms = (folded.astype(np.uint64) + _ONE) * inv_pows
        prefix = np.concatenate(([np.uint64(0)], np.cumsum(terms, dtype=np.uint64)))
        word_hash = fmix64(base_pows[ends - 1] * (prefix[ends] - prefix[starts]))

    counts = np.where(words_per_doc >= n, words_per_doc - n + 1, np.minimum(words_per_doc, 1))
    shingle_offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    first_word = np.concatenate(([0], np.cumsum(words_per_doc)[:-1])).astype(np.int64)
    doc = np.repeat(np.arange(n_docs), counts)
    start = first_word[doc] + np.arange(shingle_offsets[-1]) - shingle_offsets[doc]
    last = first_word[doc] + words_per_doc[doc] - 1
    h = np.full(shingle_offsets[-1], FOLD_SEED, dtype=np.uint64)
    top = max(len(word_hash) - 1, 0)
    mult = ngram_multipliers(n)
    with np.errstate(over="ignore"):
        for t in range(n):
            idx = start + t
            h += np.where(idx <= last, mult[t] * word_hash[np.minimum(idx, top)], np.uint64(0))
        h = fmix64(h)
    return h, shingle_offsets


# --- signatures ---------------------------------------------------------------------------------


def minhash(
    hashes: np.ndarray,
    offsets: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    scheme: str,
    mask: np.uint64 = MAX64,
    engine: Engine = "auto",
) -> np.ndarray:
    """Per document d, min over its shingles of the k permutations: (n_docs, k) uint64.

    scheme "mersenne": ((a*h + b) mod 2^64 mod (2^61-1)) & mask (datasketch "legacy");
    scheme "affine64": a*fmix64(h) + b mod 2^64 (datasketch "affine64"). Documents without
    shingles get rows of `mask` (datasketch's empty MinHash).
    """
    n_docs = len(offsets) - 1
    out = np.empty((n_docs, len(a)), dtype=np.uint64)
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    if scheme == "affine64":
        with np.errstate(over="ignore"):
            hashes = fmix64(hashes)
    if engine_for(engine, len(hashes) * len(a), SMALL_PERMUTATIONS) == "numba":
        from pipeline.dedup import _numba

        _numba.permute_min(hashes, offsets, a, b, scheme == "mersenne", np.uint64(mask), out)
    else:
        _minhash_numpy(hashes, offsets, a, b, scheme == "mersenne", np.uint64(mask), out)
    out[offsets[1:] == offsets[:-1]] = mask  # datasketch's empty MinHash
    return out


def _minhash_numpy(hashes, offsets, a, b, mersenne: bool, mask, out, chunk: int = 8192) -> None:
    """Chunks of shingles x permutations matrices, reduced per document with minimum.reduceat."""
    out.fill(MAX64)
    total = len(hashes)
    if total == 0:
        return
    doc_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    with np.errstate(over="ignore"):
        for lo in range(0, total, chunk):
            hi = min(lo + chunk, total)
            x = hashes[lo:hi, None] * a[None, :] + b[None, :]
            if mersenne:
                x = (x & MERSENNE) + (x >> _S61)
                x = np.minimum(x, x - MERSENNE)
                x &= mask
            docs = doc_of[lo:hi]
            starts = np.flatnonzero(np.concatenate(([True], docs[1:] != docs[:-1])))
            red = np.minimum.reduceat(x, starts, axis=0)
            rows = docs[starts]
            out[rows] = np.minimum(out[rows], red)
