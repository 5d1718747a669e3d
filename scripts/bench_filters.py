"""Docs/s per core of each quality stage on real extracted text (one process, one core).

Texts: the gold main texts of ../shared/data/extraction (ScrapingHub + CleanEval, markers
stripped) and the DCLM quality set. Each stage runs alone with its default config, in batches,
as the runner would run it (score + keep).

`--chain` instead times the FineWeb filter chain (Gopher repetition and quality, C4 without
terminal punctuation or bad words, FineWeb quality) through the runner's kernel, per stage, with
the `words` intermediate shared along each batch's chain and without it (every stage splitting on
its own), the two alternating, and checks both give the same kept and rejected rows. Its texts
are the shared ones above, or a run's kept Parquet (`--texts DIR`, e.g. the output of extract +
langid over the shared WARCs).

    python scripts/bench_filters.py [--repeat 3] [--markdown]
    python scripts/bench_filters.py --chain [--texts DIR] [--repeat 5]
    python scripts/bench_filters.py --stages --texts DIR [--langid] [--upto K] [--limit N] [--repeat 5]

`--stages` runs the chain as the runner does (words shared) and prints each stage's best CPU s,
CPU s per 1,000 input documents, and a SHA-256 of every kept and rejected table (Arrow IPC), so
two checkouts (`PYTHONPATH=...`) can be compared for identical output; `--langid` puts the
recipe's langid stage first (for extract-only Parquet), `--upto K` runs the first K stages only
(instruction counts per stage under cachegrind, by difference).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import resource
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.registry import stage_class
from pipeline.runner import kernel
from pipeline.runner.accounting import StageStats

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
# The FineWeb recipe's filter stages after langid (configs/fineweb.yaml).
FINEWEB_CHAIN = [
    {"stage": "gopher_repetition"},
    {"stage": "gopher_quality"},
    {"stage": "c4_quality", "filter_no_terminal_punct": False, "filter_badwords": False},
    {"stage": "fineweb_quality"},
]


# The recipe's langid stage, put first by `--langid`.
LANGID = {"stage": "langid", "languages": ["en"], "threshold": 0.65}


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


def chain_once(
    stages: list, batches: list[pa.Table], share: bool
) -> tuple[list[StageStats], list[pa.Table]]:
    """Each stage's stats (CPU seconds, documents) of one pass of the chain over `batches` (as
    the runner's unit loop: one `Intermediates` per batch when `share`), and every stage's kept
    and rejected tables."""
    stats = [StageStats(s.name) for s in stages]
    outputs = []
    for batch in batches:
        shared = kernel.Intermediates() if share else None
        for stage, st in zip(stages, stats, strict=True):
            if batch.num_rows == 0:
                break
            batch, rejected = kernel.run_stage(stage, batch, st, None, None, (), shared)
            outputs.append(rejected)
        outputs.append(batch)
    return stats, outputs


def bench_chain(texts: pa.Table, batch_size: int, repeat: int) -> list[tuple[str, float, float]]:
    """(stage, best CPU s without sharing, best with) per stage and for the chain, alternating
    the two modes `repeat` times; raises when their outputs differ."""
    stages = make_stages(FINEWEB_CHAIN)
    batches = [texts.slice(i, batch_size) for i in range(0, texts.num_rows, batch_size)]
    best = {False: [float("inf")] * len(stages), True: [float("inf")] * len(stages)}
    outputs = {}
    for _ in range(repeat):
        for share in (False, True):
            stats, outputs[share] = chain_once(stages, batches, share)
            best[share] = [min(a, st.cpu_s) for a, st in zip(best[share], stats, strict=True)]
    if not all(a.equals(b) for a, b in zip(outputs[False], outputs[True], strict=True)):
        raise SystemExit("the chain's output differs with shared words")
    rows = [(s.name, a, b) for s, a, b in zip(stages, best[False], best[True], strict=True)]
    return [*rows, ("chain", sum(best[False]), sum(best[True]))]


def make_stages(specs: list[dict]) -> list:
    """Stage objects of `specs`, set up."""
    stages = []
    for spec in specs:
        cls = stage_class(spec["stage"])
        stages.append(cls(cls.config_cls(**spec)))
        stages[-1].setup()
    return stages


def digest(tables: list[pa.Table]) -> str:
    """SHA-256 of the tables in order, each as an Arrow IPC stream (schema and values)."""
    h = hashlib.sha256()
    for table in tables:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        h.update(sink.getvalue().to_pybytes())
    return h.hexdigest()


def main_stages(args: argparse.Namespace) -> int:
    specs = ([LANGID] if args.langid else []) + FINEWEB_CHAIN
    specs = specs[: args.upto] if args.upto is not None else specs
    texts = pq.read_table(args.texts, columns=["id", "text"] + ([] if args.langid else ["lang"]))
    texts = texts.slice(0, args.limit) if args.limit is not None else texts
    stages = make_stages(specs)
    batches = [texts.slice(i, args.batch_size) for i in range(0, texts.num_rows, args.batch_size)]
    best = [float("inf")] * len(stages)
    docs_in = [0] * len(stages)
    sums = set()
    for _ in range(args.repeat):
        stats, outputs = chain_once(stages, batches, share=True)
        best = [min(b, st.cpu_s) for b, st in zip(best, stats, strict=True)]
        docs_in = [st.docs_in for st in stats]
        sums.add(digest(outputs))
    if len(sums) != 1:
        raise SystemExit("the chain's output differs between repeats")
    print(f"{texts.num_rows} docs; best of {args.repeat}; output sha256 {sums.pop()}")
    print("| stage | docs in | CPU s | CPU s / 1,000 docs |")
    print("|---|---:|---:|---:|")
    for stage, cpu, n in zip(stages, best, docs_in, strict=True):
        print(f"| {stage.name} | {n} | {cpu:.3f} | {1000 * cpu / max(n, 1):.3f} |")
    print(
        f"| chain | {texts.num_rows} | {sum(best):.3f} | {1000 * sum(best) / texts.num_rows:.3f} |"
    )
    return 0


def chain_texts(path: str | None) -> pa.Table:
    """id, text, lang of a run's kept Parquet, else of the shared texts (lang "en")."""
    if path is not None:
        return pq.read_table(path, columns=["id", "text", "lang"])
    rows = [r for corpus in load_texts().values() for r in corpus]
    return pa.table(
        {
            "id": [r["id"] for r in rows],
            "text": [r["text"] for r in rows],
            "lang": ["en"] * len(rows),
        }
    )


def main_chain(args: argparse.Namespace) -> int:
    texts = chain_texts(args.texts)
    rows = bench_chain(texts, args.batch_size, args.repeat)
    chars = sum(len(t or "") for t in texts.column("text").to_pylist())
    print(f"{texts.num_rows} docs, {chars:,} chars; best of {args.repeat}, CPU s")
    print("| stage | split per stage | words shared | change |")
    print("|---|---:|---:|---:|")
    for name, alone, shared in rows:
        print(f"| {name} | {alone:.3f} | {shared:.3f} | {(shared - alone) / alone:+.1%} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--chain", action="store_true", help="the FineWeb chain, words shared")
    parser.add_argument("--texts", help="--chain, --stages: a run's kept Parquet (file or folder)")
    parser.add_argument("--stages", action="store_true", help="CPU per stage and output digest")
    parser.add_argument("--langid", action="store_true", help="--stages: langid first")
    parser.add_argument("--upto", type=int, help="--stages: only the first K stages")
    parser.add_argument("--limit", type=int, help="--stages: only the first N texts")
    args = parser.parse_args(argv)
    if args.stages:
        if args.texts is None:
            parser.error("--stages needs --texts")
        return main_stages(args)
    if args.chain:
        return main_chain(args)
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
