"""`c4_quality` and `c4_paragraph`: the C4 heuristics (Raffel et al. 2020; ALGORITHMS.md T.3, 5.3).

`c4_quality` rewrites `text` line by line (lines with a word over 1,000 characters, without
terminal punctuation, under 3 words, mentioning javascript or a cookie/terms policy go; citations
such as `[1]` are stripped), then records document signals on what is left: sentences, "lorem
ipsum", `{`, and LDNOOBW bad words. The rewrite depends only on the line-rule keys; `keep` decides
from stored columns with the threshold keys, so ablations re-threshold without recomputing.

`c4_paragraph` is mC4's paragraph filter: keep documents with at least 3 lines of >= 200 chars.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipeline.schema import TEXT
from pipeline.stages.base import (
    Stage,
    StageConfig,
    TextStageConfig,
    column_as_list,
    reasons_from_checks,
)
from pipeline.text import base_lang, is_spaced, non_symbol_words, split_words
from pipeline.text.batch import columns_from_rows, texts_and_langs, with_columns

if TYPE_CHECKING:
    from pipeline.stages.word_trie import WordTrie

# The LDNOOBW bad-word lists, one file per language code (pipeline/resources/README.md).
BADWORDS = "resources/badwords"
# Package files read at run time (in the ablation cache key: pipeline.ablate.fingerprint).
RESOURCE_FILES = (BADWORDS,)

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
# Languages matched by substring (no word boundaries in their script), as C4 did.
SUBSTRING_LANGS = frozenset({"ja", "th", "zh"})
# Words common enough as sub-words of ordinary text to flag >10% of a language's documents
# (C4/datatrove for ja and zh); "ene"/"er" are everyday Norwegian words in the LDNOOBW `no` list.
DEFAULT_ALLOWLIST: dict[str, tuple[str, ...]] = {
    "ja": ("sm", "グロ", "女の子"),
    "zh": ("性",),
    "no": ("ene", "er"),
}
# Language codes whose list is filed under another code.
_LANG_ALIASES = {"nb": "no", "nn": "no"}

# A sentence ends at ., ! or ? (possibly repeated, then closing quotes/brackets) before
# whitespace or the end of the line, or at a full-width CJK terminator.
# Matched from the first terminator of a run only (the lookbehind): a later start fails the same
# way, and trying each one made a line of n dots cost O(n^2) (32 KB of dots: 78 s).
# The pattern opens with one character class so `re` skips to candidate characters (a pattern
# opening with a lookbehind or an alternation is tried at every position, 3x slower); group 1
# holds the rest of an ASCII run, None for a CJK one.
_SENTENCE_END = re.compile(
    r"[.!?。！？](?:(?<=[.!?])(?<![.!?]{2})([.!?]*)[\"'”’»)\]]*(?=\s|$)|(?<=[。！？])[。！？]*)"
)
_ALNUM = re.compile(r"[^\W_]")
_ABBREVIATIONS = frozenset(
    {
        *("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e"),
        *("inc", "ltd", "co", "corp", "no", "fig", "vol", "pp", "cf", "approx", "dept", "est"),
        *("jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"),
        *("u.s", "u.k"),
    }
)


def count_sentences(line: str) -> int:
    """Sentences in one line: segments that end at a terminator and contain a letter or digit.

    A period after a known abbreviation ("Dr.") or a single letter (an initial) does not end a
    sentence; text after the last terminator counts as one more sentence.
    """
    n = 0
    start = 0
    space = -1  # the last space or tab before the previous terminator (and after `start`)
    searched = 0  # where the search for it stopped: each character is searched once
    for m in _SENTENCE_END.finditer(line):
        end = m.start()
        if m.group(1) == "" and line[end] == ".":  # one period: maybe an abbreviation
            nearer = max(line.rfind(" ", searched, end), line.rfind("\t", searched, end))
            space, searched = max(space, nearer), end
            last = line[max(space + 1, start) : end].lower()
            if last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
                continue
        # `[^\W_]` is str.isalnum; terminators are not, so a letter or digit lies before `end`.
        if (end > start and line[end - 1].isalnum()) or _ALNUM.search(line, start, end):
            n += 1
        start = m.end()
    if _ALNUM.search(line, start):
        n += 1
    return n


def _has_policy_phrase(lowered: str) -> bool:
    """True when a lowercased line holds a policy phrase (every cookie phrase holds "cookie")."""
    if "terms of use" in lowered or "privacy policy" in lowered:
        return True
    return "cookie" in lowered and any(p in lowered for p in POLICY_SUBSTRINGS)


def badwords_language(lang: str | None) -> str | None:
    """The LDNOOBW list code for a language label (None when we ship no list for it)."""
    code = base_lang(lang)
    if code is None:
        return None
    code = _LANG_ALIASES.get(code, code)
    return code if code in available_badword_langs() else None


@cache
def available_badword_langs() -> frozenset[str]:
    """Language codes with a bad-word list under pipeline/resources/badwords."""
    folder = resources.files("pipeline").joinpath(BADWORDS)
    return frozenset(p.name for p in folder.iterdir() if p.is_file() and "." not in p.name)


@cache
def load_badwords(lang: str) -> tuple[str, ...]:
    """The shipped LDNOOBW list of `lang`, lowercased, in file order without duplicates."""
    path = resources.files("pipeline").joinpath(BADWORDS, lang)
    words = (w.strip().lower() for w in path.read_text(encoding="utf-8").splitlines())
    return tuple(dict.fromkeys(w for w in words if w))


def badwords_trie(lang: str, allow: tuple[str, ...] = ()) -> WordTrie | None:
    """`lang`'s bad words, less `allow`, for counting in lowercased text (None if none are left).

    Space-delimited languages match whole words (not preceded or followed by a word character);
    ja, th and zh match anywhere.
    """
    from pipeline.stages.word_trie import WordTrie  # numba: loaded by the first scoring process

    allowed = {a.lower() for a in allow}
    words = [w for w in load_badwords(lang) if w not in allowed]
    if not words:
        return None
    return WordTrie(words, bounded=lang not in SUBSTRING_LANGS)


class C4QualityConfig(TextStageConfig):
    """Line rules (score keys: they shape the rewritten text) and document thresholds."""

    stage: Literal["c4_quality"] = "c4_quality"
    remove_citations: bool = True  # strip [1], [edit] and [citation needed] marks
    # Drop lines not ending in terminal_punctuation, or ending in "..." (FineWeb: False).
    filter_no_terminal_punct: bool = True
    terminal_punctuation: tuple[str, ...] = (".", "?", "!", '"', "'")  # accepted line endings
    min_words_per_line: int = Field(default=3, ge=0)  # drop lines with fewer words; 0 disables
    max_word_length: int = Field(default=1000, ge=0)  # drop lines with a longer word; 0 disables
    filter_javascript: bool = True  # drop lines mentioning "javascript"
    filter_policy: bool = True  # drop lines with a terms-of-use, privacy or cookie phrase
    badwords_default_lang: str | None = "en"  # bad-word list used when a doc has no `lang`
    # Per language code, bad-word list entries never counted (default: a few in ja, zh, no).
    badwords_allowlist: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: dict(DEFAULT_ALLOWLIST)
    )
    # Threshold keys (used only by keep()).
    min_num_sentences: int = Field(default=5, ge=0)  # reject docs with fewer sentences; 0 disables
    filter_lorem_ipsum: bool = True  # reject documents containing "lorem ipsum"
    filter_curly_bracket: bool = True  # reject documents containing "{"
    filter_badwords: bool = True  # reject documents with more than max_badwords bad words
    max_badwords: int = Field(default=0, ge=0)  # reject when more bad-word matches than this


class C4QualityStage(Stage):
    """Rewrites `text` with the C4 line rules and scores the document rules."""

    config_cls: ClassVar[type[StageConfig]] = C4QualityConfig
    threshold_keys: ClassVar[frozenset[str]] = frozenset(
        {
            "min_num_sentences",
            "filter_lorem_ipsum",
            "filter_curly_bracket",
            "filter_badwords",
            "max_badwords",
        }
    )
    score_columns: ClassVar[tuple[str, ...]] = (
        TEXT,
        "c4_lines_removed",
        "c4_chars_removed",
        "c4_num_sentences",
        "c4_lorem_ipsum",
        "c4_curly_bracket",
        "c4_badwords_count",
    )
    column_thresholds: ClassVar[dict[str, tuple[str, ...]]] = {
        "c4_num_sentences": ("min_num_sentences",),
        "c4_badwords_count": ("max_badwords",),
    }

    def __init__(self, config: StageConfig) -> None:
        super().__init__(config)
        self._tries: dict[str, WordTrie | None] = {}

    def _badwords(self, lang: str) -> WordTrie | None:
        if lang not in self._tries:
            cfg: C4QualityConfig = self.config  # type: ignore[assignment]
            self._tries[lang] = badwords_trie(lang, cfg.badwords_allowlist.get(lang, ()))
        return self._tries[lang]

    def setup(self) -> None:
        """Load the compiled trie walk and build the default language's bad-word trie now,
        outside any document's CPU limit (numba's loading costs ~0.5 s of CPU once)."""
        from pipeline.stages.word_trie import load_compiled

        load_compiled()
        cfg: C4QualityConfig = self.config  # type: ignore[assignment]
        lang = badwords_language(cfg.badwords_default_lang)
        if lang is not None:
            self._badwords(lang)

    def clean(self, text: str, lang: str | None = None) -> dict[str, object]:
        """The rewritten text and every score of one document."""
        cfg: C4QualityConfig = self.config  # type: ignore[assignment]
        spaced = is_spaced(text, lang)
        terminal = cfg.terminal_punctuation
        kept: list[str] = []
        removed = sentences = 0
        lorem = curly = False
        for raw in text.splitlines():
            line = stripped = raw.strip()
            if not line:
                continue
            # Spaced lines: whitespace words, split in full only for a line long enough to
            # hold a too-long word (the count below needs at most min_words_per_line of them).
            tokens = None if spaced else split_words(line, lang)
            if (
                cfg.max_word_length
                and len(line) > cfg.max_word_length
                and max(map(len, line.split() if tokens is None else tokens)) > cfg.max_word_length
            ):
                removed += 1
                continue
            if cfg.remove_citations and "[" in line:  # every citation mark starts with "["
                line = CITATION.sub("", line)
            if cfg.filter_no_terminal_punct and (
                not line.endswith(terminal) or line.endswith("...")
            ):
                removed += 1
                continue
            if cfg.min_words_per_line:
                if tokens is None:  # min(words, min_words_per_line) parts
                    n_words = len(stripped.split(None, cfg.min_words_per_line - 1))
                else:
                    n_words = len(non_symbol_words(tokens))
                if n_words < cfg.min_words_per_line:
                    removed += 1
                    continue
            lowered = line.lower()
            lorem = lorem or "lorem ipsum" in lowered
            if cfg.filter_javascript and "javascript" in lowered:
                removed += 1
                continue
            curly = curly or "{" in line
            if cfg.filter_policy and _has_policy_phrase(lowered):
                removed += 1
                continue
            sentences += count_sentences(line)
            kept.append(line)
        new_text = "\n".join(kept).strip()
        bw_lang = badwords_language(lang if lang else cfg.badwords_default_lang)
        if bw_lang is None:
            badwords = None
        else:
            trie = self._badwords(bw_lang)
            badwords = trie.count(new_text.lower()) if trie else 0
        return {
            TEXT: new_text,
            "c4_lines_removed": removed,
            "c4_chars_removed": len(text) - len(new_text),
            "c4_num_sentences": sentences,
            "c4_lorem_ipsum": lorem,
            "c4_curly_bracket": curly,
            "c4_badwords_count": badwords,
        }

    def score(self, batch: pa.Table) -> pa.Table:
        texts, langs = texts_and_langs(batch)
        rows = [self.clean(t, lang) for t, lang in zip(texts, langs, strict=True)]
        types = {TEXT: pa.string(), "c4_lorem_ipsum": pa.bool_(), "c4_curly_bracket": pa.bool_()}
        types = {col: types.get(col, pa.int64()) for col in self.score_columns}
        return with_columns(batch, columns_from_rows(rows, types))

    def keep(self, batch: pa.Table) -> pa.Array:
        cfg: C4QualityConfig = self.config  # type: ignore[assignment]
        sentences = np.array(column_as_list(batch, "c4_num_sentences"), dtype=np.int64)
        lorem = np.array(column_as_list(batch, "c4_lorem_ipsum"), dtype=bool)
        curly = np.array(column_as_list(batch, "c4_curly_bracket"), dtype=bool)
        # A null count (no list for the language) never rejects.
        bad = np.array([v or 0 for v in column_as_list(batch, "c4_badwords_count")], dtype=np.int64)
        checks = [
            (lorem & cfg.filter_lorem_ipsum, "c4_lorem_ipsum"),
            (curly & cfg.filter_curly_bracket, "c4_curly_bracket"),
            (sentences < cfg.min_num_sentences, "c4_too_few_sentences"),
            ((bad > cfg.max_badwords) & cfg.filter_badwords, "c4_badwords"),
        ]
        return reasons_from_checks(batch.num_rows, checks)


class C4ParagraphConfig(TextStageConfig):
    """mC4's paragraph rule: at least `min_paragraphs` lines of `min_paragraph_len` characters."""

    stage: Literal["c4_paragraph"] = "c4_paragraph"
    min_paragraphs: int = Field(default=3, ge=1)  # long lines required (k-th longest measured)
    # Threshold key (used only by keep()).
    min_paragraph_len: int = Field(default=200, ge=0)  # characters a long line needs


