"""Text normalisation: one vocabulary of switches, used by exact, line and MinHash dedup and stats.

Two texts are duplicates when their normalised forms are equal, so normalisation decides what
"duplicate" means. `TextNorm` names every step once; a config gives a preset name or the switches:

- `nfc`: Unicode NFC composition.
- `strip_diacritics` (also accepted as `strip_accents`): combining marks removed, so "é" == "e".
- `lowercase`: lowercasing.
- `digits`: `keep`; `zero`: every decimal digit (\\p{Nd}) -> "0"; `number`: a run of decimal digits,
  with single "." or "," between digits, -> one "0" ("3.14", "2,000" and "7" all read "0").
  `true` means `zero`.
- `punctuation`: `keep`; `remove`: punctuation (\\p{P}) deleted, symbols (\\p{S}) kept; `split`:
  punctuation and symbols (P*, S*) separate tokens, like whitespace. `true` means `remove`.
- `nonprinting`: control, format (zero-width, soft hyphen, BOM), private-use and surrogate code
  points deleted, whitespace excepted.
- `whitespace`: `keep`; `strip`: outer whitespace removed; `collapse`: whitespace runs -> " ",
  then strip; `tokens`: the text becomes its word tokens joined by single spaces (below).

Presets: `none` (identity), `strip`, `nfc_strip` (ALGORITHMS.md 3.1, exact dedup's default and
stats' distinct-document key), `nfc_whitespace`, `lowercase` (`nfc_whitespace` + lowercase),
`ccnet` (strip, lowercase, digits zero, punctuation remove, nonprinting: CCNet
`normalize_for_dedup`, ALGORITHMS.md 3.3, line dedup's default) and `fineweb` (tokens,
lowercase, strip_diacritics, digits number, punctuation split: datatrove's `TextNormConfig` /
FineWeb's `simplify_text`, ALGORITHMS.md 2.1, MinHash's default).

Two engines carry out the switches; `whitespace` picks one:

- strings (`keep`, `strip`, `collapse`): steps in a fixed order (NFC, diacritics, lowercase,
  digits, removals, whitespace) on the Python string. Diacritics: NFD, nonspacing marks (Mn)
  removed, NFC again; lowercase is `str.lower()`. Every step but `collapse` keeps `\\n` where it
  is, which lets `normalize_lines` normalise a whole document at once and split it afterwards.
  `digits: number` and `punctuation: split` need tokens.
- tokens (`tokens`): per-code-point tables (class and folded code point for every code point,
  built from `unicodedata`, ~0.3-1 s, 6 MB, then cached on disk, `tables_cache_path`) that let the MinHash kernels
  normalise and tokenise a whole batch in one pass with no Python call per character (the numba
  kernel decodes the UTF-8 of an Arrow string column in place, `Utf8Batch`; the numpy reference,
  `kept_chars`, works on UTF-32 code points). Whitespace (Z*) and control characters (Cc) separate
  tokens; format characters (Cf) are ignored inside tokens; lowercase and diacritics are per code
  point (marks Mn and Me dropped; a character that lowers to several stays as it is). Texts
  containing scripts written without spaces (Han, kana, Thai, Lao, Khmer, Myanmar) are first
  segmented with `pipeline.text.words.split_words`. `nfc`, `nonprinting`, `digits: zero` and
  `punctuation: remove` need strings.

Results depend on the Unicode version of the Python runtime (deterministic for one environment).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import regex
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipeline.io.user_cache import user_cache_dir
from pipeline.text.words import split_words

Digits = Literal["keep", "zero", "number"]
Punctuation = Literal["keep", "remove", "split"]
Whitespace = Literal["keep", "strip", "collapse", "tokens"]


class TextNorm(BaseModel):
    """Which normalisation steps run; all off by default (the identity). See the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    nfc: bool = False  # Unicode NFC composition
    # Combining marks removed ("é" == "e"); `strip_accents` is the same switch.
    strip_diacritics: bool = Field(
        default=False, validation_alias=AliasChoices("strip_diacritics", "strip_accents")
    )
    lowercase: bool = False
    digits: Digits = "keep"  # zero: each digit -> "0"; number: each number -> "0" (tokens)
    punctuation: Punctuation = "keep"  # remove: \p{P} deleted; split: P and S separate (tokens)
    nonprinting: bool = False  # delete control/format/private-use characters that are not space
    # keep; strip: outer whitespace; collapse: runs -> " ", then strip; tokens: word tokens.
    whitespace: Whitespace = "keep"

    @field_validator("digits", "punctuation", mode="before")
    @classmethod
    def _switch_on(cls, value: Any, info: ValidationInfo) -> Any:
        """`true` / `false` as the string engine's on / off (the original switches)."""
        if isinstance(value, bool):
            return ("zero" if info.field_name == "digits" else "remove") if value else "keep"
        return value

    @model_validator(mode="after")
    def _one_engine(self) -> TextNorm:
        if self.tokens:
            wrong = [
                name
                for name, bad in (
                    ("nfc", self.nfc),
                    ("nonprinting", self.nonprinting),
                    ("digits: zero", self.digits == "zero"),
                    ("punctuation: remove", self.punctuation == "remove"),
                )
                if bad
            ]
            if wrong:
                raise ValueError(f"whitespace: tokens does not combine with {', '.join(wrong)}")
        elif self.digits == "number" or self.punctuation == "split":
            raise ValueError("digits: number and punctuation: split need whitespace: tokens")
        return self

    @property
    def tokens(self) -> bool:
        """Whether the token engine runs (whitespace: tokens)."""
        return self.whitespace == "tokens"


