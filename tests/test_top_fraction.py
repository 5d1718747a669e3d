"""top_fraction: the kept fraction on 10k documents across shards, ties, unscored and empty
shards, the summary for the report, the plan check, and an ablation over fractions that
recomputes no score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.ablate.run import run_ablation
from pipeline.ablate.spec import load_ablation
from pipeline.config import recipe_from_dict
from pipeline.errors import ConfigError
from pipeline.runner.plan import check_plan
from pipeline.runner.report import render_report
from pipeline.stages.top_fraction import (
    TopFractionConfig,
    TopFractionStage,
    frac_above_column,
)
from tests.test_exact_dedup import run_stage, write_shards

SCORE = "score"
RANK = frac_above_column(SCORE)
REASON = "score_below_top_fraction"


def _shards(tmp: Path, scores: list[list[float | None]]) -> list:
    tmp.mkdir(parents=True, exist_ok=True)
    return write_shards(
        tmp,
        [
            [{"id": f"s{i}-{j}", "text": "x", SCORE: v} for j, v in enumerate(shard)]
            for i, shard in enumerate(scores)
        ],
    )


def _stage(fraction: float) -> TopFractionStage:
    return TopFractionStage(TopFractionConfig(column=SCORE, keep_top_fraction=fraction))


@pytest.fixture(scope="module")
def ten_k() -> list[list[float | None]]:
    """10,000 distinct scores in 7 shards of uneven size: the summaries of three shards, and
    their merge, are compressed (> 2,048 values)."""
    rng = np.random.default_rng(7)
    scores = rng.beta(2, 5, size=10_000)
    cuts = [0, 900, 2500, 2600, 5000, 7400, 9999, 10_000]
    return [scores[a:b].tolist() for a, b in zip(cuts, cuts[1:], strict=False)]


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_ten_thousand_documents_keep_the_requested_fraction(
    ten_k: list[list[float | None]], fraction: float, tmp_path: Path
) -> None:
    refs = _shards(tmp_path, [ten_k[0], [], *ten_k[1:], []])  # two empty shards among them
    summary, kept, rejected = run_stage(_stage(fraction), refs, tmp_path)
    assert kept.num_rows + rejected.num_rows == 10_000
    assert abs(kept.num_rows / 10_000 - fraction) <= 0.005
    # The exact reference: the kept documents are the top scores, none above a rejected one.
    everything = np.sort(np.concatenate([np.asarray(s) for s in ten_k]))[::-1]
    threshold = everything[kept.num_rows - 1]
    assert min(kept.column(SCORE).to_pylist()) == threshold == summary["cut"]
    assert max(rejected.column(SCORE).to_pylist()) < threshold
    assert max(rejected.column(SCORE).to_pylist()) == summary["highest_rejected"]
    assert set(rejected.column("reason").to_pylist()) == {REASON}
    # The rank column tracks the true fraction above each document within the stated bound,
    # 2 compressions (shard, merge) of 2,048 points: 2 / 4,096.
    scores = np.asarray(kept.column(SCORE).to_pylist() + rejected.column(SCORE).to_pylist())
    ranks = np.asarray(kept.column(RANK).to_pylist() + rejected.column(RANK).to_pylist())
    true_above = (everything[None, :] > scores[:, None]).sum(axis=1) / 10_000
    assert 0 < np.abs(ranks - true_above).max() <= 2 / 4096
    assert summary["documents"] == summary["scored"] == 10_000 and summary["unscored"] == 0
    assert summary["kept"] == kept.num_rows
    assert summary["kept_fraction"] == round(kept.num_rows / 10_000, 6)
    assert summary["requested_fraction"] == fraction and summary["rank_error"] == 0.000488
    # The histogram in the run's fixed bins (width 0.02 on [0, 1]), the cut marked.
    hist = summary["histogram"]
    assert hist["thresholds"] == {"cut": threshold}
    assert sum(b["kept"] + b["rejected"] for b in hist["bins"]) == 10_000
    assert sum(b["kept"] for b in hist["bins"]) == kept.num_rows
    assert all(b["hi"] - b["lo"] == pytest.approx(0.02) for b in hist["bins"])
    assert all(b["kept"] == 0 for b in hist["bins"] if b["hi"] <= threshold)
    assert hist["missing"] == {"kept": 0, "rejected": 0}


def test_the_rank_column_does_not_depend_on_the_fraction(
    ten_k: list[list[float | None]], tmp_path: Path
) -> None:
    """An ablation re-thresholds the stored column: the same ranks, another cut."""
    refs = _shards(tmp_path, ten_k[:3])
    _, kept_a, rej_a = run_stage(_stage(0.1), refs, tmp_path / "a")
    _, kept_b, rej_b = run_stage(_stage(0.6), refs, tmp_path / "b")
    ranks = {r["id"]: r[RANK] for t in (kept_a, rej_a) for r in t.select(["id", RANK]).to_pylist()}
    again = {r["id"]: r[RANK] for t in (kept_b, rej_b) for r in t.select(["id", RANK]).to_pylist()}
    assert ranks == again
    assert kept_a.num_rows < kept_b.num_rows
    assert kept_b.num_rows == sum(1 for v in ranks.values() if v < 0.6)


def test_ties_are_kept_or_rejected_together(tmp_path: Path) -> None:
    """Scores 3, 2, 1, 0 in equal groups of 2,500. Top 30%: the whole `3` group (25%) and,
    because 25% < 30% score above it, the whole `2` group: 50% kept. Top 20%: only `3` (25%)."""
    values = [float(i % 4) for i in range(10_000)]
    refs = _shards(tmp_path, [values[:3000], values[3000:]])
    summary, kept, _ = run_stage(_stage(0.3), refs, tmp_path / "a")
    assert sorted(set(kept.column(SCORE).to_pylist())) == [2.0, 3.0]
    assert kept.num_rows == 5000 and summary["kept_fraction"] == 0.5 and summary["cut"] == 2.0
    assert summary["highest_rejected"] == 1.0
    summary, kept, _ = run_stage(_stage(0.2), refs, tmp_path / "b")
    assert set(kept.column(SCORE).to_pylist()) == {3.0} and kept.num_rows == 2500
    assert set(kept.column(RANK).to_pylist()) == {0.0}
    # Every score the same: everything is the top.
    refs = _shards(tmp_path / "same", [[0.5] * 10, [0.5] * 5])
    summary, kept, rejected = run_stage(_stage(0.1), refs, tmp_path / "c")
    assert kept.num_rows == 15 and rejected.num_rows == 0
    assert summary["histogram"]["bins"] == [{"lo": 0.5, "hi": 0.52, "kept": 15, "rejected": 0}]
    assert summary["cut"] == 0.5


def test_unscored_documents_are_never_kept(tmp_path: Path) -> None:
    """A null or NaN score is outside the ranking: rank 1, rejected even at fraction 1."""
    refs = _shards(tmp_path, [[0.9, None, 0.1, float("nan")], [0.5]])
    summary, kept, rejected = run_stage(_stage(1.0), refs, tmp_path)
    assert sorted(kept.column(SCORE).to_pylist()) == [0.1, 0.5, 0.9]
    assert kept.column(RANK).to_pylist() == pytest.approx([0.0, 2 / 3, 1 / 3])
    assert rejected.column(RANK).to_pylist() == [1.0, 1.0]
    assert rejected.column("reason").to_pylist() == [REASON, REASON]
    assert summary["scored"] == 3 and summary["unscored"] == 2 and summary["kept"] == 3
    assert summary["histogram"]["missing"] == {"kept": 0, "rejected": 2}


def test_infinite_scores_rank_at_the_ends(tmp_path: Path) -> None:
    """+inf is the top score and -inf the bottom one, counted in the histogram's end bins."""
    refs = _shards(tmp_path, [[float("inf"), 1.0, 2.0], [float("-inf")]])
    summary, kept, rejected = run_stage(_stage(0.5), refs, tmp_path)
    assert sorted(kept.column(SCORE).to_pylist()) == [2.0, float("inf")]
    assert sorted(rejected.column(RANK).to_pylist()) == [0.5, 0.75]
    bins = summary["histogram"]["bins"]
    assert [(b["lo"], b["kept"], b["rejected"]) for b in (bins[0], bins[-1])] == [
        (-1e9, 0, 1),
        (pytest.approx(10**8.95), 1, 0),
    ]
    assert len(bins) == 4 and summary["histogram"]["missing"] == {"kept": 0, "rejected": 0}
    assert summary["cut"] == 2.0 and summary["highest_rejected"] == 1.0


