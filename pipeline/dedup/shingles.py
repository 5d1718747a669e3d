"""Word n-gram shingles of normalised text and their 64-bit hashes.

After normalisation (text/normalize.py, tokens engine) a document is a sequence of tokens; its shingles are the n-grams
of consecutive tokens (`n` = `ngram_size`, 5 by default as in datatrove and Lee et al.). A
document with 1 to n-1 tokens has one shingle, its whole token sequence; a document with no token
has none (it never joins a cluster).

Shingle hashes (`shingle_hash`):

- `words64` (default): each token hashed as w = fmix64(poly), poly = its folded code points as a
  polynomial mod 2^64 (p = p*B + cp+1, B a fixed odd constant; fmix64 = MurmurHash3's 64-bit
  finaliser), then a shingle as fmix64(S + sum_t K_t * w_t) over its n tokens (K_t fixed odd
  multipliers, S a seed). Normalisation, tokenisation and hashing run in
  one numba (or numpy, same values) pass over a whole batch, with no Python call per character.
- `xxh3`: xxh3_64 of the UTF-8 n-gram string "w1 w2 ... wn" (a Python call per shingle; for
  interoperability with tools that hash shingle strings).
- `sha1_32`: datasketch's default `sha1_hash32` of the same string, so signatures can be checked
  bit for bit against `datasketch.MinHash(scheme="legacy")`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import sha1
from typing import Literal

import numpy as np
import pyarrow as pa
import xxhash

from pipeline.dedup import kernels
from pipeline.text.normalize import (
    NormSpec,
    Utf8Batch,
    normalize_batch,
    segment_unspaced,
    tables,
)

ShingleHash = Literal["words64", "xxh3", "sha1_32"]


@dataclass
class ShingleBatch:
    """Shingle hashes of a batch: `hashes[offsets[d]:offsets[d+1]]` belong to document d."""

    hashes: np.ndarray  # uint64
    offsets: np.ndarray  # int64, len = n_docs + 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


def ngram_strings(tokens: Sequence[str], n: int) -> list[str]:
    """The shingle strings of a token list ("w1 w2 ... wn"), short documents as one shingle."""
    if not tokens:
        return []
    if len(tokens) < n:
        return [" ".join(tokens)]
    return [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def sha1_hash32(data: bytes) -> int:
    """datasketch's default hash: the first 4 bytes of SHA-1, little-endian."""
    return struct.unpack("<I", sha1(data).digest()[:4])[0]


_STRING_HASHES: dict[str, Callable[[bytes], int]] = {
    "xxh3": xxhash.xxh3_64_intdigest,
    "sha1_32": sha1_hash32,
}


def shingle_hashes(
    texts: Sequence[str | None] | pa.Array | pa.ChunkedArray,
    langs: Sequence[str | None] | None = None,
    *,
    n: int = 5,
    kind: ShingleHash = "words64",
    norm: NormSpec = "fineweb",
    engine: kernels.Engine = "auto",
) -> ShingleBatch:
    """Shingle hashes of raw documents (normalised here)."""
    arrow = isinstance(texts, pa.Array | pa.ChunkedArray)
    if kind == "words64":
        tab = tables(norm)
        batch = Utf8Batch.from_arrow(texts) if arrow else Utf8Batch.from_texts(texts)
        batch = segment_unspaced(batch, kernels.unspaced_docs(batch, tab, engine), langs)
        hashes, shingle_offsets = kernels.words64_shingles(batch, tab, n, engine)
        return ShingleBatch(hashes, shingle_offsets)
    if arrow:
        texts = texts.to_pylist()
    try:
        fn = _STRING_HASHES[kind]
    except KeyError:
        raise ValueError(f"unknown shingle_hash {kind!r}") from None
    counts = np.zeros(len(texts) + 1, dtype=np.int64)
    values: list[int] = []
    for d, text in enumerate(normalize_batch(texts, langs, norm)):
        grams = ngram_strings(text.split(), n)
        values.extend(fn(g.encode("utf-8")) for g in grams)
        counts[d + 1] = len(grams)
    return ShingleBatch(np.array(values, dtype=np.uint64), np.cumsum(counts))
