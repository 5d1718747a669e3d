"""`minhash_dedup`: MinHash LSH near-duplicate removal over the whole corpus (a global stage).

Phases of `prepare` (files under ctx.work_dir):

1. `signatures` (ctx.map over shards): normalise, shingle and sign every document
   (`signatures.MinHasher`), hash each of the b bands of r rows to 64 bits and write records
   (band, band_hash, doc_key) sorted by partition = band_hash mod ctx.num_partitions to
   `bands/shard-XXXXXX.bin` (a keyed record file, io/shuffle.py), plus each document's UTF-8 length
   (`keep: longest`) and, for `verify`, signatures or shingle sets. doc_key = (shard index << 32)
   | row number: explicit, global and stable. Documents without any token get no record.
2. `buckets` (ctx.map over partitions): gather the partition's slice of every shard file, sort by
   (band, band_hash, doc_key), and emit one star edge (member, smallest member) per bucket member:
   O(bucket) edges, not O(bucket^2). With `verify`, an edge is kept only when the member's
   estimated (signature) or exact (shingle-set) Jaccard with the bucket's smallest member reaches
   `verify_threshold`. Edges are deduplicated and written to `edges/part-XXXXX.npy`.
3. `clusters`: connected components of all edges, one representative per cluster (`keep`),
   written per shard to `clusters/shard-XXXXXX.npz` (rows, cluster ids, sizes, representative
   flags) so that `score_shard` loads only its own shard's clustered rows. `components: single`
   resolves them in one ctx.map task (`components`, ~140 bytes per edge); `distributed` in rounds
   of ctx.map tasks over hash partitions of the edges (`components_distributed`), each task
   holding ~200 bytes per edge of its partition; `auto` picks single while it fits
   `components_memory`. Both give the same cluster ids (the smallest key), so the same output.

Memory and disk (N documents, b bands, P = ctx.num_partitions, k = b*r hashes):

- phase 1, per task: one shard's records (20 bytes x b per document, x2 while sorting) plus a
  batch of signatures (<= ~32 MB: batch rows shrink as k grows) and the text batch. Disk: 20 bytes
  x b per document (FineWeb 14x8: 280 B/doc; RefinedWeb 450x20: 9 KB/doc, where datatrove stores
  the 20 raw hashes per band, ~74 KB/doc).
- phase 2, per task: 1/P of all records, ~48 bytes per record (records, sort order, sorted copy);
  with an index, plus one index segment's slice at a time (20 bytes x b per indexed document / P)
  and the index records sharing a bucket with the run. Index disk: 20 bytes x b per signed
  document (280 B at 14 x 8).
- phase 3, single: one task, ~140 bytes per candidate edge at peak (edges, renumbering, clustered
  documents; measured); distributed: Q = max(P, 200 x edges / components_memory) tasks per
  round, each ~200 bytes per edge of its partition (plus the largest cluster, in the task of its
  root); the first step reads one of phase 2's P edge files per task.

`score_shard` adds, for every document: `minhash_cluster_id` (int64: the smallest doc_key of the
cluster, the document's own key when it is alone), `minhash_cluster_size` (int32, 1 when alone)
and `minhash_is_representative` (bool). `keep` rejects non-representatives as
`minhash_duplicate`. Presets: `fineweb` 14 bands x 8 rows (112 hashes, P = .56/.77/.92 at
Jaccard .7/.75/.8), `refinedweb` 450 x 20 (9,000 hashes, P = .30/.76/.995).

Incremental (`index: PATH`, dedup/index.py): the index holds the band records of every document
earlier runs signed (kept or removed), keyed by virtual keys below every run key. Phase 2 adds
its partition's index records whose band hash occurs in the run, so indexed documents join the
buckets and, being the smallest keys, become the star centres: a cluster holding one has a
negative `minhash_cluster_id`, and every run document in it is a duplicate (the indexed document
wins, whatever `keep`), as if the earlier runs' documents came first in one combined run.
`index_mode: update` appends the run's band records as a new segment, committed at the end of
prepare. Phase 3 sees indexed documents as any other node (it only skips their files and
lengths); score_shard clears their clusters' run representatives, and a pass over the per-shard
cluster files counts the run's documents alone (`clusters`, `largest_cluster` count indexed
members too). `verify` needs the documents' signatures or shingles, which the index does not keep, so
it does not combine with `index`. With an index, the stage uses the index's partition count.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from pipeline.dedup import kernels, lsh
from pipeline.dedup.components import (
    cluster_summary,
    connected_components,
    representatives,
    write_clusters,
)
from pipeline.dedup.components_distributed import distributed_components, plan
from pipeline.dedup.index import (
    DedupIndex,
    IndexMode,
    finish_run,
    in_sorted,
    open_index,
    virtual_keys,
)
from pipeline.dedup.signatures import MinHasher
from pipeline.dedup.workfiles import ROW_BITS, ROW_MASK
from pipeline.io.atomic import atomic_write
from pipeline.io.shuffle import read_keyed, write_keyed
from pipeline.schema import LANG, TEXT
from pipeline.stages.base import StageConfig, reasons_from_checks
from pipeline.stages.global_base import GlobalContext, GlobalStage, ShardRef
from pipeline.text.normalize import TextNorm

CLUSTER_ID = "minhash_cluster_id"
CLUSTER_SIZE = "minhash_cluster_size"
IS_REPRESENTATIVE = "minhash_is_representative"
REASON_DUPLICATE = "minhash_duplicate"

RECORD = np.dtype([("hash", "<u8"), ("key", "<i8"), ("band", "<u4")])
READ_BATCH_ROWS = 4096
SIGNATURE_CACHE_SHARDS = 16


class MinHashDedupConfig(StageConfig):
    """Banding: `preset`, or `num_bands` x `rows_per_band`, or `threshold` (+ `num_perm` and the
    weights, as datasketch's optimal_param); FineWeb's 14 x 8 when none is given."""

    stage: Literal["minhash_dedup"] = "minhash_dedup"
    preset: Literal["fineweb", "refinedweb"] | None = None  # bands x rows: 14 x 8 or 450 x 20
    num_bands: int | None = Field(default=None, ge=1)  # LSH bands b (with rows_per_band)
    rows_per_band: int | None = Field(default=None, ge=1)  # hashes per band r (with num_bands)
    # Target Jaccard similarity: bands x rows chosen for it (datasketch optimal_param).
    threshold: float | None = Field(default=None, gt=0, lt=1)
    num_perm: int = Field(default=128, ge=1, le=20000)  # hashes available to `threshold` banding
    false_positive_weight: float = Field(default=0.5, ge=0, le=1)  # weight in `threshold` banding
    false_negative_weight: float = Field(default=0.5, ge=0, le=1)  # weight in `threshold` banding
    ngram_size: int = Field(default=5, ge=1, le=64)  # words per shingle
    seed: int = Field(default=1, ge=0, lt=2**32)  # seed of the permutations and keep: random
    hash_bits: Literal[32, 64] = 64  # width of the signature values
    permutation: Literal["mersenne", "affine64"] = "mersenne"  # hash family (datasketch schemes)
    shingle_hash: Literal["words64", "xxh3", "sha1_32"] = "words64"  # how shingles are hashed
    # Normalisation before shingling: TextNorm (text/normalize.py) switches; all on = `fineweb`.
    lowercase: bool = True  # normalisation before shingling: lowercase
    strip_diacritics: bool = True  # normalisation: "é" == "e"
    remove_punctuation: bool = True  # normalisation: punctuation and symbols split words
    normalize_digits: bool = True  # normalisation: every number reads "0"
    verify: Literal["none", "signature", "jaccard"] = "none"  # recheck LSH candidate pairs
    # Jaccard a verified pair needs; null: `threshold`, else the banding's 50% point.
    verify_threshold: float | None = Field(default=None, gt=0, le=1)
    keep: Literal["first", "longest", "random"] = "first"  # document each cluster keeps
    engine: Literal["auto", "numba", "numpy"] = "auto"  # signature kernels; auto: numba if found
    # Connected components of the candidate edges: one task, or rounds of tasks over partitions
    # of the edges (the same clusters); auto: one task while it fits components_memory.
    components: Literal["auto", "single", "distributed"] = "auto"
    # Bytes one components task may hold: auto's limit for the single task (~140 B per edge) and
    # the size of a distributed partition (~200 B per edge); default 4 GiB.
    components_memory: int = Field(default=4 << 30, ge=1 << 20)
    # Directory of earlier runs' band records (dedup/index.py): their copies here are duplicates.
    index: str | None = None
    index_mode: IndexMode = "update"  # read: match only; update: also append this run (creates it)

    @model_validator(mode="after")
    def _check_banding(self) -> MinHashDedupConfig:
        explicit = (self.num_bands, self.rows_per_band)
        if (explicit[0] is None) != (explicit[1] is None):
            raise ValueError("num_bands and rows_per_band must be given together")
        chosen = [self.preset is not None, explicit[0] is not None, self.threshold is not None]
        if sum(chosen) > 1:
            raise ValueError("give only one of preset, num_bands/rows_per_band, threshold")
        if abs(self.false_positive_weight + self.false_negative_weight - 1.0) > 1e-9:
            raise ValueError("false_positive_weight + false_negative_weight must be 1")
        if self.permutation == "affine64" and self.hash_bits != 64:
            raise ValueError("permutation 'affine64' needs hash_bits 64")
        if self.index is not None and self.verify != "none":
            raise ValueError("verify needs signatures the index does not keep: use verify none")
        return self

    def index_params(self) -> dict[str, Any]:
        """What the indexed band records depend on: a run with other values refuses the index."""
        bands, rows = self.banding()
        return {
            "num_perm": bands * rows,
            "num_bands": bands,
            "rows_per_band": rows,
            "seed": self.seed,
            "ngram_size": self.ngram_size,
            "hash_bits": self.hash_bits,
            "permutation": self.permutation,
            "shingle_hash": self.shingle_hash,
            "normalization": self.normalization().model_dump(),
        }

    def banding(self) -> tuple[int, int]:
        """(bands, rows) after resolving preset / threshold / defaults."""
        if self.num_bands is not None and self.rows_per_band is not None:
            return self.num_bands, self.rows_per_band
        if self.threshold is not None:
            return lsh.optimal_params(
                self.threshold,
                self.num_perm,
                self.false_positive_weight,
                self.false_negative_weight,
            )
        return lsh.PRESETS[self.preset or "fineweb"]

    def hasher(self) -> MinHasher:
        bands, rows = self.banding()
        return MinHasher(
            num_perm=bands * rows,
            seed=self.seed,
            ngram_size=self.ngram_size,
            scheme=self.permutation,
            hash_bits=self.hash_bits,
            shingle_hash=self.shingle_hash,
            norm=self.normalization(),
            engine=self.engine,
        )

    def normalization(self) -> TextNorm:
        """The TextNorm switches that the four normalisation keys stand for."""
        return TextNorm(
            lowercase=self.lowercase,
            strip_diacritics=self.strip_diacritics,
            punctuation="split" if self.remove_punctuation else "keep",
            digits="number" if self.normalize_digits else "keep",
            whitespace="tokens",
        )

    def effective_verify_threshold(self) -> float:
        if self.verify_threshold is not None:
            return self.verify_threshold
        if self.threshold is not None:
            return self.threshold
        return lsh.half_point(*self.banding())


class MinHashDedupStage(GlobalStage):
    """MinHash LSH fuzzy dedup; see the module docstring."""

    config_cls: ClassVar[type[StageConfig]] = MinHashDedupConfig
    score_columns: ClassVar[tuple[str, ...]] = (CLUSTER_ID, CLUSTER_SIZE, IS_REPRESENTATIVE)
    config: MinHashDedupConfig

    def prepare(self, ctx: GlobalContext, shards: list[ShardRef]) -> dict[str, Any]:
        cfg = self.config
        bands, rows = cfg.banding()
        work, fs = ctx.work_dir.rstrip("/"), ctx.fs
        parts = max(1, int(ctx.num_partitions))
        timings: dict[str, float] = {}
        index = open_index(cfg, partitions=parts, work=work, shards=shards)
        if index is not None:
            parts = index.partitions  # each bucket task reads only its slice of the index

        t0 = time.perf_counter()
        sign = functools.partial(_signature_task, cfg=cfg, fs=fs, work=work, partitions=parts)
        sig_stats = ctx.map(sign, shards)
        timings["signatures_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        shard_ids = [s.index for s in shards if s.path is not None]
        bucket = functools.partial(
            _bucket_task, cfg=cfg, fs=fs, work=work, shard_ids=shard_ids, index=index
        )
        edge_stats = ctx.map(bucket, list(range(parts)))
        timings["buckets_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        edges = int(sum(s["edges"] for s in edge_stats))
        clusters = _components(ctx, cfg, shard_ids, edges, parts)
        timings["clusters_s"] = time.perf_counter() - t0

        summary = {
            "num_bands": bands,
            "rows_per_band": rows,
            "num_perm": bands * rows,
            "ngram_size": cfg.ngram_size,
            "approx_threshold": round((1.0 / bands) ** (1.0 / rows), 4),
            "s_half": round(lsh.half_point(bands, rows), 4),
            "s_curve": lsh.s_curve(bands, rows),
            "engine": kernels.resolve_engine(cfg.engine),
            "documents": int(sum(s["documents"] for s in sig_stats)),
            "documents_without_shingles": int(sum(s["empty"] for s in sig_stats)),
            "shingles": int(sum(s["shingles"] for s in sig_stats)),
            "candidate_edges": int(sum(s["candidates"] for s in edge_stats)),
            "edges": int(sum(s["edges"] for s in edge_stats)),
            "verify": cfg.verify,
            **clusters,
            "timings": {k: round(v, 3) for k, v in timings.items()},
        }
        if index is not None:  # phase 3 counted indexed documents too: count the run's alone
            count = functools.partial(_index_counts, fs=fs, work=work)
            counts = ctx.map(count, shard_ids)
            clustered, matched, in_run = (sum(c[i] for c in counts) for i in range(3))
            summary |= {"documents_in_clusters": clustered, "duplicates": matched + in_run}
            summary |= finish_run(
                index,
                matched=matched,
                in_run=in_run,
                appended=int(sum(s["documents"] - s["empty"] for s in sig_stats)),
                records=int(sum(s["records"] for s in edge_stats)),
            )
        return summary

    def score_shard(self, ctx: GlobalContext, shard: ShardRef, table: pa.Table) -> pa.Table:
        n = table.num_rows
        keys = (np.int64(shard.index) << ROW_BITS) + np.arange(n, dtype=np.int64)
        cluster_id, size = keys.copy(), np.ones(n, dtype=np.int32)
        is_rep = np.ones(n, dtype=bool)
        work = ctx.work_dir.rstrip("/")
        docs = f"{work}/docs/shard-{shard.index:06d}.npz"
        if n and ctx.fs.exists(docs):  # rows are positional: the table must be the signed shard
            with ctx.fs.open(docs, "rb") as f:
                signed = len(np.load(f)["lengths"])
            if signed != n:
                raise ValueError(
                    f"shard {shard.index}: {n} rows, but {signed} were signed in prepare()"
                )
        path = f"{work}/clusters/shard-{shard.index:06d}.npz"
        if n and ctx.fs.exists(path):
            with ctx.fs.open(path, "rb") as f:
                data = np.load(f)
                rows = data["rows"]
                if len(rows) and rows.max() >= n:
                    raise ValueError(
                        f"shard {shard.index}: clusters for {rows.max() + 1}+ rows, table has {n}"
                    )
                cluster_id[rows] = data["cluster_id"]
                size[rows] = data["size"]
                is_rep[rows] = data["is_rep"]
        is_rep &= cluster_id >= 0  # a cluster holding an indexed document (key < 0) keeps that one
        for name, values in (
            (CLUSTER_ID, pa.array(cluster_id, pa.int64())),
            (CLUSTER_SIZE, pa.array(size, pa.int32())),
            (IS_REPRESENTATIVE, pa.array(is_rep, pa.bool_())),
        ):
            idx = table.schema.get_field_index(name)
            table = (
                table.set_column(idx, name, values)
                if idx >= 0
                else table.append_column(name, values)
            )
        return table

    def keep(self, table: pa.Table) -> pa.Array:
        rep = table.column(IS_REPRESENTATIVE).to_numpy(zero_copy_only=False)
        return reasons_from_checks(table.num_rows, [(~rep.astype(bool), REASON_DUPLICATE)])


# --- phase 1: signatures and band records ------------------------------------------------------


def _signature_task(
    shard: ShardRef, *, cfg: MinHashDedupConfig, fs, work: str, partitions: int
) -> dict:
    """Sign one shard; write its band records (sorted by partition) and per-document data."""
    stats = {"documents": 0, "empty": 0, "shingles": 0}
    if shard.path is None:
        return stats
    hasher = cfg.hasher()
    bands, rows = cfg.banding()
    records: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    sigs: list[np.ndarray] = []
    shingle_sets: list[np.ndarray] = []
    row0 = 0
    with fs.open(shard.path, "rb") as f:
        pf = pq.ParquetFile(f)
        columns = [c for c in (TEXT, LANG) if c in pf.schema_arrow.names]
        # Signature memory per batch = rows x num_perm x 8 bytes: at most ~32 MB.
        rows_per_batch = int(np.clip((4 << 20) // (bands * rows), 256, READ_BATCH_ROWS))
        for batch in pf.iter_batches(batch_size=rows_per_batch, columns=columns):
            texts = batch.column(TEXT)
            langs = batch.column(LANG).to_pylist() if LANG in columns else None
            n = len(texts)
            if cfg.verify == "jaccard":
                sh = hasher.shingles(texts, langs)
                sig = hasher.from_shingles(sh)
                counts = sh.counts
                for d in range(n):
                    shingle_sets.append(np.unique(sh.hashes[sh.offsets[d] : sh.offsets[d + 1]]))
            else:
                sig, counts = hasher.signatures(texts, langs)
            keys = (np.int64(shard.index) << ROW_BITS) + np.arange(row0, row0 + n, dtype=np.int64)
            has = counts > 0
            bh = lsh.band_hashes(sig[has], bands, rows)
            rec = np.empty(bh.size, dtype=RECORD)
            rec["hash"] = bh.ravel()
            rec["key"] = np.repeat(keys[has], bands)
            rec["band"] = np.tile(np.arange(bands, dtype=np.uint32), int(has.sum()))
            records.append(rec)
            lengths.append(pc.binary_length(texts).fill_null(0).to_numpy(zero_copy_only=False))
            if cfg.verify == "signature":
                sigs.append(sig)
            stats["documents"] += n
            stats["empty"] += int((~has).sum())
            stats["shingles"] += int(counts.sum())
            row0 += n
    rec = np.concatenate(records) if records else np.empty(0, dtype=RECORD)
    part = rec["hash"] % np.uint64(partitions)
    name = f"shard-{shard.index:06d}"
    write_keyed(fs, f"{work}/bands/{name}.bin", rec, part, key="partition")
    extra: dict[str, np.ndarray] = {"lengths": np.concatenate(lengths).astype(np.int64)}
    if cfg.verify == "signature":
        extra["signatures"] = np.concatenate(sigs)
    if cfg.verify == "jaccard":
        extra["shingle_offsets"] = np.concatenate(([0], np.cumsum([len(s) for s in shingle_sets])))
        extra["shingles"] = np.concatenate(shingle_sets) if shingle_sets else np.empty(0, np.uint64)
    with atomic_write(fs, f"{work}/docs/{name}.npz") as f:
        np.savez(f, **extra)
    return stats


# --- phase 2: buckets to star edges --------------------------------------------------------------


def _bucket_task(
    part: int,
    *,
    cfg: MinHashDedupConfig,
    fs,
    work: str,
    shard_ids: list[int],
    index: DedupIndex | None = None,
) -> dict:
    """Group one partition's records into buckets and emit (member, smallest member) edges;
    with an index, its records sharing a bucket with the run join in (and the run's records
    are appended in update mode)."""
    paths = [f"{work}/bands/shard-{s:06d}.bin" for s in shard_ids]
    rec = read_keyed(fs, paths, part, RECORD, key="partition")
    records = len(rec)
    if index is not None:
        if index.mode == "update":
            own = rec.copy()
            own["key"] = virtual_keys(rec["key"], index.segment_number)
            index.write(part, own)
            del own
        run_hashes = np.sort(rec["hash"])
        indexed = index.read(part, RECORD, lambda r: in_sorted(r["hash"], run_hashes))
        rec = np.concatenate((indexed, rec))
        del indexed, run_hashes
    order = np.lexsort((rec["key"], rec["hash"], rec["band"]))
    rec = rec[order]
    keys = rec["key"]
    if len(rec):
        new = np.concatenate(
            ([True], (rec["hash"][1:] != rec["hash"][:-1]) | (rec["band"][1:] != rec["band"][:-1]))
        )
        group = np.cumsum(new) - 1
        first = keys[np.flatnonzero(new)][group]
        is_edge = (keys != first) & (keys >= 0)  # no edges among indexed documents
        src, dst = keys[is_edge], first[is_edge]
    else:
        src = dst = np.empty(0, dtype=np.int64)
    pairs = (
        np.unique(np.stack((src, dst), axis=1), axis=0) if len(src) else np.empty((0, 2), np.int64)
    )
    candidates = len(pairs)
    if cfg.verify != "none" and len(pairs):
        pairs = pairs[_verify(pairs, cfg, fs, work)]
    with atomic_write(fs, f"{work}/edges/part-{part:05d}.npy") as f:
        np.save(f, pairs.astype(np.int64))
    return {"candidates": candidates, "edges": len(pairs), "records": records}


def _verify(pairs: np.ndarray, cfg: MinHashDedupConfig, fs, work: str) -> np.ndarray:
    """Mask of candidate pairs whose Jaccard (estimated or exact) reaches the threshold."""
    threshold = cfg.effective_verify_threshold()
    cache: OrderedDict[int, Any] = OrderedDict()

    def load(shard: int):
        if shard in cache:
            cache.move_to_end(shard)
            return cache[shard]
        with fs.open(f"{work}/docs/shard-{shard:06d}.npz", "rb") as f:
            data = dict(np.load(f))
        cache[shard] = data
        if len(cache) > SIGNATURE_CACHE_SHARDS:
            cache.popitem(last=False)
        return data

    mask = np.zeros(len(pairs), dtype=bool)
    mask_row = np.int64(ROW_MASK)
    for i, (a, b) in enumerate(pairs):
        da, db = load(int(a >> ROW_BITS)), load(int(b >> ROW_BITS))
        ra, rb = int(a & mask_row), int(b & mask_row)
        if cfg.verify == "signature":
            sim = float(np.mean(da["signatures"][ra] == db["signatures"][rb]))
        else:
            sa = da["shingles"][da["shingle_offsets"][ra] : da["shingle_offsets"][ra + 1]]
            sb = db["shingles"][db["shingle_offsets"][rb] : db["shingle_offsets"][rb + 1]]
            inter = len(np.intersect1d(sa, sb, assume_unique=True))
            union = len(sa) + len(sb) - inter
            sim = inter / union if union else 1.0
        mask[i] = sim >= threshold
    return mask


def _index_counts(shard: int, *, fs, work: str) -> tuple[int, int, int]:
    """One shard's (clustered documents, copies of indexed documents, other duplicates)."""
    path = f"{work}/clusters/shard-{shard:06d}.npz"
    if not fs.exists(path):
        return 0, 0, 0
    with fs.open(path, "rb") as f:
        data = np.load(f)
        cluster_id, is_rep = data["cluster_id"], data["is_rep"]
    indexed = cluster_id < 0
    return len(cluster_id), int(indexed.sum()), int((~indexed & ~is_rep).sum())


# --- phase 3: components and per-shard results ---------------------------------------------------


def _components(
    ctx: GlobalContext, cfg: MinHashDedupConfig, shard_ids: list[int], edges: int, parts: int
) -> dict:
    """Phase 3 in one task or in rounds of tasks (`components`), the same clusters either way;
    `parts`: phase 2's edge files."""
    work, fs = ctx.work_dir.rstrip("/"), ctx.fs
    mode, tasks = plan(edges, cfg.components, cfg.components_memory, parts)
    if mode == "single":
        cluster = functools.partial(_cluster_task, cfg=cfg, fs=fs, work=work, partitions=parts)
        return {**ctx.map(cluster, [0])[0], "components": mode}
    summary = distributed_components(
        ctx,
        [f"{work}/edges/part-{part:05d}.npy" for part in range(parts)],
        f"{work}/components",
        f"{work}/clusters",
        shard_ids,
        partitions=tasks,
        keep=cfg.keep,
        seed=cfg.seed,
        lengths_of=functools.partial(_shard_lengths, fs=fs, work=work),
        memory=cfg.components_memory,
    )
    return {**summary, "components": mode}


def _shard_lengths(shard: int, *, fs, work: str) -> np.ndarray:
    """Each row's UTF-8 length in one shard (phase 1's docs file)."""
    with fs.open(f"{work}/docs/shard-{shard:06d}.npz", "rb") as f:
        return np.load(f)["lengths"]


def _cluster_task(_: int, *, cfg: MinHashDedupConfig, fs, work: str, partitions: int) -> dict:
    """Connected components over all edges in one task; per-shard cluster files."""
    edges = []
    for part in range(partitions):
        with fs.open(f"{work}/edges/part-{part:05d}.npy", "rb") as f:
            edges.append(np.load(f))
    pairs = np.concatenate(edges) if edges else np.empty((0, 2), np.int64)
    comp = connected_components(pairs[:, 0], pairs[:, 1])
    del pairs, edges
    shard_of = comp.keys >> ROW_BITS
    row_of = comp.keys & np.int64(ROW_MASK)
    lengths = None
    if cfg.keep == "longest":
        lengths = np.zeros(len(comp.keys), dtype=np.int64)
        for shard in np.unique(shard_of[shard_of >= 0]):  # indexed documents have no file
            sel = shard_of == shard
            lengths[sel] = _shard_lengths(int(shard), fs=fs, work=work)[row_of[sel]]
    is_rep = representatives(comp, cfg.keep, lengths, cfg.seed)
    write_clusters(fs, f"{work}/clusters", comp.keys, comp.cluster_id, comp.size, is_rep)
    roots = comp.root == np.arange(len(comp.keys))
    return {**cluster_summary(comp.size[roots]), "components_rounds": 1, "components_partitions": 1}