def test_a_corpus_without_documents_or_scores(tmp_path: Path) -> None:
    summary = _stage(0.5).prepare(_ctx(tmp_path), _shards(tmp_path, [[], []]))
    assert summary["documents"] == summary["kept"] == 0 and summary["cut"] is None
    refs = _shards(tmp_path / "nulls", [[None, None]])
    summary, kept, rejected = run_stage(_stage(0.5), refs, tmp_path / "n")
    assert kept.num_rows == 0 and rejected.num_rows == 2 and summary["unscored"] == 2
    assert summary["kept_fraction"] == 0.0


def _ctx(tmp: Path):
    from pipeline.stages.global_base import LocalContext

    return LocalContext(str(tmp / "work"))


def test_a_column_that_is_not_a_score_is_a_config_error(tmp_path: Path) -> None:
    refs = _shards(tmp_path, [[0.5]])
    stage = TopFractionStage(TopFractionConfig(column="text"))
    with pytest.raises(ConfigError, match="'text' holds string, not numbers"):
        stage.prepare(_ctx(tmp_path), refs)
    with pytest.raises(ValueError, match="keep_top_fraction"):
        TopFractionConfig(column=SCORE, keep_top_fraction=0)
    with pytest.raises(ValueError, match="keep_top_fraction"):
        TopFractionConfig(column=SCORE, keep_top_fraction=1.5)


