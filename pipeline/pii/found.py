"""`Found`, the item every detector returns, and the windowed matching that keeps them fast.

A full detector regex led by a character class costs a scan of the whole text (about 5 ns a
character); one led by a literal (`@`, `.`, `:`) is a fast substring search. So detectors find
cheap triggers first and run their full regex only in windows around them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple


class Found(NamedTuple):
    """An item of kind `kind` at text[start:end]; `value` is its normalised form (lowercased
    e-mail, compressed IP, E.164 phone, bare digits...), what a pseudonym is derived from."""

    start: int
    end: int
    kind: str
    value: str


# Runs of digits and the separators of phone and card numbers: where those two can be.
DIGIT_RUN = re.compile(r"[0-9][0-9 ./()-]{7,}")


def digit_runs(text: str) -> list[tuple[int, int]]:
    """(start, end) of the runs of 8+ digits and number separators in `text`."""
    return [m.span() for m in DIGIT_RUN.finditer(text)]


def finditer_near(
    pattern: re.Pattern[str],
    text: str,
    spans: Iterable[tuple[int, int]],
    before: int,
    after: int,
) -> Iterator[re.Match[str]]:
    """Matches of `pattern` in the windows [start - before, end + after) around the trigger
    spans (sorted by start), overlapping windows merged. Lookbehinds see the text before a
    window; a match reaching a window's end (short of the text's) is dropped, since it may be
    cut there: make `after` longer than any item past its trigger."""
    n = len(text)
    lo = hi = -1
    for s, e in spans:
        start, end = max(0, s - before), min(n, e + after)
        if start <= hi:
            hi = max(hi, end)
            continue
        if hi >= 0:
            yield from _in_window(pattern, text, lo, hi)
        lo, hi = start, end
    if hi >= 0:
        yield from _in_window(pattern, text, lo, hi)


def _in_window(pattern: re.Pattern[str], text: str, lo: int, hi: int) -> Iterator[re.Match[str]]:
    whole = hi == len(text)
    for m in pattern.finditer(text, lo, hi):
        if whole or m.end() < hi:
            yield m
