"""Counting listed words in a text with a trie walked in compiled code (numba): C4's bad words.

The count is that of `re.findall` with the words as one alternation, longest first, between
`(?<!\\w)` and `(?!\\w)` (`bounded`; without them for scripts written without spaces): scanning
left to right, a match starts where no word character precedes, is the longest listed word there
that no word character follows, and the scan goes on after it. `\\w` is `re`'s: a character for
which str.isalnum() holds, or "_". The regex tries its alternation at every position; the walk
looks at one table entry per position and descends the trie only at word starts.
"""

from __future__ import annotations

from functools import cache

import numba
import numpy as np


@cache
def word_characters() -> np.ndarray:
    """bool per code point: `re`'s `\\w` (str.isalnum() or "_")."""
    table = np.fromiter(map(str.isalnum, map(chr, range(0x110000))), bool, count=0x110000)
    table[ord("_")] = True
    return table


def load_compiled() -> None:
    """Load the compiled walk and the `\\w` table (a stage's set-up: once per process)."""
    WordTrie(["a"], bounded=True).count("a")


class WordTrie:
    """The words as a trie in flat arrays: node i's children are entries starts[i] ..
    starts[i] + sizes[i] - 1 of (chars, nodes), sorted by code point; ends[i]: a word ends at i."""

    def __init__(self, words: list[str], bounded: bool) -> None:
        self.bounded = bounded
        children: list[dict[int, int]] = [{}]
        ends = [False]
        for word in words:
            node = 0
            for ch in map(ord, word):
                nxt = children[node].get(ch)
                if nxt is None:
                    nxt = children[node][ch] = len(children)
                    children.append({})
                    ends.append(False)
                node = nxt
            ends[node] = True
        sizes = np.array([len(c) for c in children], dtype=np.int64)
        self.starts = np.zeros(len(children), dtype=np.int64)
        np.cumsum(sizes[:-1], out=self.starts[1:])
        self.sizes = sizes
        pairs = [sorted(c.items()) for c in children]
        self.chars = np.array([ch for p in pairs for ch, _ in p], dtype=np.int64)
        self.nodes = np.array([n for p in pairs for _, n in p], dtype=np.int64)
        self.ends = np.array(ends, dtype=np.bool_)

    def count(self, text: str) -> int:
        """Matches of the words in `text` (see the module docstring)."""
        if not text:
            return 0
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        return int(
            _count(
                cps,
                word_characters(),
                self.starts,
                self.sizes,
                self.chars,
                self.nodes,
                self.ends,
                self.bounded,
            )
        )


@numba.njit(cache=True, nogil=True)
def _count(cps, is_word, starts, sizes, chars, nodes, ends, bounded):
    size = cps.size
    total = 0
    p = 0
    while p < size:
        if bounded and p > 0 and is_word[cps[p - 1]]:
            p += 1
            continue
        node = 0
        q = p
        best = -1
        while q < size:
            lo = starts[node]
            hi = lo + sizes[node]
            end = hi
            c = cps[q]
            while lo < hi:  # the first child whose character is >= c
                mid = (lo + hi) >> 1
                if chars[mid] < c:
                    lo = mid + 1
                else:
                    hi = mid
            if lo == end or chars[lo] != c:
                break
            node = nodes[lo]
            q += 1
            if ends[node] and (not bounded or q == size or not is_word[cps[q]]):
                best = q
        if best > 0:
            total += 1
            p = best
        else:
            p += 1
    return total
