"""Measure `decontaminate`: index memory and documents per second (docs/benchmarks.md).

Documents are made from the shared extraction gold texts and DCLM texts (each a random window of
~2,000 characters of one text, with a few of its lines swapped in from another); the benchmark is
made of sentences of the shared lingua files (each item one or two sentences, >= 13 words), and
1% of the documents have an item pasted in, so matching and span cutting run too. Everything runs
in this process (LocalContext, one core).

    python scripts/bench_decontaminate.py --docs 100000 --items 10000
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.stages.decontaminate import (
    DecontaminateConfig,
    DecontaminateStage,
    build_index,
    words,
)
from pipeline.stages.global_base import LocalContext, ShardRef

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def source_texts() -> list[str]:
    out = []
    for name in ("cleaneval", "scrapinghub"):
        with open(SHARED / "extraction" / f"{name}.gold.jsonl", encoding="utf-8") as f:
            out += [json.loads(line)["gold"] for line in f]
    with open(SHARED / "quality" / "dclm-agreement.jsonl", encoding="utf-8") as f:
        out += [json.loads(line)["text"] for line in f]
    return [t for t in out if len(t) > 500]


def benchmark_items(n: int, rng: random.Random) -> list[str]:
    sentences = []
    for path in sorted((SHARED / "langid" / "lingua-sentences").glob("*.txt")):
        sentences += [s for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    rng.shuffle(sentences)
    items, i = [], 0
    while len(items) < n:
        item = sentences[i % len(sentences)]
        j = 1
        while len(words(item, "ccnet")) < 13:
            item += " " + sentences[(i + j * 7919) % len(sentences)]
            j += 1
        items.append(item)
        i += 1
    return items


def documents(n: int, texts: list[str], items: list[str], rng: random.Random) -> list[str]:
    out = []
    for k in range(n):
        text = texts[rng.randrange(len(texts))]
        start = rng.randrange(max(1, len(text) - 2000))
        lines = text[start : start + 2000].split("\n")
        other = texts[rng.randrange(len(texts))].split("\n")
        lines[rng.randrange(len(lines))] = other[rng.randrange(len(other))]
        if k % 100 == 0:
            lines.insert(rng.randrange(len(lines) + 1), items[rng.randrange(len(items))])
        out.append("\n".join(lines))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--shard-docs", type=int, default=10_000)
    args = ap.parse_args()
    rng = random.Random(19)
    items = benchmark_items(args.items, rng)
    docs = documents(args.docs, source_texts(), items, rng)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bench = root / "bench.jsonl"
        with open(bench, "w", encoding="utf-8") as f:
            for i, item in enumerate(items):
                f.write(json.dumps({"id": f"i{i}", "question": item}) + "\n")
        refs = []
        for s, lo in enumerate(range(0, len(docs), args.shard_docs)):
            path = root / f"shard-{s}.parquet"
            chunk = docs[lo : lo + args.shard_docs]
            pq.write_table(
                pa.table({"id": [f"d{lo + i}" for i in range(len(chunk))], "text": chunk}), path
            )
            refs.append(ShardRef(s, str(path), len(chunk)))
        benches = [{"name": "bench", "paths": [str(bench)], "fields": ["question"]}]
        results = {}
        for mode in ("reject", "remove_spans"):
            cfg = DecontaminateConfig(benchmarks=benches, mode=mode)
            tracemalloc.start()
            t0 = time.process_time()
            build_index(items, cfg)
            build_s = time.process_time() - t0
            build_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            stage = DecontaminateStage(cfg)
            ctx = LocalContext(str(root / f"work-{mode}"))
            t0 = time.process_time()
            summary = stage.prepare(ctx, refs)
            prepare_s = time.process_time() - t0
            t0 = time.process_time()
            rejected = 0
            for ref in refs:
                _, rej = stage.apply_shard(ctx, ref, ref.read(ctx.fs))
                rejected += rej.num_rows
            apply_s = time.process_time() - t0
            results[mode] = {
                "index_build_cpu_s": round(build_s, 2),
                "index_build_peak_bytes": build_peak,
                "prepare_cpu_s": round(prepare_s, 2),
                "apply_cpu_s": round(apply_s, 2),
                "docs_per_cpu_s": round(len(docs) / (prepare_s + apply_s)),
                "rejected": rejected,
                **{k: v for k, v in summary.items() if not k.startswith("bench_items_skipped")},
            }
        results["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        results["text_mb"] = round(sum(len(d.encode()) for d in docs) / 1e6, 1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
