"""Benchmark `curate stats`: throughput (tokens per CPU second), phase times, peak memory, HLL error.

Builds a corpus of real text (the shared DCLM and extraction gold texts, sentence-shuffled into
new documents so n-gram statistics stay natural) of about --tokens word tokens in Parquet files,
then runs exact and approximate counting in this process (executor local) and reports numbers
for docs/benchmarks.md.

    python scripts/bench_stats.py --tokens 2000000 --out /tmp/bench-stats
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.stats.compute import StatsOptions, compute_stats

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def build_corpus(out: Path, tokens: int, files: int, seed: int) -> int:
    """Sentence-shuffled documents from real texts; returns the number of documents."""
    texts = [json.loads(x)["text"] for x in (SHARED / "quality/dclm-agreement.jsonl").open()]
    for name in ("scrapinghub", "cleaneval"):
        texts += [json.loads(x)["gold"] for x in (SHARED / f"extraction/{name}.gold.jsonl").open()]
    sentences = [s for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if s.strip()]
    rng = np.random.default_rng(seed)
    words_per_sentence = np.mean([len(s.split()) for s in sentences[:5000]]) * 1.2
    n_sent = int(tokens / words_per_sentence)
    picks = rng.integers(0, len(sentences), n_sent)
    cuts = np.cumsum(rng.integers(5, 200, n_sent))
    docs = [
        " ".join(sentences[i] for i in picks[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    docs = [d for d in docs if d]
    out.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        part = docs[f::files]
        ids = [f"bench-{f}-{i}" for i in range(len(part))]
        pq.write_table(pa.table({"id": ids, "text": part}), out / f"part-{f:05d}.parquet")
    return len(docs)


def run(data: Path, out: Path, **kw: object) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    res = compute_stats(StatsOptions(str(data), output=str(out), executor="local", **kw))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    tokens = int(res.totals["tokens"][0, 0, 0])
    return {
        "tokens": tokens,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "tokens_per_cpu_s": round(tokens / cpu),
        "phase1_cpu_s": round(res.cpu_s, 2),
        "phase1_tokens_per_cpu_s": round(tokens / res.cpu_s),
        "timings": {k: round(v, 2) for k, v in res.timings.items()},
        "partitions": res.config.partitions,
        "distinct": {k: float(v[0, 0]) for k, v in res.distinct.items()},
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=2_000_000)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--out", default="/tmp/bench-stats")
    ap.add_argument("--memory-mb", type=int, default=1024)
    args = ap.parse_args()
    out = Path(args.out)
    docs = build_corpus(out / "data", args.tokens, args.files, seed=0)
    report: dict[str, object] = {"documents": docs}
    common = {"subsamples": 10, "memory_mb": args.memory_mb}
    report["exact"] = run(out / "data", out / "exact", **common)
    for p in (12, 14, 16):
        r = run(out / "data", out / f"hll{p}", approx=True, precision=p, **common)
        exact = report["exact"]["distinct"]  # type: ignore[index]
        r["relative_error"] = {
            k: round(v / exact[k] - 1, 5) for k, v in r["distinct"].items() if exact[k]
        }
        r["stated_rse"] = round(1.04 / 2 ** (p / 2), 5)
        report[f"hll_p{p}"] = r
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
