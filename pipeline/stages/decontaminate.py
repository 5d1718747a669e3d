"""`decontaminate`: find benchmark test items in the corpus by word n-gram overlap (GPT-3).

Benchmarks are read with the project's readers (JSONL, Parquet, `datasets` directories): each
item's text is its `fields` joined by newlines (list values, e.g. `choices`, joined too). Words are
`split_words` tokens that are not pure punctuation, normalised with `normalization` (default
`ccnet`: lowercase, punctuation removed, digits -> 0); an n-gram is `ngram` consecutive words
(GPT-3: 13), so case, punctuation and line breaks do not hide a copy. Items with fewer words than
`ngram` give no n-gram (counted as `items_too_short`).

prepare():

1. the index, one `ctx.map` task (a resumed prepare finds it done): every item's distinct
   n-grams as 64-bit hashes (xxh3_64 of each word, combined as sum of w[i+k] * P^(n-1-k) mod
   2^64, then a splitmix64 finaliser; distinct n-grams collide with probability ~2^-64). N-grams
   found in more than `max_ngram_docs` items are dropped (templates and common phrases). Stored
   as a sorted uint64 array with the items of each n-gram in CSR form (uint32 offsets and item
   numbers): 16 B per n-gram found in one item, +4 B per further item, plus a prefilter bitmap
   of 4-8 B per n-gram (`prefilter`). Building it peaks at ~160 B per n-gram (word lists,
   (hash, item) pairs, their sort; measured).
2. per shard (`ctx.map`): the document n-grams are hashed the same way and looked up (bitmap,
   then binary search); a match file records, per document with any match, the distinct
   n-grams matched, the benchmarks and item ids they come from, and the word positions of the
   matches. Each task
   returns its shard's partial counts (items found, documents touched per benchmark), which the
   driver merges, so the summary is the same however the corpus is sharded. A task holds the
   index and the item ids, and ~50 B per word of a batch of 4,096 documents.

score_shard() reads its shard's match file. A document matching at least `min_matches` distinct
n-grams is contaminated: `mode: reject` rejects it (`decontaminate_match`); `mode:
remove_spans` cuts each matching n-gram plus `margin_chars` characters either side (GPT-3: 200;
overlapping cuts merge), keeps the pieces left, stripped and joined by a newline, and rejects a
document cut more than `max_cuts` times (GPT-3: 10) or left with fewer than `min_length`
characters.
"""

from __future__ import annotations

import io
import json
from functools import partial
from typing import Any, Literal

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from pydantic import Field, field_validator, model_validator

from pipeline.config_model import ConfigModel
from pipeline.dedup.workfiles import read_manifest, write_manifest
from pipeline.errors import ConfigError, CurateError
from pipeline.io.atomic import atomic_write
from pipeline.io.base import ReaderStats
from pipeline.io.options import InputConfig, InputFormat
from pipeline.io.sources import get_reader, input_fingerprint, plan_units
from pipeline.schema import ID, METADATA, TEXT
from pipeline.stages.base import StageConfig, reasons_from_checks
from pipeline.stages.global_base import GlobalContext, GlobalStage, ShardRef
from pipeline.text.batch import with_columns
from pipeline.text.normalize import NormSpec, normalize, resolve
from pipeline.text.words import is_punctuation_token, non_symbol_words, split_words

NGRAMS = "decontam_ngrams"
BENCHMARKS = "decontam_benchmarks"
ITEMS = "decontam_items"
CUTS = "decontam_cuts"
CHARS_REMOVED = "decontam_chars_removed"
REASON_MATCH = "decontaminate_match"
REASON_CUTS = "decontaminate_too_many_cuts"
REASON_SHORT = "decontaminate_too_short"

_P = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the n-gram polynomial
_BATCH = 4096
MATCH_SCHEMA = pa.schema(
    [
        ("row", pa.uint32()),
        ("ngrams", pa.int32()),
        ("benchmarks", pa.list_(pa.string())),
        ("items", pa.list_(pa.string())),
        ("starts", pa.list_(pa.uint32())),
    ]
)


