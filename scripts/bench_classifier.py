"""Docs/s per core of the `classifier` stage (fastText) on shared 2-5 KB texts.

A model is trained here with `curate train-classifier`'s defaults (word bigrams) at each
`--models DIM:BUCKETS` (DCLM's published model: 256 dims), on the gold texts of
../shared/data/extraction against DCLM's low-quality texts. Its content hardly changes its speed,
its size does: scoring reads one matrix row per word and bigram, mostly cache misses.
Texts: every shared text (extraction gold texts, DCLM set) of 2,000-5,000 UTF-8 bytes. The stage
runs as the runner applies it (score + keep, batches of 512) in this one process; CPU time,
best of `--repeat`.

    python scripts/bench_classifier.py [--models 100:2000000 256:2000000 100:200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_filters import SHARED, load_texts  # noqa: E402

from pipeline.classify.train import TrainOptions, train_classifier  # noqa: E402
from pipeline.stages.classifier import ClassifierConfig, ClassifierStage  # noqa: E402

LOW, HIGH = 2_000, 5_000


def sample_texts() -> list[str]:
    """The shared texts of 2-5 KB (UTF-8)."""
    return [
        row["text"]
        for rows in load_texts().values()
        for row in rows
        if LOW <= len(row["text"].encode("utf-8")) <= HIGH
    ]


def train(work: Path, dim: int, bucket: int) -> Path:
    """A default-parameter model of `dim` x `bucket` (positives: gold texts; negatives: DCLM
    label 0)."""
    texts = load_texts()
    pos, neg = work / "pos.jsonl", work / "neg.jsonl"
    pos.write_text(
        "".join(json.dumps({"text": r["text"]}) + "\n" for r in texts["scrapinghub"]),
        encoding="utf-8",
    )
    with open(SHARED / "quality" / "dclm-agreement.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    low = [r["text"] for r in rows if r["label"] == 0]
    neg.write_text("".join(json.dumps({"text": t}) + "\n" for t in low), encoding="utf-8")
    model = work / f"model-{dim}-{bucket}.bin"
    train_classifier(TrainOptions((str(pos),), (str(neg),), str(model), dim=dim, bucket=bucket))
    return model


def bench(model: Path, texts: list[str], repeat: int, batch_size: int = 512) -> float:
    """Best-of-`repeat` CPU seconds for score + keep over `texts`."""
    stage = ClassifierStage(ClassifierConfig(model_path=str(model)))
    stage.setup()
    batches = [
        pa.table({"id": [str(i) for i in range(len(chunk))], "text": chunk})
        for chunk in (texts[i : i + batch_size] for i in range(0, len(texts), batch_size))
    ]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for batch in batches:
            stage.apply(batch)
        best = min(best, time.process_time() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["100:2000000", "256:2000000", "100:200000"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--copies", type=int, default=20, help="texts repeated to time longer")
    args = parser.parse_args(argv)
    texts = sample_texts()
    mib = sum(len(t.encode("utf-8")) for t in texts) / 2**20
    print(f"{len(texts)} texts of 2-5 KB, {mib:.2f} MiB; load {os.getloadavg()}", file=sys.stderr)
    corpus = texts * args.copies
    with tempfile.TemporaryDirectory() as work:
        for spec in args.models:
            dim, bucket = (int(v) for v in spec.split(":"))
            model = train(Path(work), dim, bucket)
            cpu = bench(model, corpus, args.repeat)
            size = model.stat().st_size / 2**20
            print(
                f"dim {dim}, {bucket:,} buckets ({size:,.0f} MiB model): "
                f"{len(corpus) / cpu:,.0f} docs/s per core, "
                f"{mib * args.copies / cpu:.1f} MiB/s (CPU {cpu:.2f} s for {len(corpus):,} docs)"
            )
            model.unlink()
    print(f"load after: {os.getloadavg()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
