"""Medians, ratios and the markdown table the harness prints (pure functions, no I/O)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

PEER = "datatrove"
COLUMNS = (
    "workload",
    "side",
    "docs",
    "wall s",
    "CPU s",
    "docs/s",
    "MB/s in",
    "peak RSS MiB",
    "speed ratio",
    "CPU ratio",
    "RSS ratio",
)


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are not None (None when there are none)."""
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs, or None when either is missing or theirs is zero."""
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def summarize(runs: Sequence[dict[str, Any]], docs: int, input_bytes: int) -> dict[str, Any]:
    """Median wall / CPU / peak RSS over repeated runs, and the rates at the median wall time."""
    wall = median(r["wall_s"] for r in runs)
    return {
        "runs": len(runs),
        "docs": docs,
        "input_mb": input_bytes / 1e6,
        "wall_s": wall,
        "cpu_s": median(r.get("cpu_s") for r in runs),
        "peak_rss_mib": median(r.get("peak_rss_mib") for r in runs),
        "docs_per_s": docs / wall if wall else None,
        "mb_per_s": input_bytes / 1e6 / wall if wall else None,
    }


def with_ratios(rows: dict[str, dict[str, Any]], peer: str = PEER) -> dict[str, dict[str, Any]]:
    """Each non-peer row gains ratios against the peer row: speed = MB/s ours / MB/s peer (the
    same input, so = peer wall / our wall; > 1: we are faster), CPU = peer CPU s / our CPU s
    (> 1: we need less CPU), RSS = our peak / peer peak (< 1: we use less memory)."""
    base = rows.get(peer)
    out = {}
    for side, row in rows.items():
        row = dict(row)
        if base is not None and side != peer:
            row["ratio_speed"] = ratio(row.get("mb_per_s"), base.get("mb_per_s"))
            row["ratio_cpu"] = ratio(base.get("cpu_s"), row.get("cpu_s"))
            row["ratio_rss"] = ratio(row.get("peak_rss_mib"), base.get("peak_rss_mib"))
        out[side] = row
    return out


def fmt(value: Any, digits: int = 1) -> str:
    """A table cell: '' for None, thousands separators for large numbers."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    """A ratio cell such as '1.23x' (bold when >= 1)."""
    if value is None:
        return ""
    text = f"{value:.2f}x"
    return f"**{text}**" if value >= 1 else text


def markdown(
    results: dict[str, dict[str, dict[str, Any]]], bases: dict[str, str] | None = None
) -> str:
    """One markdown table: a row per (workload, side); the ratio columns compare each row with
    its workload's base row (`bases[workload]`, default the peer: ours/datatrove)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * 2 + "---:|" * (len(COLUMNS) - 2)]
    for workload, rows in results.items():
        base = (bases or {}).get(workload, PEER)
        for side, r in with_ratios(rows, base).items():
            cells = [
                workload,
                side,
                fmt(r.get("docs")),
                fmt(r.get("wall_s")),
                fmt(r.get("cpu_s")),
                fmt(r.get("docs_per_s")),
                fmt(r.get("mb_per_s"), 2),
                fmt(r.get("peak_rss_mib"), 0),
                fmt_ratio(r.get("ratio_speed")),
                fmt_ratio(r.get("ratio_cpu")),
                "" if r.get("ratio_rss") is None else f"{r['ratio_rss']:.2f}x",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


SUMMARY_COLUMNS = ("workload", "datatrove", "ours", "ratio", "machine load", "date")


def side_cell(row: dict[str, Any]) -> str:
    """'41.2 docs/s (wall 120.3 s, CPU 230.1 s, peak RSS 812 MiB)' for a summary table."""
    return (
        f"{fmt(row.get('docs_per_s'))} docs/s (wall {fmt(row.get('wall_s'))} s, "
        f"CPU {fmt(row.get('cpu_s'))} s, peak RSS {fmt(row.get('peak_rss_mib'), 0)} MiB)"
    )


def docs_per_cpu_s(row: dict[str, Any]) -> float | None:
    """Documents per CPU second of a summarized row (None without CPU time)."""
    return ratio(row.get("docs"), row.get("cpu_s"))


def load_range(runs: Iterable[dict[str, Any]]) -> str:
    """'3.1-5.4' (the 1-minute load average at the start of the runs), '' when unrecorded."""
    loads = [r["load_1min"] for r in runs if r.get("load_1min") is not None]
    if not loads:
        return ""
    low, high = min(loads), max(loads)
    return f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}-{high:.1f}"


def summary_markdown(
    workloads: dict[str, dict[str, Any]], date: str, bases: dict[str, str] | None = None
) -> str:
    """The one-line-per-comparison summary (docs/benchmarks.md's top table): each of our rows
    of each workload against each base row (default datatrove's; its labelled variants such as
    'datatrove, whitespace words ...' too): the ratios ours / theirs of docs/s (wall) and of
    documents per CPU second (the per-core figure, steadier on a loaded machine; > 1: we are
    faster), with the load range of all the workload's runs. `workloads`: the harness's
    results["workloads"]."""
    lines = [
        "| " + " | ".join(SUMMARY_COLUMNS) + " |",
        "|---|---|---|---|---|---|",
    ]
    for name, res in workloads.items():
        base = (bases or {}).get(name, PEER)
        rows = res["rows"]
        theirs = [s for s in rows if s == base or s.startswith(f"{base},")]
        load = load_range(r for rs in res["runs"].values() for r in rs)
        for side in (s for s in rows if s not in theirs):
            for peer in theirs:
                speed = ratio(rows[side].get("docs_per_s"), rows[peer].get("docs_per_s"))
                per_cpu = ratio(docs_per_cpu_s(rows[side]), docs_per_cpu_s(rows[peer]))
                label = name + ("" if side == "ours" else f", {side}")
                cells = [
                    label + ("" if peer == base else f" vs {peer}"),
                    side_cell(rows[peer]),
                    side_cell(rows[side]),
                    f"{fmt_ratio(speed)} docs/s, {fmt_ratio(per_cpu)} docs/CPU-s",
                    load,
                    date,
                ]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
