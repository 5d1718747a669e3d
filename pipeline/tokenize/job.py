"""The work of `curate tokenize`, as a picklable job the project's executors run (local or Ray).

Three kinds of task, each committing its files atomically and then a completion marker:
- `direct` (an input unit): its documents, tokenized in input order, into shards
  `tokens-<unit>-<part>`;
- `spill` (an input unit, --shuffle): its documents keyed by xxh3-64(seed, id), grouped by output
  shard (key mod shards) into two keyed record files (io/shuffle.py): documents and tokens;
- `gather` (an output shard, --shuffle): that shard's documents from every spill file, sorted by
  key, into shards `shuffled-<shard>-<part>`.
The key depends only on the document id and the seed, so the shuffle is the same whichever
executor ran it and in whatever order tasks finished.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from pipeline.io.atomic import read_json, write_json_atomic
from pipeline.io.base import InputUnit, ReaderStats
from pipeline.io.options import InputConfig
from pipeline.io.pathnames import display_path
from pipeline.io.shuffle import read_keyed, write_keyed
from pipeline.io.sources import get_reader
from pipeline.schema import ID, METADATA, SOURCE, TEXT
from pipeline.stats.tokenizers import HFTokenizer, load_tokenizer
from pipeline.tokenize.formats import ShardSplitter

STATE_DIR = "_tokenize"
BATCH_ROWS = 1024
# Text encoded in one call: the library's Encoding objects cost ~150 bytes per token (ids,
# offsets, token strings, masks) until converted, so a call is bounded by bytes, not rows.
ENCODE_BYTES = 1 << 20
DOC_DTYPE = np.dtype([("key", "<u8"), ("unit", "<u4"), ("pos", "<u4"), ("tokens", "<u4")])


@dataclass(frozen=True)
class TokenizeSettings:
    """Everything that decides the output bytes (a rerun must match them to resume)."""

    tokenizer: str  # path of the tokenizer.json
    format: str
    dtype: str
    eos_id: int | None
    bos_id: int | None
    shuffle: bool
    seed: int
    max_tokens_per_shard: int | None
    text_field: str
    num_out: int  # output shards of a shuffle (the number of input units)


def marker_path(root: str, kind: str, index: int) -> str:
    return f"{root}/{STATE_DIR}/done/{kind}-{index:05d}.json"


def spill_path(root: str, what: str, unit: int) -> str:
    return f"{root}/{STATE_DIR}/spill/{what}-{unit:05d}.bin"


def encode(
    tokenizer: HFTokenizer, texts: list[str], bos: int | None, eos: int | None, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens back to back, tokens per document) of `texts` (HFTokenizer.encode_ids: tiktoken
    where exact, else the Rust batch encoder), `bos` before and `eos` after each document."""
    ids, body = tokenizer.encode_ids(texts)
    flat = ids.astype(dtype, copy=False)
    extra = (bos is not None) + (eos is not None)
    if not extra:
        return flat, body
    sizes = body + extra
    ends = np.cumsum(sizes)
    out = np.empty(int(ends[-1]) if sizes.size else 0, dtype)
    keep = np.ones(out.size, bool)
    if bos is not None:
        out[ends - sizes] = bos
        keep[ends - sizes] = False
    if eos is not None:
        out[ends - 1] = eos
        keep[ends - 1] = False
    out[keep] = flat
    return out, sizes


def shuffle_keys(ids: list[str], seed: int) -> np.ndarray:
    """The seeded, order-independent shuffle key of each document id."""
    prefix = f"{seed}\x00".encode()
    h = xxhash.xxh3_64_intdigest
    return np.fromiter((h(prefix + i.encode()) for i in ids), np.uint64, len(ids))


