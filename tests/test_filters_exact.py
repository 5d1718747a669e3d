"""The sped-up text filters against straightforward reference implementations of their
definitions (the stages' docstrings): Gopher repetition (n-grams as word tuples, a set and a
Counter), Gopher's alphabetic-word count, C4's line rules and the words intermediate's line reuse,
on the shared texts and hand-made edge cases (empty, whitespace only, one word, Unicode, very
repetitive). Equality is exact: the same floats, the same texts."""

from __future__ import annotations

import random
import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from pipeline.schema import LANG, TEXT
from pipeline.stages.c4_quality import (
    _ABBREVIATIONS as ABBREVIATIONS,
)
from pipeline.stages.c4_quality import (
    CITATION,
    DEFAULT_ALLOWLIST,
    SUBSTRING_LANGS,
    C4QualityConfig,
    C4QualityStage,
    _has_policy_phrase,
    available_badword_langs,
    badwords_trie,
    count_sentences,
    load_badwords,
)
from pipeline.stages.gopher_quality import quality_scores
from pipeline.stages.gopher_repetition import (
    DUP_NS,
    TOP_NS,
    dup_ngram_chars_reference,
    ngram_chars,
    repetition_scores,
)
from pipeline.stages.word_trie import word_characters
from pipeline.text.shared_words import DocWords, SharedWords
from pipeline.text.stopwords import stop_words_for
from pipeline.text.words import (
    base_lang,
    non_symbol_words,
    split_lines,
    split_paragraphs,
    split_words,
    split_words_by_line,
    split_words_spacing,
)

EDGE_CASES = [
    "",
    " ",
    "\n\n\t \n",
    "word",
    "  word  ",
    "one two",
    "café naïve — “quoted” ½ ² e\u0301 x\u200dy a_b ___ _-_",
    "Ünïcödé lïnë\nÜnïcödé lïnë\n\nÜnïcödé lïnë",
    "the " * 3000,
    "same line here\n" * 400,
    "a b c d e f g h i j k " * 300,
    ("spam eggs " * 7 + "\n\n") * 50,
    "x. " * 500,
    "我们的数据。我们的数据。我们的数据。",
    "日本語のテキストです。\nカタカナ\n日本語のテキストです。",
    "ภาษาไทย ภาษาไทย ภาษาไทย",
    "mixed ascii line\nnon-ascii lïne\n\n\nmixed ascii line",
    # Controls where Python's and `regex`'s whitespace differ, on ASCII and non-ASCII lines.
    "ascii\x1cline\x0bhere\nlïne\x1d\x85end\u2028x",
]


def texts_with_langs(shared_texts: pa.Table) -> list[tuple[str, str | None]]:
    """The shared texts and the edge cases (English and no language), with their language."""
    pairs = list(
        zip(
            shared_texts.column(TEXT).to_pylist(),
            shared_texts.column(LANG).to_pylist(),
            strict=True,
        )
    )
    return pairs + [(t, lang) for t in EDGE_CASES for lang in ("en", None)]


# --- Gopher repetition ------------------------------------------------------------------------


def reference_duplicates(parts: list[str]) -> tuple[int, int]:
    """(repeats, their characters): every occurrence after a part's first."""
    seen: set[str] = set()
    dup = chars = 0
    for part in parts:
        if part in seen:
            dup += 1
            chars += len(part)
        else:
            seen.add(part)
    return dup, chars


def reference_top_chars(words: list[str], n: int, sep: str) -> int:
    """Length of the most frequent n-gram's string (first seen among ties) times its count."""
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    best, best_count = None, 0
    for gram, count in counts.items():  # insertion order: first seen first
        if count > best_count:
            best, best_count = gram, count
    return len(sep.join(best)) * best_count if best else 0


def reference_repetition(text: str, lang: str | None) -> dict[str, float]:
    """Every Gopher repetition measurement, computed as the module docstring words it."""
    size = len(text)
    out: dict[str, float] = {}
    stripped = text.strip()
    for key, pattern in (("para", r"\n{2,}"), ("line", r"\n+")):
        parts = re.split(pattern, stripped) if stripped else []
        dup, chars = reference_duplicates(parts)
        out[f"dup_{key}_frac"] = dup / len(parts) if parts else 0.0
        out[f"dup_{key}_char_frac"] = chars / size if parts else 0.0
    words, spaced = split_words_spacing(text, lang)
    for n in TOP_NS:
        top = reference_top_chars(words, n, " " if spaced else "")
        out[f"top_{n}gram_char_frac"] = top / size if size else 0.0
    for n in DUP_NS:
        out[f"dup_{n}gram_char_frac"] = dup_ngram_chars_reference(words, n) / size if size else 0.0
    return out


