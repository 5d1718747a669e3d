"""`line_corrections`: each RefinedWeb line rule on both sides of its edge, the 5% document rule,
URL removal and newline capping, score/threshold separation, and keep rates on real text."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from pipeline.stages.line_corrections import (
    COUNTER_LINE,
    LineCorrectionsConfig,
    LineCorrectionsStage,
    cap_newlines,
    count_words,
    remove_urls,
)

FILLER = "the quick brown fox jumps over the lazy dog today"  # 10 lowercase words


def stage(**kw: object) -> LineCorrectionsStage:
    return LineCorrectionsStage(LineCorrectionsConfig(**kw))


def correct(text: str, **kw: object) -> tuple[str, int, int, int]:
    return stage(**kw).correct(text)


def scored(texts: list[str], **kw: object) -> tuple[pa.Table, list[str | None]]:
    s = stage(**kw)
    table = s.score(pa.table({"text": texts}))
    return table, s.keep(table).to_pylist()


# --- whole-line rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "dropped"),
    [
        ("AAA bbbb", False),  # 3/8 uppercase
        ("AAAA bbb", False),  # exactly 0.5: kept (rule is "more than half")
        ("AAAAA bbb", True),  # 5/9 > 0.5
        ("THIS IS A SHOUTED HEADER", True),
    ],
)
def test_uppercase_ratio_edge(line: str, dropped: bool) -> None:
    text, before, removed, lines = correct(f"{FILLER}\n{line}")
    assert (line not in text) is dropped
    assert removed == (count_words(line) if dropped else 0)
    assert lines == int(dropped)
    assert before == 10 + count_words(line)


def test_uppercase_rule_switch_and_threshold() -> None:
    assert "AAAAA bbb" in correct(f"{FILLER}\nAAAAA bbb", max_uppercase_ratio=None)[0]
    assert "AAAAA bbb" in correct(f"{FILLER}\nAAAAA bbb", max_uppercase_ratio=0.6)[0]


@pytest.mark.parametrize(
    ("line", "dropped"),
    [
        ("12345", True),  # all digits
        ("12 345", False),  # 5/6 digits
        ("2024-01-01", False),
    ],
)
def test_numeric_only_lines(line: str, dropped: bool) -> None:
    # The one-word rule is off so only the numeric rule can act.
    text = correct(f"{FILLER}\n{line}", min_words_per_line=None)[0]
    assert (line not in text) is dropped
    assert line in correct(f"{FILLER}\n{line}", min_words_per_line=None, max_numeric_ratio=None)[0]


@pytest.mark.parametrize(
    ("line", "is_counter"),
    [
        ("3 likes", True),
        ("3.5K views", True),
        ("1,234 followers!!", True),
        ("- 12 Comments -", True),  # matched on the lowercased line
        ("10m downloads", True),
        ("3 likes today", False),  # anything after the counter word
        ("likes 3", False),
        ("3likes", False),  # needs whitespace before the word
        ("a3 likes", False),  # a word character before the number
        ("3 liked", False),
    ],
)
def test_counter_regex_edges(line: str, is_counter: bool) -> None:
    assert bool(COUNTER_LINE.search(line.lower())) is is_counter
    only_counters = {"min_words_per_line": None}  # "3likes" is also a one-word line
    text = correct(f"{FILLER}\n{line}", **only_counters)[0]
    assert (line not in text) is is_counter
    assert line in correct(f"{FILLER}\n{line}", remove_counter_lines=False, **only_counters)[0]


@pytest.mark.parametrize(
    ("line", "dropped"),
    [("Hello", True), ("Hello!", True), ("— Hello —", True), ("Hello world", False)],
)
def test_one_word_lines(line: str, dropped: bool) -> None:
    text, _, removed, _ = correct(f"{FILLER}\n{line}")
    assert (line not in text) is dropped
    assert removed == int(dropped)
    assert line in correct(f"{FILLER}\n{line}", min_words_per_line=None)[0]


def test_blank_lines_survive_and_do_not_count() -> None:
    text, before, removed, lines = correct(f"{FILLER}\n\n{FILLER}")
    assert text == f"{FILLER}\n\n{FILLER}"
    assert (before, removed, lines) == (20, 0, 0)


def test_unspaced_language_line_is_not_one_word() -> None:
    line = "今天天气很好我们去公园散步吧"
    s = stage()
    assert count_words(line, "zh") >= 2
    assert line in s.correct(f"{FILLER}\n{line}", "zh")[0]


# --- substring cuts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Sign-in to your account", "to your account"),
        ("SIGN-IN to your account", "to your account"),
        ("Please sign-in to continue", "Please sign-in to continue"),  # prefix only
        ("A great article Read more...", "A great article"),
        ("Read more... about this", "Read more... about this"),  # suffix only
        ("You have 2 items in cart now", "You have 2 now"),
        ("Read more...", None),  # empty after the cut: the line goes
    ],
)
def test_substring_cuts(line: str, expected: str | None) -> None:
    text, _, removed, lines = correct(f"{FILLER}\n{line}")
    if expected is None:
        assert text == FILLER
        assert lines == 1
    else:
        assert text == f"{FILLER}\n{expected}"
        assert removed == count_words(line) - count_words(expected)


def test_substring_cut_word_limit_edge() -> None:
    ten = "one two three four five six seven eight Read more..."  # 10 words
    eleven = "one two three four five six seven eight nine Read more..."  # 11 words
    assert (count_words(ten), count_words(eleven)) == (10, 11)
    assert correct(ten)[0] == "one two three four five six seven eight"
    assert correct(eleven)[0] == eleven
    assert correct(ten, cut_suffixes=())[0] == ten


# --- document rule: share of words removed ----------------------------------------------------


def _doc_with_removed(n_removed: int, total: int = 100) -> str:
    """`total` words of which `n_removed` sit on one-word lines."""
    kept_words = ["word"] * (total - n_removed)
    lines = [" ".join(kept_words[i : i + 10]) for i in range(0, len(kept_words), 10)]
    return "\n".join(lines + ["alone"] * n_removed)


@pytest.mark.parametrize(
    ("n_removed", "reason"), [(5, None), (6, "line_corrections_word_removal_ratio")]
)
def test_word_removal_ratio_edge(n_removed: int, reason: str | None) -> None:
    table, reasons = scored([_doc_with_removed(n_removed)])
    row = table.to_pylist()[0]
    assert row["line_corrections_words_before"] == 100
    assert row["line_corrections_words_removed"] == n_removed
    assert row["line_corrections_words_removed_frac"] == pytest.approx(n_removed / 100)
    assert row["line_corrections_lines_removed"] == n_removed
    assert "alone" not in row["text"]
    assert reasons == [reason]


def test_thresholds_do_not_change_scores() -> None:
    docs = [_doc_with_removed(6), _doc_with_removed(2), "", "3 likes"]
    strict, strict_reasons = scored(docs)
    loose, loose_reasons = scored(docs, max_word_removal_ratio=0.5)
    assert strict.equals(loose)
    assert strict_reasons == [
        "line_corrections_word_removal_ratio",
        None,
        "line_corrections_empty",
        "line_corrections_word_removal_ratio",
    ]
    assert loose_reasons == [
        None,
        None,
        "line_corrections_empty",
        "line_corrections_word_removal_ratio",
    ]
    # keep() alone re-thresholds stored scores.
    assert stage(max_word_removal_ratio=0.5).keep(strict).to_pylist() == loose_reasons


def test_score_columns_and_chars_removed() -> None:
    s = stage()
    table = s.score(pa.table({"text": [f"{FILLER}\nHello", None]}))
    for col in s.score_columns:
        assert col in table.column_names
    row = table.to_pylist()[0]
    assert row["line_corrections_chars_removed"] == len("\nHello")
    assert table.to_pylist()[1]["text"] == ""


# --- URL removal and newline capping ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see https://example.com/a?b=1 now", "see now"),
        ("see http://example.org/page.", "see."),
        ("visit www.example.co.uk today", "visit today"),
        ("mail bob@example.com please", "mail please"),
        ("host example.com/path here", "host here"),
        ("at 192.168.0.1:8080/x here", "at here"),
        ("edit setup.py and node.js, e.g. this", "edit setup.py and node.js, e.g. this"),
        ("3.5 million", "3.5 million"),
    ],
)
def test_remove_urls(text: str, expected: str) -> None:
    assert remove_urls(text) == expected


def test_urls_removed_before_counting() -> None:
    _, before, removed, _ = correct(f"{FILLER} https://example.com/x")
    assert (before, removed) == (10, 0)
    assert "https" in correct(f"{FILLER} https://example.com/x", remove_urls=False)[0]


def test_newline_cap() -> None:
    assert cap_newlines("a\n\n\n\nb\n\nc\nd", 2) == "a\n\nb\n\nc\nd"
    assert correct(f"{FILLER}\n\n\n\n{FILLER}")[0] == f"{FILLER}\n\n{FILLER}"
    kept = correct(f"{FILLER}\n\n\n\n{FILLER}", max_consecutive_newlines=None)[0]
    assert kept == f"{FILLER}\n\n\n\n{FILLER}"


# --- real text --------------------------------------------------------------------------------


@pytest.mark.slow
def test_keep_rates_on_real_text(shared_data) -> None:
    gold = [
        json.loads(line)
        for name in ("cleaneval", "scrapinghub")
        for line in (shared_data / "extraction" / f"{name}.gold.jsonl").open()
    ]
    _, reasons = scored([g["gold"] for g in gold])
    assert sum(r is None for r in reasons) / len(reasons) > 0.9

    rows = [json.loads(line) for line in (shared_data / "quality" / "dclm-agreement.jsonl").open()]
    _, reasons = scored([r["text"] for r in rows])
    rate = {
        lab: sum(r is None for r, row in zip(reasons, rows, strict=True) if row["label"] == lab)
        / sum(row["label"] == lab for row in rows)
        for lab in (0, 1)
    }
    assert rate[1] > 0.95
    assert rate[0] > 0.9