class C4ParagraphStage(Stage):
    """Scores the length of the `min_paragraphs`-th longest line; keep() compares it."""

    config_cls: ClassVar[type[StageConfig]] = C4ParagraphConfig
    threshold_keys: ClassVar[frozenset[str]] = frozenset({"min_paragraph_len"})
    score_columns: ClassVar[tuple[str, ...]] = ("c4_paragraph_kth_longest_line",)
    column_thresholds: ClassVar[dict[str, tuple[str, ...]]] = {
        "c4_paragraph_kth_longest_line": ("min_paragraph_len",)
    }

    def score(self, batch: pa.Table) -> pa.Table:
        k = self.config.min_paragraphs  # type: ignore[attr-defined]
        values = []
        for text in column_as_list(batch, TEXT):
            lengths = sorted((len(line) for line in (text or "").split("\n")), reverse=True)
            values.append(lengths[k - 1] if len(lengths) >= k else 0)
        return with_columns(
            batch, {"c4_paragraph_kth_longest_line": pa.array(values, type=pa.int64())}
        )

    def keep(self, batch: pa.Table) -> pa.Array:
        cfg: C4ParagraphConfig = self.config  # type: ignore[assignment]
        kth = np.array(column_as_list(batch, "c4_paragraph_kth_longest_line"), dtype=np.int64)
        return reasons_from_checks(
            batch.num_rows, [(kth < cfg.min_paragraph_len, "c4_too_few_paragraphs")]
        )