def test_the_plan_check_follows_the_column(tmp_path: Path) -> None:
    """The contract requires the configured column: a recipe without its producer is refused."""

    def recipe(stages: list[dict]):
        return recipe_from_dict({"output": {"path": str(tmp_path / "o")}, "stages": stages})

    ranked = {"stage": "top_fraction", "column": "lang_score", "keep_top_fraction": 0.5}
    check_plan(recipe([{"stage": "langid"}, ranked]), {"jsonl"})
    with pytest.raises(
        ConfigError, match=r"stages\[0\] \(top_fraction\) needs column `lang_score`"
    ):
        check_plan(recipe([ranked]), {"jsonl"})
    contract = TopFractionStage.contract(TopFractionConfig(column="lang_score"))
    assert contract.requires == ("lang_score",)
    assert contract.produces == ("lang_score_frac_above",)


def test_the_report_shows_the_histogram_and_the_cut(tmp_path: Path) -> None:
    values = [float(i) for i in range(100)]
    summary, _, _ = run_stage(_stage(0.1), _shards(tmp_path, [values]), tmp_path)
    assert summary["cut"] == 90.0 and summary["kept"] == 10
    lines = render_report_lines({"top_fraction": summary})
    # The run's fixed bins: 20 per decade above 1.
    assert "| [79.43, 89.13) | 10 | 0 |  |" in lines
    assert "| [89.13, 100) | 10 | 10 | 90 |" in lines
    assert any(line.startswith("- **top_fraction**: column score") for line in lines)


def render_report_lines(summaries: dict) -> list[str]:
    """The report's lines for a run whose only content is these global summaries."""
    stats = {
        "name": "t",
        "config_hash": "h",
        "version": "0",
        "wall_s": 1.0,
        "accounting": "ok",
        "inputs": {"units": 1, "formats": ["jsonl"]},
        "reader": {"records": 0, "documents": 0, "skipped": {}, "errors": []},
        "stages": [],
        "global": summaries,
        "output": {"documents": 0, "bytes": 0, "files": []},
    }
    return [line.strip() for line in render_report(stats).splitlines()]


BASE = """\
input:
  paths: [{inputs}]
output:
  path: unused
  keep_rejected: true
runtime:
  executor: local
  batch_size: 64
stages:
  - stage: gopher_quality
    min_doc_words: 1
    max_doc_words: 1000000
  - stage: top_fraction
    column: gopher_n_words
    keep_top_fraction: 0.5
"""


