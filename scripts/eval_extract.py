"""Extraction quality on the real benchmarks in ../shared/data/extraction (ScrapingHub, CleanEval).

The metric follows the ScrapingHub article-extraction-benchmark's `evaluate.py` (our own code):
tokens are `\\w+` matches (case kept), each text becomes a multiset of 4-token shingles (a text of
fewer than 4 tokens is one shorter shingle), per-document TP/FP/FN are the multiset overlaps
normalised to sum to 1, precision is averaged over documents with TP+FP > 0, recall over
documents with TP+FN > 0, and F1 is the harmonic mean of the two averages.

Usage: python scripts/eval_extract.py [--dataset scrapinghub|cleaneval|all] [--backend ...]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "extraction"
DATASETS = ("scrapinghub", "cleaneval")

_TOKEN_RE = re.compile(r"\w+", re.UNICODE)
_CLEANEVAL_MARK_RE = re.compile(r"<[hpl]>", re.IGNORECASE)


@dataclass(frozen=True)
class GoldDoc:
    """One benchmark page: the WARC record id, URL, decoded HTML and gold main text."""

    record_id: str
    url: str
    html: str
    gold: str


# ---------------------------------------------------------------------------------------------
# Metric


def shingles(text: str, n: int = 4) -> Counter[tuple[str, ...]]:
    """Multiset of n-token shingles of `text` (one shorter shingle when it has < n tokens)."""
    tokens = _TOKEN_RE.findall(text or "")
    if len(tokens) < n:
        return Counter([tuple(tokens)]) if tokens else Counter()
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def tp_fp_fn(gold: str, pred: str) -> tuple[float, float, float]:
    """Shingle-multiset overlap of one document, normalised so every document weighs the same."""
    g, p = shingles(gold), shingles(pred)
    tp = float(sum((g & p).values()))
    fp = float(sum((p - g).values()))
    fn = float(sum((g - p).values()))
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def _precision(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return tp / (tp + fp) if tp + fp else 0.0


def _recall(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    return tp / (tp + fn) if tp + fn else 0.0


def prf(counts: list[tuple[float, float, float]]) -> dict[str, float]:
    """Macro precision / recall over documents and their harmonic-mean F1 (benchmark averaging)."""
    precisions = [_precision(*c) for c in counts if c[0] + c[1] > 0]
    recalls = [_recall(*c) for c in counts if c[0] + c[2] > 0]
    precision = statistics.fmean(precisions) if precisions else 0.0
    recall = statistics.fmean(recalls) if recalls else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def strip_cleaneval_markers(gold: str) -> str:
    """CleanEval gold marks blocks with <h>, <p>, <l>; they are annotation, not text."""
    return _CLEANEVAL_MARK_RE.sub(" ", gold)


# ---------------------------------------------------------------------------------------------
# Data


def _iter_html_batches(warc: Path) -> Iterator[pa.Table]:
    """HTML batches of `warc` through the project's WARC reader."""
    from pipeline.io.base import InputUnit, ReaderStats
    from pipeline.io.options import InputConfig
    from pipeline.io.warc import WarcReader

    reader = WarcReader(InputConfig(paths=[str(warc)], format="warc"))
    unit = InputUnit(index=0, path=str(warc), format="warc")
    yield from reader.read(unit, ReaderStats(), batch_size=1024)


