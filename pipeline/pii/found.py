"""`Found`: one detected item, as every detector returns it."""

from __future__ import annotations

from typing import NamedTuple


class Found(NamedTuple):
    """An item of kind `kind` at text[start:end]; `value` is its normalised form (lowercased
    e-mail, compressed IP, E.164 phone, bare digits...), what a pseudonym is derived from."""

    start: int
    end: int
    kind: str
    value: str
