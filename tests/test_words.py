"""Word, line and paragraph splitting (pipeline.text) for spaced and unspaced scripts."""

from __future__ import annotations

import pytest

from pipeline.text import (
    GOPHER_STOP_WORDS,
    base_lang,
    is_punctuation_token,
    is_spaced,
    non_symbol_words,
    split_lines,
    split_paragraphs,
    split_words,
    stop_words_for,
)


def test_english_words_and_punctuation_tokens() -> None:
    text = "Hello, world! It's 3.5 e-mail... (ok)"
    assert split_words(text) == [
        "Hello", ",", "world", "!", "It's", "3.5", "e-mail", "...", "(", "ok", ")",
    ]  # fmt: skip


def test_unicode_path_keeps_marks_and_curly_quotes() -> None:
    text = "“Quoted” naïve café — हिन्दी भाषा don’t"
    assert split_words(text) == [
        "“", "Quoted", "”", "naïve", "café", "—", "हिन्दी", "भाषा", "don’t",
    ]  # fmt: skip


def test_whitespace_never_in_tokens() -> None:
    words = split_words("a\tb\n\nc  d\u00a0e")
    assert words == ["a", "b", "c", "d", "e"]


def test_chinese_is_segmented_into_words() -> None:
    text = "我们需要对中文文本进行分词，以便计算重复的词组。"
    words = split_words(text)
    assert words[:3] == ["我们", "需要", "对"]
    assert "中文" in words and "，" in words and "。" in words
    assert "".join(words) == text
    assert split_words(text, lang="zh") == words


def test_japanese_is_segmented_into_words() -> None:
    text = "東京都に住んでいる私は、毎日コーヒーを飲みます。"
    words = split_words(text)
    assert words[:4] == ["東京", "都", "に", "住ん"]
    assert "コーヒー" in words and "、" in words
    assert "".join(words) == text


def test_kanji_only_text_uses_lang_hint() -> None:
    # Without kana the script alone says Chinese; the lang column says Japanese.
    assert "".join(split_words("東京大学", lang="ja")) == "東京大学"
    assert len(split_words("东京大学和北京大学", lang="zh")) > 1


def test_thai_sentence_splits_into_several_words() -> None:
    text = "ภาษาไทยเป็นภาษาที่มีระดับเสียงของคำแน่นอน"
    words = split_words(text)
    assert words == ["ภาษาไทย", "เป็น", "ภาษา", "ที่", "มี", "ระดับเสียง", "ของ", "คำ", "แน่นอน"]
    assert split_words(text, lang="th") == words


def test_mixed_scripts_keep_latin_words() -> None:
    words = split_words("我喜欢Python 3.11和C语言")
    assert "Python" in words and "3.11" in words


def test_other_unspaced_scripts_split_into_graphemes() -> None:
    words = split_words("ພາສາລາວ")
    assert len(words) > 1 and "".join(words) == "ພາສາລາວ"


def test_is_spaced() -> None:
    assert is_spaced("plain english")
    assert is_spaced("café au lait")
    assert not is_spaced("中文文本")
    assert not is_spaced("anything", lang="th")
    assert is_spaced("中文", lang="en")


@pytest.mark.parametrize(
    ("tok", "expected"),
    [
        ("...", True), ("—", True), ("“", True), ("#", True), ("$", True), ("。", True),
        ("\u200b", True), ("a", False), ("3", False), ("e-mail", False), ("#1", False),
        ("中文", False), ("_", True),
    ],
)  # fmt: skip
def test_is_punctuation_token(tok: str, expected: bool) -> None:
    assert is_punctuation_token(tok) is expected


def test_non_symbol_words() -> None:
    assert non_symbol_words(["a", ",", "b", "...", "#1"]) == ["a", "b", "#1"]


def test_lines_and_paragraphs() -> None:
    text = "\nA\n\nB\nC\n\n\nD\n"
    assert split_lines(text) == ["A", "B", "C", "D"]
    assert split_paragraphs(text) == ["A", "B\nC", "D"]
    assert split_lines("") == [] and split_paragraphs("  \n ") == []


def test_base_lang() -> None:
    assert base_lang("__label__zh") == "zh"
    assert base_lang("zh-Hans") == "zh"
    assert base_lang("zho_Hans") == "zho"
    assert base_lang("JA") == "ja"
    assert base_lang(None) is None and base_lang("") is None


def test_stop_words() -> None:
    assert {"the", "be", "to", "of", "and", "that", "have", "with"} == GOPHER_STOP_WORDS
    assert stop_words_for(None) == GOPHER_STOP_WORDS
    assert stop_words_for("en") == GOPHER_STOP_WORDS
    assert "der" in stop_words_for("de")
    assert stop_words_for("xx") is None