def load_dataset(name: str, data_dir: Path = DATA) -> list[GoldDoc]:
    """The pages of benchmark `name` that have gold text, in gold-file order."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    html_by_id: dict[str, tuple[str, str]] = {}
    for batch in _iter_html_batches(data_dir / f"{name}.warc.gz"):
        for rid, url, html in zip(
            batch.column("id").to_pylist(),
            batch.column("url").to_pylist(),
            batch.column("html").to_pylist(),
            strict=True,
        ):
            html_by_id[rid] = (url, html)
    docs = []
    with (data_dir / f"{name}.gold.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row["record_id"] not in html_by_id:
                continue
            url, html = html_by_id[row["record_id"]]
            gold = row["gold"] if name == "scrapinghub" else strip_cleaneval_markers(row["gold"])
            docs.append(GoldDoc(row["record_id"], url or row["url"], html, gold))
    return docs


def shared_pages(data_dir: Path = DATA.parent) -> list[tuple[bytes, str | None]]:
    """(UTF-8 HTML, URL) of every non-blank page of the shared WARCs and both benchmarks (under
    5 MB, the extract stage's default max_html_bytes): 1,145 pages, the distinct pages of
    workload 4's replicas (scripts/bench)."""
    pages = []
    warcs = sorted((data_dir / "warc").glob("*.warc.gz"))
    warcs += sorted((data_dir / "extraction").glob("*.warc.gz"))
    for warc in warcs:
        for batch in _iter_html_batches(warc):
            for html, url in zip(
                batch.column("html").to_pylist(), batch.column("url").to_pylist(), strict=True
            ):
                if html and not html.isspace() and len(html) <= 5_000_000:
                    pages.append((html.encode("utf-8", "surrogatepass"), url))
    return pages


def docs_table(docs: list[GoldDoc]) -> pa.Table:
    """An HTML_SCHEMA-shaped batch of benchmark pages, for feeding the extract stage."""
    from pipeline.schema import HTML_SCHEMA

    n = len(docs)
    return pa.table(
        {
            "id": [d.record_id for d in docs],
            "url": [d.url for d in docs],
            "source": ["benchmark"] * n,
            "fetch_date": [None] * n,
            "html": [d.html for d in docs],
        },
        schema=HTML_SCHEMA,
    )


def evaluate(docs: list[GoldDoc], extract: Callable[[pa.Table], list[str]]) -> dict[str, float]:
    """Run `extract` (batch -> texts aligned with it) over `docs` and score it against gold."""
    t0 = time.perf_counter()
    texts = extract(docs_table(docs))
    seconds = time.perf_counter() - t0
    scores = prf([tp_fp_fn(d.gold, t) for d, t in zip(docs, texts, strict=True)])
    scores["docs_per_s"] = len(docs) / seconds if seconds else float("inf")
    scores["empty"] = sum(1 for t in texts if not t.strip())
    return scores


def stage_extractor(**config: object) -> Callable[[pa.Table], list[str]]:
    """A batch -> texts function running the extract stage with `config` (text '' if rejected)."""
    from pipeline.stages.extract import ExtractConfig, ExtractStage

    def run(batch: pa.Table) -> list[str]:
        stage = ExtractStage(ExtractConfig(stage="extract", **config))
        stage.setup()
        try:
            return stage.score(batch).column("text").to_pylist()
        finally:
            stage.close()

    return run


VARIANTS: dict[str, dict[str, object]] = {
    "trafilatura": {"backend": "trafilatura"},
    "trafilatura-fast": {
        "backend": "trafilatura",
        "trafilatura": {"fast": True, "favor_precision": False},
    },
    "resiliparse": {"backend": "resiliparse"},
    # resiliparse for small pages, trafilatura's fast setting for the others (docs/benchmarks.md)
    "cascade": {
        "backend": "cascade",
        "trafilatura": {"fast": True, "favor_precision": False, "recall_escalation": False},
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=[*DATASETS, "all"], default="all")
    parser.add_argument("--variant", choices=[*VARIANTS, "all"], default="all")
    parser.add_argument("--timeout-s", type=float, default=None, help="sandbox per-doc limit")
    args = parser.parse_args(argv)
    datasets = DATASETS if args.dataset == "all" else (args.dataset,)
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    print(f"{'dataset':<12} {'variant':<18} {'P':>6} {'R':>6} {'F1':>6} {'empty':>5} {'docs/s':>7}")
    for name in datasets:
        docs = load_dataset(name)
        for variant in variants:
            s = evaluate(docs, stage_extractor(timeout_s=args.timeout_s, **VARIANTS[variant]))
            print(
                f"{name:<12} {variant:<18} {s['precision']:6.3f} {s['recall']:6.3f} "
                f"{s['f1']:6.3f} {s['empty']:5d} {s['docs_per_s']:7.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