class TokenizeJob:
    """Tokenizes units (direct, spill) or gathers output shards; tokenizer loaded per worker."""

    def __init__(
        self,
        settings: TokenizeSettings,
        input_cfg: dict[str, Any],
        root: str,
        one_thread: bool = False,
        encoder: str = "auto",
    ) -> None:
        self.settings, self.input_cfg, self.root = settings, input_cfg, root
        self.one_thread = one_thread  # a Ray worker holds one CPU: no encoder thread pool
        self.encoder = encoder  # load_tokenizer's: the ids are the same whichever runs
        self._tok: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "input_cfg": self.input_cfg,
            "root": self.root,
            "one_thread": self.one_thread,
            "encoder": self.encoder,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _tok=None)

    def setup(self) -> None:
        if self.one_thread:  # read by the tokenizers library at every batch call
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        self._tok = load_tokenizer(self.settings.tokenizer, self.encoder)
        self.fs, _ = fsspec.core.url_to_fs(self.root)
        self.dtype = np.dtype(self.settings.dtype)

    def close(self) -> None:
        self._tok = None

    def run(self, task: tuple[str, Any], worker: str) -> dict[str, Any]:
        kind, arg = task
        if kind == "gather":
            result = self._gather(arg)
        else:
            result = self._tokenize_unit(arg, spill=kind == "spill")
        result["kind"], result["worker"] = kind, worker
        write_json_atomic(self.fs, marker_path(self.root, kind, result["index"]), result)
        return result

    def _documents(self, unit: InputUnit, stats: ReaderStats) -> Any:
        """(ids, sources, texts, text bytes) per slice of the unit's documents with text."""
        reader = get_reader(unit.format, InputConfig(**self.input_cfg))
        for batch in reader.read(unit, stats, BATCH_ROWS):
            text = batch.column(TEXT)
            has_text = pc.fill_null(pc.greater(pc.binary_length(text), 0), False)
            batch = batch.filter(has_text)
            sizes = pc.binary_length(batch.column(TEXT)).to_numpy(zero_copy_only=False)
            ends = np.cumsum(sizes)
            start = 0
            while start < batch.num_rows:  # slices of <= ENCODE_BYTES of text (at least a row)
                base = int(ends[start - 1]) if start else 0
                stop = max(start + 1, int(np.searchsorted(ends, base + ENCODE_BYTES, "right")))
                part = batch.slice(start, stop - start)
                nbytes = int(ends[stop - 1]) - base
                yield part.column(ID), record_sources(part), part.column(TEXT), nbytes
                start = stop

    def _tokenize_unit(self, unit: InputUnit, spill: bool) -> dict[str, Any]:
        s = self.settings
        stats = ReaderStats()
        totals = _Totals()
        splitter = None
        if not spill:
            splitter = ShardSplitter(
                self.fs,
                self.root,
                f"tokens-{unit.index:05d}",
                s.format,
                self.dtype,
                s.max_tokens_per_shard,
            )
        docs, tokens = [], []
        try:
            for ids, sources, texts, nbytes in self._documents(unit, stats):
                toks, sizes = encode(self._tok, texts.to_pylist(), s.bos_id, s.eos_id, self.dtype)
                totals.add(sources, sizes, nbytes)
                if splitter is not None:
                    splitter.append(toks, sizes)
                    continue
                rec = np.empty(sizes.size, DOC_DTYPE)
                rec["key"] = shuffle_keys(ids.to_pylist(), s.seed)
                rec["unit"] = unit.index
                rec["pos"] = np.arange(totals.documents - sizes.size, totals.documents)
                rec["tokens"] = sizes
                docs.append(rec)
                tokens.append(toks)
            shards = splitter.finish() if splitter is not None else []
        except BaseException:
            if splitter is not None:
                splitter.discard()
            raise
        if spill:
            self._write_spill(unit.index, docs, tokens)
        return {
            "index": unit.index,
            "unit": {"path": unit.path, "shard": unit.shard, "format": unit.format},
            "reader": stats.to_dict(),
            "problem": stats.config_problem(display_path(unit.path)),
            **totals.to_dict(),
            "shards": shards,
        }

    def _write_spill(self, index: int, docs: list[np.ndarray], tokens: list[np.ndarray]) -> None:
        """Group the unit's documents and tokens by output shard into two keyed files."""
        rec = np.concatenate(docs) if docs else np.empty(0, DOC_DTYPE)
        toks = np.concatenate(tokens) if tokens else np.empty(0, self.dtype)
        out = (rec["key"] % np.uint64(self.settings.num_out)).astype(np.int64)
        root = self.root
        write_keyed(
            self.fs,
            spill_path(root, "tokens", index),
            toks,
            np.repeat(out, rec["tokens"]),
            key="shard",
        )
        write_keyed(self.fs, spill_path(root, "docs", index), rec, out, key="shard")

    def _gather(self, shard: int) -> dict[str, Any]:
        """Output shard `shard` of a shuffle: its documents from every spill, sorted by key."""
        s = self.settings
        units = range(s.num_out)
        docs = read_keyed(
            self.fs,
            [spill_path(self.root, "docs", u) for u in units],
            shard,
            DOC_DTYPE,
            key="shard",
        )
        toks = read_keyed(
            self.fs,
            [spill_path(self.root, "tokens", u) for u in units],
            shard,
            self.dtype,
            key="shard",
        )
        order = np.lexsort((docs["pos"], docs["unit"], docs["key"]))
        sizes = docs["tokens"].astype(np.int64)
        starts = np.cumsum(sizes) - sizes
        take = _ranges(starts[order], sizes[order])
        splitter = ShardSplitter(
            self.fs,
            self.root,
            f"shuffled-{shard:05d}",
            s.format,
            self.dtype,
            s.max_tokens_per_shard,
        )
        try:
            splitter.append(toks[take], sizes[order])
            shards = splitter.finish()
        except BaseException:
            splitter.discard()
            raise
        return {"index": shard, "shards": shards}