PRESETS: dict[str, TextNorm] = {
    "none": TextNorm(),
    "strip": TextNorm(whitespace="strip"),
    "nfc_strip": TextNorm(nfc=True, whitespace="strip"),
    "nfc_whitespace": TextNorm(nfc=True, whitespace="collapse"),
    "lowercase": TextNorm(nfc=True, lowercase=True, whitespace="collapse"),
    "ccnet": TextNorm(
        lowercase=True, digits="zero", punctuation="remove", nonprinting=True, whitespace="strip"
    ),
    "fineweb": TextNorm(
        lowercase=True,
        strip_diacritics=True,
        digits="number",
        punctuation="split",
        whitespace="tokens",
    ),
}

Preset = Literal["none", "strip", "nfc_strip", "nfc_whitespace", "lowercase", "ccnet", "fineweb"]
# What a stage config accepts: a preset name or the explicit switches.
NormSpec = Preset | TextNorm


def resolve(spec: NormSpec) -> TextNorm:
    """The switches behind a preset name (or the TextNorm itself)."""
    return PRESETS[spec] if isinstance(spec, str) else spec


def normalize(text: str | None, spec: NormSpec, lang: str | None = None) -> str:
    """`text` normalised as a whole ("" for None); `lang` helps the tokens engine segment."""
    norm = resolve(spec)
    if text is None:
        return ""
    if norm.tokens:
        return normalize_batch([text], [lang], norm)[0]
    text = _chars(text, norm)
    if norm.whitespace == "collapse":
        return _SPACES.sub(" ", text).strip()
    if norm.whitespace == "strip":
        return text.strip()
    return text


def normalize_lines(text: str, spec: NormSpec) -> list[str]:
    """One normalised string per line of `text.split("\\n")` (whitespace steps apply per line)."""
    norm = resolve(spec)
    if norm.tokens:
        return normalize_batch(text.split("\n"), None, norm)
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


# --- strings engine ------------------------------------------------------------------------------

_MARKS = regex.compile(r"\p{Mn}+")
_SPACES_NO_NL = re.compile(r"[^\S\n]+")
_SPACES = re.compile(r"\s+")
# Control, format (zero-width, soft hyphen, BOM), private-use and surrogate code points.
_NONPRINTING = frozenset({"Cc", "Cf", "Co", "Cs"})


