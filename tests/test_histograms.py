"""Score histograms: fixed bins, deterministic merging, thresholds from the config, and the
counts a real run stores in stats.json."""

from __future__ import annotations

import json
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import recipe_from_dict
from pipeline.runner.accounting import StageStats
from pipeline.runner.histograms import EDGES, ScoreHistogram, bin_index, observe_scores
from pipeline.runner.run import run_recipe
from pipeline.stages.base import StageConfig
from pipeline.stages.contract import Contract
from pipeline.stages.gopher_quality import GopherQualityConfig, GopherQualityStage
from pipeline.stages.langid import LangIdConfig, LangIdStage
from pipeline.stages.url_filter import UrlFilterConfig, UrlFilterStage
from tests.test_runner import read_output


def test_fixed_bins_cover_fractions_linearly_and_counts_logarithmically() -> None:
    assert EDGES[0] == -1e9 and EDGES[-1] == 1e9 and np.all(np.diff(EDGES) > 0)
    values = np.array([0.0, 0.013, 0.5, 0.99, 1.0, 1.05, 50.0, 3e12, -0.5, -2e12])
    lo = EDGES[bin_index(values)]
    hi = EDGES[bin_index(values) + 1]
    assert lo.tolist()[:5] == [0.0, 0.0, 0.5, 0.98, 0.98]  # a full fraction counts in [0.98, 1]
    assert hi[4] == 1.0
    assert (lo[5], hi[5]) == (1.0, 1.12202)  # 20 bins per decade beyond 1
    assert (lo[6], hi[6]) == (44.6684, 50.1187)
    assert (lo[7], hi[7]) == (EDGES[-2], 1e9)  # beyond 1e9: the outermost bin
    assert lo[8] == -0.5 and bin_index(values)[9] == 0


def test_histograms_merge_the_same_in_any_order_and_survive_json() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.random(500), rng.lognormal(4, 2, 500), [np.nan] * 3])
    kept = rng.random(len(values)) < 0.7
    whole = ScoreHistogram({"max_x": 0.3})
    whole.observe(values, kept)
    parts = []
    for chunk in np.array_split(np.arange(len(values)), 5):
        h = ScoreHistogram({"max_x": 0.3})
        h.observe(values[chunk], kept[chunk])
        parts.append(h)
    forward, backward = StageStats("s"), StageStats("s")
    for h in parts:
        forward.add(StageStats("s", histograms={"x": h}))
    for h in reversed(parts):
        backward.add(StageStats("s", histograms={"x": ScoreHistogram.from_dict(h.to_dict())}))
    expected = whole.to_dict()
    assert forward.to_dict()["histograms"]["x"] == backward.to_dict()["histograms"]["x"] == expected
    assert sum(b["kept"] for b in expected["bins"]) + expected["missing"]["kept"] == kept.sum()
    assert sum(b["rejected"] for b in expected["bins"]) + expected["missing"]["rejected"] == (
        (~kept).sum()
    )
    assert expected["missing"]["kept"] + expected["missing"]["rejected"] == 3
    assert json.loads(json.dumps(expected)) == expected
    assert StageStats.from_dict(forward.to_dict()).to_dict() == forward.to_dict()
    assert "histograms" not in StageStats("plain").to_dict()  # only stages that have them


class _ScoreConfig(StageConfig):
    stage: Literal["score_like"] = "score_like"
    column: str = "quality_prob"
    threshold: float | None = 0.5


class _ScoreStage(GopherQualityStage):
    """A classifier-like stage: its score column named by the config, one `threshold`."""

    config_cls = _ScoreConfig  # type: ignore[assignment]
    column_thresholds: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def contract(cls, config: _ScoreConfig) -> Contract:  # type: ignore[override]
        return Contract(cls.name, "map", ("text",), (config.column,))


def test_thresholds_come_from_the_stage_config() -> None:
    gopher = GopherQualityStage.score_thresholds(
        GopherQualityConfig(min_doc_words=80, max_doc_words=None, min_stop_words=None)
    )
    assert gopher["gopher_n_words"] == {"min_doc_words": 80}  # a rule disabled by null: no line
    assert gopher["gopher_stop_words"] == {}
    assert gopher["gopher_alpha_words_frac"] == {"min_alpha_words_ratio": 0.8}
    assert LangIdStage.score_thresholds(LangIdConfig(threshold=0.4)) == {
        "lang_score": {"threshold": 0.4}
    }
    url = UrlFilterStage.score_thresholds(UrlFilterConfig())
    assert url == {"url_soft_word_count": {"soft_word_threshold": 2}}  # not the bool switches
    # Generic: a stage with one (config-named) score column and a `threshold` key.
    assert _ScoreStage.score_thresholds(_ScoreConfig(column="edu", threshold=3)) == {
        "edu": {"threshold": 3}
    }
    assert _ScoreStage.score_thresholds(_ScoreConfig(threshold=None)) == {"quality_prob": {}}


