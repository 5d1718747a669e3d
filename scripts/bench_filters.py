"""Docs/s per core of each quality stage on real extracted text (one process, one core).

Texts: the gold main texts of ../shared/data/extraction (ScrapingHub + CleanEval, markers
stripped) and the DCLM quality set. Each stage runs alone with its default config, in batches,
as the runner would run it (score + keep).

    python scripts/bench_filters.py [--repeat 3] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
from pathlib import Path

import pyarrow as pa

from pipeline.registry import stage_class

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
STAGES = [
    "url_filter",
    "gopher_repetition",
    "gopher_quality",
    "line_corrections",
    "c4_quality",
    "c4_paragraph",
    "fineweb_quality",
]
MARKERS = re.compile(r"<[hpl]>", re.IGNORECASE)


def load_texts() -> dict[str, list[dict]]:
    """Real documents by corpus: id, url, text (gold texts of the extraction sets, DCLM)."""
    sets: dict[str, list[dict]] = {}
    for name in ("scrapinghub", "cleaneval"):
        rows = []
        with open(SHARED / "extraction" / f"{name}.gold.jsonl", encoding="utf-8") as f:
            for i, line in enumerate(f):
                rec = json.loads(line)
                text = MARKERS.sub("", rec.get("text") or rec.get("gold") or "")
                rows.append({"id": f"{name}-{i}", "url": rec.get("url") or "", "text": text})
        sets[name] = rows
    rows = []
    with open(SHARED / "quality" / "dclm-agreement.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            rec = json.loads(line)
            rows.append({"id": f"dclm-{i}", "url": rec.get("url") or "", "text": rec["text"]})
    sets["dclm"] = rows
    return sets


def bench(stage_name: str, rows: list[dict], batch_size: int, repeat: int) -> tuple[float, float]:
    """Best-of-`repeat` docs/s (CPU time) and the keep rate."""
    cls = stage_class(stage_name)
    stage = cls(cls.config_cls(stage=stage_name))
    stage.setup()
    batches = [
        pa.table(
            {
                "id": [r["id"] for r in rows[i : i + batch_size]],
                "url": [r["url"] for r in rows[i : i + batch_size]],
                "text": [r["text"] for r in rows[i : i + batch_size]],
                "lang": ["en"] * len(rows[i : i + batch_size]),
            }
        )
        for i in range(0, len(rows), batch_size)
    ]
    best = float("inf")
    kept = 0
    for _ in range(repeat):
        kept = 0
        t0 = time.process_time()
        for batch in batches:
            k, _ = stage.apply(batch)
            kept += k.num_rows
        best = min(best, time.process_time() - t0)
    stage.close()
    return len(rows) / best, kept / len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)
    sets = load_texts()
    header = ["stage"] + [f"{n} docs/s (keep)" for n in sets]
    rows = []
    for name in STAGES:
        cells = [name]
        for corpus in sets.values():
            rate, keep = bench(name, corpus, args.batch_size, args.repeat)
            cells.append(f"{rate:,.0f} ({keep:.2f})")
        rows.append(cells)
        print(" | ".join(cells), file=sys.stderr, flush=True)
    sizes = ", ".join(
        f"{n}: {len(c)} docs, {sum(len(r['text']) for r in c) / len(c):,.0f} chars avg"
        for n, c in sets.items()
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for cells in rows:
            print("| " + " | ".join(cells) + " |")
    else:
        for cells in [header, *rows]:
            print("  ".join(f"{c:<24}" for c in cells))
    print(f"\ncorpora: {sizes}; peak RSS {peak_mb:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