@pytest.mark.slow
def test_repetition_scores_equal_the_reference(shared_texts: pa.Table) -> None:
    words = SharedWords()
    for text, lang in texts_with_langs(shared_texts):
        expected = reference_repetition(text, lang)
        assert repetition_scores(text, lang) == expected, text[:60]
        assert repetition_scores(text, lang, words.get(text, lang)) == expected


def test_ngram_classes_equal_tuple_counting_on_random_sequences() -> None:
    rng = random.Random(24)
    for trial in range(600):
        vocab = [f"w{i}" * rng.randint(1, 3) for i in range(rng.choice((1, 2, 3, 5, 20, 200)))]
        words = [rng.choice(vocab) for _ in range(rng.randint(0, 300 if trial % 10 else 3000))]
        sizes = tuple(range(1, 12))
        top, dup = ngram_chars(DocWords(words, True), 1, sizes, sizes)
        for n, top_chars, dup_chars in zip(sizes, top, dup, strict=True):
            assert top_chars == reference_top_chars(words, n, " "), (n, words)
            assert dup_chars == dup_ngram_chars_reference(words, n), (n, words)


def test_repetition_edge_cases_by_hand() -> None:
    assert set(repetition_scores("").values()) == {0.0}
    assert set(repetition_scores(" \n ").values()) == {0.0}
    one = repetition_scores("word")
    assert one["top_2gram_char_frac"] == 0.0 and one["dup_line_frac"] == 0.0
    # "the " x 3000: the bigram "the the" (7 chars) 2,999 times over 12,000 characters.
    many = repetition_scores("the " * 3000)
    assert many["top_2gram_char_frac"] == 7 * 2999 / 12000
    # 5-gram jump scan: record 0, then 2,995 repeats in jumps of 5 from position 1.
    assert many["dup_5gram_char_frac"] == 3 * 5 * ((3000 - 1) // 5) / 12000


# --- Gopher quality, C4 -----------------------------------------------------------------------


def reference_quality(text: str, lang: str | None) -> dict[str, float | int | None]:
    """Gopher quality's measurements over the non-symbol word list, as its docstring words them."""
    code = base_lang(lang)
    words = non_symbol_words(split_words(text, code))
    n = len(words)
    lines = [line for line in re.split(r"\n+", text.strip()) if line] if text.strip() else []
    stop_words = stop_words_for(code)
    return {
        "n_words": n,
        "mean_word_len": sum(len(w) for w in words) / n if n else 0.0,
        "hash_ratio": text.count("#") / n if n else 0.0,
        "ellipsis_ratio": (text.count("...") + text.count("…")) / n if n else 0.0,
        "bullet_lines_frac": sum(ln.lstrip().startswith(("•", "-")) for ln in lines)
        / (len(lines) or 1),
        "ellipsis_lines_frac": sum(ln.rstrip().endswith(("...", "…")) for ln in lines)
        / (len(lines) or 1),
        "alpha_words_frac": sum(any(c.isalpha() for c in w) for w in words) / n if n else 0.0,
        "stop_words": None if stop_words is None else sum(w.lower() in stop_words for w in words),
    }


QUALITY_CASES = [
    ("The the THE of and with that have be to... # x", "en"),
    ("der Die und # ...", "de"),
    ("words here only", "xx"),
    ("_ __ 1 ² ½ a_b ... … • - – — “ ”", None),
]


@pytest.mark.slow
def test_quality_scores_equal_the_reference(shared_texts: pa.Table) -> None:
    words = SharedWords()
    for text, lang in texts_with_langs(shared_texts) + QUALITY_CASES:
        expected = reference_quality(text, lang)
        assert quality_scores(text, lang) == expected, text[:60]
        assert quality_scores(text, lang, words.get(text, lang)) == expected


def reference_c4_lines(text: str, cfg: C4QualityConfig) -> tuple[str, int]:
    """C4's line rules on a spaced text as written in the stage's docstring: (kept text,
    removed lines)."""
    kept: list[str] = []
    removed = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        words = line.split()
        if cfg.max_word_length and any(len(w) > cfg.max_word_length for w in words):
            removed += 1
            continue
        if cfg.remove_citations:
            line = CITATION.sub("", line)
        if cfg.filter_no_terminal_punct and (
            not line.endswith(cfg.terminal_punctuation) or line.endswith("...")
        ):
            removed += 1
            continue
        lowered = line.lower()
        if (
            len(words) < cfg.min_words_per_line
            or (cfg.filter_javascript and "javascript" in lowered)
            or (cfg.filter_policy and _has_policy_phrase(lowered))
        ):
            removed += 1
            continue
        kept.append(line)
    return "\n".join(kept).strip(), removed


C4_EDGE_CASES = [
    "a b [1]\na b\n  a  b  c  \na\tb\u00a0c\n[edit] one two\none [citation needed] two",
    "x" * 1001 + " a b c\n" + "y" * 1000 + " a b c\n" + "z" * 1200,
    "Use of cookies here, ok.\nJavaScript is needed now.\nLorem ipsum dolor sit.",
]


@pytest.mark.slow
@pytest.mark.parametrize("terminal", [False, True])
@pytest.mark.parametrize("min_words", [0, 1, 3, 5])
def test_c4_line_rules_equal_the_reference(
    shared_texts: pa.Table, terminal: bool, min_words: int
) -> None:
    cfg = C4QualityConfig(filter_no_terminal_punct=terminal, min_words_per_line=min_words)
    stage = C4QualityStage(cfg)
    # English: whitespace words on every line, whatever the script (`is_spaced` of a language).
    for text in [t for t, _ in texts_with_langs(shared_texts)] + C4_EDGE_CASES:
        out = stage.clean(text, "en")
        assert (out[TEXT], out["c4_lines_removed"]) == reference_c4_lines(text, cfg), text[:60]


def reference_count_sentences(line: str) -> int:
    """Sentences as `count_sentences` defines them, with the plain pattern (a run of . ! ? from
    its first character, closers, then whitespace or the end; or a run of 。！？) and the word
    before a lone period found by splitting."""
    ends = r"(?<![.!?])([.!?]+)[\"'”’»)\]]*(?=\s|$)|[。！？]+"
    n = start = 0
    for m in re.finditer(ends, line):
        if m.group(1) == ".":
            last = line[start : m.start()].replace("\t", " ").rsplit(" ", 1)[-1].lower()
            if last in ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
                continue
        if re.search(r"[^\W_]", line[start : m.end()]):
            n += 1
        start = m.end()
    return n + bool(re.search(r"[^\W_]", line[start:]))


SENTENCE_CASES = [
    "",
    "...",
    "a.. b",
    'x..." y',
    "。。！x",
    ".?!.",
    "a.b. c!",
    "“Hi.” she said. Dr. X",
    "。.。",
    ".。",
    "Dr.\tSmith. ok",
    "e.g. this. U.S. x",
    "a. b. c.",
    "_. __! 2?",
    "é. ü! ½? x",
    "." * 5000 + " end",
]


@pytest.mark.slow
def test_sentence_counts_equal_the_reference(shared_texts: pa.Table) -> None:
    for text, _ in texts_with_langs(shared_texts):
        for line in text.splitlines():
            assert count_sentences(line.strip()) == reference_count_sentences(line.strip()), line
    for line in SENTENCE_CASES:
        assert count_sentences(line) == reference_count_sentences(line), line


def reference_badwords(lang: str, allow: tuple[str, ...]) -> re.Pattern[str]:
    """C4's bad-word search as a plain regex: the list (less `allow`) as one alternation,
    longest first, whole words except in ja, th and zh."""
    words = [w for w in load_badwords(lang) if w not in {a.lower() for a in allow}]
    alternation = "|".join(map(re.escape, sorted(words, key=len, reverse=True)))
    if lang in SUBSTRING_LANGS:
        return re.compile(alternation)
    return re.compile(rf"(?<!\w)(?:{alternation})(?!\w)")


def test_word_characters_are_the_regex_word_class() -> None:
    table = word_characters()
    every = "".join(map(chr, range(0x110000)))
    expected = np.zeros(0x110000, dtype=bool)
    expected[[ord(c) for c in re.findall(r"\w", every)]] = True
    assert np.array_equal(table, expected)


@pytest.mark.slow
def test_badword_counts_equal_the_regex(shared_texts: pa.Table) -> None:
    rng = random.Random(5)
    texts = [t.lower() for t, _ in texts_with_langs(shared_texts)]
    for lang in sorted(available_badword_langs()):
        allow = DEFAULT_ALLOWLIST.get(lang, ())
        trie, regex = badwords_trie(lang, allow), reference_badwords(lang, allow)
        assert trie is not None
        words = list(load_badwords(lang))
        # Listed words glued, cut and spaced at random: prefixes, overlaps, word boundaries.
        pieces = [*words, " ", "_", "a", "é", "1", ".", "\n", "x\u0301"]
        made = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 40))) for _ in range(300)]
        made += [w[: rng.randint(0, len(w))] + w for w in words]
        for text in texts + made:
            assert trie.count(text) == len(regex.findall(text)), (lang, text[:80])


