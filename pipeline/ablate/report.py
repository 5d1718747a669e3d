"""The side-by-side comparison of an ablation: report.md, comparison.csv, reasons.csv, funnel.png."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pipeline.ablate.spec import Ablation
from pipeline.io.output_shards import read_shards
from pipeline.io.writer import output_fs, output_url


def _output_table(stats: dict[str, Any], root: str, fs: Any) -> Any:
    """id, url and text of a variant's kept documents (Parquet or JSONL shards)."""
    files = stats["output"]["files"]
    if not files:
        return None
    return read_shards(fs, [f"{root}/{p}" for p in files], ["id", "url", "text"])


SEQUENCE_NGRAMS = (1, 5, 13)


def _summary(name: str, stats: dict[str, Any], recipe: Any, work: str) -> dict[str, Any]:
    """A variant's totals plus the unique-sequence statistics of its output (`curate stats`)."""
    row = {
        "variant": name,
        "docs_in": stats["reader"]["documents"],
        "docs_out": stats["output"]["documents"],
        "bytes_out": stats["output"]["bytes"],
        "tokens_out": 0,
        "distinct_docs_out": 0,
        **{f"unique_{n}grams_out": 0 for n in SEQUENCE_NGRAMS},
        "wall_s": stats["wall_s"],
    }
    if not stats["output"]["documents"]:
        return row
    from pipeline.stats.compute import StatsOptions, compute_stats

    seq = compute_stats(
        StatsOptions(
            path=recipe.output.path,
            output=work,
            ngrams=SEQUENCE_NGRAMS,
            windows=(),
            subsamples=0,
            executor=recipe.runtime.executor,
            ray_address=recipe.runtime.ray_address,
            plots=False,
        )
    )
    row["tokens_out"] = int(seq.totals["tokens"][0][0][0])
    row["distinct_docs_out"] = int(seq.distinct["docs"][0][0])
    for n in SEQUENCE_NGRAMS:
        row[f"unique_{n}grams_out"] = int(seq.distinct[str(n)][0][0])
    return row


def write_comparison(ablation: Ablation, result: Any) -> None:
    """Write the comparison files into the ablation's output directory."""
    fs, root = output_fs(ablation.output)
    tables, summaries = {}, []
    for name, recipe in ablation.variants.items():
        stats = result.variants[name]
        vfs, vroot = output_fs(recipe.output.path)
        tables[name] = _output_table(stats, vroot, vfs)
        summaries.append(_summary(name, stats, recipe, output_url(fs, f"{root}/_stats/{name}")))
    labels: list[str] = []
    for stats in result.variants.values():
        for s in stats["stages"]:
            if s["name"] not in labels:
                labels.append(s["name"])
    kept = {
        name: {s["name"]: s["docs_kept"] for s in stats["stages"]}
        for name, stats in result.variants.items()
    }
    _write_csv(fs, f"{root}/comparison.csv", summaries, labels, kept)
    _write_reasons(fs, f"{root}/reasons.csv", result.variants)
    diffs = _diffs(ablation, tables)
    _plot(fs, f"{root}/funnel.png", result.variants, labels)
    report = _markdown(ablation, result, summaries, labels, kept, diffs)
    with fs.open(f"{root}/report.md", "w") as f:
        f.write(report)
    with fs.open(f"{root}/ablation.json", "w") as f:
        json.dump(
            {
                "name": ablation.name,
                "baseline": ablation.baseline,
                "wall_s": result.wall_s,
                "computed": result.computed,
                "summaries": summaries,
                "diffs": {
                    k: {kk: vv for kk, vv in v.items() if kk != "examples"}
                    for k, v in diffs.items()
                },
            },
            f,
            indent=2,
        )


def _write_csv(
    fs: Any, path: str, summaries: list[dict], labels: list[str], kept: dict[str, dict]
) -> None:
    buf = io.StringIO()
    fields = list(summaries[0]) + [f"kept_after_{label}" for label in labels]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for row in summaries:
        extra = {f"kept_after_{lb}": kept[row["variant"]].get(lb, "") for lb in labels}
        writer.writerow({**row, **extra})
    with fs.open(path, "w") as f:
        f.write(buf.getvalue())


def _write_reasons(fs: Any, path: str, variants: dict[str, dict]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["variant", "stage", "reason", "documents"])
    for name, stats in variants.items():
        for s in stats["stages"]:
            for reason, count in s["removed_by_reason"].items():
                writer.writerow([name, s["name"], reason, count])
    with fs.open(path, "w") as f:
        f.write(buf.getvalue())