def test_observe_counts_numeric_score_columns_only() -> None:
    stage = _ScoreStage(_ScoreConfig())
    table = pa.table({"text": ["a", "b", "c"], "quality_prob": pa.array([0.9, None, 0.2])})
    hists: dict[str, ScoreHistogram] = {}
    observe_scores(hists, stage, table, np.array([True, True, False]))
    d = hists["quality_prob"].to_dict()
    assert d["thresholds"] == {"threshold": 0.5}
    assert [(b["lo"], b["kept"], b["rejected"]) for b in d["bins"]] == [(0.2, 0, 1), (0.9, 1, 0)]
    assert d["missing"] == {"kept": 1, "rejected": 0}
    strings = pa.table({"text": ["a"], "quality_prob": ["high"]})
    observe_scores(hists := {}, stage, strings, np.array([True]))
    assert hists == {}


def test_a_run_stores_the_histograms_of_each_thresholded_column(shared_data, tmp_path) -> None:
    """On the DCLM agreement documents: per column, the kept counts are the histogram of the
    written scores, kept + rejected are all documents the stage scored, thresholds as configured."""
    out = tmp_path / "out"
    recipe = recipe_from_dict(
        {
            "input": {"paths": [str(shared_data / "quality" / "dclm-agreement.jsonl")]},
            "output": {"path": str(out), "keep_rejected": True},
            "runtime": {"executor": "local", "batch_size": 64},
            "stages": [{"stage": "gopher_quality", "min_doc_words": 80}],
        }
    )
    stats = run_recipe(recipe).stats
    stage = stats["stages"][0]
    assert stage["docs_in"] == 281
    hists = stage["histograms"]
    assert set(hists) == set(GopherQualityStage.column_thresholds)
    assert hists["gopher_n_words"]["thresholds"] == {"min_doc_words": 80, "max_doc_words": 100000}
    kept = read_output(out).column("gopher_n_words").to_numpy().astype(float)
    rejected = pq.read_table(out / "rejected" / "gopher_quality").column("gopher_n_words")
    rejected_values = rejected.to_numpy().astype(float)
    for values, key in ((kept, "kept"), (rejected_values, "rejected")):
        counts = np.bincount(bin_index(values), minlength=len(EDGES) - 1)
        got = {b["lo"]: b[key] for b in hists["gopher_n_words"]["bins"] if b[key]}
        assert got == {float(EDGES[i]): int(c) for i, c in enumerate(counts) if c}
    for h in hists.values():
        assert sum(b["kept"] for b in h["bins"]) + h["missing"]["kept"] == stage["docs_kept"]
        total = sum(b["rejected"] for b in h["bins"]) + h["missing"]["rejected"]
        assert total == stage["docs_rejected"]
    # Every document under min_doc_words was rejected: no kept count below the threshold's bin.
    first_kept = min(b["lo"] for b in hists["gopher_n_words"]["bins"] if b["kept"])
    assert first_kept >= EDGES[bin_index(np.array([80.0]))[0]]


def _reference_observe(h: ScoreHistogram, values: np.ndarray, kept_mask: np.ndarray) -> None:
    """The straightforward count: each side's finite values binned on their own."""
    finite = np.isfinite(values)
    for mask, counts, key in ((kept_mask, h.kept, "kept"), (~kept_mask, h.rejected, "rejected")):
        chosen = values[mask & finite]
        if len(chosen):
            binned = np.bincount(bin_index(chosen))
            nonzero = np.flatnonzero(binned)
            counts.update(dict(zip(nonzero.tolist(), binned[nonzero].tolist(), strict=True)))
        absent = int((mask & ~finite).sum())
        if absent:
            h.missing[key] += absent


def test_observe_bins_once_and_counts_as_the_reference() -> None:
    """Binning the finite values once and splitting kept / rejected after counts what binning
    each side alone counts: random batches with NaN, infinities, exact +-1 and 0, every
    kept/rejected mix, empty ones."""
    rng = np.random.default_rng(24)
    special = np.array([np.nan, np.inf, -np.inf, 1.0, -1.0, 0.0, 1e12, -1e12, 0.98, 1.12])
    fast, slow = ScoreHistogram({"t": 0.5}), ScoreHistogram({"t": 0.5})
    for n in [0, 1, 2, 5, 33, 200] * 20:
        pool = np.concatenate(
            [rng.normal(0, 2, 50), rng.uniform(-1, 1, 50), 10 ** rng.uniform(-3, 10, 50), special]
        )
        values = rng.choice(pool, n)
        kept = rng.random(n) < rng.choice([0.0, 0.5, 1.0])
        fast.observe(values, kept)
        _reference_observe(slow, values, kept)
        assert fast.to_dict() == slow.to_dict()
    assert sum(fast.kept.values()) and sum(fast.rejected.values())
    assert fast.missing["kept"] and fast.missing["rejected"]
