"""`gopher_quality`: the Gopher document-quality rules (Rae et al. 2021; ALGORITHMS.md T.1, 5.1).

Words are `split_words(text, lang)` tokens; "words" below are the non-symbol ones (at least one
character that is not punctuation or a symbol), as datatrove counts them for the word count and
the mean word length. Measurements (`gopher_` columns):

- `n_words`, `mean_word_len` (characters per word).
- `hash_ratio` = `text.count("#")` / words; `ellipsis_ratio` = (count of "..." + count of "…") /
  words (both 0 for a document without words).
- `bullet_lines_frac`: lines (split on `\\n+`) starting, after leading spaces, with "•" or "-";
  `ellipsis_lines_frac`: lines ending, before trailing spaces, with "..." or "…".
- `alpha_words_frac`: words containing an alphabetic character.
- `stop_words`: occurrences (lower-cased) of the language's stop words: the Gopher eight for
  English and when no `lang` column exists, pipeline.text.stopwords for a few other languages,
  null (the rule passes) for a language without a list.

Where the paper and datatrove differ: the hash/ellipsis ratios and the alphabetic share are
taken over non-symbol words, as the paper's whitespace words (datatrove divides by all tokens,
punctuation included, which makes the alphabetic rule stricter on punctuation-heavy prose);
lines exclude empty lines (datatrove's `splitlines` keeps them in the denominator); stop words
are counted per occurrence (datatrove) and case-insensitively (datatrove is case-sensitive).
The cut-offs were set on English; on Chinese/Japanese/Thai the mean word length is below 3 by
nature, so run this stage on those languages only with adjusted `min_avg_word_length`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

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
from pipeline.text.shared_words import DocWords, SharedWords
from pipeline.text.stopwords import stop_words_for
from pipeline.text.words import base_lang, split_lines

PREFIX = "gopher_"
BULLETS = ("•", "-")
ELLIPSES = ("...", "…")


class GopherQualityConfig(TextStageConfig):
    """Thresholds from datatrove's GopherQualityFilter; `null` disables a rule."""

    stage: Literal["gopher_quality"] = "gopher_quality"
    min_doc_words: int | None = Field(default=50, ge=0)  # reject documents with fewer words
    max_doc_words: int | None = Field(default=100_000, ge=0)  # reject documents with more words
    min_avg_word_length: float | None = Field(default=3, ge=0)  # min mean word length (chars)
    max_avg_word_length: float | None = Field(default=10, ge=0)  # max mean word length (chars)
    # Max ratio of "#" to words, and of ellipses to words (each checked on its own).
    max_symbol_word_ratio: float | None = Field(default=0.1, ge=0)
    max_bullet_lines_ratio: float | None = Field(default=0.9, ge=0)  # max share of bullet lines
    max_ellipsis_lines_ratio: float | None = Field(default=0.3, ge=0)  # max share of ellipsis lines
    min_alpha_words_ratio: float | None = Field(default=0.8, ge=0)  # min share of alphabetic words
    # Min occurrences of the language's stop words (languages without a list pass).
    min_stop_words: int | None = Field(default=2, ge=0)

    @model_validator(mode="after")
    def _ranges(self) -> GopherQualityConfig:
        for low, high in (
            ("min_doc_words", "max_doc_words"),
            ("min_avg_word_length", "max_avg_word_length"),
        ):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"{low} ({lo}) is greater than {high} ({hi})")
        return self


# Measurement name -> Arrow type of its column.
MEASURES: dict[str, pa.DataType] = {
    "n_words": pa.int64(),
    "mean_word_len": pa.float64(),
    "hash_ratio": pa.float64(),
    "ellipsis_ratio": pa.float64(),
    "bullet_lines_frac": pa.float64(),
    "ellipsis_lines_frac": pa.float64(),
    "alpha_words_frac": pa.float64(),
    "stop_words": pa.int64(),
}