class _CharMap(dict):
    """Code point -> itself, "0" (a digit) or None (removed); each classified once, lazily."""

    def __init__(self, norm: TextNorm) -> None:
        super().__init__()
        self.norm = norm

    def __missing__(self, cp: int) -> str | int | None:
        char = chr(cp)
        cat = unicodedata.category(char)
        removed = (self.norm.punctuation == "remove" and cat[0] == "P") or (
            self.norm.nonprinting and cat in _NONPRINTING and not char.isspace()
        )
        value: str | int | None = cp
        if self.norm.digits == "zero" and cat == "Nd":
            value = "0"
        elif removed:
            value = None
        self[cp] = value
        return value


@cache
def _char_map(norm: TextNorm) -> _CharMap | None:
    """The translate table for digits / punctuation / non-printing, or None if all are off."""
    active = norm.digits == "zero" or norm.punctuation == "remove" or norm.nonprinting
    return _CharMap(norm) if active else None


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
        if norm.strip_diacritics:
            text = unicodedata.normalize("NFC", _MARKS.sub("", unicodedata.normalize("NFD", text)))
        elif norm.nfc:
            text = unicodedata.normalize("NFC", text)
    if norm.lowercase:
        text = text.lower()
    return _translate(text, norm)


# --- tokens engine -------------------------------------------------------------------------------

# Character classes of the tables.
SEP, WORD, DIGIT, DROP = 0, 1, 2, 3
# Code points past the last assigned character of planes 0-3 are unassigned or private use.
_LAST_ASSIGNED = 0x323AF
_TAGS = range(0xE0000, 0xE01F0)
_JOINERS = (ord("."), ord(","))
_UNSPACED_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x19E0, 0x19FF),  # Khmer symbols
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3005, 0x30FF),  # CJK marks, hiragana, katakana
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xA9E0, 0xA9FF),
    (0xAA60, 0xAA7F),
    (0xF900, 0xFAFF),
    (0xFF66, 0xFF9F),
    (0x16FE0, 0x1B16F),
    (0x20000, 0x3FFFF),
)


@dataclass(frozen=True)
class Tables:
    """`cls[cp]` (SEP/WORD/DIGIT/DROP) and `fold[cp]` (the code point a token keeps)."""

    cls: np.ndarray  # uint8, sys.maxunicode + 1
    fold: np.ndarray  # uint32
    unspaced: np.ndarray  # bool: script written without spaces
    numbers: bool  # digits: number


def tables(norm: NormSpec = "fineweb") -> Tables:
    """The tables of a tokens-engine setting (cached per process)."""
    norm = resolve(norm)
    if not norm.tokens:
        raise ValueError("the token tables need whitespace: tokens")
    split, numbers = norm.punctuation == "split", norm.digits == "number"
    return _tables(norm.lowercase, norm.strip_diacritics, split, numbers)


@cache
def _tables(lowercase: bool, strip_diacritics: bool, split: bool, numbers: bool) -> Tables:
    """The tables, from the disk cache (`tables_cache_path`) when it holds them: building them
    loops over every code point in Python (~0.5-1.5 s, in every process, each Ray worker too),
    loading them takes milliseconds. A cache that cannot be read or written is rebuilt/skipped."""
    args = (lowercase, strip_diacritics, split, numbers)
    path = tables_cache_path(*args)
    try:
        with np.load(path) as z:
            cls, fold, unspaced = z["cls"], z["fold"], z["unspaced"]
    except (OSError, KeyError, ValueError):
        cls, fold, unspaced = _build_tables(*args)
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{os.getpid()}.npz"
            np.savez(tmp, cls=cls, fold=fold, unspaced=unspaced)
            os.replace(tmp, path)
    for t in (cls, fold, unspaced):
        t.setflags(write=False)
    return Tables(cls, fold, unspaced, numbers)


