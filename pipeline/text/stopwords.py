"""Stop-word sets for the Gopher "at least 2 stop words" rule.

`GOPHER_STOP_WORDS` are the eight English words of the Gopher paper (Rae et al. 2021, App. A),
also used by datatrove and DCLM. For other languages there is no reference list: `STOP_WORDS`
holds, per ISO 639-1 code, eight to ten of the most frequent function words of the language (the
same idea as the Gopher list: words that any running prose contains), picked by hand from
well-known word-frequency rankings; they are uncalibrated. Words are written as `split_words`
tokenises them, lower-cased. A language without a set here has no stop-word rule (the Gopher
quality stage passes its documents on that rule and says so in its docstring).
"""

from __future__ import annotations

GOPHER_STOP_WORDS: frozenset[str] = frozenset(
    {"the", "be", "to", "of", "and", "that", "have", "with"}
)

STOP_WORDS: dict[str, frozenset[str]] = {
    "en": GOPHER_STOP_WORDS,
    "de": frozenset({"der", "die", "und", "in", "den", "von", "zu", "das", "mit", "sich"}),
    "fr": frozenset({"de", "la", "le", "et", "les", "des", "en", "un", "du", "une"}),
    "es": frozenset({"de", "la", "que", "el", "en", "y", "a", "los", "se", "del"}),
    "it": frozenset({"di", "e", "il", "la", "che", "in", "a", "per", "un", "del"}),
    "pt": frozenset({"de", "a", "o", "que", "e", "do", "da", "em", "um", "para"}),
    "nl": frozenset({"de", "en", "van", "het", "een", "in", "is", "dat", "op", "te"}),
    "ru": frozenset({"и", "в", "не", "на", "что", "с", "по", "как", "это", "он"}),
    "pl": frozenset({"i", "w", "się", "na", "z", "nie", "do", "to", "że", "jest"}),
    "zh": frozenset({"的", "是", "了", "在", "和", "有", "我", "不", "这", "也"}),
    "ja": frozenset({"の", "に", "は", "を", "た", "が", "で", "て", "と", "し"}),
    "th": frozenset({"ที่", "และ", "ใน", "การ", "ของ", "เป็น", "มี", "ได้", "ไม่", "ให้"}),
}


def stop_words_for(lang: str | None) -> frozenset[str] | None:
    """The stop-word set of `lang` (a base ISO code); English when `lang` is None; None if unknown."""
    if lang is None:
        return GOPHER_STOP_WORDS
    return STOP_WORDS.get(lang)
