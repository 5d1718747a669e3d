"""The plugin's own test (copy it for a new stage): scores on hand-made documents, the decision
at the threshold, and the stage run through curate's kernel, which counts every document."""

from __future__ import annotations

import pyarrow as pa
import pytest
from curate_example_plugin.caps_filter import (
    CAPS_RATIO,
    REASON,
    CapsFilterConfig,
    CapsFilterStage,
    caps_ratio,
)

from pipeline.runner.accounting import StageStats
from pipeline.runner.kernel import run_stage
from pipeline.stages.contract import stage_name_of

SHOUT = "BUY NOW!!! THE BEST PRICES ON THE WEB, LIMITED OFFER"
PROSE = "The committee met on Tuesday and agreed on the budget for NASA and the EU."
SHORT = "OK USA"


def _batch(texts: list[str | None]) -> pa.Table:
    ids = [f"doc-{i}" for i in range(len(texts))]
    return pa.table({"id": ids, "url": [None] * len(texts), "text": texts})


def test_caps_ratio_counts_cased_letters_only() -> None:
    assert caps_ratio("ABcd 12 !!", min_letters=1) == 0.5
    assert caps_ratio("ÉTÉ été", min_letters=1) == 0.5  # accented capitals count
    assert caps_ratio("12 + 34", min_letters=1) is None  # no letters: not judged
    assert caps_ratio(SHORT, min_letters=20) is None  # too few letters to judge
    assert caps_ratio(None, min_letters=0) is None


def test_declaration_name_and_threshold_keys() -> None:
    assert CapsFilterStage.name == "caps_filter" == stage_name_of(CapsFilterConfig)
    contract = CapsFilterStage.contract(CapsFilterConfig())
    assert contract.requires == ("text",) and contract.produces == (CAPS_RATIO,)
    assert CapsFilterStage.threshold_keys <= set(CapsFilterConfig.model_fields)


def test_keep_rejects_shouting_and_keeps_prose_and_short_texts() -> None:
    stage = CapsFilterStage(CapsFilterConfig())
    kept, rejected = stage.apply(_batch([SHOUT, PROSE, SHORT, None]))
    assert kept.column("id").to_pylist() == ["doc-1", "doc-2", "doc-3"]
    assert rejected.column("id").to_pylist() == ["doc-0"]
    assert rejected.column("reason").to_pylist() == [REASON]
    assert rejected.column(CAPS_RATIO)[0].as_py() == 1.0  # every letter a capital
    assert kept.column(CAPS_RATIO)[0].as_py() == pytest.approx(8 / 59)  # T, T, NASA, EU


def test_threshold_is_inclusive_of_the_limit() -> None:
    half = "ABCDEFGHIJ abcdefghij"  # 10 capitals of 20 letters
    strict = CapsFilterStage(CapsFilterConfig(max_caps_ratio=0.5))
    looser = CapsFilterStage(CapsFilterConfig(max_caps_ratio=0.49))
    assert strict.apply(_batch([half]))[0].num_rows == 1
    assert looser.apply(_batch([half]))[1].column("reason").to_pylist() == [REASON]


def test_runs_through_the_kernel_with_every_document_counted() -> None:
    stats = StageStats("caps_filter")
    kept, rejected = run_stage(CapsFilterStage(CapsFilterConfig()), _batch([SHOUT, PROSE]), stats)
    assert (stats.docs_in, stats.docs_kept, stats.docs_rejected) == (2, 1, 1)
    assert dict(stats.reasons) == {REASON: 1}
    assert kept.column("text").to_pylist() == [PROSE]
    # The declared score column is histogrammed, kept vs rejected, with the threshold.
    hist = stats.to_dict()["histograms"]["caps_ratio"]
    assert hist["thresholds"] == {"max_caps_ratio": CapsFilterConfig().max_caps_ratio}
    assert [(b["kept"], b["rejected"]) for b in hist["bins"]] == [(1, 0), (0, 1)]
