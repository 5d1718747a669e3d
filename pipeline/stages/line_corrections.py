"""`line_corrections`: RefinedWeb line-wise corrections (Penedo et al. 2023, App. G.2).

As in the DCLM reproduction (`refinedweb.yaml`): URLs are removed and runs of newlines capped at
2 first; the words of that text are counted; then lines that are mostly uppercase, only digits,
social counters ("3 likes") or a single word are dropped, and in short lines (<= 10 words)
"sign-in" is cut at the start, "read more..." at the end and "items in cart" anywhere. The
corrected text replaces `text`; `keep` drops the document when more than 5% of its words went.
Words are non-punctuation tokens of `pipeline.text.split_words`, so CJK and Thai count properly.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipeline.schema import LANG, TEXT
from pipeline.stages.base import (
    Stage,
    StageConfig,
    TextStageConfig,
    column_as_list,
    reasons_from_checks,
)
from pipeline.text import is_punctuation_token, split_words

# ALGORITHMS.md T.5, matched against the lowercased line.
COUNTER_LINE = re.compile(
    r"^\W*\d(?:,|\.|\d)*(?:K|k|M|m|B|b)?\s+(?:likes|shares|comments|retweets|reposts|quotes"
    r"|bookmarks|upvotes|downvotes|downloads|views|followers)\W*$"
)

# Top-level domains recognised in scheme-less URLs ("example.com/page"); kept short on purpose:
# a full IANA list also matches file names such as "setup.py" (Paraguay) or "notes.md".
_COMMON_TLDS = (
    "com|org|net|edu|gov|mil|int|info|biz|io|co|us|uk|de|fr|jp|ru|cn|br|in|it|nl|es|ca|au|pl"
    "|ch|se|no|fi|dk|be|at|cz|eu|kr|tw|hk|mx|ar|tr|ir|gr|pt|hu|ro|ua|za|nz|ie|il|sg|vn|id|my"
    "|tv|me|ly|ai|app|dev|xyz|online|site|top|blog|shop|store|news"
)
_URL_TAIL = r"[^\s<>\"'\]\[{}|\\^`]*"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# Linear time: a match may start only where a leftmost match could (the lookbehinds). Without
# them every position inside a run of spaces, of e-mail characters or of `label.` pairs starts
# a scan to the end of the run: `"a." * n` cost O(n^2) (a 32 KB line: minutes).
URL_PATTERN = re.compile(
    rf"(?<![ \t])[ \t]*(?:"  # spaces before a URL go with it: start at the first one
    rf"(?:https?|ftp)://{_URL_TAIL}"  # explicit scheme
    rf"|\bwww\.[\w-]+(?:\.[\w-]+)+{_URL_TAIL}"  # www. host
    rf"|(?<![\w.+-])[\w.+-]+@(?:{_LABEL}\.)+[a-z]{{2,}}\b"  # e-mail, from its first character
    rf"|\b(?<![a-z0-9]\.)(?:{_LABEL}\.)+(?:{_COMMON_TLDS})\b(?:[:/]{_URL_TAIL})?"  # bare domain,
    # from its first label
    rf"|\b(?:\d{{1,3}}\.){{3}}\d{{1,3}}(?::\d+)?(?:/{_URL_TAIL})?"  # IPv4
    rf")",
    re.IGNORECASE,
)
# Something every match above contains; lines without it are skipped (the full pattern is slow).
_URL_TRIGGER = re.compile(rf"://|www\.|@|\.(?:{_COMMON_TLDS})\b|\d\.\d{{1,3}}\.\d", re.IGNORECASE)
# Punctuation that ends a sentence rather than the URL it follows.
_URL_TRAILING = ".,;:!?)'\"»”’"


def _cut_url(match: re.Match[str]) -> str:
    """Replacement for one URL match: nothing, except sentence punctuation that followed it."""
    found = match.group()
    stripped = found.rstrip(_URL_TRAILING)
    return found[len(stripped) :]


def remove_urls(text: str) -> str:
    """Text with URLs, bare domains, e-mail addresses and IPv4 addresses removed.

    Sentence punctuation right after a URL stays ("see http://x.org." keeps the final period);
    spaces and tabs before a URL go with it.
    """
    if _URL_TRIGGER.search(text) is None:
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if _URL_TRIGGER.search(line) is not None:
            lines[i] = URL_PATTERN.sub(_cut_url, line)
    return "\n".join(lines)


def count_words(text: str, lang: str | None = None) -> int:
    """Words of `text`: `split_words` tokens that are not punctuation or symbols only."""
    if not text or text.isspace():
        return 0
    # A token starting with a letter or digit is a word; only the rest need the full check.
    return sum(1 for t in split_words(text, lang) if t[0].isalnum() or not is_punctuation_token(t))


def cap_newlines(text: str, max_consecutive: int) -> str:
    """Replace runs of more than `max_consecutive` newlines by exactly `max_consecutive`."""
    return re.sub(rf"\n{{{max_consecutive + 1},}}", "\n" * max_consecutive, text)


class LineCorrectionsConfig(TextStageConfig):
    """Every correction is switchable (None or empty disables it); defaults are RefinedWeb's."""

    stage: Literal["line_corrections"] = "line_corrections"
    max_consecutive_newlines: int | None = Field(default=2, ge=1)  # newline runs capped at this
    remove_urls: bool = True  # delete URLs, bare domains, e-mail and IPv4 addresses
    # Drop lines whose share of uppercase characters is above this.
    max_uppercase_ratio: float | None = Field(default=0.5, ge=0, le=1)
    # Drop lines whose share of digit characters is above this.
    max_numeric_ratio: float | None = Field(default=0.999999, ge=0, le=1)
    remove_counter_lines: bool = True  # drop social-counter lines such as "3 likes"
    min_words_per_line: int | None = Field(default=2, ge=1)  # drop lines with fewer words
    cut_max_words: int = Field(default=10, ge=0)  # cut_* apply to lines of at most this many words
    cut_prefixes: tuple[str, ...] = ("sign-in",)  # cut at the start of short lines (any case)
    cut_suffixes: tuple[str, ...] = ("read more...",)  # cut at the end of short lines
    cut_anywhere: tuple[str, ...] = ("items in cart",)  # cut anywhere in short lines
    # Threshold key (used only by keep()).
    max_word_removal_ratio: float = Field(default=0.05, ge=0, le=1)  # max share of words removed


