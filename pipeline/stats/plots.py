"""PNG plots (matplotlib, Agg backend: no display needed) of statistics and fits."""

from __future__ import annotations

from typing import Any

import fsspec
import numpy as np

from pipeline.io.atomic import atomic_write


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def legend(ax: Any, **kwargs: Any) -> None:
    """The axes' legend with each label once (two series drawn under one label list it once)."""
    handles, labels = ax.get_legend_handles_labels()
    first = dict(zip(reversed(labels), reversed(handles), strict=True))
    ax.legend(
        [first[label] for label in dict.fromkeys(labels)], list(dict.fromkeys(labels)), **kwargs
    )


def save_png(fig: Any, output: str, name: str) -> str:
    fs, root = fsspec.core.url_to_fs(output)
    fs.makedirs(root, exist_ok=True)
    with atomic_write(fs, f"{root}/{name}") as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return f"{output}/{name}"


def _curve(records: list[dict[str, Any]], stage: str, metric: str, n: Any) -> np.ndarray:
    rows = sorted(
        (r["D_tokens"], r["value"])
        for r in records
        if r["stage"] == stage and r["metric"] == metric and r["n"] == n and r["D_tokens"] > 0
    )
    return np.array([p for p in rows if p[1] > 0], dtype=float).reshape(-1, 2)


def plot_stats(records: list[dict[str, Any]], sets: list[str], output: str) -> dict[str, str]:
    """curves.png: distinct counts vs subsample size (last set); stages.png: per-set funnel."""
    plt = pyplot()
    final = sets[-1]
    fig, ax = plt.subplots(figsize=(7, 5))
    series = sorted(
        {(r["metric"], r["n"]) for r in records if r["metric"].startswith(("unique_", "distinct"))},
        key=lambda t: (t[0], t[1] or 0),
    )
    for metric, n in series:
        pts = _curve(records, final, metric, n)
        if len(pts):
            label = metric.replace("_", " ") if n is None else f"{metric.split('_')[1]} n={n}"
            ax.loglog(pts[:, 0], pts[:, 1], "o-", ms=3, label=label)
    ax.set_xlabel("D (tokens in the nested subsample D_k = D 2^-k)")
    ax.set_ylabel("distinct count")
    ax.set_title(f"Unique sequences vs data size ({final})")
    ax.grid(True, which="both", alpha=0.3)
    legend(ax, fontsize=7, ncol=2)
    paths = {"curves_png": save_png(fig, output, "curves.png")}
    if len(sets) > 1:
        paths["stages_png"] = save_png(_stages_figure(records, sets), output, "stages.png")
    return paths


def _stages_figure(records: list[dict[str, Any]], sets: list[str]) -> Any:
    """Each quantity relative to its value at the first set, along the stages."""
    plt = pyplot()
    full = [r for r in records if r["k"] == 0]
    first_tok = full[0]["tokenizer"] if full else None
    picks: list[tuple[str, Any, str]] = [
        ("documents", None, "documents"),
        ("tokens", None, "tokens"),
        ("distinct_documents", None, "distinct documents"),
    ]
    grams = {(r["metric"], r["n"], f"unique {r['n']}-grams") for r in full}
    picks += sorted((g for g in grams if g[0] == "unique_ngrams"), key=lambda t: t[1])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = np.arange(len(sets))
    for metric, n, label in picks:
        vals = []
        for s in sets:
            v = [
                r["value"]
                for r in full
                if r["stage"] == s
                and r["metric"] == metric
                and r["n"] == n
                and (metric != "tokens" or r["tokenizer"] == first_tok)
            ]
            vals.append(v[0] if v else np.nan)
        arr = np.asarray(vals, dtype=float)
        if arr.size and arr[0] > 0:
            ax.plot(x, arr / arr[0], "o-", ms=3, label=label)
    ax.set_xticks(x, sets, rotation=30, ha="right")
    ax.set_ylabel("fraction of the input set")
    ax.set_title("What each stage keeps")
    ax.grid(True, alpha=0.3)
    legend(ax, fontsize=7)
    return fig