class Benchmark(ConfigModel):
    """One benchmark: where its items are and which of their fields hold text."""

    name: str = Field(min_length=1)
    paths: list[str] = Field(min_length=1)  # files, globs, directories (any input the readers take)
    # Columns whose text counts, in order; the first must hold a string, later ones may be lists.
    fields: list[str] = Field(min_length=1)
    format: InputFormat = "auto"
    id_field: str = "id"  # item id column (absent: the reader's stable xxh: id of the position)

    @field_validator("fields")
    @classmethod
    def _distinct(cls, fields: list[str]) -> list[str]:
        if len(set(fields)) != len(fields):
            raise ValueError("fields must not repeat")
        return fields


class DecontaminateConfig(StageConfig):
    """The benchmarks, the n-gram match, and what happens to a contaminated document."""

    stage: Literal["decontaminate"] = "decontaminate"
    # Benchmarks looked for: [{name, paths (files, globs, dirs: JSONL, Parquet, HF datasets),
    # fields (columns whose text counts; the first a string, lists such as choices joined),
    # format (auto), id_field (id)}].
    benchmarks: list[Benchmark] = Field(min_length=1)
    ngram: int = Field(default=13, ge=1, le=64)  # words per n-gram (GPT-3: 13)
    # Word normalisation: preset or TextNorm switches (text/normalize.py; not whitespace: tokens).
    normalization: NormSpec = "ccnet"
    min_matches: int = Field(default=1, ge=1)  # distinct n-grams a contaminated document shares
    max_ngram_docs: int = Field(default=10, ge=1)  # n-grams in more items than this are ignored
    # reject: drop contaminated documents; remove_spans: cut the matches plus a margin (GPT-3).
    mode: Literal["reject", "remove_spans"] = "reject"
    margin_chars: int = Field(default=200, ge=0)  # characters cut either side of a match
    max_cuts: int = Field(default=10, ge=0)  # reject a document cut more often than this
    min_length: int = Field(default=200, ge=0)  # reject a cut document left shorter than this

    @model_validator(mode="after")
    def _checks(self) -> DecontaminateConfig:
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError("benchmark names must be distinct")
        if resolve(self.normalization).tokens:
            raise ValueError("normalization: whitespace: tokens is not supported (words are split)")
        return self


# --- words and n-grams ---------------------------------------------------------------------------


def _normalized(tokens: list[str], normalization: NormSpec) -> list[str]:
    """One normalised form per token: normalising them joined by spaces keeps one space between
    them (no step adds or removes a space), so the split gives the forms back in order."""
    return normalize(" ".join(tokens), normalization).split(" ") if tokens else []


def words(text: str, normalization: NormSpec) -> list[str]:
    """The normalised words of `text`: `split_words` tokens that are not pure punctuation,
    normalised, those that normalise to nothing left out."""
    return [w for w in _normalized(non_symbol_words(split_words(text)), normalization) if w]


def word_spans(text: str, normalization: NormSpec) -> list[tuple[int, int]]:
    """(start, end) character offsets in `text` of each word `words` returns."""
    spans, pos = [], 0
    for tok in split_words(text):
        start = text.find(tok, pos)
        if start < 0:  # a segmenter that changed the surface form: next to the previous token
            start = pos
        pos = start + len(tok)
        if not is_punctuation_token(tok):
            spans.append((start, pos, tok))
    forms = _normalized([tok for _, _, tok in spans], normalization)
    return [(a, b) for (a, b, _), w in zip(spans, forms, strict=True) if w]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def ngram_hashes(docs: list[list[str]], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash, document number, start word) of every n-gram of every word list, in order."""
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    digest = xxhash.xxh3_64_intdigest
    flat = np.fromiter(
        (digest(w.encode("utf-8")) for d in docs for w in d), dtype=np.uint64, count=lengths.sum()
    )
    m = len(flat) - n + 1
    if m <= 0:
        empty = np.empty(0, dtype=np.int64)
        return np.empty(0, dtype=np.uint64), empty, empty
    acc = np.zeros(m, dtype=np.uint64)
    for k in range(n):
        acc = acc * _P + flat[k : k + m]
    doc = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)[:m]
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    start = np.arange(m, dtype=np.int64) - first[doc]
    valid = start + n <= lengths[doc]
    return _mix(acc[valid]), doc[valid], start[valid]


# --- benchmarks ----------------------------------------------------------------------------------


def _field_text(value: Any) -> str:
    """A field value as text: lists (e.g. choices) joined by newlines, None as nothing."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "\n".join(t for t in (_field_text(v) for v in value) if t)
    return value if isinstance(value, str) else str(value)


