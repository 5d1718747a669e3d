"""`fineweb_quality`: FineWeb's extra line-level filters (ALGORITHMS.md T.4, 5.5).

Lines = `text.split("\\n")` without blank lines. Measurements (`fineweb_` columns):

- `line_punct_ratio`: lines ending in a sentence terminator (Unicode Sentence_Terminal: . ! ? 。
  ！ ？ । ؟ ...), looked for before trailing spaces and closing quotes/brackets, so `He said
  "yes."` counts (datatrove tests the raw last character only).
- `short_line_ratio`: lines of at most `short_line_length` characters (stripped length).
- `dup_line_char_frac`: characters of repeated lines (every occurrence after the first) /
  characters of the text that are not `\\n`.
- `newline_ratio`: `\\n` count / non-symbol words of `split_words(text, lang)` (at least 1;
  datatrove divides by all tokens, punctuation included; we count words as the Gopher stages do).

A text with no non-blank line is rejected as `fineweb_empty`. Thresholds are datatrove's
`FineWebQualityFilter` defaults (duplicate-line characters 0.01, as in the code).
"""

from __future__ import annotations

import unicodedata
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import regex
from pydantic import Field

from pipeline.stages.base import Stage, TextStageConfig, reasons_from_checks
from pipeline.stages.contract import WORDS
from pipeline.text.batch import (
    above,
    below,
    columns_from_rows,
    numeric_column,
    texts_and_langs,
    with_columns,
)
from pipeline.text.shared_words import SharedWords

PREFIX = "fineweb_"
_SENTENCE_TERMINAL = regex.compile(r"\p{Sentence_Terminal}")
_ASCII_CLOSERS = frozenset("\"')]}")


class FineWebQualityConfig(TextStageConfig):
    """`short_line_length` shapes a score; the rest are thresholds (`null` disables a rule)."""

    stage: Literal["fineweb_quality"] = "fineweb_quality"
    short_line_length: int = Field(default=30, ge=0)  # lines of at most this many chars are short
    min_line_punct_ratio: float | None = Field(default=0.12, ge=0)  # min share of terminated lines
    line_punct_exclude_zero: bool = False  # keep documents with no terminated line at all
    max_short_line_ratio: float | None = Field(default=0.67, ge=0)  # max share of short lines
    max_dup_line_char_frac: float | None = Field(default=0.01, ge=0)  # max char share of dup lines
    max_newline_ratio: float | None = Field(default=0.3, ge=0)  # max newlines per word


MEASURES: dict[str, pa.DataType] = {
    "n_lines": pa.int64(),
    "line_punct_ratio": pa.float64(),
    "short_line_ratio": pa.float64(),
    "dup_line_char_frac": pa.float64(),
    "newline_ratio": pa.float64(),
}


def ends_with_terminal(line: str) -> bool:
    """True when `line` ends in a sentence terminator; closing quotes/brackets may follow it."""
    for ch in reversed(line):
        if ch.isspace() or ch in _ASCII_CLOSERS:
            continue
        if ch in ".!?":
            return True
        if ch < "\x80":
            return False
        if unicodedata.category(ch) in ("Pe", "Pf"):
            continue
        return _SENTENCE_TERMINAL.match(ch) is not None
    return False


def fineweb_scores(
    text: str,
    lang: str | None,
    short_line_length: int,
    words: SharedWords | None = None,
) -> dict[str, float]:
    """Every measurement of the module docstring for one document; `words`: the batch's shared
    words (the `words` intermediate), asked only when the text has a newline."""
    lines = [line for line in text.split("\n") if line.strip()]
    n = len(lines)
    if n == 0:
        return dict.fromkeys(MEASURES, 0.0) | {"n_lines": 0}
    seen: set[str] = set()
    dup_chars = 0
    for line in lines:
        if line in seen:
            dup_chars += len(line)
        else:
            seen.add(line)
    chars = len(text) - text.count("\n")
    n_newlines = text.count("\n")
    n_words = (words or SharedWords()).get(text, lang).non_symbol_count() if n_newlines else 0
    return {
        "n_lines": n,
        "line_punct_ratio": sum(map(ends_with_terminal, lines)) / n,
        "short_line_ratio": sum(len(line.strip()) <= short_line_length for line in lines) / n,
        "dup_line_char_frac": dup_chars / chars if chars else 0.0,
        "newline_ratio": n_newlines / max(n_words, 1),
    }


class FineWebQualityStage(Stage):
    """FineWeb quality rules: terminal punctuation, short lines, repeated lines, list-likeness."""

    config_cls = FineWebQualityConfig
    threshold_keys = frozenset(
        {
            "min_line_punct_ratio",
            "line_punct_exclude_zero",
            "max_short_line_ratio",
            "max_dup_line_char_frac",
            "max_newline_ratio",
        }
    )
    score_columns: ClassVar[tuple[str, ...]] = tuple(PREFIX + m for m in MEASURES)
    column_thresholds: ClassVar[dict[str, tuple[str, ...]]] = {
        PREFIX + "line_punct_ratio": ("min_line_punct_ratio",),
        PREFIX + "short_line_ratio": ("max_short_line_ratio",),
        PREFIX + "dup_line_char_frac": ("max_dup_line_char_frac",),
        PREFIX + "newline_ratio": ("max_newline_ratio",),
    }
    intermediates = (WORDS,)

    config: FineWebQualityConfig

    def score(self, batch: pa.Table, words: SharedWords | None = None) -> pa.Table:
        texts, langs = texts_and_langs(batch)
        length = self.config.short_line_length
        words = words or SharedWords()
        rows = [
            fineweb_scores(t, lang, length, words) for t, lang in zip(texts, langs, strict=True)
        ]
        return with_columns(batch, columns_from_rows(rows, MEASURES, PREFIX))

    def keep(self, batch: pa.Table) -> pa.Array:
        c = self.config

        def col(m: str) -> np.ndarray:
            return numeric_column(batch, PREFIX + m)

        punct = col("line_punct_ratio")
        low_punct = below(punct, c.min_line_punct_ratio)
        if c.line_punct_exclude_zero:
            low_punct &= punct != 0
        checks = [
            (col("n_lines") == 0, "fineweb_empty"),
            (low_punct, "fineweb_line_punct_ratio"),
            (above(col("short_line_ratio"), c.max_short_line_ratio), "fineweb_short_lines"),
            (above(col("dup_line_char_frac"), c.max_dup_line_char_frac), "fineweb_dup_line_chars"),
            (above(col("newline_ratio"), c.max_newline_ratio), "fineweb_newline_ratio"),
        ]
        return reasons_from_checks(batch.num_rows, checks)
