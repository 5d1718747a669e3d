"""report.md: the funnel of a run (documents, bytes and, with output.tokenizer, tokens kept per
stage) and removals by reason, each with a few example documents."""

from __future__ import annotations

import re
from typing import Any

from pipeline.io.atomic import atomic_write
from pipeline.runner.report_html import HTML_REPORT, figure_name, has_figure


def render_report(stats: dict[str, Any]) -> str:
    """Markdown for a run's stats.json."""
    reader = stats["reader"]
    lines = [
        f"# Run report{': ' + stats['name'] if stats.get('name') else ''}",
        "",
        f"Config hash `{stats['config_hash']}`, version {stats['version']}, "
        f"wall {stats['wall_s']:.1f} s, accounting: **{stats['accounting']}**.",
        "",
        "## Input",
        "",
        f"{stats['inputs']['units']} units ({', '.join(stats['inputs']['formats'])}): "
        f"{reader['records']:,} records -> {reader['documents']:,} documents, "
        f"{sum(reader['skipped'].values()):,} skipped.",
        "",
    ]
    if reader["skipped"]:
        lines += ["| skipped record reason | count |", "|---|---:|"]
        lines += [f"| {k} | {v:,} |" for k, v in reader["skipped"].items()]
        lines.append("")
    if reader["errors"]:
        lines += ["Input errors:", ""] + [f"- {e}" for e in reader["errors"]] + [""]
    base_docs = max(1, reader["documents"])
    base_bytes = max(1, stats["stages"][0]["bytes_in"]) if stats["stages"] else 1
    tokens = bool(stats["stages"]) and "tokens_in" in stats["stages"][0]
    base_tokens = max(1, stats["stages"][0]["tokens_in"]) if tokens else 1
    lines += [
        "## Funnel",
        "",
        "| stage | docs in | kept | rejected | kept % of input docs | bytes in | bytes out "
        "| kept % of input bytes |"
        + (" tokens in | tokens out | kept % of input tokens |" if tokens else "")
        + " wall s | cpu s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" * 3 if tokens else "") + "---:|---:|",
    ]
    for s in stats["stages"]:
        token_cells = (
            f" {s['tokens_in']:,} | {s['tokens_out']:,} | "
            f"{100 * s['tokens_out'] / base_tokens:.1f} |"
            if tokens
            else ""
        )
        lines.append(
            f"| {s['name']} | {s['docs_in']:,} | {s['docs_kept']:,} | {s['docs_rejected']:,} "
            f"| {100 * s['docs_kept'] / base_docs:.1f} | {s['bytes_in']:,} | {s['bytes_out']:,} "
            f"| {100 * s['bytes_out'] / base_bytes:.1f} |{token_cells} {s['wall_s']:.2f} "
            f"| {s['cpu_s']:.2f} |"
        )
    lines += ["", "```"]
    width = 40
    for s in stats["stages"]:
        frac = s["docs_kept"] / base_docs
        lines.append(f"{s['name']:<22} {'#' * round(frac * width):<{width}} {100 * frac:5.1f}%")
    lines += ["```", "", "## Removals by reason", ""]
    for s in stats["stages"]:
        if s["removed_by_reason"]:
            reasons = ", ".join(f"{k} {v:,}" for k, v in s["removed_by_reason"].items())
            lines.append(f"- **{s['name']}**: {reasons}")
            lines += _examples(s.get("examples") or {})
    lines += _histogram_links(stats["stages"])
    lines += _global_section(stats.get("global") or {})
    out = stats["output"]
    lines += [
        "",
        "## Output",
        "",
        f"{out['documents']:,} documents, {out['bytes']:,} bytes of text in "
        f"{len(out['files'])} files under data/ ({out.get('format', 'parquet')}).",
        "",
    ]
    return "\n".join(lines)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>|#])")


def _md(text: str) -> str:
    """`text` shown literally in Markdown (its markup characters escaped)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _examples(examples: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Nested bullets under a stage's removals: per reason, its example documents."""
    lines = []
    for reason, docs in examples.items():
        lines.append(f"  - {reason}, for example:")
        for d in docs:
            ident = str(d["id"]).replace("`", "'")
            where = f" {_md(d['url'])}" if d.get("url") else ""
            text = f": {_md(d['excerpt'])}" if d.get("excerpt") else ": (no text)"
            lines.append(f"    - `{ident}`{where}{text}")
    return lines


def _global_section(summaries: dict[str, Any]) -> list[str]:
    """What each global stage's prepare() reported: scalars, and the LSH S-curve as a table."""
    if not summaries:
        return []
    lines = ["", "## Global stages", ""]
    for label, summary in summaries.items():
        scalars = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))}
        lines.append(f"- **{label}**: " + ", ".join(f"{k} {v}" for k, v in scalars.items()))
        curve = summary.get("s_curve")
        if curve:
            lines += [
                "",
                f"  Probability that a pair at Jaccard s becomes a candidate, "
                f"P(s) = 1 - (1 - s^r)^b with b = {summary.get('num_bands')}, "
                f"r = {summary.get('rows_per_band')}:",
                "",
                "  | s | " + " | ".join(curve) + " |",
                "  |---|" + "---:|" * len(curve),
                "  | P(s) | " + " | ".join(f"{v:.3f}" for v in curve.values()) + " |",
                "",
            ]
        if summary.get("histogram"):
            lines += _histogram_lines(summary["histogram"], summary.get("cut"))
    return lines


def _histogram_lines(hist: dict[str, Any], cut: float | None) -> list[str]:
    """A stored score histogram (runner.histograms) as a table of its non-empty bins, the
    bin holding the cut marked."""
    lines = ["", "  | score bin | documents | kept | cut |", "  |---|---:|---:|---|"]
    for b in hist["bins"]:
        at_cut = cut is not None and b["lo"] <= cut < b["hi"]
        lines.append(
            f"  | [{b['lo']:.4g}, {b['hi']:.4g}) | {b['kept'] + b['rejected']:,} "
            f"| {b['kept']:,} | {f'{cut:.4g}' if at_cut else ''} |"
        )
    return [*lines, ""]


def _histogram_links(stages: list[dict[str, Any]]) -> list[str]:
    """Where the score histograms are: report.html, and a PNG per classifier stage."""
    if not any(s.get("histograms") for s in stages):
        return []
    labels = [s["name"] for s in stages if has_figure(s)]
    lines = ["", "## Score histograms", "", f"Kept vs rejected by score per stage: {HTML_REPORT}."]
    if labels:
        lines += ["", "Classifier stages:", ""]
    return lines + [
        f"- **{label}**: [{figure_name(label)}]({figure_name(label)})" for label in labels
    ]


def write_report(fs: Any, path: str, stats: dict[str, Any]) -> None:
    """report.md, atomically."""
    with atomic_write(fs, path, "w", encoding="utf-8") as f:
        f.write(render_report(stats))
