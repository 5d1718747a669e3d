"""Phase 1 of the statistics, one task per input file: tokenise, hash, then spill or sketch.

For every document: its subsample level (from its id and the seed), characters, bytes and token
counts; a 128-bit hash of its normalised text; and one 64-bit (or 128-bit) hash per token window
of each size n. Exact mode spills the hashes with their position (file index << 40 | token
offset) and level to keyed chunk files grouped by (metric, hash mod W); a chunk is written each
time the buffer reaches `buffer_bytes` (a flush briefly holds ~3 copies of it), and documents
are hashed in groups of `group_tokens` (~40 B per token per window size while hashing); with
8 sizes, 2^18-token groups and an 8 MiB buffer a task peaked at 105 MiB of Python/numpy heap
(tracemalloc) on a 530k-token file, plus its Arrow batch. Approximate mode instead fills
HyperLogLog++ registers per (metric, level) and writes them to one small file.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.errors import InputError
from pipeline.io.atomic import atomic_write
from pipeline.io.output_shards import read_shard, shard_columns
from pipeline.io.pathnames import display_path
from pipeline.io.shuffle import write_keyed
from pipeline.runner.kernel import error_text
from pipeline.stats import hll
from pipeline.stats.hashing import doc_hashes, subsample_levels, window_hashes
from pipeline.stats.inputs import DOLMA, SourceFile
from pipeline.stats.tokenizers import load_tokenizer

POS_BITS = 40  # token offset bits of a position key; the file index takes the other 24
POS_MASK = (1 << POS_BITS) - 1
MAX_FILES = 1 << (64 - POS_BITS)
CLUSTER_SUFFIXES = ("_cluster_size", "_dup_count")

NGRAM64 = np.dtype([("h", "<u8"), ("pos", "<u8"), ("lvl", "u1")])
NGRAM128 = np.dtype([("h", "<u8"), ("h2", "<u8"), ("pos", "<u8"), ("lvl", "u1")])
DOCREC = np.dtype([("h", "<u8"), ("h2", "<u8"), ("pos", "<u8"), ("lvl", "u1"), ("tok", "<u4")])


@dataclass(frozen=True)
class CountConfig:
    """Everything a counting task needs (picklable; travels to Ray workers)."""

    sizes: tuple[int, ...]  # window sizes (n-gram orders and window lengths), ascending
    tokenizers: tuple[str, ...] = ("word",)  # the first one drives n-grams and D_tokens
    num_sets: int = 1
    num_files: int = 1
    max_level: int = 10
    seed: int = 0
    approx: bool = False
    precision: int = 14
    hash_bits: int = 64
    partitions: int = 4
    work_dir: str = ""
    buffer_bytes: int = 64 << 20
    batch_docs: int = 1024
    group_tokens: int = 1 << 18

    @property
    def levels(self) -> int:
        return self.max_level + 1

    @property
    def ngram_dtype(self) -> np.dtype:
        return NGRAM128 if self.hash_bits == 128 else NGRAM64


@dataclass
class _Totals:
    """Per-level sums of one file."""

    levels: int
    ntok: int

    def __post_init__(self) -> None:
        z = lambda: np.zeros(self.levels, dtype=np.int64)  # noqa: E731
        self.docs, self.text_docs, self.chars, self.bytes = z(), z(), z(), z()
        self.tokens = np.zeros((self.ntok, self.levels), dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": self.docs.tolist(),
            "documents_with_text": self.text_docs.tolist(),
            "characters": self.chars.tolist(),
            "bytes": self.bytes.tolist(),
            "tokens": self.tokens.tolist(),
        }


class _Spill:
    """Buffers hash records and writes them as keyed chunk files (exact mode)."""

    def __init__(self, cfg: CountConfig, src: SourceFile) -> None:
        self.cfg, self.src = cfg, src
        self.fs, self.dir = fsspec.core.url_to_fs(f"{cfg.work_dir}/p1")
        self.fs.makedirs(self.dir, exist_ok=True)
        self.ngrams: list[tuple[int, np.ndarray]] = []
        self.docs: list[np.ndarray] = []
        self.nbytes = 0
        self.chunks: list[str] = []
        self.items = 0

    def add_ngrams(self, metric: int, recs: np.ndarray) -> None:
        self._add(recs)
        self.ngrams.append((metric, recs))

    def add_docs(self, recs: np.ndarray) -> None:
        self._add(recs)
        self.docs.append(recs)

    def _add(self, recs: np.ndarray) -> None:
        self.nbytes += recs.nbytes
        self.items += recs.size
        if self.nbytes >= self.cfg.buffer_bytes:
            self.flush()

    def flush(self) -> None:
        w = np.uint64(self.cfg.partitions)
        stem = f"{self.dir}/f{self.src.index:06d}-c{len(self.chunks):04d}"
        wrote = False
        if self.ngrams:
            recs = np.concatenate([r for _, r in self.ngrams])
            metric = np.concatenate([np.full(r.size, m, np.int64) for m, r in self.ngrams])
            keys = metric * self.cfg.partitions + (recs["h"] % w).astype(np.int64)
            write_keyed(self.fs, f"{stem}.ngrams", recs, keys, key="metric_partition")
            wrote = True
        if self.docs:
            recs = np.concatenate(self.docs)
            parts = (recs["h2"] % w).astype(np.int64)
            write_keyed(self.fs, f"{stem}.docs", recs, parts, key="partition")
            wrote = True
        if wrote:
            self.chunks.append(stem)
        self.ngrams, self.docs, self.nbytes = [], [], 0


def cluster_columns(names: list[str]) -> list[str]:
    """Duplicate-cluster size columns written by dedup stages (e.g. exact_dup_count)."""
    return [c for c in names if c.endswith(CLUSTER_SUFFIXES)]


def read_columns(names: list[str]) -> list[str]:
    """The columns of a Parquet file the statistics read."""
    return [c for c in ("id", "text", "lang") if c in names] + cluster_columns(names)


def _batches(
    src: SourceFile, batch_docs: int, errors: list[str], problems: list[str]
) -> Iterator[pa.Table]:
    """The file's batches; reader errors go to `errors`, and a configuration problem (no record
    with text) to both `errors` (for the report) and `problems`."""
    if src.format == "parquet":
        fs, path = fsspec.core.url_to_fs(src.path)
        with fs.open(path, "rb") as f:
            try:
                pf = pq.ParquetFile(f)
                cols = read_columns(pf.schema_arrow.names)
                for batch in pf.iter_batches(batch_size=batch_docs, columns=cols):
                    yield pa.Table.from_batches([batch])
            except (OSError, pa.ArrowException) as e:  # a page broken after a good footer
                raise InputError(
                    f"{display_path(src.path)}: broken Parquet file ({error_text(e)}); "
                    "repair or remove it"
                ) from e
        return
    if src.format == DOLMA:  # metadata's keys (lang, cluster sizes) read back as columns
        fs, path = fsspec.core.url_to_fs(src.path)
        yield from read_shard(fs, path, read_columns(shard_columns(fs, path)), batch_docs)
        return
    from pipeline.io.base import InputUnit, ReaderStats
    from pipeline.io.options import InputConfig
    from pipeline.io.sources import get_reader

    unit = InputUnit(src.index, src.path, src.format, src.shard, src.num_shards)
    stats = ReaderStats()
    yield from get_reader(src.format, InputConfig(paths=[src.path])).read(unit, stats, batch_docs)
    errors.extend(stats.errors)
    if problem := stats.config_problem(src.path):
        errors.append(problem)
        problems.append(problem)


def scan_file(cfg: CountConfig, src: SourceFile) -> dict[str, Any]:
    """Phase 1 over one file; returns its totals (and HLL registers in approximate mode)."""
    started, cpu0 = time.perf_counter(), time.process_time()
    toks = [load_tokenizer(t) for t in cfg.tokenizers]
    totals = _Totals(cfg.levels, len(toks))
    regs = hll.empty(cfg.precision, (1 + len(cfg.sizes)) * cfg.levels) if cfg.approx else None
    spill = None if cfg.approx else _Spill(cfg, src)
    clusters: dict[str, Counter[int]] = {}
    errors: list[str] = []
    problems: list[str] = []
    offset = 0  # primary-tokenizer tokens of this file so far (position keys)
    doc_ordinal = 0
    file_key = np.uint64(src.index) << np.uint64(POS_BITS)
    for table in _batches(src, cfg.batch_docs, errors, problems):
        n = table.num_rows
        if n == 0:
            continue
        names = table.column_names
        ids = _ids(table, src, doc_ordinal)
        levels = subsample_levels(ids, cfg.seed, cfg.max_level)
        totals.docs += np.bincount(levels, minlength=cfg.levels)
        for col in cluster_columns(names):
            vals = table.column(col).drop_null().to_numpy()
            clusters.setdefault(col, Counter()).update(Counter(vals.astype(np.int64).tolist()))
        if "text" not in names:
            doc_ordinal += n
            continue
        text = table.column("text")
        chars = pc.fill_null(pc.utf8_length(text), 0).to_numpy()
        nbytes = pc.fill_null(pc.binary_length(text), 0).to_numpy()
        texts = text.to_pylist()
        has = np.array([t is not None and not t.isspace() and t != "" for t in texts])
        rows = np.flatnonzero(has)
        lv = levels[rows]
        totals.text_docs += np.bincount(lv, minlength=cfg.levels)
        totals.chars += np.bincount(levels, weights=chars, minlength=cfg.levels).astype(np.int64)
        totals.bytes += np.bincount(levels, weights=nbytes, minlength=cfg.levels).astype(np.int64)
        if rows.size == 0:
            doc_ordinal += n
            continue
        kept = [texts[i] for i in rows]
        langs = table.column("lang").to_pylist() if "lang" in names else None
        langs = [langs[i] for i in rows] if langs is not None else None
        for ti, tok in enumerate(toks[1:], start=1):
            lens = np.array([a.size for a in tok.token_hashes(kept, langs)], dtype=np.int64)
            totals.tokens[ti] += np.bincount(lv, weights=lens, minlength=cfg.levels).astype(
                np.int64
            )
        arrays = toks[0].token_hashes(kept, langs)
        lengths = np.array([a.size for a in arrays], dtype=np.int64)
        totals.tokens[0] += np.bincount(lv, weights=lengths, minlength=cfg.levels).astype(np.int64)
        dh = doc_hashes(kept)
        if cfg.approx:
            assert regs is not None
            hll.update(regs, dh[:, 1], lv.astype(np.int64))
        else:
            assert spill is not None
            recs = np.empty(rows.size, dtype=DOCREC)
            recs["h"], recs["h2"], recs["lvl"], recs["tok"] = dh[:, 0], dh[:, 1], lv, lengths
            recs["pos"] = file_key | (rows + doc_ordinal).astype(np.uint64)
            spill.add_docs(recs)
        for lo, hi in _groups(lengths, cfg.group_tokens):
            grp_len = lengths[lo:hi]
            flat = np.concatenate(arrays[lo:hi]) if hi > lo else np.empty(0, np.uint64)
            tok_lvl = np.repeat(lv[lo:hi], grp_len)
            _windows(cfg, flat, grp_len, tok_lvl, offset, file_key, regs, spill)
            offset += int(flat.size)
        doc_ordinal += n
    if spill is not None:
        spill.flush()
    regs_path = _save_registers(cfg, src, regs) if regs is not None else None
    if offset > POS_MASK:
        raise ValueError(f"{src.path}: more than 2^{POS_BITS} tokens in one file")
    return {
        "index": src.index,
        "reached": src.reached,
        "tokens_in_file": offset,
        "totals": totals.to_dict(),
        "clusters": {c: dict(v) for c, v in clusters.items()},
        "chunks": spill.chunks if spill is not None else [],
        "items": spill.items if spill is not None else 0,
        "regs": regs_path,
        "errors": errors,
        "config_problems": problems,
        "wall_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu0,
        "pid": os.getpid(),
    }


def _save_registers(cfg: CountConfig, src: SourceFile, regs: np.ndarray) -> str:
    """Registers go through a file, so the driver merges files one at a time (bounded memory)."""
    fs, root = fsspec.core.url_to_fs(f"{cfg.work_dir}/p1")
    fs.makedirs(root, exist_ok=True)
    path = f"{root}/f{src.index:06d}.regs"
    with atomic_write(fs, path) as f:
        f.write(regs.tobytes())
    return path


def load_registers(cfg: CountConfig, path: str) -> np.ndarray:
    """The registers a task saved, shape ((1 + sizes) * levels, 2^p)."""
    fs, _ = fsspec.core.url_to_fs(cfg.work_dir)
    with fs.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.int8).reshape(-1, 1 << cfg.precision)


def _windows(
    cfg: CountConfig,
    flat: np.ndarray,
    lengths: np.ndarray,
    tok_lvl: np.ndarray,
    offset: int,
    file_key: np.uint64,
    regs: np.ndarray | None,
    spill: _Spill | None,
) -> None:
    """Hash every window of every size in one group of documents and spill or sketch it."""
    for mi, size in enumerate(cfg.sizes, start=1):
        h, starts = window_hashes(flat, lengths, size)
        if h.size == 0:
            continue
        lvl = tok_lvl[starts]
        if regs is not None:
            hll.update(regs, h, mi * cfg.levels + lvl.astype(np.int64))
            continue
        assert spill is not None
        recs = np.empty(h.size, dtype=cfg.ngram_dtype)
        recs["h"], recs["lvl"] = h, lvl
        if cfg.hash_bits == 128:
            recs["h2"] = window_hashes(flat, lengths, size, lane=1)[0]
        recs["pos"] = file_key | (starts + offset).astype(np.uint64)
        spill.add_ngrams(mi, recs)


def _groups(lengths: np.ndarray, limit: int) -> Iterator[tuple[int, int]]:
    """Consecutive document ranges of at most `limit` tokens (a longer document stands alone)."""
    lo, acc = 0, 0
    for i, n in enumerate(lengths.tolist()):
        if acc and acc + n > limit:
            yield lo, i
            lo, acc = i, 0
        acc += n
    if lo < lengths.size:
        yield lo, int(lengths.size)


def _ids(table: pa.Table, src: SourceFile, first: int) -> list[str]:
    """Document ids (the id column as text, as the readers map it; `path#row` where absent or
    null), for subsample levels."""
    if "id" in table.column_names:
        ids = table.column("id").to_pylist()
        return [str(i) if i is not None else f"{src.path}#{first + k}" for k, i in enumerate(ids)]
    return [f"{src.path}#{first + k}" for k in range(table.num_rows)]
