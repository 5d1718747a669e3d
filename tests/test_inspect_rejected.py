"""`curate inspect RUN --stage S --reason R -n N` (the removed documents of one stage and
reason), and `output.keep_rejected_html` (extract's rejected pages keep their HTML)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import recipe_from_dict
from pipeline.io.base import ReaderStats
from pipeline.io.options import InputConfig
from pipeline.io.sources import plan_units, read_unit
from pipeline.runner.kernel import Scored, excerpt, split
from tests.faults.helpers import FAST_EXTRACT, WGET, curate, write_recipe

STAGES = [FAST_EXTRACT, {"stage": "gopher_quality"}]


@pytest.fixture(scope="module")
def run(shared_data: Path, tmp_path_factory) -> Path:
    """Every shared WARC through extract and gopher_quality, rejected documents (and extract's
    rejected HTML) kept."""
    tmp = tmp_path_factory.mktemp("inspect")
    out = tmp / "out"
    recipe = write_recipe(
        tmp / "r.yaml",
        [shared_data / "warc" / "*.warc.gz"],
        out,
        STAGES,
        output_options={"keep_rejected_html": True},
    )
    from pipeline.cli import main

    assert main(["run", str(recipe)]) == 0
    return out


def _rejected(out: Path, stage: str, reason: str | None = None) -> list[dict[str, Any]]:
    """Rejected rows of a stage in unit order (shard names follow the units)."""
    shards = sorted((out / "rejected" / stage).glob("part-*.parquet"))
    rows = pa.concat_tables([pq.read_table(p) for p in shards], promote_options="permissive")
    return [r for r in rows.to_pylist() if reason in (None, r["reason"])]


def _shown_ids(text: str) -> list[str]:
    return [line.split()[1] for line in text.splitlines() if line.startswith("[")]


@pytest.mark.e2e
def test_inspect_shows_the_first_documents_of_a_stage_and_reason(capsys, run) -> None:
    result = curate(capsys, "inspect", run, "--stage", "gopher_quality", "--reason",
                    "gopher_short_doc", "-n", "5")  # fmt: skip
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == (
        "gopher_quality removed 20 documents as gopher_short_doc; the first 5 from "
        "rejected/gopher_quality/"
    )
    expected = _rejected(run, "gopher_quality", "gopher_short_doc")[:5]
    assert _shown_ids(result.out) == [r["id"] for r in expected]
    first = expected[0]
    at = lines.index(f"[0] {first['id']}  gopher_short_doc")
    assert lines[at + 1] == f"    url: {first['url']}"
    assert f"    gopher_n_words: {first['gopher_n_words']}" in lines[at + 2 : at + 12]
    assert f"    text: {excerpt(first['text'])}" in lines[at + 2 : at + 12]
    # The stats.json examples are the first three of the same list.
    stats = json.loads((run / "stats.json").read_text())
    examples = stats["stages"][1]["examples"]["gopher_short_doc"]
    assert [e["id"] for e in examples] == _shown_ids(result.out)[:3]


@pytest.mark.e2e
def test_inspect_a_stage_without_reason_and_more_than_there_are(capsys, run) -> None:
    result = curate(capsys, "inspect", run, "--stage", "extract", "-n", "10")
    assert result.code == 0, result.err
    assert (
        result.out.splitlines()[0]
        == "extract removed 3 documents; the first 3 from rejected/extract/"
    )
    assert _shown_ids(result.out) == [r["id"] for r in _rejected(run, "extract")]
    # output.keep_rejected_html: an extract_empty page can be looked at.
    html_lines = [line for line in result.out.splitlines() if line.startswith("    html: <")]
    assert len(html_lines) == 3 and "    text: (empty)" in result.out


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stage", "nope"], "the run has no stage 'nope'; its stages: extract, gopher_quality"),
        (
            ["--stage", "gopher_quality", "--reason", "extract_empty"],
            "stage gopher_quality removed no document as 'extract_empty'; its reasons: "
            "gopher_mean_word_len 35, gopher_alpha_words 25, gopher_short_doc 20, "
            "gopher_stop_words 6, gopher_symbol_ratio 1",
        ),
        (
            ["--reason", "extract_empty"],
            "--reason needs --stage: removal reasons belong to a stage",
        ),
    ],
)
def test_unknown_stage_or_reason_names_the_ones_that_exist(capsys, run, args, message) -> None:
    result = curate(capsys, "inspect", run, *args)
    assert (result.code, result.out, result.err) == (2, "", f"curate: error: {message}\n")


def test_inspect_stage_of_something_that_is_not_a_run(capsys, tmp_path) -> None:
    result = curate(capsys, "inspect", tmp_path, "--stage", "extract")
    assert result.code == 2
    assert result.err == (
        f"curate: error: {tmp_path} is not a run directory (no _run/): --stage reads a run's "
        "rejected documents\n"
    )


@pytest.mark.e2e
def test_a_run_without_rejected_shards_shows_its_stats_examples(capsys, tmp_path) -> None:
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [WGET], out, STAGES,
                          output_options={"keep_rejected": False})  # fmt: skip
    assert curate(capsys, "run", recipe).code == 0
    result = curate(capsys, "inspect", out, "--stage", "gopher_quality", "-n", "5")
    stats = json.loads((out / "stats.json").read_text())
    gopher = stats["stages"][1]
    assert gopher["removed_by_reason"] == {"gopher_short_doc": 1}
    example = gopher["examples"]["gopher_short_doc"][0]
    assert result.out.splitlines() == [
        "gopher_quality removed 1 document; the run kept no rejected/gopher_quality/ shards "
        "(rerun with --keep-rejected for all of them): 1 example(s) from stats.json",
        f"[0] {example['id']}  gopher_short_doc",
        f"    url: {example['url']}",
        f"    text: {example['excerpt']}",
    ]


def _pages(paths: list[Path]) -> dict[str, str]:
    """id -> HTML of every page the WARC reader yields."""
    cfg = InputConfig(paths=[str(p) for p in paths])
    out = {}
    for unit in plan_units(cfg):
        for batch in read_unit(unit, cfg, ReaderStats(), 256):
            out.update(
                zip(batch.column("id").to_pylist(), batch.column("html").to_pylist(), strict=True)
            )
    return out


@pytest.mark.e2e
def test_keep_rejected_html_keeps_the_page_of_each_extract_rejection(run, shared_data) -> None:
    rows = _rejected(run, "extract")
    pages = _pages(sorted((shared_data / "warc").glob("*.warc.gz")))
    assert [r["reason"] for r in rows] == ["extract_empty"] * 3
    for r in rows:
        assert r["html"] == pages[r["id"]] and len(r["html"].encode()) == r["html_bytes"]
    # Only extract's rejections carry HTML; the kept documents never do.
    assert "html" not in pq.read_schema(next((run / "rejected" / "gopher_quality").iterdir())).names
    assert "html" not in pq.read_schema(next((run / "data").iterdir())).names
    # ... and the examples in stats.json show the start of it.
    stats = json.loads((run / "stats.json").read_text())
    shown = stats["stages"][0]["examples"]["extract_empty"]
    assert [e["excerpt"] for e in shown] == [excerpt(r["html"]) for r in rows]


def test_keep_rejected_html_needs_keep_rejected(capsys, tmp_path) -> None:
    out = tmp_path / "out"
    options = {"keep_rejected": False, "keep_rejected_html": True}
    recipe = write_recipe(tmp_path / "r.yaml", [WGET], out, STAGES, output_options=options)
    result = curate(capsys, "run", recipe)
    assert result.code == 2 and not out.exists()
    assert result.err == (
        f"curate: error: {recipe}: output.keep_rejected_html keeps HTML in rejected/ shards, "
        "which are written only with output.keep_rejected: true (or --keep-rejected); "
        "nothing was run\n"
    )


def test_keep_rejected_html_at_its_default_leaves_the_config_hash_alone() -> None:
    base = {"output": {"path": "/tmp/unused"}, "stages": STAGES}
    on = recipe_from_dict({**base, "output": {"path": "/tmp/u", "keep_rejected_html": True}})
    off = recipe_from_dict(base)
    assert "keep_rejected_html" not in off.fingerprint_dict()["output"]
    assert on.fingerprint_dict()["output"]["keep_rejected_html"] is True


def test_split_restores_a_dropped_column_on_failed_and_rejected_rows_alike() -> None:
    batch = pa.table({"id": list("abcd"), "html": ["<a>", "<b>", "<c>", "<d>"]})
    # Rows 0 and 2 scored (html dropped, text made); row 1 failed; row 3 scored and kept.
    scored_rows = pa.table({"id": ["a", "c", "d"], "text": ["", "", "ok"]})
    scored = Scored(scored_rows, np.array([0, 2, 3]), np.array([1]), None)
    reasons = np.array(["extract_empty", "extract_error", "extract_empty", None], dtype=object)
    kept, rejected = split(batch, scored, reasons, restore=("html",))
    assert kept.to_pylist() == [{"id": "d", "text": "ok"}]
    assert rejected.select(["id", "html", "reason"]).to_pylist() == [
        {"id": "a", "html": "<a>", "reason": "extract_empty"},
        {"id": "b", "html": "<b>", "reason": "extract_error"},
        {"id": "c", "html": "<c>", "reason": "extract_empty"},
    ]
    _, without = split(batch, scored, reasons)
    assert without.column("html").to_pylist() == [None, "<b>", None]
