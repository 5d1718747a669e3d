"""`gopher_repetition`: drop documents dominated by repeated lines, paragraphs or n-grams.

Gopher (Rae et al. 2021, Table A1) repetition removal with the datatrove / DCLM cut-offs
(ALGORITHMS.md T.2, 5.2). Measurements, each a fraction in [0, 1]:

- paragraphs = `text.strip()` split on `\\n{2,}`, lines = `text.strip()` split on `\\n+`. A
  duplicate is every occurrence after the first. `dup_*_frac` = duplicates / parts;
  `dup_*_char_frac` = characters of the duplicates / `len(text)`.
- words = `split_words(text, lang)`, punctuation tokens included (as datatrove's tokenizer
  output), case kept.
- `top_{2,3,4}gram_char_frac` = length of the most frequent n-gram string x its count /
  `len(text)`. Ties go to the n-gram seen first. The string is the words joined by one space in
  spaced scripts and by nothing in Chinese/Japanese/Thai (what the text itself holds). As in
  datatrove an n-gram seen once still counts (a short document scores high here).
- `dup_{5..10}gram_char_frac`: scan n-grams left to right; when the n-gram at `i` was seen before
  add its characters (the words' lengths, no separators, as datatrove) and jump to `i + n`, else
  record it and step one. The paper counts characters covered by any duplicate n-gram without
  double counting; the jump scan is datatrove's approximation of it, and we follow it.

Choices that differ from datatrove: lines are split from the stripped text (datatrove keeps the
empty strings a leading or trailing newline produces).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipeline.stages.base import Stage, TextStageConfig, reasons_from_checks
from pipeline.stages.contract import WORDS
from pipeline.text.batch import above, numeric_column, texts_and_langs, with_columns
from pipeline.text.shared_words import DocWords, SharedWords
from pipeline.text.words import split_lines, split_paragraphs

TOP_NS = (2, 3, 4)
DUP_NS = (5, 6, 7, 8, 9, 10)
PREFIX = "gopher_rep_"

Frac = float | None


class GopherRepetitionConfig(TextStageConfig):
    """Thresholds (all `drop if >`); `null` disables a rule."""

    stage: Literal["gopher_repetition"] = "gopher_repetition"
    dup_para_frac: Frac = Field(default=0.30, ge=0)  # max share of paragraphs that are repeats
    dup_para_char_frac: Frac = Field(default=0.20, ge=0)  # max char share of repeated paragraphs
    dup_line_frac: Frac = Field(default=0.30, ge=0)  # max share of lines that are repeats
    dup_line_char_frac: Frac = Field(default=0.20, ge=0)  # max char share of repeated lines
    top_2gram_char_frac: Frac = Field(default=0.20, ge=0)  # max char share of the top 2-gram
    top_3gram_char_frac: Frac = Field(default=0.18, ge=0)  # max char share of the top 3-gram
    top_4gram_char_frac: Frac = Field(default=0.16, ge=0)  # max char share of the top 4-gram
    dup_5gram_char_frac: Frac = Field(default=0.15, ge=0)  # max char share of repeated 5-grams
    dup_6gram_char_frac: Frac = Field(default=0.14, ge=0)  # max char share of repeated 6-grams
    dup_7gram_char_frac: Frac = Field(default=0.13, ge=0)  # max char share of repeated 7-grams
    dup_8gram_char_frac: Frac = Field(default=0.12, ge=0)  # max char share of repeated 8-grams
    dup_9gram_char_frac: Frac = Field(default=0.11, ge=0)  # max char share of repeated 9-grams
    dup_10gram_char_frac: Frac = Field(default=0.10, ge=0)  # max char share of repeated 10-grams


# (measurement / config key, reason), in the order the rules are applied.
RULES: tuple[tuple[str, str], ...] = (
    ("dup_para_frac", "gopher_dup_para_frac"),
    ("dup_para_char_frac", "gopher_dup_para_char_frac"),
    ("dup_line_frac", "gopher_dup_line_frac"),
    ("dup_line_char_frac", "gopher_dup_line_char_frac"),
    *((f"top_{n}gram_char_frac", f"gopher_top_{n}gram") for n in TOP_NS),
    *((f"dup_{n}gram_char_frac", f"gopher_dup_{n}gram") for n in DUP_NS),
)
MEASURES = tuple(key for key, _ in RULES)


def duplicate_stats(parts: list[str]) -> tuple[int, int]:
    """(number of duplicate parts, their characters); a duplicate is any repeat of a part."""
    counts = Counter(parts)
    if len(counts) == len(parts):
        return 0, 0
    chars = sum(len(p) * (c - 1) for p, c in counts.items() if c > 1)
    return len(parts) - len(counts), chars


class NGramClasses:
    """Groups the n-grams of one document's words, for n = 1, 2, ... asked in increasing order.

    Each n-gram is labelled exactly (no hashing) with the first position holding it: a word's
    label comes from a dict, an n-gram's from the pair (label of its (n-1)-gram, label of its last
    word), which fits one int64 and is grouped by a stable sort. Only the positions whose n-gram
    occurs more than once are kept (ascending, with their labels): an n-gram at `i` can repeat only
    where the (n-1)-grams at `i` and `i + 1` both do, so each step sorts just those, few past the
    first sizes in ordinary text.
    """

    def __init__(self, words: list[str]) -> None:
        self.words = words
        size = len(words)
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=size)
        self.cum = np.zeros(size + 1, dtype=np.int64)  # prefix sums of word lengths
        np.cumsum(lengths, out=self.cum[1:])
        # dict.setdefault keeps the first position of each word: its label.
        self._word = np.fromiter(map({}.setdefault, words, range(size)), np.int64, count=size)
        self._n = 1
        repeated = self._word != np.arange(size)
        repeated[self._word[repeated]] = True
        self._pos = np.flatnonzero(repeated)  # positions whose n-gram repeats, ascending
        self._label = self._word[self._pos]  # their first positions
        self._groups: tuple[np.ndarray, np.ndarray] | None = None  # (first positions, sizes)

    def _advance(self, n: int) -> None:
        if n < self._n:
            raise ValueError("n-gram sizes must be asked in increasing order")
        while self._n < n:
            self._n += 1
            self._groups = None
            pos, label = self._pos, self._label
            if len(pos) < 2:
                self._pos, self._label = pos[:0], label[:0]
                continue
            last = len(self.words) - self._n  # the last position an n-gram starts at
            at = np.flatnonzero((pos[1:] == pos[:-1] + 1) & (pos[:-1] <= last))
            cand = pos[at]
            keys = label[at] * len(self.words) + self._word[cand + (self._n - 1)]
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            is_start = np.empty(len(cand), dtype=bool)
            is_start[:1] = True
            np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=is_start[1:])
            starts = np.flatnonzero(is_start)
            sizes = np.diff(np.append(starts, len(cand)))
            firsts = cand[order[starts]]  # stable sort: each group's smallest position first
            self._groups = (firsts, sizes)
            group = np.cumsum(is_start) - 1
            labels = np.empty_like(cand)
            labels[order] = firsts[group]
            keep = np.empty_like(is_start)
            keep[order] = (sizes >= 2)[group]
            self._pos, self._label = cand[keep], labels[keep]

    def repeats(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions, first positions) of the n-grams that occurred earlier, ascending."""
        self._advance(n)
        later = self._label != self._pos
        return self._pos[later], self._label[later]

    def most_frequent(self, n: int) -> tuple[int, int]:
        """(first position, count) of the most frequent n-gram, the first seen among ties;
        (0, 0) when the words hold no n-gram."""
        self._advance(n)
        if len(self.words) < n:
            return 0, 0
        if len(self._pos) == 0:  # every n-gram once: the first one
            return 0, 1
        if self._groups is None:  # n = 1
            firsts, sizes = np.unique(self._label, return_counts=True)
        else:
            firsts, sizes = self._groups
        top = int(sizes.max())
        return int(firsts[sizes == top].min()), top


