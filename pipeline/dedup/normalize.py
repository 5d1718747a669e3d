"""Text normalisation for exact-match keys (document, line and substring dedup).

Two texts are duplicates when their *normalised* forms are equal, so normalisation decides what
"exact" means. Each step is a switch of `TextNorm`; named presets cover the usual choices:

- `none`: the raw string (byte identity of its UTF-8 encoding).
- `strip`: outer whitespace removed.
- `nfc_strip`: Unicode NFC, then strip (ALGORITHMS.md 3.1, the document-level default).
- `nfc_whitespace`: NFC, every whitespace run -> one space, strip.
- `lowercase`: `nfc_whitespace` plus lowercasing.
- `ccnet`: strip, lowercase, every Unicode decimal digit -> `0`, Unicode punctuation (`\\p{P}`) and
  non-printing characters removed (CCNet `normalize_for_dedup`, ALGORITHMS.md 3.3).

Steps run in a fixed order: NFC, accent stripping, lowercase, digits, removals, whitespace.
Every step except whitespace collapsing keeps `\\n` characters where they are, which lets
`normalize_lines` normalise a whole document at once and split it afterwards, line i of the result
being line i of `text.split("\\n")`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import cache
from typing import Literal

import regex
from pydantic import BaseModel, ConfigDict

Whitespace = Literal["keep", "strip", "collapse"]


class TextNorm(BaseModel):
    """Which normalisation steps run; all off by default (the identity)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nfc: bool = False  # Unicode NFC composition
    strip_accents: bool = False  # NFD, combining marks (\p{Mn}) removed, NFC again
    lowercase: bool = False  # str.lower()
    digits: bool = False  # every decimal digit (\p{Nd}) -> "0"
    punctuation: bool = False  # remove Unicode punctuation (\p{P}); symbols (\p{S}) are kept
    nonprinting: bool = False  # remove control/format/private-use characters that are not space
    # keep: as is; strip: outer whitespace removed; collapse: whitespace runs -> " ", then strip.
    whitespace: Whitespace = "keep"


PRESETS: dict[str, TextNorm] = {
    "none": TextNorm(),
    "strip": TextNorm(whitespace="strip"),
    "nfc_strip": TextNorm(nfc=True, whitespace="strip"),
    "nfc_whitespace": TextNorm(nfc=True, whitespace="collapse"),
    "lowercase": TextNorm(nfc=True, lowercase=True, whitespace="collapse"),
    "ccnet": TextNorm(
        lowercase=True, digits=True, punctuation=True, nonprinting=True, whitespace="strip"
    ),
}

Preset = Literal["none", "strip", "nfc_strip", "nfc_whitespace", "lowercase", "ccnet"]
# What a stage config accepts: a preset name or the explicit switches.
NormSpec = Preset | TextNorm

_MARKS = regex.compile(r"\p{Mn}+")
_SPACES_NO_NL = re.compile(r"[^\S\n]+")
_SPACES = re.compile(r"\s+")
# Control, format (zero-width, soft hyphen, BOM), private-use and surrogate code points.
_NONPRINTING = frozenset({"Cc", "Cf", "Co", "Cs"})


def resolve(spec: NormSpec) -> TextNorm:
    """The switches behind a preset name (or the TextNorm itself)."""
    return PRESETS[spec] if isinstance(spec, str) else spec


class _CharMap(dict):
    """Code point -> itself, "0" (a digit) or None (removed); each classified once, lazily."""

    def __init__(self, norm: TextNorm) -> None:
        super().__init__()
        self.norm = norm

    def __missing__(self, cp: int) -> str | int | None:
        char = chr(cp)
        cat = unicodedata.category(char)
        removed = (self.norm.punctuation and cat[0] == "P") or (
            self.norm.nonprinting and cat in _NONPRINTING and not char.isspace()
        )
        value: str | int | None = cp
        if self.norm.digits and cat == "Nd":
            value = "0"
        elif removed:
            value = None
        self[cp] = value
        return value


@cache
def _char_map(norm: TextNorm) -> _CharMap | None:
    """The translate table for digits / punctuation / non-printing, or None if all are off."""
    return _CharMap(norm) if norm.digits or norm.punctuation or norm.nonprinting else None


@cache
def _byte_tables(norm: TextNorm) -> tuple[bytes, bytes]:
    """(256-byte table, bytes to delete) applying `_CharMap` to the ASCII bytes of UTF-8."""
    cmap = _char_map(norm)
    assert cmap is not None
    table = bytearray(range(256))
    delete = bytearray()
    for cp in range(128):
        value = cmap[cp]
        if value is None:
            delete.append(cp)
        elif isinstance(value, str):
            table[cp] = ord(value)
    return bytes(table), bytes(delete)


def _translate(text: str, norm: TextNorm) -> str:
    """Digits / removals: ASCII through bytes.translate (C speed), then each distinct non-ASCII
    character that changes through str.replace (a page holds few of them)."""
    cmap = _char_map(norm)
    if cmap is None:
        return text
    table, delete = _byte_tables(norm)
    text = (
        text.encode("utf-8", "surrogatepass")
        .translate(table, delete)
        .decode("utf-8", "surrogatepass")
    )
    if text.isascii():
        return text
    for char in set(text):
        if char > "\x7f":
            value = cmap[ord(char)]
            if value is None:
                text = text.replace(char, "")
            elif isinstance(value, str):
                text = text.replace(char, value)
    return text


def _chars(text: str, norm: TextNorm) -> str:
    """Every per-character step (all but whitespace); `\\n` is never touched."""
    if not text.isascii():
        if norm.strip_accents:
            text = unicodedata.normalize("NFC", _MARKS.sub("", unicodedata.normalize("NFD", text)))
        elif norm.nfc:
            text = unicodedata.normalize("NFC", text)
    if norm.lowercase:
        text = text.lower()
    return _translate(text, norm)


def normalize(text: str, spec: NormSpec) -> str:
    """`text` normalised as a whole (document keys)."""
    norm = resolve(spec)
    text = _chars(text, norm)
    if norm.whitespace == "collapse":
        return _SPACES.sub(" ", text).strip()
    if norm.whitespace == "strip":
        return text.strip()
    return text


def normalize_lines(text: str, spec: NormSpec) -> list[str]:
    """One normalised string per line of `text.split("\\n")` (whitespace steps apply per line)."""
    norm = resolve(spec)
    text = _chars(text, norm)
    if norm.whitespace == "collapse":
        text = _SPACES_NO_NL.sub(" ", text)
    lines = text.split("\n")
    if norm.whitespace != "keep":
        lines = [line.strip() for line in lines]
    return lines


def normalizer(spec: NormSpec) -> Callable[[str], str]:
    """A one-argument function normalising documents with `spec` (identity for `none`)."""
    norm = resolve(spec)
    if norm == PRESETS["none"]:
        return str
    return lambda text: normalize(text, norm)
