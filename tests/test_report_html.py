"""report.html: self-contained (nothing loaded from the network, images inline), its numbers the
ones of stats.json; the histogram figures beside report.md, linked from it."""

from __future__ import annotations

import json
import re
from html import escape as html_escape
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest

from pipeline.config import recipe_from_dict
from pipeline.runner.report import render_report
from pipeline.runner.report_html import render_html
from pipeline.runner.run import run_recipe
from pipeline.runner.svg_plots import symlog, x_ticks


def assert_self_contained(html: str) -> None:
    """Nothing that a browser would fetch: no remote or relative src/href, no scripts, no
    stylesheets by link, no CSS imports or url()."""
    assert not re.search(r"""\s(?:src|href)\s*=\s*(?!["']?data:)""", html, re.I)
    for banned in ("<script", "<link", "@import", "url(", "<iframe", "<object"):
        assert banned not in html.lower()


@pytest.fixture(scope="module")
def run_out(shared_data, tmp_path_factory) -> tuple[Any, dict[str, Any]]:
    """A local run over the DCLM agreement documents: a classifier (langid), a stage of many
    thresholds, MinHash."""
    out = tmp_path_factory.mktemp("report") / "out"
    recipe = recipe_from_dict(
        {
            "name": "html",
            "input": {"paths": [str(shared_data / "quality" / "dclm-agreement.jsonl")]},
            "output": {"path": str(out)},
            "runtime": {"executor": "local"},
            "stages": [
                {"stage": "langid", "threshold": 0.8},
                {"stage": "gopher_quality"},
                {"stage": "minhash_dedup", "preset": "fineweb"},
            ],
        }
    )
    return out, run_recipe(recipe).stats


def test_report_html_is_self_contained_with_its_figures_inline(run_out) -> None:
    out, stats = run_out
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert_self_contained(html)
    langid, gopher, _ = stats["stages"]
    svgs = re.findall(r'<svg [^>]*aria-label="([^"]*)"[^>]*>(.*?)</svg>', html)
    labels = [label for label, _ in svgs]
    assert labels == [
        "histogram of lang_score",
        *(f"histogram of {c}" for c in gopher["histograms"]),
        "S-curve of minhash_dedup",
    ]
    # Each panel draws one bar per non-empty (bin, kept) and (bin, rejected) count.
    for (label, body), column in zip(svgs, ["lang_score", *gopher["histograms"]], strict=False):
        bins = (langid if column == "lang_score" else gopher)["histograms"][column]["bins"]
        assert body.count("<rect") == sum((b["kept"] > 0) + (b["rejected"] > 0) for b in bins)
        thresholds = (langid if column == "lang_score" else gopher)["histograms"][column]
        assert body.count('stroke-dasharray="4 3"') == len(thresholds["thresholds"]), label
    # The classifier stage's histogram is also an SVG file beside report.md, linked from it: a
    # well-formed SVG document with the panel's bars and threshold, titled, with a legend.
    assert [p.name for p in (out / "figures").iterdir()] == ["langid.svg"]
    figure = (out / "figures" / "langid.svg").read_text(encoding="utf-8")
    root = ElementTree.fromstring(figure)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts[0] == "langid: lang_score" and {"kept", "rejected"} <= set(texts)
    panel = dict(svgs)["histogram of lang_score"]
    assert figure.count("<rect") == panel.count("<rect") + 2  # the legend's two swatches
    assert figure.count('stroke-dasharray="4 3"') == 1
    report_md = (out / "report.md").read_text(encoding="utf-8")
    assert "- **langid**: [figures/langid.svg](figures/langid.svg)" in report_md
    assert json.loads((out / "stats.json").read_text())["stages"] == stats["stages"]


def test_report_html_numbers_are_those_of_stats_json(run_out) -> None:
    out, stats = run_out
    html = (out / "report.html").read_text(encoding="utf-8")
    langid, gopher, minhash = stats["stages"]
    assert langid["docs_in"] == 281
    base_bytes = langid["bytes_in"]
    for s in stats["stages"]:
        row = re.search(rf"<tr><td>{s['name']}</td>(.*?)</tr>", html).group(1)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert cells[0:2] == [f"{s['docs_in']:,}", f"{s['docs_kept']:,}"]
        assert cells[2].endswith(f" {100 * s['docs_kept'] / 281:.1f}")
        assert cells[3:5] == [f"{s['bytes_in']:,}", f"{s['bytes_out']:,}"]
        assert cells[5].endswith(f" {100 * s['bytes_out'] / base_bytes:.1f}")
        assert cells[6] == f"{s['docs_rejected']:,}"
    for reason, n in gopher["removed_by_reason"].items():
        assert f"<tr><td>{reason}</td><td class=n>{n:,}</td>" in html
        for example in gopher["examples"][reason]:  # the run's examples, each shown
            assert f"<code>{html_escape(example['id'])}</code>" in html
    # The histogram table: per column its thresholds and the documents kept and rejected.
    n_words = gopher["histograms"]["gopher_n_words"]
    assert (
        "<tr><td>gopher_n_words</td><td>min_doc_words 50, max_doc_words 100000</td>"
        f"<td class=n>{sum(b['kept'] for b in n_words['bins']):,}</td>"
        f"<td class=n>{sum(b['rejected'] for b in n_words['bins']):,}</td>" in html
    )
    summary = stats["global"]["minhash_dedup"]
    assert f"<tr><td>num_bands</td><td class=n>{summary['num_bands']}</td></tr>" in html
    assert f"{stats['output']['documents']:,} documents" in html
    assert stats["output"]["documents"] == minhash["docs_kept"]