def top_ngram_chars(ngrams: NGramClasses, n: int, sep: int) -> int:
    """Characters of the most frequent n-gram string times its count (first seen wins ties)."""
    f, count = ngrams.most_frequent(n)
    if count == 0:
        return 0
    return int(ngrams.cum[f + n] - ngrams.cum[f] + sep * (n - 1)) * count


def dup_ngram_chars(ngrams: NGramClasses, n: int) -> int:
    """Characters in duplicate n-grams by the left-to-right jump scan (see module docstring).

    Same result as stepping through every position (`dup_ngram_chars_reference`), but visits
    only the positions whose n-gram occurred earlier in the text, so a text with few repeats
    costs little Python work.
    """
    positions, firsts = ngrams.repeats(n)
    if len(positions) == 0:
        return 0
    # The scan records the n-gram of every position it visits; positions inside a jump are never
    # visited. An n-gram is "seen" at a repeat when its first occurrence was visited (not inside
    # a jump) or a later visited repeat recorded it.
    recorded: set[int] = set()
    jump_starts: list[int] = []
    jump_ends: list[int] = []
    counted: list[int] = []
    idx = 0
    for pos, f in zip(positions.tolist(), firsts.tolist(), strict=True):
        if pos < idx:  # jumped over
            continue
        k = bisect_right(jump_starts, f) - 1
        if k < 0 or f > jump_ends[k] or f in recorded:
            counted.append(pos)
            idx = pos + n
            if n > 1:
                jump_starts.append(pos + 1)
                jump_ends.append(pos + n - 1)
        else:
            recorded.add(f)
            idx = pos + 1
    at = np.array(counted, dtype=np.int64)
    return int((ngrams.cum[at + n] - ngrams.cum[at]).sum())