def tables_cache_path(*args: bool) -> str:
    """Where the tables for `args` are cached: in the user cache directory (io/user_cache.py),
    named for this module's source and the runtime's Unicode version, so neither goes stale."""
    with open(__file__, "rb") as f:
        source = hashlib.sha256(f.read()).hexdigest()[:16]
    flags = "".join(str(int(a)) for a in args)
    name = f"normalize-tables-{unicodedata.unidata_version}-{source}-{flags}.npz"
    return os.path.join(user_cache_dir(), name)


def _build_tables(
    lowercase: bool, strip_diacritics: bool, split: bool, numbers: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cls, fold, unspaced) from `unicodedata`, code point by code point."""
    size = sys.maxunicode + 1
    cls = np.full(size, WORD, dtype=np.uint8)
    fold = np.arange(size, dtype=np.uint32)
    for cp in (*range(_LAST_ASSIGNED + 1), *_TAGS):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        major = cat[0]
        if major == "Z" or cat == "Cc" or (split and major in "PS"):
            cls[cp] = SEP
        elif cat == "Cf" or (strip_diacritics and cat in ("Mn", "Me")):
            cls[cp] = DROP
        elif numbers and cat == "Nd":
            cls[cp] = DIGIT
            fold[cp] = ord("0")
        else:
            folded = ch.lower() if lowercase else ch
            if strip_diacritics and not folded.isascii():
                decomposed = unicodedata.normalize("NFD", folded)
                folded = "".join(
                    c for c in decomposed if unicodedata.category(c) not in ("Mn", "Me")
                )
            if len(folded) == 1:
                fold[cp] = ord(folded)
    unspaced = np.zeros(size, dtype=bool)
    for lo, hi in _UNSPACED_RANGES:
        unspaced[lo : hi + 1] = True
    return cls, fold, unspaced


@dataclass
class Utf8Batch:
    """Documents as one UTF-8 buffer: document d is `data[offsets[d]:offsets[d+1]]`."""

    data: np.ndarray  # uint8
    offsets: np.ndarray  # int64, len = n_docs + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_texts(cls, texts: Sequence[str | None]) -> Utf8Batch:
        encoded = [(t or "").encode("utf-8", "surrogatepass") for t in texts]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets)

    @classmethod
    def from_arrow(cls, array: pa.Array | pa.ChunkedArray) -> Utf8Batch:
        """Zero-copy view of an Arrow string column (nulls read as empty documents)."""
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
        if array.null_count:
            array = pc.fill_null(array, "")
        if pa.types.is_large_string(array.type):
            width = np.int64
        elif pa.types.is_string(array.type):
            width = np.int32
        else:
            array = array.cast(pa.large_string())
            width = np.int64
        _, offset_buf, data_buf = array.buffers()
        offsets = np.frombuffer(offset_buf, dtype=width)[
            array.offset : array.offset + len(array) + 1
        ]
        data = (
            np.frombuffer(data_buf, dtype=np.uint8)
            if data_buf is not None
            else np.zeros(0, np.uint8)
        )
        return cls(data, offsets.astype(np.int64))

    def texts(self, rows: Sequence[int] | None = None) -> list[str]:
        rows = range(len(self)) if rows is None else rows
        raw = self.data
        off = self.offsets
        return [raw[off[r] : off[r + 1]].tobytes().decode("utf-8", "replace") for r in rows]

    def replace(self, rows: Sequence[int], texts: Sequence[str]) -> Utf8Batch:
        """A copy with documents `rows` (increasing) replaced by `texts`."""
        pieces: list[bytes] = []
        lengths = np.diff(self.offsets)
        prev = 0
        for r, text in zip(rows, texts, strict=True):
            pieces.append(self.data[self.offsets[prev] : self.offsets[r]].tobytes())
            encoded = text.encode("utf-8", "surrogatepass")
            pieces.append(encoded)
            lengths[r] = len(encoded)
            prev = r + 1
        pieces.append(self.data[self.offsets[prev] :].tobytes())
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return Utf8Batch(np.frombuffer(b"".join(pieces), dtype=np.uint8), offsets)

    def codepoints(self) -> tuple[np.ndarray, np.ndarray]:
        """UTF-32 code points and per-document offsets (numpy paths)."""
        texts = self.texts()
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum([len(t) for t in texts], out=offsets[1:])
        data = "".join(texts).encode("utf-32-le", "surrogatepass")
        return np.frombuffer(data, dtype=np.uint32), offsets


def unspaced_docs_numpy(batch: Utf8Batch, tab: Tables) -> np.ndarray:
    """Documents containing a script written without spaces (numpy path)."""
    cps, offsets = batch.codepoints()
    flags = tab.unspaced[cps]
    has = np.zeros(len(batch), dtype=bool)
    starts = np.flatnonzero(np.diff(offsets) > 0)
    if len(starts):
        has[starts] = np.logical_or.reduceat(flags, offsets[starts])
    return has


def segment_unspaced(
    batch: Utf8Batch, has_unspaced: np.ndarray, langs: Sequence[str | None] | None
) -> Utf8Batch:
    """`batch` with the flagged documents segmented into space-separated tokens."""
    rows = np.flatnonzero(has_unspaced).tolist()
    if not rows:
        return batch
    texts = [
        " ".join(split_words(text, langs[r] if langs is not None else None))
        for r, text in zip(rows, batch.texts(rows), strict=True)
    ]
    return batch.replace(rows, texts)


def kept_chars(
    cps: np.ndarray, offsets: np.ndarray, tab: Tables
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The numpy reference of the rules: (positions of kept characters, their folded code
    points, a token number per kept character that increases at every token break)."""
    n = len(cps)
    cls = tab.cls[cps]
    doc_start = np.zeros(n + 1, dtype=bool)
    doc_start[offsets[:-1][np.diff(offsets) > 0]] = True
    doc_start = doc_start[:n]
    if tab.numbers:
        digit = cls == DIGIT
        prev_digit = np.concatenate(([False], digit[:-1])) & ~doc_start
        next_digit = np.concatenate((digit[1:], [False]))
        next_digit &= ~np.concatenate((doc_start[1:], [False]))
        joiner = np.isin(cps, _JOINERS) & prev_digit & next_digit
        member = digit | joiner
        prev_member = np.concatenate(([False], member[:-1])) & ~doc_start
        cls = np.where(member & prev_member, DROP, np.where(member, DIGIT, cls))
    breaks = np.cumsum((cls == SEP) | doc_start)
    pos = np.flatnonzero((cls == WORD) | (cls == DIGIT))
    return pos, tab.fold[cps[pos]], breaks[pos]


