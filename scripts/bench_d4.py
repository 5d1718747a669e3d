"""Benchmark D4: embeddings/s per core for both embedders, and whole-stage time and peak RSS.

    python scripts/bench_d4.py all --docs 10000 100000 --embedders light minilm
    python scripts/bench_d4.py embed --embedder minilm --sample 256 --threads 1
    python scripts/bench_d4.py run --embedder light --docs 10000

The corpus is built from the real texts in ../shared/data (extraction gold sets, DCLM sample):
each document is 2-14 random paragraphs of the pool (mean ~2 KB), and 10% are near copies of an
earlier document (a random 10% of its words dropped). Shards of 5,000 documents are written once
per size under --work. `run` times prepare() + score_shard() + keep() of the `d4` stage over all
shards in one process (LocalContext: what one Ray worker does, on one core), and reports the
process's peak RSS. Each measurement runs in a fresh subprocess so RSS figures do not mix.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SHARD_DOCS = 5000
# `all` runs every measurement with one BLAS / OpenMP / torch thread ("per core"), except the
# two-thread embedding rates.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def paragraphs() -> list[str]:
    pool = []
    for name, key in (
        ("extraction/scrapinghub.gold.jsonl", "gold"),
        ("extraction/cleaneval.gold.jsonl", "gold"),
        ("quality/dclm-agreement.jsonl", "text"),
    ):
        with open(DATA / name, encoding="utf-8") as f:
            for line in f:
                text = json.loads(line)[key]
                pool += [p.strip() for p in text.split("\n") if len(p.strip()) > 80]
    return pool


def make_corpus(n: int, out: Path, seed: int = 0) -> list[Path]:
    """n synthetic documents in Parquet shards (cached: rebuilt only when absent)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [out / f"part-{i:05d}.parquet" for i in range((n + SHARD_DOCS - 1) // SHARD_DOCS)]
    if all(p.exists() for p in paths):
        return paths
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pool = paragraphs()
    texts: list[str] = []
    for i in range(n):
        if i > 10 and rng.random() < 0.1:
            words = texts[int(rng.integers(0, i))].split(" ")
            keep = rng.random(len(words)) > 0.1
            texts.append(" ".join(w for w, k in zip(words, keep, strict=True) if k))
        else:
            picks = rng.integers(0, len(pool), size=int(rng.integers(2, 15)))
            texts.append("\n".join(pool[j] for j in picks))
    for s, path in enumerate(paths):
        chunk = texts[s * SHARD_DOCS : (s + 1) * SHARD_DOCS]
        ids = [f"bench-{s * SHARD_DOCS + j}" for j in range(len(chunk))]
        pq.write_table(pa.table({"id": ids, "text": chunk}), path)
    return paths


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cmd_embed(args: argparse.Namespace) -> dict:
    """Embeddings/s of one embedder on `sample` corpus documents with `threads` threads."""
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import pyarrow.parquet as pq

    from pipeline.prune.config import PruneConfig
    from pipeline.prune.embed import get_embedder
    from pipeline.prune.light import LightEmbedder

    table = pq.read_table(make_corpus(10_000, args.work / "corpus-10000")[0])
    texts = table.column("text").to_pylist()[: args.sample]
    fit_texts = table.column("text").to_pylist()[-args.sample :]  # fitted on other documents
    cfg = PruneConfig(embedder=args.embedder, device=args.device)
    spec = cfg.embed_spec()
    if args.embedder == "light":
        fit = time.perf_counter()
        model = LightEmbedder.fit(fit_texts, dim=cfg.light_dim)
        fit = time.perf_counter() - fit
        embedder = model
    else:
        import torch

        torch.set_num_threads(args.threads)
        embedder = get_embedder(spec)
        embedder.embed(texts[:8])  # warm-up
        fit = 0.0
    start = time.perf_counter()
    embedder.embed(texts)
    wall = time.perf_counter() - start
    device = getattr(embedder, "device", "cpu")
    return {
        "embedder": args.embedder,
        "device": str(device),
        "threads": args.threads,
        "docs": len(texts),
        "mean_chars": round(sum(len(t) for t in texts) / len(texts)),
        "embed_s": round(wall, 2),
        "docs_per_s": round(len(texts) / wall, 1),
        "docs_per_s_per_thread": round(len(texts) / wall / args.threads, 1),
        "fit_s": round(fit, 2),
    }


def cmd_run(args: argparse.Namespace) -> dict:
    """The d4 stage over an n-document corpus, in this process."""
    import pyarrow.parquet as pq

    from pipeline.prune.d4 import D4Config, D4Stage
    from pipeline.stages.global_base import LocalContext, ShardRef

    paths = make_corpus(args.docs, args.work / f"corpus-{args.docs}")
    shards = [ShardRef(i, str(p), pq.ParquetFile(p).metadata.num_rows) for i, p in enumerate(paths)]
    rss_before = peak_rss_mib()
    work = args.work / f"run-{args.embedder}-{args.docs}-{os.getpid()}"
    ctx = LocalContext(str(work), num_partitions=4)
    stage = D4Stage(D4Config(embedder=args.embedder, device=args.device, embeddings="none"))
    start = time.perf_counter()
    summary = stage.prepare(ctx, shards)
    prepared = time.perf_counter() - start
    kept = 0
    for shard in shards:
        table = stage.score_shard(ctx, shard, shard.read(ctx.fs))
        kept += stage.keep(table).null_count
    total = time.perf_counter() - start
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return {
        "embedder": args.embedder,
        "docs": args.docs,
        "total_s": round(total, 1),
        "prepare_s": round(prepared, 1),
        "kept_fraction": round(kept / args.docs, 4),
        "peak_rss_mib": round(peak_rss_mib()),
        "rss_before_mib": round(rss_before),
        "summary": summary,
    }


def cmd_all(args: argparse.Namespace) -> dict:
    """Every measurement, each in a subprocess; prints one JSON line per result."""
    results = []

    def sub(*extra: str, threads: str = "1") -> None:
        cmd = [sys.executable, __file__, *extra, "--work", str(args.work), "--device", args.device]
        env = {**os.environ, **{v: threads for v in THREAD_VARS}}
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)

    for embedder in args.embedders:
        sample = "2000" if embedder == "light" else str(args.neural_sample)
        for threads in ("1", "2"):
            sub(
                "embed",
                "--embedder",
                embedder,
                "--sample",
                sample,
                "--threads",
                threads,
                threads=threads,
            )
    for n in args.docs:
        sub("run", "--embedder", "light", "--docs", str(n))
    for n in args.neural_docs if "minilm" in args.embedders else []:
        sub("run", "--embedder", "minilm", "--docs", str(n))
    return {"results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["embed", "run", "all"])
    parser.add_argument("--embedder", default="light", choices=["light", "minilm"])
    parser.add_argument("--embedders", nargs="+", default=["light", "minilm"])
    parser.add_argument("--docs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--sample", type=int, default=512)
    parser.add_argument("--neural-sample", type=int, default=256)
    parser.add_argument("--neural-docs", type=int, nargs="*", default=[1000])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/d4-bench"))
    args = parser.parse_args()
    if args.command == "run":
        args.docs = args.docs[0]
    result = {"embed": cmd_embed, "run": cmd_run, "all": cmd_all}[args.command](args)
    if args.command != "all":
        print(json.dumps(result))


if __name__ == "__main__":
    main()
