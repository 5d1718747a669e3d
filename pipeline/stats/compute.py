"""`curate stats` driver: plan, run the counting phases through a Ray (or local) map, combine.

Phases (exact mode): 1 per file (scan.scan_file: tokenise, hash, spill by hash mod W),
2 per partition (counting.count_partition: sort, distinct counts per set and level),
3 per file (counting.cover_file: tokens inside repeated n-grams). Approximate mode runs only
phase 1 and merges HyperLogLog++ registers. W is chosen so a phase-2 task stays under
`memory_mb`; the statement of every bound goes into the summary.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import fsspec
import numpy as np

from pipeline.errors import InputError
from pipeline.stats import hll
from pipeline.stats.counting import count_partition, cover_file
from pipeline.stats.inputs import StatsInput, parquet_metadata, resolve_input
from pipeline.stats.scan import MAX_FILES, CountConfig, load_registers, read_columns, scan_file
from pipeline.stats.tokenizers import load_tokenizer, resolve_spec

log = logging.getLogger(__name__)

DEFAULT_NGRAMS = (1, 2, 5, 13, 50)
DEFAULT_WINDOWS = (256, 1024, 2048)
BYTES_PER_TOKEN_EST = 3  # conservative (real web text: 4-6 bytes per word or BPE token)
PHASE2_BYTES_PER_ITEM = 80  # measured 68-78 B with tracemalloc
HASH128_ITEMS = 10**9


@dataclass
class StatsOptions:
    """Options of `curate stats` (see the CLI for their meaning)."""

    path: str
    output: str | None = None
    tokenizers: tuple[str, ...] = ("word",)
    ngrams: tuple[int, ...] = DEFAULT_NGRAMS
    windows: tuple[int, ...] = DEFAULT_WINDOWS
    subsamples: int = 10
    seed: int = 0
    approx: bool = False
    precision: int = 14
    per_stage: bool = False
    executor: str = "ray"
    ray_address: str | None = None
    partitions: int | None = None
    memory_mb: int = 1024
    hash_bits: str = "auto"
    plots: bool = True


@dataclass
class StatsResult:
    """Combined counts: arrays indexed [set, level] (tokens: [tokenizer, set, level])."""

    options: StatsOptions
    source: StatsInput
    config: CountConfig
    tokenizers: list[dict[str, Any]]
    totals: dict[str, np.ndarray]
    distinct: dict[str, np.ndarray]  # "docs" and str(size) -> [set, level]
    stderr_rel: float
    occurrences: dict[str, np.ndarray] = field(default_factory=dict)  # str(size) -> [set]
    repeated_occurrences: dict[str, np.ndarray] = field(default_factory=dict)
    covered_tokens: dict[str, np.ndarray] = field(default_factory=dict)
    distinct_doc_tokens: np.ndarray | None = None
    exact_clusters: np.ndarray | None = None  # [set, log2 bin]
    dedup_clusters: dict[str, list[dict[int, int]]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cpu_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    # Files none of whose records had text, for a configuration reason (ReaderStats.config_problem).
    config_problems: list[str] = field(default_factory=list)
    bounds: dict[str, str] = field(default_factory=dict)


def compute_stats(opts: StatsOptions) -> StatsResult:
    """Plan and run the counting, returning combined arrays (writing is report.py's job)."""
    specs = tuple(resolve_spec(t) for t in opts.tokenizers)
    sizes = tuple(sorted(set(opts.ngrams) | set(opts.windows)))
    if not sizes or min(sizes) < 1:
        raise InputError("--ngrams/--windows need positive sizes")
    if opts.approx:
        _check_precision(opts.precision)
    if opts.partitions is not None and opts.partitions < 1:
        raise InputError(f"--partitions must be >= 1, got {opts.partitions}")
    if opts.memory_mb < 16:
        raise InputError(f"--memory-mb must be >= 16, got {opts.memory_mb}")
    if not 0 <= opts.subsamples <= 30:
        raise InputError(f"--subsamples must be in [0, 30], got {opts.subsamples}")
    source = resolve_input(opts.path, opts.per_stage)
    if not source.files:
        raise InputError(f"{opts.path}: no documents to count (no data files found)")
    if source.num_files > MAX_FILES:
        raise InputError(f"{source.num_files} files; at most {MAX_FILES} per statistics run")
    output = opts.output or default_output(source)
    work_url = f"{output.rstrip('/')}/_work"
    ctx = _context(opts, work_url)
    est_tokens, rows = _inspect_files(source)
    _check_sets(source, rows)
    bits = _hash_bits(opts.hash_bits, est_tokens)
    budget = opts.memory_mb << 20
    parts = opts.partitions or max(
        ctx.num_partitions, math.ceil(est_tokens * PHASE2_BYTES_PER_ITEM / budget)
    )
    cfg = CountConfig(
        sizes=sizes,
        tokenizers=specs,
        num_sets=len(source.sets),
        num_files=source.num_files,
        max_level=opts.subsamples,
        seed=opts.seed,
        approx=opts.approx,
        precision=opts.precision,
        hash_bits=bits,
        partitions=parts,
        work_dir=work_url,
        buffer_bytes=min(64 << 20, budget // 8),  # a flush holds ~3 copies of the buffer
    )
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scans = ctx.map(partial(scan_file, cfg), source.files)
    timings["phase1_s"] = time.perf_counter() - t0
    result = _combine_scans(opts, source, cfg, scans)
    result.timings = timings
    result.cpu_s = sum(s["cpu_s"] for s in scans)
    _check_sets(source, result.totals["documents"][:, 0].tolist())
    if not result.totals["documents_with_text"][0, 0]:
        hint = result.config_problems[0] if result.config_problems else None
        raise InputError(
            f"{opts.path}: no document has text to count"
            + (f" ({hint.split(': ', 1)[1]})" if hint else "")
            + "; `curate stats` reads the `text` field of JSONL/Parquet (rename the field, or "
            "run a recipe with input.text_field and point curate stats at the run)"
        )
    if not opts.approx:
        _exact_phases(ctx, cfg, source, scans, result)
    fs, work = fsspec.core.url_to_fs(work_url)
    if fs.exists(work):
        fs.rm(work, recursive=True)
    result.bounds = _bounds(cfg, est_tokens, opts)
    return result


def default_output(source: StatsInput) -> str:
    """RUN/stats for a run directory, else ./curate-stats."""
    return f"{source.root}/stats" if source.kind == "run" else "curate-stats"


def _check_precision(p: int) -> None:
    if not hll.MIN_P <= p <= hll.MAX_P:
        raise InputError(f"--hll-precision must be in [{hll.MIN_P}, {hll.MAX_P}], got {p}")


def _context(opts: StatsOptions, work_url: str) -> Any:
    fs, work = fsspec.core.url_to_fs(work_url)
    if fs.exists(work):
        fs.rm(work, recursive=True)
    if opts.executor == "local":
        from pipeline.stages.global_base import LocalContext

        return LocalContext(work_url, opts.partitions or 4)
    import ray

    from pipeline.runner.executors import RayContext, ensure_ray

    ensure_ray(opts.ray_address)
    workers = int(ray.cluster_resources().get("CPU", 1))
    return RayContext(work_url, opts.partitions or max(4, 2 * workers))


def _inspect_files(source: StatsInput) -> tuple[int, list[int] | None]:
    """Estimated tokens (text bytes from Parquet metadata, else file size, / 3) and documents
    per set from Parquet metadata (None when some input is not Parquet)."""
    total = 0
    rows: list[int] | None = [0] * len(source.sets)
    for f in source.files:
        fs, path = fsspec.core.url_to_fs(f.path)
        if f.format == "parquet":
            md = parquet_metadata(fs, path, read_columns)
            if rows is not None:
                for k in range(f.reached + 1):
                    rows[k] += md.num_rows
            for g in range(md.num_row_groups):
                rg = md.row_group(g)
                for c in range(rg.num_columns):
                    if rg.column(c).path_in_schema == "text":
                        total += rg.column(c).total_uncompressed_size
        else:
            size = fs.size(path) if fs.isfile(path) else 0
            total += size * (4 if path.endswith((".gz", ".zst", ".bz2", ".xz")) else 1)
            rows = None
    return total // BYTES_PER_TOKEN_EST, rows


def _hash_bits(choice: str, est_tokens: int) -> int:
    if choice == "auto":
        return 128 if est_tokens > HASH128_ITEMS else 64
    if choice not in ("64", "128"):
        raise InputError(f"--hash-bits must be auto, 64 or 128, got {choice}")
    return int(choice)


def _suffix(a: np.ndarray, axis: int) -> np.ndarray:
    """Sums over index >= i along `axis` (sets and levels are nested from the top)."""
    return np.flip(np.cumsum(np.flip(a, axis), axis=axis), axis)


def _combine_scans(
    opts: StatsOptions, source: StatsInput, cfg: CountConfig, scans: list[dict[str, Any]]
) -> StatsResult:
    nsets, nlev, ntok = cfg.num_sets, cfg.levels, len(cfg.tokenizers)
    per_set = {k: np.zeros((nsets, nlev), np.int64) for k in ("documents", "documents_with_text")}
    per_set |= {k: np.zeros((nsets, nlev), np.int64) for k in ("characters", "bytes")}
    tokens = np.zeros((ntok, nsets, nlev), np.int64)
    nmetrics = 1 + len(cfg.sizes)
    regs = hll.empty(cfg.precision, nsets * nmetrics * nlev) if cfg.approx else None
    dedup: dict[str, list[dict[int, int]]] = {}
    errors: list[str] = []
    for s in scans:
        r = s["reached"]
        for key in per_set:
            per_set[key][r] += np.asarray(s["totals"][key], np.int64)
        tokens[:, r] += np.asarray(s["totals"]["tokens"], np.int64)
        for col, counts in s["clusters"].items():
            dedup.setdefault(col, [{} for _ in range(nsets)])
            for size, n in counts.items():
                dedup[col][r][int(size)] = dedup[col][r].get(int(size), 0) + n
        if regs is not None:
            view = regs.reshape(nsets, -1, regs.shape[1])
            np.maximum(view[r], load_registers(cfg, s["regs"]), out=view[r])
        errors.extend(s["errors"])
    totals = {k: _suffix(_suffix(v, 0), 1) for k, v in per_set.items()}
    totals["tokens"] = _suffix(_suffix(tokens, 1), 2)
    distinct: dict[str, np.ndarray] = {}
    rse = 0.0
    if regs is not None:
        rse = hll.relative_error(cfg.precision)
        view = regs.reshape(nsets, nmetrics, nlev, -1)
        view = np.flip(np.maximum.accumulate(np.flip(view, 0), axis=0), 0)
        view = np.flip(np.maximum.accumulate(np.flip(view, 2), axis=2), 2)
        names = ["docs", *[str(n) for n in cfg.sizes]]
        for mi, name in enumerate(names):
            distinct[name] = np.array(
                [[hll.estimate(view[k, mi, j]) for j in range(nlev)] for k in range(nsets)]
            )
    infos = [load_tokenizer(t).info for t in cfg.tokenizers]
    return StatsResult(
        opts,
        source,
        cfg,
        infos,
        totals,
        distinct,
        rse,
        dedup_clusters=dedup,
        errors=errors,
        config_problems=[p for s in scans for p in s["config_problems"]],
    )


def _check_sets(source: StatsInput, got: list[int] | None) -> None:
    """The reconstructed sets must hold as many documents as the run says each stage saw."""
    if source.expected_docs is None or got is None:
        return
    if got != list(source.expected_docs):
        pairs = ", ".join(
            f"{n}: {g} vs {e}"
            for n, g, e in zip(source.sets, got, source.expected_docs, strict=True)
            if g != e
        )
        raise InputError(
            f"the documents found in {source.root} do not match its stats.json ({pairs}); "
            "the run's data/ or rejected/ files are incomplete or were changed"
        )


def _exact_phases(
    ctx: Any, cfg: CountConfig, source: StatsInput, scans: list[dict[str, Any]], res: StatsResult
) -> None:
    file_sets = np.zeros(cfg.num_files, np.int64)
    for f in source.files:
        file_sets[f.index] = f.reached
    chunks = sorted(c for s in scans for c in s["chunks"])
    t0 = time.perf_counter()
    parts = ctx.map(partial(count_partition, cfg, file_sets, chunks), list(range(cfg.partitions)))
    res.timings["phase2_s"] = time.perf_counter() - t0
    names = ["docs", *[str(n) for n in cfg.sizes]]
    for name in names:
        got = [p["docs"] if name == "docs" else p["metrics"][name] for p in parts]
        res.distinct[name] = sum((g["distinct"] for g in got), np.zeros(1, np.int64))
        if name != "docs":
            res.occurrences[name] = sum(g["occurrences"] for g in got)
            res.repeated_occurrences[name] = sum(g["repeated_occurrences"] for g in got)
    res.distinct_doc_tokens = sum(p["docs"]["distinct_tokens"] for p in parts)
    res.exact_clusters = sum(p["docs"]["cluster_hist"] for p in parts)
    t0 = time.perf_counter()
    with_tokens = [(s["index"], s["tokens_in_file"]) for s in scans if s["tokens_in_file"]]
    covers = ctx.map(partial(_cover, cfg), with_tokens)
    res.timings["phase3_s"] = time.perf_counter() - t0
    for size in cfg.sizes:
        total = np.zeros(cfg.num_sets, np.int64)
        for c in covers:
            total += np.asarray(c[str(size)], np.int64)
        res.covered_tokens[str(size)] = total


def _cover(cfg: CountConfig, item: tuple[int, int]) -> dict[str, list[int]]:
    return cover_file(cfg, item[0], item[1])


def _bounds(cfg: CountConfig, est_tokens: int, opts: StatsOptions) -> dict[str, str]:
    """Human statements of the memory each phase may use."""
    hashing = 40 * len(cfg.sizes) * cfg.group_tokens >> 20
    out = {
        "phase1": f"per file task: spill buffer {cfg.buffer_bytes >> 20} MiB (~3x while "
        f"flushing) + ~{hashing} MiB hashing one group of {cfg.group_tokens:,} tokens + one "
        f"Arrow batch of {cfg.batch_docs} documents",
    }
    if cfg.approx:
        m = 1 << cfg.precision
        cells = cfg.num_sets * (1 + len(cfg.sizes)) * cfg.levels
        out["phase1"] += f"; HLL registers {cells * m / 2**20:.1f} MiB"
        out["driver"] = f"{cells} register arrays of {m} bytes ({cells * m / 2**20:.1f} MiB)"
    else:
        out["phase2"] = (
            f"per partition task: ~{PHASE2_BYTES_PER_ITEM} B x records of its largest metric "
            f"~= {PHASE2_BYTES_PER_ITEM} x tokens / W; estimated tokens {est_tokens:,}, "
            f"W = {cfg.partitions} -> ~{PHASE2_BYTES_PER_ITEM * est_tokens / cfg.partitions / 2**20:.0f}"
            f" MiB (budget --memory-mb {opts.memory_mb})"
        )
        out["phase3"] = "per file task: ~3 B per token of the file plus its repeated positions"
    return out
