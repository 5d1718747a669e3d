"""report.html: the run report for a browser, one self-contained file (no network, no scripts).

It shows what report.md shows and the figures Markdown cannot hold: the funnel in documents,
bytes and tokens as bars, per stage the score histograms of kept vs rejected documents with the
thresholds drawn, removals by reason with example documents (when stats.json has them), and the
global stages' summaries with the MinHash S-curve. Figures are inline SVG (runner.svg_plots:
milliseconds to draw). A classifier stage's histogram (one score column compared with a
`threshold` key: langid, classifiers) is also written as `figures/<stage>.svg` beside report.md
(the same drawing, with a legend) and linked from it.
"""

from __future__ import annotations

from html import escape
from typing import Any

from pipeline.io.atomic import atomic_write
from pipeline.runner.histograms import threshold_text
from pipeline.runner.svg_plots import (
    KEPT_COLOR,
    REJECTED_COLOR,
    histogram_svg,
    s_curve_svg,
)

FIGURES_DIR = "figures"
HTML_REPORT = "report.html"

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1180px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}th,td{padding:.25em .6em;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#e8e8e8;width:140px;height:.9em;display:inline-block;vertical-align:middle}
.bar span{background:#4c9f70;height:100%;display:block}
.ex{color:#555;font-size:.92em;margin:.1em 0 .5em 1em}.ex code{color:#333}
svg{border:1px solid #eee;margin:0 .4em .4em 0}.panels{display:flex;flex-wrap:wrap}
.meta{color:#555}
"""


def figure_name(label: str) -> str:
    """The histogram figure of a stage, relative to the run's output directory."""
    return f"{FIGURES_DIR}/{label}.svg"


def has_figure(stage: dict[str, Any]) -> bool:
    """A classifier-like stage (one histogram, compared with the config's `threshold` or, when
    that is null, with none: a top-fraction cut): its histogram is also an SVG beside report.md."""
    hists = stage.get("histograms") or {}
    return len(hists) == 1 and set(next(iter(hists.values()))["thresholds"]) <= {"threshold"}


def write_report_html(fs: Any, root: str, stats: dict[str, Any]) -> None:
    """Write report.html and the SVG of each classifier stage's histogram (atomically)."""
    for s in stats["stages"]:
        if has_figure(s):
            ((column, h),) = s["histograms"].items()
            fs.makedirs(f"{root}/{FIGURES_DIR}", exist_ok=True)
            with atomic_write(fs, f"{root}/{figure_name(s['name'])}", "w", encoding="utf-8") as f:
                f.write(histogram_svg(column, h, title=f"{s['name']}: {column}", legend=True))
                f.write("\n")
    with atomic_write(fs, f"{root}/{HTML_REPORT}", "w", encoding="utf-8") as f:
        f.write(render_html(stats))


def render_html(stats: dict[str, Any]) -> str:
    """The HTML page for a run's stats.json."""
    title = f"Run report{': ' + stats['name'] if stats.get('name') else ''}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Config hash <code>{escape(str(stats["config_hash"]))}</code>, '
        f"version {escape(str(stats['version']))}, wall {stats['wall_s']:.1f} s, "
        f"accounting: <b>{escape(str(stats['accounting']))}</b>.</p>",
        *_input_section(stats),
        *_funnel_section(stats),
        *_histogram_section(stats),
        *_reasons_section(stats),
        *_global_section(stats.get("global") or {}),
        *_output_section(stats),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _input_section(stats: dict[str, Any]) -> list[str]:
    reader = stats["reader"]
    out = [
        "<h2>Input</h2>",
        f"<p>{stats['inputs']['units']} units "
        f"({escape(', '.join(stats['inputs']['formats']))}): {reader['records']:,} records "
        f"&rarr; {reader['documents']:,} documents, {sum(reader['skipped'].values()):,} "
        "skipped.</p>",
    ]
    if reader["skipped"]:  # folded (a native <details>, no script): the funnel comes first
        out += ["<details><summary>Skipped records by reason</summary>"]
        out += _table(["skipped record reason", "count"], list(reader["skipped"].items()))
        out += ["</details>"]
    if reader["errors"]:
        out += [f"<details><summary>Input errors ({len(reader['errors'])})</summary><ul>"]
        out += [f"<li>{escape(e)}</li>" for e in reader["errors"]] + ["</ul></details>"]
    return out


def _funnel_section(stats: dict[str, Any]) -> list[str]:
    """Per stage: documents, bytes and (with output.tokenizer) tokens kept, as % of the input."""
    stages = stats["stages"]
    if not stages:
        return []
    measures = [("docs", "docs_in", "docs_kept"), ("bytes", "bytes_in", "bytes_out")]
    if "tokens_in" in stages[0]:
        measures.append(("tokens", "tokens_in", "tokens_out"))
    head = ["stage"]
    for unit, _, _ in measures:
        head += [f"{unit} in", f"{unit} kept", f"kept % of input {unit}"]
    head += ["docs rejected", "wall s", "cpu s"]
    rows = ["<h2>Funnel</h2>", "<table>", _row(head, "th")]
    for s in stages:
        cells = [escape(s["name"])]
        for _, first, kept in measures:
            base = max(1, stages[0][first])
            frac = s[kept] / base
            cells += [f"{s[first]:,}", f"{s[kept]:,}", _bar(frac)]
        cells += [f"{s['docs_rejected']:,}", f"{s['wall_s']:.2f}", f"{s['cpu_s']:.2f}"]
        rows.append(_row(cells, "td", raw=True))
    return [*rows, "</table>"]


def _bar(frac: float) -> str:
    pct = 100 * frac
    return f'<span class="bar"><span style="width:{min(100.0, pct):.1f}%"></span></span> {pct:.1f}'


def _histogram_section(stats: dict[str, Any]) -> list[str]:
    stages = [s for s in stats["stages"] if s.get("histograms")]
    if not stages:
        return []
    out = [
        "<h2>Score histograms</h2>",
        "<p>Per stage and thresholded score column: documents the stage "
        f'<span style="color:{KEPT_COLOR}">&#9632; kept</span> and '
        f'<span style="color:{REJECTED_COLOR}">&#9632; rejected</span> (by any of its rules, '
        "stacked) by score, the config's thresholds dashed. Fixed bins: width 0.02 on [-1, 1], "
        "logarithmic beyond.</p>",
    ]
    for s in stages:
        rows = [
            (
                column,
                threshold_text(h),
                sum(b["kept"] for b in h["bins"]),
                sum(b["rejected"] for b in h["bins"]),
                h["missing"]["kept"] + h["missing"]["rejected"],
            )
            for column, h in s["histograms"].items()
        ]
        panels = "".join(histogram_svg(c, h) for c, h in s["histograms"].items())
        out += [
            f"<h3>{escape(s['name'])}</h3>",
            f'<div class="panels">{panels}</div>',
            *_table(["column", "thresholds", "kept", "rejected", "no score"], rows),
        ]
    return out


def _reasons_section(stats: dict[str, Any]) -> list[str]:
    """Removals per stage and reason, with the example documents stats.json holds."""
    out = ["<h2>Removals by reason</h2>"]
    for s in stats["stages"]:
        if not s["removed_by_reason"]:
            continue
        examples = s.get("examples") or {}
        out += [f"<h3>{escape(s['name'])}</h3>", "<table>"]
        out.append(_row(["reason", "documents", "% of stage input"], "th"))
        for reason, n in s["removed_by_reason"].items():
            pct = f"{100 * n / max(1, s['docs_in']):.1f}"
            out.append(_row([reason, f"{n:,}", pct], "td"))
            shown = examples.get(reason) or []
            if shown:
                items = "".join(_example(e) for e in shown)
                out.append(f'<tr><td colspan="3"><div class="ex">{items}</div></td></tr>')
        out.append("</table>")
    return out


def _example(e: dict[str, Any]) -> str:
    """One example document: id, URL (as text: the report loads nothing), excerpt."""
    ident = escape(str(e.get("id") or ""))
    url = escape(str(e.get("url") or ""))
    excerpt = escape(str(e.get("excerpt") or ""))
    return f"<p><code>{ident}</code> <code>{url}</code><br>{excerpt}</p>"


def _global_section(summaries: dict[str, Any]) -> list[str]:
    """Each global stage's prepare() summary: its scalars, and the LSH S-curve or a score
    histogram as a figure."""
    if not summaries:
        return []
    out = ["<h2>Global stages</h2>"]
    for label, summary in summaries.items():
        scalars = [(k, v) for k, v in summary.items() if not isinstance(v, dict | list)]
        out += [f"<h3>{escape(label)}</h3>", *_table(["key", "value"], scalars)]
        if summary.get("s_curve"):
            out.append(f'<div class="panels">{s_curve_svg(label, summary)}</div>')
        if summary.get("histogram"):  # a score histogram of the stage's own (top_fraction)
            column = str(summary.get("column", label))
            out.append(f'<div class="panels">{histogram_svg(column, summary["histogram"])}</div>')
    return out


def _output_section(stats: dict[str, Any]) -> list[str]:
    out = stats["output"]
    return [
        "<h2>Output</h2>",
        f"<p>{out['documents']:,} documents, {out['bytes']:,} bytes of text in "
        f"{len(out['files'])} files under data/ ({escape(out.get('format', 'parquet'))}).</p>",
    ]


def _table(head: list[str], rows: list[tuple[Any, ...]]) -> list[str]:
    return [
        "<table>",
        _row(head, "th"),
        *(_row([_cell(v) for v in r], "td") for r in rows),
        "</table>",
    ]


def _cell(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _row(cells: list[str], tag: str, raw: bool = False) -> str:
    """A table row; cells escaped unless `raw`; numeric-looking data cells right-aligned."""
    out = []
    for c in cells:
        text = c if raw else escape(c)
        numeric = tag == "td" and c[:1].isdigit()
        out.append(f"<{tag}{' class=n' if numeric else ''}>{text}</{tag}>")
    return "<tr>" + "".join(out) + "</tr>"
