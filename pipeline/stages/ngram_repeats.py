"""Gopher repetition's n-gram measurements in one compiled pass per document (numba).

A document arrives as its words' labels (a word's label is the first position holding it, so
equal words share one exactly, no hashing) and the prefix sums of their lengths. The n-gram at
`i` is labelled likewise with the first position of the pair (its (n-1)-gram's label, the label
of its last word): pairs are looked up in an open-addressing table that compares whole keys, so
labels, and every count and decision built on them, are exact. An n-gram can repeat only where
the (n-1)-grams at `i` and `i + 1` both do; the rest are labelled with their own position
without a lookup.
"""

from __future__ import annotations

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(cache=True, nogil=True)
def _next_labels(cls, counts, word, n, m, keys, vals, bits):
    """Overwrite cls[:m] with the n-gram labels from the (n-1)-gram labels in cls[:m + 1]."""
    size = word.size
    mask = (1 << bits) - 1
    shift = np.uint64(64 - bits)
    keys[:] = -1
    for i in range(m):
        a = cls[i]
        if counts[a] == 1 or counts[cls[i + 1]] == 1:
            cls[i] = i  # its (n-1)-gram or the next one occurs once: so does this n-gram
            continue
        key = a * size + word[i + n - 1]
        slot = np.int64((np.uint64(key) * _GOLDEN) >> shift)
        while True:
            k = keys[slot]
            if k == key:
                cls[i] = vals[slot]
                break
            if k == -1:
                keys[slot] = key
                vals[slot] = i
                cls[i] = i
                break
            slot = (slot + 1) & mask


@numba.njit(cache=True, nogil=True)
def ngram_measures(word, cum, sep, top_ns, dup_ns):
    """(top, dup): for each n of `top_ns`, the characters of the most frequent n-gram's string
    (its words' lengths plus `sep` between them; the first seen among ties) times its count, 0
    when there is no n-gram; for each n of `dup_ns`, the characters of duplicate n-grams by the
    left-to-right jump scan. `word`: labels (first positions), `cum`: length prefix sums."""
    size = word.size
    top = np.zeros(top_ns.size, np.int64)
    dup = np.zeros(dup_ns.size, np.int64)
    last = 0
    for n in top_ns:
        last = max(last, n)
    for n in dup_ns:
        last = max(last, n)
    if size == 0:
        return top, dup
    cls = word.copy()
    counts = np.zeros(size, np.int64)
    seen = np.zeros(size, np.bool_)
    bits = 1
    while (1 << bits) < 2 * size:
        bits += 1
    keys = np.empty(1 << bits, np.int64)
    vals = np.empty(1 << bits, np.int64)
    all_unique = False
    for n in range(1, last + 1):
        m = size - n + 1  # n-grams in the document
        if m <= 0:
            break
        if all_unique:  # no (n-1)-gram repeats: every n-gram occurs once
            for j in range(top_ns.size):
                if top_ns[j] == n:
                    top[j] = cum[n] - cum[0] + sep * (n - 1)
            continue
        if n > 1:
            _next_labels(cls, counts, word, n, m, keys, vals, bits)
        counts[:] = 0
        best = first = 0
        for i in range(m):
            counts[cls[i]] += 1
        for i in range(m):  # labels ascend with first position: the first seen wins ties
            if counts[i] > best:
                best = counts[i]
                first = i
        for j in range(top_ns.size):
            if top_ns[j] == n:
                top[j] = (cum[first + n] - cum[first] + sep * (n - 1)) * best
        for j in range(dup_ns.size):
            if dup_ns[j] == n and best > 1:
                seen[:m] = False
                chars = 0
                i = 0
                while i < m:
                    c = cls[i]
                    if seen[c]:
                        chars += cum[i + n] - cum[i]
                        i += n
                    else:
                        seen[c] = True
                        i += 1
                dup[j] = chars
        all_unique = best == 1
    return top, dup
