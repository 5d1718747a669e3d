"""Text normalisation for near-duplicate detection, as per-code-point tables.

The rules follow datatrove's `TextNormConfig` / FineWeb's `simplify_text` (ALGORITHMS.md 2.1),
each switchable:

- `lowercase`: `str.lower()` of each code point (kept as is when it lowers to several);
- `strip_diacritics`: NFD, then nonspacing/enclosing marks (Mn, Me) dropped, so "é" == "e";
- `remove_punctuation`: punctuation and symbols (P*, S*) separate tokens, like whitespace;
- `normalize_digits`: a run of decimal digits, with single "." or "," between digits, becomes one
  "0" ("3.14", "2,000" and "7" all read "0").

Whitespace (Z*) and control characters (Cc) always separate tokens; format characters (Cf: soft
hyphen, zero-width joiner) are ignored inside tokens. A document is then its tokens, in order.
Texts containing scripts written without spaces (Han, kana, Thai, Lao, Khmer, Myanmar) are first
segmented with `pipeline.text.words.split_words` and the tokens joined by spaces.

The tables (class and folded code point for every code point, built once per process from
`unicodedata`, ~0.3-1 s, 6 MB) let the kernels normalise and tokenise a whole batch in one pass
with no Python call per character: the numba kernel decodes the UTF-8 of an Arrow string column
in place (`Utf8Batch`), the numpy reference (`kept_chars`) works on UTF-32 code points. Unlike
datatrove, the digit rule is applied per code point after the table lookup, and lowercasing and
diacritic folding are per code point (a character that lowers to several stays as it is).
Results depend on the Unicode version of the Python runtime (deterministic for one environment).
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.text.words import split_words

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
class NormConfig:
    """Which normalisation steps run (all on by default, as in FineWeb)."""

    lowercase: bool = True
    strip_diacritics: bool = True
    remove_punctuation: bool = True
    normalize_digits: bool = True


DEFAULT_NORM = NormConfig()


@dataclass(frozen=True)
class Tables:
    """`cls[cp]` (SEP/WORD/DIGIT/DROP) and `fold[cp]` (the code point a token keeps)."""

    cls: np.ndarray  # uint8, sys.maxunicode + 1
    fold: np.ndarray  # uint32
    unspaced: np.ndarray  # bool: script written without spaces
    normalize_digits: bool


@cache
def tables(cfg: NormConfig = DEFAULT_NORM) -> Tables:
    """The tables for `cfg` (cached per process)."""
    size = sys.maxunicode + 1
    cls = np.full(size, WORD, dtype=np.uint8)
    fold = np.arange(size, dtype=np.uint32)
    for cp in (*range(_LAST_ASSIGNED + 1), *_TAGS):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        major = cat[0]
        if major == "Z" or cat == "Cc" or (cfg.remove_punctuation and major in "PS"):
            cls[cp] = SEP
        elif cat == "Cf" or (cfg.strip_diacritics and cat in ("Mn", "Me")):
            cls[cp] = DROP
        elif cfg.normalize_digits and cat == "Nd":
            cls[cp] = DIGIT
            fold[cp] = ord("0")
        else:
            folded = ch.lower() if cfg.lowercase else ch
            if cfg.strip_diacritics and not folded.isascii():
                decomposed = unicodedata.normalize("NFD", folded)
                folded = "".join(
                    c for c in decomposed if unicodedata.category(c) not in ("Mn", "Me")
                )
            if len(folded) == 1:
                fold[cp] = ord(folded)
    unspaced = np.zeros(size, dtype=bool)
    for lo, hi in _UNSPACED_RANGES:
        unspaced[lo : hi + 1] = True
    for t in (cls, fold, unspaced):
        t.setflags(write=False)
    return Tables(cls, fold, unspaced, cfg.normalize_digits)


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
    if tab.normalize_digits:
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
    cfg: NormConfig = DEFAULT_NORM,
) -> list[str]:
    """Each text as its normalised tokens joined by single spaces (reference and slow paths)."""
    tab = tables(cfg)
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


def normalize(text: str | None, lang: str | None = None, cfg: NormConfig = DEFAULT_NORM) -> str:
    """`text` as normalised tokens joined by single spaces (see the module docstring)."""
    return normalize_batch([text], [lang], cfg)[0]
