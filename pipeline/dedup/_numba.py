"""numba versions of the MinHash kernels (imported only when numba is installed and chosen).

Same values as the numpy versions in `kernels` (tests compare them): UTF-8 is decoded on the fly
and normalised through the tables of text/normalize.py, so a batch of Arrow strings is hashed without a
Python call per document or per character.
"""

from __future__ import annotations

import numba
import numpy as np

_u64 = numba.uint64
_TOP = _u64(0xFFFFFFFFFFFFFFFF)
_P61 = _u64((1 << 61) - 1)
_BASE = _u64(0x9E3779B97F4A7C15)
_FOLD_SEED = _u64(0x243F6A8885A308D3)
_FM1 = _u64(0xFF51AFD7ED558CCD)
_FM2 = _u64(0xC4CEB9FE1A85EC53)
_S33 = _u64(33)
_S61 = _u64(61)
_ONE = _u64(1)


@numba.njit(cache=True, nogil=True, inline="always")
def _fmix(h):
    h ^= h >> _S33
    h *= _FM1
    h ^= h >> _S33
    h *= _FM2
    return h ^ (h >> _S33)


@numba.njit(cache=True, nogil=True, inline="always")
def _decode(data, i, hi):
    """(code point, next index) of the UTF-8 sequence at data[i] (lenient on bad bytes)."""
    b0 = np.int64(data[i])
    if b0 < 0x80:
        return b0, i + 1
    if b0 < 0xE0 and i + 1 < hi:
        return ((b0 & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F), i + 2
    if b0 < 0xF0 and i + 2 < hi:
        cp = ((b0 & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6)
        return cp | (np.int64(data[i + 2]) & 0x3F), i + 3
    if i + 3 < hi:
        cp = ((b0 & 0x07) << 18) | ((np.int64(data[i + 1]) & 0x3F) << 12)
        cp |= (np.int64(data[i + 2]) & 0x3F) << 6
        return min(cp | (np.int64(data[i + 3]) & 0x3F), 0x10FFFF), i + 4
    return 0xFFFD, hi


@numba.njit(cache=True, nogil=True)
def unspaced_docs(data, offsets, unspaced_tab):
    """Per document: does it contain a character of a script written without spaces?"""
    n_docs = offsets.size - 1
    out = np.zeros(n_docs, dtype=np.bool_)
    for d in range(n_docs):
        i, hi = offsets[d], offsets[d + 1]
        while i < hi:
            if data[i] < 0xE0:  # every unspaced script is at U+0E00 or above (3+ bytes)
                i += 1
                continue
            cp, i = _decode(data, i, hi)
            if unspaced_tab[cp]:
                out[d] = True
                break
    return out


@numba.njit(cache=True, nogil=True)
def words64(data, offsets, cls_tab, fold_tab, norm_digits, n, c_digit, c_sep, c_drop, mult):
    """`words64` shingle hashes of a UTF-8 batch: (hashes, per-document offsets); `mult` holds
    the n odd multipliers of the n-gram combination."""
    n_docs = offsets.size - 1
    word_hash = np.empty(data.size // 2 + n_docs + 1, dtype=np.uint64)
    per_doc = np.zeros(n_docs, dtype=np.int64)
    n_words = 0
    for d in range(n_docs):
        i, hi = offsets[d], offsets[d + 1]
        h = _u64(0)
        in_word = False
        prev_digit = False
        prev_member = False
        while i < hi:
            cp, i = _decode(data, i, hi)
            c = cls_tab[cp]
            if norm_digits:
                is_digit = c == c_digit
                member = is_digit
                if not member and prev_digit and (cp == 46 or cp == 44) and i < hi:
                    member = cls_tab[_decode(data, i, hi)[0]] == c_digit
                if member:
                    c = c_drop if prev_member else c_digit
                prev_digit = is_digit
                prev_member = member
            if c == c_sep:
                if in_word:
                    word_hash[n_words] = _fmix(h)
                    n_words += 1
                    per_doc[d] += 1
                    in_word = False
            elif c != c_drop:
                if not in_word:
                    h = _u64(0)
                    in_word = True
                h = h * _BASE + (_u64(fold_tab[cp]) + _ONE)
        if in_word:
            word_hash[n_words] = _fmix(h)
            n_words += 1
            per_doc[d] += 1
    out_offsets = np.zeros(n_docs + 1, dtype=np.int64)
    for d in range(n_docs):
        m = per_doc[d]
        out_offsets[d + 1] = out_offsets[d] + (m - n + 1 if m >= n else min(m, 1))
    out = np.empty(out_offsets[n_docs], dtype=np.uint64)
    first = 0
    for d in range(n_docs):
        m = per_doc[d]
        k = out_offsets[d]
        for j in range(out_offsets[d + 1] - k):
            g = _FOLD_SEED
            for t in range(min(n, m)):
                g += mult[t] * word_hash[first + j + t]
            out[k + j] = _fmix(g)
        first += m
    return out, out_offsets


@numba.njit(cache=True, nogil=True)
def permute_min(hashes, offsets, a, b, mersenne, mask, out):
    """out[d, p] = min over document d's shingles of permutation p (see kernels.minhash)."""
    k = a.size
    for d in range(out.shape[0]):
        lo, hi = offsets[d], offsets[d + 1]
        for p in range(k):
            ap = a[p]
            bp = b[p]
            m = _TOP
            if mersenne:
                for i in range(lo, hi):
                    x = ap * hashes[i] + bp
                    x = (x & _P61) + (x >> _S61)
                    m = min(m, min(x, x - _P61) & mask)
            else:
                for i in range(lo, hi):
                    m = min(m, ap * hashes[i] + bp)
            out[d, p] = m