def _reader_config(bench: Benchmark) -> InputConfig:
    return InputConfig(
        paths=bench.paths, format=bench.format, text_field=bench.fields[0], id_field=bench.id_field
    )


def read_items(bench: Benchmark) -> tuple[list[str], list[str], int]:
    """(item ids, item texts, items skipped by the reader) of one benchmark."""
    cfg = _reader_config(bench)
    ids: list[str] = []
    texts: list[str] = []
    skipped = 0
    for unit in plan_units(cfg):
        stats = ReaderStats()
        for batch in get_reader(unit.format, cfg).read(unit, stats, 1024):
            for rid, text, meta in zip(
                batch.column(ID).to_pylist(),
                batch.column(TEXT).to_pylist(),
                batch.column(METADATA).to_pylist(),
                strict=True,
            ):
                extra = json.loads(meta) if len(bench.fields) > 1 else {}
                parts = [text, *(_field_text(extra.get(f)) for f in bench.fields[1:])]
                ids.append(rid)
                texts.append("\n".join(p for p in parts if p))
        if problem := stats.config_problem(unit.path):
            raise ConfigError(f"benchmark {bench.name!r}: {problem}")
        skipped += sum(stats.skipped.values())
    return ids, texts, skipped


def check_benchmark(bench: Benchmark, key: str) -> None:
    """ConfigError naming `key` when the benchmark's files cannot be found or read, or its first
    item lacks one of `fields`."""
    where = f"{key}.benchmarks[{bench.name}]"
    try:
        cfg = _reader_config(bench)
        units = plan_units(cfg, where="the benchmark's paths")
        stats = ReaderStats()
        first = next(iter(get_reader(units[0].format, cfg).read(units[0], stats, 1)), None)
        if first is None or first.num_rows == 0:
            problem = stats.config_problem(units[0].path)
            raise ConfigError(
                f"{where}: {problem or f'no item read from {units[0].path}'}; "
                f"fields[0] ({bench.fields[0]!r}) must hold a string"
            )
    except ConfigError:
        raise
    except CurateError as exc:
        raise ConfigError(f"{where}.paths: {exc}") from None
    extra = json.loads(first.column(METADATA)[0].as_py())
    missing = [f for f in bench.fields[1:] if f not in extra]
    if missing:
        raise ConfigError(
            f"{where}.fields: {missing[0]!r} is not a field of the first item in "
            f"{units[0].path} (fields: {', '.join(sorted(extra)) or 'none'})"
        )


# --- the index -----------------------------------------------------------------------------------

INDEX_FILE = "index.npz"