def _alternation(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


class LineCorrectionsStage(Stage):
    """Rewrites `text` line by line and records how many words that removed."""

    config_cls: ClassVar[type[StageConfig]] = LineCorrectionsConfig
    threshold_keys: ClassVar[frozenset[str]] = frozenset({"max_word_removal_ratio"})
    score_columns: ClassVar[tuple[str, ...]] = (
        TEXT,
        "line_corrections_words_before",
        "line_corrections_words_removed",
        "line_corrections_words_removed_frac",
        "line_corrections_lines_removed",
        "line_corrections_chars_removed",
    )
    column_thresholds: ClassVar[dict[str, tuple[str, ...]]] = {
        "line_corrections_words_removed_frac": ("max_word_removal_ratio",)
    }

    def __init__(self, config: StageConfig) -> None:
        super().__init__(config)
        cfg: LineCorrectionsConfig = config  # type: ignore[assignment]
        flags = re.IGNORECASE
        self._cut_literals = tuple(
            s.lower() for s in (*cfg.cut_prefixes, *cfg.cut_suffixes, *cfg.cut_anywhere)
        )
        self._prefix = (
            re.compile(rf"^(?:{_alternation(cfg.cut_prefixes)})\s?", flags)
            if cfg.cut_prefixes
            else None
        )
        self._suffix = (
            re.compile(rf"\s?(?:{_alternation(cfg.cut_suffixes)})$", flags)
            if cfg.cut_suffixes
            else None
        )
        self._anywhere = (
            re.compile(rf"\s?(?:{_alternation(cfg.cut_anywhere)})", flags)
            if cfg.cut_anywhere
            else None
        )

    def normalize(self, text: str) -> str:
        """The text the word count starts from: URLs removed, then newline runs capped."""
        cfg: LineCorrectionsConfig = self.config  # type: ignore[assignment]
        if cfg.remove_urls:
            text = remove_urls(text)
        if cfg.max_consecutive_newlines is not None:
            text = cap_newlines(text, cfg.max_consecutive_newlines)
        return text

    def _drop_line(self, line: str, n_words: int) -> bool:
        """True when a whole-line rule removes `line` (blank lines are never dropped)."""
        cfg: LineCorrectionsConfig = self.config  # type: ignore[assignment]
        if not line:
            return False
        n = len(line)
        if (
            cfg.max_uppercase_ratio is not None
            and sum(map(str.isupper, line)) / n > cfg.max_uppercase_ratio
        ):
            return True
        digits = sum(map(str.isdigit, line))
        if cfg.max_numeric_ratio is not None and digits / n > cfg.max_numeric_ratio:
            return True
        # A counter line holds a digit; most lines do not, which spares the regex.
        if cfg.remove_counter_lines and digits and COUNTER_LINE.search(line.lower()):
            return True
        return cfg.min_words_per_line is not None and n_words < cfg.min_words_per_line

    def _cut(self, line: str) -> str:
        """`line` with the boilerplate prefix, suffix and anywhere-substrings cut out."""
        lowered = line.lower()
        if not any(s in lowered for s in self._cut_literals):
            return line
        for pattern in (self._anywhere, self._suffix, self._prefix):
            if pattern is not None:
                line = pattern.sub("", line)
        return line

    def correct(self, text: str, lang: str | None = None) -> tuple[str, int, int, int]:
        """(corrected text, words before, words removed, non-blank lines removed) of one text."""
        cfg: LineCorrectionsConfig = self.config  # type: ignore[assignment]
        text = self.normalize(text)
        before = removed = lines_removed = 0
        kept: list[str] = []
        for line in text.split("\n"):
            n = count_words(line, lang)
            before += n
            if self._drop_line(line, n):
                removed += n
                lines_removed += bool(line.strip())
                continue
            if n <= cfg.cut_max_words and self._cut_literals:
                cut = self._cut(line)
                if cut != line:
                    if not cut.strip():
                        removed += n
                        lines_removed += 1
                        continue
                    removed += n - count_words(cut, lang)
                    line = cut
            kept.append(line)
        return "\n".join(kept).strip(), before, removed, lines_removed

    def score(self, batch: pa.Table) -> pa.Table:
        texts = column_as_list(batch, TEXT)
        langs = column_as_list(batch, LANG) if LANG in batch.column_names else [None] * len(texts)
        out_text, before, removed, frac, lines, chars = [], [], [], [], [], []
        for text, lang in zip(texts, langs, strict=True):
            text = text or ""
            new, n_before, n_removed, n_lines = self.correct(text, lang)
            out_text.append(new)
            before.append(n_before)
            removed.append(n_removed)
            frac.append(n_removed / n_before if n_before else 0.0)
            lines.append(n_lines)
            chars.append(len(text) - len(new))
        columns = {
            TEXT: pa.array(out_text, type=pa.string()),
            "line_corrections_words_before": pa.array(before, type=pa.int64()),
            "line_corrections_words_removed": pa.array(removed, type=pa.int64()),
            "line_corrections_words_removed_frac": pa.array(frac, type=pa.float64()),
            "line_corrections_lines_removed": pa.array(lines, type=pa.int64()),
            "line_corrections_chars_removed": pa.array(chars, type=pa.int64()),
        }
        for col, values in columns.items():
            if col in batch.column_names:
                batch = batch.set_column(batch.column_names.index(col), col, values)
            else:
                batch = batch.append_column(col, values)
        return batch

    def keep(self, batch: pa.Table) -> pa.Array:
        cfg: LineCorrectionsConfig = self.config  # type: ignore[assignment]
        frac = np.asarray(
            batch.column("line_corrections_words_removed_frac").to_numpy(zero_copy_only=False),
            dtype=np.float64,
        )
        empty = np.array([not (t or "").strip() for t in column_as_list(batch, TEXT)], dtype=bool)
        checks = [
            (frac > cfg.max_word_removal_ratio, "line_corrections_word_removal_ratio"),
            (empty, "line_corrections_empty"),
        ]
        return reasons_from_checks(batch.num_rows, checks)
