"""`minhash_dedup` end to end at millions of documents: wall and per-task peak RSS per phase
(signatures, buckets, components, apply), components single vs distributed, identical kept ids.

Corpus (written at run time, never committed): the extraction gold texts' sentences
(scripts/bench_dedup.py `sentences`); an original document is a run of `--sentences` of them
drawn by hashing its number (so any document can be rebuilt alone, and shards are built in
parallel); a fraction `--dup-rate` of documents are near-duplicates of a uniformly drawn earlier
document (itself possibly a copy: cluster sizes grow heavy-tailed) with 0 / 1 / 3 / 6% of their
words substituted (bench_dedup's EDIT_RATES). Parquet shards of `--shard-docs` documents, zstd.

Run: phases 1-3 of the stage's own `prepare` with `components: single`, then phase 3 again with
`components: distributed` (`components_memory` = `--memory`) over the same edge files (phases 1-2
do not depend on the mode), then the apply step (score_shard + keep, kept rows written as Parquet)
per shard for each mode. Every task runs in a fresh process, 2 at a time (bench_components'
MeasuredContext): a phase's *peak* is its largest task's ru_maxrss. The script asserts that both
modes keep the same rows of every shard.

    .venv/bin/python scripts/bench_minhash_scale.py --docs 1000000 --work /tmp/scale-e2e
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.dedup.kernels import fmix64  # noqa: E402
from pipeline.dedup.minhash import MinHashDedupConfig, MinHashDedupStage, _components  # noqa: E402
from pipeline.stages.global_base import LocalContext, ShardRef  # noqa: E402
from scripts.bench_components import MeasuredContext, parse_bytes  # noqa: E402
from scripts.bench_dedup import EDIT_RATES, sentences  # noqa: E402

PICK, LENGTH = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)


# --- corpus --------------------------------------------------------------------------------------


def plant(docs: int, dup_rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(source, edit rate index) per document: source -1 for an original, else an earlier one."""
    rng = np.random.default_rng(seed)
    source = np.full(docs, -1, dtype=np.int64)
    dup = rng.random(docs) < dup_rate
    dup[:100] = False
    idx = np.flatnonzero(dup)
    source[idx] = (rng.random(len(idx)) * idx).astype(np.int64)
    return source, rng.integers(0, len(EDIT_RATES), docs).astype(np.int8)


def originals(numbers: np.ndarray, pool: pa.Array, span: tuple[int, int]) -> list[str]:
    """Texts of original documents: `span` sentences of `pool` drawn by hashing the number."""
    n = numbers.astype(np.uint64)
    with np.errstate(over="ignore"):
        count = span[0] + (fmix64(n ^ LENGTH) % np.uint64(span[1] - span[0] + 1)).astype(np.int64)
        offsets = np.concatenate(([0], np.cumsum(count)))
        k = np.arange(offsets[-1]) - np.repeat(offsets[:-1], count)
        owner = np.repeat(n, count)
        picks = fmix64((owner << np.uint64(6)) + k.astype(np.uint64) ^ PICK) % np.uint64(len(pool))
    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pool.take(picks))
    return pc.binary_join(lists, " ").to_pylist()


def mutate(text: str, rate: float, number: int, vocab: list[str]) -> str:
    """`text` with `rate` of its words replaced by vocabulary words (seeded by the document)."""
    words = text.split(" ")
    rng = random.Random(number)
    for p in rng.sample(range(len(words)), int(rate * len(words))):
        words[p] = vocab[rng.randrange(len(vocab))]
    return " ".join(words)


def shard_texts(
    lo: int, hi: int, source: np.ndarray, rate: np.ndarray, pool: pa.Array, vocab: list[str], span
) -> list[str]:
    """Documents lo..hi-1: originals in one vectorised pass, copies by replaying their chain of
    edits from its original."""
    numbers = np.arange(lo, hi)
    chains: dict[int, list[int]] = {}
    for i in numbers[source[lo:hi] >= 0]:
        chain = [int(i)]
        while source[chain[-1]] >= 0:
            chain.append(int(source[chain[-1]]))
        chains[int(i)] = chain
    roots = sorted({c[-1] for c in chains.values()} | set(numbers[source[lo:hi] < 0].tolist()))
    base = dict(zip(roots, originals(np.array(roots, dtype=np.int64), pool, span), strict=True))
    texts = []
    for i in numbers.tolist():
        if i not in chains:
            texts.append(base[i])
            continue
        chain = chains[i]
        text = base[chain[-1]]
        for d in reversed(chain[:-1]):
            text = mutate(text, EDIT_RATES[rate[d]], d, vocab)
        texts.append(text)
    return texts


