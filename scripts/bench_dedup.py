"""Benchmark of `minhash_dedup`: signature throughput, end-to-end time and peak RSS, and the same
workload through datatrove's four MinHash stages, side by side.

The corpus is synthesised at run time from the extraction gold texts (never committed): texts are
cut into sentences, documents are random runs of 8-32 sentences (~450 words), and a fraction
`--dup-rate` of documents are planted near-duplicates of an earlier document with 0 / 1 / 3 / 6%
of their words substituted (5-gram Jaccard ~1.0 / 0.9 / 0.75 / 0.57). The same documents are
written as Parquet shards (ours) and JSONL files (datatrove).

datatrove needs xxhash<4, so it runs in its own venv (`.bench-venv-datatrove`, created on first
use with `pip install "datatrove[processing]"`) through a driver written to a temp file; both
sides use one worker, 5-grams, 14 buckets x 8 hashes, seed 1, 64-bit hashes. datatrove's default
English word tokenizer (NLTK punkt) needs data that cannot be downloaded offline, so the driver
passes a whitespace tokenizer (applied after its own normalisation; also faster than NLTK).

    .venv/bin/python scripts/bench_dedup.py --docs 100000 --repeat 3
    .venv/bin/python scripts/bench_dedup.py --docs 1000000 --repeat 1 --skip-datatrove
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
GOLD = REPO.parent / "shared" / "data" / "extraction"
DT_VENV = REPO / ".bench-venv-datatrove"
EDIT_RATES = (0.0, 0.01, 0.03, 0.06)
SHARD_DOCS = 25_000


# --- corpus --------------------------------------------------------------------------------------


def sentences(gold: Path = GOLD) -> list[str]:
    """Sentences (5-60 words) of the gold texts in `gold`, whitespace collapsed."""
    out: list[str] = []
    for path in sorted(gold.glob("*.gold.jsonl")):
        with open(path) as f:
            for line in f:
                text = re.sub(r"<[a-z]+>", " ", json.loads(line)["gold"])
                for s in re.split(r"(?<=[.!?])\s+", text):
                    words = s.split()
                    if 5 <= len(words) <= 60:
                        out.append(" ".join(words))
    return out


def make_corpus(n_docs: int, dup_rate: float, folder: Path, seed: int = 0) -> dict:
    """Write Parquet shards and JSONL files of the same documents; return the planted labels."""
    folder.mkdir(parents=True, exist_ok=True)
    pool = sentences()
    vocab = sorted({w for s in pool[:20000] for w in s.split()})
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    planted: dict[str, list[list[int]]] = {str(r): [] for r in EDIT_RATES}  # [copy, source]
    for i in range(n_docs):
        if i > 100 and rng.random() < dup_rate:
            src = int(rng.integers(0, i))
            rate = EDIT_RATES[int(rng.integers(0, len(EDIT_RATES)))]
            words = texts[src].split(" ")
            for p in rng.choice(len(words), size=int(rate * len(words)), replace=False):
                words[p] = vocab[int(rng.integers(0, len(vocab)))]
            texts.append(" ".join(words))
            planted[str(rate)].append([i, src])
        else:
            picks = rng.integers(0, len(pool), int(rng.integers(8, 33)))
            texts.append(" ".join(pool[j] for j in picks))
    ids = [f"d{i:08d}" for i in range(n_docs)]
    (folder / "parquet").mkdir(exist_ok=True)
    (folder / "jsonl").mkdir(exist_ok=True)
    for s, lo in enumerate(range(0, n_docs, SHARD_DOCS)):
        hi = min(lo + SHARD_DOCS, n_docs)
        pq.write_table(
            pa.table({"id": ids[lo:hi], "text": texts[lo:hi]}),
            folder / "parquet" / f"{s:05d}.parquet",
        )
        with open(folder / "jsonl" / f"{s:05d}.jsonl", "w") as f:
            for j in range(lo, hi):
                f.write(json.dumps({"id": ids[j], "text": texts[j]}) + "\n")
    labels = {"planted": planted, "docs": n_docs, "words": sum(len(t.split(" ")) for t in texts)}
    (folder / "labels.json").write_text(json.dumps(labels))
    return labels


# --- our side --------------------------------------------------------------------------------


def signature_throughput(texts: list[str], repeat: int) -> dict:
    """CPU-time docs/s of MinHasher.signatures (14x8, 5-grams) over an Arrow column."""
    from pipeline.dedup.signatures import MinHasher

    hasher = MinHasher(num_perm=112)
    column = pa.array(texts)
    hasher.signatures(column[:200])  # numba load, tables
    runs = []
    shingles = 0
    for _ in range(repeat):
        t0 = time.process_time()
        _, counts = hasher.signatures(column)
        runs.append(time.process_time() - t0)
        shingles = int(counts.sum())
    sec = statistics.median(runs)
    return {
        "docs": len(texts),
        "docs_per_s": len(texts) / sec,
        "mshingles_per_s": shingles / sec / 1e6,
    }


def profile_breakdown(texts: list[str]) -> dict:
    """Where signature time goes: CPU seconds per phase on the same texts."""
    from pipeline.dedup import kernels
    from pipeline.dedup.signatures import MinHasher
    from pipeline.text.normalize import Utf8Batch, segment_unspaced, tables

    hasher = MinHasher(num_perm=112)
    column = pa.array(texts)
    tab = tables()
    t = {}
    t0 = time.process_time()
    batch = Utf8Batch.from_arrow(column)
    t["arrow_view"] = time.process_time() - t0
    t0 = time.process_time()
    batch = segment_unspaced(batch, kernels.unspaced_docs(batch, tab), None)
    t["script_check"] = time.process_time() - t0
    t0 = time.process_time()
    hashes, offsets = kernels.words64_shingles(batch, tab, 5)
    t["normalise_tokenise_shingle"] = time.process_time() - t0
    a, b = hasher.params
    t0 = time.process_time()
    kernels.minhash(hashes, offsets, a, b, "mersenne")
    t["permutations_112"] = time.process_time() - t0
    total = sum(t.values())
    return {k: {"s": round(v, 3), "share": round(v / total, 3)} for k, v in t.items()}


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss would carry the parent's over execve)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(corpus: Path, work: Path) -> dict:
    """The whole stage over the Parquet shards in this process (one worker), kept docs written."""
    from pipeline.dedup.minhash import MinHashDedupConfig, MinHashDedupStage
    from pipeline.stages.global_base import LocalContext, ShardRef

    shutil.rmtree(work, ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    files = sorted((corpus / "parquet").glob("*.parquet"))
    refs = [ShardRef(i, str(p), pq.ParquetFile(p).metadata.num_rows) for i, p in enumerate(files)]
    stage = MinHashDedupStage(MinHashDedupConfig(preset="fineweb", seed=1))
    ctx = LocalContext(str(work / "stage"), num_partitions=4)
    summary = stage.prepare(ctx, refs)
    t_prepare = time.perf_counter() - t0
    removed: list[str] = []
    (work / "out").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        kept, rejected = stage.apply_shard(ctx, ref, ref.read(ctx.fs))
        pq.write_table(kept, work / "out" / f"{ref.index:05d}.parquet", compression="zstd")
        removed.extend(rejected.column("id").to_pylist())
    return {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "prepare_s": t_prepare,
        "phases": summary["timings"],
        "peak_rss_mb": peak_rss_mb(),
        "removed": removed,
        "clusters": summary["clusters"],
    }


# --- datatrove side ------------------------------------------------------------------------------

DT_DRIVER = textwrap.dedent(
    """
    import json, resource, sys, time
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
        MinhashDedupSignature)
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Whitespace(WordTokenizer):
        def word_tokenize(self, text): return text.split()
        def sent_tokenize(self, text): return [text]
        def span_tokenize(self, text): return [(0, len(text))]

    corpus, work = sys.argv[1], sys.argv[2]
    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8, seed=1,
                        hash_config=HashConfig(precision=64, hash_fc="xxhash"))
    def reader(): return JsonlReader(f"{corpus}/jsonl", glob_pattern="*.jsonl")
    stages = [
        ("signatures", [reader(), MinhashDedupSignature(f"{work}/sigs", config=cfg,
                                                        language=Whitespace("en"))], 1),
        ("buckets", [MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=cfg)],
         cfg.num_buckets),
        ("cluster", [MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=cfg)], 1),
        ("filter", [reader(), MinhashDedupFilter(f"{work}/remove",
                    exclusion_writer=JsonlWriter(f"{work}/removed")),
                    JsonlWriter(f"{work}/out")], 1),
    ]
    times = {}
    c0, t0 = time.process_time(), time.perf_counter()
    for name, pipeline, tasks in stages:
        t = time.perf_counter()
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=1,
                              logging_dir=f"{work}/logs/{name}").run()
        times[name + "_s"] = round(time.perf_counter() - t, 3)
    wall = time.perf_counter() - t0
    import glob, gzip
    removed = []
    for path in glob.glob(f"{work}/removed/*"):
        with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
            removed.extend(json.loads(line)["id"] for line in f)
    hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    ru = max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"wall_s": wall, "cpu_s": time.process_time() - c0, "phases": times,
                      "peak_rss_mb": ru / 1024, "removed": removed}))
    """
)


def ensure_datatrove() -> Path:
    """The datatrove venv's python (created on first use; needs PyPI)."""
    python = DT_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(DT_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "datatrove[processing]", "orjson"],
            check=True,
        )
    return python


