"""The `words` intermediate: each document's `split_words` tokens, split once per batch and shared
by the stages of a chain that declare it (Gopher repetition and quality, FineWeb quality).

An entry is keyed by the text itself and the base language code it was split with, so a stage
that rewrites `text` (c4_quality, line_corrections, pii masking) hands the next stage new strings
that miss and are split afresh: a stale token list can never be served. The runner's kernel keeps
one `SharedWords` per batch (pipeline.runner.kernel.Intermediates); it lives in memory only and
is never written to an output shard. Entries are aged per stage: what the current stage did not
ask for is dropped when the next one starts, so at most two stages' worth of tokens are held.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.text.words import base_lang, non_symbol_words, split_words_spacing


@dataclass
class DocWords:
    """One document's tokens (punctuation included), whether it separates words by spaces, and
    its non-symbol words (computed on first use)."""

    words: list[str]
    spaced: bool
    _non_symbol: list[str] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, text: str, lang: str | None = None) -> DocWords:
        """Split `text` now (no sharing): what every stage computes without the intermediate."""
        words, spaced = split_words_spacing(text, lang)
        return cls(words, spaced)

    @property
    def non_symbol(self) -> list[str]:
        """The tokens with at least one character that is not punctuation or a symbol."""
        if self._non_symbol is None:
            self._non_symbol = non_symbol_words(self.words)
        return self._non_symbol


class SharedWords:
    """Tokens of a batch's documents by (text, base language code), aged per stage."""

    def __init__(self) -> None:
        self._current: dict[tuple[str, str | None], DocWords] = {}
        self._previous: dict[tuple[str, str | None], DocWords] = {}
        self.hits = 0
        self.misses = 0

    def next_stage(self) -> None:
        """A new stage starts: entries the last stage did not use are dropped after this one."""
        self._previous, self._current = self._current, {}

    def get(self, text: str, lang: str | None = None) -> DocWords:
        """The tokens of `text` split for `lang`, split now only if no stage has split it yet."""
        key = (text, base_lang(lang))
        found = self._current.get(key) or self._previous.pop(key, None)
        if found is None:
            self.misses += 1
            found = DocWords.of(text, key[1])
        else:
            self.hits += 1
        self._current[key] = found
        return found
