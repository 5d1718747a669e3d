"""`c4_quality` and `c4_paragraph`: every line and document rule on both sides of its edge, the
bad-word lists, score/threshold separation, and keep rates on real text."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pytest

from pipeline.stages.c4_quality import (
    C4ParagraphConfig,
    C4ParagraphStage,
    C4QualityConfig,
    C4QualityStage,
    available_badword_langs,
    badwords_language,
    count_sentences,
    load_badwords,
)
from pipeline.stages.word_trie import WordTrie

GOOD = "This is a perfectly normal sentence."  # kept by every line rule, one sentence


def clean(text: str, lang: str | None = None, **kw: object) -> dict[str, object]:
    return C4QualityStage(C4QualityConfig(**kw)).clean(text, lang)


def decide(texts: list[str], langs: list[str | None] | None = None, **kw: object):
    s = C4QualityStage(C4QualityConfig(**kw))
    columns: dict[str, list] = {"text": texts}
    if langs is not None:
        columns["lang"] = langs
    table = s.score(pa.table(columns))
    return table, s.keep(table).to_pylist()


def five_sentences(extra: str = "") -> str:
    return "\n".join([GOOD] * 5 + ([extra] if extra else []))


# --- line rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "kept"), [(1000, True), (1001, False)])
def test_max_word_length_edge(length: int, kept: bool) -> None:
    line = f"A long {'x' * length} word."
    out = clean(f"{GOOD}\n{line}")
    assert (line in out["text"]) is kept
    assert out["c4_lines_removed"] == int(not kept)
    assert line in clean(f"{GOOD}\n{line}", max_word_length=0)["text"]


def test_citations_stripped() -> None:
    out = clean("This is a fact[1] and more[edit] text[citation needed] here[23].")
    assert out["text"] == "This is a fact and more text here."
    assert "[1]" in clean("This is a fact[1] here.", remove_citations=False)["text"]


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("It ends with a period.", True),
        ("Does it end with a question?", True),
        ("It ends with a bang!", True),
        ('He said "it ends here"', True),
        ("He said 'it ends here'", True),
        ("It ends with an ellipsis...", False),
        ("It has no terminal punctuation", False),
        ("It ends with a colon:", False),
    ],
)
def test_terminal_punctuation(line: str, kept: bool) -> None:
    assert (line in clean(line)["text"]) is kept
    assert line in clean(line, filter_no_terminal_punct=False)["text"]


def test_terminal_punctuation_is_configurable() -> None:
    line = "这是一个句子。"
    assert clean(line, "zh")["text"] == ""
    assert clean(line, "zh", terminal_punctuation=("。",))["text"] == line


@pytest.mark.parametrize(("line", "kept"), [("Two words.", False), ("Three words here.", True)])
def test_min_words_per_line_edge(line: str, kept: bool) -> None:
    assert (line in clean(line)["text"]) is kept
    assert line in clean(line, min_words_per_line=0)["text"]


def test_min_words_counts_unspaced_languages_by_segmenting() -> None:
    line = "今天天气很好我们去公园散步吧。"  # one whitespace "word", several real words
    assert clean(line, "zh", terminal_punctuation=("。",))["text"] == line


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("Please enable JavaScript to view this page.", "filter_javascript"),
        ("Please read our Privacy Policy carefully.", "filter_policy"),
        ("This website uses cookies to improve things.", "filter_policy"),
        ("See the terms of use for details.", "filter_policy"),
    ],
)
def test_javascript_and_policy_lines(line: str, key: str) -> None:
    out = clean(f"{GOOD}\n{line}")
    assert out["text"] == GOOD
    assert out["c4_lines_removed"] == 1
    assert line in clean(f"{GOOD}\n{line}", **{key: False})["text"]


def test_lines_and_chars_removed() -> None:
    text = f"  {GOOD}  \n\nno punctuation here\nshort.\n{GOOD}"
    out = clean(text)
    assert out["text"] == f"{GOOD}\n{GOOD}"
    assert out["c4_lines_removed"] == 2  # blank lines are not counted
    assert out["c4_chars_removed"] == len(text) - len(out["text"])


# --- document rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "n"),
    [
        ("One. Two! Three? Four.", 4),
        ("Dr. Smith met Mr. Jones at 3.5 p.m today.", 1),
        ("J. R. R. Tolkien wrote books. He died.", 2),
        ('He said "stop." Then he left', 2),
        ("这是第一句。这是第二句！", 2),
        ("No terminator at all", 1),
        ("...", 0),
    ],
)
def test_count_sentences(line: str, n: int) -> None:
    assert count_sentences(line) == n


@pytest.mark.parametrize(("n", "reason"), [(4, "c4_too_few_sentences"), (5, None)])
def test_min_sentences_edge(n: int, reason: str | None) -> None:
    table, reasons = decide(["\n".join([GOOD] * n)])
    assert table.column("c4_num_sentences").to_pylist() == [n]
    assert reasons == [reason]


def test_lorem_ipsum_and_curly_bracket() -> None:
    lorem = "Lorem ipsum dolor sit amet, consectetur."
    curly = "The set {a, b} has two elements."
    table, reasons = decide([five_sentences(lorem), five_sentences(curly), five_sentences()])
    assert table.column("c4_lorem_ipsum").to_pylist() == [True, False, False]
    assert table.column("c4_curly_bracket").to_pylist() == [False, True, False]
    assert reasons == ["c4_lorem_ipsum", "c4_curly_bracket", None]
    _, reasons = decide(
        [five_sentences(lorem), five_sentences(curly)],
        filter_lorem_ipsum=False,
        filter_curly_bracket=False,
    )
    assert reasons == [None, None]


def test_document_flags_only_on_lines_that_reach_the_check() -> None:
    # As in C4: a line dropped earlier (no terminal punctuation, javascript) cannot flag the page.
    out = clean(five_sentences("lorem ipsum without an ending"))
    assert out["c4_lorem_ipsum"] is False
    out = clean(five_sentences("function() { javascript goes here; }."))
    assert out["c4_curly_bracket"] is False


# --- bad words --------------------------------------------------------------------------------


def test_shipped_lists() -> None:
    langs = available_badword_langs()
    assert {"en", "de", "es", "fr", "it", "ja", "nl", "pt", "ru", "zh"} <= langs
    en = load_badwords("en")
    assert len(en) > 300 and "2 girls 1 cup" in en and "sex" in en
    assert badwords_language("en_Latn") == "en"
    assert badwords_language("nb") == "no"
    assert badwords_language("ko") is None


@pytest.mark.parametrize(
    ("text", "lang", "count"),
    [
        ("Nothing bad is written in this line.", "en", 0),
        ("Sussex and Essex are counties, in class.", "en", 0),  # word boundaries
        ("A sex scene. Another sex scene.", "en", 2),
        ("The Sex Pistols played.", None, 1),  # no lang: default list (en), lowercased
        ("Das ist scheiße.", "de", 1),
        ("他妈的", "zh", 1),  # substring match for zh
        ("这个产品的性能很好。", "zh", 0),  # 性 is allow-listed
        ("Dette er en test og ene gang.", "no", 0),  # er / ene allow-listed
        ("이것은 문장입니다.", "ko", None),  # no list: not scored
    ],
)
def test_badwords_count(text: str, lang: str | None, count: int | None) -> None:
    out = clean(text, lang, filter_no_terminal_punct=False, min_words_per_line=0)
    assert out["c4_badwords_count"] == count


def test_badwords_threshold_and_switch() -> None:
    doc = five_sentences("This line mentions sex once.")
    table, reasons = decide([doc])
    assert table.column("c4_badwords_count").to_pylist() == [1]
    assert reasons == ["c4_badwords"]
    assert decide([doc], max_badwords=1)[1] == [None]
    assert decide([doc], filter_badwords=False)[1] == [None]
    assert decide([doc], ["ko"])[1] == [None]  # no list for the language: kept


def test_badwords_default_lang_none() -> None:
    out = clean("A sex scene here.", badwords_default_lang=None)
    assert out["c4_badwords_count"] is None


def test_word_trie_counts_like_a_flat_alternation() -> None:
    words = list(load_badwords("en"))
    text = " ".join(["sexy", "sexist", "ass", "assholes", "2 girls 1 cup", "bass", "🖕", "xxx"])
    alternation = "|".join(map(re.escape, sorted(words, key=len, reverse=True)))
    flat = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)")
    assert flat.findall(text) == ["sexy", "ass", "2 girls 1 cup", "🖕", "xxx"]
    assert WordTrie(words, bounded=True).count(text) == 5


# --- scores vs thresholds ---------------------------------------------------------------------


def test_thresholds_do_not_change_scores() -> None:
    docs = [
        five_sentences("A sex scene."),
        "This is short.",
        five_sentences("The set {x} is small."),
    ]
    a, reasons_a = decide(docs)
    b, reasons_b = decide(
        docs,
        min_num_sentences=1,
        filter_lorem_ipsum=False,
        filter_curly_bracket=False,
        filter_badwords=False,
        max_badwords=3,
    )
    assert a.equals(b)
    assert reasons_a == ["c4_badwords", "c4_too_few_sentences", "c4_curly_bracket"]
    assert reasons_b == [None, None, None]
    stage = C4QualityStage(C4QualityConfig())
    assert set(stage.threshold_keys) <= set(C4QualityConfig.model_fields)
    assert stage.keep(b).to_pylist() == reasons_a


def test_score_replaces_text() -> None:
    s = C4QualityStage(C4QualityConfig())
    table = s.score(pa.table({"text": [f"{GOOD}\nmenu item", None]}))
    assert table.column("text").to_pylist() == [GOOD, ""]
    for col in s.score_columns:
        assert col in table.column_names


# --- c4_paragraph -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lengths", "kth", "reason"),
    [
        ((200, 200, 200), 200, None),
        ((500, 300, 199), 199, "c4_too_few_paragraphs"),
        ((999, 999), 0, "c4_too_few_paragraphs"),
        ((10, 250, 5, 220, 201), 201, None),
    ],
)
def test_c4_paragraph(lengths: tuple[int, ...], kth: int, reason: str | None) -> None:
    text = "\n".join("x" * n for n in lengths)
    s = C4ParagraphStage(C4ParagraphConfig())
    table = s.score(pa.table({"text": [text]}))
    assert table.column("c4_paragraph_kth_longest_line").to_pylist() == [kth]
    assert s.keep(table).to_pylist() == [reason]
    loose = C4ParagraphStage(C4ParagraphConfig(min_paragraph_len=100))
    assert loose.keep(table).to_pylist() == [None if kth >= 100 else "c4_too_few_paragraphs"]


# --- real text --------------------------------------------------------------------------------


def _keep_rate(reasons: list[str | None]) -> float:
    return sum(r is None for r in reasons) / len(reasons)


@pytest.mark.slow
def test_keep_rates_on_real_text(shared_data) -> None:
    gold = [
        json.loads(line)["gold"]
        for name in ("cleaneval", "scrapinghub")
        for line in (shared_data / "extraction" / f"{name}.gold.jsonl").open()
    ]
    rows = [json.loads(line) for line in (shared_data / "quality" / "dclm-agreement.jsonl").open()]
    texts = [r["text"] for r in rows]
    for punct in (True, False):
        _, reasons = decide(gold, filter_no_terminal_punct=punct)
        assert _keep_rate(reasons) > 0.7
        _, reasons = decide(texts, filter_no_terminal_punct=punct)
        by_label = {
            lab: _keep_rate(
                [r for r, row in zip(reasons, rows, strict=True) if row["label"] == lab]
            )
            for lab in (0, 1)
        }
        # C4 keeps the higher-quality half (label 1) more often than the lower one.
        assert by_label[1] > by_label[0]
