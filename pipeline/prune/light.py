"""The `light` embedder: hashed word n-gram TF-IDF projected by a truncated SVD (LSA). No torch.

Features: word n-grams (1..`ngram_max`, lowercased, tokens of 2+ word characters) hashed into
`features` buckets (xxh3_64 per token, n-grams combined by multiply-add mod 2^64; stable across
processes);
weights (1 + ln tf) x idf, rows L2-normalised. The idf and the SVD (randomised, seeded) are fitted
once per corpus on a bounded sample; every shard is then projected with the same fitted model.
When the fitted sample has no more documents than `dim`, the projection keeps all of its
directions, so cosines between sample documents equal their TF-IDF cosines.

Memory per process: the dense projection, features x dim float32 (2^17 x 256 = 128 MiB).
"""

from __future__ import annotations

import io
import re

import fsspec
import numpy as np
import scipy.sparse as sp
import xxhash

from pipeline.io.atomic import atomic_write
from pipeline.prune.embed import normalize_rows

_TOKEN = re.compile(r"\w\w+")  # tokens of 2+ word characters, lowercased
_CACHE_LIMIT = 2_000_000  # token -> hash entries kept per process
_token_hash: dict[str, int] = {}
_NGRAM_MULT = np.uint64(0x9E3779B97F4A7C15)


def _hashes(tokens: list[str]) -> np.ndarray:
    """xxh3_64 of each token (cached per process: web text repeats its tokens), uint64."""
    if len(_token_hash) > _CACHE_LIMIT:
        _token_hash.clear()
    for tok in set(tokens).difference(_token_hash):
        _token_hash[tok] = xxhash.xxh3_64_intdigest(tok.encode("utf-8", "replace"))
    return np.fromiter(map(_token_hash.__getitem__, tokens), dtype=np.uint64, count=len(tokens))


def _counts(texts: list[str], features: int, ngram_max: int, max_chars: int) -> sp.csr_matrix:
    """Hashed word n-gram counts (documents x features), float32."""
    rows, cols = [], []
    with np.errstate(over="ignore"):
        for i, text in enumerate(texts):
            h = _hashes(_TOKEN.findall(text[:max_chars].lower()))
            grams = [h]
            for n in range(2, ngram_max + 1):
                g = h[: len(h) - n + 1].copy()
                for j in range(1, n):
                    g = g * _NGRAM_MULT + h[j : len(h) - n + 1 + j]
                grams.append(g)
            buckets = np.concatenate(grams) % np.uint64(features)
            rows.append(np.full(len(buckets), i, dtype=np.int64))
            cols.append(buckets.astype(np.int64))
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    x = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(texts), features))
    x.sum_duplicates()
    return x


