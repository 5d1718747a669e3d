"""`curate fit` says when a fit is too weak to rely on, prints the Chinchilla intervals, and its
plots list each legend label once."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cli import main
from pipeline.stats import plots
from pipeline.stats.laws import chinchilla_loss


def _record(metric: str, n: int | None, d: float, value: float, k: int) -> dict[str, Any]:
    return {
        "stage": "input",
        "tokenizer": "word",
        "metric": metric,
        "n": n,
        "k": k,
        "D_tokens": d,
        "value": value,
        "documents": 1000,
        "seed": 0,
    }


def _stats(tmp_path: Path) -> Path:
    """A stats.jsonl with an exact power law on 3 sizes (distinct documents) and a noisy one on
    8 sizes (unigrams, gamma 0.5 with +-40% noise)."""
    rng = np.random.default_rng(0)
    records = [
        _record("distinct_documents", None, 1e4 * 2**k, 3.0 * (1e4 * 2**k) ** 0.8, k)
        for k in range(3)
    ]
    records += [
        _record("distinct_document_tokens", None, 1e4 * 2**k, 0.9 * 1e4 * 2**k, k) for k in range(3)
    ]
    records += [
        _record("unique_ngrams", 1, d, d**0.5 * rng.uniform(0.6, 1.4), k)
        for k, d in enumerate(np.geomspace(1e3, 1.3e3, 8))
    ]
    path = tmp_path / "stats"
    path.mkdir()
    (path / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_fit_warns_on_few_points_and_wide_intervals(tmp_path: Path, capsys) -> None:
    stats = _stats(tmp_path)
    loss_csv = tmp_path / "loss.csv"
    with loss_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["params", "tokens", "loss"])
        for n in np.geomspace(1e8, 1e10, 3):
            for d in np.geomspace(1e9, 1e11, 3):
                w.writerow([n, d, float(chinchilla_loss(n, d))])
    out = tmp_path / "fit"
    args = ["fit", str(stats), "--loss-csv", str(loss_csv), "--output", str(out), "--no-plots"]
    code = main([*args, "--bootstrap", "200", "--chinchilla-bootstrap", "5", "--starts", "5"])
    seen = capsys.readouterr()
    assert code == 0, seen.err
    warnings = json.loads((out / "fit.json").read_text())["warnings"]
    assert warnings[0] == (
        "input distinct_documents: fitted on 3 points (fewer than 5); indicative only"
    )
    assert any(
        w.startswith("input unique_ngrams n=1: the 95% interval of gamma [") for w in warnings
    ), warnings
    assert not any(w.startswith("input unique_ngrams n=1: fitted on") for w in warnings)
    assert seen.err.splitlines() == [f"curate: warning: fit {w}" for w in warnings]
    line = next(x for x in seen.out.splitlines() if x.startswith("  chinchilla"))
    assert line.startswith("  chinchilla (95% intervals): E=1.69 [")  # exact points: E recovered
    assert line.count("[") == 5  # E, A, B, alpha, beta each with its interval


def test_curves_png_lists_each_label_once(tmp_path: Path, monkeypatch) -> None:
    records = [json.loads(x) for x in (_stats(tmp_path) / "stats.jsonl").read_text().splitlines()]
    figures: list[Any] = []
    monkeypatch.setattr(plots, "save_png", lambda fig, output, name: figures.append(fig) or name)
    plots.plot_stats(records, ["input"], str(tmp_path))
    labels = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert labels == ["distinct document tokens", "distinct documents", "ngrams n=1"]


def test_legend_drops_repeated_labels() -> None:
    plt = plots.pyplot()
    fig, ax = plt.subplots()
    for i in range(3):
        ax.plot([0, 1], [i, i], label="same" if i < 2 else "other")
    plots.legend(ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["same", "other"]
    plt.close(fig)
