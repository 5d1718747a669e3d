"""`exact_dedup`: keep one copy of each document whose normalised text (or raw HTML) repeats.

ALGORITHMS.md 3.1. The key is `normalize(value, normalization)` of the `column` (`text`, or
`html` before extraction to find byte-identical pages), hashed with xxh3-128: at 10^10 documents
the expected number of colliding pairs is ~1.5e-19, where 64 bits would give ~2.7.

prepare() runs two phases through `ctx.map`:

1. per shard: a 40-byte record (hash hi/lo, doc_key = shard.index << 32 | row, length, random
   priority) per document, written to one file keyed by `hash mod P` (P = ctx.num_partitions);
2. per partition p: the p-slices of every shard file, sorted by (hash, policy order); the head of
   each run of equal hashes is the keeper. Only documents with copies get a decision record
   (row, count, kept), written keyed by shard, so score_shard reads just its own shard's slices.

Keeper policy `keep`: `first` = smallest doc_key (input order); `longest` = most characters in
`column`, ties to the first; `random` = smallest xxh3_64(id, seed), ties to the first (stable
under re-sharding because it depends on the id, not the position).

Memory: phase 1 holds 40 B per document of its shard; phase 2 peaks at ~120 B per document of
its partition (records, sort index and lexsort's temporaries, run ids; 117 B measured with
tracemalloc on 10^6 records), i.e. ~120 x N / P bytes for N documents.
A null value, or one whose key is empty (e.g. whitespace under `strip`), is never a duplicate: its
hash is null, count 1, kept (empty documents are for the length filters, not "duplicates").

Incremental (`index: PATH`, dedup/index.py): phase 2 also reads its partition's slice of the
index (16 B per indexed distinct hash, on disk too; one segment at a time, keeping only the
run's hashes), and every copy of an indexed hash is a duplicate, the indexed document winning
(`exact_dup_count` includes it). `index_mode: update` appends the run's distinct new hashes as
a new segment, committed at the end of prepare. With an index, the stage uses the index's
partition count.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any, Literal

import fsspec
import numpy as np
import pyarrow as pa
import xxhash
from pydantic import Field

from pipeline.dedup.index import DedupIndex, IndexMode, finish_run, open_index
from pipeline.dedup.workfiles import ROW_BITS, ROW_MASK, read_manifest, shard_path, write_manifest
from pipeline.io.shuffle import read_keyed, write_keyed
from pipeline.schema import ID
from pipeline.stages.base import StageConfig, reasons_from_checks
from pipeline.stages.contract import Contract
from pipeline.stages.global_base import GlobalContext, GlobalStage, ShardRef
from pipeline.text.batch import with_columns
from pipeline.text.normalize import NormSpec, normalizer, resolve

HASH, COUNT, IS_KEPT = "exact_dup_hash", "exact_dup_count", "exact_dup_is_kept"
REASON_DUPLICATE = "exact_duplicate"
_MASK64 = (1 << 64) - 1

HASH_RECORD = np.dtype(
    [("hi", "<u8"), ("lo", "<u8"), ("doc", "<u8"), ("length", "<u8"), ("rand", "<u8")]
)
DECISION_RECORD = np.dtype([("row", "<u4"), ("count", "<u4"), ("kept", "u1")])
INDEX_RECORD = np.dtype([("hi", "<u8"), ("lo", "<u8")])


class ExactDedupConfig(StageConfig):
    """Which value is compared, how it is normalised, and which copy survives."""

    stage: Literal["exact_dedup"] = "exact_dedup"
    column: Literal["text", "html"] = "text"  # value compared (html: before extract)
    normalization: NormSpec = "nfc_strip"  # preset or TextNorm switches (text/normalize.py)
    # Copy kept: first (input order), longest (most characters) or random (hash of id, seed).
    keep: Literal["first", "longest", "random"] = "first"
    seed: int = Field(default=0, ge=0, lt=1 << 64)  # seed of the id hash of keep: random
    # Directory of earlier runs' hashes (dedup/index.py): their copies here are duplicates.
    index: str | None = None
    index_mode: IndexMode = "update"  # read: match only; update: also append this run (creates it)

    def index_params(self) -> dict[str, Any]:
        """What the indexed hashes depend on: a run with other values refuses the index."""
        return {
            "column": self.column,
            "normalization": resolve(self.normalization).model_dump(),
            "hash": "xxh3_128",
        }


# --- hashing ----------------------------------------------------------------------------------


def value_hashes(values: list[str | None], normalization: NormSpec) -> list[int | None]:
    """xxh3-128 of each normalised value as an int; None for null or an empty key."""
    norm = normalizer(normalization)
    keys = (None if v is None else norm(v) for v in values)
    return [xxhash.xxh3_128_intdigest(k.encode("utf-8")) if k else None for k in keys]


def _hash_shard(
    shard: ShardRef,
    *,
    fs: fsspec.AbstractFileSystem,
    work_dir: str,
    cfg: ExactDedupConfig,
    num_partitions: int,
) -> dict[str, int]:
    """Phase 1: hash records of one shard, keyed by partition (hash mod P)."""
    chunks: list[np.ndarray] = []
    row = 0
    columns = [cfg.column, ID] if cfg.keep == "random" else [cfg.column]
    for batch in shard.iter_batches(fs, columns=columns):
        values = batch.column(cfg.column).to_pylist()
        ids = batch.column(ID).to_pylist() if cfg.keep == "random" else None
        hashes = value_hashes(values, cfg.normalization)
        present = [i for i, h in enumerate(hashes) if h is not None]
        rec = np.empty(len(present), dtype=HASH_RECORD)
        rec["hi"] = [hashes[i] >> 64 for i in present]
        rec["lo"] = [hashes[i] & _MASK64 for i in present]
        rec["doc"] = (shard.index << ROW_BITS) | (row + np.asarray(present, dtype=np.uint64))
        rec["length"] = [len(values[i]) for i in present]
        if ids is not None:
            rec["rand"] = [xxhash.xxh3_64_intdigest(ids[i].encode(), cfg.seed) for i in present]
        else:
            rec["rand"] = 0
        chunks.append(rec)
        row += len(values)
    records = np.concatenate(chunks) if chunks else np.empty(0, dtype=HASH_RECORD)
    keys = records["lo"] % np.uint64(num_partitions)
    write_keyed(fs, shard_path(work_dir, "hashes", shard.index), records, keys, key="partition")
    return {"index": shard.index, "rows": row, "hashed": len(records)}


def _order(records: np.ndarray, keep: str) -> np.ndarray:
    """Indices sorting records by hash, then by the keeper policy, then by doc_key."""
    if keep == "longest":
        tiebreak: tuple[np.ndarray, ...] = (
            records["doc"],
            np.iinfo(np.uint64).max - records["length"],
        )
    elif keep == "random":
        tiebreak = (records["doc"], records["rand"])
    else:
        tiebreak = (records["doc"],)
    return np.lexsort((*tiebreak, records["lo"], records["hi"]))


def _dedup_partition(
    part: int,
    *,
    fs: fsspec.AbstractFileSystem,
    work_dir: str,
    shard_indices: list[int],
    keep: str,
    index: DedupIndex | None = None,
) -> dict[str, int]:
    """Phase 2: group one partition's records by hash and write decisions for the copies
    (every copy of an indexed hash among them); append the new distinct hashes to the index."""
    paths = [shard_path(work_dir, "hashes", s) for s in shard_indices]
    records = read_keyed(fs, paths, part, HASH_RECORD, key="partition")
    order = _order(records, keep)
    n = len(records)
    hi, lo = records["hi"][order], records["lo"][order]
    is_head = np.ones(n, dtype=bool)
    if n > 1:
        is_head[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    run = np.cumsum(is_head) - 1
    counts = np.bincount(run)[run] if n else np.empty(0, dtype=np.int64)
    matched = np.zeros(n, dtype=bool)
    if index is not None:  # one lookup per distinct hash, spread over its copies
        distinct = np.empty(int(is_head.sum()), dtype=INDEX_RECORD)
        distinct["hi"], distinct["lo"] = hi[is_head], lo[is_head]
        keys = distinct.view("V16")
        indexed = index.read(part, INDEX_RECORD, lambda r: np.isin(r.view("V16"), keys))
        found = np.isin(keys, indexed.view("V16"))
        if index.mode == "update":
            index.write(part, distinct[~found])
        matched = found[run]
        counts += matched  # the indexed copy
        del distinct, found, keys, indexed
    del hi, lo, run
    dup = (counts > 1) | matched
    out = np.empty(int(dup.sum()), dtype=DECISION_RECORD)
    docs = records["doc"][order[dup]]
    out["row"] = docs & np.uint64(ROW_MASK)
    out["count"] = counts[dup]
    out["kept"] = (is_head & ~matched)[dup]
    write_keyed(
        fs, f"{work_dir}/decisions/{part:05d}.bin", out, docs >> np.uint64(ROW_BITS), key="shard"
    )
    return {
        "documents": n,
        "distinct": int(is_head.sum()),
        "duplicate_groups": int((is_head & dup).sum()),
        "index_matched": int(matched.sum()),
        "kept": int((is_head & ~matched).sum()),
    }


class ExactDedupStage(GlobalStage):
    """Document-level exact dedup; columns exact_dup_hash / _count / _is_kept."""

    config_cls = ExactDedupConfig
    score_columns = (HASH, COUNT, IS_KEPT)

    config: ExactDedupConfig

    @classmethod
    def contract(cls, config: ExactDedupConfig) -> Contract:  # type: ignore[override]
        """Compares the configured column (`text`, or `html` before extract)."""
        return replace(super().contract(config), requires=(config.column,))

    def prepare(self, ctx: GlobalContext, shards: list[ShardRef]) -> dict[str, Any]:
        cfg, fs, work = self.config, ctx.fs, ctx.work_dir
        parts = max(1, ctx.num_partitions)
        index = open_index(cfg, partitions=parts, work=work, shards=shards)
        if index is not None:
            parts = index.partitions  # each partition task reads only its slice of the index
        present = [s for s in shards if s.path is not None]
        hashed = ctx.map(
            partial(_hash_shard, fs=fs, work_dir=work, cfg=cfg, num_partitions=parts), present
        )
        indices = [s.index for s in present]
        stats = ctx.map(
            partial(
                _dedup_partition,
                fs=fs,
                work_dir=work,
                shard_indices=indices,
                keep=cfg.keep,
                index=index,
            ),
            list(range(parts)),
        )
        rows = {str(h["index"]): h["rows"] for h in hashed}
        write_manifest(fs, work, {"partitions": parts, "rows": rows})
        docs = sum(s["documents"] for s in stats)
        kept = sum(s["kept"] for s in stats)
        matched = sum(s["index_matched"] for s in stats)
        summary: dict[str, Any] = {
            "documents": sum(h["rows"] for h in hashed),
            "hashed": docs,
            "distinct": sum(s["distinct"] for s in stats),
            "duplicates": docs - kept,
            "duplicate_groups": sum(s["duplicate_groups"] for s in stats),
            "partitions": parts,
            "max_partition_documents": max((s["documents"] for s in stats), default=0),
            "phase2_bytes_per_document": 120,
        }
        if index is not None:
            in_run = docs - kept - matched
            summary |= finish_run(
                index, matched=matched, in_run=in_run, appended=kept, records=kept
            )
        return summary

    def score_shard(self, ctx: GlobalContext, shard: ShardRef, table: pa.Table) -> pa.Table:
        cfg, fs, work = self.config, ctx.fs, ctx.work_dir
        n = table.num_rows
        if cfg.column not in table.column_names:
            raise KeyError(f"exact_dedup.column is {cfg.column!r} but the shard has no such column")
        manifest = read_manifest(fs, work, shard.index, n)
        counts = np.ones(n, dtype=np.int64)
        kept = np.ones(n, dtype=bool)
        paths = [f"{work}/decisions/{part:05d}.bin" for part in range(manifest["partitions"])]
        dec = read_keyed(fs, paths, shard.index, DECISION_RECORD, key="shard")
        counts[dec["row"]] = dec["count"]
        kept[dec["row"]] = dec["kept"].astype(bool)
        hashes = value_hashes(table.column(cfg.column).to_pylist(), cfg.normalization)
        hex_hashes = [None if h is None else f"{h:032x}" for h in hashes]
        return with_columns(
            table,
            {
                HASH: pa.array(hex_hashes, type=pa.string()),
                COUNT: pa.array(counts, type=pa.int64()),
                IS_KEPT: pa.array(kept, type=pa.bool_()),
            },
        )

    def keep(self, table: pa.Table) -> pa.Array:
        kept = table.column(IS_KEPT).to_numpy(zero_copy_only=False).astype(bool)
        return reasons_from_checks(table.num_rows, [(~kept, REASON_DUPLICATE)])