def _diffs(ablation: Ablation, tables: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per variant vs the baseline: documents only one side keeps, with a few examples."""
    base = tables[ablation.baseline]
    base_rows = {} if base is None else {r["id"]: r for r in base.to_pylist()}
    out = {}
    for name, table in tables.items():
        if name == ablation.baseline:
            continue
        rows = {} if table is None else {r["id"]: r for r in table.to_pylist()}
        only_variant = sorted(set(rows) - set(base_rows))
        only_base = sorted(set(base_rows) - set(rows))
        k = ablation.examples
        out[name] = {
            "only_in_variant": len(only_variant),
            "only_in_baseline": len(only_base),
            "in_both": len(set(rows) & set(base_rows)),
            "examples": {
                "only_in_variant": [_example(rows[i]) for i in only_variant[:k]],
                "only_in_baseline": [_example(base_rows[i]) for i in only_base[:k]],
            },
        }
    return out


def _example(row: dict[str, Any]) -> dict[str, str]:
    text = " ".join((row.get("text") or "").split())
    return {"id": row["id"], "url": row.get("url") or "", "text": text[:200]}


def _plot(fs: Any, path: str, variants: dict[str, dict], labels: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels) + 2), 4))
    for name, stats in variants.items():
        by = {s["name"]: s["docs_kept"] for s in stats["stages"]}
        xs = [i for i, lb in enumerate(labels) if lb in by]
        ys = [by[labels[i]] for i in xs]
        ax.plot([-1, *xs], [stats["reader"]["documents"], *ys], marker="o", label=name)
    ax.set_xticks(range(-1, len(labels)), ["input", *labels], rotation=30, ha="right")
    ax.set_ylabel("documents kept")
    ax.set_title("Funnel per variant")
    ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    with fs.open(path, "wb") as f:
        f.write(buf.getvalue())


def _markdown(
    ablation: Ablation,
    result: Any,
    summaries: list[dict],
    labels: list[str],
    kept: dict[str, dict],
    diffs: dict[str, dict],
) -> str:
    lines = [
        f"# Ablation: {ablation.name}",
        "",
        f"{len(summaries)} variants, wall {result.wall_s:.1f} s; baseline `{ablation.baseline}`. "
        "Scores shared between variants were computed once (see *Computed now*).",
        "",
        "## Documents kept after each stage",
        "",
        "| variant | input | " + " | ".join(labels) + " | output docs | output bytes | tokens "
        "| distinct docs | unique 1-grams | unique 5-grams | unique 13-grams |",
        "|---|---:|" + "---:|" * len(labels) + "---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summaries:
        cells = [
            f"{kept[row['variant']][lb]:,}" if lb in kept[row["variant"]] else "-" for lb in labels
        ]
        lines.append(
            f"| {row['variant']} | {row['docs_in']:,} | "
            + " | ".join(cells)
            + f" | {row['docs_out']:,} | {row['bytes_out']:,} | {row['tokens_out']:,} "
            f"| {row['distinct_docs_out']:,} | {row['unique_1grams_out']:,} "
            f"| {row['unique_5grams_out']:,} | {row['unique_13grams_out']:,} |"
        )
    lines += ["", "![funnel](funnel.png)", "", "## Removals by reason", ""]
    for name, stats in result.variants.items():
        parts = []
        for s in stats["stages"]:
            if s["removed_by_reason"]:
                reasons = ", ".join(f"{k} {v:,}" for k, v in s["removed_by_reason"].items())
                parts.append(f"{s['name']}: {reasons}")
        lines.append(f"- **{name}**: " + ("; ".join(parts) or "none"))
    lines += ["", f"## Differences from `{ablation.baseline}`", ""]
    for name, d in diffs.items():
        lines.append(
            f"- **{name}**: {d['only_in_variant']:,} documents only here, "
            f"{d['only_in_baseline']:,} only in the baseline, {d['in_both']:,} in both."
        )
        for side, title in (
            ("only_in_variant", "only here"),
            ("only_in_baseline", "only in baseline"),
        ):
            for ex in d["examples"][side]:
                lines.append(f"  - {title}: `{ex['url']}` — {ex['text'][:160]}")
    lines += ["", "## Computed now", ""]
    for name, labels_now in result.computed.items():
        lines.append(f"- {name}: {', '.join(labels_now) if labels_now else 'nothing (all cached)'}")
    lines.append("")
    return "\n".join(lines)