@functools.cache
def _inputs(plan: Path) -> tuple[np.ndarray, np.ndarray, pa.Array, list[str]]:
    """(sources, edit rates, sentence pool, vocabulary), loaded once per worker process."""
    data = np.load(plan)
    pool = sentences()
    vocab = sorted({w for t in pool[:20000] for w in t.split()})  # as bench_dedup's copies
    return data["source"], data["rate"], pa.array(pool), vocab


def _write_shard(s: int, *, folder: Path, shard_docs: int, docs: int, plan: Path, span) -> int:
    """Write shard `s` (`{s:05d}.parquet`); returns its UTF-8 bytes."""
    source, rate, pool, vocab = _inputs(plan)
    lo, hi = s * shard_docs, min((s + 1) * shard_docs, docs)
    texts = shard_texts(lo, hi, source, rate, pool, vocab, span)
    ids = [f"d{i:09d}" for i in range(lo, hi)]
    table = pa.table({"id": ids, "text": texts})
    pq.write_table(table, folder / f"{s:05d}.parquet", compression="zstd")
    return int(pc.sum(pc.binary_length(table.column("text"))).as_py())


def make_corpus(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """The Parquet shards (skipped when `corpus.json` says they are there) and the plan."""
    meta = folder / "corpus.json"
    want = {"docs": args.docs, "dup_rate": args.dup_rate, "sentences": args.sentences}
    if meta.exists() and json.loads(meta.read_text())["params"] == want:
        return json.loads(meta.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source, rate = plant(args.docs, args.dup_rate, seed=0)
    np.savez(folder / "plan.npz", source=source, rate=rate)
    shards = -(-args.docs // args.shard_docs)
    write = functools.partial(
        _write_shard,
        folder=folder,
        shard_docs=args.shard_docs,
        docs=args.docs,
        plan=folder / "plan.npz",
        span=tuple(args.sentences),
    )
    t0, c0 = time.perf_counter(), time.process_time()
    with ProcessPoolExecutor(args.workers) as pool:
        text_bytes = sum(pool.map(write, range(shards)))
    out = {
        "params": want,
        "shards": shards,
        "text_bytes": text_bytes,
        "parquet_bytes": sum(p.stat().st_size for p in folder.glob("*.parquet")),
        "copies": int((source >= 0).sum()),
        "build_wall_s": round(time.perf_counter() - t0, 1),
        "build_parent_cpu_s": round(time.process_time() - c0, 1),
    }
    meta.write_text(json.dumps(out))
    return out


# --- the stage -----------------------------------------------------------------------------------


def _apply_task(
    ref: ShardRef, *, stage: MinHashDedupStage, work: str, partitions: int, out: Path
) -> tuple[int, int, str]:
    """score_shard + keep on one shard, kept rows written: (rows, kept, sha1 of kept ids)."""
    ctx = LocalContext(work, partitions)
    table = pq.read_table(ref.path)
    kept, _ = stage.apply_shard(ctx, ref, table)
    pq.write_table(kept, out / f"{ref.index:05d}.parquet", compression="zstd")
    digest = hashlib.sha1("\n".join(kept.column("id").to_pylist()).encode()).hexdigest()
    return table.num_rows, kept.num_rows, digest


def phases(ctx: MeasuredContext) -> dict[str, dict[str, Any]]:
    """The context's per-phase figures, MB and seconds rounded."""
    out = {}
    for name, v in sorted(ctx.phases.items()):
        out[name] = {
            "tasks": int(v["tasks"]),
            "wall_s": round(v["wall_s"], 1),
            "task_s_sum": round(v["task_s_sum"], 1),
            "task_s_max": round(v["task_s_max"], 2),
            "task_cpu_s": round(v["task_cpu_s"], 1),
            "peak_mb": round(v["peak_rss"] / 1e6, 1),
            "task_mb": round((v["peak_rss"] - v["worker_rss"]) / 1e6, 1),
        }
    return out


def apply(stage, ctx_dir: str, refs: list[ShardRef], args, out: Path) -> tuple[dict, list]:
    """The apply step over every shard, measured; its per-shard results."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    ctx = MeasuredContext(ctx_dir, args.partitions, args.workers)
    task = functools.partial(
        _apply_task, stage=stage, work=ctx_dir, partitions=args.partitions, out=out
    )
    t0 = time.perf_counter()
    got = ctx.map(task, refs)
    figures = phases(ctx)["apply"] | {"wall_s": round(time.perf_counter() - t0, 1)}
    figures["kept"] = int(sum(g[1] for g in got))
    figures["output_bytes"] = sum(p.stat().st_size for p in out.glob("*.parquet"))
    return figures, got


def load() -> str:
    return Path("/proc/loadavg").read_text().strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--dup-rate", type=float, default=0.2, help="share of near-duplicate copies")
    ap.add_argument("--sentences", type=int, nargs=2, default=[4, 16], help="per original")
    ap.add_argument("--shard-docs", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=16, help="runtime.num_partitions (P)")
    ap.add_argument("--memory", default="64MiB", help="components_memory (distributed budget)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, required=True, help="scratch directory")
    ap.add_argument("--keep-files", action="store_true", help="leave the corpus and work files")
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = ap.parse_args()
    root = args.work / str(args.docs)
    result: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    result["load_start"] = load()
    corpus = make_corpus(args, root / "corpus")
    result["corpus"] = corpus
    print(json.dumps({"corpus": corpus, "load": load()}), flush=True)
    files = sorted((root / "corpus").glob("*.parquet"))
    refs = [ShardRef(i, str(p), pq.ParquetFile(p).metadata.num_rows) for i, p in enumerate(files)]
    memory = parse_bytes(args.memory)

    single_dir = root / "work-single"
    shutil.rmtree(single_dir, ignore_errors=True)
    ctx = MeasuredContext(str(single_dir), args.partitions, args.workers)
    cfg = MinHashDedupConfig(preset="fineweb", seed=1, components="single")
    stage = MinHashDedupStage(cfg)
    t0 = time.perf_counter()
    summary = stage.prepare(ctx, refs)
    result["prepare_wall_s"] = round(time.perf_counter() - t0, 1)
    result["summary"] = {
        k: summary[k]
        for k in ("documents", "shingles", "candidate_edges", "edges", "clusters")
        + ("documents_in_clusters", "duplicates", "largest_cluster", "timings")
    }
    result["single"] = {"phases": phases(ctx)}
    result["load_after_prepare"] = load()
    print(
        json.dumps({"prepare": result["summary"], **result["single"], "load": load()}), flush=True
    )

    dist_dir = root / "work-distributed"
    shutil.rmtree(dist_dir, ignore_errors=True)
    dist_dir.mkdir(parents=True)
    for kind in ("bands", "docs", "edges"):  # phases 1-2's files, shared (hard links)
        subprocess.run(["cp", "-al", str(single_dir / kind), str(dist_dir / kind)], check=True)
    dcfg = MinHashDedupConfig(
        preset="fineweb", seed=1, components="distributed", components_memory=memory
    )
    dctx = MeasuredContext(str(dist_dir), args.partitions, args.workers)
    t0 = time.perf_counter()
    shard_ids = [r.index for r in refs]
    dsum = _components(dctx, dcfg, shard_ids, summary["edges"], args.partitions)
    result["distributed"] = {
        "components_wall_s": round(time.perf_counter() - t0, 1),
        "budget_mb": round(memory / 1e6, 1),
        "partitions": dsum["components_partitions"],
        "rounds": dsum["components_rounds"],
        "phases": phases(dctx),
    }
    assert dsum["clusters"] == summary["clusters"], (dsum["clusters"], summary["clusters"])
    print(json.dumps({"distributed": result["distributed"], "load": load()}), flush=True)

    kept = {}
    for mode, directory, conf in (("single", single_dir, cfg), ("distributed", dist_dir, dcfg)):
        figures, kept[mode] = apply(
            MinHashDedupStage(conf), str(directory), refs, args, root / f"out-{mode}"
        )
        result[mode]["apply"] = figures
        print(json.dumps({mode: {"apply": figures}, "load": load()}), flush=True)
    assert kept["single"] == kept["distributed"], "the two modes kept different documents"
    result["identical_kept_ids"] = True
    source = np.load(root / "corpus" / "plan.npz")["source"]
    result["planted_copies"] = int((source >= 0).sum())
    result["load_end"] = load()
    result["disk_bytes"] = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    print(json.dumps({k: result[k] for k in ("identical_kept_ids", "load_end", "disk_bytes")}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if not args.keep_files:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