def run_datatrove(corpus: Path, work: Path) -> dict:
    python = ensure_datatrove()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    driver = work / "driver.py"
    driver.write_text(DT_DRIVER)
    env = {**os.environ, "DATATROVE_COLORIZE_LOGS": "0", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [str(python), str(driver), str(corpus), str(work / "dt")],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode:
        raise RuntimeError(f"datatrove driver failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def datatrove_version() -> str:
    python = ensure_datatrove()
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('datatrove'))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


# --- driver --------------------------------------------------------------------------------------


def child(mode: str, corpus: Path, work: Path) -> dict:
    """Run one side in a fresh process (its own peak RSS)."""
    if mode == "ours":
        cmd = [sys.executable, __file__, "--child-ours", str(corpus), str(work)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(proc.stderr[-4000:])
        return json.loads(proc.stdout.strip().splitlines()[-1])
    return run_datatrove(corpus, work)


def agreement(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def planted_found(labels: dict, removed: set[str]) -> dict[str, float]:
    """Share of planted (copy, source) pairs with the copy or the source removed, per edit rate
    (either may be the one its cluster drops)."""
    out = {}
    for rate, pairs in labels["planted"].items():
        hits = sum(f"d{c:08d}" in removed or f"d{s:08d}" in removed for c, s in pairs)
        out[rate] = round(hits / max(len(pairs), 1), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--dup-rate", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-datatrove", action="store_true")
    parser.add_argument(
        "--dir", type=Path, default=None, help="work folder (default: a private temp dir)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument("--child-ours", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_ours:
        result = run_ours(*args.child_ours)
        print(json.dumps(result))
        return

    root = args.dir or Path(tempfile.mkdtemp(prefix="minhash-bench-"))
    corpus = root / f"corpus-{args.docs}"
    t0 = time.perf_counter()
    labels = make_corpus(args.docs, args.dup_rate, corpus)
    print(
        f"corpus: {args.docs} docs, {labels['words'] / args.docs:.0f} words/doc, "
        f"built in {time.perf_counter() - t0:.0f}s at {corpus}"
    )

    table = pq.read_table(corpus / "parquet" / "00000.parquet", columns=["text"])
    sample = table.column("text").to_pylist()[:20_000]
    gold = []
    for path in sorted(GOLD.glob("*.gold.jsonl")):
        with open(path) as f:
            gold.extend(json.loads(line)["gold"] for line in f)
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "docs": args.docs,
        "signatures_synthetic": signature_throughput(sample, args.repeat),
        "signatures_gold": signature_throughput(gold, args.repeat),
        "profile_synthetic": profile_breakdown(sample),
    }
    print(
        json.dumps({k: results[k] for k in ("signatures_synthetic", "signatures_gold")}, indent=1)
    )
    print(json.dumps(results["profile_synthetic"], indent=1))

    sides = ["ours"] + ([] if args.skip_datatrove else ["datatrove"])
    runs: dict[str, list[dict]] = {s: [] for s in sides}
    for r in range(args.repeat):
        for side in sides:
            res = child(side, corpus, root / f"work-{side}")
            runs[side].append(res)
            print(
                f"run {r} {side}: wall {res['wall_s']:.1f}s cpu {res['cpu_s']:.1f}s "
                f"rss {res['peak_rss_mb']:.0f} MB removed {len(res['removed'])} {res['phases']}"
            )
    summary = {}
    for side, rs in runs.items():
        removed = set(rs[-1]["removed"])
        summary[side] = {
            "wall_s": statistics.median(x["wall_s"] for x in rs),
            "cpu_s": statistics.median(x["cpu_s"] for x in rs),
            "peak_rss_mb": statistics.median(x["peak_rss_mb"] for x in rs),
            "phases": rs[-1]["phases"],
            "removed": len(removed),
            "planted_removed": planted_found(labels, removed),
        }
    if "datatrove" in runs:
        ours, theirs = set(runs["ours"][-1]["removed"]), set(runs["datatrove"][-1]["removed"])
        summary["agreement_removed_jaccard"] = round(agreement(ours, theirs), 4)
        summary["removed_by_both"] = len(ours & theirs)
        summary["ratio_wall_datatrove_over_ours"] = round(
            summary["datatrove"]["wall_s"] / summary["ours"]["wall_s"], 2
        )
    results["end_to_end"] = summary
    results["datatrove_version"] = None if args.skip_datatrove else datatrove_version()
    print(json.dumps(summary, indent=1))
    print(f"\n| side | wall s (median of {args.repeat}) | CPU s | peak RSS MB | removed |")
    print("|---|---|---|---|---|")
    for side in sides:
        s = summary[side]
        print(
            f"| {side} | {s['wall_s']:.1f} | {s['cpu_s']:.1f} | {s['peak_rss_mb']:.0f} | {s['removed']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