@pytest.mark.e2e
def test_an_ablation_over_fractions_recomputes_no_score(shared_data: Path, tmp_path: Path) -> None:
    """Variants that differ only in keep_top_fraction share gopher_quality's cached scores;
    a second ablation with new fractions computes nothing; each variant keeps its fraction."""
    dclm = shared_data / "quality" / "dclm-agreement.jsonl"
    (tmp_path / "base.yaml").write_text(BASE.format(inputs=json.dumps(str(dclm))))

    def ablation(name: str, variants: str) -> Path:
        path = tmp_path / name
        path.write_text(
            f"name: t\nbase: base.yaml\noutput:\n  path: {tmp_path / 'out'}\nvariants:\n{variants}"
        )
        return path

    first = run_ablation(
        load_ablation(
            ablation(
                "a.yaml", "  half: {}\n  top20: {set: {top_fraction.keep_top_fraction: 0.2}}\n"
            )
        )
    )
    assert first.computed == {"half": ["gopher_quality"], "top20": ["gopher_quality"]}
    second = run_ablation(
        load_ablation(
            ablation(
                "b.yaml",
                "  top10: {set: {top_fraction.keep_top_fraction: 0.1}}\n"
                "  all: {set: {top_fraction.keep_top_fraction: 1.0}}\n",
            )
        )
    )
    assert second.computed == {"top10": [], "all": []}
    runs = {**first.variants, **second.variants}
    for name, fraction in (("half", 0.5), ("top20", 0.2), ("top10", 0.1), ("all", 1.0)):
        stats = runs[name]
        ranked = stats["stages"][-1]
        summary = stats["global"]["top_fraction"]
        assert ranked["docs_in"] == summary["documents"] > 200
        assert ranked["docs_kept"] == summary["kept"] == stats["output"]["documents"]
        assert summary["requested_fraction"] == fraction
        # Word counts tie (many documents have the same count): kept >= requested.
        assert fraction <= summary["kept_fraction"] <= fraction + 0.03, name
        assert ranked["removed_by_reason"] == (
            {"gopher_n_words_below_top_fraction": ranked["docs_rejected"]}
            if ranked["docs_rejected"]
            else {}
        )
    report = (tmp_path / "out" / "variants" / "top10" / "report.md").read_text()
    assert "| score bin | documents | kept | cut |" in report


@pytest.mark.e2e
def test_ray_ranks_exactly_as_local(shared_data: Path, tmp_path: Path, ray_session) -> None:
    """The summary is deterministic: the same rank column and decisions through both executors
    (three input files: three shards merged)."""
    from pipeline.runner.run import run_recipe
    from tests.test_runner import read_output

    lines = (shared_data / "quality" / "dclm-agreement.jsonl").read_text().splitlines(True)
    inputs = []
    for i in range(3):
        path = tmp_path / f"part{i}.jsonl"
        path.write_text("".join(lines[i::3]))
        inputs.append(str(path))
    stages = [
        {"stage": "gopher_quality", "min_doc_words": 1, "max_doc_words": 1_000_000},
        {"stage": "top_fraction", "column": "gopher_mean_word_len", "keep_top_fraction": 0.3},
    ]
    stats = {}
    for executor in ("local", "ray"):
        recipe = recipe_from_dict(
            {
                "input": {"paths": inputs},
                "output": {"path": str(tmp_path / executor)},
                "runtime": {"executor": executor},
                "stages": stages,
            }
        )
        stats[executor] = run_recipe(recipe).stats
    local, on_ray = read_output(tmp_path / "local"), read_output(tmp_path / "ray")
    assert local.equals(on_ray)
    summary = stats["local"]["global"]["top_fraction"]
    assert {k: v for k, v in summary.items() if k != "prepare_wall_s"} == {
        k: v for k, v in stats["ray"]["global"]["top_fraction"].items() if k != "prepare_wall_s"
    }
    assert summary["documents"] > 250 and local.num_rows == summary["kept"]
    assert 0.3 <= summary["kept_fraction"] <= 0.31
    # report.html draws the histogram with the cut as it draws the map stages' histograms.
    html = (tmp_path / "ray" / "report.html").read_text()
    assert 'aria-label="histogram of gopher_mean_word_len"' in html
    assert f"cut {summary['cut']:g}" in html
