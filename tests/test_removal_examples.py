"""Examples of every removal: stats.json keeps, per stage and reason, the first few removed
documents (id, URL, excerpt) in unit then row order, the same on any executor; report.md shows
them under the stage's removals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import recipe_from_dict
from pipeline.runner.accounting import MAX_EXAMPLES, StageStats, sum_units
from pipeline.runner.kernel import EXCERPT_CHARS, excerpt, note_examples
from pipeline.runner.report import render_report
from pipeline.runner.run import run_recipe
from tests.faults.helpers import FAST_EXTRACT

# A global stage between map stages: its removals are examples too.
STAGES = [FAST_EXTRACT, {"stage": "exact_dedup"}, {"stage": "gopher_quality"}]


def _run(shared_data: Path, out: Path, **runtime: Any) -> dict[str, Any]:
    recipe = {
        "input": {"paths": [str(shared_data / "warc" / "*.warc.gz")]},
        "output": {"path": str(out), "keep_rejected": True},
        "runtime": {"executor": "local", "batch_size": 16, "progress": "off", **runtime},
        "stages": STAGES,
    }
    return run_recipe(recipe_from_dict(recipe)).stats


@pytest.fixture(scope="module")
def local_run(shared_data: Path, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("examples") / "out"
    return out, _run(shared_data, out)


def _first_rejected(out: Path, stage: str) -> dict[str, list[dict[str, Any]]]:
    """The first MAX_EXAMPLES rejected rows per reason, read from rejected/<stage>/ shards in
    unit order (shard names follow the units)."""
    shards = sorted((out / "rejected" / stage).glob("part-*.parquet"))
    rows = pa.concat_tables([pq.read_table(p) for p in shards]).to_pylist()
    first: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        docs = first.setdefault(row["reason"], [])
        if len(docs) < MAX_EXAMPLES:
            docs.append({"id": row["id"], "url": row["url"], "excerpt": excerpt(row["text"])})
    return first


@pytest.mark.e2e
def test_stats_keep_the_first_removed_documents_of_every_reason(local_run) -> None:
    out, stats = local_run
    by_name = {s["name"]: s for s in stats["stages"]}
    assert stats["inputs"]["units"] == 9
    assert by_name["extract"]["removed_by_reason"] == {"extract_empty": 3}
    assert by_name["exact_dedup"]["removed_by_reason"] == {"exact_duplicate": 16}
    gopher = by_name["gopher_quality"]
    assert gopher["removed_by_reason"] == {
        "gopher_mean_word_len": 35,
        "gopher_alpha_words": 25,
        "gopher_short_doc": 16,
        "gopher_stop_words": 6,
        "gopher_symbol_ratio": 1,
    }
    for s in stats["stages"]:
        examples = s["examples"]
        assert list(examples) == list(s["removed_by_reason"])  # same reasons, same order
        for reason, count in s["removed_by_reason"].items():
            assert len(examples[reason]) == min(count, MAX_EXAMPLES)
        assert examples == _first_rejected(out, s["name"])
    short = gopher["examples"]["gopher_short_doc"][0]
    assert short["url"].startswith("http") and 0 < len(short["excerpt"]) <= EXCERPT_CHARS
    assert "\n" not in short["excerpt"]
    # extract leaves an empty page's text empty (its HTML is kept only on request).
    assert all(d["excerpt"] == "" for d in by_name["extract"]["examples"]["extract_empty"])


@pytest.mark.e2e
def test_report_shows_the_examples_under_each_stage(local_run) -> None:
    out, stats = local_run
    report = (out / "report.md").read_text()
    assert report == render_report(json.loads((out / "stats.json").read_text()))
    section = report.split("## Removals by reason")[1].split("\n## ")[0]
    gopher = next(s for s in stats["stages"] if s["name"] == "gopher_quality")
    first = gopher["examples"]["gopher_symbol_ratio"][0]
    lines = section.splitlines()
    at = lines.index("  - gopher_symbol_ratio, for example:")
    assert lines[at + 1].startswith(f"    - `{first['id']}` {first['url']}: ")
    assert section.count(", for example:") == 7
    assert section.count("\n    - `") == 3 + 3 + 3 * 4 + 1
    assert "    - `" + stats["stages"][0]["examples"]["extract_empty"][0]["id"] in section


@pytest.mark.e2e
def test_ray_picks_the_same_examples_as_the_local_executor(
    local_run, shared_data, tmp_path, ray_session
) -> None:
    _, local = local_run
    ray = _run(shared_data, tmp_path / "ray", executor="ray", num_workers=2)
    assert [s["examples"] for s in ray["stages"]] == [s["examples"] for s in local["stages"]]


def _doc(i: int, reason: str) -> dict[str, Any]:
    return {"id": f"d{i}", "url": None, "text": f"text {i}", "reason": reason}


def test_examples_merge_in_unit_order_and_stop_at_the_limit() -> None:
    units = []
    for u in range(3):
        st = StageStats("s")
        rows = [_doc(10 * u + i, "a" if i % 2 else "b") for i in range(4)]
        st.reasons.update(r["reason"] for r in rows)
        st.docs_in = st.docs_rejected = 4
        note_examples(st, pa.Table.from_pylist(rows))
        stages = [st.to_dict()]
        units.append({"reader": _reader(), "stages": stages, "output_docs": 0, "output_bytes": 0})
    total = sum_units(units, ["s"])["stages"][0]["examples"]
    assert [d["id"] for d in total["b"]] == ["d0", "d2", "d10"]
    assert [d["id"] for d in total["a"]] == ["d1", "d3", "d11"]
    assert total["a"][0] == {"id": "d1", "url": None, "excerpt": "text 1"}


def _reader() -> dict[str, Any]:
    return {"records": 0, "documents": 0, "bytes_read": 0, "skipped": {}, "errors": []}


def test_note_examples_fills_a_reason_across_batches_without_reading_more() -> None:
    st = StageStats("s")
    note_examples(st, pa.Table.from_pylist([_doc(0, "a")]))
    note_examples(st, pa.Table.from_pylist([_doc(i, "a") for i in range(1, 6)]))
    assert [d["id"] for d in st.examples["a"]] == ["d0", "d1", "d2"]
    note_examples(st, pa.Table.from_pylist([_doc(9, "a")]))
    assert len(st.examples["a"]) == MAX_EXAMPLES


def test_excerpt_collapses_whitespace_and_bounds_length() -> None:
    assert excerpt("  Hello,\n\n\tworld  ") == "Hello, world"
    assert excerpt(None) == "" and excerpt("") == ""
    long = excerpt("word " * 1000)
    assert len(long) == EXCERPT_CHARS and long.endswith("\u2026")
    assert excerpt("x" * EXCERPT_CHARS) == "x" * EXCERPT_CHARS


def test_note_examples_uses_the_html_of_a_page_without_text() -> None:
    st = StageStats("extract")
    table = pa.table(
        {
            "id": ["p"],
            "url": ["https://example.org/"],
            "text": [""],
            "html": ["<html><body>\n  <script>x()</script></body></html>"],
            "reason": ["extract_empty"],
        }
    )
    note_examples(st, table)
    assert st.examples == {
        "extract_empty": [
            {
                "id": "p",
                "url": "https://example.org/",
                "excerpt": "<html><body> <script>x()</script></body></html>",
            }
        ]
    }


def test_report_escapes_markup_in_excerpts() -> None:
    from pipeline.runner.report import _examples

    lines = _examples({"r": [{"id": "a`b", "url": "https://x/", "excerpt": "<b>*bold*</b> | x"}]})
    assert lines == [
        "  - r, for example:",
        "    - `a'b` https://x/: \\<b\\>\\*bold\\*\\</b\\> \\| x",
    ]
