"""Text utilities shared by stages: word/line/paragraph splitting and stop-word lists."""

from pipeline.text.stopwords import GOPHER_STOP_WORDS, STOP_WORDS, stop_words_for
from pipeline.text.words import (
    base_lang,
    is_punctuation_token,
    is_spaced,
    non_symbol_words,
    split_lines,
    split_paragraphs,
    split_words,
)

__all__ = [
    "GOPHER_STOP_WORDS",
    "STOP_WORDS",
    "base_lang",
    "is_punctuation_token",
    "is_spaced",
    "non_symbol_words",
    "split_lines",
    "split_paragraphs",
    "split_words",
    "stop_words_for",
]