def record_sources(batch: pa.Table) -> list[str]:
    """Each document's source: the record's own `source` field (a run's output keeps the crawl
    file there; readers move it into `metadata`), else the input file the reader names."""
    out = []
    for meta, fallback in zip(
        batch.column(METADATA).to_pylist(), batch.column(SOURCE).to_pylist(), strict=True
    ):
        value = json.loads(meta).get("source") if meta and '"source"' in meta else None
        out.append(value if isinstance(value, str) and value else fallback or "(none)")
    return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices of the concatenated ranges [start, start + length), in order."""
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, np.int64)
    offsets = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) - np.repeat(offsets - starts, lengths)


class _Totals:
    """Documents, tokens and text bytes of a unit, overall and per source."""

    def __init__(self) -> None:
        self.documents = self.tokens = self.bytes = 0
        self.sources: dict[str, dict[str, int]] = {}

    def add(self, sources: list[str], sizes: np.ndarray, nbytes: int) -> None:
        self.documents += int(sizes.size)
        self.tokens += int(sizes.sum())
        self.bytes += int(nbytes)
        table = pa.table({"source": pa.array(sources, pa.string()), "tokens": pa.array(sizes)})
        grouped = table.group_by("source").aggregate([("tokens", "sum"), ("tokens", "count")])
        columns = (grouped.column(c).to_pylist() for c in ("source", "tokens_sum", "tokens_count"))
        for src, tok, n in zip(*columns, strict=True):
            entry = self.sources.setdefault(src, {"documents": 0, "tokens": 0})
            entry["documents"] += n
            entry["tokens"] += tok

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "tokens": self.tokens,
            "bytes": self.bytes,
            "sources": self.sources,
        }


def read_marker(fs: fsspec.AbstractFileSystem, root: str, kind: str, index: int) -> Any:
    """A finished task's result, or None."""
    path = marker_path(root, kind, index)
    return read_json(fs, path) if fs.exists(path) else None