def _weigh(x: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """(1 + ln tf) x idf, rows L2-normalised (in place on `x`)."""
    x.data = (1.0 + np.log(x.data)) * idf[x.indices]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    x.data /= np.repeat(np.where(norms > 0, norms, 1.0), np.diff(x.indptr)).astype(x.dtype)
    return x


def _orthonormal(y: np.ndarray) -> np.ndarray:
    """An orthonormal basis of y's columns from its Gram matrix, twice (CholeskyQR2-like).

    LAPACK QR is slow on tall matrices here; two small symmetric eigensolves are not.
    """
    for _ in range(2):
        w, u = np.linalg.eigh((y.T @ y).astype(np.float64))
        keep = w > max(w.max(), 0.0) * 1e-10
        y = (y @ (u[:, keep] / np.sqrt(w[keep])).astype(y.dtype)).astype(y.dtype)
    return y


def top_right_vectors(x: sp.csr_matrix, k: int, seed: int, power_iters: int = 2) -> np.ndarray:
    """(features, <=k) top right singular vectors of `x` (documents x features), float32.

    Works on the used feature columns only. Up to 2k + 20 documents: exact, from the documents'
    Gram matrix. Beyond: a randomised range finder on the document side (Halko et al. 2011,
    k + 10 columns, `power_iters` power iterations), then the small projected problem.
    """
    used = np.unique(x.indices)
    xu = x[:, used].astype(np.float32).tocsr()
    m = xu.shape[0]
    k = max(1, min(k, m, len(used)))
    if m <= 2 * k + 20:
        gram = (xu @ xu.T).toarray().astype(np.float64)
        w, u = np.linalg.eigh(gram)  # left vectors from the documents' Gram matrix
        top = np.argsort(w)[::-1][:k]
        s = np.sqrt(np.clip(w[top], 0, None))
        keep = s > 1e-6 * max(float(s.max()), 1e-300)
        vt = np.asarray(xu.T @ u[:, top[keep]].astype(np.float32)).T / s[keep, None]
    else:
        xt = xu.T.tocsr()  # row-major transpose: the faster sparse x dense product here
        rng = np.random.default_rng(seed)
        omega = rng.standard_normal((len(used), k + 10), dtype=np.float32)
        q = _orthonormal(xu @ omega)
        for _ in range(power_iters):
            q = _orthonormal(xu @ (xt @ q))
        b = np.asarray(xt @ q).T.astype(np.float64)  # (k + 10) x used = q^T xu
        w, u = np.linalg.eigh(b @ b.T)
        top = np.argsort(w)[::-1][:k]
        s = np.sqrt(np.clip(w[top], 0, None))
        keep = s > 1e-6 * max(float(s.max()), 1e-300)
        vt = (u[:, top[keep]].T @ b) / s[keep, None]
    out = np.zeros((x.shape[1], max(1, vt.shape[0])), dtype=np.float32)  # >= 1 column
    out[used, : vt.shape[0]] = vt.T
    return out


class LightEmbedder:
    """A fitted hashed-TF-IDF + SVD model."""

    def __init__(
        self, idf: np.ndarray, components: np.ndarray, ngram_max: int, max_chars: int = 20_000
    ) -> None:
        self.idf = idf.astype(np.float32)
        self.components = np.ascontiguousarray(components, dtype=np.float32)
        self.features = len(idf)
        self.ngram_max = ngram_max
        self.max_chars = max_chars
        self.dim = self.components.shape[1]

    @classmethod
    def fit(
        cls,
        texts: list[str],
        *,
        features: int = 2**17,
        ngram_max: int = 1,
        dim: int = 256,
        seed: int = 0,
        max_chars: int = 20_000,
    ) -> LightEmbedder:
        """Fit idf and the SVD on `texts` (a sample of the corpus)."""
        if not texts:
            raise ValueError("the light embedder needs at least one text to fit")
        x = _counts(texts, features, ngram_max, max_chars)
        df = np.bincount(x.indices, minlength=features)
        idf = (np.log((1 + len(texts)) / (1 + df)) + 1).astype(np.float32)
        x = _weigh(x, idf)
        return cls(idf, top_right_vectors(x, dim, seed), ngram_max, max_chars)

    def embed(self, texts: list[str]) -> np.ndarray:
        x = _weigh(_counts(texts, self.features, self.ngram_max, self.max_chars), self.idf)
        return normalize_rows(np.asarray(x @ self.components))

    def save(self, fs: fsspec.AbstractFileSystem, path: str) -> None:
        """Write the model (only the non-zero rows of the projection), atomically."""
        used = np.flatnonzero(np.any(self.components != 0, axis=1))
        buf = io.BytesIO()
        np.savez(
            buf,
            idf=self.idf,
            used=used,
            rows=self.components[used],
            ngram_max=np.int64(self.ngram_max),
        )
        with atomic_write(fs, path) as f:
            f.write(buf.getvalue())

    @classmethod
    def load(
        cls, path: str, fs: fsspec.AbstractFileSystem | None = None, max_chars: int = 20_000
    ) -> LightEmbedder:
        if fs is None:
            fs, path = fsspec.core.url_to_fs(path)
        with fs.open(path, "rb") as f:
            data = np.load(io.BytesIO(f.read()))
            idf, used, rows = data["idf"], data["used"], data["rows"]
            ngram_max = int(data["ngram_max"])
        components = np.zeros((len(idf), rows.shape[1]), dtype=np.float32)
        components[used] = rows
        return cls(idf, components, ngram_max, max_chars)