def _stats(**stage: Any) -> dict[str, Any]:
    """A hand-made stats.json of one stage."""
    base = {
        "name": "s",
        "docs_in": 10,
        "docs_kept": 7,
        "docs_rejected": 3,
        "bytes_in": 1000,
        "bytes_out": 600,
        "wall_s": 0.1,
        "cpu_s": 0.1,
        "removed_by_reason": {"s_bad": 3},
        "metrics": {},
        "warnings": [],
        "first_error": None,
    }
    return {
        "name": "hand <made>",
        "config_hash": "abc",
        "version": "0",
        "wall_s": 1.0,
        "accounting": "ok",
        "inputs": {"units": 1, "formats": ["jsonl"]},
        "reader": {"records": 10, "documents": 10, "bytes_read": 1, "skipped": {}, "errors": []},
        "stages": [base | stage],
        "output": {"documents": 7, "bytes": 600, "files": ["data/part-00000.parquet"]},
        "global": {},
    }


def test_examples_of_removals_are_shown_escaped_and_urls_are_not_links() -> None:
    examples = {
        "s_bad": [
            {
                "id": "doc-1",
                "url": "https://example.com/a?b=1&c=2",
                "excerpt": "<script>x</script>",
            },
            {"id": "doc-2", "url": None, "excerpt": "plain words"},
        ]
    }
    html = render_html(_stats(examples=examples))
    assert_self_contained(html)
    assert "<code>doc-1</code> <code>https://example.com/a?b=1&amp;c=2</code>" in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "plain words" in html
    assert "<title>Run report: hand &lt;made&gt;</title>" in html
    assert render_html(_stats()).count('class="ex"') == 0  # no examples: none shown
    with pytest.raises(AssertionError):  # the check itself catches a fetched resource
        assert_self_contained('<p>x</p><img alt="a" src="https://example.com/a.png">')


def test_the_funnel_shows_tokens_when_counted_and_histograms_only_when_present() -> None:
    html = render_html(_stats(tokens_in=500, tokens_out=200))
    assert "<th>tokens in</th><th>tokens kept</th>" in html
    assert "<td class=n>500</td><td class=n>200</td>" in html and " 40.0</td>" in html
    plain = render_html(_stats())
    assert "tokens in" not in plain and "Score histograms" not in plain and "<svg" not in plain
    assert "## Score histograms" not in render_report(_stats())


def test_svg_axes_are_linear_on_fractions_and_logarithmic_beyond() -> None:
    assert symlog(np.array([-100.0, -1.0, 0.0, 0.5, 1.0, 10.0, 1000.0])).tolist() == [
        -3.0,
        -1.0,
        0.0,
        0.5,
        1.0,
        2.0,
        4.0,
    ]
    assert x_ticks(0.0, 0.3) == [0.0, 0.1, 0.2, 0.3]
    assert x_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert x_ticks(0.0, 2e4) == [0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0]
    assert x_ticks(20.0, 3e9) == [100.0, 10000.0, 1e6, 1e8]  # many decades: every other one
    assert x_ticks(-5.0, 5.0) == [-1.0, 0.0, 1.0]


def test_curate_run_names_report_html(shared_data, tmp_path, capsys) -> None:
    from pipeline.cli import main

    recipe = tmp_path / "r.yaml"
    out = tmp_path / "out"
    recipe.write_text(
        f"input:\n  paths: [{shared_data / 'quality' / 'dclm-agreement.jsonl'}]\n"
        f"output:\n  path: {out}\nruntime:\n  executor: local\n"
        "stages:\n  - stage: gopher_quality\n"
    )
    assert main(["run", str(recipe)]) == 0
    assert f"html: {out}/report.html" in capsys.readouterr().out
    assert_self_contained((out / "report.html").read_text(encoding="utf-8"))


def test_classifier_stages_get_a_png_and_rule_stages_do_not() -> None:
    from pipeline.runner.report_html import has_figure

    def hist(**thresholds: float) -> dict[str, Any]:
        return {"thresholds": thresholds, "bins": [], "missing": {"kept": 0, "rejected": 0}}

    assert has_figure({"histograms": {"lang_score": hist(threshold=0.65)}})
    assert has_figure({"histograms": {"quality_prob": hist()}})  # threshold null: top fraction
    assert not has_figure({"histograms": {"url_soft_word_count": hist(soft_word_threshold=2)}})
    assert not has_figure({"histograms": {"a": hist(threshold=1), "b": hist(threshold=2)}})
    assert not has_figure({"name": "extract"})