# --- the words intermediate's line reuse ------------------------------------------------------


@pytest.mark.slow
def test_split_by_line_equals_the_whole_text_split(shared_texts: pa.Table) -> None:
    for text, lang in texts_with_langs(shared_texts):
        by_line = split_words_by_line(text, lang)
        if by_line is None:  # a script written without spaces: segmented as a whole
            assert split_words_by_line(text.replace("\n", " "), lang) is None
            continue
        lines, spaced = by_line
        assert ([w for line in lines for w in line], spaced) == split_words_spacing(text, lang)
        assert len(lines) == text.count("\n") + 1


def test_a_rewritten_text_reuses_only_unchanged_lines() -> None:
    words = SharedWords()
    words.next_stage()
    first = words.get("Keep this line.\nDrop [1] this one.\nlïne three", "en")
    words.next_stage()
    rewritten = "Keep this line.\nDrop this one.\nlïne three"
    doc = words.get(rewritten, "en")
    assert (doc.words, doc.spaced) == split_words_spacing(rewritten, "en")
    assert first.lines is not None and doc.lines is not None
    assert doc.lines[0] is first.lines[0] and doc.lines[2] is first.lines[2]  # reused
    assert doc.lines[1] == ["Drop", "this", "one", "."]  # split afresh
    assert doc.non_symbol == ["Keep", "this", "line", "Drop", "this", "one", "lïne", "three"]


