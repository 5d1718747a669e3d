"""Acceptance of the fastText quality classifier, on shared data only.

Positives: the gold main texts of ../shared/data/extraction (ScrapingHub + CleanEval, markers
stripped). Negatives: the documents the RefinedWeb recipe's quality steps reject from the shared
WARCs (its steps 1-6 run locally with keep_rejected; rejected/gopher_repetition, gopher_quality,
line_corrections), optionally with the documents it keeps (--negatives all). The model is trained
with `curate train-classifier` and scored on DCLM's human-labelled set
(../shared/data/quality/dclm-agreement.jsonl, never seen in training): ROC AUC against the labels,
next to the Gopher + FineWeb heuristics (documents passing all three stages; the number of stages
passed) and document length on the same labels.

    python scripts/eval_classifier.py [--seeds 0 1 2] [--negatives rejected|all] [--work DIR]
        [--train-args=--balance]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_filters import SHARED, load_texts  # noqa: E402

from pipeline.classify.fasttext_backend import FastTextScorer  # noqa: E402
from pipeline.classify.metrics import roc_auc  # noqa: E402
from pipeline.cli import main as curate  # noqa: E402
from pipeline.config import recipe_from_dict  # noqa: E402
from pipeline.registry import stage_class  # noqa: E402
from pipeline.runner.run import run_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUALITY_STEPS = ("gopher_repetition", "gopher_quality", "line_corrections")
HEURISTICS = ("gopher_repetition", "gopher_quality", "fineweb_quality")


def refinedweb_run(out: Path) -> Path:
    """configs/refinedweb.yaml's steps 1-6 (up to line_corrections) over the shared WARCs,
    rejected documents kept, no Ray."""
    data = yaml.safe_load((REPO / "configs" / "refinedweb.yaml").read_text(encoding="utf-8"))
    names = [s["stage"] for s in data["stages"]]
    recipe = recipe_from_dict(
        data
        | {
            "input": {"paths": sorted(str(p) for p in (SHARED / "warc").glob("*.warc.gz"))},
            "output": {"path": str(out), "keep_rejected": True},
            "runtime": {"executor": "local"},
            "stages": data["stages"][: names.index("line_corrections") + 1],
        }
    )
    if not (out / "stats.json").exists():
        run_recipe(recipe)
    return out


def training_sources(work: Path, negatives: str) -> tuple[Path, list[str]]:
    """(positives JSONL, negative source directories)."""
    texts = load_texts()
    positives = work / "positives.jsonl"
    with open(positives, "w", encoding="utf-8") as f:
        for row in texts["scrapinghub"] + texts["cleaneval"]:
            f.write(json.dumps({"id": row["id"], "text": row["text"]}) + "\n")
    run = refinedweb_run(work / "refinedweb")
    sources = [str(run / "rejected" / s) for s in QUALITY_STEPS if (run / "rejected" / s).exists()]
    if negatives == "all":
        sources.append(str(run / "data"))
    return positives, sources


def heuristic_scores(texts: list[str]) -> np.ndarray:
    """How many of the Gopher repetition, Gopher quality and FineWeb stages keep each text."""
    batch = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    passed = np.zeros(len(texts))
    for name in HEURISTICS:
        cls = stage_class(name)
        stage = cls(cls.config_cls(stage=name))
        stage.setup()
        reasons = stage.keep(stage.score(batch))
        passed += np.array([r is None for r in reasons.to_pylist()])
        stage.close()
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--negatives", choices=["rejected", "all"], default="rejected")
    parser.add_argument("--work", type=Path, help="keep the run and models here")
    parser.add_argument("--train-args", default="", help="more train-classifier flags")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="eval-classifier-"))
    work.mkdir(parents=True, exist_ok=True)
    positives, negatives = training_sources(work, args.negatives)
    with open(SHARED / "quality" / "dclm-agreement.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    texts = [r["text"] for r in rows]
    labels = np.array([r["label"] == 1 for r in rows])
    results: dict[str, object] = {
        "eval_documents": len(rows),
        "eval_positives": int(labels.sum()),
        "negative_sources": [Path(n).relative_to(work).as_posix() for n in negatives],
    }
    classifier = []
    for seed in args.seeds:
        model = work / f"quality-{seed}.bin"
        flags = ["--positive", str(positives), "--negative", *negatives, "--output", str(model)]
        flags += ["--seed", str(seed), *args.train_args.split()]
        with contextlib.redirect_stdout(sys.stderr):  # stdout: the results' JSON only
            if curate(["train-classifier", *flags]) != 0:
                return 1
        meta = json.loads(model.with_suffix(".json").read_text())
        auc = roc_auc(labels, FastTextScorer(str(model), "hq").predict(texts))
        classifier.append(
            {"seed": seed, "dclm_roc_auc": auc, "held_out": meta["validation"], **meta["counts"]}
        )
        model.unlink()  # 800 MB with the default 2M buckets
    aucs = [c["dclm_roc_auc"] for c in classifier]
    passed = heuristic_scores(texts)
    results |= {
        "classifier": classifier,
        "classifier_roc_auc_mean": float(np.mean(aucs)),
        "heuristics_all_pass_roc_auc": roc_auc(labels, passed == len(HEURISTICS)),
        "heuristics_stages_passed_roc_auc": roc_auc(labels, passed),
        "heuristics_keep_rate": float((passed == len(HEURISTICS)).mean()),
        "length_roc_auc": roc_auc(labels, np.array([len(t) for t in texts])),
    }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