def normalize_batch(
    texts: Sequence[str | None],
    langs: Sequence[str | None] | None = None,
    norm: NormSpec = "fineweb",
) -> list[str]:
    """Each text as its normalised tokens joined by single spaces (tokens engine: the reference
    and slow paths)."""
    tab = tables(norm)
    batch = Utf8Batch.from_texts(texts)
    batch = segment_unspaced(batch, unspaced_docs_numpy(batch, tab), langs)
    cps, offsets = batch.codepoints()
    pos, folded, token = kept_chars(cps, offsets, tab)
    result = [""] * (len(offsets) - 1)
    if len(pos) == 0:
        return result
    doc = np.searchsorted(offsets, pos, side="right") - 1
    new_token = np.concatenate(([True], token[1:] != token[:-1]))
    new_doc = np.concatenate(([True], doc[1:] != doc[:-1]))
    # A space before each token that is not its document's first.
    gap = new_token & ~new_doc
    idx = np.arange(len(folded)) + np.cumsum(gap)
    text = np.empty(len(folded) + int(gap.sum()), dtype=np.uint32)
    text[idx] = folded
    text[idx[gap] - 1] = ord(" ")
    pieces = np.split(text, idx[new_doc][1:])
    for d, piece in zip(doc[new_doc], pieces, strict=True):
        result[d] = piece.tobytes().decode("utf-32-le", "surrogatepass")
    return result