@pytest.mark.slow
def test_non_symbol_counts_equal_the_reference_along_a_chain(shared_texts: pa.Table) -> None:
    """As the FineWeb chain asks: words split and classified (gopher_quality), the texts
    rewritten (c4_quality), then counted again from the equal lines' counts (fineweb_quality)."""
    c4 = C4QualityStage(C4QualityConfig(filter_no_terminal_punct=False))
    pairs = texts_with_langs(shared_texts)
    words = SharedWords()
    words.next_stage()
    for text, lang in pairs:
        doc = words.get(text, lang)
        assert len(doc.non_symbol_firsts) == len(set(non_symbol_words(doc.words)))
        assert doc.non_symbol_count() == len(non_symbol_words(split_words(text, lang)))
    words.next_stage()
    reused = 0
    for text, lang in pairs:
        rewritten = c4.clean(text, lang)[TEXT]
        expected = len(non_symbol_words(split_words(rewritten, lang)))
        doc = words.get(rewritten, lang)
        assert doc.non_symbol_count() == expected, rewritten[:60]
        reused += sum(count is not None for count in doc.line_counts or ())
    assert reused > 1000  # most lines' counts came from the texts before the rewrite
    assert DocWords.of("a . b", None).non_symbol_count() == 2


@pytest.mark.slow
def test_lines_and_paragraphs_equal_the_regex_split(shared_texts: pa.Table) -> None:
    for text, _ in texts_with_langs(shared_texts) + [("a\n\n\nb\n", None), ("x\n \n\ny", None)]:
        stripped = text.strip()
        assert split_lines(text) == (re.split(r"\n+", stripped) if stripped else [])
        assert split_paragraphs(text) == (re.split(r"\n{2,}", stripped) if stripped else [])
