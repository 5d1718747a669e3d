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


def ngram_chars(
    doc: DocWords, sep: int, top_ns: tuple[int, ...] = TOP_NS, dup_ns: tuple[int, ...] = DUP_NS
) -> tuple[list[int], list[int]]:
    """(top, dup) characters per n of `top_ns` and `dup_ns` (see the module docstring): the most
    frequent n-gram's string (`sep` characters between words) times its count, and the duplicate
    n-grams of the jump scan. Counted over the words' exact labels in compiled code (numba,
    imported on first use: a process that never scores pays nothing for it)."""
    from pipeline.stages.ngram_repeats import ngram_measures

    cum = np.zeros(len(doc.words) + 1, dtype=np.int64)  # prefix sums of word lengths
    np.cumsum(doc.lengths, out=cum[1:])
    top, dup = ngram_measures(
        doc.labels, cum, sep, np.array(top_ns, dtype=np.int64), np.array(dup_ns, dtype=np.int64)
    )
    return top.tolist(), dup.tolist()


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
    top, dup = ngram_chars(doc, 1 if doc.spaced else 0)
    for n, chars in zip(TOP_NS, top, strict=True):
        out[f"top_{n}gram_char_frac"] = chars / size
    for n, chars in zip(DUP_NS, dup, strict=True):
        out[f"dup_{n}gram_char_frac"] = chars / size
    return out


class GopherRepetitionStage(Stage):
    """Gopher repetition removal: score = the 13 fractions, keep = their Table A1 cut-offs."""

    config_cls = GopherRepetitionConfig
    threshold_keys = frozenset(MEASURES)
    score_columns = tuple(PREFIX + key for key in MEASURES)
    column_thresholds = {PREFIX + key: (key,) for key in MEASURES}
    intermediates = (WORDS,)

    config: GopherRepetitionConfig

    def setup(self) -> None:
        """Load the compiled n-gram counter now, outside any document's CPU limit (numba's
        loading costs ~0.5 s of CPU once per process)."""
        ngram_chars(DocWords(["a"], True), 1)

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
