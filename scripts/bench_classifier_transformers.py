"""Benchmark the `transformers` classifier backend on CPU: documents per second (wall and per
CPU-second) of `TransformersScorer.predict` over real documents, for a tiny BERT and a
BERT-base-sized one (12 layers, 768 wide, 12 heads: FineWeb-Edu's classifier's shape), both with
random weights made on the spot (tests/tiny_models.py; nothing downloaded).

Documents: the shared DCLM agreement set, then the extraction gold texts (2-5 KB typical). The
tokenizer is the tiny WordPiece of the helper (a few hundred ids), so words split into more
pieces than with BERT's 30k vocabulary; most documents reach max_length either way, and the mean
tokens per document is reported. Each model runs in a fresh process (its own thread setting).

    python scripts/bench_classifier_transformers.py --docs 256 --base-docs 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SIZES = {
    "tiny": {"hidden_size": 32, "layers": 2, "heads": 2},
    "base": {"hidden_size": 768, "layers": 12, "heads": 12},
}


def documents(count: int) -> list[str]:
    """`count` real documents: DCLM agreement texts, then extraction gold texts."""
    texts = [json.loads(x)["text"] for x in (SHARED / "quality/dclm-agreement.jsonl").open()]
    for name in ("scrapinghub", "cleaneval"):
        texts += [json.loads(x)["gold"] for x in (SHARED / f"extraction/{name}.gold.jsonl").open()]
    return texts[:count]


def measure(size: str, docs: int, max_length: int, batch_size: int, threads: int | None) -> dict:
    """Build the model, score `docs` documents once to warm up (a few) and once timed."""
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    sys.path.insert(0, str(REPO))
    from pipeline.classify.transformers_backend import TransformersScorer, cpu_allotment
    from tests.tiny_models import make_tiny_classifier

    texts = documents(docs)
    with tempfile.TemporaryDirectory() as tmp:
        path = make_tiny_classifier(Path(tmp) / size, 1, max_positions=512, **SIZES[size])
        scorer = TransformersScorer(str(path), None, max_length, batch_size, "cpu")
        t0 = time.perf_counter()
        scorer.load()
        load_s = time.perf_counter() - t0
        scorer.predict(texts[:batch_size])  # warm-up: first-call allocations
        tokens = [
            len(ids)
            for ids in scorer._tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        ]
        load0 = os.getloadavg()[0]
        c0, t0 = time.process_time(), time.perf_counter()
        scores = scorer.predict(texts)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    import torch

    return {
        "model": size,
        "docs": len(scores),
        "mean_chars": round(sum(map(len, texts)) / len(texts)),
        "mean_tokens": round(sum(tokens) / len(tokens), 1),
        "max_length": max_length,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "allotment": cpu_allotment(),
        "load_s": round(load_s, 2),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "docs_per_s": round(len(scores) / wall, 2),
        "docs_per_cpu_s": round(len(scores) / cpu, 2),
        "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=256, help="documents for the tiny model")
    parser.add_argument("--base-docs", type=int, default=64, help="documents for BERT-base")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, nargs="*", default=[0, 1], help="0: allotment")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one measurement, as JSON
    args = parser.parse_args()
    if args.one:
        size, docs, threads = args.one.split(":")
        row = measure(size, int(docs), args.max_length, args.batch_size, int(threads) or None)
        print(json.dumps(row))
        return
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    rows = []
    for size, docs in (("tiny", args.docs), ("base", args.base_docs)):
        for threads in args.threads:
            cmd = [sys.executable, __file__, "--one", f"{size}:{docs}:{threads}"]
            cmd += ["--max-length", str(args.max_length), "--batch-size", str(args.batch_size)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(
        "\n| model | threads | docs | mean chars | mean tokens | docs/s wall | docs/CPU-s "
        "| load s | load avg |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['threads']} | {r['docs']} | {r['mean_chars']:,} "
            f"| {r['mean_tokens']} | {r['docs_per_s']} | {r['docs_per_cpu_s']} | {r['load_s']} "
            f"| {r['load_avg_1m'][0]}-{r['load_avg_1m'][1]} |"
        )


if __name__ == "__main__":
    main()