def quality_scores(
    text: str, lang: str | None = None, doc: DocWords | None = None
) -> dict[str, float | int | None]:
    """Every measurement of the module docstring for one document; `doc`: its words when
    already split (the `words` intermediate)."""
    code = base_lang(lang)
    doc = doc or DocWords.of(text, code)
    lines = split_lines(text)
    n_lines = len(lines) or 1
    stop_words = stop_words_for(code)
    n, chars, alpha, stop = word_counts(doc, stop_words or frozenset())
    return {
        "n_words": n,
        "mean_word_len": chars / n if n else 0.0,
        "hash_ratio": text.count("#") / n if n else 0.0,
        "ellipsis_ratio": (text.count("...") + text.count("…")) / n if n else 0.0,
        "bullet_lines_frac": sum(line.lstrip().startswith(BULLETS) for line in lines) / n_lines,
        "ellipsis_lines_frac": sum(line.rstrip().endswith(ELLIPSES) for line in lines) / n_lines,
        "alpha_words_frac": alpha / n if n else 0.0,
        "stop_words": None if stop_words is None else stop,
    }


def word_counts(doc: DocWords, stop_words: frozenset[str]) -> tuple[int, int, int, int]:
    """Over the non-symbol words: (how many, their characters, how many have an alphabetic
    character, how many are stop words lower-cased). Each distinct token is looked at once (the
    labels group equal tokens exactly) and weighted by its count."""
    firsts = doc.non_symbol_firsts
    words = list(map(doc.words.__getitem__, firsts.tolist()))
    counts = np.bincount(doc.labels, minlength=len(doc.words))[firsts]
    alpha = np.array([w.isalpha() or any(map(str.isalpha, w)) for w in words], dtype=bool)
    stop = np.fromiter(map(stop_words.__contains__, map(str.lower, words)), bool, len(words))
    chars = int(counts @ doc.lengths[firsts])
    return int(counts.sum()), chars, int(counts[alpha].sum()), int(counts[stop].sum())


class GopherQualityStage(Stage):
    """Gopher quality rules: word count, word length, symbols, bullets, letters, stop words."""

    config_cls = GopherQualityConfig
    threshold_keys = frozenset(GopherQualityConfig.model_fields) - {"stage", "max_chars"}
    score_columns: ClassVar[tuple[str, ...]] = tuple(PREFIX + m for m in MEASURES)
    column_thresholds: ClassVar[dict[str, tuple[str, ...]]] = {
        PREFIX + "n_words": ("min_doc_words", "max_doc_words"),
        PREFIX + "mean_word_len": ("min_avg_word_length", "max_avg_word_length"),
        PREFIX + "hash_ratio": ("max_symbol_word_ratio",),
        PREFIX + "ellipsis_ratio": ("max_symbol_word_ratio",),
        PREFIX + "bullet_lines_frac": ("max_bullet_lines_ratio",),
        PREFIX + "ellipsis_lines_frac": ("max_ellipsis_lines_ratio",),
        PREFIX + "alpha_words_frac": ("min_alpha_words_ratio",),
        PREFIX + "stop_words": ("min_stop_words",),
    }
    intermediates = (WORDS,)

    config: GopherQualityConfig

    def score(self, batch: pa.Table, words: SharedWords | None = None) -> pa.Table:
        texts, langs = texts_and_langs(batch)
        words = words or SharedWords()
        rows = [
            quality_scores(t, lang, words.get(t, lang))
            for t, lang in zip(texts, langs, strict=True)
        ]
        return with_columns(batch, columns_from_rows(rows, MEASURES, PREFIX))

    def keep(self, batch: pa.Table) -> pa.Array:
        c = self.config

        def col(m: str) -> np.ndarray:
            return numeric_column(batch, PREFIX + m)

        mean_len = col("mean_word_len")
        checks = [
            (below(col("n_words"), c.min_doc_words), "gopher_short_doc"),
            (above(col("n_words"), c.max_doc_words), "gopher_long_doc"),
            (
                below(mean_len, c.min_avg_word_length) | above(mean_len, c.max_avg_word_length),
                "gopher_mean_word_len",
            ),
            (
                above(col("hash_ratio"), c.max_symbol_word_ratio)
                | above(col("ellipsis_ratio"), c.max_symbol_word_ratio),
                "gopher_symbol_ratio",
            ),
            (above(col("bullet_lines_frac"), c.max_bullet_lines_ratio), "gopher_bullet_lines"),
            (
                above(col("ellipsis_lines_frac"), c.max_ellipsis_lines_ratio),
                "gopher_ellipsis_lines",
            ),
            (below(col("alpha_words_frac"), c.min_alpha_words_ratio), "gopher_alpha_words"),
            (below(col("stop_words"), c.min_stop_words), "gopher_stop_words"),
        ]
        return reasons_from_checks(batch.num_rows, checks)
