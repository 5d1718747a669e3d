"""MinHash signatures: the datasketch permutation family, vectorised over a batch of documents.

Schemes (`permutation`):

- `mersenne` (default): h_i(x) = ((a_i*x + b_i) mod 2^64) mod (2^61 - 1), a_i in [1, p), b_i in
  [0, p) drawn in pairs from `numpy.random.RandomState(seed)`, exactly as datasketch's "legacy"
  scheme (the one datasketch used before 2.0 and that datatrove uses, ALGORITHMS.md 2.2; numpy's
  uint64 wraparound included). With `hash_bits: 32` values are masked to 32 bits and signatures
  equal `datasketch.MinHash(num_perm, seed, scheme="legacy")` fed the same shingle hashes.
- `affine64`: h_i(x) = a_i*fmix64(x) + b_i mod 2^64 with odd a_i, equal to datasketch 2.x's
  `scheme="affine64"` (a bijection per permutation; ~10% cheaper here).

Signature slot i of a document = min over its shingle hashes of h_i. Documents without shingles
get all-ones rows and are excluded from banding by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import pyarrow as pa

from pipeline.dedup import kernels
from pipeline.dedup.shingles import ShingleBatch, ShingleHash, shingle_hashes
from pipeline.text.normalize import PRESETS, TextNorm

Scheme = Literal["mersenne", "affine64"]
# Documents are hashed in slices of at most this many UTF-8 bytes (bounds temporary memory to
# ~10 bytes per input byte).
SLICE_BYTES = 8 << 20


def permutations(
    num_perm: int, seed: int, scheme: Scheme = "mersenne"
) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) as datasketch draws them for `scheme` ("mersenne" = its "legacy")."""
    gen = np.random.RandomState(seed)
    if scheme == "mersenne":
        pairs = [
            (
                gen.randint(1, kernels.MERSENNE, dtype=np.uint64),
                gen.randint(0, kernels.MERSENNE, dtype=np.uint64),
            )
            for _ in range(num_perm)
        ]
        a, b = np.array(pairs, dtype=np.uint64).reshape(num_perm, 2).T
        return np.ascontiguousarray(a), np.ascontiguousarray(b)
    if scheme == "affine64":
        a = gen.randint(0, 1 << 63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        b = gen.randint(0, 1 << 64, num_perm, dtype=np.uint64)
        return a, b
    raise ValueError(f"unknown permutation scheme {scheme!r}")


@dataclass(frozen=True)
class MinHasher:
    """Shingling + signature settings; `signatures` maps texts to an (n_docs, num_perm) array."""

    num_perm: int = 112
    seed: int = 1
    ngram_size: int = 5
    scheme: Scheme = "mersenne"
    hash_bits: Literal[32, 64] = 64
    shingle_hash: ShingleHash = "words64"
    norm: TextNorm = PRESETS["fineweb"]
    engine: kernels.Engine = "auto"

    def __post_init__(self) -> None:
        if self.scheme == "affine64" and self.hash_bits != 64:
            raise ValueError("permutation 'affine64' needs hash_bits 64")

    @cached_property
    def params(self) -> tuple[np.ndarray, np.ndarray]:
        return permutations(self.num_perm, self.seed, self.scheme)

    @property
    def mask(self) -> np.uint64:
        return np.uint64((1 << self.hash_bits) - 1)

    def shingles(
        self,
        texts: Sequence[str | None] | pa.Array | pa.ChunkedArray,
        langs: Sequence[str | None] | None = None,
    ) -> ShingleBatch:
        return shingle_hashes(
            texts,
            langs,
            n=self.ngram_size,
            kind=self.shingle_hash,
            norm=self.norm,
            engine=self.engine,
        )

    def from_shingles(self, batch: ShingleBatch) -> np.ndarray:
        """Signatures of documents given their shingle hashes."""
        a, b = self.params
        return kernels.minhash(
            batch.hashes, batch.offsets, a, b, self.scheme, self.mask, self.engine
        )

    def signatures(
        self,
        texts: Sequence[str | None] | pa.Array | pa.ChunkedArray,
        langs: Sequence[str | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(signatures (n_docs, num_perm) uint64, shingle counts (n_docs,) int64)."""
        n = len(texts)
        sig = np.empty((n, self.num_perm), dtype=np.uint64)
        counts = np.zeros(n, dtype=np.int64)
        for lo, hi in _slices(texts):
            part_langs = None if langs is None else langs[lo:hi]
            batch = self.shingles(texts[lo:hi], part_langs)
            sig[lo:hi] = self.from_shingles(batch)
            counts[lo:hi] = batch.counts
        return sig, counts


def _slices(texts: Sequence[str | None] | pa.Array | pa.ChunkedArray) -> list[tuple[int, int]]:
    """Row ranges of about SLICE_BYTES of text each."""
    n = len(texts)
    if isinstance(texts, pa.Array | pa.ChunkedArray):
        import pyarrow.compute as pc

        sizes = pc.binary_length(texts).fill_null(0).to_numpy(zero_copy_only=False)
    else:
        sizes = np.fromiter((len(t) if t else 0 for t in texts), dtype=np.int64, count=n)
    ends = np.cumsum(sizes)
    out: list[tuple[int, int]] = []
    lo = 0
    while lo < n:
        base = ends[lo - 1] if lo else 0
        hi = int(np.searchsorted(ends, base + SLICE_BYTES, side="right"))
        hi = max(hi, lo + 1)
        out.append((lo, min(hi, n)))
        lo = hi
    return out
