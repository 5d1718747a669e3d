"""The `words` intermediate: each document's `split_words` tokens, split once per batch and shared
by the stages of a chain that declare it (Gopher repetition and quality, FineWeb quality).

An entry is keyed by the text itself and the base language code it was split with, so a stage
that rewrites `text` (c4_quality, line_corrections, pii masking) hands the next stage new strings
that miss and are split afresh: a stale token list can never be served. Most of a rewritten
text's lines are the old text's, though: a text without unspaced scripts is split line by line
(pipeline.text.words.split_words_by_line), and a stage's first miss indexes the held entries'
lines by their string, so a rewritten text tokenizes only the lines the rewrite changed (and
counts non-symbol words only there, where a stage classified the old text's tokens). The
runner's kernel keeps one `SharedWords` per batch (pipeline.runner.kernel.Intermediates); it lives
in memory only and is never written to an output shard. Entries are aged per stage: what the
current stage did not ask for is dropped when the next one starts, so at most two stages' worth of
tokens are held.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from pipeline.text.words import (
    base_lang,
    non_symbol_mask,
    non_symbol_words,
    split_words_by_line,
    split_words_spacing,
)


@dataclass
class DocWords:
    """One document's tokens (punctuation included), whether it separates words by spaces, and
    what stages derive from them (each computed on first use): the non-symbol words, each token's
    label (the first position holding an equal token: equal strings share one exactly), each
    token's length, and which distinct tokens are non-symbol."""

    words: list[str]
    spaced: bool
    # Each line's tokens, for a text split line by line (split_words_by_line).
    lines: list[list[str]] | None = field(default=None, repr=False, compare=False)
    # Non-symbol words per line where another document's equal line counted them (else None).
    line_counts: list[int | None] | None = field(default=None, repr=False, compare=False)
    _non_symbol: list[str] | None = field(default=None, repr=False)
    _labels: np.ndarray | None = field(default=None, repr=False, compare=False)
    _lengths: np.ndarray | None = field(default=None, repr=False, compare=False)
    _non_symbol_firsts: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, text: str, lang: str | None = None) -> DocWords:
        """Split `text` now (no sharing): what every stage computes without the intermediate."""
        words, spaced = split_words_spacing(text, lang)
        return cls(words, spaced)

    @property
    def non_symbol(self) -> list[str]:
        """The tokens with at least one character that is not punctuation or a symbol."""
        if self._non_symbol is None:
            self._non_symbol = non_symbol_words(self.words)
        return self._non_symbol

    @property
    def labels(self) -> np.ndarray:
        """int64 per token: the first position of an equal token (its own for a first one)."""
        if self._labels is None:
            size = len(self.words)
            # dict.setdefault keeps the first position of each token.
            first = {}.setdefault
            self._labels = np.fromiter(map(first, self.words, range(size)), np.int64, count=size)
        return self._labels

    @property
    def lengths(self) -> np.ndarray:
        """int64 characters per token."""
        if self._lengths is None:
            size = len(self.words)
            self._lengths = np.fromiter(map(len, self.words), np.int64, count=size)
        return self._lengths

    @property
    def non_symbol_firsts(self) -> np.ndarray:
        """First positions of the distinct non-symbol tokens, ascending (each distinct token is
        classified once)."""
        if self._non_symbol_firsts is None:
            labels = self.labels
            firsts = np.flatnonzero(labels == np.arange(len(labels)))
            mask = non_symbol_mask(list(map(self.words.__getitem__, firsts.tolist())))
            self._non_symbol_firsts = firsts[np.array(mask, dtype=bool)]
        return self._non_symbol_firsts

    def non_symbol_count(self) -> int:
        """`len(self.non_symbol)`, from what is already known where possible: the classified
        distinct tokens, or other documents' counts of equal lines."""
        if self._non_symbol is not None:
            return len(self._non_symbol)
        if self._non_symbol_firsts is not None:
            return int(np.count_nonzero(self._non_symbol_token_mask()))
        if self.lines is not None and self.line_counts is not None:
            return sum(
                len(non_symbol_words(tokens)) if count is None else count
                for tokens, count in zip(self.lines, self.line_counts, strict=True)
            )
        return len(self.non_symbol)

    def counted_lines(self) -> list[int] | None:
        """Non-symbol words per line, for a text split by line whose distinct tokens were
        classified (`non_symbol_firsts`); else None (nothing is computed for it)."""
        if self.lines is None or self._non_symbol_firsts is None:
            return None
        cum = np.zeros(len(self.words) + 1, dtype=np.int64)
        np.cumsum(self._non_symbol_token_mask(), out=cum[1:])
        ends = np.cumsum(np.fromiter(map(len, self.lines), np.int64, count=len(self.lines)))
        starts = np.empty_like(ends)
        starts[:1] = 0
        starts[1:] = ends[:-1]
        return (cum[ends] - cum[starts]).tolist()

    def _non_symbol_token_mask(self) -> np.ndarray:
        """Per token: is it non-symbol (from the classified distinct tokens)?"""
        is_first = np.zeros(len(self.words), dtype=bool)
        is_first[self.non_symbol_firsts] = True
        return is_first[self.labels]


class SharedWords:
    """Tokens of a batch's documents by (text, base language code), aged per stage."""

    def __init__(self) -> None:
        self._current: dict[tuple[str, str | None], DocWords] = {}
        self._previous: dict[tuple[str, str | None], DocWords] = {}
        self._known_lines: dict[str, list[str]] | None = None  # this stage's index, once made
        self._known_counts: dict[str, int] = {}  # non-symbol words of its lines, where counted
        self.hits = 0
        self.misses = 0

    def next_stage(self) -> None:
        """A new stage starts: entries the last stage did not use are dropped after this one."""
        self._previous, self._current = self._current, {}
        self._known_lines = None
        self._known_counts = {}

    def get(self, text: str, lang: str | None = None) -> DocWords:
        """The tokens of `text` split for `lang`, split now only if no stage has split it yet."""
        key = (text, base_lang(lang))
        found = self._current.get(key) or self._previous.pop(key, None)
        if found is None:
            self.misses += 1
            by_line = split_words_by_line(text, key[1], self._lines())
            if by_line is None:
                found = DocWords.of(text, key[1])
            else:
                lines, spaced = by_line
                found = DocWords(list(chain.from_iterable(lines)), spaced, lines)
                if self._known_counts:
                    found.line_counts = list(map(self._known_counts.get, text.split("\n")))
        else:
            self.hits += 1
        self._current[key] = found
        return found

    def _lines(self) -> dict[str, list[str]]:
        """Tokens of the held entries' lines by the line's string (made on a stage's first miss:
        a stage that only hits never pays for it), and their non-symbol word counts where a
        stage classified the entry's tokens."""
        if self._known_lines is None:
            self._known_lines = {}
            self._known_counts = {}
            for (text, _), doc in chain(self._previous.items(), self._current.items()):
                if doc.lines is None:
                    continue
                lines = text.split("\n")
                self._known_lines.update(zip(lines, doc.lines, strict=True))
                counts = doc.counted_lines()
                if counts is not None:
                    self._known_counts.update(zip(lines, counts, strict=True))
        return self._known_lines
