"""Errors a user sees: short, specific, and saying what to do."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


class CurateError(Exception):
    """Base of every user-facing error; the CLI prints its message without a traceback."""


class ConfigError(CurateError):
    """A recipe is invalid: raised before any work starts, naming the key and what is allowed."""


class InputError(CurateError):
    """The input cannot be planned: no files match, a protocol is not allowed, a path is unreadable."""


class OutputError(CurateError):
    """The output directory cannot be used as asked (holds another config's run, escapes, ...)."""


class AccountingError(CurateError):
    """Documents in != kept + rejected somewhere: a bug, reported loudly instead of losing data."""


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """' (did you mean X?)' for the closest of `choices` to a misspelt `word`, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
