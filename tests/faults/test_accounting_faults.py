"""The accounting invariant, checked by the runner itself: documents in == kept + rejected for every
stage, records == documents + counted skips for readers. A stage or reader that loses a document,
or a run record that does not add up, fails the run loudly instead of passing silently."""

from __future__ import annotations

import json
from typing import Any, Literal

import pyarrow as pa
import pytest

from pipeline import config as config_module
from pipeline import registry
from pipeline.io.warc import WarcReader
from pipeline.stages.base import Stage, StageConfig
from tests.faults.helpers import (
    FAST_EXTRACT,
    WARC_DIR,
    WGET,
    assert_reconciles,
    curate,
    stats_of,
    write_recipe,
)


class LossyConfig(StageConfig):
    stage: Literal["lossy"] = "lossy"


class LossyStage(Stage):
    """A buggy stage: drops every third document without rejecting it."""

    config_cls = LossyConfig

    def score(self, batch: pa.Table) -> pa.Table:
        return batch.filter(pa.array([i % 3 != 0 for i in range(batch.num_rows)]))

    def keep(self, batch: pa.Table) -> pa.Array:
        return pa.nulls(batch.num_rows, pa.string())


@pytest.fixture
def lossy_stage(monkeypatch):
    monkeypatch.setitem(registry.STAGES, "lossy", f"{__name__}:LossyStage")
    registry.stage_class.cache_clear()
    config_module._recipe_model.cache_clear()
    yield
    registry.stage_class.cache_clear()
    config_module._recipe_model.cache_clear()


def test_a_stage_that_loses_documents_fails_the_run(capsys, tmp_path, lossy_stage) -> None:
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", [WGET], out, [FAST_EXTRACT, {"stage": "lossy"}])
    result = curate(capsys, "run", recipe)
    assert result.code == 2
    assert result.err.startswith(
        f"curate: error: accounting violated in unit 0 ({WGET}), segment 0: lossy: score "
        "returned 10 rows for 16"
    )
    assert not (out / "stats.json").exists()
    assert not (out / "_run" / "units" / "seg00" / "part-00000.json").exists()  # not "finished"


def test_a_reader_that_miscounts_fails_the_run(capsys, tmp_path, monkeypatch) -> None:
    """A reader yielding a record it never counted: reader records no longer add up."""
    real_read = WarcReader.read

    def read(self: WarcReader, unit: Any, stats: Any, batch_size: int):
        stats.records += 1  # a record seen but neither emitted nor skipped
        yield from real_read(self, unit, stats, batch_size)

    monkeypatch.setattr(WarcReader, "read", read)
    out = tmp_path / "out"
    result = curate(capsys, "run", write_recipe(tmp_path / "r.yaml", [WGET], out))
    assert result.code == 2
    assert "accounting violated in unit 0" in result.err
    assert "reader: records 49 != documents 22 + skipped 26" in result.err
    assert not (out / "stats.json").exists()


def test_run_totals_are_rechecked_when_resuming(capsys, tmp_path) -> None:
    """The end-of-run check covers units finished by an earlier invocation: a run record that
    no longer adds up (here edited by hand) fails the rerun instead of being summed into
    stats.json."""
    inputs = [WGET, WARC_DIR / "wget-2024-sample-0001.warc.gz"]
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path / "r.yaml", inputs, out)
    assert curate(capsys, "run", recipe).code == 0
    assert_reconciles(stats_of(out))
    marker = out / "_run" / "units" / "seg00" / "part-00001.json"
    record = json.loads(marker.read_text())
    record["output_docs"] += 1
    marker.write_text(json.dumps(record))
    result = curate(capsys, "run", recipe)
    assert result.code == 2
    assert result.err.startswith("curate: error: accounting violated in run: output: ")
    assert "documents written !=" in result.err