def dup_ngram_chars_reference(words: list[str], n: int) -> int:
    """The plain jump scan over every position (the definition; used by tests)."""
    seen: set[tuple[str, ...]] = set()
    idx = chars = 0
    while idx < len(words) - n + 1:
        gram = tuple(words[idx : idx + n])
        if gram in seen:
            chars += sum(map(len, gram))
            idx += n
        else:
            seen.add(gram)
            idx += 1
    return chars


def repetition_scores(
    text: str, lang: str | None = None, doc: DocWords | None = None
) -> dict[str, float]:
    """Every measurement of the module docstring for one document, keyed by config key; `doc`:
    its words when already split (the `words` intermediate)."""
    size = len(text)
    out = dict.fromkeys(MEASURES, 0.0)
    if size == 0:
        return out
    paragraphs = split_paragraphs(text)
    if paragraphs:
        dup, chars = duplicate_stats(paragraphs)
        out["dup_para_frac"] = dup / len(paragraphs)
        out["dup_para_char_frac"] = chars / size
    lines = split_lines(text)
    if lines:
        dup, chars = duplicate_stats(lines)
        out["dup_line_frac"] = dup / len(lines)
        out["dup_line_char_frac"] = chars / size
    doc = doc or DocWords.of(text, lang)
    sep = 1 if doc.spaced else 0
    ngrams = NGramClasses(doc.words)
    for n in TOP_NS:
        out[f"top_{n}gram_char_frac"] = top_ngram_chars(ngrams, n, sep) / size
    for n in DUP_NS:
        chars = dup_ngram_chars(ngrams, n)
        out[f"dup_{n}gram_char_frac"] = chars / size
        if chars == 0:  # no repeated n-gram means no repeated longer n-gram either
            break
    return out


class GopherRepetitionStage(Stage):
    """Gopher repetition removal: score = the 13 fractions, keep = their Table A1 cut-offs."""

    config_cls = GopherRepetitionConfig
    threshold_keys = frozenset(MEASURES)
    score_columns = tuple(PREFIX + key for key in MEASURES)
    column_thresholds = {PREFIX + key: (key,) for key in MEASURES}
    intermediates = (WORDS,)

    config: GopherRepetitionConfig

    def score(self, batch: pa.Table, words: SharedWords | None = None) -> pa.Table:
        texts, langs = texts_and_langs(batch)
        words = words or SharedWords()
        values = np.zeros((len(MEASURES), len(texts)), dtype=np.float64)
        for j, (text, lang) in enumerate(zip(texts, langs, strict=True)):
            scores = repetition_scores(text, lang, words.get(text, lang) if text else None)
            for i, key in enumerate(MEASURES):
                values[i, j] = scores[key]
        return with_columns(batch, dict(zip(self.score_columns, values, strict=True)))

    def keep(self, batch: pa.Table) -> pa.Array:
        checks = [
            (above(numeric_column(batch, PREFIX + key), getattr(self.config, key)), reason)
            for key, reason in RULES
        ]
        return reasons_from_checks(batch.num_rows, checks)
