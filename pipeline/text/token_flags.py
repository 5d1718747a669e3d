"""What the quality stages ask of each word token, worked out once per distinct token.

A token's flags depend on its string alone: non-symbol (`non_symbol_words`), alphabetic (a
character for which str.isalpha holds) and stop word (lower-cased, in a language's set). Web text
repeats a small vocabulary, so a per-process table keyed by the token string answers almost every
lookup at C speed (`map(table.__getitem__, words)`), and the Python classification runs only for
tokens never seen before. The table is emptied when it grows past `MAX_TOKENS`.
"""

from __future__ import annotations

import numpy as np

from pipeline.text.words import non_symbol_words

NON_SYMBOL = 1
ALPHA = 2
STOP = 4
MAX_TOKENS = 1 << 20


class TokenFlags(dict[str, int]):
    """token -> NON_SYMBOL | ALPHA | STOP bits for one stop-word set (None: no STOP bit)."""

    def __init__(self, stop_words: frozenset[str] | None) -> None:
        super().__init__()
        self.stop_words = stop_words or frozenset()

    def __missing__(self, token: str) -> int:
        flags = 0
        if non_symbol_words([token]):
            flags = NON_SYMBOL
            if any(map(str.isalpha, token)):
                flags |= ALPHA
            if token.lower() in self.stop_words:
                flags |= STOP
        self[token] = flags
        return flags

    def of(self, words: list[str]) -> np.ndarray:
        """uint8 flags of each token of `words`."""
        if len(self) > MAX_TOKENS:
            self.clear()
        return np.fromiter(map(self.__getitem__, words), np.uint8, count=len(words))


_TABLES: dict[frozenset[str] | None, TokenFlags] = {}


def token_flags(stop_words: frozenset[str] | None = None) -> TokenFlags:
    """The process's table for `stop_words` (one per set; None: no stop-word bit)."""
    table = _TABLES.get(stop_words)
    if table is None:
        table = _TABLES[stop_words] = TokenFlags(stop_words)
    return table


def count_non_symbol(words: list[str]) -> int:
    """Number of non-symbol tokens in `words` (`len(non_symbol_words(words))`)."""
    return int(np.count_nonzero(token_flags().of(words) & NON_SYMBOL))