def build_index(
    items: list[str], cfg: DecontaminateConfig
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The index arrays (sorted n-gram hashes, CSR offsets into item numbers) and counts."""
    hashes: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    too_short = 0
    for lo in range(0, len(items), _BATCH):
        chunk = [words(t, cfg.normalization) for t in items[lo : lo + _BATCH]]
        too_short += sum(len(w) < cfg.ngram for w in chunk)
        h, doc, _ = ngram_hashes(chunk, cfg.ngram)
        hashes.append(h)
        owners.append((doc + lo).astype(np.uint32))
    pairs = np.empty(sum(len(h) for h in hashes), dtype=[("h", "<u8"), ("item", "<u4")])
    pairs["h"] = np.concatenate(hashes) if hashes else np.empty(0, np.uint64)
    pairs["item"] = np.concatenate(owners) if owners else np.empty(0, np.uint32)
    pairs = np.unique(pairs)  # sorted by (hash, item), one pair per n-gram of an item
    head = np.ones(len(pairs), dtype=bool)
    head[1:] = pairs["h"][1:] != pairs["h"][:-1]
    run = np.cumsum(head) - 1
    per_ngram = np.bincount(run, minlength=int(head.sum()))
    common = per_ngram > cfg.max_ngram_docs
    offsets = np.zeros(int((~common).sum()) + 1, dtype=np.uint32)
    np.cumsum(per_ngram[~common], out=offsets[1:])
    hashes = pairs["h"][head][~common]
    index = {
        "hashes": hashes,
        "offsets": offsets,
        "items": pairs["item"][~common[run]],
        "filter": prefilter(hashes),
    }
    counts = {
        "ngrams": int(len(index["hashes"])),
        "ngrams_ignored": int(common.sum()),
        "items_too_short": too_short,
    }
    return index, counts


def prefilter(hashes: np.ndarray) -> np.ndarray:
    """A bitmap of the top bits of `hashes` (>= 32 bits per n-gram, a power of two, >= 2^16):
    a document n-gram whose bit is clear is not in the index (~97% of them), so only the rest
    take the binary search, ~10x fewer random reads."""
    size = max(1 << 16, 1 << int(np.ceil(np.log2(max(1, 32 * len(hashes))))))
    bits = np.zeros(size // 8, dtype=np.uint8)
    slot = _slots(hashes, size)
    np.bitwise_or.at(bits, slot >> 3, np.left_shift(1, slot & 7).astype(np.uint8))
    return bits


def _slots(hashes: np.ndarray, size: int) -> np.ndarray:
    """The bitmap slot of each hash: its top log2(size) bits."""
    return (hashes >> np.uint64(64 - size.bit_length() + 1)).astype(np.int64)


def lookup(index: dict[str, np.ndarray], hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions in `hashes` found in the index, their positions in the index)."""
    bits, table = index["filter"], index["hashes"]
    slot = _slots(hashes, len(bits) * 8)
    maybe = np.flatnonzero((bits[slot >> 3] >> (slot & 7).astype(np.uint8)) & 1)
    pos = np.searchsorted(table, hashes[maybe])
    pos[pos == len(table)] = 0
    hit = table[pos] == hashes[maybe] if len(table) else np.zeros(len(maybe), dtype=bool)
    return maybe[hit], pos[hit]


def _write_npz(fs: fsspec.AbstractFileSystem, path: str, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_write(fs, path) as f:
        f.write(buf.getvalue())


def _read_npz(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, np.ndarray]:
    with fs.open(path, "rb") as f:
        data = np.load(io.BytesIO(f.read()))
        return {k: data[k] for k in data.files}


def _matches_path(work_dir: str, index: int) -> str:
    return f"{work_dir}/matches/{index:06d}.parquet"


def _match_shard(
    shard: ShardRef,
    *,
    fs: fsspec.AbstractFileSystem,
    work_dir: str,
    cfg: DecontaminateConfig,
) -> dict[str, Any]:
    """Phase 2: look every n-gram of one shard up; write its match file, return partial counts."""
    index = _read_npz(fs, f"{work_dir}/{INDEX_FILE}")
    offsets, owners = index["offsets"], index["items"]
    with fs.open(f"{work_dir}/items.json", "r") as f:
        catalog = json.load(f)
    names, bench_of, ids = catalog["names"], catalog["bench"], catalog["ids"]
    out: dict[str, list[Any]] = {name: [] for name in MATCH_SCHEMA.names}
    found: set[int] = set()
    touched = dict.fromkeys(names, 0)
    row = 0
    for batch in shard.iter_batches(fs, columns=[TEXT], batch_size=_BATCH):
        texts = batch.column(TEXT).to_pylist()
        h, doc, start = ngram_hashes([words(t or "", cfg.normalization) for t in texts], cfg.ngram)
        hit, pos = lookup(index, h)
        doc, start = doc[hit], start[hit]
        for d in np.unique(doc).tolist():
            mine = doc == d
            ngrams = np.unique(pos[mine])
            item_set = {
                int(i) for p in ngrams.tolist() for i in owners[offsets[p] : offsets[p + 1]]
            }
            benches = sorted({names[bench_of[i]] for i in item_set})
            out["row"].append(row + d)
            out["ngrams"].append(len(ngrams))
            out["benchmarks"].append(benches)
            out["items"].append(sorted(f"{names[bench_of[i]]}:{ids[i]}" for i in item_set))
            out["starts"].append(sorted(set(start[mine].tolist())))
            if len(ngrams) >= cfg.min_matches:
                found |= item_set
                for b in benches:
                    touched[b] += 1
        row += len(texts)
    with atomic_write(fs, _matches_path(work_dir, shard.index)) as f:
        pq.write_table(pa.table(out, schema=MATCH_SCHEMA), f)
    return {"index": shard.index, "rows": row, "found": sorted(found), "touched": touched}


def cut_spans(text: str, starts: list[int], cfg: DecontaminateConfig) -> tuple[str, int]:
    """`text` without each matching n-gram (word positions `starts`) plus `margin_chars` either
    side, the pieces left stripped and joined by a newline; and the number of cuts."""
    spans = word_spans(text, cfg.normalization)
    cuts: list[list[int]] = []
    for s in starts:
        lo = max(0, spans[s][0] - cfg.margin_chars)
        hi = min(len(text), spans[s + cfg.ngram - 1][1] + cfg.margin_chars)
        if cuts and lo <= cuts[-1][1]:
            cuts[-1][1] = max(cuts[-1][1], hi)
        else:
            cuts.append([lo, hi])
    pieces, pos = [], 0
    for lo, hi in cuts:
        pieces.append(text[pos:lo])
        pos = hi
    pieces.append(text[pos:])
    return "\n".join(p.strip() for p in pieces if p.strip()), len(cuts)


def _index_task(_: int, *, fs: Any, work_dir: str, cfg: DecontaminateConfig) -> dict[str, Any]:
    """Read every benchmark and write the n-gram index and items.json (one task of prepare, so
    a resumed prepare finds it done); the item list and counts for the summary."""
    names, bench_of, ids, texts = [], [], [], []
    skipped: dict[str, int] = {}
    for b, bench in enumerate(cfg.benchmarks):
        bench_ids, bench_texts, skipped[bench.name] = read_items(bench)
        if not bench_ids:
            raise ConfigError(f"decontaminate: benchmark {bench.name!r} has no readable item")
        names.append(bench.name)
        bench_of += [b] * len(bench_ids)
        ids += bench_ids
        texts += bench_texts
    index, counts = build_index(texts, cfg)
    del texts
    _write_npz(fs, f"{work_dir}/{INDEX_FILE}", index)
    with atomic_write(fs, f"{work_dir}/items.json", "w") as f:
        json.dump({"names": names, "bench": bench_of, "ids": ids}, f)
    return {
        "names": names,
        "bench": bench_of,
        "ids": ids,
        "skipped": skipped,
        "counts": counts,
        "index_bytes": sum(a.nbytes for a in index.values()),
        "filter_bytes": index["filter"].nbytes,
    }


class DecontaminateStage(GlobalStage):
    """Benchmark decontamination by word n-gram overlap (GPT-3); remove_spans rewrites `text`."""

    config_cls = DecontaminateConfig
    threshold_keys = frozenset({"max_cuts", "min_length"})
    score_columns = (TEXT, NGRAMS, BENCHMARKS, ITEMS, CUTS, CHARS_REMOVED)

    config: DecontaminateConfig

    @classmethod
    def verify(cls, config: DecontaminateConfig, key: str, runtime: Any) -> None:  # type: ignore[override]
        """Every benchmark's paths must be readable and its first item must have its fields."""
        for bench in config.benchmarks:
            check_benchmark(bench, key)

    def prepare_inputs(self) -> list[str]:
        """The benchmarks' files by identity (path, size, mtime or etag)."""
        return [input_fingerprint(plan_units(_reader_config(b))) for b in self.config.benchmarks]

    def prepare(self, ctx: GlobalContext, shards: list[ShardRef]) -> dict[str, Any]:
        cfg, fs, work = self.config, ctx.fs, ctx.work_dir
        built = ctx.map(partial(_index_task, fs=fs, work_dir=work, cfg=cfg), [0])[0]
        names, bench_of, ids = built["names"], built["bench"], built["ids"]
        skipped, counts = built["skipped"], built["counts"]
        index_bytes, filter_bytes = built["index_bytes"], built["filter_bytes"]
        present = [s for s in shards if s.path is not None]
        parts = ctx.map(partial(_match_shard, fs=fs, work_dir=work, cfg=cfg), present)
        write_manifest(fs, work, {"rows": {str(p["index"]): p["rows"] for p in parts}})
        found = set().union(*(p["found"] for p in parts)) if parts else set()
        summary: dict[str, Any] = {
            "documents": sum(p["rows"] for p in parts),
            "items": len(ids),
            **counts,
            "index_bytes": index_bytes,
            "index_filter_bytes": filter_bytes,
            "index_bytes_per_ngram": round(index_bytes / counts["ngrams"], 2)
            if counts["ngrams"]
            else 0,
        }
        for b, name in enumerate(names):
            summary[f"{name}_items"] = bench_of.count(b)
            summary[f"{name}_items_skipped"] = skipped[name]
            summary[f"{name}_items_found"] = sum(1 for i in found if bench_of[i] == b)
            summary[f"{name}_documents_touched"] = sum(p["touched"][name] for p in parts)
        return summary

    def score_shard(self, ctx: GlobalContext, shard: ShardRef, table: pa.Table) -> pa.Table:
        cfg = self.config
        n = table.num_rows
        read_manifest(ctx.fs, ctx.work_dir, shard.index, n)
        ngrams = np.zeros(n, dtype=np.int32)
        cuts = np.zeros(n, dtype=np.int32)
        removed = np.zeros(n, dtype=np.int64)
        benchmarks: list[list[str]] = [[] for _ in range(n)]
        items: list[list[str]] = [[] for _ in range(n)]
        texts = table.column(TEXT).to_pylist() if n else []
        if shard.path is not None and n:
            with ctx.fs.open(_matches_path(ctx.work_dir, shard.index), "rb") as f:
                matches = pq.read_table(f).to_pylist()
            for m in matches:
                r = m["row"]
                ngrams[r], benchmarks[r], items[r] = m["ngrams"], m["benchmarks"], m["items"]
                if cfg.mode == "remove_spans" and m["ngrams"] >= cfg.min_matches:
                    new, cuts[r] = cut_spans(texts[r], m["starts"], cfg)
                    removed[r] = len(texts[r]) - len(new)
                    texts[r] = new
        return with_columns(
            table,
            {
                TEXT: pa.array(texts, type=pa.string()),
                NGRAMS: pa.array(ngrams, type=pa.int32()),
                BENCHMARKS: pa.array(benchmarks, type=pa.list_(pa.string())),
                ITEMS: pa.array(items, type=pa.list_(pa.string())),
                CUTS: pa.array(cuts, type=pa.int32()),
                CHARS_REMOVED: pa.array(removed, type=pa.int64()),
            },
        )

    def keep(self, table: pa.Table) -> pa.Array:
        cfg = self.config
        ngrams = table.column(NGRAMS).to_numpy(zero_copy_only=False)
        cuts = table.column(CUTS).to_numpy(zero_copy_only=False)
        left = pc.fill_null(pc.utf8_length(table.column(TEXT)), 0).to_numpy(zero_copy_only=False)
        matched = (ngrams >= cfg.min_matches) & (cfg.mode == "reject")
        return reasons_from_checks(
            table.num_rows,
            [
                (matched, REASON_MATCH),
                (cuts > cfg.max_cuts, REASON_CUTS),
                ((cuts > 0) & (left < cfg.min_length), REASON_SHORT),
            ],
        )
