"""Ablations: variants equal their direct runs; shared scores are computed once; caches invalidate
exactly the stages that depend on a change."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from pipeline.ablate import cache as cache_module
from pipeline.ablate.run import run_ablation
from pipeline.ablate.spec import load_ablation
from pipeline.errors import ConfigError, OutputError
from pipeline.runner.run import run_recipe
from tests.test_runner import read_output

BASE = """\
input:
  paths: {inputs}
output:
  path: unused
  keep_rejected: true
runtime:
  executor: local
  batch_size: 8
stages:
  - stage: extract
    backend: resiliparse  # in-process and the fastest: what is compared comes after it
    timeout_s: null
  - stage: langid
    languages: [en, zh]
  - stage: gopher_repetition
  - stage: gopher_quality
  - stage: line_corrections
"""


def _write(tmp_path: Path, inputs: list[str], variants: str, name: str = "abl.yaml") -> Path:
    (tmp_path / "base.yaml").write_text(BASE.format(inputs=json.dumps(inputs)))
    path = tmp_path / name
    path.write_text(
        f"name: test\nbase: base.yaml\noutput:\n  path: {tmp_path / 'out'}\nvariants:\n{variants}"
    )
    return path


SWEEP = """\
  t50: {set: {langid.threshold: 0.5}}
  t65: {}
  t90: {set: {langid.threshold: 0.9, gopher_quality.min_doc_words: 80}}
  no-rep: {remove: [gopher_repetition]}
"""


@pytest.fixture
def inputs(demo_warc, shared_data) -> list[str]:
    return [str(demo_warc), str(shared_data / "warc" / "cc-main-2020-34-excerpt.warc.gz")]


@pytest.mark.e2e
def test_variants_equal_their_direct_runs(inputs, tmp_path) -> None:
    ablation = load_ablation(_write(tmp_path, inputs, SWEEP))
    result = run_ablation(ablation)
    assert set(result.variants) == {"t50", "t65", "t90", "no-rep"}
    for name, recipe in ablation.variants.items():
        direct = recipe.with_overrides(output={"path": str(tmp_path / "direct" / name)})
        stats = run_recipe(direct).stats
        assert read_output(tmp_path / "out" / "variants" / name).equals(
            read_output(tmp_path / "direct" / name)
        ), name
        ours = result.variants[name]
        for a, b in zip(ours["stages"], stats["stages"], strict=True):
            for key in (
                "name",
                "docs_in",
                "docs_kept",
                "docs_rejected",
                "bytes_in",
                "bytes_out",
                "removed_by_reason",
                "examples",
            ):
                assert a[key] == b[key], (name, a["name"], key)
            # Score histograms too, with the variant's thresholds (t90: langid 0.9).
            assert a.get("histograms") == b.get("histograms"), (name, a["name"])
        assert ours["reader"] == stats["reader"]
    langid = {
        n: next(s for s in v["stages"] if s["name"] == "langid") for n, v in result.variants.items()
    }
    assert langid["t90"]["histograms"]["lang_score"]["thresholds"] == {"threshold": 0.9}
    # The same scores (from the cache), split at another threshold.
    t50, t90 = (langid[n]["histograms"]["lang_score"]["bins"] for n in ("t50", "t90"))
    assert {b["lo"]: b["kept"] + b["rejected"] for b in t50} == {
        b["lo"]: b["kept"] + b["rejected"] for b in t90
    }
    assert sum(b["kept"] for b in t50) > sum(b["kept"] for b in t90)
    kept = {n: s["output"]["documents"] for n, s in result.variants.items()}
    assert kept["t50"] >= kept["t65"] >= kept["t90"]
    # The comparison report.
    out = tmp_path / "out"
    report = (out / "report.md").read_text()
    assert "| t65 |" in report and "## Differences from `t50`" in report
    assert (out / "funnel.png").stat().st_size > 1000
    assert (
        (out / "comparison.csv")
        .read_text()
        .startswith("variant,docs_in,docs_out,bytes_out,tokens_out")
    )
    assert "unique 13-grams" in report
    summary = json.loads((out / "ablation.json").read_text())
    by_name = {row["variant"]: row for row in summary["summaries"]}
    assert by_name["t50"]["unique_1grams_out"] >= by_name["t90"]["unique_1grams_out"] > 0
    assert by_name["t65"]["distinct_docs_out"] <= by_name["t65"]["docs_out"]
    assert summary["diffs"]["t90"]["only_in_baseline"] == kept["t50"] - kept["t90"]


@pytest.mark.e2e
def test_shared_scores_are_computed_once_and_caches_invalidate_exactly(
    inputs, tmp_path, monkeypatch
) -> None:
    two = "  a: {}\n  b: {set: {langid.threshold: 0.9}}\n"
    path = _write(tmp_path, inputs, two)
    everything = ["extract", "langid", "gopher_repetition", "gopher_quality", "line_corrections"]
    first = run_ablation(load_ablation(path))
    assert first.computed == {"a": everything, "b": everything}
    # Nothing changed: nothing is recomputed.
    assert run_ablation(load_ablation(path)).computed == {"a": [], "b": []}
    # A non-threshold key of one stage: that stage and the ones after it.
    changed = _write(
        tmp_path, inputs, "  a: {set: {line_corrections.remove_urls: false}}\n  b: {}\n", "c.yaml"
    )
    result = run_ablation(load_ablation(changed))
    assert result.computed == {"a": ["line_corrections"], "b": []}
    # The code of a stage changed: that stage and the ones after it.
    real = cache_module.stage_fingerprint

    def patched(name: str, config: dict) -> str:
        return "new-code" if name == "gopher_quality" else real(name, config)

    monkeypatch.setattr(cache_module, "stage_fingerprint", patched)
    result = run_ablation(load_ablation(path))
    assert result.computed == {"a": ["gopher_quality", "line_corrections"]} | {
        "b": ["gopher_quality", "line_corrections"]
    }
    monkeypatch.undo()
    # The input changed (a file's mtime): refused before any work, naming the file; with
    # overwrite, every stage is recomputed for that unit only.
    stamp = os.stat(inputs[0]).st_mtime + 10
    os.utime(inputs[0], (stamp, stamp))
    with pytest.raises(OutputError, match=f"changed {re.escape(inputs[0])}.*--overwrite"):
        run_ablation(load_ablation(path))
    result = run_ablation(load_ablation(path), overwrite=True)
    assert result.computed == {"a": everything, "b": everything}


def test_bad_ablation_files_name_the_problem(inputs, tmp_path) -> None:
    with pytest.raises(ConfigError, match="set 'langidd.threshold': write <stage>.<key>"):
        load_ablation(_write(tmp_path, inputs, "  x: {set: {langidd.threshold: 0.5}}\n"))
    with pytest.raises(ConfigError, match="remove 'c4_quality': no such stage"):
        load_ablation(_write(tmp_path, inputs, "  x: {remove: [c4_quality]}\n"))
    with pytest.raises(ConfigError, match="(?s)variant 'x'.*threshold"):
        load_ablation(_write(tmp_path, inputs, "  x: {set: {langid.threshold: 7}}\n"))
    with pytest.raises(ConfigError, match="variants"):
        load_ablation(_write(tmp_path, inputs, "  x: {sett: {}}\n"))
